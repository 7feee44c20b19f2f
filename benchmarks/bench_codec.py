"""Decoding speed and file size of real bitstreams, per schedule (the paper's claim: about as fast as checkerboard).

    python benchmarks/bench_codec.py [--steps 300] [--images 3]

For each schedule (single, checkerboard, 2x2 raster, 4x4 lin2023, 4x4 raster)
trains a context model briefly on the built-in latents (``--steps``; the
same short protocol for all, so rates are indicative, not verified), then
compresses and decompresses the first ``--images`` test images (the base
codec's reconstructions of the held-out photos, which is what the codec sees
when it re-encodes them) and reports bits per pixel, the gap between file
size and the model's estimate, and encode/decode seconds (median of 3). Writes
results/bench_codec.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ordersearch import Schedule
from ordersearch.codec.base import BaseCodec
from ordersearch.codec.coder import Codec
from ordersearch.data import builtin
from ordersearch.harness import TrainConfig, evaluate

SCHEDULES = {"single": Schedule.named("single", 2), "checkerboard": Schedule.named("checkerboard", 2),
             "raster 2x2": Schedule.named("raster", 2), "lin2023 4x4": Schedule.named("lin2023", 4),
             "raster 4x4": Schedule.named("raster", 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("results"))
    args = ap.parse_args()
    splits = builtin().split()
    base = BaseCodec.load()
    with torch.no_grad():
        images = [(base.synthesize(torch.from_numpy(y[None]).float())[0].permute(1, 2, 0).numpy() * 255)
                  .round().astype(np.uint8) for y in splits.test.y[:args.images]]
    config = TrainConfig(max_steps=args.steps, warm_steps=args.steps, eval_every=max(1, args.steps // 3))
    rows = []
    for name, schedule in SCHEDULES.items():
        model = evaluate(schedule, splits, config, progress=False).model
        codec = Codec(schedule, model)
        bpp, gaps, enc_s, dec_s = [], [], [], []
        for img in images:
            times = []
            for _ in range(3):
                t = time.perf_counter()
                encoded = codec.encode(img)
                times.append(time.perf_counter() - t)
            enc_s.append(np.median(times))
            times = []
            for _ in range(3):
                t = time.perf_counter()
                out = codec.decompress(encoded.data)
                times.append(time.perf_counter() - t)
            dec_s.append(np.median(times))
            assert np.array_equal(out, codec.reconstruct(img))
            bpp.append(8 * len(encoded.data) / (img.shape[0] * img.shape[1]))
            gaps.append(sum(encoded.y_bits_per_step) / encoded.estimate_y_bits - 1)
        rows.append({"schedule": name, "steps": schedule.num_stages, "bpp": float(np.mean(bpp)),
                     "y_size_vs_estimate_pct": 100 * float(np.mean(gaps)), "encode_s": float(np.mean(enc_s)),
                     "decode_s": float(np.mean(dec_s))})
        print(rows[-1], flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    shape = images[0].shape
    args.out.mkdir(exist_ok=True)
    (args.out / "bench_codec.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    lines = ["# Codec benchmark: real bitstreams per schedule", "",
             f"Machine: {machine}. Command: `python benchmarks/bench_codec.py --steps {args.steps} --images "
             f"{args.images}`. Images: the base codec's reconstructions of the first {args.images} test photos "
             f"(first one {shape[1]}x{shape[0]}). Context models trained {args.steps} steps after a {args.steps}-step "
             "warm start (short and equal for all: rates are indicative; verified rates come from `ordersearch "
             "run`). Decoding is exact for every image (checked).", "",
             "| schedule | decoding steps | bpp (file) | y size vs model estimate | encode s | decode s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['schedule']} | {r['steps']} | {r['bpp']:.4f} | {r['y_size_vs_estimate_pct']:+.2f}% | "
              f"{r['encode_s']:.2f} | {r['decode_s']:.2f} |" for r in rows]
    (args.out / "bench_codec.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

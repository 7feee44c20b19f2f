"""Decoding speed and file size of real bitstreams, per schedule (the paper's claim: about as fast as checkerboard).

    python benchmarks/bench_codec.py [--steps 300] [--images 3]

For the serial raster autoregressive baseline (one latent per step, only its
window computed) and each schedule (single, checkerboard, 2x2 raster, 4x4
lin2023, 4x4 raster) trains a context model briefly on the built-in latents
(``--steps``; the same short protocol for all, so rates are indicative, not
verified), then compresses and decompresses ``--images`` 768x512 images: the
base codec's reconstructions of the top-left 48x32 latents of the first test
photos (held out; what the codec sees when it re-encodes them). Reports bits
per pixel, the gap between file size and the model's estimate, encode and
decode seconds (median of 3), the part of decoding spent on y (context model
+ ANS; the rest is z and the synthesis transform, the same for all) and the
decode time ratios to checkerboard. Writes results/bench_codec.md and .json.
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
from ordersearch.codec import MultistageCodec, SerialCodec
from ordersearch.evaluation import Evaluator, TrainConfig
from ordersearch.models import BaseCodec, builtin

SCHEDULES = {"serial autoregressive": None, "single": Schedule.named("single", 2),
             "checkerboard": Schedule.named("checkerboard", 2), "raster 2x2": Schedule.named("raster", 2),
             "lin2023 4x4": Schedule.named("lin2023", 4), "raster 4x4": Schedule.named("raster", 4)}
#: latent crop (rows, columns): 32 x 48 latents = a 768x512 image
LATENT = (32, 48)


def _median_seconds(fn, repeat: int = 3):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("results"))
    args = ap.parse_args()
    splits = builtin().split()
    base = BaseCodec.load()
    crops = [y[:, :LATENT[0], :LATENT[1]] for y in splits.test.y if y.shape[1] >= LATENT[0] and y.shape[2] >= LATENT[1]]
    with torch.no_grad():
        images = [(base.synthesize(torch.from_numpy(y[None]).float())[0].permute(1, 2, 0).numpy() * 255)
                  .round().astype(np.uint8) for y in crops[:args.images]]
    config = TrainConfig(max_steps=args.steps, warm_steps=args.steps, eval_every=max(1, args.steps // 3))
    evaluator = Evaluator(splits, config, "cpu", progress=False)
    rows = []
    for name, schedule in SCHEDULES.items():
        if schedule is None:
            ev = evaluator.evaluate_serial()
            codec = SerialCodec(ev.model)
        else:
            ev = evaluator.evaluate(schedule)
            codec = MultistageCodec(schedule, ev.model)
        y_seconds: list[float] = []
        decode_y = codec._decode_y

        def timed(*a, decode_y=decode_y, y_seconds=y_seconds):
            t = time.perf_counter()
            out = decode_y(*a)
            y_seconds.append(time.perf_counter() - t)
            return out

        codec._decode_y = timed
        bpp, gaps, enc_s, dec_s, dec_y_s = [], [], [], [], []
        for img in images:
            seconds, encoded = _median_seconds(lambda img=img: codec.encode(img))
            enc_s.append(seconds)
            y_seconds.clear()
            seconds, out = _median_seconds(lambda encoded=encoded: codec.decompress(encoded.data))
            dec_s.append(seconds)
            dec_y_s.append(float(np.median(y_seconds)))
            assert np.array_equal(out, codec.reconstruct(img))
            bpp.append(8 * len(encoded.data) / (img.shape[0] * img.shape[1]))
            gaps.append(sum(encoded.y_bits_per_stage) / encoded.estimate_y_bits - 1)
        rows.append({"schedule": name, "steps": codec.decoding_stages(*LATENT), "test_bits_per_latent":
                     ev.bits_per_latent, "bpp": float(np.mean(bpp)), "y_size_vs_estimate_pct": 100 * float(np.mean(gaps)),
                     "encode_s": float(np.mean(enc_s)), "decode_s": float(np.mean(dec_s)),
                     "decode_y_s": float(np.mean(dec_y_s))})
        print(rows[-1], flush=True)
    cb = next(r for r in rows if r["schedule"] == "checkerboard")
    for r in rows:
        r["decode_vs_checkerboard"] = r["decode_s"] / cb["decode_s"]
        r["decode_y_vs_checkerboard"] = r["decode_y_s"] / cb["decode_y_s"]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    shape = images[0].shape
    args.out.mkdir(exist_ok=True)
    (args.out / "bench_codec.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    lin, serial = (next(r for r in rows if r["schedule"] == k) for k in ("lin2023 4x4", "serial autoregressive"))
    lines = ["# Codec benchmark: real bitstreams per schedule", "",
             f"Machine: {machine}. Command: `python benchmarks/bench_codec.py --steps {args.steps} --images "
             f"{len(images)}`. Images: {len(images)} of {shape[1]}x{shape[0]}, the base codec's reconstructions of "
             f"the top-left {LATENT[1]}x{LATENT[0]} latents of the first test photos. Context models trained "
             f"{args.steps} steps after a {args.steps}-step warm start (short and equal for all: rates are "
             "indicative; verified rates come from `ordersearch run`); test bits/latent is that model's rate on "
             "the whole test split. Decoding is exact for every image (checked). Seconds: mean over images of the "
             "median of 3; \"y decode\" is the context model + ANS part of decoding (the rest, z and the synthesis "
             "transform, is the same for every schedule).", "",
             "| schedule | decoding stages | test bits/latent | bpp (file) | y size vs estimate | encode s | "
             "decode s | y decode s | decode / checkerboard | y decode / checkerboard |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['schedule']} | {r['steps']} | {r['test_bits_per_latent']:.4f} | {r['bpp']:.4f} | "
              f"{r['y_size_vs_estimate_pct']:+.2f}% | {r['encode_s']:.3f} | {r['decode_s']:.3f} | "
              f"{r['decode_y_s']:.3f} | {r['decode_vs_checkerboard']:.2f}x | {r['decode_y_vs_checkerboard']:.2f}x |"
              for r in rows]
    lines += ["", f"Targets: 4x4 decode within 2x of checkerboard: {lin['decode_vs_checkerboard']:.2f}x "
              f"({'met' if lin['decode_vs_checkerboard'] <= 2 else 'not met'}; y part alone "
              f"{lin['decode_y_vs_checkerboard']:.2f}x). Serial autoregressive at least 20x slower than 4x4: "
              f"{serial['decode_s'] / lin['decode_s']:.2f}x for the whole decode, "
              f"{serial['decode_y_s'] / lin['decode_y_s']:.1f}x for y alone "
              f"({'met' if serial['decode_s'] / lin['decode_s'] >= 20 else 'not met'})."]
    (args.out / "bench_codec.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

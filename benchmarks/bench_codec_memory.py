"""Peak memory of `ordersearch encode` and `decode` against image size (the transforms run tile by tile).

    python benchmarks/bench_codec_memory.py [--sides 256 1024 2048 4096]

Each command runs in its own process (the peak resident memory of that
process, torch and the codec loaded included: its VmHWM) on a synthetic
square image of each side (a blocky gradient: compresses well, so the file
is small while the image is large), with an untrained checkerboard context
model: memory depends on the image size, not on the weights. Writes
results/bench_codec_memory.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ordersearch import Schedule, save_schedule
from ordersearch.models.multistage import ModelConfig, MultistageContextModel


#: the command in a fresh process that reports its own peak (VmHWM: ru_maxrss would count this parent's
#: memory at fork time too)
_CHILD = ("import sys; from ordersearch.cli import main; from ordersearch.files import peak_memory_bytes; "
          "code = main(sys.argv[1:]); print('peak kB', peak_memory_bytes() // 1024); sys.exit(code)")


def measured(argv: list[str]) -> tuple[float, int, str]:
    """(seconds, peak resident bytes, stdout) of one ordersearch command in its own process."""
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stdout}{proc.stderr}")
    peak = int(proc.stdout.rsplit("peak kB", 1)[1].split()[0]) * 1024
    return time.time() - start, peak, proc.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", type=int, nargs="+", default=[256, 1024, 2048, 4096])
    ap.add_argument("--out", type=Path, default=Path("results"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-codec-memory-"))
    torch.manual_seed(0)
    schedule = Schedule.named("checkerboard", 2)
    model = MultistageContextModel(schedule, 64, 64, ModelConfig(prior_scale=True))
    torch.save(model.state_dict(), work / "cb.pt")
    common = ["--schedule", str(save_schedule(schedule, work / "cb.json")), "--weights", str(work / "cb.pt")]
    rows = []
    for side in args.sides:
        yy, xx = np.mgrid[0:side, 0:side]
        picture = np.stack([(xx // 16) % 256, (yy // 16) % 256, ((xx + yy) // 32) % 256], -1).astype(np.uint8)
        png, osc = work / f"{side}.png", work / f"{side}.osc"
        Image.fromarray(picture).save(png)
        enc_s, enc_peak, _ = measured(["encode", str(png), str(osc), *common])
        dec_s, dec_peak, _ = measured(["decode", str(osc), str(work / f"{side}-out.png"), *common])
        rows.append({"side": side, "megapixels": side * side / 1e6, "png_bytes": png.stat().st_size,
                     "bitstream_bytes": osc.stat().st_size, "encode_s": enc_s, "encode_peak_mib": enc_peak / 2**20,
                     "decode_s": dec_s, "decode_peak_mib": dec_peak / 2**20})
        print(rows[-1], flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    args.out.mkdir(exist_ok=True)
    (args.out / "bench_codec_memory.json").write_text(json.dumps(
        {"machine": machine, "rows": rows}, indent=1) + "\n")
    lines = ["# Codec memory: peak resident memory of encode and decode against image size", "",
             f"Machine: {machine}. Command: `python benchmarks/bench_codec_memory.py --sides "
             f"{' '.join(map(str, args.sides))}`. Each command in its own process; peak resident memory of that "
             "process (torch and the codec loaded included), its VmHWM. Synthetic blocky-gradient images, an "
             "untrained checkerboard context model (memory depends on the size, not the weights). The analysis "
             "and synthesis transforms run on tiles of 16x16 latents (256x256 pixels) with 4 latents of overlap; "
             "an image of one tile or less in one piece.", "",
             "| side | megapixels | PNG bytes | bitstream bytes | encode s | encode peak MiB | decode s | "
             "decode peak MiB |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['side']} | {r['megapixels']:.2f} | {r['png_bytes']} | {r['bitstream_bytes']} | "
              f"{r['encode_s']:.1f} | {r['encode_peak_mib']:.0f} | {r['decode_s']:.1f} | {r['decode_peak_mib']:.0f} |"
              for r in rows]
    (args.out / "bench_codec_memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Operating point of the bundled base codec on held-out photos, next to JPEG (Pillow) at a matched rate.

    python experiments/fetch_photos.py
    python experiments/evaluate_base_codec.py

For every val/test photo (never seen in codec training): the codec's rate in
bits per pixel (ideal code length of y under the hyperprior plus z under the
factorized prior, over the photo's own pixel count; the image is padded to a
multiple of 64 by edge replication) and RGB PSNR of the 8-bit reconstruction.
JPEG: Pillow, 4:2:0, the quality whose file size is closest to the codec's
rate on that photo. Writes results/base_codec_operating_point.csv and .md.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ordersearch.data import read_image
from ordersearch.models import BaseCodec


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / mse)


def jpeg_at(image: np.ndarray, target_bpp: float) -> tuple[int, float, float]:
    """(quality, bpp, PSNR) of the Pillow JPEG whose rate is closest to ``target_bpp``."""
    h, w = image.shape[:2]
    best = None
    for q in range(1, 96):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=q)
        bpp = 8 * buf.tell() / (h * w)
        if best is None or abs(bpp - target_bpp) < abs(best[1] - target_bpp):
            rec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            best = (q, bpp, psnr(image, rec))
    return best


def main() -> None:
    photos = Path("data/photos")
    codec = BaseCodec.load()
    torch.set_grad_enabled(False)
    rows = []
    with open(photos / "manifest.csv") as f:
        entries = [r for r in csv.DictReader(f) if r["split"] in ("val", "test")]
    for r in entries:
        image = read_image(photos / f"{r['name']}.png")
        bpp, p = codec.operating_point(image)
        q, jbpp, jp = jpeg_at(image, bpp)
        rows.append({"photo": r["name"], "split": r["split"], "width": image.shape[1], "height": image.shape[0],
                     "codec_bpp": round(bpp, 4), "codec_psnr": round(p, 2),
                     "jpeg_quality": q, "jpeg_bpp": round(jbpp, 4), "jpeg_psnr": round(jp, 2)})
        print(rows[-1], flush=True)
    out = Path("results")
    with open(out / "base_codec_operating_point.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    info = torch.load(Path("ordersearch/models/weights/base_codec.pt"), weights_only=True)["info"]
    lines = ["# Base codec operating point (held-out photos)", "",
             "Command: `python experiments/evaluate_base_codec.py` (photos from `experiments/fetch_photos.py`).",
             f"Codec: bundled scale hyperprior (N=96, M=64, Nz=64), trained {info.get('steps')} steps "
             f"({info.get('seconds')} s on {info.get('device')}, lambda {info.get('lam')}) on the 39 train photos.",
             "Rate: ideal code length (y under the hyperprior + z under the factorized prior) per pixel. "
             "JPEG: Pillow 4:2:0 at the quality whose rate is closest to the codec's on each photo.", "",
             "| split | photos | codec bpp | codec PSNR (dB) | JPEG bpp | JPEG PSNR (dB) |", "|---|---|---|---|---|---|"]
    for split in ("val", "test"):
        sel = [r for r in rows if r["split"] == split]
        mean = lambda k: np.mean([r[k] for r in sel])  # noqa: E731
        lines.append(f"| {split} | {len(sel)} | {mean('codec_bpp'):.3f} | {mean('codec_psnr'):.2f} | "
                     f"{mean('jpeg_bpp'):.3f} | {mean('jpeg_psnr'):.2f} |")
    lines += ["", "Where even JPEG quality 1 spends more bits than the codec, JPEG is shown at that higher rate.",
              "Per photo: `base_codec_operating_point.csv`."]
    (out / "base_codec_operating_point.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    ref = next(r for r in rows if r["photo"] == "matplotlib-grace_hopper")
    (out / "base_codec_reference.json").write_text(json.dumps(
        {"photo": "matplotlib sample_data/grace_hopper.jpg", "bpp": ref["codec_bpp"], "psnr": ref["codec_psnr"]},
        indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Train the bundled base codec (scale hyperprior) on the train split of the offline photos.

    python experiments/fetch_photos.py
    python experiments/train_base_codec.py --device cuda --minutes 7 --out ordersearch/models/weights/base_codec.pt

Loss: bits per pixel + lambda * 255^2 * MSE (lambda 0.0067, the operating
point CompressAI calls quality 3, about 0.3 bpp). Random 256x256 crops with
random horizontal flips, batch 16, Adam with cosine decay from 3e-4 over the
budget (``--steps`` or ``--minutes``, whichever ends first; the schedule follows
whichever is further along). Writes the weights (float16), a CSV log and a
loss-curve PNG next to ``--log``. Only train-split photos are read: the
validation and test photos stay unseen by the codec.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ordersearch.models import BaseCodec


def load_photos(folder: Path, split: str) -> list[np.ndarray]:
    with open(folder / "manifest.csv") as f:
        names = [r["name"] for r in csv.DictReader(f) if r["split"] == split]
    return [np.asarray(Image.open(folder / f"{n}.png").convert("RGB")) for n in names]


def plot_log(log: Path, png: Path) -> None:
    """Loss, rate and PSNR against steps, from the CSV log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log) as f:
        rows = list(csv.DictReader(f))
    step = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, label in zip(axes, ("loss", "bpp", "psnr"), ("loss (bpp + lambda 255^2 MSE)",
                                                               "rate (bpp, train crops)", "PSNR (dB, train crops)")):
        ax.plot(step, [float(r[key]) for r in rows])
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        if key == "loss":
            ax.set_yscale("log")
    fig.suptitle("base codec training (means over 200 steps)", fontsize=11)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=Path("data/photos"))
    ap.add_argument("--out", type=Path, default=Path("ordersearch/models/weights/base_codec.pt"))
    ap.add_argument("--log", type=Path, default=Path("results/base_codec_training.csv"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lam", type=float, default=0.0067)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    dev = torch.device(args.device)
    photos = [torch.from_numpy(p.copy()).permute(2, 0, 1).to(dev) for p in load_photos(args.photos, "train")]
    print(f"{len(photos)} train photos on {dev}", flush=True)
    model = BaseCodec().to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    log = open(args.log, "w", newline="")
    writer = csv.writer(log)
    writer.writerow(["step", "seconds", "lr", "loss", "bpp", "psnr"])
    c = args.crop
    start = time.time()
    acc = np.zeros(3)
    step = 0
    while True:
        progress = max(step / args.steps, (time.time() - start) / (60 * args.minutes))
        if progress >= 1:
            break
        lr = 1e-5 + 0.5 * (args.lr - 1e-5) * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr
        crops = []
        for i in rng.integers(len(photos), size=args.batch):
            p = photos[i]
            y0, x0 = rng.integers(p.shape[1] - c + 1), rng.integers(p.shape[2] - c + 1)
            crop = p[:, y0:y0 + c, x0:x0 + c]
            crops.append(crop.flip(-1) if rng.random() < 0.5 else crop)
        x = torch.stack(crops).float() / 255
        out = model(x)
        pixels = x.shape[0] * c * c
        bpp = (out["bits_y"] + out["bits_z"]) / pixels
        mse = torch.mean((out["x_hat"] - x) ** 2)
        loss = bpp + args.lam * 255**2 * mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        acc += [loss.item(), bpp.item(), 10 * math.log10(1 / max(mse.item(), 1e-10))]
        if step % 200 == 0:
            acc /= 200
            writer.writerow([step, round(time.time() - start, 1), f"{lr:.2e}", *np.round(acc, 4)])
            log.flush()
            print(f"step {step} {time.time() - start:.0f}s lr {lr:.1e} loss {acc[0]:.4f} "
                  f"bpp {acc[1]:.4f} psnr {acc[2]:.2f}", flush=True)
            acc[:] = 0
        if step % 2000 == 0:
            model.save(args.out, steps=step, seconds=round(time.time() - start), device=str(dev), lam=args.lam)
    model.save(args.out, steps=step, seconds=round(time.time() - start), device=str(dev), lam=args.lam,
               crop=c, batch=args.batch, seed=args.seed)
    log.close()
    plot_log(args.log, args.log.with_suffix(".png"))
    print(f"done: {step} steps in {time.time() - start:.0f}s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()

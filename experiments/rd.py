"""Codec-level rate-distortion of schedules: joint fine-tuning at several lambdas, real files, BD-rate.

    python experiments/fetch_photos.py        # data/photos: the train / val / test photos
    python experiments/rd.py [--steps 450] [--base-steps 1500] [--only single checkerboard ...] [--device auto]

1. Operating points: for every lambda but the bundled codec's (0.0067), the
   bundled codec fine-tuned at that lambda with no spatial context
   (``single``) for ``--base-steps`` steps at learning rate 3e-4: the base
   codec of that lambda.
2. Every schedule fine-tuned jointly (transforms, hyperprior, context model;
   ``ordersearch.evaluation.joint.fine_tune``) from the base of each lambda for
   ``--steps`` steps (the cosine protocol the committed results/rd were made
   with, ``lr_drops=0``), early stopping on the val photos. Every context
   model starts from zero, so no schedule starts ahead of another.
3. Real files of every codec on the test photos (``codec.rd.measure``):
   ``results/rd/points.csv`` (bpp, PSNR, MS-SSIM, times), ``bd_rate.csv``
   (BD-rate on PSNR and on MS-SSIM in dB, PCHIP, paired bootstrap over
   photos, against serial, checkerboard and single),
   ``figures/rd.png`` and ``ranking.md``: the order of the schedules by
   BD-rate against single at codec level against their order on frozen
   latents (``results/patch4/evaluations.csv``), Kendall tau with a
   bootstrap interval over photos.

Codec files go to ``runs/rd/`` (git-ignored); one that exists is reused, so
an interrupted experiment resumes. Steps per point, seconds and the machine
are in ``results/rd/runs.csv``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ordersearch.codec.codec_file import load_codec, save_codec
from ordersearch.evaluation.joint import JointConfig, fine_tune
from ordersearch.models.joint import SERIAL
from ordersearch.codec.rd import bd_rate_table, bd_rate_tables, measure, plot_rd
from ordersearch.data import photo_splits, read_image
from ordersearch.device import resolve_device
from ordersearch.files import atomic_write
from ordersearch.schedule_io import load_schedule

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = 0.0067
#: 0.13-0.41 bpp on average over the test photos at the default budget (0.0067: the bundled codec)
LAMBDAS = (0.0009, 0.0025, 0.0067, 0.03)
SCHEDULES = {  # label -> schedule file (serial: the serial raster model)
    "single": "results/patch2/schedules/single.json",
    "checkerboard": "results/patch2/schedules/checkerboard.json",
    "best-2-stage-4x4": "results/patch4/schedules/best-2-stage.json",
    "best-4-stage-4x4": "results/patch4/schedules/best-4-stage.json",
    "lin2023": "results/patch4/schedules/lin2023.json",
    "run-best-4x4": "results/patch4/best.json",
    "worst-cheap-4x4": "results/patch4/schedules/control-worst-cheap.json",
    "serial": SERIAL,
}
#: frozen-latent labels of results/patch4 for the ranking comparison
FROZEN = {"single": "single", "checkerboard": "checkerboard", "best-2-stage-4x4": "best-2-stage",
          "best-4-stage-4x4": "best-4-stage", "lin2023": "lin2023", "worst-cheap-4x4": "control-worst-cheap"}


def kendall(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=ROOT / "data/photos")
    ap.add_argument("--work", type=Path, default=ROOT / "runs/rd")
    ap.add_argument("--out", type=Path, default=ROOT / "results/rd")
    ap.add_argument("--lambdas", type=float, nargs="+", default=list(LAMBDAS))
    ap.add_argument("--only", nargs="+", choices=list(SCHEDULES), default=list(SCHEDULES))
    ap.add_argument("--steps", type=int, default=450)
    ap.add_argument("--base-steps", type=int, default=1500)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args()
    device = resolve_device(args.device)
    photos = photo_splits(args.photos)
    train = [read_image(p) for p in photos["train"]]
    val = [read_image(p) for p in photos["val"]]
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log = []

    def tuned(label: str, schedule, lmbda: float, steps: int, base_file: Path | None, path: Path,
              lr: float = JointConfig.lr) -> Path:
        if path.exists():
            return path
        start = time.time()
        base = load_codec(base_file)[0].base.float() if base_file else None
        result = fine_tune(schedule, train, val, JointConfig(lmbda=lmbda, max_steps=steps, lr=lr, lr_drops=0), device, base,
                           checkpoint=path.with_suffix(".partial"), progress=True)
        seconds = time.time() - start
        save_codec(path, schedule, result.model, {"label": label, "lmbda": lmbda, "steps": result.steps,
                                                  "best_step": result.best_step, "hit_cap": result.hit_cap,
                                                  "seconds": round(seconds, 1), "device": str(device)})
        log.append({"label": label, "lmbda": lmbda, "steps": result.steps, "best_step": result.best_step,
                    "hit_cap": result.hit_cap, "seconds": round(seconds, 1), "device": str(device),
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"})
        print(log[-1], flush=True)
        return path

    single = load_schedule(ROOT / SCHEDULES["single"])[0]
    bases = {lmbda: None if lmbda == BUNDLED else
             # a higher learning rate than a fine-tuning's: the base has to move its operating point
             tuned("base", single, lmbda, args.base_steps, None, args.work / f"base-{lmbda}.pt", lr=3e-4)
             for lmbda in args.lambdas}
    files = []
    for label in args.only:
        schedule = SERIAL if SCHEDULES[label] == SERIAL else load_schedule(ROOT / SCHEDULES[label])[0]
        for lmbda in args.lambdas:
            files.append(tuned(label, schedule, lmbda, args.steps, bases[lmbda], args.work / f"{label}-{lmbda}.pt"))
    if log:
        runs = args.out / "runs.csv"
        old = pd.read_csv(runs) if runs.exists() else pd.DataFrame()
        atomic_write(runs, pd.concat([old, pd.DataFrame(log)]).to_csv(index=False).encode())

    rows = []
    for path in files:
        codec, info = load_codec(path)
        rows += measure(codec, photos["test"], info["label"], info["lmbda"])
        print(f"measured {path.name}", flush=True)
    points = pd.DataFrame(rows)
    assert points.exact.all(), "a decoded image differs from the encoder's reconstruction"
    atomic_write(args.out / "points.csv", points.to_csv(index=False).encode())
    table = bd_rate_tables(points, ["serial", "checkerboard", "single"], resamples=args.resamples)
    atomic_write(args.out / "bd_rate.csv", table.to_csv(index=False).encode())
    plot_rd(args.out)
    ranking(points, table, args.out, args.resamples)


def run_leader() -> str:
    """The frozen-latent label of results/patch4/best.json: the candidate it is (or is a translate of), as the
    run wrote it (``provenance.strategy``)."""
    label = load_schedule(ROOT / SCHEDULES["run-best-4x4"])[1].provenance.get("strategy")
    if not label or not (ROOT / "results/patch4/schedules" / f"{label}.json").is_file():
        raise SystemExit(f"results/patch4/best.json names no candidate of results/patch4/schedules ({label!r})")
    return label


def ranking(points: pd.DataFrame, table: pd.DataFrame, out: Path, resamples: int) -> None:
    """ranking.md: codec-level BD-rate vs single against the frozen-latent rate, Kendall tau with an interval."""
    frozen = pd.read_csv(ROOT / "results/patch4/evaluations.csv").groupby("schedule").bits_per_latent.mean()
    frozen = frozen.rename(index={run_leader(): "run-best-4x4"})
    vs_single = table[(table.reference == "single") & (table.metric == "psnr")].set_index("label")
    vs_single.loc["single", ["bd_rate", "low", "high"]] = 0.0  # the reference itself
    labels = [k for k in vs_single.index if FROZEN.get(k, k) in frozen.index]
    frozen_rate = [float(frozen[FROZEN.get(k, k)]) for k in labels]
    lines = ["# Does the frozen-latent ranking predict the codec-level ranking?", "",
             "Codec level: BD-rate against `single` (joint fine-tuning, real files, test photos). Frozen latents: "
             "mean dedicated rate in results/patch4/evaluations.csv (bits per latent, test split).", "",
             "| schedule | frozen latents (bits/latent) | codec BD-rate vs single (%) | 95% interval |", "|---|---|---|---|"]
    for k, f in zip(labels, frozen_rate):
        r = vs_single.loc[k]
        lines.append(f"| {k} | {f:.4f} | {r.bd_rate:+.2f} | [{r.low:+.2f}, {r.high:+.2f}] |")
    if len(labels) >= 3:
        codec_rate = [float(vs_single.loc[k].bd_rate) for k in labels]
        tau = kendall(frozen_rate, codec_rate)
        rng = np.random.default_rng(0)
        images = sorted(set(points.image))
        taus = []
        for _ in range(min(resamples, 200)):
            pick = [images[i] for i in rng.choice(len(images), len(images))]
            sub = pd.concat([points[points.image == im].assign(image=f"{im}#{j}") for j, im in enumerate(pick)])
            t = bd_rate_table(sub, ["single"], resamples=0).set_index("label")
            if all(k in t.index and not np.isnan(t.loc[k].bd_rate) for k in labels if k != "single"):
                taus.append(kendall(frozen_rate, [0.0 if k == "single" else float(t.loc[k].bd_rate) for k in labels]))
        low, high = np.quantile(taus, [0.025, 0.975]) if taus else (np.nan, np.nan)
        lines += ["", f"Kendall tau between the two rankings over {len(labels)} schedules: {tau:+.2f}, 95% bootstrap "
                  f"interval over test photos [{low:+.2f}, {high:+.2f}] ({len(taus)} resamples)."]
    atomic_write(out / "ranking.md", ("\n".join(lines) + "\n").encode())


if __name__ == "__main__":
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    main()

"""Are the per-position models data-starved? The consistency check across patch sizes, per model width.

    python experiments/starvation.py [--seeds 2] [--widths 0 32] [--device auto]

On the built-in latents (train / val / test as `run`), with the default
protocol but the context width (``ModelConfig.context_channels``, 0: the
paper's 2M = 128) varied: checkerboard written as a 2x2 and as a 4x4
schedule is the same decoding order, so its two rates may differ only by the
protocol's bias (the 4x4 model has four times the context weights for the
same latents); lin2023 4x4 shows what the width costs in rate. Every
comparison is paired over test images and seeds with the pooled seed
variance and a 95% interval (``evaluation.compare``). Also counts the
trainings that hit the step cap. Writes ``results/starvation.md`` and
``results/starvation.json``; the evaluations are kept in ``runs/starvation``
(resumable).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from ordersearch import Schedule
from ordersearch.evaluation import EvaluationStore, Evaluator, TrainConfig, compare, pooled_seed_variance
from ordersearch.models import ModelConfig, builtin

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--widths", type=int, nargs="+", default=[0, 32])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--store", type=Path, default=ROOT / "runs/starvation")
    args = ap.parse_args()
    latents = builtin()
    store = EvaluationStore(args.store)
    schedules = {"checkerboard 2x2": Schedule.named("checkerboard", 2),
                 "checkerboard 4x4": Schedule.named("checkerboard", 4), "lin2023 4x4": Schedule.named("lin2023", 4)}
    out, lines = {}, []
    for width in args.widths:
        config = TrainConfig(model=ModelConfig(context_channels=width or None))
        evaluator = Evaluator(latents, config, args.device, store, progress=False)
        start = time.time()
        evs = {k: evaluator.evaluate_many([(s, seed) for seed in range(args.seeds)]) for k, s in schedules.items()}
        seconds = time.time() - start
        pooled = pooled_seed_variance([(evs["checkerboard 2x2"], evs["checkerboard 4x4"]),
                                       (evs["checkerboard 4x4"], evs["lin2023 4x4"])])
        gap = compare(evs["checkerboard 4x4"], evs["checkerboard 2x2"], 0.95, pooled=pooled)
        capped = sum(e.steps >= config.max_steps for group in evs.values() for e in group)
        label = "128 (2M, the paper's)" if not width else str(width)
        out[label] = {"rates": {k: float(np.mean([e.rate() for e in g])) for k, g in evs.items()},
                      "checkerboard_4x4_minus_2x2": {"difference": gap.difference, "relative": gap.relative,
                                                     "low": gap.low, "high": gap.high, "verdict": gap.verdict},
                      "trainings": sum(len(g) for g in evs.values()), "hit_step_cap": capped,
                      "seconds": round(seconds, 1), "device": str(evaluator.device)}
        lines.append(f"| {label} | " + " | ".join(f"{out[label]['rates'][k]:.4f}" for k in schedules)
                     + f" | {gap.difference:+.4f} ({100 * gap.relative:+.2f}%) [{gap.low:+.4f}, {gap.high:+.4f}]: "
                       f"{'same' if gap.verdict == 'indistinguishable' else 'different'} | {capped} of "
                       f"{out[label]['trainings']} |")
        print(lines[-1], flush=True)
    store.close()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    (ROOT / "results/starvation.json").write_text(json.dumps({"machine": machine, "seeds": args.seeds,
                                                              "widths": out}, indent=1) + "\n")
    md = ["# Data starvation of the per-position models: checkerboard at 2x2 and at 4x4", "",
          f"Command: `python experiments/starvation.py --seeds {args.seeds} --widths {' '.join(map(str, args.widths))}`."
          f" Built-in latents, test split (12 photos), bits per latent element of y; default protocol (1000-step "
          f"warm start, up to 1200 steps, early stopping on val) except the context width; {args.seeds} seeds; "
          f"machine {machine}. The last two columns: checkerboard 4x4 - 2x2 (the same decoding order: a non-zero "
          "difference is the protocol's bias), paired, pooled seed variance, 95% interval; trainings that hit the "
          "1200-step cap.", "",
          "| context channels | checkerboard 2x2 | checkerboard 4x4 | lin2023 4x4 | 4x4 - 2x2 | at the cap |",
          "|---|---|---|---|---|---|", *lines]
    (ROOT / "results/starvation.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()

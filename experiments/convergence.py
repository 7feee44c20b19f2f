"""Does training to a plateau change what verification says? The default protocol against plateau training.

    python experiments/convergence.py [--seeds 2] [--device auto]

On the built-in latents (train / val / test as `run`), the same schedules
trained with two protocols:

- cosine: the default so far, a cosine learning rate over 1200 steps (every
  committed training ran into that cap with validation still improving);
- plateau: a constant learning rate divided by 10 at each of the first two
  plateaus (4 validations, 400 steps, without improvement), stopped at the
  third, capped at 8000 steps (``TrainConfig(lr_drops=2, patience=4,
  max_steps=8000)``).

Schedules: 4x4 raster, lin2023 and the committed run's negative control
(the cheap table's worst order), checkerboard written as 2x2 and as 4x4
(the same decoding order: their difference is the protocol's bias). For each
protocol: rates, steps, trainings at the cap, and the differences that
verification decides on, paired over test images and seeds with the pooled
seed variance (95% intervals, ``evaluation.compare``). Writes
``results/convergence.md`` and ``results/convergence.json``; evaluations are
kept in ``runs/convergence`` (resumable).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ordersearch import Schedule
from ordersearch.device import describe_machine
from ordersearch.evaluation import EvaluationStore, Evaluator, TrainConfig, compare, pooled_seed_variance
from ordersearch.models import builtin

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = {"cosine, 1200 steps (the earlier default)": TrainConfig(max_steps=1200, patience=5, lr_drops=0),
             "plateau (lr_drops 2, patience 4, cap 8000)": TrainConfig(max_steps=8000, lr_drops=2, patience=4)}
WORST_CHEAP = [[0, 15, 13, 3], [5, 12, 14, 7], [6, 8, 11, 4], [2, 9, 10, 1]]  # results/patch4 control-worst-cheap
PAIRS = [("lin2023 4x4", "raster 4x4"), ("worst-cheap 4x4", "raster 4x4"),
         ("checkerboard 4x4", "checkerboard 2x2"), ("raster 4x4", "checkerboard 2x2")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--store", type=Path, default=ROOT / "runs/convergence")
    args = ap.parse_args()
    latents = builtin()
    store = EvaluationStore(args.store)
    schedules = {"raster 4x4": Schedule.named("raster", 4), "lin2023 4x4": Schedule.named("lin2023", 4),
                 "worst-cheap 4x4": Schedule.from_grid(WORST_CHEAP),
                 "checkerboard 2x2": Schedule.named("checkerboard", 2),
                 "checkerboard 4x4": Schedule.named("checkerboard", 4)}
    out = {}
    for label, config in PROTOCOLS.items():
        evaluator = Evaluator(latents, config, args.device, store, progress=False)
        start = time.time()
        evs = {k: evaluator.evaluate_many([(s, seed) for seed in range(args.seeds)]) for k, s in schedules.items()}
        pooled = pooled_seed_variance([(evs[a], evs[b]) for a, b in PAIRS])
        comparisons = {}
        for a, b in PAIRS:
            c = compare(evs[a], evs[b], 0.95, pooled=pooled)
            comparisons[f"{a} - {b}"] = {"difference": c.difference, "relative": c.relative, "low": c.low,
                                         "high": c.high, "verdict": c.verdict}
        out[label] = {
            "rates": {k: float(np.mean([e.rate() for e in g])) for k, g in evs.items()},
            "steps": {k: [e.steps for e in g] for k, g in evs.items()},
            "hit_step_cap": sum(e.steps >= config.max_steps for g in evs.values() for e in g),
            "trainings": sum(len(g) for g in evs.values()), "comparisons": comparisons,
            "seconds_per_training": float(np.mean([e.seconds for g in evs.values() for e in g])),
            "seconds": round(time.time() - start, 1), "device": str(evaluator.device)}
        print(label, json.dumps(out[label]["rates"]), flush=True)
    store.close()
    machine = describe_machine()
    (ROOT / "results/convergence.json").write_text(json.dumps({"machine": machine, "seeds": args.seeds,
                                                               "protocols": out}, indent=1) + "\n")
    names = list(PROTOCOLS)
    md = ["# Training to a plateau against the 1200-step cosine protocol", "",
          f"Command: `python experiments/convergence.py --seeds {args.seeds}`. Built-in latents, test split (12 "
          f"photos), bits per latent element of y, {args.seeds} seeds, machine {machine}. Protocols: "
          + "; ".join(f"{k}" for k in names) + " (both after the 1000-step prior-only warm start).", "",
          "| schedule | " + " | ".join(names) + " | change |", "|---|" + "---|" * (len(names) + 1)]
    for k in schedules:
        a, b = (out[n]["rates"][k] for n in names)
        steps = [f"{out[n]['rates'][k]:.4f} ({'/'.join(map(str, out[n]['steps'][k]))} steps)" for n in names]
        md.append(f"| {k} | " + " | ".join(steps) + f" | {100 * (b / a - 1):+.2f}% |")
    md += ["", "Differences verification decides on (A - B, paired over images and seeds, pooled seed variance, "
           "95% interval):", "", "| A - B | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for pair in out[names[0]]["comparisons"]:
        cells = []
        for n in names:
            c = out[n]["comparisons"][pair]
            cells.append(f"{c['difference']:+.4f} ({100 * c['relative']:+.2f}%) [{c['low']:+.4f}, {c['high']:+.4f}]"
                         f": {c['verdict']}")
        md.append(f"| {pair} | " + " | ".join(cells) + " |")
    md += ["", "Trainings at the step cap: " + "; ".join(f"{n}: {out[n]['hit_step_cap']} of {out[n]['trainings']}"
                                                      for n in names) + ". Seconds per training: "
           + "; ".join(f"{n}: {out[n]['seconds_per_training']:.0f}" for n in names) + "."]
    (ROOT / "results/convergence.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()

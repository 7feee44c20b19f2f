"""Time and peak memory of the estimators and dedicated evaluation on the built-in latents.

    python benchmarks/bench_harness.py [--device cpu]

Each pair of measurements runs in its own process so that its peak resident
memory (ru_maxrss) is its own. Targets from the harness issue: one dedicated 4x4
order evaluation < 2 min, one per-set evaluation < 20 s, training the shared
scorer < 5 min, the full 4x4 cost table < 5 min. Dedicated evaluations are
timed twice: in a fresh process (including the shared prior-only warm start)
and as the next evaluation in the same process (what every evaluation after
the first costs in a run). Writes results/bench_harness.json and .md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path

#: task -> [(measurement, target seconds)]; each task runs in one fresh process, its measurements in order
TASKS = {
    "dedicated": [("dedicated 4x4 order (lin2023), fresh process", 120),
                  ("dedicated 4x4 order (raster), warm start cached", 120)],
    "per-set": [("per-set f(C), 4x4 set of 8 positions, fresh process", 20),
                ("per-set f(C), another set, warm start cached", 20)],
    "linear-gaussian": [("linear-Gaussian fit (train split)", None),
                        ("linear-Gaussian 4x4 cost table (32,768 sets)", 300)],
    "shared": [("shared scorer training (4x4 sets)", 300), ("shared-scorer 4x4 cost table (32,768 sets)", 300)],
}


def _run(task: str, device: str, queue) -> None:
    import torch

    from ordersearch import Schedule
    from ordersearch.estimators import LinearGaussianEstimator, fit_shared
    from ordersearch.evaluation import Evaluator, TrainConfig
    from ordersearch.models import builtin

    splits = builtin().split()
    torch.manual_seed(0)
    rows = []

    def timed(label, target, fn):
        start = time.time()
        extra = fn() or {}
        rows.append({"task": label, "seconds": round(time.time() - start, 1), "target_seconds": target, **extra})

    evaluator = Evaluator(splits, TrainConfig(), device, progress=False)  # keeps its warm starts, not a store

    def dedicated(schedule):
        e = evaluator.evaluate(schedule)
        return {"bits_per_latent": e.bits_per_latent, "steps": e.steps}

    def per_set(position):
        e = evaluator.evaluate_context(Schedule.named("raster", 4).context_set(position), 4)
        return {"bits_per_latent": e.bits_per_latent, "steps": e.steps}

    (first, t1), (second, t2) = TASKS[task]
    if task == "dedicated":
        timed(first, t1, lambda: dedicated(Schedule.named("lin2023", 4)))
        timed(second, t2, lambda: dedicated(Schedule.named("raster", 4)))
    elif task == "per-set":
        timed(first, t1, lambda: per_set((2, 0)))
        timed(second, t2, lambda: per_set((2, 1)))
    else:
        est = {}

        def fit():
            if task == "linear-gaussian":
                est["e"] = LinearGaussianEstimator.from_latents(splits.train, 5)
                return {}
            est["e"] = fit_shared(splits, 4, device=device, progress=False)
            return {"steps": est["e"].curve[-1][0]}

        def table():
            est["e"].cost_table(4)

        timed(first, t1, fit)
        timed(second, t2, table)
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    queue.put([{**r, "peak_rss_mb": peak} for r in rows])


def main() -> None:
    from ordersearch.evaluation import TrainConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("results"))
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for task in TASKS:
        queue = ctx.Queue()
        p = ctx.Process(target=_run, args=(task, args.device, queue))
        p.start()
        rows += queue.get()
        p.join()
        print(rows[-2:], flush=True)
    import os

    import torch

    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
               f"device {args.device}")
    args.out.mkdir(exist_ok=True)
    (args.out / "bench_harness.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    lines = ["# Harness benchmarks (built-in latents)", "", f"Machine: {machine}. Command: "
             f"`python benchmarks/bench_harness.py --device {args.device}`.", "",
             "| task | seconds | target (s) | peak RSS (MB) | notes |", "|---|---|---|---|---|"]
    for r in rows:
        notes = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
                          if k in ("bits_per_latent", "steps"))
        lines.append(f"| {r['task']} | {r['seconds']} | {r['target_seconds'] or '-'} | {r['peak_rss_mb']} | {notes} |")
    lines += ["", "Measurements come in pairs from one fresh process each; the peak resident memory is that "
              "process's. \"fresh process\" timings include the shared warm start (a prior-only model, "
              "`TrainConfig.warm_steps` = 1000 steps, trained once per process, data and seed); \"warm start "
              "cached\" is the cost of every further evaluation in a run. Default TrainConfig: up to "
              f"{TrainConfig().max_steps} steps with early stopping on val."]
    (args.out / "bench_harness.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

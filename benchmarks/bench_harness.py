"""Time and peak memory of the harness's estimators on the built-in latents.

    python benchmarks/bench_harness.py [--device cpu]

Each measurement runs in its own process so that its peak resident memory
(ru_maxrss) is its own. Targets from the harness issue: one dedicated 4x4
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

TARGETS = {"dedicated 4x4 order (lin2023), fresh process": 120,
           "dedicated 4x4 order (raster), warm start cached": 120,
           "per-set f(C), 4x4 set of 8 positions, fresh process": 20,
           "per-set f(C), another set, warm start cached": 20,
           "linear-Gaussian fit (train split)": None, "linear-Gaussian 4x4 cost table (32,768 sets)": 300,
           "shared scorer training (4x4 sets)": 300, "shared-scorer 4x4 cost table (32,768 sets)": 300}


def _run(task: str, device: str, queue) -> None:
    import torch

    from ordersearch import Schedule
    from ordersearch.data import builtin
    from ordersearch.harness import TrainConfig, evaluate, evaluate_context
    from ordersearch.models.linear_gaussian import LinearGaussianScorer
    from ordersearch.models.shared import train_shared_scorer

    splits = builtin().split()
    torch.manual_seed(0)
    start = time.time()
    extra = {}
    if task.startswith("dedicated"):
        if "cached" in task:
            evaluate(Schedule.named("lin2023", 4), splits, TrainConfig(), device=device, progress=False)
            start = time.time()
        e = evaluate(Schedule.named("raster" if "cached" in task else "lin2023", 4), splits, TrainConfig(),
                     device=device, progress=False)
        extra = {"bits_per_latent": e.bits_per_latent, "steps": e.steps}
    elif task.startswith("per-set"):
        if "cached" in task:
            evaluate_context(Schedule.named("raster", 4).context_set((2, 0)), 4, splits, device=device,
                             progress=False)
            start = time.time()
        cset = Schedule.named("raster", 4).context_set((2, 1) if "cached" in task else (2, 0))
        e = evaluate_context(cset, 4, splits, TrainConfig(), device=device, progress=False)
        extra = {"bits_per_latent": e.bits_per_latent, "steps": e.steps}
    elif task.startswith("linear-Gaussian fit"):
        LinearGaussianScorer.from_latents(splits.train, 5)
    elif task.startswith("linear-Gaussian"):
        est = LinearGaussianScorer.from_latents(splits.train, 5)
        start = time.time()
        est.cost_table(4)
    else:
        shared = train_shared_scorer(splits, 4, device=device, progress=False)
        extra = {"steps": shared.curve[-1][0]}
        if "table" in task:
            start = time.time()
            shared.cost_table()
    seconds = time.time() - start
    queue.put({"task": task, "seconds": round(seconds, 1),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), **extra})


def main() -> None:
    from ordersearch.harness import TrainConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("results"))
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for task in TARGETS:
        queue = ctx.Queue()
        p = ctx.Process(target=_run, args=(task, args.device, queue))
        p.start()
        row = queue.get()
        p.join()
        row["target_seconds"] = TARGETS[task]
        rows.append(row)
        print(row, flush=True)
    import os

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, device {args.device}"
    args.out.mkdir(exist_ok=True)
    (args.out / "bench_harness.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    lines = ["# Harness benchmarks (built-in latents)", "", f"Machine: {machine}. Command: "
             f"`python benchmarks/bench_harness.py --device {args.device}`.", "",
             "| task | seconds | target (s) | peak RSS (MB) | notes |", "|---|---|---|---|---|"]
    for r in rows:
        notes = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
                          if k in ("bits_per_latent", "steps"))
        lines.append(f"| {r['task']} | {r['seconds']} | {r['target_seconds'] or '-'} | {r['peak_rss_mb']} | {notes} |")
    lines += ["", "Each task runs in a fresh process. \"fresh process\" timings include the shared warm start (a "
              "prior-only model, `TrainConfig.warm_steps` = 1000 steps, trained once per process, data and "
              "seed); \"warm start cached\" is the cost of every further evaluation in a run. Default "
              f"TrainConfig: up to {TrainConfig().max_steps} steps with early stopping on val."]
    (args.out / "bench_harness.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

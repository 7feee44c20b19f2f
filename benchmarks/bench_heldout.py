"""Seconds and peak memory of the held-out estimator's cost tables (2x2, 3x3, 4x4) on the built-in latents.

    python benchmarks/bench_heldout.py

The target: the whole 4x4 table (32,768 context sets) in at most 5 minutes
and 2 GB on 2 cores. Peak memory is the process's own (VmHWM: torch, the
built-in latents and the fitting together). Writes
``results/bench_heldout.json`` and ``results/bench_heldout.md``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from ordersearch.device import describe_machine
from ordersearch.estimators import HeldoutConfig, HeldoutEstimator
from ordersearch.files import peak_memory_bytes
from ordersearch.models import builtin

RESULTS = Path(__file__).resolve().parent.parent / "results"


def main() -> None:
    splits = builtin().split()
    start = time.time()
    estimator = HeldoutEstimator.from_splits(splits, 5, HeldoutConfig())
    seconds = {"windows and predictors": time.time() - start}
    for n in (2, 3, 4):
        start = time.time()
        estimator.cost_table(n)
        seconds[f"{n}x{n} table"] = time.time() - start
        print(f"{n}x{n}: {seconds[f'{n}x{n} table']:.0f} s", flush=True)
    result = {"seconds": {k: round(v, 1) for k, v in seconds.items()},
              "peak_mib": round(peak_memory_bytes() / 2**20), "machine": describe_machine(),
              "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": "python benchmarks/bench_heldout.py",
              "targets": {"4x4 table <= 300 s": seconds["4x4 table"] <= 300,
                          "peak <= 2048 MiB": peak_memory_bytes() / 2**20 <= 2048}}
    (RESULTS / "bench_heldout.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Held-out estimator: cost-table time and memory", "",
             f"`{result['command']}` on {result['machine']} ({result['torch_threads']} torch threads, "
             f"{result['date'][:10]}); built-in latents, default `HeldoutConfig` (32,768 train windows, zeros "
             "thinned, 32,768 val windows, Newton's method per set).", "",
             "| step | seconds |", "|---|---|",
             *[f"| {k} | {v:.1f} |" for k, v in result["seconds"].items()], "",
             f"Peak resident memory of the process: {result['peak_mib']} MiB. Targets: "
             + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in result["targets"].items()) + "."]
    (RESULTS / "bench_heldout.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Regenerate the committed run results: ``ordersearch run`` for patches 2, 3 and 4, then the figures.

    python experiments/reproduce_results.py [--patches 2 3 4] [--device cpu] [any further `run` flags]

Each patch runs in its own process with the default settings (built-in
latents, linear-Gaussian cost table, dp + greedy + optuna-tpe, dedicated
verification of dp's 2 best, every strategy's result, the named baselines
and three negative controls from the any-order model: 2 selection seeds on
val, up to 4, then 2 fresh report seeds on test) into
``results/patch<N>/`` (``ordersearch run`` itself writes into ``runs/``
unless told otherwise); then ``ordersearch plot results/patch<N>`` for each. Further flags
(``--device cuda``, ``--quiet``) go to ``run``. Wall time and peak memory of
every run are appended to ``results/run_benchmark.csv`` with ``--note`` (the
machine, say). The evaluation stores (``results/patch<N>/store``) are not
committed; re-running reuses them when present, so the timings of a re-run
measure the cache, not the training; ``--fresh`` deletes them first.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--fresh", action="store_true", help="delete each patch's store and Optuna study first")
    ap.add_argument("--note", default="", help="said in the note column of run_benchmark.csv (e.g. the machine)")
    args, extra = ap.parse_known_args()
    log = args.out / "run_benchmark.csv"
    for n in args.patches:
        folder = args.out / f"patch{n}"
        if args.fresh:
            if (folder / "store").is_symlink():  # a store shared with other experiments: leave it, start anew
                (folder / "store").unlink()
            shutil.rmtree(folder / "store", ignore_errors=True)
            (folder / "optuna.db").unlink(missing_ok=True)
        reused = (folder / "store").exists()
        cmd = ["ordersearch", "run", "--patch", str(n), "--out", str(args.out), *extra]
        print("$", " ".join(cmd), flush=True)
        cmd = [sys.executable, "-m", *cmd]  # the interpreter running this script, installed or not
        start = time.time()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        code = subprocess.run(cmd).returncode
        seconds = time.time() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux; max over children so far
        if code != 0:
            sys.exit(f"run --patch {n} failed with exit code {code}")
        new = not log.exists()
        with open(log, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["date", "command", "seconds", "peak_rss_mib", "cpus", "torch_threads", "note"])
            w.writerow([datetime.now(timezone.utc).isoformat(timespec="seconds"), " ".join(cmd[3:]),
                        f"{seconds:.0f}", f"{peak / 1024:.0f}" if peak > before else "<= earlier run",
                        os.cpu_count(), os.environ.get("OMP_NUM_THREADS", "default"),
                        "; ".join(filter(None, ["store reused: cached evaluations not re-timed" if reused else
                                                "fresh store", args.note]))])
    for n in args.patches:  # the folders just made, their stores beside them: redrawn in place
        subprocess.run([sys.executable, "-m", "ordersearch", "plot", str(args.out / f"patch{n}")], check=True)


if __name__ == "__main__":
    main()

"""What `ordersearch run` would expect for a committed run's candidates on a fresh store, on this machine now.

    python experiments/estimate_run.py results/patch2

Reads the run folder's ``schedules/*.json`` as the candidates, measures the
step times here (``ordersearch.run.estimate``) with the default protocol and
seeds, and prints the line a fresh run prints before its first training: to
compare with the run's real duration (``results/run_benchmark.csv``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ordersearch.evaluation import EvaluationStore, Evaluator
from ordersearch.models import builtin
from ordersearch.run.checks import check_schedules
from ordersearch.run.config import RunConfig
from ordersearch.run.estimate import estimate
from ordersearch.schedule_io import load_schedule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    args = ap.parse_args()
    candidates = {p.stem: load_schedule(p)[0] for p in sorted((args.folder / "schedules").glob("*.json"))}
    n = next(iter(candidates.values())).patch
    config = RunConfig(patch=n)
    with tempfile.TemporaryDirectory() as tmp:
        evaluator = Evaluator(builtin(), config.train, "cpu", EvaluationStore(tmp), False)
        e = estimate(evaluator, candidates, config.seeds, config.max_seeds, config.report_seeds, check_schedules(n))
    print(f"{len(candidates)} candidates at {n}x{n}: {e.line()}")


if __name__ == "__main__":
    main()

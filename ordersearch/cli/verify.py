"""``verify`` and ``compare``: dedicated evaluation of schedule files, alone or paired against the first."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import OrdersearchError, printable
from ..schedule_io import load_schedule
from .common import (add_data_options, add_run_options, add_training_options, at_least_one, device, load_data,
                     train_config)


def evaluate_files(args: argparse.Namespace) -> tuple[list[str], list]:
    """Dedicated evaluations (``--seeds`` each, cached in ``--store``) of the schedule files given."""
    from ..evaluation import EvaluationStore, Evaluator, as_splits

    at_least_one(seeds=args.seeds)
    schedules = [load_schedule(f) for f in args.files]  # every file checked before any training
    on = device(args)
    splits = as_splits(load_data(args, on))
    store = EvaluationStore(args.store)
    labels, evals = [], []
    for path, (schedule, meta) in zip(args.files, schedules):
        labels.append(printable(meta.name or Path(path).stem))  # a file name may hold terminal escapes
        evaluator = Evaluator(splits, train_config(args, args.kernel or meta.kernel), on, store,
                              progress=not args.quiet)
        evals.append([evaluator.evaluate(schedule, seed) for seed in range(args.seeds)])
    store.close()
    return labels, evals


def cmd_verify(args: argparse.Namespace) -> int:
    from ..evaluation import rate_interval

    labels, evals = evaluate_files(args)
    for label, ev in zip(labels, evals):
        mean, low, high = rate_interval(ev)
        bpp = "" if ev[0].bpp is None else f", {np.mean([e.bpp for e in ev]):.4f} bpp (y)"
        sure = (f"95% interval over test images and seeds [{low:.4f}, {high:.4f}]" if np.isfinite(low) else
                "one seed: training noise unknown, use --seeds 2 or more for an interval")
        print(f"{label}: {mean:.4f} bits/latent{bpp} (dedicated, test split, {len(ev)} seed(s); {sure})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..evaluation import compare, larger_seed_variance, pooled_seed_variance

    if len(args.files) < 2:
        raise OrdersearchError("compare needs at least two schedule files")
    labels, evals = evaluate_files(args)
    pooled = pooled_seed_variance([(evals[0], ev) for ev in evals[1:]])
    for label, ev in zip(labels[1:], evals[1:]):
        c = compare(evals[0], ev, comparisons=len(evals) - 1, pooled=larger_seed_variance(evals[0], ev, pooled))
        print(f"{labels[0]} vs {label}: {c}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for name, helptext, func in (
            ("verify", "dedicated evaluation of schedule files (rate with its interval)", cmd_verify),
            ("compare", "paired comparison of the first schedule file with each other one", cmd_compare)):
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        p.add_argument("files", nargs="+", metavar="FILE", help="schedule JSON files")
        add_data_options(p)
        p.add_argument("--kernel", type=int, metavar="K", help="context window (default: each file's)")
        p.add_argument("--seeds", type=int, default=2, help="training seeds per schedule (default 2)")
        add_training_options(p)
        p.add_argument("--store", default="runs/store", metavar="FOLDER|URL",
                       help="evaluation store: a folder or a database URL (default runs/store)")
        add_run_options(p)
        p.set_defaults(func=func)

"""``worker``: one of many processes that evaluate the trials of a shared Optuna study."""

from __future__ import annotations

import argparse

from ..schedule import check_patch
from .common import (add_data_options, add_run_options, add_training_options, at_least_one, device, load_data,
                     train_config)


def cmd_worker(args: argparse.Namespace) -> int:
    from ..evaluation import EvaluationStore, Evaluator
    from ..worker import worker

    at_least_one(trials=args.trials, seeds=args.seeds, heartbeat=args.heartbeat)
    check_patch(args.patch, search=True)
    on = device(args)
    latents = load_data(args, on)
    store = EvaluationStore(args.store or args.storage, heartbeat=args.heartbeat)
    evaluator = Evaluator(latents, train_config(args, args.kernel), on, store, progress=not args.quiet)
    result = worker(args.study, args.storage, args.patch, evaluator, trials=args.trials, seeds=args.seeds,
                    seed=args.seed, heartbeat=args.heartbeat)
    print(f"study {result['study']}: {result['trials']} finished trials; best {result['best_rate']:.4f} "
          f"bits/latent (trial {result['best_trial']}): {result['best_stages']}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("worker", help="join an Optuna study and evaluate its trials by dedicated training",
                       description="Evaluate trials of a shared Optuna study (dedicated training, cached in "
                       "the evaluation store, by default in the study's own database) until it holds --trials "
                       "finished ones. Start as many as you like, on one machine (sqlite:///FILE) or several "
                       "(postgresql://...); no order is trained twice.")
    w.add_argument("--study", required=True, help="study name (created if new)")
    w.add_argument("--storage", required=True, metavar="URL", help="sqlite:///study.db or postgresql://...")
    w.add_argument("--patch", type=int, required=True, metavar="N", help="patch size of the study (2 to 4)")
    add_data_options(w)
    w.add_argument("--trials", type=int, default=50, help="finished trials the study should reach (default 50)")
    w.add_argument("--seeds", type=int, default=1, help="training seeds per trial (default 1)")
    w.add_argument("--kernel", type=int, default=5, metavar="K", help="context window (default 5)")
    add_training_options(w)
    w.add_argument("--store", metavar="FOLDER|URL",
                   help="evaluation store: a folder or a database URL (default: the --storage database)")
    w.add_argument("--seed", type=int, default=0, help="sampler seed of this worker")
    w.add_argument("--heartbeat", type=int, default=60, metavar="S",
                   help="heartbeat interval; a trial silent for twice this is failed and retried (default 60)")
    add_run_options(w)
    w.set_defaults(func=cmd_worker)

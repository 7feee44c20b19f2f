"""``run``, ``search`` and ``plot``: the main job on one patch size, its cheap half alone, and its figures."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from ..errors import OrdersearchError
from ..schedule import check_patch
from .common import (add_data_options, add_run_options, add_training_options, at_least_one, device, load_data,
                     recorded_command, train_config)


def strategies(args: argparse.Namespace) -> tuple[str, ...]:
    """--strategies as names, each known, and --budget checked."""
    from ..search import STRATEGY_NAMES

    names = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    for s in names:
        if s not in STRATEGY_NAMES and not s.startswith("beam"):
            raise OrdersearchError(f"--strategies: unknown strategy {s!r}; known: {', '.join(STRATEGY_NAMES)}")
    at_least_one(budget=args.budget)
    return names


def codec_data(args: argparse.Namespace, on):
    """(latents, estimator) of ``search --codec``: the val photos through the any-order codec's transforms, and
    its context model on them."""
    from ..codec.codec_file import any_order_model, open_codec
    from ..data import Splits, photo_splits
    from ..estimators import AnyOrderEstimator
    from ..models import images_to_latents

    if args.latents is not None or args.images is not None:
        raise OrdersearchError("--codec measures on the codec's own latents of --photos: not with --latents or "
                               "--images")
    if args.estimator not in (None, "any-order"):
        raise OrdersearchError(f"--codec: the cost table is the codec's any-order model's, not {args.estimator}")
    path, blob, patch = open_codec(args.codec)
    if patch and patch != args.patch:
        raise OrdersearchError(f"{args.codec}: an any-order codec of {patch}x{patch} patches, not {args.patch}x"
                               f"{args.patch}")
    base, context = any_order_model(path, blob, patch)
    photos = photo_splits(args.photos)["val"]
    val, skipped = images_to_latents(photos, base.to(on), on, f"{args.codec.name} val photos", not args.quiet)
    for message in skipped:
        print(f"ordersearch: skipped {message}", file=sys.stderr)
    # nothing but the estimator reads latents in a search; it reads val alone
    digest = hashlib.sha256(args.codec.read_bytes()).hexdigest()[:16]  # the table's identity names the codec
    return Splits(val, val, val), AnyOrderEstimator(context.to(on), val, args.seed,
                                                    source=f"{args.codec} (sha256 {digest})")


def cmd_search(args: argparse.Namespace) -> int:
    from ..defaults import DEFAULT_ESTIMATOR
    from ..run import RunConfig, search_only

    names = strategies(args)
    check_patch(args.patch, search=True)
    on = device(args)
    latents, estimator = codec_data(args, on) if args.codec is not None else (load_data(args, on), None)
    name = "any-order" if estimator is not None else args.estimator or DEFAULT_ESTIMATOR
    config = RunConfig(patch=args.patch, kernel=args.kernel, strategies=names, trials=args.budget,
                       seconds=args.seconds, estimator=name, device=str(on), out=args.out,
                       storage=args.storage, seed=args.seed, train=train_config(args, args.kernel))
    cheap = search_only(latents, config, progress=not args.quiet, command=recorded_command(args), estimator=estimator)
    width = max(len(k) for k in cheap.results)
    for label, res in cheap.results.items():
        print(f"{label:<{width}}  {res.rate:.4f} bits/latent ({name}, not verified)  "
              f"{config.folder / 'schedules' / (label + '.json')}")
    from ..run.pipeline import CHEAP_CAVEAT

    if estimator is None:
        print(f"not verified: {CHEAP_CAVEAT}")
        print(f"report: {config.folder / 'search.md'}; verify with: ordersearch run --patch {args.patch} --out "
              f"{args.out}")
        return 0
    stages = ", ".join(str(p.stages) for p in cheap.front if p.schedule.num_stages == p.stages)
    print(f"the codec's context model on its val photos (crops; the level of a latent, not of a file: "
          f"z and headers are not counted). Best schedule per stage count ({stages}): "
          f"{config.folder / 'schedules'}/best-K-stage.json")
    print(f"report: {config.folder / 'search.md'}; real files on test photos: ordersearch codec eval {args.codec} "
          f"--schedule {config.folder / 'schedules'}/dp.json ... --out DIR")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ..run import RunConfig, order_answer, run, terminal_table, trust_line

    names = strategies(args)
    at_least_one(seeds=args.seeds, verify_top=args.verify_top, report_seeds=args.report_seeds)
    max_seeds = max(4, args.seeds) if args.max_seeds is None else args.max_seeds
    if max_seeds < args.seeds:
        raise OrdersearchError(f"--max-seeds {max_seeds} is below --seeds {args.seeds}")
    check_patch(args.patch, search=True)
    on = device(args)
    latents = load_data(args, on)
    config = RunConfig(patch=args.patch, kernel=args.kernel, strategies=names, trials=args.budget,
                       seconds=args.seconds, verify_top=args.verify_top, seeds=args.seeds, max_seeds=max_seeds,
                       report_seeds=args.report_seeds,
                       estimator=args.estimator, device=str(on), out=args.out, storage=args.storage, seed=args.seed,
                       train=train_config(args, args.kernel), choose_on=args.choose_on)
    result = run(latents, config, progress=not args.quiet, command=recorded_command(args))
    print(terminal_table(result))
    print(f"Does the order matter here? {order_answer(result.verified)}")
    print(trust_line(result))
    print(f"best: {result.verified.winner}, written to {config.folder / 'best.json'}; "
          f"report: {config.folder / 'summary.md'}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ..run import plot

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    if (args.path / "points.csv").is_file():  # a folder of `codec eval`: its rate-distortion curves
        from ..codec.rd import plot_rd

        for fmt in formats:
            if fmt not in ("png", "svg", "pdf"):
                raise OrdersearchError(f"unknown figure format {fmt!r}; choose png, svg or pdf")
            print(plot_rd(args.path, fmt, args.out))
        return 0
    for path in plot(args.path, formats, args.out):
        print(path)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from ..defaults import DEFAULT_ESTIMATOR, DEFAULT_STRATEGIES, ESTIMATOR_NAMES

    run = sub.add_parser("run", help="search, verify and export the best order for a patch size",
                         description="Cheap cost table -> search strategies -> dedicated verification of the top "
                         "candidates and the named baselines -> files under OUT/patchN/. Re-running resumes.")
    search = sub.add_parser("search", help="cost table and search only (seconds to minutes, nothing verified)",
                            description="The cheap phases of run: cost table -> search strategies -> Pareto "
                            "front, with every strategy's schedule as a v1 JSON under OUT/patchN/schedules/ and "
                            "a report in OUT/patchN/search.md. No dedicated training; a later run on the same "
                            "--out reuses the table and the trials.")
    for p in (run, search):
        p.add_argument("--patch", type=int, required=True, metavar="N", help="patch size: 2, 3 or 4")
        add_data_options(p)
        p.add_argument("--kernel", type=int, default=5, metavar="K", help="context window (default 5)")
        p.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES),
                       help=f"comma-separated (default {','.join(DEFAULT_STRATEGIES)}); also exhaustive, beam, "
                       "random, optuna-cmaes, optuna-random")
        p.add_argument("--budget", type=int, default=200, metavar="TRIALS",
                       help="schedules each budgeted strategy may score (default 200)")
        p.add_argument("--seconds", type=float, metavar="S", help="wall-clock limit per strategy")
        p.add_argument("--estimator", choices=list(ESTIMATOR_NAMES), default=DEFAULT_ESTIMATOR if p is run else None,
                       help=f"estimator of the cost table (default {DEFAULT_ESTIMATOR}; see results/fidelity.md)")
    run.add_argument("--verify-top", type=int, default=2, metavar="K",
                     help="dp's K best orders verified by dedicated training (default 2)")
    run.add_argument("--seeds", type=int, default=2,
                     help="selection seeds per verified schedule to start with, measured on val (default 2)")
    run.add_argument("--max-seeds", type=int, metavar="N",
                     help="more selection seeds, up to N, for candidates indistinguishable from the leader on val "
                     "(default 4, or --seeds when that is larger)")
    run.add_argument("--report-seeds", type=int, default=2, metavar="N",
                     help="fresh seeds per verified schedule, trained after the leader is chosen: the test numbers "
                     "reported (default 2)")
    run.add_argument("--choose-on", choices=("whole", "interior"), default="whole",
                     help="the leader is the lowest on whole val latents (default: what a codec spends, the border "
                     "included) or on their interior (where translates of an order cannot differ)")
    add_training_options(run)
    search.set_defaults(max_steps=None)
    search.add_argument("--codec", type=Path, metavar="ANY.pt",
                        help="search at codec level: the cost table of an any-order codec's context model (`codec "
                        "train --any-order N`) on its own latents of the --photos val split")
    search.add_argument("--photos", type=Path, default=Path("data/photos"), metavar="DIR",
                        help="with --codec: photos with a manifest.csv split or train/, val/, test/ (default "
                        "data/photos)")
    for p, func, out_help in (
            (run, cmd_run, "output folder (default runs/; the committed results/ are remade only by "
                           "experiments/reproduce_results.py)"),
            (search, cmd_search, "output folder (default runs/)")):
        p.add_argument("--out", type=Path, default=Path("runs"), help=out_help)
        p.add_argument("--storage", metavar="URL", help="Optuna storage (default sqlite in OUT/patchN/)")
        p.add_argument("--seed", type=int, default=0, help="seed of the search strategies (default 0)")
        add_run_options(p)
        p.set_defaults(func=func)

    plot = sub.add_parser("plot", help="figures of a run folder (or of every run folder below a path)",
                          description="Write figures/ in each run folder: order and bits-per-position heatmaps, "
                          "verified rates with intervals, search traces, Pareto front, rate vs context size; "
                          "in a folder of `codec eval` (points.csv), the rate-distortion curves. Run folders without "
                          "their store (committed or copied results) are drawn only with --out.")
    plot.add_argument("path", type=Path, help="a run folder (OUT/patchN) or a folder holding several")
    plot.add_argument("--format", default="png", help="png, svg, pdf or a comma-separated list (default png)")
    plot.add_argument("--out", type=Path, metavar="DIR",
                      help="write the figures here (a run folder's: DIR/<its path below PATH>/) instead of each run "
                      "folder's figures/")
    plot.set_defaults(func=cmd_plot)

"""The ``ordersearch`` command line.

Every error about user input is one line on stderr and exit code 2 (``--debug``
shows the traceback instead); ``validate`` exits 1 when a file is invalid.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np

from ._version import __version__
from .errors import LatentError, OrdersearchError, ScheduleError, printable, redact
from .schedule import NAMED_SCHEDULES, Schedule, check_patch
from .schedule_io import DEFAULT_KERNEL, load_schedule


DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default auto)"
START_HELP = ("where each schedule's training starts: any-order (default: from one model trained over random "
              "orders, per patch size and seed) or prior (context weights from zero, the earlier protocol)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2), as every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _grid_text(grid: np.ndarray, indent: str = "  ") -> str:
    width = max(len(str(v)) for v in grid.flat)
    return "\n".join(indent + " ".join(f"{v:>{width}d}" for v in row) for row in grid)


def _describe(schedule: Schedule) -> str:
    n = schedule.patch
    kind = "permutation order" if schedule.is_permutation else "grouped schedule"
    return f"{n}x{n}, {schedule.num_stages} stages, {kind}"


def cmd_show(args: argparse.Namespace) -> int:
    if (args.file is None) == (args.named is None):
        raise ScheduleError("give either a schedule FILE or --named NAME --patch N")
    if args.named is not None:
        if args.patch is None:
            raise ScheduleError("--named needs --patch N")
        schedule = Schedule.named(args.named, args.patch, seed=args.seed)
        title, kernel = args.named, args.kernel or DEFAULT_KERNEL
    else:
        schedule, meta = load_schedule(args.file)
        title, kernel = meta.name or args.file, args.kernel or meta.kernel
    sizes = schedule.context_sizes(kernel)
    print(f"{title} ({_describe(schedule)})")
    print("decoding stage of each patch position:")
    print(_grid_text(schedule.array()))
    print(f"decoded neighbours in the {kernel}x{kernel} window, per position (total {sizes.sum()}):")
    print(_grid_text(sizes))
    for group, note in (("translations", "exact symmetry"), ("dihedral", "approximate symmetry on images")):
        print(f"canonical form under {group} ({note}):")
        print(_grid_text(schedule.canonical(group).array()))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            schedule, meta = load_schedule(path)
        except ScheduleError as e:
            print(printable(f"INVALID {e}"), file=sys.stderr)
            failed += 1
        else:
            print(printable(f"OK {path}: {_describe(schedule)}, kernel {meta.kernel}"))
    return 1 if failed else 0


def _device(args: argparse.Namespace):
    """The command's ``--device``, resolved once (auto: CUDA when available, else CPU)."""
    from .device import resolve_device

    return resolve_device(getattr(args, "device", "auto"))


def cmd_latents(args: argparse.Namespace) -> int:
    from .data import list_images, save_latents
    from .models import images_to_latents

    if args.out.suffix not in (".npz", ".pt"):
        raise LatentError(f"--out {args.out}: use a .npz or .pt file name")
    device = _device(args)  # before any work
    latents, skipped = images_to_latents(list_images(args.images), device=device, name=args.images.name)
    for message in skipped:
        print(f"ordersearch: skipped {message}", file=sys.stderr)
    save_latents(latents, args.out)
    print(f"wrote {args.out}: {len(latents)} images, y {latents.channels} channels, "
          f"prior {latents.prior_channels} channels, {latents.num_positions} latent positions"
          + (f" ({len(skipped)} skipped)" if skipped else ""))
    return 0


def _load_data(args: argparse.Namespace, device):
    """The latents a command runs on: --latents FILE, --images DIR, or the built-in set."""
    if args.latents is not None and args.images is not None:
        raise LatentError("give --latents FILE or --images DIR, not both")
    if args.latents is not None:
        from .data import load_latents
        return load_latents(args.latents)
    if args.images is not None:
        from .data import list_images
        from .models import images_to_latents
        latents, skipped = images_to_latents(list_images(args.images), device=device, name=args.images.name)
        for message in skipped:
            print(f"ordersearch: skipped {message}", file=sys.stderr)
        return latents
    from .models import builtin
    return builtin()


def _train_config(args: argparse.Namespace, kernel: int):
    from dataclasses import replace

    from .evaluation import TrainConfig
    from .models import ModelConfig

    config = TrainConfig(model=ModelConfig(kernel=kernel), start=getattr(args, "start", "any-order"))
    return replace(config, max_steps=args.max_steps) if args.max_steps else config


def _strategies(args: argparse.Namespace) -> tuple[str, ...]:
    from .search import STRATEGY_NAMES

    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    for s in strategies:
        if s not in STRATEGY_NAMES and not s.startswith("beam"):
            raise OrdersearchError(f"--strategies: unknown strategy {s!r}; known: {', '.join(STRATEGY_NAMES)}")
    if args.budget < 1:
        raise OrdersearchError(f"--budget must be at least 1, got {args.budget}")
    return strategies


def cmd_search(args: argparse.Namespace) -> int:
    from .run import RunConfig, search_only

    strategies = _strategies(args)
    check_patch(args.patch, search=True)
    device = _device(args)
    latents = _load_data(args, device)
    config = RunConfig(patch=args.patch, kernel=args.kernel, strategies=strategies, trials=args.budget,
                       seconds=args.seconds, estimator=args.estimator, device=str(device), out=args.out,
                       storage=args.storage, seed=args.seed, train=_train_config(args, args.kernel))
    command = "ordersearch " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("ordersearch") else ""
    cheap = search_only(latents, config, progress=not args.quiet, command=command)
    width = max(len(k) for k in cheap.results)
    for name, res in cheap.results.items():
        print(f"{name:<{width}}  {res.rate:.4f} bits/latent ({args.estimator}, not verified)  "
              f"{config.folder / 'schedules' / (name + '.json')}")
    print(f"report: {config.folder / 'search.md'}; verify with: ordersearch run --patch {args.patch} --out {args.out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .run import RunConfig, run, terminal_table, trust_line

    strategies = _strategies(args)
    for flag, value in (("--seeds", args.seeds), ("--verify-top", args.verify_top)):
        if value < 1:
            raise OrdersearchError(f"{flag} must be at least 1, got {value}")
    max_seeds = max(6, args.seeds) if args.max_seeds is None else args.max_seeds
    if max_seeds < args.seeds:
        raise OrdersearchError(f"--max-seeds {max_seeds} is below --seeds {args.seeds}")
    check_patch(args.patch, search=True)
    device = _device(args)
    latents = _load_data(args, device)
    config = RunConfig(patch=args.patch, kernel=args.kernel, strategies=strategies, trials=args.budget,
                       seconds=args.seconds, verify_top=args.verify_top, seeds=args.seeds, max_seeds=max_seeds, estimator=args.estimator,
                       device=str(device), out=args.out, storage=args.storage, seed=args.seed,
                       train=_train_config(args, args.kernel), choose_on=args.choose_on)
    command = "ordersearch " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("ordersearch") else ""
    result = run(latents, config, progress=not args.quiet, command=command)
    print(terminal_table(result))
    print(trust_line(result))
    print(f"best: {result.verified.winner}, written to {config.folder / 'best.json'}; "
          f"report: {config.folder / 'summary.md'}")
    return 0


def _evaluate_files(args: argparse.Namespace) -> tuple[list[str], list]:
    """Dedicated evaluations (``--seeds`` each, cached in ``--store``) of the schedule files given."""
    from .evaluation import EvaluationStore, Evaluator, as_splits

    if args.seeds < 1:
        raise OrdersearchError(f"--seeds must be at least 1, got {args.seeds}")
    schedules = [load_schedule(f) for f in args.files]  # every file checked before any training
    device = _device(args)
    splits = as_splits(_load_data(args, device))
    store = EvaluationStore(args.store)
    labels, evals = [], []
    for path, (schedule, meta) in zip(args.files, schedules):
        labels.append(meta.name or Path(path).stem)
        evaluator = Evaluator(splits, _train_config(args, args.kernel or meta.kernel), device, store,
                              progress=not args.quiet)
        evals.append([evaluator.evaluate(schedule, seed) for seed in range(args.seeds)])
    store.close()
    return labels, evals


def cmd_verify(args: argparse.Namespace) -> int:
    from .evaluation import rate_interval

    labels, evals = _evaluate_files(args)
    for label, ev in zip(labels, evals):
        mean, low, high = rate_interval(ev)
        bpp = "" if ev[0].bpp is None else f", {np.mean([e.bpp for e in ev]):.4f} bpp (y)"
        sure = (f"95% interval over test images and seeds [{low:.4f}, {high:.4f}]" if np.isfinite(low) else
                "one seed: training noise unknown, use --seeds 2 or more for an interval")
        print(f"{label}: {mean:.4f} bits/latent{bpp} (dedicated, test split, {len(ev)} seed(s); {sure})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .evaluation import compare

    if len(args.files) < 2:
        raise OrdersearchError("compare needs at least two schedule files")
    from .evaluation import pooled_seed_variance

    labels, evals = _evaluate_files(args)
    pooled = pooled_seed_variance([(evals[0], ev) for ev in evals[1:]])
    for label, ev in zip(labels[1:], evals[1:]):
        print(f"{labels[0]} vs {label}: {compare(evals[0], ev, comparisons=len(evals) - 1, pooled=pooled)}")
    return 0


def _weights(args: argparse.Namespace):
    """The schedule's context-model weights: --weights FILE, the file beside it, its run's store, or (--train)
    trained now."""
    from .run import load_weights, stored_weights

    if args.weights is not None:
        return load_weights(args.weights)  # the codec moves them to the schedule's positions, or says they do not fit
    try:
        return stored_weights(args.schedule)
    except OrdersearchError:
        if not getattr(args, "train", False):
            raise
    from .run.folder import train_weights

    return train_weights(args.schedule, _device(args))


def _check_output(path: Path) -> None:
    """One line instead of a traceback after the work: the output must be a file in an existing folder."""
    if path.is_dir():
        raise OrdersearchError(f"{path}: is a folder; give the output file's name")
    if not path.parent.is_dir():
        raise OrdersearchError(f"{path}: no folder {path.parent} to write it into")


def _codec(args: argparse.Namespace):
    from .codec import MultistageCodec

    if args.codec is not None:
        from .codec.codec_file import load_codec

        if args.weights is not None:
            raise OrdersearchError("--weights goes with --schedule; a codec file carries its own")
        return load_codec(args.codec)[0]

    schedule, meta = load_schedule(args.schedule)
    state = _weights(args)
    try:
        return MultistageCodec.from_state(schedule, state, kernel=meta.kernel)
    except OrdersearchError as e:
        raise OrdersearchError(f"--weights {args.weights}: {e}" if args.weights else str(e)) from None


def _stages(codec, image: np.ndarray) -> int:
    """Sequential decoding stages of ``image`` (the serial model's grow with the latent)."""
    from .models.hyperprior import STRIDE

    per = STRIDE // 16  # latents per padded 64-pixel block: one latent per 16 pixels
    return codec.decoding_stages(-(-image.shape[0] // STRIDE) * per, -(-image.shape[1] // STRIDE) * per)


def cmd_encode(args: argparse.Namespace) -> int:
    import time

    from .data import read_image
    from .files import atomic_write

    image = read_image(args.image)  # inputs and output checked before any training
    _check_output(args.out)
    codec = _codec(args)
    start = time.time()
    encoded = codec.encode(image)
    seconds = time.time() - start
    atomic_write(args.out, encoded.data)
    pixels = image.shape[0] * image.shape[1]
    y_bits = sum(encoded.y_bits_per_stage)
    print(f"wrote {args.out}: {len(encoded.data)} bytes, {8 * len(encoded.data) / pixels:.4f} bpp "
          f"(y {y_bits / pixels:.4f}, z {encoded.z_bits / pixels:.4f}, header {8 * encoded.header_bytes / pixels:.4f}); "
          f"y within {100 * (y_bits / encoded.estimate_y_bits - 1):+.2f}% of the model's estimate; "
          f"{_stages(codec, image)} decoding stages; {seconds:.2f}s")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    import time

    from .data import write_png

    from .codec.bitstream import MAX_BITSTREAM_BYTES
    from .files import read_regular_file

    try:
        data = read_regular_file(args.input, MAX_BITSTREAM_BYTES)
    except IsADirectoryError:
        raise OrdersearchError(f"{args.input}: is a folder, not a bitstream") from None
    except FileNotFoundError:
        raise OrdersearchError(f"{args.input}: no such file") from None
    except ValueError as e:  # a FIFO or device, or far larger than any bitstream
        raise OrdersearchError(f"{args.input}: {e}") from None
    _check_output(args.out)
    if args.out.suffix.lower() != ".png":  # the decoded image is exact: never re-encode it lossily or misname it
        raise OrdersearchError(f"{args.out}: decode writes PNG images; name the output .png")
    codec = _codec(args)
    start = time.time()
    image = codec.decompress(data)
    seconds = time.time() - start
    write_png(image, args.out)
    print(f"wrote {args.out}: {image.shape[1]}x{image.shape[0]}, {8 * len(data) / (image.shape[0] * image.shape[1]):.4f} "
          f"bpp, {_stages(codec, image)} decoding stages, {seconds:.2f}s")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .evaluation import EvaluationStore, Evaluator
    from .worker import worker

    for flag, value in (("--trials", args.trials), ("--seeds", args.seeds), ("--heartbeat", args.heartbeat)):
        if value < 1:
            raise OrdersearchError(f"{flag} must be at least 1, got {value}")
    check_patch(args.patch, search=True)
    device = _device(args)
    latents = _load_data(args, device)
    store = EvaluationStore(args.store or args.storage, heartbeat=args.heartbeat)
    evaluator = Evaluator(latents, _train_config(args, args.kernel), device, store, progress=not args.quiet)
    result = worker(args.study, args.storage, args.patch, evaluator, trials=args.trials, seeds=args.seeds,
                    seed=args.seed, heartbeat=args.heartbeat)
    print(f"study {result['study']}: {result['trials']} finished trials; best {result['best_rate']:.4f} "
          f"bits/latent (trial {result['best_trial']}): {result['best_stages']}")
    return 0


def cmd_codec_train(args: argparse.Namespace) -> int:
    import hashlib
    import json
    import time
    from dataclasses import asdict

    from .codec.codec_file import load_codec, save_codec
    from .data import photo_splits, read_image
    from .evaluation.joint import JointConfig, fine_tune
    from .models.joint import SERIAL
    from .run import stored_weights

    _check_output(args.out)
    if args.serial:
        schedule, label, context_state = SERIAL, args.label or SERIAL, None
    else:
        schedule, _ = load_schedule(args.schedule)
        label = args.label or args.schedule.stem
        try:  # start from the context model trained on the frozen latents, where there is one
            context_state = stored_weights(args.schedule)
        except OrdersearchError:
            context_state = None
    base = load_codec(args.base)[0].base if args.base else None
    config = JointConfig(lmbda=args.lmbda, max_steps=args.max_steps, batch=args.batch, crop=args.crop,
                         seed=args.seed, max_seconds=None if args.minutes is None else 60 * args.minutes)
    photos = photo_splits(args.photos)
    device = _device(args)
    train = [read_image(p) for p in photos["train"]]
    val = [read_image(p) for p in photos["val"]]
    # the checkpoint belongs to this very fine-tuning: another lambda or schedule never resumes from it
    key = json.dumps([str(schedule), asdict(config), str(args.base), context_state is not None], sort_keys=True)
    checkpoint = args.out.with_name(f"{args.out.name}.{hashlib.sha256(key.encode()).hexdigest()[:12]}.partial")
    if not args.quiet:
        print(f"ordersearch: fine-tuning {label} at lambda {args.lmbda}: {len(train)} train / {len(val)} val photos "
              f"on {device}, at most {config.max_steps} steps; context model from "
              f"{'its trained weights' if context_state is not None else 'zero (the hyperprior alone)'}"
              f"{'; resuming' if checkpoint.exists() else ''}", file=sys.stderr)
    start = time.time()
    tuned = fine_tune(schedule, train, val, config, device, base, context_state, checkpoint, not args.quiet)
    seconds = time.time() - start
    best = min(v for _, _, v in tuned.curve)
    save_codec(args.out, schedule, tuned.model, {
        "label": label, "lmbda": args.lmbda, "steps": tuned.steps, "best_step": tuned.best_step,
        "hit_cap": tuned.hit_cap, "val_loss": best, "curve": tuned.curve, "seconds": round(seconds, 1),
        "device": str(device), "config": asdict(config), "photos": str(args.photos),
        "base": str(args.base) if args.base else "bundled",
        "context_start": "trained weights" if context_state is not None else "zero"})
    print(f"wrote {args.out}: {label} at lambda {args.lmbda}, {tuned.steps} steps (best at {tuned.best_step}"
          f"{'; it hit the step cap still improving: raise --max-steps' if tuned.hit_cap else ''}), "
          f"val loss {best:.4f}, {seconds:.0f} s on {device}")
    return 0


def cmd_codec_eval(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm.auto import tqdm

    from .codec.codec_file import load_codec
    from .codec.rd import POINT_COLUMNS, bd_rate_tables, measure, measured
    from .data import photo_splits
    from .files import atomic_write

    codecs = [(path, *load_codec(path)) for path in args.codecs]  # every file checked before any work
    photos = photo_splits(args.photos)[args.split]
    if args.out.exists() and not args.out.is_dir():
        raise OrdersearchError(f"{args.out}: is a file; --out is a folder")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    bar = tqdm(total=len(codecs) * len(photos), desc="codec eval", unit="photo", disable=args.quiet or None,
               file=sys.stderr, leave=False)
    for path, codec, info in codecs:
        label = info.get("label", path.stem)
        bar.set_postfix_str(label)
        rows += measure(codec, photos, label, float(info.get("lmbda", float("nan"))), lambda _: bar.update(1))
    bar.close()
    points = pd.DataFrame(rows, columns=list(POINT_COLUMNS))
    if not points.exact.all():
        raise OrdersearchError(f"decoding did not reproduce the encoder's image for {sorted(set(points.label[~points.exact]))}")
    atomic_write(args.out / "points.csv", points.to_csv(index=False).encode())
    table = bd_rate_tables(points, args.references, resamples=args.resamples)
    atomic_write(args.out / "bd_rate.csv", table.to_csv(index=False).encode())
    columns = ["bpp", "psnr", "ms_ssim", "encode_seconds", "decode_seconds"]
    summary = points.groupby(["label", "lmbda"])[columns].mean()
    print(f"{len(photos)} {args.split} photos from {args.photos}; means per codec:")
    print(summary.round(4).to_string())
    if len(table):
        print("BD-rate (%, negative: fewer bits at the same quality), 95% bootstrap interval over photos:")
        for r in table.itertuples():
            interval = (f"[{r.low:+.2f}, {r.high:+.2f}]" if not np.isnan(r.low) else
                        f"no interval: {r.undefined_resamples} of {args.resamples} resamples have no BD-rate")
            print(f"  {r.label} vs {r.reference} ({r.metric}): {r.bd_rate:+.2f} {interval}")
        if "ms_ssim_db" not in measured(points):
            print("  (no MS-SSIM BD-rate: a photo has a side of 160 pixels or less, too small for five scales)")
    else:
        print("no BD-rate: it needs two or more operating points (lambdas) of a label and of a reference "
              f"({', '.join(args.references)})")
    print(f"wrote {args.out / 'points.csv'} and {args.out / 'bd_rate.csv'}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .run import plot

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    if (args.path / "points.csv").is_file():  # a folder of `codec eval`: its rate-distortion curves
        from .codec.rd import plot_rd

        for fmt in formats:
            if fmt not in ("png", "svg", "pdf"):
                raise OrdersearchError(f"unknown figure format {fmt!r}; choose png, svg or pdf")
            print(plot_rd(args.path, fmt))
        return 0
    for path in plot(args.path, formats):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ordersearch", description="Find, prove and export the best decoding order of multistage "
                     "spatial context models for learned image codecs.")
    parser.add_argument("--version", action="version", version=f"ordersearch {__version__}",
                        help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    show = sub.add_parser("show", help="print a schedule: grid, context sizes, canonical forms",
                          description="Print a schedule file or a named schedule.")
    show.add_argument("file", nargs="?", help="schedule JSON file (v1 or a bare nested list)")
    show.add_argument("--named", metavar="NAME", choices=list(NAMED_SCHEDULES),
                      help="a named schedule: " + ", ".join(NAMED_SCHEDULES))
    show.add_argument("--patch", type=int, metavar="N", help="patch size for --named")
    show.add_argument("--seed", type=int, default=0, help="seed for --named random (default 0)")
    show.add_argument("--kernel", type=int, metavar="K",
                      help=f"context window size (default: the file's, else {DEFAULT_KERNEL})")
    show.set_defaults(func=cmd_show)

    validate = sub.add_parser("validate", help="check schedule files (exit 1 if any is invalid)",
                              description="Check schedule files; one line per file.")
    validate.add_argument("files", nargs="+", metavar="FILE", help="schedule files to check")
    validate.set_defaults(func=cmd_validate)

    latents = sub.add_parser("latents", help="images -> latent file through the bundled base codec",
                             description="Run every image in a folder (png/jpg/ppm/...) through the bundled "
                             "base codec; save y = round(latent), the hyperprior scales as prior, "
                             "and the image sizes.")
    latents.add_argument("--images", type=Path, required=True, metavar="DIR", help="folder of images (png, jpg, ...)")
    latents.add_argument("--out", type=Path, required=True, metavar="FILE", help=".npz or .pt")
    latents.add_argument("--device", default="auto", help=DEVICE_HELP)
    latents.set_defaults(func=cmd_latents)

    from .defaults import DEFAULT_ESTIMATOR, DEFAULT_STRATEGIES, ESTIMATOR_NAMES

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
        data = p.add_argument_group("data (default: the built-in latents)")
        data.add_argument("--latents", type=Path, metavar="FILE", help=".npz or .pt latent file")
        data.add_argument("--images", type=Path, metavar="DIR", help="folder of images, through the base codec")
        p.add_argument("--kernel", type=int, default=5, metavar="K", help="context window (default 5)")
        p.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES),
                       help=f"comma-separated (default {','.join(DEFAULT_STRATEGIES)}); also exhaustive, beam, "
                       "random, optuna-cmaes, optuna-random")
        p.add_argument("--budget", type=int, default=200, metavar="TRIALS",
                       help="schedules each budgeted strategy may score (default 200)")
        p.add_argument("--seconds", type=float, metavar="S", help="wall-clock limit per strategy")
        p.add_argument("--estimator", choices=list(ESTIMATOR_NAMES), default=DEFAULT_ESTIMATOR,
                       help=f"estimator of the cost table (default {DEFAULT_ESTIMATOR}; see results/fidelity.md)")
    search.add_argument("--device", default="auto", help=DEVICE_HELP)
    search.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default runs/)")
    search.add_argument("--storage", metavar="URL", help="Optuna storage (default sqlite in OUT/patchN/)")
    search.add_argument("--seed", type=int, default=0, help="seed of the search strategies (default 0)")
    search.add_argument("--quiet", action="store_true", help="no progress bars")
    search.set_defaults(func=cmd_search, max_steps=None)
    run.add_argument("--verify-top", type=int, default=2, metavar="K",
                     help="dp's K best orders verified by dedicated training (default 2)")
    run.add_argument("--seeds", type=int, default=3,
                     help="training seeds per verified schedule to start with (default 3)")
    run.add_argument("--max-seeds", type=int, metavar="N",
                     help="more seeds, up to N, for candidates indistinguishable from the leader (default 6, "
                     "or --seeds when that is larger)")
    run.add_argument("--choose-on", choices=("whole", "interior"), default="whole",
                     help="the leader is the lowest on whole val latents (default: what a codec spends, the border "
                     "included) or on their interior (where translates of an order cannot differ)")
    run.add_argument("--max-steps", type=int, metavar="N", help="step cap per dedicated evaluation; "
                     "training stops at a validation plateau before it (default 8000)")
    run.add_argument("--start", choices=("any-order", "prior"), default="any-order", help=START_HELP)
    run.add_argument("--device", default="auto", help=DEVICE_HELP)
    run.add_argument("--out", type=Path, default=Path("runs"),
                     help="output folder (default runs/; the committed results/ are remade only by "
                          "experiments/reproduce_results.py)")
    run.add_argument("--storage", metavar="URL", help="Optuna storage (default sqlite in OUT/patchN/)")
    run.add_argument("--seed", type=int, default=0, help="seed of the search strategies (default 0)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    for name, helptext in (("verify", "dedicated evaluation of schedule files (rate with its interval)"),
                           ("compare", "paired comparison of the first schedule file with each other one")):
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        p.add_argument("files", nargs="+", metavar="FILE", help="schedule JSON files")
        group = p.add_argument_group("data (default: the built-in latents)")
        group.add_argument("--latents", type=Path, metavar="FILE",
                           help="latent file (.npz or .pt) from your codec (default: the built-in latents)")
        group.add_argument("--images", type=Path, metavar="DIR",
                           help="folder of images, turned into latents by the bundled base codec")
        p.add_argument("--kernel", type=int, metavar="K", help="context window (default: each file's)")
        p.add_argument("--seeds", type=int, default=2, help="training seeds per schedule (default 2)")
        p.add_argument("--max-steps", type=int, metavar="N", help="step cap per training; it stops at a validation plateau before it (default 8000)")
        p.add_argument("--start", choices=("any-order", "prior"), default="any-order", help=START_HELP)
        p.add_argument("--store", default="runs/store", metavar="FOLDER|URL",
                       help="evaluation store: a folder or a database URL (default runs/store)")
        p.add_argument("--device", default="auto", help=DEVICE_HELP)
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=cmd_verify if name == "verify" else cmd_compare)

    encode = sub.add_parser("encode", help="compress an image with a schedule's trained context model",
                            description="Compress IMAGE into OUT with the bundled base codec and the multistage "
                            "context model of a schedule (weights from the schedule's run store, or --weights).")
    encode.add_argument("image", type=Path, metavar="IMAGE", help="RGB image to compress")
    encode.add_argument("out", type=Path, metavar="OUT", help="bitstream file to write")
    encode.add_argument("--train", action="store_true",
                        help="train the schedule's context model on the built-in latents if none is stored")
    decode = sub.add_parser("decode", help="decompress a bitstream made by `ordersearch encode`",
                            description="Decompress IN into the PNG OUT; needs the same schedule and weights.")
    decode.add_argument("input", type=Path, metavar="IN", help="bitstream written by encode")
    decode.add_argument("out", type=Path, metavar="OUT.png", help="PNG image to write")
    for p, func in ((encode, cmd_encode), (decode, cmd_decode)):
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--schedule", type=Path, metavar="S.json", help="schedule file")
        which.add_argument("--codec", type=Path, metavar="CODEC.pt",
                           help="a codec file of `ordersearch codec train` (base codec and context model in one)")
        p.add_argument("--weights", type=Path, metavar="FILE",
                       help="context-model weights (default: the schedule's dedicated model in its run store)")
        p.set_defaults(func=func)

    w = sub.add_parser("worker", help="join an Optuna study and evaluate its trials by dedicated training",
                       description="Evaluate trials of a shared Optuna study (dedicated training, cached in "
                       "the evaluation store, by default in the study's own database) until it holds --trials "
                       "finished ones. Start as many as you like, on one machine (sqlite:///FILE) or several "
                       "(postgresql://...); no order is trained twice.")
    w.add_argument("--study", required=True, help="study name (created if new)")
    w.add_argument("--storage", required=True, metavar="URL", help="sqlite:///study.db or postgresql://...")
    w.add_argument("--patch", type=int, required=True, metavar="N", help="patch size of the study (2 to 4)")
    group = w.add_argument_group("data (default: the built-in latents)")
    group.add_argument("--latents", type=Path, metavar="FILE",
                       help="latent file (.npz or .pt) (default: the built-in latents)")
    group.add_argument("--images", type=Path, metavar="DIR",
                       help="folder of images, turned into latents by the bundled base codec")
    w.add_argument("--trials", type=int, default=50, help="finished trials the study should reach (default 50)")
    w.add_argument("--seeds", type=int, default=1, help="training seeds per trial (default 1)")
    w.add_argument("--kernel", type=int, default=5, metavar="K", help="context window (default 5)")
    w.add_argument("--max-steps", type=int, metavar="N", help="step cap per training; it stops at a validation plateau before it (default 8000)")
    w.add_argument("--start", choices=("any-order", "prior"), default="any-order", help=START_HELP)
    w.add_argument("--store", metavar="FOLDER|URL",
                   help="evaluation store: a folder or a database URL (default: the --storage database)")
    w.add_argument("--seed", type=int, default=0, help="sampler seed of this worker")
    w.add_argument("--heartbeat", type=int, default=60, metavar="S",
                   help="heartbeat interval; a trial silent for twice this is failed and retried (default 60)")
    w.add_argument("--device", default="auto", help=DEVICE_HELP)
    w.add_argument("--quiet", action="store_true", help="no progress bars")
    w.set_defaults(func=cmd_worker)

    codec = sub.add_parser("codec", help="fine-tune the whole codec with a schedule; rate-distortion and BD-rate",
                           description="Codec-level truth: `codec train` fine-tunes the bundled codec's transforms, "
                           "hyperprior and a schedule's context model end to end on photos; `codec eval` sends "
                           "photos through encode/decode of codec files and reports bpp, PSNR and BD-rate.")
    csub = codec.add_subparsers(dest="codec_command", required=True, parser_class=_Parser)
    ct = csub.add_parser("train", help="fine-tune base codec + context model of a schedule at one lambda",
                         description="Fine-tune the base codec and a schedule's context model jointly (loss: bits "
                         "of y and z per pixel + lambda * 255^2 * MSE), early stopping on the val photos; writes one "
                         "codec file. An interrupted run resumes from OUT's checkpoint.")
    which = ct.add_mutually_exclusive_group(required=True)
    which.add_argument("--schedule", type=Path, metavar="S.json", help="schedule file (single: hyperprior alone)")
    which.add_argument("--serial", action="store_true", help="the serial raster context model instead")
    ct.add_argument("--lmbda", type=float, default=0.0067, metavar="L",
                    help="rate-distortion trade-off (default 0.0067, the bundled codec's: about 0.3 bpp)")
    ct.add_argument("--out", type=Path, required=True, metavar="CODEC.pt", help="codec file to write")
    ct.add_argument("--base", type=Path, metavar="CODEC.pt", help="start the transforms from this codec file's "
                    "(another operating point), not the bundled codec")
    ct.add_argument("--label", help="name of this codec in tables (default: the schedule file's name, or serial)")
    ct.add_argument("--max-steps", type=int, default=6000, metavar="N", help="step cap (default 6000)")
    ct.add_argument("--minutes", type=float, metavar="M", help="time cap")
    ct.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    ct.add_argument("--crop", type=int, default=128, help="crop side, a multiple of 64 (default 128)")
    ct.add_argument("--seed", type=int, default=0)
    ct.set_defaults(func=cmd_codec_train)
    ce = csub.add_parser("eval", help="bpp, PSNR, times and BD-rate of codec files on photos",
                         description="Compress and decompress every photo of a split with every codec file (real "
                         "bitstreams: headers and z included), then BD-rate (PCHIP) of every label against the "
                         "references, with a paired bootstrap interval over photos. Writes OUT/points.csv and "
                         "OUT/bd_rate.csv.")
    ce.add_argument("codecs", type=Path, nargs="+", metavar="CODEC.pt", help="codec files of `codec train`")
    ce.add_argument("--split", default="test", choices=("train", "val", "test"), help="photos (default test)")
    ce.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for points.csv and bd_rate.csv")
    ce.add_argument("--references", nargs="+", default=["serial", "checkerboard", "single"], metavar="LABEL",
                    help="labels to compare against (default: serial checkerboard single)")
    ce.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    for p in (ct, ce):
        p.add_argument("--photos", type=Path, default=Path("data/photos"), metavar="DIR",
                       help="photos with a manifest.csv split (experiments/fetch_photos.py writes data/photos, the "
                       "default) or train/, val/ and test/ folders")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    ct.add_argument("--device", default="auto", help=DEVICE_HELP)
    ce.set_defaults(func=cmd_codec_eval)

    plot = sub.add_parser("plot", help="figures of a run folder (or of every run folder below a path)",
                          description="Write figures/ in each run folder: order and bits-per-position heatmaps, "
                          "verified rates with intervals, search traces, Pareto front, rate vs context size; "
                          "in a folder of `codec eval` (points.csv), the rate-distortion curves.")
    plot.add_argument("path", type=Path, help="a run folder (OUT/patchN) or a folder holding several")
    plot.add_argument("--format", default="png", help="png, svg, pdf or a comma-separated list (default png)")
    plot.set_defaults(func=cmd_plot)
    for command in [*sub.choices.values(), ct, ce]:  # --debug before or after the command name
        if command is not codec:
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help="show tracebacks instead of one-line errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ordersearch`` command; returns the exit code.

    Warnings raised on the way (a library's, or numpy's on odd input) are held
    back: after a one-line error they would only bury it; after success each
    is printed once, as ``ordersearch: warning: ...``. ``--debug`` shows them
    where they happen, and tracebacks.
    """
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:
        return args.func(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # each warning once, as Python shows them by default
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)  # hidden by default, hidden here
        code = _run(args)
    if code == 0:
        for message in dict.fromkeys(printable(str(w.message).splitlines()[0]) for w in caught if str(w.message)):
            print(f"ordersearch: warning: {message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    """``args.func(args)``, every error one line on stderr."""
    try:
        return args.func(args)
    except OrdersearchError as e:
        print(f"ordersearch: error: {printable(redact(str(e)))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): not an error; silence the flush at exit.
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as e:  # a path problem found late (a read-only folder, an output that is a file): one line
        where = f"{e.filename}: " if e.filename else ""
        print(printable(f"ordersearch: error: {where}{e.strerror or e}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ordersearch: interrupted; run the same command to resume", file=sys.stderr)
        return 130

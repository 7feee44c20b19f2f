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

from . import __version__
from .errors import LatentError, OrdersearchError, ScheduleError
from .schedule import NAMED_SCHEDULES, Schedule
from .schedule_io import DEFAULT_KERNEL, load_schedule


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
    return f"{n}x{n}, {schedule.num_stages} steps, {kind}"


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
    print("decoding step of each patch position:")
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
            print(f"INVALID {e}", file=sys.stderr)
            failed += 1
        else:
            print(f"OK {path}: {_describe(schedule)}, kernel {meta.kernel}")
    return 1 if failed else 0


def cmd_latents(args: argparse.Namespace) -> int:
    from .data import images_to_latents, list_images, save_latents
    from .device import resolve_device

    if args.out.suffix not in (".npz", ".pt"):
        raise LatentError(f"--out {args.out}: use a .npz or .pt file name")
    device = resolve_device(args.device)
    latents, skipped = images_to_latents(list_images(args.images), device=str(device), name=args.images.name)
    for message in skipped:
        print(f"ordersearch: skipped {message}", file=sys.stderr)
    save_latents(latents, args.out)
    print(f"wrote {args.out}: {len(latents)} images, y {latents.channels} channels, "
          f"prior {latents.prior_channels} channels, {latents.num_positions} latent positions"
          + (f" ({len(skipped)} skipped)" if skipped else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ordersearch", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ordersearch {__version__}")
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
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(func=cmd_validate)

    latents = sub.add_parser("latents", help="images -> latent file through the bundled base codec",
                             description="Run every image in a folder (png/jpg/ppm/...) through the bundled "
                             "base codec; save y = round(latent), the hyperprior scales as prior, "
                             "and the image sizes.")
    latents.add_argument("--images", type=Path, required=True, metavar="DIR")
    latents.add_argument("--out", type=Path, required=True, metavar="FILE", help=".npz or .pt")
    latents.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    latents.set_defaults(func=cmd_latents)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ordersearch`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except OrdersearchError as e:
        if args.debug:
            raise
        print(f"ordersearch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("ordersearch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): not an error; silence the flush at exit.
        sys.stdout = open(os.devnull, "w")
        return 0

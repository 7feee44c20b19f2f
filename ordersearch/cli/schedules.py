"""``show``, ``validate`` and ``latents``: look at schedule files, check them, turn images into a latent file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import LatentError, ScheduleError, printable
from ..schedule import NAMED_SCHEDULES, Schedule
from ..schedule_io import DEFAULT_KERNEL, load_schedule
from .common import DEVICE_HELP, device


def grid_text(grid: np.ndarray, indent: str = "  ") -> str:
    """A grid of integers as aligned rows."""
    width = max(len(str(v)) for v in grid.flat)
    return "\n".join(indent + " ".join(f"{v:>{width}d}" for v in row) for row in grid)


def describe(schedule: Schedule) -> str:
    """``4x4, 16 stages, permutation order``."""
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
    print(printable(f"{title} ({describe(schedule)})"))
    print("decoding stage of each patch position:")
    print(grid_text(schedule.array()))
    print(f"decoded neighbours in the {kernel}x{kernel} window, per position (total {sizes.sum()}):")
    print(grid_text(sizes))
    for group, note in (("translations", "exact symmetry"), ("dihedral", "approximate symmetry on images")):
        print(f"canonical form under {group} ({note}):")
        print(grid_text(schedule.canonical(group).array()))
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
            print(printable(f"OK {path}: {describe(schedule)}, kernel {meta.kernel}"))
    return 1 if failed else 0


def cmd_latents(args: argparse.Namespace) -> int:
    from ..data import list_images, save_latents
    from ..models import images_to_latents

    if args.out.suffix not in (".npz", ".pt"):
        raise LatentError(f"--out {args.out}: use a .npz or .pt file name")
    on = device(args)  # before any work
    latents, skipped = images_to_latents(list_images(args.images), device=on, name=args.images.name)
    for message in skipped:
        print(f"ordersearch: skipped {message}", file=sys.stderr)
    save_latents(latents, args.out)
    print(f"wrote {args.out}: {len(latents)} images, y {latents.channels} channels, "
          f"prior {latents.prior_channels} channels, {latents.num_positions} latent positions"
          + (f" ({len(skipped)} skipped)" if skipped else ""))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
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

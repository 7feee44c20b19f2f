"""What every command shares: the parser that errs in one line, the data and device options, the training protocol.

Nothing here imports torch at module level: ``ordersearch --help`` builds
every command's parser without it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from ..errors import LatentError, OrdersearchError

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default auto)"
START_HELP = ("where each schedule's training starts: any-order (default: from one model trained over random "
              "orders, per patch size and seed) or prior (context weights from zero, the earlier protocol)")
MAX_STEPS_HELP = "step cap per training; it stops at a validation plateau before it (default 8000)"


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2), as every other error, and a guess for a mistyped choice."""

    def error(self, message: str) -> NoReturn:
        import difflib
        import re

        typo = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)$", message)
        unknown = re.search(r"unrecognized arguments: (--\S+)", message)
        if typo:
            word, known = typo[1], re.findall(r"'(.*?)'", typo[2])
        elif unknown:  # the root parser says it for every command's options: look in all of them
            known = sorted({s for p in parsers(self) for a in p._actions for s in a.option_strings
                            if s.startswith("--")})
            word = unknown[1].split("=")[0]
        close = difflib.get_close_matches(word, known, n=1, cutoff=0.6) if typo or unknown else []
        if close:
            message += f"; did you mean {close[0]!r}?"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of the commands directly below ``parser`` (none for a command itself)."""
    return [child for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            for child in a.choices.values()]


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every parser below it (``codec``, and ``codec train`` under it)."""
    yield parser
    for child in commands(parser):
        yield from parsers(child)


def add_data_options(p: argparse.ArgumentParser) -> None:
    """--latents FILE or --images DIR; neither: the built-in latents (``load_data``)."""
    group = p.add_argument_group("data (default: the built-in latents)")
    group.add_argument("--latents", type=Path, metavar="FILE",
                       help="latent file (.npz or .pt) from your codec (default: the built-in latents)")
    group.add_argument("--images", type=Path, metavar="DIR",
                       help="folder of images, turned into latents by the bundled base codec")


def add_training_options(p: argparse.ArgumentParser) -> None:
    """--max-steps and --start: the dedicated-training protocol a command may change (``train_config``)."""
    p.add_argument("--max-steps", type=int, metavar="N", help=MAX_STEPS_HELP)
    p.add_argument("--start", choices=("any-order", "prior"), default="any-order", help=START_HELP)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """--device and --quiet, last in every command that trains or measures."""
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def device(args: argparse.Namespace):
    """The command's ``--device``, resolved once (auto: CUDA when available, else CPU)."""
    from ..device import resolve_device

    return resolve_device(getattr(args, "device", "auto"))


def load_data(args: argparse.Namespace, on):
    """The latents a command runs on: --latents FILE, --images DIR (through the base codec on device ``on``), or
    the built-in set."""
    if args.latents is not None and args.images is not None:
        raise LatentError("give --latents FILE or --images DIR, not both")
    if args.latents is not None:
        from ..data import load_latents
        return load_latents(args.latents)
    if args.images is not None:
        from ..data import list_images
        from ..models import images_to_latents
        latents, skipped = images_to_latents(list_images(args.images), device=on, name=args.images.name)
        for message in skipped:
            print(f"ordersearch: skipped {message}", file=sys.stderr)
        return latents
    from ..models import builtin
    return builtin()


def train_config(args: argparse.Namespace, kernel: int):
    """The dedicated-training protocol: the defaults, with the command's --max-steps and --start."""
    from dataclasses import replace

    from ..evaluation import TrainConfig
    from ..models import ModelConfig

    config = TrainConfig(model=ModelConfig(kernel=kernel), start=getattr(args, "start", "any-order"))
    return replace(config, max_steps=args.max_steps) if args.max_steps else config


def at_least_one(**values: int) -> None:
    """One line for a count option below 1 (``--seeds 0``)."""
    for flag, value in values.items():
        if value < 1:
            raise OrdersearchError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")


def secrets(args: argparse.Namespace) -> list[str]:
    """The database URLs a command was given (``--storage``, ``--store``): their passwords are masked in every
    message and file, whatever characters they hold."""
    return [v for v in (getattr(args, "storage", None), getattr(args, "store", None)) if isinstance(v, str)]


def recorded_command(args: argparse.Namespace) -> str:
    """The command line as typed, passwords masked, for the files a command writes (empty when not run as
    ``ordersearch``)."""
    from ..errors import redact

    typed = "ordersearch " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("ordersearch") else ""
    return redact(typed, *secrets(args))


def check_output(path: Path) -> None:
    """One line instead of a traceback after the work: the output must be a file in an existing folder."""
    if path.is_dir():
        raise OrdersearchError(f"{path}: is a folder; give the output file's name")
    if not path.parent.is_dir():
        raise OrdersearchError(f"{path}: no folder {path.parent} to write it into")

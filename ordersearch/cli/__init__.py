"""The ``ordersearch`` command line, assembled from one module per group of commands.

=================  ==============================================
``schedules``      show, validate, latents
``run``            run, search, plot
``verify``         verify, compare
``codec``          encode, decode, codec train, codec eval
``worker``         worker
``common``         what they share: one-line parser errors, data, device and training options
=================  ==============================================

Every error about user input is one line on stderr and exit code 2 (``--debug``
shows the traceback instead); ``validate`` exits 1 when a file is invalid.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import OrdersearchError, printable, redact
from . import codec, run, schedules, verify, worker
from .common import Parser, commands, parsers, secrets

#: the command groups, in the order ``ordersearch --help`` lists their commands
GROUPS = (schedules, run, verify, codec, worker)


def build_parser() -> argparse.ArgumentParser:
    """Every command's parser (no torch imported: ``--help`` stays fast)."""
    parser = Parser(prog="ordersearch", description="Find, prove and export the best decoding order of multistage "
                    "spatial context models for learned image codecs.")
    parser.add_argument("--version", action="version", version=f"ordersearch {__version__}",
                        help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.add_parsers(sub)
    # --debug before or after the command name, on the commands themselves (``codec train``, not ``codec``)
    for command in (p for p in parsers(parser) if p is not parser and not commands(p)):
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

    args = build_parser().parse_args(argv)
    if args.debug:
        return args.func(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # each warning once, as Python shows them by default
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)  # hidden by default, hidden here
        code = _run(args)
    if code == 0:
        for message in dict.fromkeys(printable(redact(str(w.message).splitlines()[0], *secrets(args)))
                                     for w in caught if str(w.message)):
            print(f"ordersearch: warning: {message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    """``args.func(args)``, every error one line on stderr."""
    try:
        return args.func(args)
    except OrdersearchError as e:
        print(f"ordersearch: error: {printable(redact(str(e), *secrets(args)))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): not an error; silence the flush at exit.
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as e:  # a path problem found late (a read-only folder, an output that is a file): one line
        where = f"{e.filename}: " if e.filename else ""
        print(printable(redact(f"ordersearch: error: {where}{e.strerror or e}", *secrets(args))), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ordersearch: interrupted; run the same command to resume", file=sys.stderr)
        return 130


__all__ = ["GROUPS", "build_parser", "main"]

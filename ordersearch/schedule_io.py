"""JSON schedule format, version 1: save, load and validate.

One JSON object per file::

    {"format": "ordersearch.schedule", "version": 1,
     "patch": 4, "kernel": 5,
     "stages": [[0,2,5,4],[1,7,11,8],[6,12,13,10],[3,14,15,9]],
     "name": "lin2023-4x4",
     "metrics": {"bits_per_latent": ..., "bpp": ..., "estimator": "dedicated"},
     "provenance": {"strategy": ..., "data": ..., "config": {...},
                    "package_version": ..., "created": ...}}

``stages`` is required; ``patch`` (if given) must match it; ``kernel``
defaults to 5; ``name``, ``metrics`` and ``provenance`` are optional and kept
as they are. A bare nested list (the ``pattern`` tensor of the official code
of Lin et al. 2023, pasted) is accepted too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ScheduleError
from .files import atomic_write, read_regular_file
from .schedule import Schedule, check_kernel

FORMAT = "ordersearch.schedule"
VERSION = 1
#: A schedule file is a few hundred bytes; a 16x16 one with metrics a few tens of kilobytes
MAX_SCHEDULE_BYTES = 16 * 2**20
DEFAULT_KERNEL = 5


@dataclass(frozen=True)
class ScheduleMeta:
    """Everything in a schedule file besides the grid."""

    kernel: int = DEFAULT_KERNEL
    name: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def schedule_to_dict(
    schedule: Schedule,
    *,
    kernel: int = DEFAULT_KERNEL,
    name: str | None = None,
    metrics: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The v1 JSON object of ``schedule``; ``created`` and ``package_version`` are filled in."""
    from ._version import __version__

    prov = {"package_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    prov.update(provenance or {})
    out: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "patch": schedule.patch,
        "kernel": check_kernel(kernel),
        "stages": [list(row) for row in schedule.stages],
    }
    if name is not None:
        out["name"] = name
    out["metrics"] = dict(metrics or {})
    out["provenance"] = prov
    return out


def save_schedule(schedule: Schedule, path: str | os.PathLike, **fields: Any) -> Path:
    """Write ``schedule`` as v1 JSON, atomically (temp file + rename).

    Keyword arguments are those of :func:`schedule_to_dict`.
    """
    return atomic_write(path, _dumps(schedule_to_dict(schedule, **fields)))


def _dumps(obj: dict[str, Any]) -> str:
    """JSON with one grid row per line, so a schedule file reads like the grid."""
    rows = ",\n    ".join(json.dumps(row) for row in obj["stages"])
    text = json.dumps({**obj, "stages": "@STAGES@"}, indent=2)
    return text.replace('"@STAGES@"', "[\n    " + rows + "\n  ]") + "\n"


def parse_schedule(obj: Any) -> tuple[Schedule, ScheduleMeta]:
    """Validate a decoded JSON value (v1 object or bare grid) and build the schedule."""
    if isinstance(obj, list):
        return Schedule.from_grid(obj), ScheduleMeta()
    if not isinstance(obj, dict):
        raise ScheduleError(f"expected a JSON object or a nested list, got {type(obj).__name__}")
    fmt = obj.get("format")
    if fmt != FORMAT:
        if fmt is None:
            raise ScheduleError(f"missing field 'format' (expected {FORMAT!r})")
        raise ScheduleError(f"wrong format {fmt!r} (expected {FORMAT!r})")
    version = obj.get("version")
    if version != VERSION or not isinstance(version, int) or isinstance(version, bool):  # not 1.0 or true
        if version is None:
            raise ScheduleError("missing field 'version'")
        raise ScheduleError(f"unknown version {version!r} (this ordersearch reads version {VERSION})")
    if "stages" not in obj:
        raise ScheduleError("missing field 'stages'")
    schedule = Schedule.from_grid(obj["stages"])
    if "patch" in obj and (obj["patch"] != schedule.patch or not isinstance(obj["patch"], int)
                           or isinstance(obj["patch"], bool)):
        n = schedule.patch
        raise ScheduleError(f"patch is {obj['patch']!r} but stages is {n}x{n}")
    kernel = check_kernel(obj.get("kernel", DEFAULT_KERNEL))
    name = obj.get("name")
    if name is not None and not isinstance(name, str):
        raise ScheduleError(f"name must be a string, got {type(name).__name__}")
    if name is not None and not name.isprintable() or name is not None and len(name) > 1000:
        raise ScheduleError("name must be printable text of at most 1000 characters")
    for key in ("metrics", "provenance"):
        if not isinstance(obj.get(key, {}), dict):
            raise ScheduleError(f"{key} must be a JSON object, got {type(obj[key]).__name__}")
    meta = ScheduleMeta(kernel=kernel, name=name, metrics=dict(obj.get("metrics", {})),
                        provenance=dict(obj.get("provenance", {})))
    return schedule, meta


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose keys are unique (``json`` would silently keep the last of two ``stages``)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {twice!r} appears twice")
    return out


def loads_schedule(text: str | bytes) -> tuple[Schedule, ScheduleMeta]:
    """Parse schedule JSON text; errors are :class:`ScheduleError`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ScheduleError(f"not valid JSON: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise ScheduleError(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise ScheduleError("not valid JSON: nested too deeply") from None
    except ValueError as e:  # an integer of thousands of digits, a duplicate key
        raise ScheduleError(f"not a usable schedule file: {str(e).splitlines()[0]}") from None
    return parse_schedule(obj)


def load_schedule(path: str | os.PathLike) -> tuple[Schedule, ScheduleMeta]:
    """Read a schedule file; every error is a :class:`ScheduleError` that starts with the path."""
    path = Path(path)
    try:
        data = read_regular_file(path, MAX_SCHEDULE_BYTES)
    except FileNotFoundError:
        raise ScheduleError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ScheduleError(f"{path}: is a directory, not a schedule file") from None
    except OSError as e:
        raise ScheduleError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise ScheduleError(f"{path}: {e}") from None
    try:
        return loads_schedule(data)
    except ScheduleError as e:
        raise ScheduleError(f"{path}: {e}") from None

"""The evaluation store: finished evaluations on disk, so no evaluation is ever trained twice.

An SQLite file (WAL mode; several processes may read and write at once).
The key of an evaluation is a hash of (what was evaluated, estimator,
configuration, data fingerprint, seed), where a schedule is taken in its
canonical form under translations (an exact symmetry: a translated schedule
has the same rate, and its per-position numbers are the canonical ones moved
back). Each evaluation is committed on its own the moment it finishes; the
trained weights go next to the database (``models/<key>.pt``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .errors import OrdersearchError
from .files import atomic_write
from .harness import Evaluation, TrainConfig, as_splits, data_fingerprint, evaluate, evaluate_context
from .data.latents import LatentSet, Splits
from .schedule import Position, Schedule, context_index

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    estimator TEXT NOT NULL,
    seed INTEGER NOT NULL,
    data TEXT NOT NULL,
    config TEXT NOT NULL,
    bits_per_latent REAL NOT NULL,
    result TEXT NOT NULL,
    created TEXT NOT NULL
)
"""


def evaluation_key(kind: str, subject: str, estimator: str, config: dict, data: str, seed: int) -> str:
    blob = json.dumps([kind, subject, estimator, config, data, seed], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class EvaluationStore:
    """Evaluations keyed by content, in ``<folder>/evaluations.sqlite``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "evaluations.sqlite"
        try:
            self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise OrdersearchError(f"{self.path}: not a usable evaluation store ({e})") from None

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    def get(self, key: str) -> Evaluation | None:
        row = self._db.execute("SELECT result FROM evaluations WHERE key = ?", (key,)).fetchone()
        return None if row is None else Evaluation.from_dict(json.loads(row[0]))

    def put(self, key: str, kind: str, subject: str, evaluation: Evaluation) -> None:
        """Store one finished evaluation (weights first, then the row, so a row always has its weights)."""
        if evaluation.model is not None:
            buf = io.BytesIO()
            torch.save({k: v.cpu() for k, v in evaluation.model.state_dict().items()}, buf)
            atomic_write(self.model_path(key), buf.getvalue())
        self._db.execute(
            "INSERT OR IGNORE INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, kind, subject, evaluation.estimator, evaluation.seed, evaluation.data,
             json.dumps(evaluation.config, sort_keys=True), evaluation.bits_per_latent,
             json.dumps(evaluation.to_dict()), datetime.now(timezone.utc).isoformat(timespec="seconds")))

    def model_path(self, key: str) -> Path:
        return self.folder / "models" / f"{key}.pt"

    def rows(self) -> list[dict]:
        """Every stored evaluation as a flat record (for tables)."""
        cur = self._db.execute("SELECT key, kind, subject, estimator, seed, data, bits_per_latent, result "
                               "FROM evaluations ORDER BY created, key")
        out = []
        for key, kind, subject, estimator, seed, data, bits, result in cur:
            r = json.loads(result)
            out.append({"key": key, "kind": kind, "subject": subject, "estimator": estimator, "seed": seed,
                        "data": data, "bits_per_latent": bits, "bpp": r["bpp"], "seconds": r["seconds"],
                        "steps": r["steps"]})
        return out

    # ---------------------------------------------------------------- cached evaluation
    def evaluate(self, schedule: Schedule, latents: LatentSet | Splits, config: TrainConfig = TrainConfig(),
                 seed: int = 0, device: str = "cpu", progress: bool = True,
                 cached_only: bool = False) -> Evaluation | None:
        """``harness.evaluate`` through the store: a repeated request (or a translated schedule) is a hit.

        ``cached_only``: return None instead of training when the store does not have it.
        """
        canonical = schedule.canonical("translations")
        subject = json.dumps([list(r) for r in canonical.stages])
        result = self._cached("schedule", subject, "dedicated", config, latents, seed,
                              None if cached_only else
                              lambda splits: evaluate(canonical, splits, config, seed, device, progress))
        return None if result is None else _moved_to(result, canonical, schedule)

    def evaluate_context(self, context: list[Position], patch: int, latents: LatentSet | Splits,
                         config: TrainConfig = TrainConfig(), seed: int = 0, device: str = "cpu",
                         progress: bool = True, cached_only: bool = False) -> Evaluation | None:
        """``harness.evaluate_context`` through the store (``cached_only`` as in :meth:`evaluate`)."""
        subject = f"{patch}:{context_index(context, patch)}"
        return self._cached("context", subject, "dedicated-set", config, latents, seed,
                            None if cached_only else
                            lambda splits: evaluate_context(context, patch, splits, config, seed, device, progress))

    def _cached(self, kind: str, subject: str, estimator: str, config: TrainConfig, latents: LatentSet | Splits,
                seed: int, run: Callable[[Splits], Evaluation] | None) -> Evaluation | None:
        splits = as_splits(latents)
        data = data_fingerprint(splits)
        key = evaluation_key(kind, subject, estimator, config.to_dict(), data, seed)
        hit = self.get(key)
        if hit is not None or run is None:
            return hit
        result = run(splits)
        self.put(key, kind, subject, result)
        return result


def _moved_to(result: Evaluation, canonical: Schedule, schedule: Schedule) -> Evaluation:
    """The canonical schedule's evaluation expressed for a translation of it."""
    if schedule == canonical:
        return result
    n = schedule.patch
    grid = canonical.array()
    for dr in range(n):
        for dc in range(n):
            if (np.roll(grid, (dr, dc), axis=(0, 1)) == schedule.array()).all():
                per_position = np.roll(np.asarray(result.per_position), (dr, dc), axis=(0, 1)).tolist()
                return Evaluation(**{**result.__dict__, "stages": [list(r) for r in schedule.stages],
                                     "per_position": per_position})
    raise AssertionError("schedule is not a translation of its canonical form")

"""The evaluation store: finished evaluations in a database, so no evaluation is ever trained twice.

It stores and finds; it never trains (``evaluation.evaluator`` decides what to
train and asks the store first).

Where it lives: a folder (an SQLite file ``evaluations.sqlite`` in WAL mode,
the trained weights beside it in ``models/<key>.pt``, the checkpoints of
trainings in progress in ``checkpoints/``), or any SQLAlchemy
database URL, such as the Optuna study's own ``postgresql://...``: then the
weights go into the database too, and every machine that reaches it shares
the evaluations.

The key of an evaluation is a hash of (what was evaluated, estimator,
configuration, data fingerprint, seed), where a schedule is taken in its
canonical form under translations (an exact symmetry: a translated schedule
has the same rate, and its per-position numbers are the canonical ones moved
back). Each evaluation is committed on its own the moment it finishes.

Several processes (on several machines, with a shared database) never train
the same key at once: before training, a process claims the key (a row in
``evaluation_claims`` whose time stamp it refreshes every ``heartbeat`` seconds while it
trains); another process that wants the key waits for the result instead. A
claim left by a process that died goes stale after ``3 * heartbeat`` and is
taken over.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
import torch

from ..errors import OrdersearchError, redact
from ..files import atomic_write
from ..models.context_weights import ContextWeights, untrusted_load
from ..models.multistage import ModelConfig, translated_state
from ..schedule import Position, Schedule, context_index
from .record import Evaluation

T = TypeVar("T")


def _tables():
    meta = sa.MetaData()
    evaluations = sa.Table(
        "evaluations", meta,
        sa.Column("key", sa.Text, primary_key=True), sa.Column("kind", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False), sa.Column("estimator", sa.Text, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False), sa.Column("data", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False), sa.Column("bits_per_latent", sa.Float, nullable=False),
        sa.Column("result", sa.Text, nullable=False), sa.Column("created", sa.Text, nullable=False))
    weights = sa.Table("evaluation_weights", meta, sa.Column("key", sa.Text, primary_key=True),
                       sa.Column("state", sa.LargeBinary, nullable=False))
    claims = sa.Table("evaluation_claims", meta, sa.Column("key", sa.Text, primary_key=True),
                      sa.Column("owner", sa.Text, nullable=False), sa.Column("beat", sa.Float, nullable=False))
    return meta, evaluations, weights, claims


def is_url(location: str | os.PathLike) -> bool:
    """A database URL (``dialect://...``) rather than a folder."""
    return "://" in str(location)


def retry_table_race(create: Callable[[], T], attempts: int = 5) -> T:
    """``create()``, tried again when it fails the way processes starting together on one new database do.

    Each creates the tables it does not see yet, and all but one fail with
    "table ... already exists" (or a lock, or a duplicate row in the
    catalogue); a second look finds the tables made.
    """
    for attempt in range(attempts - 1):
        try:
            return create()
        except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
            time.sleep(0.3 * (attempt + 1))
    return create()


#: what a stored evaluation holds; evaluations of an older measurement are not reused (2: val bits per image;
#: 3: models trained at the image border, with the outside channel)
MEASUREMENT = 3


def evaluation_key(kind: str, subject: str, estimator: str, config: dict, data: str, seed: int) -> str:
    """The content key of an evaluation (of the current ``MEASUREMENT``)."""
    blob = json.dumps([kind, subject, estimator, config, data, seed, MEASUREMENT], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class EvaluationStore:
    """Evaluations keyed by content, in ``<folder>/evaluations.sqlite`` or in the database at a URL."""

    def __init__(self, location: str | os.PathLike, heartbeat: float = 30.0):
        self.url = str(location) if is_url(location) else None
        self.folder = None if self.url else Path(location)
        self.heartbeat = heartbeat
        # host and pid first: a process on the same host can tell that a claim's owner died (SIGKILL) and take
        # its claims over at once instead of waiting for them to go stale
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._meta, self._evaluations, self._weights, self._claims = _tables()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{self.folder / 'evaluations.sqlite'}"
        else:
            url = self.url
        what = self.url or self.folder / "evaluations.sqlite"
        try:
            sqlite = url.startswith("sqlite")
            self._engine = sa.create_engine(url, connect_args={"timeout": 120} if sqlite else {})
            if sqlite:
                sa.event.listen(self._engine, "connect", lambda con, _: con.execute("PRAGMA journal_mode=WAL"))
            retry_table_race(lambda: self._meta.create_all(self._engine))
        except Exception as exc:  # SQLAlchemy raises many types: bad URL, missing driver, not a database, no server
            raise OrdersearchError(redact(f"{what}: not a usable evaluation store ({str(exc).splitlines()[0]})",
                                         self.url)) from None

    def close(self) -> None:
        self._engine.dispose()

    def __len__(self) -> int:
        with self._engine.connect() as con:
            return con.execute(sa.select(sa.func.count()).select_from(self._evaluations)).scalar_one()

    def get(self, key: str) -> Evaluation | None:
        with self._engine.connect() as con:
            row = con.execute(sa.select(self._evaluations.c.result).where(self._evaluations.c.key == key)).first()
        return None if row is None else Evaluation.from_dict(json.loads(row[0]))

    def put(self, key: str, kind: str, subject: str, evaluation: Evaluation) -> None:
        """Store one finished evaluation (weights first, then the row, so a row always has its weights)."""
        blob = None
        if evaluation.model is not None:
            buf = io.BytesIO()
            torch.save({k: v.cpu() for k, v in evaluation.model.state_dict().items()}, buf)
            blob = buf.getvalue()
            if self.folder is not None:
                atomic_write(self.model_path(key), blob)
        row = dict(key=key, kind=kind, subject=subject, estimator=evaluation.estimator, seed=evaluation.seed,
                   data=evaluation.data, config=json.dumps(evaluation.config, sort_keys=True),
                   bits_per_latent=evaluation.bits_per_latent, result=json.dumps(evaluation.to_dict()),
                   created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        try:
            with self._engine.begin() as con:  # one transaction: weights and row together, or neither
                if blob is not None and self.folder is None:
                    con.execute(sa.insert(self._weights).values(key=key, state=blob))
                con.execute(sa.insert(self._evaluations).values(**row))
        except sa.exc.IntegrityError:
            pass  # stored meanwhile by another process: the same evaluation, keep the first

    def model_path(self, key: str) -> Path:
        """Where a folder store keeps the weights of ``key``."""
        if self.folder is None:
            raise OrdersearchError("a database store keeps weights in the database: use EvaluationStore.weights")
        return self.folder / "models" / f"{key}.pt"

    def checkpoint_path(self, keys: list[str]) -> Path | None:
        """Where a folder store keeps the checkpoint of the training of ``keys`` in progress (a database
        store keeps none: a training cut off there starts over)."""
        if self.folder is None:
            return None
        name = keys[0] if len(keys) == 1 else hashlib.sha256(" ".join(keys).encode()).hexdigest()[:32]
        return self.folder / "checkpoints" / f"{name}.pt"

    def weights(self, key: str) -> bytes | None:
        """The saved state dict of ``key``'s trained model (``torch.load`` it from ``io.BytesIO``), if any."""
        if self.folder is not None:
            path = self.model_path(key)
            return path.read_bytes() if path.is_file() else None
        with self._engine.connect() as con:
            row = con.execute(sa.select(self._weights.c.state).where(self._weights.c.key == key)).first()
        return None if row is None else bytes(row[0])

    def rows(self) -> list[dict]:
        """Every stored evaluation as a flat record (for tables)."""
        e = self._evaluations
        with self._engine.connect() as con:
            cur = con.execute(sa.select(e.c.key, e.c.kind, e.c.subject, e.c.estimator, e.c.seed, e.c.data,
                                        e.c.bits_per_latent, e.c.result).order_by(e.c.created, e.c.key)).all()
        out = []
        for key, kind, subject, estimator, seed, data, bits, result in cur:
            r = json.loads(result)
            out.append({"key": key, "kind": kind, "subject": subject, "estimator": estimator, "seed": seed,
                        "data": data, "bits_per_latent": bits, "bpp": r["bpp"], "seconds": r["seconds"],
                        "steps": r["steps"]})
        return out

    # ---------------------------------------------------------------- claims
    def _claim(self, key: str) -> bool:
        """Take ``key`` for training unless a live process holds it (a stale claim is taken over)."""
        c = self._claims.c
        with self._engine.begin() as con:
            con.execute(sa.delete(self._claims).where(c.key == key, c.beat < time.time() - 3 * self.heartbeat))
            holder = con.execute(sa.select(c.owner).where(c.key == key)).scalar()
            if holder is not None and dead_here(holder):
                con.execute(sa.delete(self._claims).where(c.key == key, c.owner == holder))
        try:
            with self._engine.begin() as con:
                con.execute(sa.insert(self._claims).values(key=key, owner=self._owner, beat=time.time()))
            return True
        except sa.exc.IntegrityError:
            return False

    def _release(self, key: str) -> None:
        c = self._claims.c
        with self._engine.begin() as con:
            con.execute(sa.delete(self._claims).where(c.key == key, c.owner == self._owner))

    def _beating(self, keys: list[str], stop: threading.Event) -> None:
        c = self._claims.c
        while not stop.wait(self.heartbeat):
            with self._engine.begin() as con:
                con.execute(sa.update(self._claims).where(c.key.in_(keys), c.owner == self._owner)
                            .values(beat=time.time()))

    # ---------------------------------------------------------------- cached evaluation
    def cached(self, key: str, kind: str, subject: str, run: Callable[[], Evaluation] | None) -> Evaluation | None:
        """The stored evaluation of ``key``; else ``run()``'s, stored (None without ``run``).

        While ``run`` trains, this process holds the key's claim; a process
        that finds the key claimed waits for the result (or for the claim to
        go stale) instead of training it too.
        """
        hit = self.get(key)
        if hit is not None or run is None:
            return hit
        while not self._claim(key):  # another process trains it: wait for its result (or for it to die)
            time.sleep(min(self.heartbeat, 2.0))
            hit = self.get(key)
            if hit is not None:
                return hit
        with self._holding([key]):
            hit = self.get(key)  # finished between the first look and the claim
            if hit is not None:
                return hit
            result = run()
            self.put(key, kind, subject, result)
            return result

    def cached_many(self, items: list[tuple[str, str, str]],
                    run: Callable[[list[int]], Iterable[Evaluation]]) -> list[Evaluation]:
        """``cached`` for several (key, kind, subject) at once: ``run(indices)`` trains the missing ones together.

        ``run`` yields the results in the order of ``indices``; each is stored
        as it comes, so an interrupted batch keeps what it finished.

        Keys another process holds are left to it and waited for afterwards
        (or trained here if its claim goes stale).
        """
        results: list[Evaluation | None] = [self.get(key) for key, _, _ in items]
        claimed = [i for i, r in enumerate(results) if r is None and self._claim(items[i][0])]
        if claimed:
            with self._holding([items[i][0] for i in claimed]):
                for i in claimed:  # finished between the first look and the claim?
                    results[i] = self.get(items[i][0])
                todo = [i for i in claimed if results[i] is None]
                for i, result in zip(todo, run(todo) if todo else []):
                    self.put(*items[i], result)
                    results[i] = result
        for i, r in enumerate(results):
            if r is None:  # held by another process when we looked
                results[i] = self.cached(*items[i], lambda i=i: next(iter(run([i]))))
        return results

    @contextlib.contextmanager
    def _holding(self, keys: list[str]):
        """Heartbeats on claimed ``keys`` while the block runs; the claims released after it."""
        stop = threading.Event()
        beat = threading.Thread(target=self._beating, args=(keys, stop), daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
            for key in keys:
                self._release(key)

    def state(self, key: str) -> dict[str, torch.Tensor] | None:
        """The trained model's state dict of ``key`` (loaded safely), if stored; damaged weights are one clear
        error."""
        blob = self.weights(key)
        if blob is None:
            return None
        state = untrusted_load(blob, f"{self.where(key)}: damaged model weights; delete that file (or the "
                                     "evaluation's row) and it is trained again")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise OrdersearchError(f"{self.where(key)}: damaged model weights (not a dict of tensors)")
        return state

    def where(self, key: str) -> str:
        """Where ``key``'s weights lie: the file in a folder store, else the database (password masked)."""
        if self.folder is not None:
            return str(self.model_path(key))
        return f"the weights of {key} in {redact(self.url or '', self.url)}"

    def schedule_weights(self, schedule: Schedule, config: dict, data: str, seed: int = 0) -> ContextWeights | None:
        """Weights of ``schedule``'s dedicated model on ``data`` (moved to its positions), described as the model
        was built (its evaluation's protocol, decided on the data); None if not stored."""
        canonical = schedule.canonical("translations")
        key = evaluation_key(*schedule_subject(canonical), config, data, seed)
        state, evaluation = self.state(key), self.get(key)
        if state is None or evaluation is None:
            return None
        built = ModelConfig(**evaluation.config["model"])
        return ContextWeights.from_state(translated_state(state, canonical.translation_to(schedule)), schedule, built)


def dead_here(owner: str) -> bool:
    """Whether a claim's owner was a process on this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine (or an older store's owner): only its heartbeat can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def schedule_subject(schedule: Schedule) -> tuple[str, str, str]:
    """(kind, subject, estimator) of a dedicated schedule evaluation's key; pass the canonical translate."""
    return "schedule", json.dumps([list(r) for r in schedule.stages]), "dedicated"


def any_order_subject(patch: int) -> tuple[str, str, str]:
    """(kind, subject, estimator) of the key of a patch size's any-order model (``models.any_order``)."""
    return "any-order", f"{patch}x{patch}", "any-order"


def context_subject(context: list[Position], patch: int) -> tuple[str, str, str]:
    """(kind, subject, estimator) of a dedicated per-set evaluation's key."""
    return "context", f"{patch}:{context_index(context, patch)}", "dedicated-set"

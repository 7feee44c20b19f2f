"""What every search strategy shares: scorers of context sets, the search budget, the result and its trace.

A strategy never trains anything itself. It asks a *scorer* for f(C), the
rate of a latent whose relative context set is C (docs/design.md), and builds
schedule rates from those: ``rate(schedule) = mean over positions of
f(C_p)``. Every distinct context set a strategy asks for is one scorer call;
the :class:`Session` counts them, times them and keeps the trace.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import OrdersearchError
from ..estimators.base import CostEstimator
from ..schedule import Schedule, check_kernel


# ------------------------------------------------------------------------------------ scorers
class Scorer(ABC):
    """f(C) for relative context sets of an n x n patch, given by their codes (``context_index``)."""

    patch: int
    kernel: int
    name: str

    @abstractmethod
    def costs(self, codes: np.ndarray) -> np.ndarray:
        """Bits per latent element for each context-set code (even ints below 2^(n*n))."""


class TableScorer(Scorer):
    """Look-up in a full cost table (any estimator's ``cost_table``)."""

    def __init__(self, table: np.ndarray, patch: int, kernel: int = 5, name: str = "table"):
        table = np.asarray(table, dtype=np.float64)
        if table.shape != (2 ** (patch * patch),):
            raise OrdersearchError(f"a {patch}x{patch} cost table needs {2 ** (patch * patch)} entries, "
                                   f"got shape {table.shape}")
        if not np.isfinite(table[::2]).all():
            raise OrdersearchError("the cost table has a missing (NaN or inf) entry at an even code")
        self.table, self.patch, self.kernel, self.name = table, patch, check_kernel(kernel), name

    def costs(self, codes: np.ndarray) -> np.ndarray:
        return self.table[np.asarray(codes, dtype=np.int64)]


class EstimatorScorer(Scorer):
    """f(C) asked of a cost estimator as the search goes (for lazy ones, e.g. dedicated per-set training)."""

    def __init__(self, estimator: CostEstimator, patch: int):
        self.estimator, self.patch, self.kernel, self.name = estimator, patch, estimator.kernel, estimator.name

    def costs(self, codes: np.ndarray) -> np.ndarray:
        return self.estimator.costs(np.asarray(codes, dtype=np.int64), self.patch)


class FunctionScorer(Scorer):
    """f(C) from a function of one code, e.g. a dedicated per-set training (cached by the store)."""

    def __init__(self, cost: Callable[[int], float], patch: int, kernel: int = 5, name: str = "function"):
        self.cost, self.patch, self.kernel, self.name = cost, patch, check_kernel(kernel), name

    def costs(self, codes: np.ndarray) -> np.ndarray:
        return np.array([self.cost(int(c)) for c in np.asarray(codes).ravel()]).reshape(np.shape(codes))


# ------------------------------------------------------------------------------------ budget
@dataclass(frozen=True)
class Budget:
    """How much a strategy may spend: whole schedules scored (``trials``) and/or wall ``seconds``.

    Strategies with a fixed amount of work (greedy, dp) ignore it;
    ``exhaustive`` refuses when its order count exceeds ``max_orders``.
    """

    trials: int | None = None
    seconds: float | None = None
    max_orders: int = 1_000_000


# ------------------------------------------------------------------------------------ result
@dataclass
class TraceRow:
    """One scorer call (a new context set) or one whole schedule a strategy scored."""

    index: int
    kind: str  # "set" or "schedule"
    subject: str  # context-set code, or the schedule's grid as "0 1 / 2 3"
    rate: float
    seconds: float
    best: float  # best whole-schedule rate found so far (NaN before the first)


@dataclass
class SearchResult:
    """What a strategy found and what it cost."""

    strategy: str
    scorer: str
    schedule: Schedule
    rate: float
    calls: int
    seconds: float
    trace: list[TraceRow] = field(default_factory=list, repr=False)
    #: further ranked schedules (dp's k best, beam's final beam), best first, with their rates
    ranked: list[tuple[Schedule, float]] = field(default_factory=list, repr=False)

    def __str__(self) -> str:
        return (f"{self.strategy}: {self.rate:.4f} bits/latent ({self.scorer}), {self.calls} scorer calls, "
                f"{self.seconds:.1f}s\n{self.schedule}")


def grid_text(schedule: Schedule) -> str:
    """A schedule's grid on one line: ``0 1 / 2 3`` (trace.csv, the run folder's tables)."""
    return " / ".join(" ".join(str(v) for v in row) for row in schedule.stages)


# ------------------------------------------------------------------------------------ session
class Session:
    """A scorer as one search run sees it: memoized, counted, traced, with a budget clock."""

    def __init__(self, scorer: Scorer, budget: Budget = Budget()):
        self.scorer, self.budget = scorer, budget
        self.patch = scorer.patch
        self.known: dict[int, float] = {}
        self.trace: list[TraceRow] = []
        self.best_rate, self.best_schedule = math.inf, None
        self.schedules = 0
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def out_of_budget(self) -> bool:
        b = self.budget
        return ((b.trials is not None and self.schedules >= b.trials)
                or (b.seconds is not None and self.elapsed >= b.seconds))

    def costs(self, codes: Iterable[int] | np.ndarray) -> np.ndarray:
        """f of each code; codes not seen before go to the scorer in one batch and are traced."""
        codes = np.asarray(codes, dtype=np.int64)
        new = [int(c) for c in np.unique(codes) if int(c) not in self.known]
        if new:
            rates = self.scorer.costs(np.array(new, dtype=np.int64))
            for c, r in zip(new, rates):
                self.known[c] = float(r)
                self.trace.append(TraceRow(len(self.trace), "set", str(c), float(r), self.elapsed, self.best_rate))
        if codes.size == 0:
            return np.zeros(codes.shape)
        lookup = np.vectorize(self.known.__getitem__, otypes=[float])
        return lookup(codes)

    def rate(self, schedule: Schedule) -> float:
        """Whole-schedule rate from the context sets; recorded as one trial."""
        if schedule.patch != self.patch:
            raise OrdersearchError(f"schedule is {schedule.patch}x{schedule.patch} but the search is "
                                   f"{self.patch}x{self.patch}")
        r = float(self.costs(schedule.context_indices().ravel()).mean())
        self.record(schedule, r)
        return r

    def record(self, schedule: Schedule, rate: float) -> None:
        self.schedules += 1
        if rate < self.best_rate:
            self.best_rate, self.best_schedule = rate, schedule
        self.trace.append(TraceRow(len(self.trace), "schedule", grid_text(schedule), rate, self.elapsed,
                                   self.best_rate))

    def record_order(self, order: np.ndarray, rate: float) -> None:
        """``record`` for an order given as flat positions (builds a Schedule only for a new best)."""
        n = self.patch
        grid = order_stages(np.asarray(order)[None])[0]
        self.schedules += 1
        if rate < self.best_rate:
            self.best_rate, self.best_schedule = rate, order_to_schedule(order, n)
        text = " / ".join(" ".join(map(str, grid[r * n:(r + 1) * n])) for r in range(n))
        self.trace.append(TraceRow(len(self.trace), "schedule", text, rate, self.elapsed, self.best_rate))

    def result(self, strategy: str, schedule: Schedule, rate: float,
               ranked: list[tuple[Schedule, float]] | None = None) -> SearchResult:
        return SearchResult(strategy, self.scorer.name, schedule, rate, calls=len(self.known),
                            seconds=self.elapsed, trace=self.trace, ranked=ranked or [])


# ------------------------------------------------------------------------------------ strategies
class Strategy(ABC):
    """A search strategy: ``search(scorer, budget) -> SearchResult``."""

    name: str = "strategy"

    def search(self, scorer: Scorer, budget: Budget = Budget()) -> SearchResult:
        """Find a good order for ``scorer.patch`` within ``budget``."""
        return self._run(Session(scorer, budget))

    @abstractmethod
    def _run(self, session: Session) -> SearchResult: ...


# ------------------------------------------------------------------------------------ subset helpers
def shift_tables(patch: int) -> np.ndarray:
    """(n*n, 2^(n*n)) int: ``shift[p][S]`` is the code of {(q - p) mod n : q in S}.

    ``S`` is a set of absolute patch positions as a bit mask (bit r*n + c); the
    result is the relative context set of position p when S is decoded.
    """
    n = patch
    k = n * n
    states = np.arange(2**k, dtype=np.int64)
    out = np.zeros((k, 2**k), dtype=np.int64)
    for p in range(k):
        pr, pc = divmod(p, n)
        for q in range(k):
            qr, qc = divmod(q, n)
            target = ((qr - pr) % n) * n + (qc - pc) % n
            out[p] |= ((states >> q) & 1) << target
    return out


def order_stages(orders: np.ndarray) -> np.ndarray:
    """(count, n*n) orders as flat positions -> (count, n*n) stage of each flat position (the grid)."""
    count, m = orders.shape
    stages = np.empty_like(orders)
    stages[np.arange(count)[:, None], orders] = np.arange(m)[None, :]
    return stages


def order_to_schedule(order: Iterable[int], patch: int) -> Schedule:
    """A permutation order given as flat position indices r*n + c."""
    return Schedule.from_order([divmod(int(p), patch) for p in order])

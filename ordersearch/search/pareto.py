"""Grouped schedules: the best schedule for every number of decoding stages T (the Pareto front).

A grouped schedule decodes a set G of patch positions per step; each member
of G sees only what earlier stages decoded, never the rest of G. So a stage
from decoded set S to S | G costs ``sum over g in G of f((S - g) mod n)``,
and the best T-step schedule is a T-edge shortest path from {} to P in the
graph whose edges are all pairs S < S' (3^(n^2) of them: 43 million for 4x4,
still exact in seconds when vectorized). T = n^2 is the best order (= dp),
T = 1 the single-stage schedule, T = 2 includes checkerboard::

    T=1: {} -> P                 T=2: {} -> {a,d} -> P (checkerboard)

The front reports, for each T, the best schedule with at most T stages, so it
never gets worse with more stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..schedule import Schedule
from .base import Budget, Scorer, Session
from .dp import step_costs


@dataclass
class ParetoPoint:
    stages: int  # the budget T
    rate: float  # best mean bits per latent element with at most T stages
    schedule: Schedule  # a schedule reaching it (its num_stages may be below T)
    exact_stages_rate: float  # best rate with exactly T stages


def _edges(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs S < S' of subsets of m positions, sorted by S', with offsets of each S' segment."""
    count = 3**m
    rest = np.arange(count, dtype=np.int64)
    before = np.zeros(count, dtype=np.int32)
    after = np.zeros(count, dtype=np.int32)
    for b in range(m):
        digit = rest % 3  # 0: not in S', 1: added at this step (in S' - S), 2: in S
        rest //= 3
        before |= (digit == 2).astype(np.int32) << b
        after |= (digit > 0).astype(np.int32) << b
    del rest
    keep = before != after
    before, after = before[keep], after[keep]
    order = np.argsort(after, kind="stable")
    before, after = before[order], after[order]
    starts = np.searchsorted(after, np.arange(1 << m))
    return before, after, starts


def pareto_front(scorer: Scorer | Session, budget: Budget = Budget(), progress: bool = False) -> list[ParetoPoint]:
    """Exact best grouped schedule for every T = 1..n*n."""
    from tqdm.auto import tqdm

    session = scorer if isinstance(scorer, Session) else Session(scorer, budget)
    n = session.patch
    m = n * n
    cost = step_costs(session)  # (m, 2^m): cost of adding p to S
    before, after, starts = _edges(m)
    added = after ^ before
    weight = np.zeros(len(before))
    for p in range(m):
        has = (added >> p) & 1 == 1
        weight[has] += cost[p, before[has]]
    full = (1 << m) - 1
    best = [np.full(1 << m, np.inf)]
    best[0][0] = 0.0
    nonempty = starts[1:]  # segment starts of S' = 1 .. full
    for _ in tqdm(range(m), desc=f"Pareto front {n}x{n} (stages)", disable=not progress or None, leave=False):
        vals = best[-1][before] + weight
        layer = np.full(1 << m, np.inf)
        layer[1:] = np.minimum.reduceat(vals, nonempty)
        best.append(layer)
    points, best_so_far, best_schedule = [], np.inf, None
    for t in range(1, m + 1):
        exact = float(best[t][full]) / m
        if exact < best_so_far - 1e-12:
            best_so_far, best_schedule = exact, _backtrack(best, t, full, before, weight, starts, n)
        points.append(ParetoPoint(t, best_so_far, best_schedule, exact))
    return points


def _backtrack(best: list[np.ndarray], t: int, state: int, before: np.ndarray, weight: np.ndarray,
               starts: np.ndarray, n: int) -> Schedule:
    groups = []
    while t > 0:
        lo, hi = starts[state], starts[state + 1] if state + 1 < len(starts) else len(before)
        vals = best[t - 1][before[lo:hi]] + weight[lo:hi]
        prev = int(before[lo + int(np.argmin(vals))])
        groups.append([divmod(p, n) for p in range(n * n) if (state ^ prev) >> p & 1])
        state, t = prev, t - 1
    return Schedule.from_order(groups[::-1])

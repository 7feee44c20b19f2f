"""The paper's order optimization as we read it: build the order one stage at a time.

Lin et al. (ICASSP 2023) choose their order with an optimization algorithm
whose code was not released. This is our reading of it, not the authors'
code: at every stage add the position whose rate, given what is already
decoded, is lowest; ties go to the lowest row-major index, so the result is
deterministic (the first stage is always (0, 0): with nothing decoded every
position costs f({}), and translations make all starts equivalent).
"""

from __future__ import annotations

import numpy as np

from .base import Session, Strategy, SearchResult, order_to_schedule, shift_tables


class Greedy(Strategy):
    """n*n stages, each asking the scorer for the candidates' context sets."""

    name = "greedy"

    def _run(self, session: Session) -> SearchResult:
        n = session.patch
        shift = shift_tables(n)
        decoded, order, total = 0, [], 0.0
        for _ in range(n * n):
            left = [p for p in range(n * n) if not decoded >> p & 1]
            costs = session.costs(np.array([shift[p, decoded] for p in left]))
            pick = int(np.argmin(costs))  # first minimum: lowest index on ties
            order.append(left[pick])
            total += float(costs[pick])
            decoded |= 1 << left[pick]
        schedule = order_to_schedule(order, n)
        rate = total / (n * n)
        session.record(schedule, rate)
        return session.result(self.name, schedule, rate)

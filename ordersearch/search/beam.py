"""Beam search: greedy with ``width`` partial orders kept per stage (width 1 is greedy).

Partial orders that decoded the same set keep only the cheaper one: the cost
of what follows depends only on the set, not on the order inside it. The
first position is (0, 0) (translation symmetry).
"""

from __future__ import annotations

import numpy as np

from .base import Session, Strategy, SearchResult, order_to_schedule, shift_tables


class Beam(Strategy):
    name = "beam"

    def __init__(self, width: int = 8):
        if width < 1:
            from ..errors import OrdersearchError
            raise OrdersearchError(f"beam width must be at least 1, got {width}")
        self.width = width

    def _run(self, session: Session) -> SearchResult:
        n = session.patch
        m = n * n
        shift = shift_tables(n)
        first = float(session.costs(np.array([0]))[0])
        beam: list[tuple[float, int, list[int]]] = [(first, 1, [0])]
        for _ in range(m - 1):
            moves = [(state, p) for _, state, _ in beam for p in range(m) if not state >> p & 1]
            costs = session.costs(np.array([shift[p, s] for s, p in moves]))
            best: dict[int, tuple[float, int, list[int]]] = {}
            i = 0
            for total, state, order in beam:
                for p in range(m):
                    if state >> p & 1:
                        continue
                    cand = (total + float(costs[i]), state | 1 << p, order + [p])
                    i += 1
                    if cand[1] not in best or cand[0] < best[cand[1]][0]:
                        best[cand[1]] = cand
            beam = sorted(best.values(), key=lambda t: (t[0], t[2]))[:self.width]
        ranked = [(order_to_schedule(order, n), total / m) for total, _, order in beam]
        for schedule, rate in ranked:
            session.record(schedule, rate)
        return session.result(f"beam{self.width}", *ranked[0], ranked=ranked)

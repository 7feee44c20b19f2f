"""Every order, each scored: (n^2 - 1)! orders up to translation (6 for 2x2, 40,320 for 3x3).

Orders are enumerated with (0, 0) first (one per translation class); with
``dihedral=True`` also one per class of the 8 rotations/reflections (only an
approximate symmetry of images, so it is never on by default). Refuses with a
clear message when the count exceeds ``Budget.max_orders``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..errors import OrdersearchError
from .base import Session, Strategy, SearchResult, order_stages, order_to_schedule, shift_tables


def all_orders(patch: int) -> np.ndarray:
    """(count, n*n) flat positions of every order that decodes position 0 first."""
    m = patch * patch
    rest = np.array(list(itertools.permutations(range(1, m))), dtype=np.int64).reshape(-1, m - 1)
    return np.hstack([np.zeros((len(rest), 1), dtype=np.int64), rest])


def order_context_codes(orders: np.ndarray, patch: int) -> np.ndarray:
    """(count, n*n): context-set code of each position (column = position) under each order."""
    count, m = orders.shape
    step = order_stages(orders)  # step[i, p] = when p is decoded
    shift = shift_tables(patch)
    codes = np.empty_like(orders)
    for p in range(m):
        before = (step < step[:, p:p + 1]).astype(np.int64)  # (count, m)
        decoded = (before << np.arange(m)[None, :]).sum(axis=1)
        codes[:, p] = shift[p, decoded]
    return codes


def one_per_dihedral_class(orders: np.ndarray, patch: int) -> np.ndarray:
    """Indices of the first order of every class under translations and the 8 rotations/reflections."""
    count, m = orders.shape
    grids = order_stages(orders).reshape(count, patch, patch)
    variants = []
    for k in range(4):
        for flip in (False, True):
            g = np.rot90(grids, k, axes=(1, 2))
            g = g[:, :, ::-1] if flip else g
            for dr in range(patch):
                for dc in range(patch):
                    variants.append(np.roll(g, (dr, dc), axis=(1, 2)).reshape(count, m))
    stacked = np.stack(variants, axis=1)  # (count, 8 n^2, m)
    # canonical form: the lexicographically smallest variant (a row of stage numbers)
    weights = (m ** np.arange(m - 1, -1, -1)).astype(np.float64)
    canonical = stacked[np.arange(count), np.argmin(stacked @ weights, axis=1)]
    _, first = np.unique(canonical, axis=0, return_index=True)
    return np.sort(first)


class Exhaustive(Strategy):
    name = "exhaustive"

    def __init__(self, dihedral: bool = False):
        self.dihedral = dihedral

    def _run(self, session: Session) -> SearchResult:
        n = session.patch
        count = math.factorial(n * n - 1)
        if count > session.budget.max_orders:
            raise OrdersearchError(f"exhaustive search of a {n}x{n} patch scores {count:,} orders (up to "
                                   f"translation), more than the limit of {session.budget.max_orders:,}; "
                                   f"raise the limit (Budget.max_orders) or use dp, which is exact")
        orders = all_orders(n)
        if self.dihedral:
            orders = orders[one_per_dihedral_class(orders, n)]
        codes = order_context_codes(orders, n)
        rates = session.costs(codes).mean(axis=1)
        for order, rate in zip(orders, rates):
            session.record_order(order, float(rate))
        ranked_idx = np.argsort(rates, kind="stable")[:10]
        ranked = [(order_to_schedule(orders[i], n), float(rates[i])) for i in ranked_idx]
        return session.result(self.name, *ranked[0], ranked=ranked)

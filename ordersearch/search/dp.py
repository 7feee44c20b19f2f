"""Exact search: the optimal order is a shortest path over the lattice of decoded sets.

A permutation order is a path ``{} = S_0 < S_1 < ... < S_{n^2} = P`` that adds
one position per step; adding p to S costs ``f((S - p) mod n)`` (docs/design.md).
For 2x2 the lattice is::

              {}
        /   /    \\    \\
      {a}  {b}   {c}  {d}        each edge: + f(context of the added position)
       ... 6 two-sets ...
       ... 4 three-sets ...
              {a,b,c,d}

Dynamic programming over the 2^(n^2) sets (65,536 for 4x4), layer by layer
(sets of equal size), keeps the k cheapest partial paths into every set, so
it returns the k best distinct orders exactly. By translation symmetry every
order has exactly one translate that decodes (0, 0) first; starting from
{(0, 0)} therefore lists orders distinct up to translation.
"""

from __future__ import annotations

import numpy as np

from .base import Session, Strategy, SearchResult, order_to_schedule, shift_tables


def step_costs(session: Session) -> np.ndarray:
    """(n*n, 2^(n*n)): cost of adding position p to decoded set S (NaN where p is in S)."""
    n = session.patch
    codes = np.arange(0, 2 ** (n * n), 2)
    table = np.full(2 ** (n * n), np.nan)
    table[codes] = session.costs(codes)
    return table[shift_tables(n)]


def k_best_orders(cost: np.ndarray, k: int = 1, first: int | None = 0) -> list[tuple[list[int], float]]:
    """The k cheapest permutation orders (flat positions) with their mean cost, best first.

    ``cost[p][S]`` is the cost of adding p to S. ``first`` fixes the first
    position (0: distinct up to translation); None allows any.
    """
    m = cost.shape[0]
    full = (1 << m) - 1
    states = np.arange(1 << m)
    size = np.array([bin(s).count("1") for s in range(1 << m)])
    value = np.full((1 << m, k), np.inf)
    back_pos = np.full((1 << m, k), -1, dtype=np.int8)
    back_rank = np.zeros((1 << m, k), dtype=np.int16)
    starts = [first] if first is not None else range(m)
    for p in starts:
        value[1 << p, 0] = cost[p, 0]
        back_pos[1 << p, 0] = p
    for layer in range(2, m + 1):
        target = states[size == layer]
        if first is not None:
            target = target[(target >> first) & 1 == 1]
        cand = np.full((len(target), m, k), np.inf)
        for p in range(m):
            has = (target >> p) & 1 == 1
            if first is not None and p == first:
                continue
            prev = target[has] ^ (1 << p)
            cand[has, p, :] = value[prev] + cost[p, prev][:, None]
        flat = cand.reshape(len(target), m * k)
        pick = np.argsort(flat, axis=1, kind="stable")[:, :k]
        value[target] = np.take_along_axis(flat, pick, axis=1)
        back_pos[target] = pick // k
        back_rank[target] = pick % k
    out = []
    for rank in range(k):
        if not np.isfinite(value[full, rank]):
            break
        order, state, r = [], full, rank
        while state:
            p = int(back_pos[state, r])
            order.append(p)
            state, r = state ^ (1 << p), int(back_rank[state, r])
        out.append((order[::-1], float(value[full, rank]) / m))
    return out


def shortest_order_graph(cost: np.ndarray) -> tuple[list[int], float]:
    """The same optimum by networkx's Dijkstra on the explicit subset graph (reference for small patches)."""
    import networkx as nx

    m = cost.shape[0]
    graph = nx.DiGraph()
    for s in range(1 << m):
        for p in range(m):
            if not s >> p & 1:
                graph.add_edge(s, s | 1 << p, weight=float(cost[p, s]), position=p)
    path = nx.dijkstra_path(graph, 0, (1 << m) - 1)
    order = [graph.edges[a, b]["position"] for a, b in zip(path, path[1:])]
    return order, sum(float(cost[p, s]) for p, s in zip(order, path)) / m


class DP(Strategy):
    """Exact optimum over all (n^2)! orders; ``ranked`` holds the k best distinct up to translation."""

    name = "dp"

    def __init__(self, k: int = 10):
        self.k = k

    def _run(self, session: Session) -> SearchResult:
        n = session.patch
        best = k_best_orders(step_costs(session), self.k, first=0)
        ranked = [(order_to_schedule(order, n), rate) for order, rate in best]
        for schedule, rate in ranked:
            session.record(schedule, rate)
        return session.result(self.name, *ranked[0], ranked=ranked)

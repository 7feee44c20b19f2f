"""Search strategies on one interface: ``strategy.search(scorer, budget) -> SearchResult``.

=============  =====================================================
``dp``         exact optimum (shortest path over decoded sets), k best
``greedy``     the paper's algorithm as we read it (code unreleased)
``exhaustive`` every order up to translation (2x2, 3x3)
``beam``       greedy with a beam of partial orders
``random``     best of N random orders
``optuna-*``   TPE / CMA-ES / random sampling of random-key orders
=============  =====================================================

``pareto_front`` gives the best grouped schedule for every stage budget.
Scorers: ``TableScorer`` (any estimator's ``cost_table(n)``),
``EstimatorScorer`` (asks a lazy estimator, e.g. dedicated per-set training,
as the search goes) and ``FunctionScorer``.
"""

from __future__ import annotations

from ..errors import OrdersearchError
from .base import (Budget, EstimatorScorer, FunctionScorer, Scorer, SearchResult, Session, Strategy, TableScorer,
                   TraceRow)
from .beam import Beam
from .dp import DP
from .exhaustive import Exhaustive
from .greedy import Greedy
from .optuna_search import OptunaSearch
from .pareto import ParetoPoint, pareto_front
from .random_search import RandomOrders

STRATEGY_NAMES = ("dp", "greedy", "exhaustive", "beam", "random", "optuna-tpe", "optuna-cmaes", "optuna-random")


def make_strategy(name: str, seed: int = 0, storage: str | None = None) -> Strategy:
    """A strategy by its name in ``STRATEGY_NAMES`` (``beam8`` sets the beam width)."""
    if name == "dp":
        return DP()
    if name == "greedy":
        return Greedy()
    if name == "exhaustive":
        return Exhaustive()
    if name.startswith("beam"):
        width = name[4:]
        if width and not width.isdigit():
            raise OrdersearchError(f"unknown strategy {name!r}: a beam is 'beam' or 'beam<width>'")
        return Beam(int(width) if width else 8)
    if name == "random":
        return RandomOrders(seed)
    if name.startswith("optuna-"):
        return OptunaSearch(name.split("-", 1)[1], seed, storage)
    raise OrdersearchError(f"unknown strategy {name!r}; known: {', '.join(STRATEGY_NAMES)}")


__all__ = ["Beam", "Budget", "DP", "EstimatorScorer", "Exhaustive", "FunctionScorer", "Greedy", "OptunaSearch",
           "ParetoPoint", "RandomOrders", "STRATEGY_NAMES", "Scorer", "SearchResult", "Session", "Strategy",
           "TableScorer", "TraceRow", "make_strategy", "pareto_front"]

"""What a run found: ``RunResult`` (returned by ``run`` and read by its report) and the leader's ``Placement``.

Its own module, below both the pipeline that makes it and the summary that
reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..evaluation import Agreement, Comparison, Evaluation, Verified
from ..schedule import Schedule
from ..search import SearchResult
from ..search.pareto import ParetoPoint
from .checks import Check
from .config import RunConfig


@dataclass
class RunResult:
    config: RunConfig
    results: dict[str, SearchResult]
    front: list[ParetoPoint]
    verified: Verified
    candidates: dict[str, Schedule]
    cheap: dict[str, float]
    fidelity: Agreement
    timings: dict[str, float]
    data: str
    #: over the verified orders (permutations) of this run: (cheap vs dedicated, seed vs the mean of the other
    #: seeds) pair sign agreement
    trust: tuple[float, float] = (float("nan"), float("nan"))
    checks: list[Check] = field(default_factory=list)
    placed: Placement | None = None


@dataclass
class Placement:
    """Where the leader's patch grid meets the image border: its translates on val, the lowest one on test.

    One training serves every translate (``Evaluator.translates_on_val``); on whole images the translates differ
    at the edges (results/translations.md), so ``best.json`` is the translate chosen here.
    """

    val: dict[Schedule, float]  # every translate of the leader, its val rate (mean over the leader's seeds)
    schedule: Schedule  # the lowest on val
    evaluations: list[Evaluation]  # of it, one per seed of the leader
    comparison: Comparison  # it - the leader as verified, on test

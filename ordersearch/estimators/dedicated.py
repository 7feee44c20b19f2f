"""f(C) measured by dedicated per-set training: exact search with trained costs.

Each context set gets its own model (``Evaluator.evaluate_context``), trained
on the train split, early-stopped on val; its cost is its rate on the val
split (never test: a search chooses), averaged over ``seeds``; evaluations are cached in the evaluator's store, so a search that
asks again (or another strategy, or a re-run) pays nothing. Affordable for
2x2 (8 sets) and, with patience, 3x3 (256 sets); a 4x4 table (32,768 sets) is
the cheap estimators' job. Lazy: a greedy search asks for few sets.
"""

from __future__ import annotations

import numpy as np

from ..evaluation.evaluator import Evaluator
from ..schedule import context_from_index
from .base import CostEstimator


class DedicatedSetEstimator(CostEstimator):
    """f(C) of each asked-for set by its own trained model (mean over ``seeds``)."""

    name = "dedicated-set"
    split = "val"

    def __init__(self, evaluator: Evaluator, seeds: int = 1):
        self.evaluator, self.seeds, self.kernel = evaluator, seeds, evaluator.kernel

    @classmethod
    def fit(cls, evaluator: Evaluator, patch: int, seed: int = 0) -> DedicatedSetEstimator:
        """Lazy: nothing is trained until a set's cost is asked for."""
        return cls(evaluator)

    def costs(self, codes: np.ndarray, patch: int) -> np.ndarray:
        out = [np.mean([self.evaluator.evaluate_context(sorted(context_from_index(int(code), patch)), patch,
                                                        seed).rate("val") for seed in range(self.seeds)])
               for code in np.asarray(codes).ravel()]
        return np.array(out).reshape(np.shape(codes))

"""The cost-estimator protocol: f(C) for every relative context set of a patch.

An estimator is fitted on data (or, for the oracle, given a Gaussian
field), then answers ``costs(codes, patch)``: bits per latent element of a
latent whose relative context set has each code (``schedule.context_index``).
``cost_table(patch)`` fills every code at once, which the exact searches
need; lazy estimators (dedicated per-set training) answer a few codes at a
time, which greedy-like searches need.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from ..errors import OrdersearchError
from ..schedule import Position, Schedule, context_index

if TYPE_CHECKING:
    from ..evaluation.evaluator import Evaluator


class CostEstimator(ABC):
    """f(C) of relative context sets of n x n patches, for one K x K context window."""

    #: registry name, e.g. ``linear-gaussian``
    name: str = "estimator"
    #: the split whose latents the costs are scored on: ``train``, ``val``, ``test`` or ``analytic``
    split: str = "train"
    #: side of the context window
    kernel: int = 5
    #: what the estimator was made from (data, model, codec file), for reports and cache keys
    source: str = ""

    @classmethod
    def fit(cls, evaluator: Evaluator, patch: int, seed: int = 0) -> CostEstimator:
        """This estimator fitted on an evaluator's data (its splits, window, device, progress) for ``patch``:
        how ``run`` and ``search`` make one by name (``estimators.ESTIMATORS``)."""
        raise OrdersearchError(f"the {cls.name} estimator is not fitted from data")

    @abstractmethod
    def costs(self, codes: np.ndarray, patch: int) -> np.ndarray:
        """Bits per latent element for each context-set code (even ints below 2^(n*n))."""

    def cost_table(self, patch: int, kernel: int | None = None, progress: bool = False) -> np.ndarray:
        """f(C) of every context set of the patch, indexed by code (NaN at odd codes, which hold p itself)."""
        from tqdm.auto import tqdm

        if kernel is not None and kernel != self.kernel:
            raise OrdersearchError(f"the {self.name} estimator was fitted for a {self.kernel}x{self.kernel} "
                                   f"window, not {kernel}x{kernel}")
        codes = np.arange(0, 2 ** (patch * patch), 2)
        table = np.full(2 ** (patch * patch), np.nan)
        chunk = 4096
        for start in tqdm(range(0, len(codes), chunk), desc=f"{self.name} cost table {patch}x{patch}",
                          disable=not progress or len(codes) <= chunk or None, leave=False):
            part = codes[start:start + chunk]
            table[part] = self.costs(part, patch)
        return table

    def context_rate(self, context: Iterable[Position], patch: int) -> float:
        """f(C) for one relative context set."""
        return float(self.costs(np.array([context_index(context, patch)]), patch)[0])

    def schedule_rate(self, schedule: Schedule) -> float:
        """Mean over patch positions of f(C_p), bits per latent element."""
        return float(self.costs(schedule.context_indices().ravel(), schedule.patch).mean())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}, {self.kernel}x{self.kernel} window, scored on {self.split}>"

"""f(C) measured by dedicated per-set training, as a scorer: exact search with trained costs.

Each context set gets its own model (``harness.evaluate_context``), trained on
the train split, early-stopped on val and measured on test, averaged over
``seeds``; evaluations are cached in the evaluation store, so a search that
asks again (or another strategy, or a re-run) pays nothing. Affordable for
2x2 (8 sets) and 3x3 (256 sets); a 4x4 table (32,768 sets) is the cheap
estimators' job.
"""

from __future__ import annotations

import numpy as np

from ..data.latents import LatentSet, Splits
from ..harness import TrainConfig
from ..schedule import context_from_index
from ..store import EvaluationStore
from .base import Scorer


class DedicatedSetScorer(Scorer):
    def __init__(self, latents: LatentSet | Splits, patch: int, store: EvaluationStore,
                 config: TrainConfig = TrainConfig(), seeds: int = 1, device: str = "cpu", progress: bool = True):
        self.latents, self.patch, self.store, self.config = latents, patch, store, config
        self.seeds, self.device, self.progress = seeds, device, progress
        self.kernel = config.model.kernel
        self.name = f"dedicated per-set ({seeds} seed{'s' if seeds > 1 else ''})"

    def costs(self, codes: np.ndarray) -> np.ndarray:
        out = []
        for code in np.asarray(codes).ravel():
            context = sorted(context_from_index(int(code), self.patch))
            out.append(np.mean([self.store.evaluate_context(context, self.patch, self.latents, self.config, seed,
                                                            self.device, self.progress).bits_per_latent
                                for seed in range(self.seeds)]))
        return np.array(out).reshape(np.shape(codes))

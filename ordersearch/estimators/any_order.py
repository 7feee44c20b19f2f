"""The any-order model as an estimator: f(C) read off one model trained over random schedules.

An any-order context model (``models.any_order``) is told which neighbours
are decoded, so it rates a latent after any relative context set C: every
patch position decoded after C, on fixed crops of the val split (the same
crops for every set, so differences between sets are paired; the crops'
weights make each mean an estimate of the whole split's, edge latents as
often as they occur). No table reads the test split. The convolutions are
done once per crop (``AnyOrderContextModel.terms``); a set only scales
them (``same_set``), so a whole 4x4 table is a batched evaluation.

Its models are the ones verification starts from (``Evaluator.any_order``),
so in a run the table costs no training of its own; and the context model
of an any-order codec (``codec train --any-order``) gives the codec-level
table (``ordersearch search --codec``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..data.latents import LatentSet
from ..errors import OrdersearchError
from ..evaluation.measure import OnDevice
from ..models.any_order import AnyOrderContextModel
from ..models.entropy import bits
from ..schedule import context_window_masks
from .base import CostEstimator

if TYPE_CHECKING:
    from ..evaluation.evaluator import Evaluator

__all__ = ["AnyOrderEstimator"]

#: latents scored per set, as many as the shared scorer's table windows, in crops of ``CROP`` x ``CROP`` (or the
#: patch): small crops sample more places (on the built-in val latents the sd of a set's level over crop samples was
#: 0.13 bits with 16 x 16 crops, 0.036 with 8 x 8, 0.021 with 4 x 4)
SCORED = 4096
CROP = 4


class AnyOrderEstimator(CostEstimator):
    """f(C) of an any-order model on fixed crops of one split (val): every position decoded after C."""

    name = "any-order"
    split = "val"

    def __init__(self, model: AnyOrderContextModel, latents: LatentSet, seed: int = 0, scored: int = SCORED,
                 source: str = ""):
        self.model, self.patch, self.kernel = model.eval(), model.schedule.patch, model.config.kernel
        self.source = source
        device = model.bias.device
        border, n = self.kernel // 2, self.patch
        side = max(CROP, n)
        if max(min(a.shape[1:]) for a in latents.y) < side:
            raise OrdersearchError(f"the {latents.name} latents are too small for {n}x{n} context sets")
        on = OnDevice(latents, device)
        # the patch grid meets the image border at every phase (``slack``), as in training
        crops = on.crops(side, border, max(1, -(-scored // side**2)), np.random.default_rng([seed, 2]), n - 1)
        with torch.no_grad():
            self._terms = model.terms(crops.y, crops.prior, border=border, outside=crops.outside)
        self._weight = crops.weight

    @classmethod
    def fit(cls, evaluator: Evaluator, patch: int, seed: int = 0) -> AnyOrderEstimator:
        """The evaluator's any-order model of ``patch`` and ``seed`` (trained once, then from its store: the
        model verification starts from) on the evaluator's val split."""
        if patch < 2:
            raise OrdersearchError("the any-order estimator needs a patch of 2 or more")
        return cls(evaluator.any_order(patch, seed), evaluator.splits.val, seed,
                   source=f"{evaluator.splits.train.name}, any-order model of seed {seed}")

    @torch.no_grad()
    def costs(self, codes: np.ndarray, patch: int, chunk: int = 16) -> np.ndarray:
        """Mean bits per latent element on the fixed crops for each context-set code."""
        if patch != self.patch:
            raise OrdersearchError(f"the any-order model is for {self.patch}x{self.patch} patches, not {patch}x{patch}")
        device = self._weight.device
        masks = torch.from_numpy(context_window_masks(np.asarray(codes), patch, self.kernel)).float().to(device)
        out = []
        for start in range(0, len(masks), chunk):
            b = bits(self.model.same_set(self._terms, masks[start:start + chunk])) * self._weight
            out.append(b.mean(dim=(1, 2, 3, 4)))
        return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)

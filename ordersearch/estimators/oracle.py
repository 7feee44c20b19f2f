"""The exact rate oracle of a Gaussian random field (``data.gaussian``): ground truth for tests.

The oracle: a decoder that has the integer neighbours ``y_d`` at window
offsets ``d`` in a set ``D`` predicts ``x_0`` by Gaussian conditioning,
modelling each neighbour's rounding as independent noise of variance 1/12
(the quantization-noise model, accurate when sigma is a few units):
``var_D = K_00 - k_D^T (K_DD + I/12)^-1 k_D``. The rate of ``y_0`` is the
entropy of that Gaussian binned to unit bins, averaged over the position of
its mean inside a bin, in bits per latent element, averaged over channels.

``costs`` (every context set at once) is the linear-Gaussian computation on
the field's exact window covariance; ``rate`` / ``context_rate`` /
``schedule_rate`` condition directly. Both agree (tested). These are rates on
an infinite field: every latent has its whole window.

``image_rates`` is the exact rate of a schedule on a finite H x W image, the
patch grid at any phase: a latent near the border is predicted from the
decoded window offsets that lie inside the image, nothing else (tested
against conditioning on the whole image's covariance). It says what
verification on whole images must measure, interior and edge apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..data.gaussian import GaussianField
from ..errors import OrdersearchError
from ..schedule import Position, Schedule, check_kernel
from .base import CostEstimator
from .linear_gaussian import QUANT_VAR, LinearGaussianEstimator, binned_gaussian_entropy


@dataclass(frozen=True)
class ImageRates:
    """Exact rates (bits per latent element) of a schedule on one finite image: all of it, and its interior and
    edge (the latents within kernel // 2 of the border, as ``evaluation.measure`` counts them)."""

    whole: float
    interior: float
    edge: float
    edge_fraction: float


class GaussianOracle(CostEstimator):
    """Exact f(C) of a Gaussian field, in bits per latent element (mean over channels)."""

    split = "analytic"

    def __init__(self, field: GaussianField, kernel: int = 5):
        self.field, self.kernel = field, check_kernel(kernel)
        self.name = f"oracle({field.name})"
        h = self.kernel // 2
        d = np.array([(a, b) for a in range(-h, h + 1) for b in range(-h, h + 1)], dtype=float)
        lag_r, lag_c = d[:, None, 0] - d[None, :, 0], d[:, None, 1] - d[None, :, 1]
        # covariance of the integer latents: the field's plus independent rounding noise
        cov = np.stack([ch.covariance(lag_r, lag_c) + QUANT_VAR * np.eye(len(d)) for ch in field.channels])
        self._table = LinearGaussianEstimator(cov, self.kernel, name=self.name)

    def costs(self, codes: np.ndarray, patch: int) -> np.ndarray:
        return self._table.costs(codes, patch)

    def predictor(self, offsets: Iterable[Position]) -> tuple[list[Position], np.ndarray, np.ndarray]:
        """Optimal linear predictor of ``x_0`` from integer neighbours at ``offsets``.

        Returns (sorted offsets, weights (C, |D|), conditional std (C,)):
        the mean is ``weights[c] @ y[c, offsets]``.
        """
        d = sorted(set(map(tuple, offsets)))
        if (0, 0) in d:
            raise OrdersearchError("offset (0, 0) is the latent itself, not a neighbour")
        weights = np.zeros((len(self.field.channels), len(d)))
        std = np.zeros(len(self.field.channels))
        arr = np.array(d, dtype=float).reshape(-1, 2)
        for i, ch in enumerate(self.field.channels):
            k00 = float(ch.covariance(0, 0))
            if not d:
                std[i] = math.sqrt(k00)
                continue
            kdd = ch.covariance(arr[:, None, 0] - arr[None, :, 0], arr[:, None, 1] - arr[None, :, 1])
            kd = ch.covariance(arr[:, 0], arr[:, 1])
            w = np.linalg.solve(kdd + QUANT_VAR * np.eye(len(d)), kd)
            weights[i] = w
            std[i] = math.sqrt(max(k00 - float(kd @ w), 1e-12))
        return d, weights, std

    def channel_rates(self, offsets: Iterable[Position]) -> np.ndarray:
        """Rate of each channel (bits per element) given neighbours at window ``offsets``."""
        return binned_gaussian_entropy(self.predictor(offsets)[2])

    def rate(self, offsets: Iterable[Position]) -> float:
        """Rate in bits per latent element (mean over channels) given neighbours at ``offsets``."""
        return float(self.channel_rates(offsets).mean())

    def context_rate(self, context: Iterable[Position], patch: int) -> float:
        """f(C): rate of a latent whose relative context set is ``context`` (window offsets d with d mod n in C)."""
        cset = {(r % patch, c % patch) for r, c in context}
        h = self.kernel // 2
        offsets = [(dr, dc) for dr in range(-h, h + 1) for dc in range(-h, h + 1)
                   if (dr, dc) != (0, 0) and (dr % patch, dc % patch) in cset]
        return self.rate(offsets)

    def schedule_rate(self, schedule: Schedule) -> float:
        """Exact rate of a schedule: mean over patch positions of f(C_p), in bits per latent element."""
        masks = schedule.masks(self.kernel)
        h = self.kernel // 2
        n = schedule.patch
        rates = [self.rate([(i - h, j - h) for i, j in zip(*np.nonzero(masks[r, c]))])
                 for r in range(n) for c in range(n)]
        return float(np.mean(rates))

    def image_rates(self, schedule: Schedule, height: int, width: int, phase: tuple[int, int] = (0, 0)
                    ) -> ImageRates:
        """Exact rates of ``schedule`` on an ``height`` x ``width`` image (see the module docstring).

        ``phase``: image row i, column j lies on patch position ((i + phase[0]) mod n, (j + phase[1]) mod n);
        (0, 0) is how the toolkit measures (``Schedule.stage_map``). Each latent is predicted from the decoded
        window offsets inside the image.
        """
        h, n = self.kernel // 2, schedule.patch
        pr, pc = phase[0] % n, phase[1] % n
        stages = schedule.stage_map(height + pr, width + pc)[pr:, pc:]
        cache: dict[frozenset, float] = {}
        rates = np.zeros((height, width))
        window = [(dr, dc) for dr in range(-h, h + 1) for dc in range(-h, h + 1) if (dr, dc) != (0, 0)]
        for i in range(height):
            for j in range(width):
                key = frozenset((dr, dc) for dr, dc in window
                                if 0 <= i + dr < height and 0 <= j + dc < width
                                and stages[i + dr, j + dc] < stages[i, j])
                if key not in cache:
                    cache[key] = self.rate(key)
                rates[i, j] = cache[key]
        edge = np.ones((height, width), dtype=bool)
        edge[h:height - h, h:width - h] = False
        return ImageRates(float(rates.mean()), float(rates[~edge].mean()) if (~edge).any() else math.nan,
                          float(rates[edge].mean()), float(edge.mean()))

"""The moment-based linear-Gaussian estimator of f(C): no training, every context set in seconds.

From the covariance of the latents over the KxK window (normalized by the
prior: a scale per channel, or a mean and a scale, as hyperpriors give),
the best linear predictor of the centre from any subset D of window offsets
has residual variance ``v_D = S_00 - s_D^T S_DD^-1 s_D`` (Gaussian
conditioning, solved for many sets at once). With the hyperprior's scale s of
a latent, its residual standard deviation in latent units is
``sqrt(s^2 v_D - 1/12)``: the 1/12 removes the latent's own rounding noise
(Sheppard's correction), so what is left is the spread of the continuous
value, which is binned to integers for the rate. Averaged over quantiles of s
per channel and over channels: bits per latent element.

On a Gaussian random field (no prior, s = 1) this is the exact oracle
(``estimators.oracle``); on real latents it is an approximation whose
agreement with dedicated training must be measured.

The rounding-noise correction is valid only where the latents are a
finely binned continuous Gaussian, i.e. on Gaussian fields whose scales are
a few units. Real latents are mostly 0 with hyperprior scales well below
one: there ``s^2 v_D - 1/12`` falls under the smallest scale for about two
thirds of the (channel, scale quantile) cells, which are then clamped to
near-zero entropy, and the table's level comes out about 18% below the
dedicated rates (``results/fidelity.md``). It is kept as it is because it
is exact where it applies; on real latents use it for a quick look only
(``heldout`` is the estimator fitted as a code).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.special import ndtr

from ..data.latents import LatentSet
from ..errors import OrdersearchError
from ..models.entropy import SCALE_BOUND
from ..schedule import Position, check_kernel, context_window_masks
from .base import CostEstimator

if TYPE_CHECKING:
    from ..evaluation.evaluator import Evaluator

#: Variance of uniform rounding noise on [-1/2, 1/2).
QUANT_VAR = 1.0 / 12.0


@lru_cache(maxsize=1)
def _binned_entropy_table() -> tuple[np.ndarray, np.ndarray]:
    """Entropy (bits) of a unit-binned Gaussian against log-sigma, averaged over the mean's offset."""
    log_s = np.linspace(np.log(0.01), np.log(1e3), 2000)
    ent = np.array([_binned_entropy(math.exp(s)) for s in log_s])
    return log_s, ent


def _binned_entropy(sigma: float) -> float:
    if sigma > 30:  # the differential entropy is exact to < 1e-6 bits here
        return 0.5 * math.log2(2 * math.pi * math.e * sigma * sigma)
    offsets = max(64, math.ceil(16 / sigma))  # resolve the bin edge when sigma is small
    u = (np.arange(offsets) + 0.5) / offsets
    k = np.arange(-math.ceil(10 * sigma) - 2, math.ceil(10 * sigma) + 3)
    p = ndtr((k[None, :] + 0.5 - u[:, None]) / sigma) - ndtr((k[None, :] - 0.5 - u[:, None]) / sigma)
    p = np.clip(p, 1e-300, 1)
    return float(np.mean(-(p * np.log2(p)).sum(axis=1)))


def binned_gaussian_entropy(sigma: np.ndarray | float) -> np.ndarray:
    """Entropy in bits of ``round(X)``, X ~ N(mu, sigma^2), averaged over mu mod 1 (interpolated table)."""
    log_s, ent = _binned_entropy_table()
    return np.interp(np.log(np.asarray(sigma, dtype=float)), log_s, ent)



class LinearGaussianEstimator(CostEstimator):
    """Rates of context sets from a window covariance (per channel) and scale quantiles."""

    name = "linear-gaussian"
    split = "train"

    def __init__(self, cov: np.ndarray, kernel: int, scales: np.ndarray | None = None, name: str = "linear-gaussian",
                 source: str = ""):
        k = check_kernel(kernel)
        if cov.ndim != 3 or cov.shape[1:] != (k * k, k * k):
            raise OrdersearchError(f"window covariance must have shape (C, {k * k}, {k * k}), got {cov.shape}")
        self.cov = cov.astype(np.float64)
        self.kernel = k
        self.scales = np.ones((cov.shape[0], 1)) if scales is None else np.asarray(scales, dtype=np.float64)
        self.name = name
        self.source = source

    @classmethod
    def fit(cls, evaluator: Evaluator, patch: int, seed: int = 0) -> LinearGaussianEstimator:
        """The moments of the evaluator's train latents (deterministic: no seed)."""
        return cls.from_latents(evaluator.splits.train, evaluator.kernel)

    @classmethod
    def from_latents(cls, latents: LatentSet, kernel: int = 5, quantiles: int = 32) -> LinearGaussianEstimator:
        """Empirical window covariance of the latents, normalized by the prior (scale, or mean and scale) if present."""
        k = check_kernel(kernel)
        h = k // 2
        c = latents.channels
        lags = [(a, b) for a in range(-(k - 1), k) for b in range(-(k - 1), k)]
        sums = np.zeros((c, len(lags)))
        counts = np.zeros(len(lags))
        mean_sum, mean_count = np.zeros(c), 0
        scale_samples = []
        if latents.prior is not None and latents.prior_channels not in (c, 2 * c):
            raise OrdersearchError(f"the linear-Gaussian estimator reads the prior as a scale per channel "
                                   f"({c} channels) or (mean, scale) ({2 * c}), got {latents.prior_channels}")
        for i, y in enumerate(latents.y):
            u = y.astype(np.float64)
            if latents.prior is not None:
                p = latents.prior[i]
                mean, scale = (0.0, p) if len(p) == c else (p[:c], p[c:])
                scale = np.maximum(scale, SCALE_BOUND)
                u = (u - mean) / scale
                scale_samples.append(scale.reshape(c, -1))
            mean_sum += u.sum(axis=(1, 2))
            mean_count += u.shape[1] * u.shape[2]
            hh, ww = u.shape[1:]
            for j, (a, b) in enumerate(lags):
                if abs(a) >= hh or abs(b) >= ww:
                    continue
                x0 = u[:, max(0, -a):hh - max(0, a), max(0, -b):ww - max(0, b)]
                x1 = u[:, max(0, a):max(0, a) + x0.shape[1], max(0, b):max(0, b) + x0.shape[2]]
                sums[:, j] += (x0 * x1).sum(axis=(1, 2))
                counts[j] += x0.shape[1] * x0.shape[2]
        mu = mean_sum / mean_count
        autocov = sums / np.maximum(counts, 1) - mu[:, None] ** 2  # (C, lags)
        index = {lag: j for j, lag in enumerate(lags)}
        offsets = [(a - h, b - h) for a in range(k) for b in range(k)]
        cov = np.empty((c, k * k, k * k))
        for p, (a1, b1) in enumerate(offsets):
            for q, (a2, b2) in enumerate(offsets):
                cov[:, p, q] = autocov[:, index[(a2 - a1, b2 - b1)]]
        scales = None
        if scale_samples:
            allscale = np.concatenate(scale_samples, axis=1)
            scales = np.quantile(allscale, (np.arange(quantiles) + 0.5) / quantiles, axis=1).T  # (C, Q)
        return cls(cov, k, scales, source=latents.name)

    # ---------------------------------------------------------------- rates
    def residual_variance(self, masks: np.ndarray) -> np.ndarray:
        """(S, C) residual variance of the centre given the masked window offsets (masks (S, K, K))."""
        k2 = self.kernel * self.kernel
        centre = k2 // 2
        m = torch.from_numpy(np.asarray(masks, dtype=bool).reshape(-1, k2))
        m[:, centre] = False
        cov = torch.from_numpy(self.cov)  # (C, K2, K2)
        out = torch.empty(m.shape[0], cov.shape[0], dtype=torch.float64)
        eye = torch.eye(k2, dtype=torch.float64)
        # a channel that is constant (all zeros: common in a codec's latents of few images) has a singular
        # covariance; a ridge far below any real variance keeps the solve defined (its prediction: zero)
        ridge = (1e-12 * cov.diagonal(dim1=1, dim2=2).mean(1) + 1e-12)[None, :, None, None] * eye
        for start in range(0, m.shape[0], 256):
            mm = m[start:start + 256].double()  # (s, K2)
            outer = mm[:, :, None] * mm[:, None, :]
            a = cov[None] * outer[:, None] + (eye - torch.diag_embed(mm))[:, None] + ridge  # (s, C, K2, K2)
            rhs = cov[None, :, :, centre] * mm[:, None, :]  # (s, C, K2)
            w = torch.linalg.solve(a, rhs.unsqueeze(-1)).squeeze(-1)
            out[start:start + 256] = cov[None, :, centre, centre] - (w * rhs).sum(-1)
        return out.numpy()

    def rates(self, masks: np.ndarray) -> np.ndarray:
        """(S,) bits per latent element for each mask (in chunks, to bound memory)."""
        out = []
        for start in range(0, len(masks), 1024):
            v = self.residual_variance(masks[start:start + 1024])  # (s, C)
            var = v[:, :, None] * self.scales[None] ** 2 - QUANT_VAR  # (s, C, Q)
            std = np.sqrt(np.maximum(var, SCALE_BOUND**2))
            out.append(binned_gaussian_entropy(std).mean(axis=(1, 2)))
        return np.concatenate(out)

    def rate(self, offsets: Iterable[Position]) -> float:
        """Bits per latent element given neighbours at window ``offsets``."""
        h = self.kernel // 2
        mask = np.zeros((1, self.kernel, self.kernel), dtype=bool)
        for dr, dc in offsets:
            if max(abs(dr), abs(dc)) > h or (dr, dc) == (0, 0):
                raise OrdersearchError(f"offset {(dr, dc)} is not a neighbour in the {self.kernel}x{self.kernel} window")
            mask[0, dr + h, dc + h] = True
        return float(self.rates(mask)[0])

    def costs(self, codes: np.ndarray, patch: int) -> np.ndarray:
        return self.rates(context_window_masks(np.asarray(codes), patch, self.kernel))

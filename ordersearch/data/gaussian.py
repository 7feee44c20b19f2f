"""Gaussian random fields with an exact rate oracle: the ground truth the toolkit is tested against.

A field has independent channels; each is a stationary zero-mean Gaussian
field ``x`` on the latent grid with a stated covariance, quantized to
integers ``y = round(x)``. Two covariance kinds:

- ``separable``: ``sigma^2 * rho_r^|dr| * rho_c^|dc|`` (AR(1) x AR(1), Markov,
  possibly anisotropic);
- ``smooth``: ``sigma^2 * ((1 - nugget) * exp(-q(d) / 2) + nugget * [d = 0])``
  with ``q`` the squared lag measured in length scales along axes rotated by
  ``angle``: non-Markov, anisotropic, with a white-noise nugget.

Samples are exact draws from the stated covariance: the separable kind as
``L_r W L_c^T`` with Cholesky factors of the two 1-D covariance matrices
(the covariance of the whole field is their Kronecker product), the smooth
kind through the Cholesky factor of the full covariance of the H x W field.

The oracle: a decoder that has the integer neighbours ``y_d`` at window
offsets ``d`` in a set ``D`` predicts ``x_0`` by Gaussian conditioning,
modelling each neighbour's rounding as independent noise of variance 1/12
(the quantization-noise model, accurate when sigma is a few units):
``var_D = K_00 - k_D^T (K_DD + I/12)^-1 k_D``. The rate of ``y_0`` is the
entropy of that Gaussian binned to unit bins, averaged over the position of
its mean inside a bin, in bits per latent element, averaged over channels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy.special import ndtr

from ..errors import OrdersearchError
from ..schedule import Position, Schedule, check_kernel
from .latents import LatentSet

#: Variance of uniform rounding noise on [-1/2, 1/2).
QUANT_VAR = 1.0 / 12.0
#: Largest field (H * W) the full-covariance sampler accepts.
MAX_SMOOTH_POINTS = 4096


@dataclass(frozen=True)
class FieldChannel:
    """One channel's covariance (see the module docstring)."""

    kind: Literal["separable", "smooth"] = "separable"
    sigma: float = 4.0
    rho: tuple[float, float] = (0.8, 0.8)
    length: tuple[float, float] = (2.0, 1.0)
    angle: float = 0.0
    nugget: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in ("separable", "smooth"):
            raise OrdersearchError(f"unknown field kind {self.kind!r}; use 'separable' or 'smooth'")
        if not self.sigma > 0:
            raise OrdersearchError(f"sigma must be positive, got {self.sigma}")
        if self.kind == "separable" and not all(-1 < r < 1 for r in self.rho):
            raise OrdersearchError(f"rho must lie in (-1, 1), got {self.rho}")
        if self.kind == "smooth" and not (all(v > 0 for v in self.length) and 0 <= self.nugget <= 1):
            raise OrdersearchError(f"smooth field needs positive lengths and nugget in [0, 1], got "
                                   f"{self.length}, {self.nugget}")

    def covariance(self, dr: np.ndarray | int, dc: np.ndarray | int) -> np.ndarray:
        """Covariance of the continuous field at lag (dr, dc) (broadcasting)."""
        dr, dc = np.asarray(dr, dtype=float), np.asarray(dc, dtype=float)
        s2 = self.sigma**2
        if self.kind == "separable":
            return s2 * self.rho[0] ** np.abs(dr) * self.rho[1] ** np.abs(dc)
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        u = (ca * dr + sa * dc) / self.length[0]
        v = (-sa * dr + ca * dc) / self.length[1]
        return s2 * ((1 - self.nugget) * np.exp(-0.5 * (u * u + v * v)) + self.nugget * ((dr == 0) & (dc == 0)))

    def sample(self, n: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` exact draws of the continuous field, shape (n, height, width)."""
        if self.kind == "separable":
            lr = np.linalg.cholesky(_toeplitz(self.rho[0], height))
            lc = np.linalg.cholesky(_toeplitz(self.rho[1], width))
            w = rng.standard_normal((n, height, width))
            return self.sigma * np.einsum("ij,njk,lk->nil", lr, w, lc)
        if height * width > MAX_SMOOTH_POINTS:
            raise OrdersearchError(f"smooth fields are sampled exactly up to {MAX_SMOOTH_POINTS} points "
                                   f"per field, got {height}x{width}")
        r, c = np.divmod(np.arange(height * width), width)
        cov = self.covariance(r[:, None] - r[None, :], c[:, None] - c[None, :])
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise OrdersearchError("covariance is not positive definite at this size; use a larger nugget") from None
        w = rng.standard_normal((height * width, n))
        return (chol @ w).T.reshape(n, height, width)


def _toeplitz(rho: float, size: int) -> np.ndarray:
    i = np.arange(size)
    return rho ** np.abs(i[:, None] - i[None, :])


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


class GaussianField:
    """Independent Gaussian channels with exact samples and the exact rate oracle."""

    def __init__(self, channels: Sequence[FieldChannel], name: str = "gaussian"):
        if not channels:
            raise OrdersearchError("a Gaussian field needs at least one channel")
        self.channels = tuple(channels)
        self.name = name

    def __repr__(self) -> str:
        return f"GaussianField({self.name!r}, {len(self.channels)} channels)"

    # ---------------------------------------------------------------- samples
    def sample(self, n: int, height: int = 32, width: int = 32, seed: int = 0) -> LatentSet:
        """``n`` quantized fields as a LatentSet (y int, shape (C, height, width) each, no prior)."""
        rng = np.random.default_rng(seed)
        x = np.stack([ch.sample(n, height, width, rng) for ch in self.channels], axis=1)
        return LatentSet.create(np.round(x).astype(np.int32), name=f"{self.name}-seed{seed}")

    # ---------------------------------------------------------------- oracle
    def predictor(self, offsets: Iterable[Position]) -> tuple[list[Position], np.ndarray, np.ndarray]:
        """Optimal linear predictor of ``x_0`` from integer neighbours at ``offsets``.

        Returns (sorted offsets, weights (C, |D|), conditional std (C,)):
        the mean is ``weights[c] @ y[c, offsets]``.
        """
        d = sorted(set(map(tuple, offsets)))
        if (0, 0) in d:
            raise OrdersearchError("offset (0, 0) is the latent itself, not a neighbour")
        weights = np.zeros((len(self.channels), len(d)))
        std = np.zeros(len(self.channels))
        arr = np.array(d, dtype=float).reshape(-1, 2)
        for i, ch in enumerate(self.channels):
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

    def context_rate(self, context: Iterable[Position], patch: int, kernel: int = 5) -> float:
        """f(C): rate of a latent whose relative context set is ``context`` (window offsets d with d mod n in C)."""
        cset = {(r % patch, c % patch) for r, c in context}
        h = check_kernel(kernel) // 2
        offsets = [(dr, dc) for dr in range(-h, h + 1) for dc in range(-h, h + 1)
                   if (dr, dc) != (0, 0) and (dr % patch, dc % patch) in cset]
        return self.rate(offsets)

    def schedule_rate(self, schedule: Schedule, kernel: int = 5) -> float:
        """Exact rate of a schedule: mean over patch positions of f(C_p), in bits per latent element."""
        masks = schedule.masks(kernel)
        h = kernel // 2
        n = schedule.patch
        rates = [self.rate([(i - h, j - h) for i, j in zip(*np.nonzero(masks[r, c]))])
                 for r in range(n) for c in range(n)]
        return float(np.mean(rates))


    def scorer(self, kernel: int = 5):
        """The same oracle for many context sets at once (a LinearGaussianScorer on the exact covariance)."""
        from ..models.linear_gaussian import LinearGaussianScorer

        h = check_kernel(kernel) // 2
        d = np.array([(a, b) for a in range(-h, h + 1) for b in range(-h, h + 1)], dtype=float)
        lag_r, lag_c = d[:, None, 0] - d[None, :, 0], d[:, None, 1] - d[None, :, 1]
        # covariance of the integer latents: the field's plus independent rounding noise
        cov = np.stack([ch.covariance(lag_r, lag_c) + QUANT_VAR * np.eye(len(d)) for ch in self.channels])
        return LinearGaussianScorer(cov, kernel, name=f"oracle({self.name})")


#: Preset fields: name -> channels.
PRESETS: dict[str, tuple[FieldChannel, ...]] = {
    "separable": (FieldChannel("separable", 4.0, rho=(0.85, 0.7)),
                  FieldChannel("separable", 3.0, rho=(0.6, 0.9))),
    "smooth": (FieldChannel("smooth", 4.0, length=(2.5, 1.0), angle=math.pi / 6, nugget=0.1),
               FieldChannel("smooth", 3.0, length=(1.5, 1.5), nugget=0.2)),
    "mixed": (FieldChannel("separable", 4.0, rho=(0.85, 0.7)),
              FieldChannel("separable", 3.0, rho=(0.6, 0.9)),
              FieldChannel("smooth", 4.0, length=(2.5, 1.0), angle=math.pi / 6, nugget=0.1)),
    "anisotropic": (FieldChannel("smooth", 4.0, length=(3.0, 0.8), angle=math.pi / 5, nugget=0.05),),
}


def gaussian_field(preset: str = "mixed", channels: Sequence[FieldChannel] | None = None) -> GaussianField:
    """A Gaussian field: a named preset (``PRESETS``) or explicit ``channels``."""
    if channels is not None:
        return GaussianField(channels, name="custom")
    if preset not in PRESETS:
        raise OrdersearchError(f"unknown Gaussian field preset {preset!r}; known: {', '.join(PRESETS)}")
    return GaussianField(PRESETS[preset], name=preset)

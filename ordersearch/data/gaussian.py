"""Gaussian random fields: exact samples of stated covariances, the ground truth the toolkit is tested against.

The exact rate of a schedule on such a field is ``estimators.oracle.GaussianOracle``.

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ..errors import OrdersearchError
from .latents import LatentSet

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


class GaussianField:
    """Independent Gaussian channels with exact samples (their rates: ``estimators.oracle``)."""

    def __init__(self, channels: Sequence[FieldChannel], name: str = "gaussian"):
        if not channels:
            raise OrdersearchError("a Gaussian field needs at least one channel")
        self.channels = tuple(channels)
        self.name = name

    def __repr__(self) -> str:
        return f"GaussianField({self.name!r}, {len(self.channels)} channels)"

    def scaled(self, factor: float) -> GaussianField:
        """The same field with every channel's sigma multiplied by ``factor``."""
        return GaussianField([replace(ch, sigma=ch.sigma * factor) for ch in self.channels], name=self.name)

    # ---------------------------------------------------------------- samples
    def sample(self, n: int, height: int = 32, width: int = 32, seed: int = 0) -> LatentSet:
        """``n`` quantized fields as a LatentSet (y int, shape (C, height, width) each, no prior)."""
        rng = np.random.default_rng(seed)
        x = np.stack([ch.sample(n, height, width, rng) for ch in self.channels], axis=1)
        return LatentSet.create(np.round(x).astype(np.int32), name=f"{self.name}-seed{seed}")


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

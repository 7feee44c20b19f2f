"""How sure is a number? Weighted means over images, paired comparisons, agreement of estimators.

``compare``: both schedules are measured on the same test images. The
difference ``A - B`` in bits per latent element is averaged over seeds per
image and weighted by image size; its uncertainty has two parts: how much
the difference varies from image to image, and how much it varies from
training seed to training seed (pairing the i-th seed of A with the i-th of
B). Their variances add (a conservative combination); the interval uses the
t distribution. A verdict of ``better`` or ``worse`` needs the whole interval
on one side of zero, otherwise the two are ``indistinguishable``.

``agreement``: how far a cheap estimator agrees with dedicated training
(rank correlations and error over the same items).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import kendalltau, spearmanr
from scipy.stats import t as student_t

from ..errors import OrdersearchError

if TYPE_CHECKING:
    from .record import Evaluation


def weighted_mean_se(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted mean and its standard error (unbiased weighted variance; NaN for one value)."""
    w = weights / weights.sum()
    mean = float((w * values).sum())
    if len(values) < 2:
        return mean, math.nan
    var = float((w * (values - mean) ** 2).sum()) / (1 - float((w**2).sum()))
    return mean, math.sqrt(var * float((w**2).sum()))


@dataclass(frozen=True)
class Comparison:
    """A - B in bits per latent element (negative: A is cheaper)."""

    difference: float
    low: float
    high: float
    relative: float
    level: float
    images: int
    seeds: tuple[int, int]
    verdict: str

    def __str__(self) -> str:
        return (f"A - B = {self.difference:+.4f} bits/latent ({100 * self.relative:+.2f}%), "
                f"{100 * self.level:.0f}% interval [{self.low:+.4f}, {self.high:+.4f}] over {self.images} test "
                f"images and {self.seeds[0]}/{self.seeds[1]} seeds: A is {self.verdict}")


def compare(a: Sequence[Evaluation], b: Sequence[Evaluation], level: float = 0.95) -> Comparison:
    """Compare the evaluations of schedule A (one per seed) with those of schedule B."""
    if not a or not b:
        raise OrdersearchError("compare needs at least one evaluation of each schedule")
    data = {e.data for e in (*a, *b)}
    if len(data) != 1:
        raise OrdersearchError("evaluations to compare must come from the same data (fingerprints differ)")
    elements = np.asarray(a[0].image_elements, dtype=float)
    if any(list(e.image_elements) != list(a[0].image_elements) for e in (*a, *b)):
        raise OrdersearchError("evaluations to compare must be measured on the same test images")
    rate_a = np.mean([e.image_rates for e in a], axis=0)
    rate_b = np.mean([e.image_rates for e in b], axis=0)
    diff, se_img = weighted_mean_se(rate_a - rate_b, elements)
    pairs = min(len(a), len(b))
    se_seed = 0.0
    if pairs >= 2:
        per_seed = np.array([x.bits_per_latent - y.bits_per_latent for x, y in zip(a, b)])
        se_seed = float(np.std(per_seed, ddof=1)) / math.sqrt(pairs)
    se = math.sqrt((0.0 if math.isnan(se_img) else se_img) ** 2 + se_seed**2)
    dof = max(1, len(elements) - 1)
    half = float(student_t.ppf(0.5 + level / 2, dof)) * se
    low, high = diff - half, diff + half
    verdict = "better" if high < 0 else "worse" if low > 0 else "indistinguishable"
    base = float(np.mean([e.bits_per_latent for e in b]))
    return Comparison(diff, low, high, diff / base, level, len(elements), (len(a), len(b)), verdict)


@dataclass(frozen=True)
class Agreement:
    """Kendall tau, Spearman rho, mean absolute error (bits/latent) and its relative size, over ``count`` items."""

    tau: float
    rho: float
    mae: float
    relative_mae: float
    count: int

    def __str__(self) -> str:
        return (f"Kendall tau {self.tau:.3f}, Spearman rho {self.rho:.3f}, mean absolute error "
                f"{self.mae:.4f} bits/latent ({100 * self.relative_mae:.1f}%) over {self.count} items")


def agreement(dedicated: Sequence[float], cheap: Sequence[float]) -> Agreement:
    """Agreement of cheap estimates with dedicated rates of the same items (NaN correlations below 3 items)."""
    d, c = np.asarray(dedicated, dtype=float), np.asarray(cheap, dtype=float)
    if d.shape != c.shape:
        raise ValueError(f"{len(d)} dedicated rates but {len(c)} cheap estimates")
    tau = kendalltau(d, c).statistic if len(d) > 2 else float("nan")
    rho = spearmanr(d, c).statistic if len(d) > 2 else float("nan")
    mae = float(np.mean(np.abs(d - c))) if len(d) else float("nan")
    return Agreement(float(tau), float(rho), mae, mae / float(np.mean(d)) if len(d) else float("nan"), len(d))

"""How sure is a number? Weighted means over images, paired comparisons, agreement of estimators.

``compare(a, b)``: both schedules are measured on the same images, and
evaluations with the same seed are paired (same warm start, same batches).
The difference ``A - B`` in bits per latent element is the mean over the
common seeds of the image-size-weighted mean over images. Its uncertainty
has two parts whose variances add (conservative: the seed-by-image
interaction is counted in both):

- images: the spread over images of the seed-averaged difference, as the
  standard error of a weighted mean (n_images - 1 degrees of freedom);
- training: the spread over seeds of the per-seed difference, divided by the
  number of seeds. One schedule pair rarely has more than a few seeds, so
  ``pooled``, the seed-to-seed variance pooled over the pairs of the same
  run, this one included (``pooled_seed_variance``), replaces the pair's own
  estimate when given. With one seed and nothing pooled, training noise is
  unknown: the interval is infinite and the verdict ``indistinguishable``.

The interval uses Student's t with Satterthwaite's degrees of freedom. When
one schedule is compared with ``comparisons`` others, the level is
Bonferroni-corrected (each interval at 1 - (1 - level) / comparisons), so
all intervals hold together. A verdict of ``better`` or ``worse`` needs the
whole interval on one side of zero, otherwise the two are
``indistinguishable``.

``agreement``: how far a cheap estimator agrees with dedicated training
(rank correlations and error over the same items).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau, spearmanr
from scipy.stats import t as student_t

from ..errors import OrdersearchError
from .means import weighted_mean_se
from .record import Evaluation


@dataclass(frozen=True)
class Comparison:
    """A - B in bits per latent element (negative: A is cheaper), with its corrected interval."""

    difference: float
    low: float
    high: float
    relative: float
    level: float  # of each interval, after the multiple-comparison correction
    images: int
    seeds: int  # common (paired) seeds
    dof: float
    verdict: str
    split: str = "test"

    @property
    def of_b(self) -> str:
        """The verdict said of B against A ("worse": B spends more)."""
        return {"better": "worse", "worse": "better"}.get(self.verdict, self.verdict)

    def __str__(self) -> str:
        return (f"A - B = {self.difference:+.4f} bits/latent ({100 * self.relative:+.2f}%), "
                f"{100 * self.level:.1f}% interval [{self.low:+.4f}, {self.high:+.4f}] over {self.images} "
                f"{self.split} images and {self.seeds} paired seed{'s' if self.seeds != 1 else ''}: A is "
                f"{self.verdict}")


def _per_image(evaluations: Sequence[Evaluation], split: str) -> dict[int, np.ndarray]:
    """Bits per latent element of every image, per seed."""
    return {e.seed: np.asarray(e.split_bits(split)[0]) / np.asarray(e.split_bits(split)[1]) for e in evaluations}


def _paired(a: Sequence[Evaluation], b: Sequence[Evaluation], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(per-seed, per-image) differences A - B over the common seeds, and the image weights."""
    if not a or not b:
        raise OrdersearchError("compare needs at least one evaluation of each schedule")
    if len({e.data for e in (*a, *b)}) != 1:
        raise OrdersearchError("evaluations to compare must come from the same data (fingerprints differ)")
    elements = a[0].split_bits(split)[1]
    if any(list(e.split_bits(split)[1]) != list(elements) for e in (*a, *b)):
        raise OrdersearchError(f"evaluations to compare must be measured on the same {split} images")
    ra, rb = _per_image(a, split), _per_image(b, split)
    common = sorted(set(ra) & set(rb))
    if not common:
        raise OrdersearchError("evaluations to compare share no seed (pairs are formed by seed)")
    return np.array([ra[s] - rb[s] for s in common]), np.asarray(elements, dtype=float)


def seed_variance(a: Sequence[Evaluation], b: Sequence[Evaluation], split: str = "test") -> tuple[float, int]:
    """Seed-to-seed variance of the per-seed difference A - B, and its degrees of freedom (0: unknown)."""
    diffs, weights = _paired(a, b, split)
    per_seed = diffs @ (weights / weights.sum())
    return (float(np.var(per_seed, ddof=1)), len(per_seed) - 1) if len(per_seed) > 1 else (0.0, 0)


def _same_models(a: Sequence[Evaluation], b: Sequence[Evaluation], split: str) -> bool:
    sa, sb = a[0].schedule, b[0].schedule
    return (sa is not None and sb is not None and sa.equivalent(sb)) or not np.any(_paired(a, b, split)[0])


def pooled_seed_variance(pairs: Sequence[tuple[Sequence[Evaluation], Sequence[Evaluation]]],
                         split: str = "test") -> tuple[float, int]:
    """Seed-to-seed variance pooled over schedule pairs (weighted by degrees of freedom), and its dof."""
    # a schedule and its translate are measured with the same models: their difference carries no training noise
    parts = [seed_variance(a, b, split) for a, b in pairs if not _same_models(a, b, split)]
    dof = sum(d for _, d in parts)
    return (sum(v * d for v, d in parts) / dof if dof else 0.0), dof


def compare(a: Sequence[Evaluation], b: Sequence[Evaluation], level: float = 0.95, comparisons: int = 1,
            pooled: tuple[float, int] = (0.0, 0), split: str = "test") -> Comparison:
    """Compare the evaluations of schedule A (one per seed) with those of schedule B; see the module docstring."""
    diffs, weights = _paired(a, b, split)
    seeds = len(diffs)
    difference, se_img = weighted_mean_se(diffs.mean(axis=0), weights)
    dof_img = len(weights) - 1
    # the pooled estimate already holds this pair's own seed spread (pooled over the run's pairs, this one included)
    seed_var, seed_dof = pooled if pooled[1] else seed_variance(a, b, split)
    corrected = 1 - (1 - level) / max(1, comparisons)
    parts = [(se_img**2, dof_img)] if dof_img > 0 and not math.isnan(se_img) else []
    low, high, dof = _interval(difference, parts, seed_var / seeds, seed_dof, corrected)
    if low == high:  # no noise at all (identical evaluations): nothing to claim
        low, high, dof = -math.inf, math.inf, 0.0
    verdict = "better" if high < 0 else "worse" if low > 0 else "indistinguishable"
    base = float(np.mean([e.rate(split) for e in b]))
    return Comparison(difference, low, high, difference / base, corrected, len(weights), seeds, dof, verdict, split)


def rate_interval(evaluations: Sequence[Evaluation], level: float = 0.95, split: str = "test"
                  ) -> tuple[float, float, float]:
    """(mean rate, low, high) of one schedule over seeds, the interval carrying images and training noise.

    With one seed the training noise is unknown and the interval infinite.
    """
    rates = np.array([np.asarray(e.split_bits(split)[0]) / np.asarray(e.split_bits(split)[1]) for e in evaluations])
    weights = np.asarray(evaluations[0].split_bits(split)[1], dtype=float)
    mean, se_img = weighted_mean_se(rates.mean(axis=0), weights)
    per_seed = rates @ (weights / weights.sum())
    if len(per_seed) < 2 or math.isnan(se_img):
        return mean, -math.inf, math.inf
    low, high, _ = _interval(mean, [(se_img**2, len(weights) - 1)],
                             float(np.var(per_seed, ddof=1)) / len(per_seed), len(per_seed) - 1, level)
    return mean, low, high


def _interval(estimate: float, parts: list[tuple[float, float]], seed_var: float, seed_dof: float,
              level: float) -> tuple[float, float, float]:
    """(low, high, dof): Student's t interval of ``estimate`` whose variance is the sum of the image
    ``parts`` (variance, dof) and the training part ``seed_var`` (Satterthwaite's dof). Unknown
    training noise (``seed_dof`` 0): an infinite interval, no claim."""
    if not seed_dof:
        return -math.inf, math.inf, 0.0
    parts = [*parts, (seed_var, seed_dof)]
    var = sum(v for v, _ in parts)
    dof = var**2 / sum(v**2 / d for v, d in parts) if var else 1.0
    half = float(student_t.ppf(0.5 + level / 2, dof)) * math.sqrt(var)
    return estimate - half, estimate + half, dof


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


def sign_agreement(a: dict[str, float], b: dict[str, float]) -> float:
    """Fraction of pairs of the labels both hold whose difference has the same sign under ``a`` and ``b``
    (NaN below two common labels): what decides a search is which of two orders is lower."""
    import itertools

    common = sorted(set(a) & set(b))
    pairs = list(itertools.combinations(common, 2))
    if not pairs:
        return float("nan")
    return float(np.mean([np.sign(a[x] - a[y]) == np.sign(b[x] - b[y]) for x, y in pairs]))


def order_agreement(cheap: dict[str, float], per_seed: dict[int, dict[str, float]]) -> tuple[float, float]:
    """(cheap vs dedicated, dedicated seed vs seed) pair sign agreement over orders: the first is the mean
    over seeds, the second the mean over pairs of seeds (the ceiling a perfect estimator would reach)."""
    import itertools

    seeds = [s for s in sorted(per_seed) if len(per_seed[s]) >= 2]
    cheap_vs = [sign_agreement(cheap, per_seed[s]) for s in seeds]
    ceiling = [sign_agreement(per_seed[a], per_seed[b]) for a, b in itertools.combinations(seeds, 2)]
    return (float(np.mean(cheap_vs)) if cheap_vs else float("nan"),
            float(np.mean(ceiling)) if ceiling else float("nan"))

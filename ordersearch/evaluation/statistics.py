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
  run, this one included (``pooled_seed_variance``), is given; the pair's
  own estimate (``seed_variance``) replaces it where it is larger
  (``larger_seed_variance``): seed noise differs from pair to pair (per-pair
  sd 0.0005-0.0023 bits in the committed runs), and a pool alone would
  understate the noisiest pairs. With one seed and nothing pooled, training
  noise is unknown: the interval is infinite and the verdict
  ``indistinguishable``.

Seeds of a verification come in two groups: the *selection* seeds, whose
val numbers chose the leader, and fresh *report* seeds, whose test numbers
are reported (``verify``). Both groups measure the same training noise, so a
variance is estimated within each group and pooled (``report``), while the
difference itself is the report seeds' alone.

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
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau, spearmanr
from scipy.special import stdtrit

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
    #: the smallest |A - B| this comparison finds with 80% power at its (corrected) level; inf with one seed
    detectable: float = math.inf
    relative_detectable: float = math.inf  # the same relative to B's rate, like ``relative``

    def percent(self, of_b: bool = False) -> str:
        """The difference and its interval relative to B's rate, in percent: ``+0.31% [+0.05, +0.57]`` (B - A
        with ``of_b``)."""
        if not self.difference:
            return "+0.00%"
        scale = 100 * self.relative / self.difference  # B's rate
        d, low, high = ((-self.difference, -self.high, -self.low) if of_b else (self.difference, self.low, self.high))
        return f"{scale * d:+.2f}% [{scale * low:+.2f}, {scale * high:+.2f}]"

    @property
    def of_b(self) -> str:
        """The verdict said of B against A ("worse": B spends more)."""
        return {"better": "worse", "worse": "better"}.get(self.verdict, self.verdict)

    def __str__(self) -> str:
        return (f"A - B = {self.difference:+.4f} bits/latent ({100 * self.relative:+.2f}%), "
                f"{100 * self.level:.1f}% interval [{self.low:+.4f}, {self.high:+.4f}] over {self.images} "
                f"{self.split} images and {self.seeds} paired seed{'s' if self.seeds != 1 else ''}: A is "
                f"{self.verdict}" + (f" (80% power to find |A - B| >= {self.detectable:.4f}, "
                                     f"{100 * abs(self.relative_detectable):.2f}%)"
                                     if math.isfinite(self.detectable) else ""))


def _per_image(evaluations: Sequence[Evaluation], split: str) -> dict[int, np.ndarray]:
    """Bits per latent element of every image, per seed."""
    return {e.seed: np.asarray(e.split_bits(split)[0]) / np.asarray(e.split_bits(split)[1]) for e in evaluations}


def _by_seed(a: Sequence[Evaluation], b: Sequence[Evaluation], split: str) -> tuple[dict[int, np.ndarray],
                                                                                  np.ndarray]:
    """Per-image differences A - B of every common seed, and the image weights."""
    if not a or not b:
        raise OrdersearchError("compare needs at least one evaluation of each schedule")
    if len({e.data for e in (*a, *b)}) != 1:
        raise OrdersearchError("evaluations to compare must come from the same data (fingerprints differ)")
    elements = np.asarray(a[0].split_bits(split)[1], dtype=float)
    if any(not np.array_equal(e.split_bits(split)[1], elements) for e in (*a, *b)):
        raise OrdersearchError(f"evaluations to compare must be measured on the same {split} images")
    ra, rb = _per_image(a, split), _per_image(b, split)
    common = sorted(set(ra) & set(rb))
    if not common:
        raise OrdersearchError("evaluations to compare share no seed (pairs are formed by seed)")
    return {s: ra[s] - rb[s] for s in common}, elements


def _paired(a: Sequence[Evaluation], b: Sequence[Evaluation], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(per-seed, per-image) differences A - B over the common seeds, and the image weights."""
    diffs, weights = _by_seed(a, b, split)
    return np.array(list(diffs.values())), weights


def seed_variance(a: Sequence[Evaluation], b: Sequence[Evaluation], split: str = "test",
                  report: Collection[int] = ()) -> tuple[float, int]:
    """Seed-to-seed variance of the per-seed difference A - B, and its degrees of freedom (0: unknown).

    With ``report`` seeds, the spread is taken within the report seeds and within the others apart (each
    around its own mean, pooled): selection moves the mean of the selection seeds, not their spread."""
    diffs, weights = _by_seed(a, b, split)
    if not any(np.any(d) for d in diffs.values()):  # the same models (a schedule and itself): no training noise
        return 0.0, 0
    w = weights / weights.sum()
    var, dof = 0.0, 0
    for reported in (True, False):
        per_seed = [d @ w for seed, d in diffs.items() if (seed in report) == reported]
        if len(per_seed) > 1:
            var += float(np.var(per_seed, ddof=1)) * (len(per_seed) - 1)
            dof += len(per_seed) - 1
    return (var / dof, dof) if dof else (0.0, 0)


def _same_models(a: Sequence[Evaluation], b: Sequence[Evaluation]) -> bool:
    sa, sb = a[0].schedule, b[0].schedule
    return sa is not None and sb is not None and sa.equivalent(sb)


def pooled_seed_variance(pairs: Sequence[tuple[Sequence[Evaluation], Sequence[Evaluation]]],
                         split: str = "test", report: Collection[int] = ()) -> tuple[float, int]:
    """Seed-to-seed variance pooled over schedule pairs (weighted by degrees of freedom), and its dof."""
    return pool(pair_seed_variance(a, b, split, report) for a, b in pairs)


def pair_seed_variance(a: Sequence[Evaluation], b: Sequence[Evaluation], split: str = "test",
                       report: Collection[int] = ()) -> tuple[float, int]:
    """``seed_variance`` of A - B, but none (0 dof) where A and B are measured with the same models (a schedule
    and its translate): their difference carries no training noise."""
    return (0.0, 0) if _same_models(a, b) else seed_variance(a, b, split, report)


def pool(parts: Iterable[tuple[float, int]]) -> tuple[float, int]:
    """Variances (with their degrees of freedom) pooled, weighted by degrees of freedom."""
    parts = list(parts)
    dof = sum(d for _, d in parts)
    return (sum(v * d for v, d in parts) / dof if dof else 0.0), dof


def larger(own: tuple[float, int], pooled: tuple[float, int]) -> tuple[float, int]:
    """The seed variance a comparison uses: the pair's ``own`` where it is larger than ``pooled`` (with its own,
    fewer, degrees of freedom), else the pool."""
    return own if own[1] and (not pooled[1] or own[0] > pooled[0]) else pooled


def larger_seed_variance(a: Sequence[Evaluation], b: Sequence[Evaluation], pooled: tuple[float, int],
                         split: str = "test", report: Collection[int] = ()) -> tuple[float, int]:
    """The seed variance ``compare`` uses for A - B against the run's ``pooled`` one (``larger``)."""
    return larger(pair_seed_variance(a, b, split, report), pooled)


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
    mde = detectable(high - low, corrected, dof)
    return Comparison(difference, low, high, difference / base, corrected, len(weights), seeds, dof, verdict, split,
                      mde, mde / base)


def detectable(width: float, level: float, dof: float, power: float = 0.8) -> float:
    """The smallest true difference an interval of ``width`` (two-sided, ``level``, ``dof``) excludes zero for
    with probability ``power``: (t_level + t_power) standard errors."""
    if not math.isfinite(width) or dof <= 0:
        return math.inf
    q = float(stdtrit(dof, 0.5 + level / 2))
    return (q + float(stdtrit(dof, power))) * width / (2 * q)


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
    half = float(stdtrit(dof, 0.5 + level / 2)) * math.sqrt(var)
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
    """(cheap vs dedicated, the seed ceiling) pair sign agreement over orders, each a mean over seeds.

    The ceiling is what the cheap table is held to: each seed against the mean of the other seeds (leave one
    out; with two seeds, seed vs seed). A perfect estimator agrees with one noisy seed more often than a
    second noisy seed does, so one seed against one seed sets the bar too low; the mean of the others comes
    closer to the truth the more seeds there are. NaN below two seeds.
    """
    seeds = [s for s in sorted(per_seed) if len(per_seed[s]) >= 2]
    cheap_vs = [sign_agreement(cheap, per_seed[s]) for s in seeds]
    ceiling = []
    for s in seeds:
        others = [per_seed[t] for t in seeds if t != s]
        rest = {k: float(np.mean([o[k] for o in others if k in o])) for k in set().union(*others)}
        ceiling.append(sign_agreement(rest, per_seed[s]))
    ceiling = [c for c in ceiling if c == c]
    return (float(np.mean(cheap_vs)) if cheap_vs else float("nan"),
            float(np.mean(ceiling)) if ceiling else float("nan"))

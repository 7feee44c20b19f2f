"""Consistency checks a run makes on its own measurements: numbers that must agree do, within their intervals.

- **per-position bits sum to the total**: for every evaluation, the mean of
  its per-position rates weighted by the latents at each position is its
  rate (to 1e-6), so the heatmaps and the totals tell one story;
- **single at every patch size**: ``single`` (no spatial context, one bias
  per position) measured at the run's n x n and at another patch size gives
  the same rate: a difference is the protocol's, not the schedule's;
- **one grouped schedule at two patch sizes**: checkerboard written as a
  2x2 and as an n x n schedule is the same decoding order; its two rates
  differ only if per-position models are starved of data (the 4x4 model has
  four times the context weights of the 2x2 one for the same latents).

The two comparisons use the run's pooled seed-to-seed variance and a 95%
interval; where the training noise is unknown (one seed) a check is
"untestable", not passed. A failed check is stated at the top of summary.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.latents import LatentSet
from ..evaluation.record import Evaluation
from ..evaluation.statistics import compare, larger_seed_variance
from ..evaluation.verify import Verified
from ..schedule import Schedule

__all__ = ["Check", "check_schedules", "consistency_checks"]


@dataclass(frozen=True)
class Check:
    """One check: ``status`` passed / failed / untestable, and what was measured."""

    name: str
    status: str
    detail: str
    difference: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")


def check_schedules(patch: int) -> dict[str, Schedule]:
    """The schedules a run at ``patch`` trains only for its checks: single and checkerboard at another size."""
    other = 4 if patch == 2 else 2
    out = {f"single@{other}x{other}": Schedule.named("single", other)}
    if patch % 2 == 0:
        out[f"checkerboard@{other}x{other}"] = Schedule.named("checkerboard", other)
    return out


def _position_counts(test: LatentSet, n: int) -> np.ndarray:
    counts = np.zeros((n, n))
    for y in test.y:
        c, h, w = y.shape
        for r in range(n):
            for q in range(n):
                counts[r, q] += c * len(range(r, h, n)) * len(range(q, w, n))
    return counts


def _same(name: str, a: list[Evaluation], b: list[Evaluation], pooled: tuple[float, int]) -> Check:
    cmp = compare(a, b, 0.95, pooled=larger_seed_variance(a, b, pooled))
    what = (f"{np.mean([e.rate() for e in a]):.4f} vs {np.mean([e.rate() for e in b]):.4f} bits/latent "
            f"on test; difference {cmp.difference:+.4f} ({100 * cmp.relative:+.2f}%), 95% interval "
            f"[{cmp.low:+.4f}, {cmp.high:+.4f}]")
    if not np.isfinite(cmp.low):
        return Check(name, "untestable", what + ": training noise unknown (one seed)", cmp.difference)
    status = "passed" if cmp.verdict == "indistinguishable" else "failed"
    return Check(name, status, what, cmp.difference, cmp.low, cmp.high)


def consistency_checks(verified: Verified, extra: dict[str, list[Evaluation]], patch: int,
                       test: LatentSet, border: int = 0) -> list[Check]:
    """Every check of the module docstring on a run's verified candidates and its ``check_schedules``."""
    checks = []
    evaluations = [e for group in (*verified.evaluations.values(), *extra.values()) for e in group]
    if border:
        checks.append(Check("per-position bits sum to the total", "untestable",
                            f"score_border {border}: the scored area is not the whole latent"))
    else:
        worst = 0.0
        for e in evaluations:
            counts = _position_counts(test, e.patch)
            total = float((np.asarray(e.per_position) * counts).sum() / counts.sum())
            worst = max(worst, abs(total - e.bits_per_latent) / e.bits_per_latent)
        checks.append(Check("per-position bits sum to the total", "passed" if worst < 1e-6 else "failed",
                            f"largest relative gap {worst:.1e} over {len(evaluations)} evaluations"))

    def label_of(target: Schedule) -> str | None:
        key = target.canonical("translations")
        return next((k for k, s in verified.schedules.items() if s.canonical("translations") == key), None)

    for label, schedule in check_schedules(patch).items():
        name = label.split("@")[0]
        own = label_of(Schedule.named(name, patch))
        if own is None or label not in extra:
            continue
        checks.append(_same(f"{name} at {patch}x{patch} = {name} at {schedule.patch}x{schedule.patch}",
                            verified.evaluations[own], extra[label], verified.pooled))
    return checks

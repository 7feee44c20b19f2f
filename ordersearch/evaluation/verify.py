"""Verification: re-score candidate schedules by dedicated training so no choice rests on a cheap scorer.

The cheap scorers (linear-Gaussian, shared scorer) rank thousands of orders;
the top few and the named baselines are then trained for real, with several
seeds, through the evaluation store. The winner is the lowest mean dedicated
rate, and it is compared (paired, with a confidence interval) with the
runner-up and every baseline; where the interval straddles zero the report
says *indistinguishable* instead of crowning one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import OrdersearchError
from ..schedule import Schedule
from .evaluator import Evaluator
from .record import Evaluation
from .statistics import Comparison, compare


@dataclass
class Verified:
    """Dedicated evaluations of labelled schedules, the winner, and its comparisons with the others."""

    schedules: dict[str, Schedule]
    evaluations: dict[str, list[Evaluation]]
    winner: str
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # winner vs label

    def mean(self, label: str) -> float:
        return float(np.mean([e.bits_per_latent for e in self.evaluations[label]]))

    def ranking(self) -> list[str]:
        return sorted(self.evaluations, key=self.mean)

    def report(self) -> list[str]:
        """One line per schedule, best first: mean rate and the comparison with the winner."""
        lines = []
        for label in self.ranking():
            ev = self.evaluations[label]
            line = (f"{label}: {self.mean(label):.4f} bits/latent (dedicated, test split, mean of "
                    f"{len(ev)} seed{'s' if len(ev) > 1 else ''})")
            if label == self.winner:
                line += " <- lowest"
            else:
                c = self.comparisons[label]
                verdict = {"better": "the lowest is better", "worse": "the lowest is worse",
                           "indistinguishable": "indistinguishable from the lowest"}[c.verdict]
                line += (f"; lowest - this = {c.difference:+.4f} ({100 * c.relative:+.2f}%), "
                         f"{100 * c.level:.0f}% interval [{c.low:+.4f}, {c.high:+.4f}]: {verdict}")
            lines.append(line)
        return lines


def verify(schedules: dict[str, Schedule], evaluator: Evaluator, seeds: int = 2) -> Verified:
    """Dedicated evaluation of every labelled schedule with ``seeds`` seeds (seed-major, cached)."""
    if not schedules:
        raise OrdersearchError("nothing to verify: no schedules given")
    if seeds < 1:
        raise OrdersearchError(f"verification needs at least one seed, got {seeds}")
    evaluations: dict[str, list[Evaluation]] = {label: [] for label in schedules}
    for seed in range(seeds):  # seed-major: an interrupted run has every schedule at least once
        for label, schedule in schedules.items():
            evaluations[label].append(evaluator.evaluate(schedule, seed))
    winner = min(evaluations, key=lambda k: np.mean([e.bits_per_latent for e in evaluations[k]]))
    comparisons = {label: compare(evaluations[winner], ev) for label, ev in evaluations.items() if label != winner}
    return Verified(dict(schedules), evaluations, winner, comparisons)

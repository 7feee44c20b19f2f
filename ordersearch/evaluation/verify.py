"""Verification: dedicated training of candidate schedules, the leader chosen on val, verdicts on test.

The cheap estimators rank thousands of orders; the top few, the named
baselines and negative controls are then trained for real, with several
seeds, through the evaluation store. Then:

1. the *leader* is the candidate with the lowest mean rate on the **val**
   split: no choice ever reads the test split;
2. the leader is compared with every other candidate on the **test** split
   (``statistics.compare``: paired over images and seeds, training noise
   pooled over the run's pairs, intervals Bonferroni-corrected for the
   number of comparisons);
3. the *best set* is the leader and every candidate not shown worse than it;
   "indistinguishable" is a result, not a failure;
4. adaptive seeds: candidates still indistinguishable from the leader (and
   the leader) get more seeds, up to ``max_seeds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import OrdersearchError
from ..schedule import Schedule
from .evaluator import Evaluator
from .record import Evaluation
from .statistics import Comparison, compare, pooled_seed_variance


@dataclass
class Verified:
    """Dedicated evaluations of labelled schedules, the leader (chosen on val) and its test comparisons."""

    schedules: dict[str, Schedule]
    evaluations: dict[str, list[Evaluation]]
    winner: str  # the leader: lowest mean val rate
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # leader - label, on test
    pooled: tuple[float, int] = (0.0, 0)  # seed-to-seed variance of differences, and its degrees of freedom
    chosen_on: str = "val"  # the split the leader is the lowest on: whole val images, or "val-interior"

    @property
    def unresolved(self) -> list[str]:
        """Candidates still indistinguishable from the leader."""
        return [k for k, c in self.comparisons.items() if c.verdict == "indistinguishable"]

    def mean(self, label: str, split: str = "test") -> float:
        return float(np.mean([e.rate(split) for e in self.evaluations[label]]))

    def ranking(self, split: str | None = None) -> list[str]:
        """Labels by mean rate on ``split`` (default: the split choices are made on)."""
        return sorted(self.evaluations, key=lambda k: self.mean(k, split or self.chosen_on))

    def best_set(self) -> list[str]:
        """The leader and every candidate the test comparison does not show worse than it (val order)."""
        return [k for k in self.ranking() if k == self.winner or self.comparisons[k].verdict != "better"]

    def report(self) -> list[str]:
        """One line per schedule, in val order: test rate and the comparison with the leader."""
        lines = []
        for label in self.ranking():
            ev = self.evaluations[label]
            line = (f"{label}: {self.mean(label):.4f} bits/latent on test (val {self.mean(label, 'val'):.4f}; "
                    f"{len(ev)} seed{'s' if len(ev) > 1 else ''})")
            if label == self.winner:
                line += " <- leader (lowest on val)"
            else:
                c = self.comparisons[label]
                verdict = {"worse": "worse than the leader", "better": "better than the leader",
                           "indistinguishable": "indistinguishable from the leader"}[c.of_b]
                line += (f"; leader - this = {c.difference:+.4f} ({100 * c.relative:+.2f}%), "
                         f"{100 * c.level:.1f}% interval [{c.low:+.4f}, {c.high:+.4f}]: {verdict}")
            lines.append(line)
        return lines


def conclude(schedules: dict[str, Schedule], evaluations: dict[str, list[Evaluation]], level: float = 0.95,
             chosen_on: str = "val") -> Verified:
    """The leader on val (``chosen_on``: whole images, or ``val-interior``) and its corrected test comparisons
    with every other candidate."""
    means = {k: float(np.mean([e.rate(chosen_on) for e in ev])) for k, ev in evaluations.items()}
    winner = min(means, key=means.get)
    others = [k for k in evaluations if k != winner]
    pooled = pooled_seed_variance([(evaluations[winner], evaluations[k]) for k in others])
    comparisons = {k: compare(evaluations[winner], evaluations[k], level, comparisons=len(others), pooled=pooled)
                   for k in others}
    return Verified(dict(schedules), evaluations, winner, comparisons, pooled, chosen_on)


def duration(seconds: float) -> str:
    """``42 s``, ``7 min`` or ``2.8 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Finished:
    """One finished (or found) training of ``verify``: what it was, and how far verification is."""

    label: str
    evaluation: Evaluation
    done: int
    planned: int  # trainings planned so far: adaptive seeds may add more
    seconds_left: float  # at this invocation's pace

    @property
    def line(self) -> str:
        ev = self.evaluation
        return (f"verified {self.done}/{self.planned} (about {duration(self.seconds_left)} left): {self.label} seed {ev.seed}: "
                f"{ev.bits_per_latent:.4f} bits/latent on test (val {ev.val_bits_per_latent:.4f}, "
                f"{ev.steps} steps, {ev.seconds:.0f} s)")


def verify(schedules: dict[str, Schedule], evaluator: Evaluator, seeds: int = 3, max_seeds: int | None = None,
           report: Callable[[Finished], None] | None = None, chosen_on: str = "val") -> Verified:
    """Dedicated evaluation of every labelled schedule with ``seeds`` seeds (seed-major, cached), concluded.

    Adaptive seeds: while the leader is indistinguishable from some candidates
    and fewer than ``max_seeds`` seeds were trained, one more seed of the
    leader and of those candidates only; ``Verified.unresolved`` names what is
    still indistinguishable when the budget runs out. ``report`` hears of
    every finished training. ``chosen_on``: the split the leader is chosen on (``conclude``).
    """
    if not schedules:
        raise OrdersearchError("nothing to verify: no schedules given")
    max_seeds = seeds if max_seeds is None else max_seeds
    if seeds < 1 or max_seeds < seeds:
        raise OrdersearchError(f"verification needs 1 <= seeds <= max seeds, got {seeds} and {max_seeds}")
    evaluations: dict[str, list[Evaluation]] = {label: [] for label in schedules}
    done, planned, start = 0, 0, time.time()

    def evaluate(pairs: list[tuple[str, int]]) -> None:
        nonlocal done, planned
        planned += len(pairs)
        for at in range(0, len(pairs), evaluator.stack):  # one stack at a time, so each is reported as it ends
            chunk = pairs[at:at + evaluator.stack]
            for (label, seed), ev in zip(chunk, evaluator.evaluate_many([(schedules[k], s) for k, s in chunk],
                                                                        [k for k, _ in chunk])):
                evaluations[label].append(ev)
                done += 1
                if report:
                    left = (time.time() - start) / done * (planned - done)  # more if more seeds are needed
                    report(Finished(label, ev, done, planned, left))

    if evaluator.stack > 1 and evaluator.config.warm_steps > 0:
        evaluator.warm_starts(range(max_seeds))  # together now, rather than one per adaptive round
    # seed-major: an interrupted run has every schedule at least once; trained together where stacking pays
    evaluate([(label, seed) for seed in range(seeds) for label in schedules])
    verified = conclude(schedules, evaluations, chosen_on=chosen_on)
    for seed in range(seeds, max_seeds):
        unresolved = [k for k, c in verified.comparisons.items() if c.verdict == "indistinguishable"]
        if not unresolved:
            break
        evaluate([(label, seed) for label in [verified.winner, *unresolved]
                  if all(e.seed != seed for e in evaluations[label])])
        verified = conclude(schedules, evaluations, chosen_on=chosen_on)
    return verified

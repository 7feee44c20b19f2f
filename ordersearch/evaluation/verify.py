"""Verification: dedicated training of candidate schedules, the leader chosen on val, verdicts on fresh seeds.

The cheap estimators rank thousands of orders; the top few, the named
baselines and negative controls are then trained for real, through the
evaluation store, in two groups of seeds::

    selection seeds 0 .. seeds-1        every candidate      val only
      + one seed at a time, up to max_seeds - 1, for the val leader and the
        candidates indistinguishable from it on val (adaptive seeds)
    -> the leader: lowest mean val rate over its selection seeds
    report seeds max_seeds .. max_seeds+report_seeds-1   every candidate   test
    -> the leader compared with every other candidate on test, report seeds only

1. No choice reads test: the leader, the adaptive seeds and when they stop
   are decided on the **val** split;
2. selection does not leak into the report: a model's luck (its training
   noise) shows on val and test alike (per-seed val/test correlation 0.3-0.7
   on the built-in latents), so the candidate chosen for a low val rate
   would carry its luck into test numbers of the same seeds. The report
   seeds are trained after every choice, for every candidate alike;
3. one family per run, fixed before the data: the leader against every other
   candidate (``statistics.compare``: paired over images and report seeds,
   seed noise within each group of seeds, the pair's own where larger than
   the run's pool), each interval Bonferroni-corrected for that number;
4. the *best set* is the leader and every candidate not shown worse than it;
   "indistinguishable" is a result, not a failure.

``evaluation.calibration`` simulates this whole procedure with known truth:
its family-wise error and power are in results/verdict_calibration.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import OrdersearchError
from ..schedule import Schedule
from .evaluator import Evaluator
from .record import Evaluation
from .statistics import Comparison, compare, larger, pair_seed_variance, pool


@dataclass
class Verified:
    """Dedicated evaluations of labelled schedules, the leader (chosen on val) and its test comparisons."""

    schedules: dict[str, Schedule]
    evaluations: dict[str, list[Evaluation]]  # every seed: selection and report
    winner: str  # the leader: lowest mean val rate over its selection seeds
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # leader - label, on test, report seeds
    pooled: tuple[float, int] = (0.0, 0)  # seed-to-seed variance of differences, and its degrees of freedom
    chosen_on: str = "val"  # the split the leader is the lowest on: whole val images, or "val-interior"
    #: the seeds whose test numbers are reported; empty: every seed (folders of the earlier protocol, which
    #: chose and reported on the same seeds)
    report_seeds: tuple[int, ...] = ()
    selection: dict[str, Comparison] = field(default_factory=dict)  # leader - label on val, selection seeds
    trained_now: int = 0  # of the evaluations, how many ``verify`` trained (the rest were in the store)

    @property
    def unresolved(self) -> list[str]:
        """Candidates still indistinguishable from the leader on val when the seed budget ran out."""
        return [k for k, c in self.selection.items() if c.verdict == "indistinguishable"]

    def reported(self, label: str) -> list[Evaluation]:
        """The evaluations of ``label`` whose test numbers are reported."""
        evs = self.evaluations[label]
        return [e for e in evs if e.seed in self.report_seeds] if self.report_seeds else evs

    def selecting(self, label: str) -> list[Evaluation]:
        """The evaluations of ``label`` that choices were made with (on val)."""
        evs = self.evaluations[label]
        return [e for e in evs if e.seed not in self.report_seeds] if self.report_seeds else evs

    def mean(self, label: str, split: str = "test") -> float:
        """Mean rate on ``split``: over the report seeds on test, over the selection seeds on val."""
        evs = self.reported(label) if split.startswith("test") else self.selecting(label)
        return float(np.mean([e.rate(split) for e in evs]))

    def ranking(self, split: str | None = None) -> list[str]:
        """Labels by mean rate on ``split`` (default: the split choices are made on)."""
        return sorted(self.evaluations, key=lambda k: self.mean(k, split or self.chosen_on))

    def compared_on(self, split: str, level: float = 0.95) -> dict[str, Comparison]:
        """The leader against every other candidate on ``split`` (``test-interior``, ...) by the rules of its test
        comparisons: report seeds, seed noise within each group of seeds, one corrected family."""
        return _family(self.winner, {k: self.reported(k) for k in self.evaluations}, level, split,
                       self.report_seeds, spread=self.evaluations)[0]

    def best_set(self) -> list[str]:
        """The leader and every candidate the test comparison does not show worse than it (val order)."""
        return [k for k in self.ranking() if k == self.winner or self.comparisons[k].verdict != "better"]

    def report(self) -> list[str]:
        """One line per schedule, in val order: test rate and the comparison with the leader."""
        lines = []
        for label in self.ranking():
            n = len(self.reported(label))
            line = (f"{label}: {self.mean(label):.4f} bits/latent on test ({n} report seed{'s' if n > 1 else ''}; "
                    f"val {self.mean(label, 'val'):.4f}, {len(self.selecting(label))} selection seeds)")
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


def _family(winner: str, groups: dict[str, list[Evaluation]], level: float, split: str, report: tuple[int, ...],
            spread: dict[str, list[Evaluation]] | None = None) -> tuple[dict[str, Comparison], tuple[float, int]]:
    """``winner`` against every other label of ``groups`` on ``split``, Bonferroni over them; seed noise from
    ``spread`` (default: the same evaluations), within the ``report`` seeds and the others apart."""
    spread = spread or groups
    others = [k for k in groups if k != winner]
    own = {k: pair_seed_variance(spread[winner], spread[k], split, report) for k in others}
    pooled = pool(own.values())
    return {k: compare(groups[winner], groups[k], level, comparisons=len(others), split=split,
                       pooled=larger(own[k], pooled)) for k in others}, pooled


def conclude(schedules: dict[str, Schedule], evaluations: dict[str, list[Evaluation]], level: float = 0.95,
             chosen_on: str = "val", report_seeds: tuple[int, ...] = ()) -> Verified:
    """The leader on val (``chosen_on``: whole images, or ``val-interior``) over the selection seeds, its
    corrected val comparisons (what adaptive seeds decide on) and its corrected test comparisons over the
    ``report_seeds`` (none: every seed, the earlier protocol) with every other candidate."""
    report = tuple(sorted(report_seeds))
    v = Verified(dict(schedules), evaluations, "", chosen_on=chosen_on, report_seeds=report)
    v.winner = min(evaluations, key=lambda k: v.mean(k, chosen_on))
    v.selection, _ = _family(v.winner, {k: v.selecting(k) for k in evaluations}, level, chosen_on, ())
    if not report or all(v.reported(k) for k in evaluations):
        v.comparisons, v.pooled = _family(v.winner, {k: v.reported(k) for k in evaluations}, level, "test", report,
                                          spread=evaluations)
    return v


def duration(seconds: float) -> str:
    """``42 s``, ``7 min`` or ``2.8 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def span(low: float, high: float) -> str:
    """``about 7 min`` or, where the two differ as said, ``1.6 h to 2.5 h``."""
    a, b = duration(low), duration(high)
    return f"about {a}" if a == b else f"{a} to {b}"


@dataclass(frozen=True)
class Finished:
    """One finished (or found) training of ``verify``: what it was, and how far verification is."""

    label: str
    evaluation: Evaluation
    done: int
    planned: int  # trainings planned so far: adaptive seeds may add more
    #: the trainings' own mean seconds so far (stored ones included: a resumed run replays them in no time) x the
    #: trainings left; the any-order models of seeds still to come add minutes each (``run`` counts them)
    seconds_left: float
    reported: bool = False  # a report seed (its test number is reported), else a selection seed (val only)

    def line(self, left: tuple[float, float] | None = None) -> str:
        """What a log says of it; ``left``: (low, high) seconds left where the caller knows of more work than
        these trainings, else ``seconds_left``."""
        ev = self.evaluation
        rate = (f"{ev.bits_per_latent:.4f} bits/latent on test" if self.reported else
                f"{ev.val_bits_per_latent:.4f} bits/latent on val")
        low, high = left or (self.seconds_left, self.seconds_left)
        return (f"verified {self.done}/{self.planned} ({span(low, high)} left): {self.label} "
                f"{'report' if self.reported else 'selection'} seed {ev.seed}: {rate} "
                f"(one seed; {ev.steps} steps, {ev.seconds:.0f} s)")


def verify(schedules: dict[str, Schedule], evaluator: Evaluator, seeds: int = 2, max_seeds: int | None = None,
           report_seeds: int = 2, report: Callable[[Finished], None] | None = None,
           chosen_on: str = "val") -> Verified:
    """Dedicated evaluation of every labelled schedule (cached), concluded as the module docstring says.

    ``seeds`` selection seeds for every candidate (seed-major); while the val
    leader is indistinguishable on val from some candidates and fewer than
    ``max_seeds`` were trained, one more selection seed for the leader and
    those only (``Verified.unresolved`` names what is still indistinguishable
    when the budget runs out); then ``report_seeds`` fresh seeds for every
    candidate, measured on test. ``report`` hears of every finished
    training. ``chosen_on``: the split the leader is chosen on.
    """
    if not schedules:
        raise OrdersearchError("nothing to verify: no schedules given")
    max_seeds = seeds if max_seeds is None else max_seeds
    if seeds < 1 or max_seeds < seeds:
        raise OrdersearchError(f"verification needs 1 <= seeds <= max seeds, got {seeds} and {max_seeds}")
    if report_seeds < 1:
        raise OrdersearchError(f"verification needs at least one report seed, got {report_seeds}")
    evaluations: dict[str, list[Evaluation]] = {label: [] for label in schedules}
    done, planned, trained, seconds = 0, 0, 0, 0.0
    fresh = tuple(range(max_seeds, max_seeds + report_seeds))

    def evaluate(pairs: list[tuple[str, int]]) -> None:
        nonlocal done, planned, trained, seconds
        planned += len(pairs)
        for at in range(0, len(pairs), evaluator.stack):  # one stack at a time, so each is reported as it ends
            chunk = pairs[at:at + evaluator.stack]
            trained += sum(evaluator.evaluate(schedules[k], s, cached_only=True) is None for k, s in chunk)
            for (label, seed), ev in zip(chunk, evaluator.evaluate_many([(schedules[k], s) for k, s in chunk],
                                                                        [k for k, _ in chunk])):
                evaluations[label].append(ev)
                done, seconds = done + 1, seconds + ev.seconds
                if report:
                    total = planned + (0 if seed in fresh else len(schedules) * report_seeds)
                    report(Finished(label, ev, done, total, seconds / done * (total - done), seed in fresh))

    if evaluator.stack > 1 and evaluator.config.warm_steps > 0:
        evaluator.warm_starts([*range(seeds), *fresh])  # the seeds every candidate trains, together now
    # seed-major: an interrupted run has every schedule at least once; trained together where stacking pays
    evaluate([(label, seed) for seed in range(seeds) for label in schedules])
    verified = conclude(schedules, evaluations, chosen_on=chosen_on, report_seeds=fresh)
    for seed in range(seeds, max_seeds):
        if not verified.unresolved:
            break
        evaluate([(label, seed) for label in [verified.winner, *verified.unresolved]])
        verified = conclude(schedules, evaluations, chosen_on=chosen_on, report_seeds=fresh)
    evaluate([(label, seed) for seed in fresh for label in schedules])
    verified = conclude(schedules, evaluations, chosen_on=chosen_on, report_seeds=fresh)
    verified.trained_now = trained
    return verified

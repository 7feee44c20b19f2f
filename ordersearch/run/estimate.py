"""How long verification will take on this machine, said before its first training.

    seconds = trainings still to do x expected steps to the plateau x seconds per step (measured here, now)
            + any-order models still to train x their expected steps x their seconds per step

The step times are measured with the run's own protocol, data and device
(two short trainings, the difference of which cancels the validation). The
steps to the plateau are the median of this protocol's trainings already in
the run's store, else ``TYPICAL_STEPS``, both capped by ``max_steps``; the
any-order models' likewise (their own stored steps, else
``TYPICAL_ANY_ORDER_STEPS`` of the patch size), since they take longer to
their plateau than the dedicated trainings started from them.
Adaptive seeds may add trainings: the estimate gives the range from the
planned seeds (selection and report) to ``max_seeds`` selection seeds for
every candidate (less those already stored), and leads with it: where
orders are close, most candidates take every adaptive seed. The
consistency checks' trainings at another patch size (with their own
any-order models) are counted with their own step times.
Not counted: the prior-only warm starts (1,000 steps per seed, a few
percent). After each training, ``Estimate.left`` says what is left the same
way, with the trainings' own pace so far in place of the measured steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..evaluation import Evaluator
from ..evaluation.config import TrainConfig
from ..evaluation.store import any_order_subject
from ..evaluation.training import train_any_order, train_stacked
from ..evaluation.verify import Finished, duration, span
from ..models.any_order import AnyOrderContextModel
from ..models.multistage import MultistageContextModel
from ..schedule import Schedule

#: steps to the plateau from the any-order start (the default): 3,200-4,300 at 4x4 (results/bench_verify.json),
#: median 3,200 over 31 fresh 2x2 trainings (2026-12-06, the 2-core machine); the prior start took 4,100-4,300
#: (results/patch{2,3,4}/evaluations.csv)
TYPICAL_STEPS = 3500
#: steps to the plateau of the any-order model, by patch size: 2x2 median 5,500 (4,400-6,000) and 4x4 5,700
#: (3,600-6,500) over five seeds of a fresh default run each, 3x3 6,800 (one seed, runs/fidelity_any_order);
#: 2026-12-06, the 2-core machine
TYPICAL_ANY_ORDER_STEPS = {2: 5500, 3: 6800, 4: 5700}
#: a training's seconds per step all in (validation every ``eval_every`` steps, the final measurement) over the
#: step's own: committed 4x4 trainings took 31 ms per step all in where the step alone takes 26 ms
OVERHEAD = 1.2


@dataclass(frozen=True)
class Estimate:
    """Expected seconds of verification: ``low`` with the planned seeds, ``high`` if every candidate needs
    ``max_seeds``."""

    trainings: int
    more: int  # adaptive seeds may add up to this many
    any_order: int
    more_any_order: int
    steps: int
    step_seconds: float
    any_order_steps: int
    any_order_step_seconds: float
    low: float
    high: float
    checks: int = 0  # the consistency checks' trainings (another patch size, with their any-order models)
    check_seconds: float = 0.0
    seeds: int = 2  # the protocol's selection seeds, their upper bound, report seeds and candidates
    max_seeds: int = 2
    report_seeds: int = 2
    candidates: int = 0
    missing: tuple[int, ...] = ()  # per seed (selection, adaptive, report): 1 if its any-order model is to train

    def left(self, f: Finished) -> tuple[float, float]:
        """Seconds left after the training ``f``, low and high: its trainings still planned (their own mean
        seconds so far), the any-order models of the seeds to come and the consistency checks; the high figure
        adds the adaptive seeds still possible. (The trainings alone said "79 min" with about 3 h to go.)"""
        seed, missing = f.evaluation.seed, dict(enumerate(self.missing))

        def models(seeds) -> float:  # the any-order models of these seeds still to train
            return self.any_order_steps * self.any_order_step_seconds * sum(missing.get(t, 0) for t in seeds)

        per = f.seconds_left / (f.planned - f.done) if f.planned > f.done else self.steps * self.step_seconds
        planned = [*range(self.seeds), *range(self.max_seeds, self.max_seeds + self.report_seeds)]
        adaptive = range(max(self.seeds, seed + 1), self.max_seeds)  # empty once the report seeds train
        low = f.seconds_left + models(t for t in planned if t > seed) + self.check_seconds
        more = min(self.more, self.candidates * len(adaptive)) * per + models(adaptive)
        return low, low + more

    def line(self) -> str:
        # the range leads: where orders are close most candidates stay indistinguishable from the leader on val
        # and take every adaptive seed (fresh runs here: 52 of 54 trainings at 2x2, 80 of 84 at 4x4)
        more = f" (up to {self.trainings + self.more} with adaptive seeds)" if self.more else ""
        models = (f" and {self.any_order} any-order model(s) of about {self.any_order_steps} steps at "
                  f"{1000 * self.any_order_step_seconds:.0f} ms/step"
                  if self.any_order else "")
        checks = (f", then {self.checks} check trainings at another patch size (about "
                  f"{duration(self.check_seconds)})" if self.checks else "")
        return (f"expect {span(self.low, self.high)} on this machine: {self.trainings} trainings of about "
                f"{self.steps} steps at {1000 * self.step_seconds:.0f} ms/step{more}{models}{checks}")


def _step_seconds(train, short: int = 5, long: int = 35) -> float:
    """Seconds per step of ``train(max_steps)``: after a warm-up, two short trainings, their difference (setup and
    validation cancel), all in (``OVERHEAD``)."""
    train(short)
    times = []
    for steps in (short, long):
        start = time.perf_counter()
        train(steps)
        times.append(time.perf_counter() - start)
    return OVERHEAD * max(times[1] - times[0], 1e-6) / (long - short)


def _any_order_steps(rows: list[dict], patch: int, cap: int) -> int:
    """Expected steps of an any-order model of ``patch``: the stored ones' median, else the typical."""
    kind, subject, _ = any_order_subject(patch)
    stored = [r["steps"] for r in rows if r["kind"] == kind and r["subject"] == subject]
    return int(min(np.median(stored) if stored else TYPICAL_ANY_ORDER_STEPS.get(patch, TYPICAL_STEPS), cap))


def _unstored(evaluator: Evaluator, schedules: dict[str, Schedule], seeds) -> list[tuple[str, int]]:
    """The (label, seed) trainings of ``schedules`` x ``seeds`` that the store does not hold yet."""
    return [(k, s) for s in seeds for k in schedules
            if evaluator.evaluate(schedules[k], s, cached_only=True) is None]


def _missing_any_order(evaluator: Evaluator, config: TrainConfig, patch: int, seeds: range) -> list[int]:
    """1 for each seed whose any-order model of ``patch`` verification would still have to train."""
    if config.start != "any-order" or config.warm_steps == 0:
        return [0] * len(seeds)
    return [int(evaluator.store is None or evaluator.store.get(evaluator.key(any_order_subject(patch), seed)) is None)
            for seed in seeds]


def _step_times(evaluator: Evaluator, config: TrainConfig, grids: list[np.ndarray], patch: int,
                any_order: bool) -> tuple[float, float]:
    """Seconds per step of one dedicated training of these grids (trained ``evaluator.stack`` at a time) and,
    if ``any_order``, of an any-order model of ``patch``: measured here."""
    from dataclasses import replace

    s, rng = evaluator.splits.train, np.random.default_rng(0)
    k = max(min(evaluator.stack, len(grids)), 1)

    def timed(steps: int) -> None:  # the layout verification trains in, from zero weights (same cost per step)
        probe = replace(config, max_steps=steps, eval_every=steps, lr_drops=0, warm_steps=0)
        models = [MultistageContextModel(Schedule(g), s.channels, s.prior_channels, config.model).to(evaluator.device)
                  for g in grids[:k]]
        train_stacked(models, evaluator.splits, probe, [int(rng.integers(1000)) for _ in models], evaluator.device)

    def timed_any(steps: int) -> None:
        probe = replace(config, max_steps=steps, eval_every=steps, lr_drops=0)
        model = AnyOrderContextModel(patch, s.channels, s.prior_channels, config.model).to(evaluator.device)
        train_any_order(model, evaluator.splits, probe, 0, evaluator.device, validation_schedules=1)

    return _step_seconds(timed) / k, _step_seconds(timed_any) if any_order else 0.0


def estimate(evaluator: Evaluator, candidates: dict[str, Schedule], seeds: int, max_seeds: int,
             report_seeds: int, checks: dict[str, Schedule] | None = None) -> Estimate:
    """The expected duration of ``verify(candidates, evaluator, seeds, max_seeds, report_seeds)``, measured here,
    and of the ``checks`` schedules (another patch size) trained with the report seeds after it."""
    config = evaluator.config.decided(evaluator.splits)
    planned = [*range(seeds), *range(max_seeds, max_seeds + report_seeds)]
    todo = _unstored(evaluator, candidates, planned)
    more = len(_unstored(evaluator, candidates, range(seeds, max_seeds)))  # a resumed run has some of them stored
    n = next(iter(candidates.values())).patch
    rows = evaluator.store.rows() if evaluator.store is not None else []
    stored = [r["steps"] for r in rows if r["kind"] == "schedule" and r["estimator"] == "dedicated"]
    steps = int(min(np.median(stored) if len(stored) >= 3 else TYPICAL_STEPS, config.max_steps))
    any_steps = _any_order_steps(rows, n, config.max_steps)
    missing = _missing_any_order(evaluator, config, n, range(max_seeds + report_seeds))
    any_order = sum(missing[s] for s in planned)
    more_any_order = sum(missing[seeds:max_seeds])
    grids = [candidates[label].array() for label, _ in todo] or [next(iter(candidates.values())).array()]
    per_step, any_step = _step_times(evaluator, config, grids, n, any(missing))
    low = steps * len(todo) * per_step + any_steps * any_order * any_step
    high = steps * (len(todo) + more) * per_step + any_steps * (any_order + more_any_order) * any_step
    check_todo = _unstored(evaluator, checks or {}, range(max_seeds, max_seeds + report_seeds))
    check_seconds = 0.0
    if check_todo:
        m = next(iter(checks.values())).patch
        check_missing = _missing_any_order(evaluator, config, m, range(max_seeds, max_seeds + report_seeds))
        check_step, check_any_step = _step_times(evaluator, config, [checks[k].array() for k, _ in check_todo], m,
                                                 any(check_missing))
        check_seconds = (steps * len(check_todo) * check_step
                         + _any_order_steps(rows, m, config.max_steps) * sum(check_missing) * check_any_step)
    return Estimate(len(todo), more, any_order, more_any_order, steps, per_step, any_steps, any_step,
                    low + check_seconds, high + check_seconds, len(check_todo), check_seconds, seeds, max_seeds,
                    report_seeds, len(candidates), tuple(missing))

"""Verdicts with known truth: the whole of ``verify`` run on simulated trainings, to count its errors.

Real trainings take minutes; the statistics of a verdict need thousands of
runs. A ``World`` draws, for every simulated run, what a run's trainings
would show, with the structure measured on the built-in latents:

    rate of candidate k, seed s, image i (val or test)
        = image_i                       shared by every candidate: cancels in a pair
        + effect_k                      the truth (0 under the null)
        + interaction_k,i               this image suits this order: the image term of a difference
        + common_s                      the seed's batches and start, shared by every candidate of it
        + luck_k,s                      the model's training noise: sd drawn per candidate, so pairs differ
                                        (per-pair sd 0.0005-0.0023 bits as measured); on val and on test
                                        correlated by rho_k (0.3-0.7 as measured)
        + wobble_k,s,i                  seed-by-image noise

``SimulatedEvaluator`` answers ``evaluate_many`` with such evaluations, so
``verify`` itself, adaptive seeds, choice on val, report seeds, families
and all, is what is measured. ``simulate`` counts its family-wise false
claims (any verdict against the truth: a candidate called worse or better
than the leader when their true rates are equal, or the wrong way round)
and its power where some candidates are truly worse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..schedule import Schedule
from .record import Evaluation
from .verify import Verified, conclude, verify


@dataclass(frozen=True)
class World:
    """What simulated trainings look like (bits per latent element); defaults as measured on the built-in
    latents at 4x4 (see the module docstring), with the test and val photos of the protocol."""

    candidates: int = 11  # the leader and 10 comparisons, as in the committed runs
    val_images: int = 12
    test_images: int = 48
    rate: float = 0.95
    image_sd: float = 0.15
    interaction_sd: float = 0.0025
    common_sd: float = 0.002
    luck_sd: tuple[float, float] = (0.0004, 0.0016)  # log-uniform per candidate
    correlation: tuple[float, float] = (0.3, 0.7)  # uniform per candidate
    wobble_sd: float = 0.0005
    #: true relative effects of candidates 1, 2, ... (candidate 0 and the rest: 0)
    effects: tuple[float, ...] = ()


@dataclass
class _Drawn:
    """One simulated run's fixed parts: images, truths, per-candidate noise levels."""

    elements: dict[str, np.ndarray]
    image: dict[str, np.ndarray]
    effect: np.ndarray
    interaction: dict[str, np.ndarray]
    luck: np.ndarray
    rho: np.ndarray


class SimulatedEvaluator:
    """Stands in for ``Evaluator`` in ``verify``: each (label, seed) is a draw of ``World``, the same every time
    it is asked for (a store would give the same)."""

    stack = 1

    @dataclass(frozen=True)
    class _Config:
        warm_steps: int = 0

    config = _Config()

    def __init__(self, world: World, labels: list[str], seed: int):
        self.world, self.labels, self.seed = world, labels, seed
        rng = np.random.default_rng([seed, 0])
        w, k = world, len(labels)
        sizes = {s: n for s, n in (("val", w.val_images), ("test", w.test_images))}
        effect = np.zeros(k)
        effect[1:1 + len(w.effects)] = np.asarray(w.effects) * w.rate
        self.drawn = _Drawn(
            elements={s: rng.integers(1500, 3000, n) for s, n in sizes.items()},
            image={s: w.rate + w.image_sd * rng.standard_normal(n) for s, n in sizes.items()},
            effect=effect,
            interaction={s: w.interaction_sd * rng.standard_normal((k, n)) for s, n in sizes.items()},
            luck=np.exp(rng.uniform(*np.log(w.luck_sd), k)),
            rho=rng.uniform(*w.correlation, k))
        self._cache: dict[tuple[str, int], Evaluation] = {}

    def evaluate(self, schedule: Schedule, seed: int = 0, cached_only: bool = False) -> None:
        """None: nothing is stored, every draw counts as a training (``verify`` asks ``cached_only`` for its
        pace; the draws themselves are by label, through ``evaluate_many``)."""
        return None

    def evaluate_many(self, pairs: list[tuple[Schedule, int]], labels: list[str]) -> list[Evaluation]:
        return [self._evaluation(label, seed) for (_, seed), label in zip(pairs, labels)]

    def _evaluation(self, label: str, seed: int) -> Evaluation:
        if (label, seed) in self._cache:
            return self._cache[label, seed]
        d, w, k = self.drawn, self.world, self.labels.index(label)
        common = w.common_sd * np.random.default_rng([self.seed, 1, seed]).standard_normal()
        rng = np.random.default_rng([self.seed, 2, seed, k])
        z_val, z_other = rng.standard_normal(2)
        luck = {"val": d.luck[k] * z_val,
                "test": d.luck[k] * (d.rho[k] * z_val + np.sqrt(1 - d.rho[k] ** 2) * z_other)}
        bits = {}
        for s in ("val", "test"):
            rate = (d.image[s] + d.effect[k] + d.interaction[s][k] + common + luck[s]
                    + w.wobble_sd * rng.standard_normal(len(d.image[s])))
            bits[s] = rate * d.elements[s]
        # arrays where a stored evaluation holds lists: the statistics read either, arrays faster
        ev = Evaluation("simulated", 2, None, None, seed, float(np.sum(bits["test"]) / d.elements["test"].sum()),
                        None, bits["test"], d.elements["test"], [], [], [], 0, 0, 0.0, {}, "simulated",
                        val_bits_per_latent=float(np.sum(bits["val"]) / d.elements["val"].sum()),
                        val_image_bits=bits["val"], val_image_elements=d.elements["val"])
        self._cache[label, seed] = ev
        return ev


@dataclass
class Tally:
    """What ``simulate`` counted over its runs."""

    runs: int = 0
    family_errors: int = 0  # runs with at least one verdict against the truth
    false_worse: int = 0  # comparisons calling a candidate worse than the leader when it is not
    comparisons: int = 0
    detected: dict[int, int] = field(default_factory=dict)  # truly worse candidate -> runs calling it worse
    trainings: list[int] = field(default_factory=list)  # trainings per run
    #: the same runs reported on the seeds that chose (no report seeds): what selection leaks
    leaky_family_errors: int = 0

    @property
    def family_wise_error(self) -> float:
        return self.family_errors / max(self.runs, 1)

    @property
    def leaky_family_wise_error(self) -> float:
        return self.leaky_family_errors / max(self.runs, 1)

    def power(self, candidate: int) -> float:
        return self.detected.get(candidate, 0) / max(self.runs, 1)

    def __add__(self, other: Tally) -> Tally:
        detected = {k: self.detected.get(k, 0) + other.detected.get(k, 0) for k in {*self.detected, *other.detected}}
        return Tally(self.runs + other.runs, self.family_errors + other.family_errors,
                     self.false_worse + other.false_worse, self.comparisons + other.comparisons, detected,
                     self.trainings + other.trainings, self.leaky_family_errors + other.leaky_family_errors)


def _errors(v: Verified, effect: np.ndarray, labels: list[str]) -> tuple[int, int]:
    """(verdicts against the truth, of them false "worse") in one concluded run."""
    lead = effect[labels.index(v.winner)]
    wrong = worse = 0
    for label, c in v.comparisons.items():
        truth = lead - effect[labels.index(label)]  # leader - this, as c.difference
        if (c.verdict == "better" and truth >= 0) or (c.verdict == "worse" and truth <= 0):
            wrong += 1
            worse += c.verdict == "better"
    return wrong, worse


def simulate(world: World, runs: int, seeds: int = 2, max_seeds: int = 4, report_seeds: int = 2,
             first: int = 0) -> Tally:
    """``verify`` on ``runs`` simulated runs of ``world`` (run ``r`` drawn from seed ``first + r``)."""
    labels = [f"c{k}" for k in range(world.candidates)]
    schedules = {label: Schedule.named("raster", 2) for label in labels}  # verify needs schedules, not their kind
    tally = Tally()
    for r in range(first, first + runs):
        evaluator = SimulatedEvaluator(world, labels, r)
        v = verify(schedules, evaluator, seeds, max_seeds, report_seeds)  # type: ignore[arg-type]
        effect = evaluator.drawn.effect
        wrong, worse = _errors(v, effect, labels)
        tally.runs += 1
        tally.family_errors += wrong > 0
        tally.false_worse += worse
        tally.comparisons += len(v.comparisons)
        tally.trainings.append(sum(len(e) for e in v.evaluations.values()))
        for k in np.flatnonzero(effect > 0):
            tally.detected[int(k)] = tally.detected.get(int(k), 0) + (v.comparisons.get(labels[k]) is not None and
                                                                      v.comparisons[labels[k]].verdict == "better")
        leaky = conclude(schedules, {k: v.selecting(k) for k in labels})
        tally.leaky_family_errors += _errors(leaky, effect, labels)[0] > 0
    return tally


def _part(job: tuple[World, int, int, int, int, int]) -> Tally:
    world, runs, first, seeds, max_seeds, report_seeds = job
    return simulate(world, runs, seeds, max_seeds, report_seeds, first)


def simulate_many(world: World, runs: int, seeds: int = 2, max_seeds: int = 4, report_seeds: int = 2,
                  workers: int = 2) -> Tally:
    """``simulate`` split over ``workers`` processes (the same runs, the same counts)."""
    from concurrent.futures import ProcessPoolExecutor

    bounds = np.linspace(0, runs, workers + 1).astype(int)
    jobs = [(world, int(b - a), int(a), seeds, max_seeds, report_seeds) for a, b in zip(bounds, bounds[1:])]
    with ProcessPoolExecutor(workers) as pool:
        return sum(pool.map(_part, jobs), Tally())

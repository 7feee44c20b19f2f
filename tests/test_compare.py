"""Paired comparison of evaluations: intervals that carry training noise, corrected for many comparisons."""

import math

import numpy as np
import pytest

from ordersearch.errors import OrdersearchError
from ordersearch.evaluation import Evaluation, compare, pooled_seed_variance, rate_interval


def ev(rates, seed=0, data="d", elements=None, val=None):
    elements = elements or [1000] * len(rates)
    bits = [r * n for r, n in zip(rates, elements)]
    e = Evaluation("dedicated", 2, [[0, 1], [2, 3]], None, seed, float(np.average(rates, weights=elements)),
                   None, bits, elements, [[0.0] * 2] * 2, [0.0] * 4, [], 1, 1, 0.0, {}, data)
    if val is not None:
        e.val_image_bits, e.val_image_elements = [v * 100 for v in val], [100] * len(val)
    return e


BASE = np.array([2.0, 2.5, 1.8, 3.0, 2.2])


def test_clear_difference_is_better_or_worse():
    a = [ev(BASE - 0.05 + 0.001 * s, seed=s) for s in range(3)]
    b = [ev(BASE + np.array([0.001, -0.002, 0.0, 0.002, -0.001]) - 0.001 * s, seed=s) for s in range(3)]
    c = compare(a, b)
    assert c.verdict == "better" and c.high < 0 and c.difference == pytest.approx(-0.05, abs=0.004)
    assert compare(b, a).verdict == "worse"
    assert "A is better" in str(c) and "5 test images and 3 paired seeds" in str(c)


def test_noise_is_indistinguishable():
    base = np.array([1.6, 2.9, 2.2, 1.9, 2.4, 2.7, 1.7, 2.0])
    wobble = np.array([0.05, -0.04, 0.03, -0.06, 0.02, -0.01, 0.04, -0.02])  # mean +0.00125
    c = compare([ev(base + wobble, seed=s) for s in range(2)], [ev(base, seed=s) for s in range(2)])
    assert c.verdict == "indistinguishable" and c.low < 0 < c.high
    assert c.difference == pytest.approx(wobble.mean())


def test_one_seed_claims_nothing_without_pooled_training_noise():
    """Training noise is unknown from one seed: no verdict, unless the run's pooled variance says how large."""
    one = compare([ev(BASE - 0.05)], [ev(BASE)])
    assert math.isinf(one.low) and one.verdict == "indistinguishable"
    pooled = compare([ev(BASE - 0.05)], [ev(BASE)], pooled=(0.0004, 10))
    assert pooled.verdict == "better" and np.isfinite(pooled.low)
    # an interval from one seed and the pooled noise is not narrower than with the image noise alone
    assert (pooled.high - pooled.low) > 2 * 1.96 * 0.02  # pooled sd 0.02 on one seed


def test_seed_noise_widens_the_interval_and_seeds_pair_by_number():
    base = np.array([2.0, 2.1, 2.2, 2.3])
    a = [ev(base - 0.01, seed=0), ev(base + 0.03, seed=1), ev(base - 0.04, seed=2)]
    b = [ev(base, seed=s) for s in range(3)]
    calm = [ev(base - 0.01, seed=s) for s in range(3)]
    assert compare(a, b).seeds == 3
    assert (compare(a, b).high - compare(a, b).low) > (compare(calm, b).high - compare(calm, b).low)
    assert compare(a[1:], b).seeds == 2  # seeds 1 and 2 are common


def test_many_comparisons_widen_each_interval():
    a = [ev(BASE - 0.01 * s, seed=s) for s in range(3)]
    b = [ev(BASE + 0.002 * s, seed=s) for s in range(3)]
    one, ten = compare(a, b), compare(a, b, comparisons=10)
    assert ten.level == pytest.approx(0.995) and (ten.high - ten.low) > (one.high - one.low)


def simulate(rng, truth, images=12, seeds=3, image_sd=0.3, pair_sd=0.01, seed_sd=0.004):
    """Two schedules on the same images: image effects shared, seed effects and image-level noise not."""
    base = 1.0 + rng.gamma(4, image_sd / 2, images)
    a, b = [], []
    for s in range(seeds):
        a.append(ev(base + truth + rng.normal(0, seed_sd) + rng.normal(0, pair_sd, images), seed=s))
        b.append(ev(base + rng.normal(0, seed_sd) + rng.normal(0, pair_sd, images), seed=s))
    return a, b


@pytest.mark.parametrize("seeds", [2, 3])
def test_intervals_cover_the_truth_about_95_percent_of_the_time(seeds):
    """Simulated data with known truth; the seed variance pooled over 10 other pairs, as run does."""
    rng = np.random.default_rng(0)
    hits, runs = 0, 400
    for _ in range(runs):
        truth = rng.normal(0, 0.005)
        others = [simulate(rng, 0.0, seeds=seeds) for _ in range(10)]
        a, b = simulate(rng, truth, seeds=seeds)
        pooled = pooled_seed_variance(others + [(a, b)])
        c = compare(a, b, pooled=pooled)
        hits += c.low <= truth <= c.high
    assert 0.92 <= hits / runs <= 0.995, hits / runs


def test_rate_interval_carries_seed_noise():
    one = rate_interval([ev(BASE)])
    assert math.isinf(one[1])
    mean, low, high = rate_interval([ev(BASE + 0.01 * s, seed=s) for s in range(3)])
    assert low < mean < high and mean == pytest.approx(BASE.mean() + 0.01)


def test_val_split_is_compared_when_asked():
    a = [ev(BASE, seed=s, val=[1.0, 1.1, 1.2]) for s in range(2)]
    b = [ev(BASE, seed=s, val=[1.5, 1.6, 1.7]) for s in range(2)]
    assert compare(a, b, split="val", pooled=(1e-6, 10)).difference == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="no per-image bits of the 'val' split"):
        compare([ev(BASE)], [ev(BASE)], split="val")


def test_errors():
    with pytest.raises(OrdersearchError, match="same data"):
        compare([ev([1.0, 2.0], data="x")], [ev([1.0, 2.0], data="y")])
    with pytest.raises(OrdersearchError, match="same test images"):
        compare([ev([1.0, 2.0])], [ev([1.0, 2.0], elements=[10, 20])])
    with pytest.raises(OrdersearchError, match="at least one evaluation"):
        compare([], [ev([1.0])])
    with pytest.raises(OrdersearchError, match="share no seed"):
        compare([ev([1.0, 2.0], seed=0)], [ev([1.0, 2.0], seed=1)])


def test_pair_sign_agreement_and_its_seed_ceiling():
    from ordersearch.evaluation import order_agreement, sign_agreement

    truth = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    assert sign_agreement(truth, truth) == 1.0
    assert sign_agreement(truth, {k: -v for k, v in truth.items()}) == 0.0
    assert sign_agreement(truth, {"a": 1.0, "b": 3.0, "c": 2.0}) == 2 / 3  # only the common labels count
    assert np.isnan(sign_agreement(truth, {"a": 1.0}))
    seeds = {0: truth, 1: {**truth, "d": 0.0}}  # the second seed puts d first
    cheap, ceiling = order_agreement(truth, seeds)
    assert cheap == (1.0 + 3 / 6) / 2 and ceiling == 3 / 6
    assert np.isnan(order_agreement(truth, {0: truth})[1])  # one seed: no ceiling
    # three seeds, one of them swaps b and c: each seed against the mean of the other two (leave one out) agrees
    # on 5/6, 1 and 1 of the pairs; one seed against one seed would give (5/6 + 5/6 + 1) / 3 = 8/9
    three = {0: {"a": 1.0, "b": 2.6, "c": 2.4, "d": 4.0}, 1: {"a": 1.2, "b": 2.0, "c": 3.0, "d": 4.0},
             2: {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.1}}
    assert order_agreement(truth, three) == (pytest.approx((5 / 6 + 1 + 1) / 3), pytest.approx(17 / 18))


def test_the_pooled_seed_variance_leaves_out_a_schedule_and_its_translate():
    """They are measured with the same models: their difference says nothing about training noise."""
    def evs(stages, offsets):
        out = [ev(BASE + o, seed=s) for s, o in enumerate(offsets)]
        for e in out:
            e.stages = stages
        return out

    raster, moved, snake = [[0, 1], [2, 3]], [[1, 0], [3, 2]], [[0, 1], [3, 2]]
    a, b = evs(raster, [0.0, 0.01, 0.03]), evs(snake, [0.0, 0.0, 0.0])
    translate = evs(moved, [0.001, 0.02, 0.0])
    only_orders = pooled_seed_variance([(a, b)])
    assert only_orders[1] == 2
    assert pooled_seed_variance([(a, b), (translate, a)]) == only_orders
    assert pooled_seed_variance([(translate, a)]) == (0.0, 0)
    assert pooled_seed_variance([(translate, b)])[1] == 2  # a translate of raster against another order counts

"""Paired comparison of evaluations: interval and verdict."""

import numpy as np
import pytest

from ordersearch.errors import OrdersearchError
from ordersearch.evaluation import Evaluation, compare


def ev(rates, seed=0, data="d", elements=None):
    elements = elements or [1000] * len(rates)
    return Evaluation("dedicated", 2, [[0, 1], [2, 3]], None, seed, float(np.average(rates, weights=elements)),
                      None, [r * n for r, n in zip(rates, elements)], elements, [[0.0] * 2] * 2, [0.0] * 4, [],
                      1, 1, 0.0, {}, data)


def test_clear_difference_is_better_or_worse():
    base = np.array([2.0, 2.5, 1.8, 3.0, 2.2])
    c = compare([ev(base - 0.05)], [ev(base + np.array([0.001, -0.002, 0.0, 0.002, -0.001]))])
    assert c.verdict == "better" and c.high < 0 and c.difference == pytest.approx(-0.05, abs=0.003)
    assert compare([ev(base + 0.05)], [ev(base)]).verdict == "worse"
    assert "A is better" in str(c) and "5 test images" in str(c)


def test_noise_is_indistinguishable():
    base = np.array([1.6, 2.9, 2.2, 1.9, 2.4, 2.7, 1.7, 2.0])
    wobble = np.array([0.05, -0.04, 0.03, -0.06, 0.02, -0.01, 0.04, -0.02])  # mean +0.00125
    c = compare([ev(base + wobble)], [ev(base)])
    assert c.verdict == "indistinguishable" and c.low < 0 < c.high
    assert c.difference == pytest.approx(wobble.mean())


def test_seed_noise_widens_the_interval():
    base = np.array([2.0, 2.1, 2.2, 2.3])
    a = [ev(base - 0.01, seed=0), ev(base + 0.03, seed=1), ev(base - 0.04, seed=2)]
    b = [ev(base, seed=s) for s in range(3)]
    one = compare(a[:1], b[:1])
    three = compare(a, b)
    assert three.seeds == (3, 3)
    assert (three.high - three.low) > (one.high - one.low)


def test_errors():
    with pytest.raises(OrdersearchError, match="same data"):
        compare([ev([1.0, 2.0], data="x")], [ev([1.0, 2.0], data="y")])
    with pytest.raises(OrdersearchError, match="same test images"):
        compare([ev([1.0, 2.0])], [ev([1.0, 2.0], elements=[10, 20])])
    with pytest.raises(OrdersearchError, match="at least one evaluation"):
        compare([], [ev([1.0])])

"""Gaussian random fields: exact samples, and the analytic rate oracle against an ideal coder."""

import itertools
import math

import numpy as np
import pytest
from scipy.special import ndtr

from ordersearch import Schedule
from ordersearch.data import FieldChannel, gaussian_field
from ordersearch.estimators import GaussianOracle, binned_gaussian_entropy
from ordersearch.errors import OrdersearchError

CAUSAL_5x5 = [(dr, dc) for dr in range(-2, 3) for dc in range(-2, 3) if (dr, dc) < (0, 0)]
OFFSET_SETS = [[], [(0, -1)], [(-1, 0), (0, -1), (-1, -1)], [(-1, 1), (1, -1)], CAUSAL_5x5]


def ideal_coder_bits(field, latents, offsets, margin=2):
    """Mean code length of y_0 under N(w @ y_D, std^2) binned: what the oracle promises, on real samples."""
    d, w, std = GaussianOracle(field).predictor(offsets)
    y = np.stack(latents.y).astype(float)
    h, wd = y.shape[2:]
    out = []
    for c in range(y.shape[1]):
        target = y[:, c, margin:h - margin, margin:wd - margin]
        mean = np.zeros_like(target)
        for k, (dr, dc) in enumerate(d):
            mean += w[c, k] * y[:, c, margin + dr:h - margin + dr, margin + dc:wd - margin + dc]
        p = ndtr((target + 0.5 - mean) / std[c]) - ndtr((target - 0.5 - mean) / std[c])
        out.append(float(-np.log2(np.maximum(p, 1e-15)).mean()))
    return np.array(out)


@pytest.mark.parametrize("preset", ["separable", "smooth"])
def test_ideal_coder_matches_analytic_rate_within_1_percent(preset):
    field = gaussian_field(preset)
    latents = field.sample(40, 32, 32, seed=7)  # 40 * 28 * 28 = 31,360 coded positions per channel
    for offsets in OFFSET_SETS:
        analytic = GaussianOracle(field).channel_rates(offsets)
        empirical = ideal_coder_bits(field, latents, offsets)
        assert np.all(np.abs(empirical - analytic) / analytic < 0.01), (offsets, analytic, empirical)


@pytest.mark.parametrize("channel", [
    FieldChannel("separable", 2.0, rho=(0.9, 0.5)),
    FieldChannel("smooth", 2.0, length=(2.0, 0.8), angle=0.6, nugget=0.1),
])
def test_samples_have_the_stated_covariance(channel):
    x = channel.sample(400, 12, 12, np.random.default_rng(0))
    for dr, dc in [(0, 0), (0, 1), (1, 0), (1, 1), (1, -1), (2, 1)]:
        a = x[:, max(dr, 0):12 + min(dr, 0), max(dc, 0):12 + min(dc, 0)]
        b = x[:, max(-dr, 0):12 + min(-dr, 0), max(-dc, 0):12 + min(-dc, 0)]
        empirical = float(np.mean(a * b))
        assert abs(empirical - float(channel.covariance(dr, dc))) < 0.05 * channel.sigma**2, (dr, dc)


def test_samples_are_seeded_integers():
    f = gaussian_field("mixed")
    a, b = f.sample(3, 16, 20, seed=1), f.sample(3, 16, 20, seed=1)
    assert a.fingerprint == b.fingerprint and a.channels == 3 and a.y[0].shape == (3, 16, 20)
    assert f.sample(3, 16, 20, seed=2).fingerprint != a.fingerprint
    assert 2.5 < np.std(np.stack(a.y)) < 5  # a few bits per element, like real latents


def test_binned_entropy():
    # wide Gaussians: the differential entropy; narrow ones: close to the entropy of two bins at most
    assert binned_gaussian_entropy(20.0) == pytest.approx(0.5 * math.log2(2 * math.pi * math.e * 400), abs=1e-3)
    for sigma in (0.02, 0.3, 0.7, 2.0):
        u = (np.arange(20000) + 0.5) / 20000
        k = np.arange(-20, 21)
        p = ndtr((k[None] + 0.5 - u[:, None]) / sigma) - ndtr((k[None] - 0.5 - u[:, None]) / sigma)
        direct = np.mean(-(p * np.log2(np.maximum(p, 1e-300))).sum(1))
        assert binned_gaussian_entropy(sigma) == pytest.approx(direct, rel=2e-3, abs=1e-3)
    assert binned_gaussian_entropy(0.02) < 0.1


def test_more_context_never_costs_more():
    f = gaussian_field("mixed")
    window = [d for d in itertools.product(range(-2, 3), repeat=2) if d != (0, 0)]
    rng = np.random.default_rng(0)
    for _ in range(30):
        small = [d for d in window if rng.random() < 0.3]
        large = small + [d for d in window if d not in small and rng.random() < 0.5]
        assert GaussianOracle(f).rate(large) <= GaussianOracle(f).rate(small) + 1e-12


def test_schedule_rate_is_mean_of_context_rates_and_translation_invariant():
    f = gaussian_field("anisotropic")
    s = Schedule.named("lin2023", 4)
    via_sets = np.mean([GaussianOracle(f).context_rate(c, 4) for c in s.context_sets().values()])
    assert GaussianOracle(f).schedule_rate(s) == pytest.approx(via_sets, rel=1e-12)
    moved = Schedule.from_grid(np.roll(s.array(), (1, 3), axis=(0, 1)))
    assert GaussianOracle(f).schedule_rate(moved) == pytest.approx(GaussianOracle(f).schedule_rate(s), rel=1e-12)
    single, cb, raster = (GaussianOracle(f).schedule_rate(Schedule.named(n, 2)) for n in ("single", "checkerboard", "raster"))
    assert single == pytest.approx(GaussianOracle(f).rate([]))
    assert raster < cb < single


def test_errors():
    with pytest.raises(OrdersearchError, match="unknown Gaussian field preset 'nope'"):
        gaussian_field("nope")
    with pytest.raises(OrdersearchError, match="sigma must be positive"):
        FieldChannel("separable", -1.0)
    with pytest.raises(OrdersearchError, match="rho must lie in"):
        FieldChannel("separable", rho=(1.0, 0.5))
    with pytest.raises(OrdersearchError, match="offset \\(0, 0\\) is the latent itself"):
        GaussianOracle(gaussian_field()).rate([(0, 0)])
    with pytest.raises(OrdersearchError, match="smooth fields are sampled exactly up to 4096 points"):
        gaussian_field("smooth").sample(1, 80, 80)


def _brute_force_image_rate(field, schedule, height, width, phase, kernel=5):
    """Per latent, condition on the decoded window neighbours inside the image through the covariance of the whole
    image (every latent, rounding noise on the neighbours), nothing shared with ``image_rates``."""
    n, h = schedule.patch, kernel // 2
    grid = np.array(schedule.stages)
    r, c = np.divmod(np.arange(height * width), width)
    rates = np.zeros((len(field.channels), height, width))
    for k, ch in enumerate(field.channels):
        cov = ch.covariance(r[:, None] - r[None, :], c[:, None] - c[None, :])
        for i in range(height):
            for j in range(width):
                me = grid[(i + phase[0]) % n, (j + phase[1]) % n]
                seen = [a * width + b for a in range(max(0, i - h), min(height, i + h + 1))
                        for b in range(max(0, j - h), min(width, j + h + 1))
                        if grid[(a + phase[0]) % n, (b + phase[1]) % n] < me]
                x = i * width + j
                var = cov[x, x]
                if seen:
                    kd = cov[x, seen]
                    var -= kd @ np.linalg.solve(cov[np.ix_(seen, seen)] + np.eye(len(seen)) / 12, kd)
                rates[k, i, j] = binned_gaussian_entropy(np.sqrt(var))
    return rates.mean(axis=0)


@pytest.mark.parametrize("name,phase", [("raster", (0, 0)), ("lin2023", (1, 3)), ("checkerboard", (1, 0))])
def test_whole_image_oracle_equals_conditioning_on_the_whole_image(name, phase):
    """The exact whole-image rate (any grid phase, border offsets missing) against a brute-force computation on a
    small image; the interior and edge split as measure() counts them; the edge costs more than the interior."""
    f = gaussian_field(channels=[FieldChannel("smooth", 3.0, length=(2.0, 0.9), angle=0.5, nugget=0.05),
                                 FieldChannel("separable", 2.0, rho=(0.8, 0.5))])
    s = Schedule.named(name, 4)
    got = GaussianOracle(f).image_rates(s, 9, 11, phase)
    brute = _brute_force_image_rate(f, s, 9, 11, phase)
    edge = np.ones((9, 11), dtype=bool)
    edge[2:-2, 2:-2] = False
    assert got.whole == pytest.approx(brute.mean(), rel=1e-9)
    assert got.interior == pytest.approx(brute[~edge].mean(), rel=1e-9)
    assert got.edge == pytest.approx(brute[edge].mean(), rel=1e-9)
    assert got.edge_fraction == pytest.approx(edge.mean())
    assert got.edge > got.interior + 0.05
    # inside, the finite image is the infinite field wherever the window stays in the image
    big = GaussianOracle(f).image_rates(s, 24, 24, phase)
    assert big.interior == pytest.approx(GaussianOracle(f).schedule_rate(s), rel=1e-9)  # 20 rows: each patch row 5x

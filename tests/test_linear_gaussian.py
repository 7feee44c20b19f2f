"""The linear-Gaussian estimator: exact on Gaussian fields, consistent with schedule masks."""

import numpy as np
import pytest
from scipy.stats import kendalltau

from ordersearch import Schedule
from ordersearch.data import gaussian_field
from ordersearch.data.latents import LatentSet
from ordersearch.estimators import GaussianOracle, LinearGaussianEstimator
from ordersearch.schedule import context_from_index, context_index, context_window_masks


@pytest.mark.parametrize("name", ["raster", "lin2023", "quadtree", "checkerboard", "snake"])
def test_window_masks_of_a_schedules_context_sets_are_its_masks(name):
    s = Schedule.named(name, 4)
    codes = s.context_indices()
    masks = s.masks(5)
    from_codes = context_window_masks(codes.ravel(), 4, 5).reshape(4, 4, 5, 5)
    assert (masks == from_codes).all()


def test_oracle_table_equals_the_plain_oracle():
    """The oracle's batched costs (linear-Gaussian solve on the exact covariance) = direct conditioning."""
    oracle = GaussianOracle(gaussian_field("mixed"))
    rng = np.random.default_rng(0)
    codes = rng.choice(np.arange(0, 2**16, 2), size=20, replace=False)
    batched = oracle.costs(codes, 4)
    for code, cost in zip(codes, batched):
        assert cost == pytest.approx(oracle.context_rate(context_from_index(int(code), 4), 4), rel=1e-9)
    for name in ("raster", "lin2023", "checkerboard", "single"):
        s = Schedule.named(name, 4)
        assert oracle.costs(s.context_indices().ravel(), 4).mean() == pytest.approx(oracle.schedule_rate(s), rel=1e-9)


def test_cost_table_layout():
    sc = GaussianOracle(gaussian_field("separable"), 3)
    table = sc.cost_table(2)
    assert table.shape == (16,) and np.isnan(table[1::2]).all() and not np.isnan(table[0::2]).any()
    assert table[0] == pytest.approx(sc.rate([]))
    assert table[context_index([(0, 1)], 2)] == pytest.approx(sc.rate([(0, -1), (0, 1)]))
    # more context never costs more
    for code in range(0, 16, 2):
        for extra in (2, 4, 8):
            assert table[code | extra] <= table[code] + 1e-12


@pytest.mark.parametrize("preset", ["separable", "smooth", "anisotropic"])
def test_empirical_estimator_recovers_the_oracle(preset):
    f = gaussian_field(preset)
    est = LinearGaussianEstimator.from_latents(f.sample(150, 32, 32, seed=5), kernel=5)
    truth, got = GaussianOracle(f).cost_table(3), est.cost_table(3)
    m = ~np.isnan(truth)
    assert np.mean(np.abs(got[m] - truth[m]) / truth[m]) < 0.01
    assert kendalltau(got[m], truth[m]).statistic > 0.95


def test_estimator_on_latents_with_prior_normalizes_and_reports_bad_prior():
    from ordersearch.data import LatentSet
    from ordersearch.errors import OrdersearchError

    rng = np.random.default_rng(0)
    y = rng.integers(-3, 4, size=(4, 2, 12, 12))
    prior = np.concatenate([np.zeros((4, 2, 12, 12)), np.full((4, 2, 12, 12), 2.0)], axis=1)
    est = LinearGaussianEstimator.from_latents(LatentSet.create(y, prior), kernel=3)
    assert est.scales.shape == (2, 32) and np.allclose(est.scales, 2.0)
    assert 2.0 < est.rate([]) < 3.5  # white noise on 7 values: close to log2(7)
    scale_only = LinearGaussianEstimator.from_latents(LatentSet.create(y, prior[:, 2:]), kernel=3)
    assert scale_only.rate([]) == pytest.approx(est.rate([]))  # zero means: the same
    with pytest.raises(OrdersearchError, match=r"\(2 channels\) or \(mean, scale\) \(4\), got 3"):
        LinearGaussianEstimator.from_latents(LatentSet.create(y, prior[:, :3]), kernel=3)


def test_heldout_estimator_ranks_the_2x2_sets_of_a_gaussian_field_and_dp_finds_the_optimum():
    """Held-out code length (fitted on train windows, scored on val): on a Gaussian field the sets rank as
    the exact rates do, and DP over its table finds the analytic optimum; away from the edges its level is
    the oracle's within 1%."""
    from scipy.stats import kendalltau

    from ordersearch.data.latents import LatentSet
    from ordersearch.estimators import GaussianOracle, HeldoutConfig, HeldoutEstimator
    from ordersearch.search import DP, TableScorer

    f = gaussian_field("separable")
    latents = LatentSet.create(f.sample(40, 32, 32, seed=0).y, split_labels=np.array([0] * 30 + [1] * 5 + [2] * 5))
    est = HeldoutEstimator.from_splits(latents.split(), 5, HeldoutConfig(train_windows=16384, val_windows=16384))
    assert est.split == "val"
    table, exact = est.cost_table(2), GaussianOracle(f).cost_table(2, 5)
    codes = np.arange(0, 16, 2)
    assert kendalltau(table[codes], exact[codes])[0] > 0.85
    # edge latents (no neighbours beyond the image) cost more than the infinite field's: the level is a few % up
    assert np.all(table[codes] > exact[codes] * 0.99) and np.all(table[codes] < exact[codes] * 1.1)
    best = DP().search(TableScorer(table, 2)).schedule
    assert GaussianOracle(f).schedule_rate(best) == pytest.approx(
        GaussianOracle(f).schedule_rate(DP().search(TableScorer(exact, 2)).schedule), rel=1e-9)
    again = HeldoutEstimator.from_splits(latents.split(), 5, HeldoutConfig(train_windows=16384, val_windows=16384))
    np.testing.assert_array_equal(again.cost_table(2)[codes], table[codes])  # deterministic: no SGD noise



def test_heldout_estimator_gives_the_oracle_rates_of_a_gaussian_field_away_from_its_edges():
    """Sampled only where the window lies inside the field (``border``), with enough val data that the
    sample's own statistics do not move the rates, the held-out code lengths are the infinite field's within
    1%. One channel: the parameters are shared across channels, and without a prior nothing tells two
    channels of different statistics apart (on the two-channel preset that costs up to 1.3%)."""
    from ordersearch.data.gaussian import GaussianField
    from ordersearch.data.latents import LatentSet
    from ordersearch.estimators import GaussianOracle, HeldoutConfig, HeldoutEstimator

    f = GaussianField(gaussian_field("separable").channels[:1], name="one channel")
    latents = LatentSet.create(f.sample(100, 64, 64, seed=0).y, split_labels=np.array([0] * 50 + [1] * 45 + [2] * 5))
    est = HeldoutEstimator.from_splits(latents.split(), 5, HeldoutConfig(train_windows=16384, val_windows=32768,
                                                                         border=2))
    codes = np.arange(0, 16, 2)
    level = est.cost_table(2)[codes] / GaussianOracle(f).cost_table(2, 5)[codes] - 1
    assert np.all(np.abs(level) < 0.01), level


def test_heldout_refuses_a_prior_that_is_not_one_scale_per_channel():
    from ordersearch.data.latents import LatentSet
    from ordersearch.errors import OrdersearchError
    from ordersearch.estimators import HeldoutEstimator

    rng = np.random.default_rng(0)
    y = [rng.integers(-3, 4, (2, 12, 12)) for _ in range(6)]
    prior = [np.ones((4, 12, 12), dtype=np.float32) for _ in range(6)]  # (mean, scale) per channel
    latents = LatentSet.create(y, prior, split_labels=np.array([0, 0, 0, 0, 1, 2]))
    with pytest.raises(OrdersearchError, match="one scale per channel"):
        HeldoutEstimator.from_splits(latents.split(), 5)


def test_a_channel_that_is_all_zeros_gives_a_finite_table():
    """A codec's latents of a few small images often leave whole channels at zero (a singular covariance):
    the table stays defined."""
    rng = np.random.default_rng(0)
    y = [np.stack([rng.integers(-3, 4, (10, 12)), np.zeros((10, 12), dtype=int)]) for _ in range(4)]
    est = LinearGaussianEstimator.from_latents(LatentSet.create(y), kernel=5)
    table = est.cost_table(2)
    assert np.isfinite(table[np.arange(0, 16, 2)]).all()


@pytest.mark.parametrize("name", ["linear-gaussian", "heldout", "dedicated-set"])
def test_an_estimator_fitted_by_name_is_its_registered_class_and_scores_the_split_the_class_states(name):
    """search.md names the split of a cached table from the registered class, before any fitting: the fitted
    estimator must agree (the shared scorer, a minute of training, is checked in tests/test_shared.py)."""
    from ordersearch.data.latents import LatentSet
    from ordersearch.errors import OrdersearchError
    from ordersearch.estimators import ESTIMATORS, fit_estimator
    from ordersearch.evaluation import Evaluator

    f = gaussian_field("separable")
    latents = LatentSet.create(f.sample(12, 16, 16, seed=0).y, split_labels=np.array([0] * 8 + [1] * 2 + [2] * 2))
    est = fit_estimator(name, Evaluator(latents, device="cpu", progress=False), 2, seed=1)
    assert type(est) is ESTIMATORS[name] and est.name == name and est.split == ESTIMATORS[name].split
    assert est.split == ("train" if name == "linear-gaussian" else "val")
    with pytest.raises(OrdersearchError, match="unknown estimator 'oracle'"):
        fit_estimator("oracle", Evaluator(latents, device="cpu", progress=False), 2)

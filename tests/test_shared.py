"""The shared order-agnostic scorer: its two evaluation paths agree, and it learns f(C) on Gaussian fields."""

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from ordersearch import Schedule
from ordersearch.data.gaussian import gaussian_field
from ordersearch.data.latents import LatentSet, Splits
from ordersearch.errors import OrdersearchError
from ordersearch.estimators import GaussianOracle, SharedConfig, Windows, fit_shared
from ordersearch.models import SharedScorer
from ordersearch.schedule import context_window_masks


def field_splits(preset="mixed", train=48):
    f = gaussian_field(preset)
    return f, Splits(f.sample(train, 32, 32, seed=0), f.sample(8, 32, 32, seed=1), f.sample(16, 32, 32, seed=2))


def test_windows_are_the_zero_padded_neighbourhoods():
    rng = np.random.default_rng(0)
    y = [rng.integers(-5, 6, (2, 7, 9)), rng.integers(-5, 6, (2, 5, 6))]
    prior = [rng.uniform(0.5, 2, (2, 7, 9)), rng.uniform(0.5, 2, (2, 5, 6))]
    latents = LatentSet.create(y, prior)
    for scale in (False, True):
        win = Windows(latents, 5, scale)
        img, r, c = win.sample(50, rng)
        w, centre, p = win.gather(img, r, c)
        for j in range(50):
            i = img[j]
            u = y[i] / np.maximum(prior[i], 0.11) if scale else y[i]
            padded = np.pad(u, ((0, 0), (2, 2), (2, 2)))
            expect = padded[:, r[j]:r[j] + 5, c[j]:c[j] + 5].reshape(2, 25)
            np.testing.assert_allclose(w[j].numpy(), expect, rtol=1e-6)
            assert centre[j].tolist() == y[i][:, r[j], c[j]].tolist()
            np.testing.assert_allclose(p[j].numpy(), prior[i][:, r[j], c[j]], rtol=1e-6)


def test_table_path_equals_the_per_window_forward():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    latents = LatentSet.create(rng.integers(-5, 6, (4, 3, 10, 10)), rng.uniform(0.3, 3, (4, 3, 10, 10)))
    model = SharedScorer(3, 3, 5, hidden=16, prior_scale=True)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    win = Windows(latents, 5, True)
    w, c, p = (t.double() for t in win.gather(*win.sample(64, rng)))
    model = model.double()  # the two paths sum in different orders: compare them without float32 rounding
    codes = np.array([0, 2, 6, 14, 510, 256, 130])
    masks = torch.from_numpy(context_window_masks(codes, 3, 5)).double().reshape(len(codes), -1)
    with torch.no_grad():
        batched = model._likelihood(model.first_layer_terms(w), masks, c, p)
        for s in range(len(codes)):
            single = model(w, masks[s].expand(len(w), -1), c, p)
            torch.testing.assert_close(batched[s], single, rtol=1e-10, atol=1e-12)


def test_cost_table_shape_and_schedule_rate():
    field, splits = field_splits(train=8)
    est = fit_shared(splits, 2, SharedConfig(max_steps=20, eval_every=10, table_windows=256), device="cpu",
                     progress=False)
    table = est.cost_table(2)
    assert table.shape == (16,) and np.isnan(table[1::2]).all() and np.isfinite(table[::2]).all()
    from ordersearch.estimators import ESTIMATORS

    assert est.split == ESTIMATORS["shared"].split == "val"  # search.md reads the registered class's
    s = Schedule.named("raster", 2)
    assert est.schedule_rate(s) == pytest.approx(np.mean(table[s.context_indices().ravel()]), rel=1e-9)
    assert est.context_rate([(1, 1)], 2) == pytest.approx(table[8], rel=1e-9)


def test_empty_split_is_refused():
    field, (train, val, test) = field_splits(train=4)
    empty = LatentSet.create(np.zeros((1, 3, 8, 8), dtype=int)).subset([])
    with pytest.raises(OrdersearchError, match="the val split is empty"):
        fit_shared(Splits(train, empty, test), 2, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("patch", [2, 3])
def test_cost_table_matches_the_gaussian_oracle(patch):
    """Within 3% mean absolute relative error over all sets; Kendall tau >= 0.9 over the 256 3x3 sets."""
    field, splits = field_splits()
    est = fit_shared(splits, patch, SharedConfig(score_border=2, table_windows=16384), progress=False)
    table = est.cost_table(patch)
    truth = GaussianOracle(field).cost_table(patch)
    even = ~np.isnan(truth)
    rel = np.abs(table[even] - truth[even]) / truth[even]
    assert rel.mean() < 0.03, rel.mean()
    if patch == 3:
        assert kendalltau(table[even], truth[even]).statistic >= 0.9

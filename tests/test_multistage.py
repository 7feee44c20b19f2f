"""The multistage context model: parallel pass == stage-by-stage pass, and causality."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ordersearch import Schedule
from ordersearch.errors import OrdersearchError
from ordersearch.models.multistage import ModelConfig, MultistageContextModel


@st.composite
def grouped(draw):
    n = draw(st.sampled_from([1, 2, 3, 4]))
    s = draw(st.integers(1, n * n))
    labels = list(range(s)) + draw(st.lists(st.integers(0, s - 1), min_size=n * n - s, max_size=n * n - s))
    return Schedule.from_grid(np.array(draw(st.permutations(labels))).reshape(n, n))


def random_latents(seed, c=3, p=2, h=9, w=11, scale=False):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(-4, 5, (2, c, h, w), generator=g).float()
    prior = torch.randn(2, p, h, w, generator=g) if p else None
    if scale:
        prior = 0.05 + prior.abs() * 3  # a hyperprior scale, some below the scale bound
    return y, prior


#: prior kinds: none, 2 feature channels, or one scale per latent channel (read with prior_scale)
PRIORS = {"none": (0, False), "features": (2, False), "scale": (3, True)}


@settings(max_examples=30, deadline=None)
@given(grouped(), st.sampled_from([3, 5]), st.sampled_from([1, 3]), st.integers(0, 10_000), st.sampled_from(list(PRIORS)))
def test_parallel_and_stagewise_give_the_same_likelihoods(schedule, kernel, mixture, seed, prior_kind):
    torch.manual_seed(seed)
    p, scale = PRIORS[prior_kind]
    model = MultistageContextModel(schedule, 3, p, ModelConfig(kernel=kernel, mixture=mixture, prior_scale=scale))
    torch.nn.init.normal_(model.weight)  # trained weights are not zero
    torch.nn.init.normal_(model.edge)  # nor are those of the outside channel
    y, prior = random_latents(seed, p=p, scale=scale)
    # the two paths sum in different orders: compare them without float32 rounding (with one torch thread a
    # float32 comparison of these large random weights missed rtol 1e-5 by 1.5e-5, the same before and after)
    model, y, prior = model.double(), y.double(), None if prior is None else prior.double()
    with torch.no_grad():
        a, b = model(y, prior), model.stagewise(y, prior)
    assert a.shape == y.shape
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(grouped(), st.sampled_from([3, 5]), st.integers(0, 4), st.integers(0, 10_000), st.sampled_from(list(PRIORS)))
def test_border_pass_is_the_inner_part_of_the_full_pass(schedule, kernel, extra, seed, prior_kind):
    """Training scores crops without computing their border: the same numbers as scoring all and cropping."""
    torch.manual_seed(seed)
    p, scale = PRIORS[prior_kind]
    model = MultistageContextModel(schedule, 3, p, ModelConfig(kernel=kernel, prior_scale=scale))
    torch.nn.init.normal_(model.weight)
    torch.nn.init.normal_(model.edge)
    y, prior = random_latents(seed, p=p, h=14, w=15, scale=scale)
    border = kernel // 2 + extra
    with torch.no_grad():
        full = model(y, prior)[:, :, border:14 - border, border:15 - border]
        inner = model(y, prior, border=border)
    assert torch.allclose(full, inner, rtol=1e-5, atol=1e-7)
    with pytest.raises(OrdersearchError, match="border"):
        model(y, prior, border=kernel // 2 - 1 if kernel // 2 > 1 else 7)


@settings(max_examples=25, deadline=None)
@given(grouped(), st.integers(0, 10_000), st.sampled_from(["features", "scale"]))
def test_changing_a_later_latent_never_changes_earlier_parameters(schedule, seed, prior_kind):
    torch.manual_seed(seed)
    p, scale = PRIORS[prior_kind]
    model = MultistageContextModel(schedule, 3, p, ModelConfig(kernel=5, prior_scale=scale))
    torch.nn.init.normal_(model.weight)
    y, prior = random_latents(seed, p=p, scale=scale)
    stage_map = torch.from_numpy(schedule.stage_map(9, 11))
    rng = np.random.default_rng(seed)
    i, j = int(rng.integers(9)), int(rng.integers(11))
    changed = y.clone()
    changed[:, :, i, j] += 7
    with torch.no_grad():
        for step in range(int(stage_map[i, j]) + 1):  # every step up to and including the changed latent's
            before = model.parameters_at_stage(y, prior, step)
            after = model.parameters_at_stage(changed, prior, step)
            assert torch.equal(before, after), (step, i, j)
        # and the parallel pass agrees: likelihoods of latents decoded no later than (i, j) only move at (i, j)
        la, lb = model(y, prior), model(changed, prior)
    same_or_earlier = (stage_map <= stage_map[i, j])
    same_or_earlier[i, j] = False
    assert torch.equal(la[:, :, same_or_earlier], lb[:, :, same_or_earlier])


def test_context_really_used_when_decoded():
    """A neighbour decoded earlier does change the parameters (the masks are not all empty)."""
    torch.manual_seed(0)
    s = Schedule.named("raster", 2)
    model = MultistageContextModel(s, 2, 0, ModelConfig(kernel=3))
    assert not model.weight.any()  # starts as the prior-only model
    torch.nn.init.normal_(model.weight)
    y = torch.zeros(1, 2, 4, 4)
    changed = y.clone()
    changed[0, 0, 0, 0] = 3  # stage 0; (0, 1) at stage 1 sees it
    with torch.no_grad():
        a, b = model.parameters_at_stage(y, None, 1), model.parameters_at_stage(changed, None, 1)
    assert not torch.equal(a[..., 0, 1], b[..., 0, 1])


def test_bad_inputs():
    model = MultistageContextModel(Schedule.named("raster", 4), 3, 2)
    with pytest.raises(OrdersearchError, match=r"expected y of shape \(N, 3, H, W\), got \(1, 4, 8, 8\)"):
        model(torch.zeros(1, 4, 8, 8), torch.zeros(1, 2, 8, 8))
    with pytest.raises(OrdersearchError, match="latent of 3x8 is smaller than the 4x4 patch"):
        model(torch.zeros(1, 3, 3, 8), torch.zeros(1, 2, 3, 8))
    with pytest.raises(OrdersearchError, match="model expects 2 prior channels, got 0"):
        model(torch.zeros(1, 3, 8, 8))
    with pytest.raises(OrdersearchError, match="does not fit y"):
        model(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 7))
    with pytest.raises(OrdersearchError, match="prior_scale needs one prior scale per latent channel"):
        MultistageContextModel(Schedule.named("raster", 2), 3, 2, ModelConfig(prior_scale=True))(
            torch.zeros(1, 3, 4, 4), torch.ones(1, 2, 4, 4))
    with pytest.raises(OrdersearchError, match="mixture must be at least 1"):
        MultistageContextModel(Schedule.named("raster", 2), 3, 0, ModelConfig(mixture=0))


def test_prior_is_scale_convention():
    from ordersearch.models.multistage import prior_is_scale

    assert prior_is_scale(3, [np.ones((3, 4, 4))])
    assert not prior_is_scale(3, [np.ones((2, 4, 4))])  # features, not one scale per channel
    assert not prior_is_scale(3, [np.ones((3, 4, 4)), -np.ones((3, 4, 4))])  # scales are positive
    assert not prior_is_scale(3, None)


@st.composite
def one_patch_schedules(draw):
    """2-3 grouped schedules of one patch size (what a stack holds)."""
    n = draw(st.sampled_from([1, 2, 3, 4]))
    out = []
    for _ in range(draw(st.integers(2, 3))):
        s = draw(st.integers(1, n * n))
        labels = list(range(s)) + draw(st.lists(st.integers(0, s - 1), min_size=n * n - s, max_size=n * n - s))
        out.append(Schedule.from_grid(np.array(draw(st.permutations(labels))).reshape(n, n)))
    return out


@settings(max_examples=30, deadline=None)
@given(one_patch_schedules(), st.sampled_from([3, 5]), st.sampled_from([1, 2]), st.integers(0, 3), st.integers(0, 2),
       st.integers(0, 10_000), st.sampled_from(list(PRIORS)))
def test_packed_models_give_the_dense_models_bits(schedules, kernel, mixture, extra, keep, seed, prior_kind):
    """The CPU's training layout (decoded offsets only, one row per latent) computes the dense models' bits,
    with and without a crop border and a score border, and hands the same weights back."""
    from ordersearch.models import PackedContextModels, StackedContextModels, bits

    torch.manual_seed(seed)
    p, scale = PRIORS[prior_kind]
    config = ModelConfig(kernel=kernel, mixture=mixture, prior_scale=scale)
    models = [MultistageContextModel(s, 3, p, config).double() for s in schedules]
    for m in models:
        torch.nn.init.normal_(m.weight)
        torch.nn.init.normal_(m.edge)
        m.weight.data *= m.masks  # what training leaves in the dense weights: nothing outside the masks
        m.edge.data *= m.masks
    packed = PackedContextModels(models)
    k = len(models)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(-4, 5, (k, 2, 3, 14, 15), generator=g).double()
    prior = None if not p else 0.05 + torch.rand(k, 2, p, 14, 15, generator=g, dtype=torch.float64) * 3
    border = 0 if not extra else kernel // 2 + extra - 1
    outside = torch.zeros(k, 2, 1, 14, 15, dtype=torch.float64)
    outside[:, 0, :, :3] = 1  # the first crop lies past the image at the top: a training crop at the border
    y = y * (1 - outside)
    size = (14 - 2 * border, 15 - 2 * border)
    weight = torch.rand(k, 2, 1, *size, generator=g, dtype=torch.float64)
    with torch.no_grad():
        got = packed.scored_bits(y, prior, border, keep, outside)
        weighted = packed.scored_bits(y, prior, border, keep, outside, weight)
        for i, m in enumerate(models):
            full = bits(m(y[i], None if prior is None else prior[i], border, outside=outside[i]))
            want = full[..., keep:full.shape[-2] - keep, keep:full.shape[-1] - keep].flatten()
            assert got[i].shape == want.shape
            assert torch.allclose(got[i].sort().values, want.sort().values, rtol=1e-9, atol=1e-12)
            full = full * weight[i]
            assert torch.allclose(weighted[i].sum(), full[..., keep:full.shape[-2] - keep,
                                                         keep:full.shape[-1] - keep].sum(), rtol=1e-9)
        # the GPU's layout (grouped convolutions) computes the same bits
        stacked = StackedContextModels(models).scored_bits(y, prior, border, keep, outside, weight)
        assert torch.allclose(stacked.sum(1), weighted.sum(1), rtol=1e-9)
    back = packed.unstacked([MultistageContextModel(s, 3, p, config).double() for s in schedules])
    for a, b in zip(models, back):
        assert torch.equal(a.state_dict()["weight"], b.state_dict()["weight"])
        assert all(torch.equal(a.state_dict()[n], t) for n, t in b.state_dict().items())


@pytest.mark.parametrize("slack", [0, 1, 3])
def test_weighted_training_crops_measure_every_latent_alike(slack):
    """Over every window ``windows`` can draw (each with its probability), the mean weighted value of a crop is the
    mean over all latents of the split: edge latents count as often as they are measured, past the image nothing."""
    from ordersearch.data.latents import LatentSet
    from ordersearch.evaluation.measure import OnDevice

    rng = np.random.default_rng(0)
    ys = [rng.integers(-9, 9, (1, 7, 9)), rng.integers(-9, 9, (1, 5, 5)), rng.integers(-9, 9, (1, 3, 8))]
    split = OnDevice(LatentSet.create(ys), torch.device("cpu"))
    size, border = 4, 2
    values = [torch.from_numpy(rng.normal(size=y.shape[1:])).float() for y in ys]  # any function of the latent
    expected, total = 0.0, 0.0
    sizes = [(y.shape[1] - size + 1 + 2 * slack, y.shape[2] - size + 1 + 2 * slack) for y in ys]
    eligible = [i for i, y in enumerate(ys) if min(y.shape[1:]) >= size]
    weight_of = sum(sizes[i][0] * sizes[i][1] for i in eligible)
    for i in eligible:
        v = torch.nn.functional.pad(values[i], (slack, slack, slack, slack))
        for r in range(-slack, sizes[i][0] - slack):
            for c in range(-slack, sizes[i][1] - slack):
                crops = split.cut([(i, r, c)], size, border, slack)
                crop = v[r + slack:r + slack + size, c + slack:c + slack + size]
                expected += (crops.weight[0, 0] * crop).mean().item() / weight_of
                rows, cols = torch.arange(r - border, r + size + border), torch.arange(c - border, c + size + border)
                past = ~(((rows >= 0) & (rows < ys[i].shape[1]))[:, None] & ((cols >= 0) & (cols < ys[i].shape[2])))
                assert torch.equal(crops.outside[0, 0] == 1, past)
        total += values[i].sum().item()
    assert expected == pytest.approx(total / sum(ys[i][0].size for i in eligible), rel=1e-5)
    assert len({w[1] for w in split.windows(size, 400, rng, slack)} & set(range(-slack, 0))) == slack  # past the edge


def test_the_official_codes_model_never_learns_the_outside_channel():
    """ModelConfig(outside=False): trained in either layout, the outside channel's weights stay zero while the
    latents' weights move; with outside=True they move too."""
    from ordersearch.data.gaussian import gaussian_field
    from ordersearch.evaluation import TrainConfig
    from ordersearch.evaluation.training import train_stacked

    splits = gaussian_field("separable").sample(8, 12, 12, seed=0).split(seed=0)
    for outside in (False, True):
        config = TrainConfig(model=ModelConfig(outside=outside), max_steps=15, eval_every=5, warm_steps=0, crop=8)
        models = [MultistageContextModel(Schedule.named(name, 2), 2, 0, config.model) for name in ("raster", "snake")]
        trained = train_stacked(models, splits, config, [0, 1], torch.device("cpu"))
        for t in trained:
            assert bool(t.model.weight.abs().sum() > 0)
            assert bool(t.model.edge.abs().sum() > 0) == outside
    # the GPU's layout: no gradient reaches the outside channel
    from ordersearch.models import StackedContextModels

    model = MultistageContextModel(Schedule.named("raster", 2), 2, 0, ModelConfig(outside=False))
    torch.nn.init.normal_(model.weight)
    stacked = StackedContextModels([model])
    stacked.scored_bits(torch.randint(-3, 4, (1, 2, 2, 9, 9)).float()).sum().backward()
    assert stacked.weight.grad[:, :, :, :-1].abs().sum() > 0 and not stacked.weight.grad[:, :, :, -1].any()

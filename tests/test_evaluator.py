"""Dedicated evaluation (Evaluator): agreement with the exact Gaussian-field rate, outputs, reproducibility, errors."""

import numpy as np
import pytest
import torch

from ordersearch import Schedule
from ordersearch.data import LatentSet, gaussian_field
from ordersearch.data.latents import Splits
from ordersearch.errors import OrdersearchError
from ordersearch.estimators import GaussianOracle
from ordersearch.evaluation import Evaluator, TrainConfig


def evaluate(schedule, latents, config=TrainConfig(), seed=0, device="cpu"):
    return Evaluator(latents, config, device).evaluate(schedule, seed)


def evaluate_context(context, patch, latents, config=TrainConfig(), seed=0):
    return Evaluator(latents, config, "cpu").evaluate_context(context, patch, seed)

# Against the infinite-field oracle, latents within the window radius of an edge are not scored.
FIELD_CONFIG = TrainConfig(max_steps=4000, eval_every=100, lr=3e-3, batch=16, patience=5, score_border=4)


@pytest.fixture(scope="module")
def field():
    f = gaussian_field("separable")
    return f, f.sample(60, 48, 48, seed=0)


@pytest.mark.parametrize("name", ["single", "checkerboard"])
def test_dedicated_within_2_percent_of_analytic_fast(field, name):
    f, lat = field
    s = Schedule.named(name, 2)
    e = evaluate(s, lat, FIELD_CONFIG)
    assert e.bits_per_latent == pytest.approx(GaussianOracle(f).schedule_rate(s), rel=0.02)


def test_serial_baseline_within_2_percent_of_analytic(field):
    """The serial raster model: every latent sees the 12 window positions before it in raster order."""
    from ordersearch.models import causal_mask

    f, lat = field
    e = Evaluator(lat, FIELD_CONFIG, "cpu", progress=False).evaluate_serial()
    mask = causal_mask(5)
    offsets = [(r - 2, c - 2) for r, c in zip(*np.nonzero(mask))]
    assert e.estimator == "serial" and len(offsets) == 12
    oracle = GaussianOracle(f)
    assert e.bits_per_latent == pytest.approx(oracle.rate(offsets), rel=0.02)
    assert oracle.rate(offsets) < oracle.schedule_rate(Schedule.named("raster", 2))  # it is the bound the orders chase


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["separable", "smooth"])
@pytest.mark.parametrize("name, patch", [("raster", 2), ("lin2023", 4), ("raster", 4)])
def test_dedicated_within_2_percent_of_analytic(preset, name, patch):
    f = gaussian_field(preset)
    lat = f.sample(60, 48, 48, seed=0)
    s = Schedule.named(name, patch)
    e = evaluate(s, lat, FIELD_CONFIG)
    assert e.bits_per_latent == pytest.approx(GaussianOracle(f).schedule_rate(s), rel=0.02)


@pytest.mark.slow
def test_per_set_evaluation_within_2_percent(field):
    f, lat = field
    for cset in ([(0, 1)], [(0, 1), (1, 0)], [(1, 1), (0, 1), (1, 0)]):
        e = evaluate_context(cset, 2, lat, FIELD_CONFIG)
        assert e.bits_per_latent == pytest.approx(GaussianOracle(f).context_rate(cset, 2), rel=0.02)


def test_evaluation_outputs_and_reproducibility(field):
    f, lat = field
    cfg = TrainConfig(max_steps=40, eval_every=20, lr=3e-3)
    s = Schedule.named("lin2023", 2)
    a = evaluate(s, lat, cfg, seed=3)
    b = evaluate(s, lat, cfg, seed=3)
    assert a.bits_per_latent == b.bits_per_latent  # CPU runs are reproducible
    assert evaluate(s, lat, cfg, seed=4).bits_per_latent != a.bits_per_latent
    assert np.asarray(a.per_position).shape == (2, 2) and len(a.per_stage) == 4
    # the total is the element-weighted mean of the per-position numbers (all positions equally common here)
    assert np.mean(a.per_position) == pytest.approx(a.bits_per_latent, rel=1e-6)
    assert a.bpp is None and a.steps == 40 and [c[0] for c in a.curve] == [20, 40]
    assert len(a.image_bits) == len(lat.split().test) and np.isfinite(a.ci95())
    assert a.schedule == s and a.model is not None and a.config["lr"] == 3e-3
    assert "bits/latent (test, 95% over images" in str(a)
    # round trip through a plain dict (what the store keeps)
    assert type(a).from_dict(a.to_dict()).bits_per_latent == a.bits_per_latent


def test_context_evaluation_fields(field):
    f, lat = field
    e = evaluate_context([(1, 0)], 2, lat, TrainConfig(max_steps=20, eval_every=10))
    assert e.context == [(1, 0)] and e.stages is None and e.estimator == "dedicated-set"
    assert np.allclose(e.per_position, e.bits_per_latent)


def test_with_prior_reports_bpp():
    rng = np.random.default_rng(0)
    y = rng.integers(-2, 3, size=(6, 3, 24, 24))
    prior = rng.normal(size=(6, 4, 24, 24))
    lat = LatentSet.create(y, prior, image_sizes=[(384, 384)] * 6)
    e = evaluate(Schedule.named("checkerboard", 2), lat, TrainConfig(max_steps=10, eval_every=5))
    test_images = len(lat.split().test)
    assert e.bpp == pytest.approx(sum(e.image_bits) / (test_images * 384 * 384))


def test_bad_input():
    lat = gaussian_field("separable").sample(6, 8, 8)
    with pytest.raises(OrdersearchError, match="train split has a latent of 8x8, smaller than the 16x16 patch"):
        evaluate(Schedule.named("raster", 16), lat)
    with pytest.raises(OrdersearchError, match="no training latent is at least 16x16"):
        evaluate(Schedule.named("raster", 2), lat)
    with pytest.raises(OrdersearchError, match="score_border 3 must be a multiple of the patch size 2"):
        evaluate(Schedule.named("raster", 2), lat, TrainConfig(crop=2, max_steps=1, eval_every=1, score_border=3))
    with pytest.raises(OrdersearchError, match="cannot contain"):
        evaluate_context([(0, 0)], 2, lat)
    big = gaussian_field("separable").sample(6, 16, 16)
    train, val, test = big.split()
    with pytest.raises(OrdersearchError, match="the val split is empty"):
        evaluate(Schedule.named("raster", 2), Splits(train, val.subset([]), test))
    with_prior = LatentSet.create(test.y, [np.ones((4, 16, 16), dtype=np.float32)] * len(test))
    with pytest.raises(OrdersearchError, match="the test split has 2 latent and 4 prior channels but the train "
                                               "split has 2 and 0"):
        evaluate(Schedule.named("raster", 2), Splits(train, val, with_prior))
    with pytest.raises(OrdersearchError, match="CUDA is not available|unsupported"):
        import torch

        if torch.cuda.is_available():
            raise OrdersearchError("unsupported: skip on CUDA machines")
        evaluate(Schedule.named("raster", 2), lat, device="cuda")


def test_warm_start_is_an_evaluation_in_the_store(tmp_path, field):
    """No hidden per-process cache: a second evaluator (a new process) finds the warm start in the store."""
    from ordersearch.evaluation import EvaluationStore

    _, lat = field
    cfg = TrainConfig(max_steps=10, eval_every=5, warm_steps=10, crop=8)
    store = EvaluationStore(tmp_path)
    a = Evaluator(lat, cfg, "cpu", store, progress=False).evaluate(Schedule.named("raster", 2))
    subjects = sorted(r["subject"] for r in store.rows())
    assert subjects == ["2x2", "[[0, 1], [2, 3]]", "[[0]]"]  # the schedule, its any-order start, the warm start
    fresh = Evaluator(lat, cfg, "cpu", store, progress=False)
    b = fresh.evaluate(Schedule.named("snake", 2))
    assert len(store) == 4  # neither start was trained again
    assert fresh.warm_start(0)["bias"].shape == (1, a.model.bias.shape[1])  # one position: patch 1
    # the same result as an evaluator without a store, which trains its own warm start
    alone = Evaluator(lat, cfg, "cpu", progress=False).evaluate(Schedule.named("snake", 2))
    assert alone.bits_per_latent == b.bits_per_latent


def test_the_time_left_counts_the_trainings_own_seconds_not_the_wall_clock(tmp_path, field):
    """"About N left" is the trainings' own mean seconds so far x the trainings left: stored ones replayed by a
    resumed run count with their stored seconds (the wall clock said "about 0 s left" with 20 min to go), and no
    training is charged with what ran before it, such as an any-order model (it said "25 h" for a 2.5 h run)."""
    from ordersearch.evaluation import EvaluationStore
    from ordersearch.evaluation.verify import verify

    _, lat = field
    cfg = TrainConfig(max_steps=10, eval_every=5, warm_steps=0, crop=8)
    schedules = {k: Schedule.named(k, 2) for k in ("raster", "snake")}
    store = EvaluationStore(tmp_path)
    verify({"raster": schedules["raster"]}, Evaluator(lat, cfg, "cpu", store, progress=False), seeds=1,
           report_seeds=1)  # stored: raster's selection and report seeds
    heard = []
    v = verify(schedules, Evaluator(lat, cfg, "cpu", store, progress=False), seeds=1, report_seeds=1,
               report=heard.append)
    assert [h.label for h in heard] == ["raster", "snake", "raster", "snake"]
    for k, h in enumerate(heard):
        mean = np.mean([e.evaluation.seconds for e in heard[:k + 1]])
        assert h.seconds_left == pytest.approx(mean * (h.planned - h.done))
    assert v.trained_now == 2  # snake's two seeds; raster's came from the store


def test_the_time_estimate_counts_the_any_order_models_own_steps(tmp_path, field):
    """The any-order models take longer to their plateau than the trainings started from them: the estimate
    counts their stored steps (any protocol's, like the trainings'), not the trainings'."""
    from ordersearch.evaluation import EvaluationStore
    from ordersearch.run.estimate import TYPICAL_ANY_ORDER_STEPS, estimate

    _, lat = field
    store = EvaluationStore(tmp_path)
    Evaluator(lat, TrainConfig(max_steps=10, eval_every=5, warm_steps=10, crop=8), "cpu", store,
              progress=False).any_order(2, 0)  # stored: an any-order model of 10 steps
    evaluator = Evaluator(lat, TrainConfig(max_steps=40, eval_every=20, warm_steps=10, crop=8), "cpu", store,
                          progress=False)
    candidates = {k: Schedule.named(k, 2) for k in ("raster", "snake")}
    e = estimate(evaluator, candidates, seeds=1, max_seeds=2, report_seeds=1)
    assert (e.trainings, e.more, e.any_order, e.more_any_order) == (4, 2, 2, 1)  # this config's models: none stored
    assert (e.steps, e.any_order_steps) == (40, 10) and "2 any-order model(s) of about 10 steps" in e.line()
    assert e.low == pytest.approx(40 * 4 * e.step_seconds + 10 * 2 * e.any_order_step_seconds)
    # the consistency checks at another patch size, with the report seed: their own steps and step times
    with_checks = estimate(evaluator, candidates, 1, 2, 1, {"single@4x4": Schedule.named("single", 4)})
    assert with_checks.checks == 1 and "then 1 check trainings at another patch size" in with_checks.line()
    assert with_checks.check_seconds > 0 and with_checks.low - with_checks.check_seconds > 0
    assert TYPICAL_ANY_ORDER_STEPS[2] > 40  # without a stored model it would have said the cap, 40
    assert " to " in e.line() and "(up to 6 with adaptive seeds)" in e.line()  # the range leads
    evaluator.evaluate(candidates["snake"], 1)  # an adaptive seed already stored (a resumed run)
    resumed = estimate(evaluator, candidates, seeds=1, max_seeds=2, report_seeds=1)
    assert (resumed.trainings, resumed.more) == (4, 1) and "(up to 5 with adaptive seeds)" in resumed.line()


def test_the_time_left_counts_the_any_order_models_and_checks_to_come(tmp_path, field):
    """After each training the run's "left" adds what the trainings' own pace cannot know: the any-order models
    of the seeds to come and the consistency checks, and in its higher figure the adaptive seeds still possible
    (a fresh 3x3 run said "about 79 min left" at 11 of 44 trainings with about 3 h of work to go)."""
    from ordersearch.evaluation import EvaluationStore
    from ordersearch.evaluation.verify import verify
    from ordersearch.run.estimate import estimate

    _, lat = field
    evaluator = Evaluator(lat, TrainConfig(max_steps=20, eval_every=10, warm_steps=10, crop=8), "cpu",
                          EvaluationStore(tmp_path), progress=False)
    candidates = {k: Schedule.named(k, 2) for k in ("raster", "snake")}
    e = estimate(evaluator, candidates, seeds=1, max_seeds=2, report_seeds=1,
                 checks={"single@4x4": Schedule.named("single", 4)})
    heard = []
    verify(candidates, evaluator, seeds=1, max_seeds=2, report_seeds=1, report=heard.append)
    each = e.any_order_steps * e.any_order_step_seconds
    first = heard[0]
    low, high = e.left(first)
    assert e.check_seconds > 0 and each > 0 and first.planned - first.done == 3  # snake's seed 0, two report trainings
    # to come after seed 0: the report seed's (2) any-order model and the checks; the adaptive seed 1: its model
    # and a training of each candidate
    assert low == pytest.approx(first.seconds_left + each + e.check_seconds)
    assert high == pytest.approx(low + 2 * first.seconds_left / 3 + each)
    assert "(10 min to 30 min left): raster selection seed 0" in first.line((600.0, 1800.0))
    assert "(about 10 min left): raster" in first.line((600.0, 610.0))  # one figure where both read the same
    for h in heard[1:]:
        low, high = e.left(h)
        assert low >= h.seconds_left + e.check_seconds and (high == low) == (h.evaluation.seed >= 1)
    assert e.left(heard[-1]) == pytest.approx((e.check_seconds,) * 2)  # the checks alone are left


@pytest.mark.parametrize("data", ["gaussian", "builtin"])
def test_stacked_training_gives_the_one_at_a_time_results(data, field):
    """K schedules x S seeds trained as one stack: the rates, steps and stops of training each alone."""
    if data == "gaussian":
        latents = field[1]
    else:
        from ordersearch.models import builtin

        latents = builtin()
    config = TrainConfig(max_steps=40, eval_every=10, patience=2, warm_steps=10, crop=8, batch=4)
    items = [(Schedule.named(name, 2), seed) for seed in (0, 1) for name in ("raster", "checkerboard", "single")]
    alone = Evaluator(latents, config, "cpu", progress=False)
    together = Evaluator(latents, config, "cpu", progress=False, stack=len(items))
    stacked = together.evaluate_many(items)
    for (schedule, seed), ev in zip(items, stacked):
        ref = alone.evaluate(schedule, seed)
        assert ev.seed == seed and ev.stages == ref.stages
        assert (ev.steps, ev.best_step) == (ref.steps, ref.best_step)
        assert ev.bits_per_latent == pytest.approx(ref.bits_per_latent, rel=1e-4)
        assert ev.val_bits_per_latent == pytest.approx(ref.val_bits_per_latent, rel=1e-4)
    # and the seeds differ from each other by more than stacking moves them
    assert stacked[0].bits_per_latent != pytest.approx(stacked[3].bits_per_latent, rel=1e-6)


@pytest.mark.parametrize("stack,drops", [(1, 0), (3, 0), (3, 1)])
def test_an_interrupted_training_resumes_from_its_checkpoint_to_the_same_result(tmp_path, field, stack, drops):
    """Ctrl-C midway through a training: the next evaluation continues from the checkpoint (no step done
    twice) and ends exactly where an uninterrupted training ends; the checkpoint is removed when it is stored.
    With plateau training each model's learning rate and drops left are part of the checkpoint."""
    from ordersearch.evaluation import EvaluationStore
    from ordersearch.evaluation import training

    _, lat = field
    cfg = TrainConfig(max_steps=60, eval_every=10, patience=10 if not drops else 1, lr_drops=drops, warm_steps=0,
                      crop=8, batch=4)
    items = [(Schedule.named(name, 2), 0) for name in ("raster", "checkerboard", "snake")][:stack]
    reference = Evaluator(lat, cfg, "cpu", progress=False, stack=stack).evaluate_many(items)

    store = EvaluationStore(tmp_path)
    evaluator = Evaluator(lat, cfg, "cpu", store, progress=False, stack=stack, checkpoint_every=0)
    real_step, steps = torch.optim.AdamW.step, []

    def step_then_stop(self, *args, **kwargs):  # Ctrl-C arriving after 35 optimiser steps
        if len(steps) == 35:
            raise KeyboardInterrupt
        steps.append(1)
        return real_step(self, *args, **kwargs)

    torch.optim.AdamW.step = step_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            evaluator.evaluate_many(items)
    finally:
        torch.optim.AdamW.step = real_step
    saved = list((tmp_path / "checkpoints").glob("*.pt"))
    assert len(saved) == 1 and len(store) == 0
    assert training.Checkpoint(saved[0]).load()["step"] == 35

    counted = []
    torch.optim.AdamW.step = lambda self, *a, **k: (counted.append(1), real_step(self, *a, **k))[1]
    try:
        resumed = Evaluator(lat, cfg, "cpu", store, progress=False, stack=stack).evaluate_many(items)
    finally:
        torch.optim.AdamW.step = real_step
    assert len(counted) == max(ev.steps for ev in reference) - 35  # only the steps not done before
    for ev, ref in zip(resumed, reference):
        assert (ev.steps, ev.best_step) == (ref.steps, ref.best_step)
        assert ev.bits_per_latent == ref.bits_per_latent and ev.curve == ref.curve
    assert not list((tmp_path / "checkpoints").glob("*.pt"))


def test_a_damaged_checkpoint_is_ignored(tmp_path, field):
    from ordersearch.evaluation import EvaluationStore

    _, lat = field
    cfg = TrainConfig(max_steps=20, eval_every=10, warm_steps=0, crop=8, batch=4)
    reference = Evaluator(lat, cfg, "cpu", progress=False).evaluate(Schedule.named("raster", 2))
    store = EvaluationStore(tmp_path)
    evaluator = Evaluator(lat, cfg, "cpu", store, progress=False)
    key = evaluator.key(("schedule", "[[0, 1], [2, 3]]", "dedicated"), 0)
    path = store.checkpoint_path([key])
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    assert evaluator.evaluate(Schedule.named("raster", 2)).bits_per_latent == reference.bits_per_latent
    assert not path.exists()


def _scripted_loop(values, k=1, drops=2, patience=2, max_steps=100):
    """The training loop on a toy stack: parameter x (k,), loss x (gradient 1: AdamW moves each x by exactly its
    learning rate per step), validations from a script; returns the trajectory of x and the results."""
    from ordersearch.evaluation import LoopConfig
    from ordersearch.evaluation.training import _loop

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.x = torch.nn.Parameter(torch.zeros(k))

    model, script, xs = Toy(), iter(values), []

    def batch_loss():
        xs.append(model.x.detach().clone())
        return model.x * 1.0

    loop = LoopConfig(lr=0.1, weight_decay=0.0, max_steps=max_steps, eval_every=1, patience=patience, lr_drops=drops)
    trained = _loop(model, k, batch_loss, lambda: np.asarray(next(script), dtype=float), loop, False, "toy")
    return torch.stack(xs).numpy(), trained


def test_plateau_training_divides_the_rate_by_ten_at_each_plateau_then_stops():
    steps_x, trained = _scripted_loop([[1.0], [0.9]] + [[0.9]] * 20)
    moves = -np.diff(steps_x[:, 0])
    # steps 1-4 at lr 0.1 (plateau after validations 3 and 4), 5-6 at 0.01, 7-8 at 0.001, then it stops
    np.testing.assert_allclose(moves, [0.1] * 4 + [0.01] * 2 + [0.001], rtol=1e-4)
    assert trained[0].steps == 8 and trained[0].best_step == 2
    # without drops the first plateau stops it
    assert _scripted_loop([[1.0], [0.9]] + [[0.9]] * 20, drops=0)[1][0].steps == 4


def test_the_bar_of_plateau_training_counts_to_the_earliest_possible_stop():
    """After the validation at step 2 (improved: since 0, both drops left) the earliest stop is step 8, where the
    scripted training above does stop; a model that keeps improving pushes it later; the cap bounds it."""
    from ordersearch.evaluation import LoopConfig
    from ordersearch.evaluation.training import earliest_stop

    loop = LoopConfig(max_steps=100, eval_every=1, patience=2, lr_drops=2)
    assert earliest_stop(loop, 2, np.array([0]), np.array([2])) == 8 == _scripted_loop(
        [[1.0], [0.9]] + [[0.9]] * 20)[1][0].steps
    assert earliest_stop(loop, 5, np.array([1, 0]), np.array([0, 2])) == 11
    assert earliest_stop(LoopConfig(max_steps=6, eval_every=1, patience=2), 2, np.array([0]), np.array([2])) == 6


def test_each_model_of_a_stack_keeps_its_own_plateau_learning_rate():
    """Model 0 plateaus early, model 1 keeps improving: model 0 moves by 0.01 a step, model 1 by 0.1."""
    values = [[1.0, 1.0], [0.9, 0.9], [0.9, 0.8], [0.9, 0.7]] + [[0.9, 0.7 - 0.1 * i] for i in range(1, 10)]
    steps_x, trained = _scripted_loop(values, k=2, drops=2, max_steps=10)
    moves = -np.diff(steps_x, axis=0)
    np.testing.assert_allclose(moves[:4, 0], 0.1, rtol=1e-4)
    np.testing.assert_allclose(moves[4:6, 0], 0.01, rtol=1e-4)  # after its first plateau (validation 4)
    np.testing.assert_allclose(moves[:, 1], 0.1, rtol=1e-4)
    assert trained[1].steps == 10 and trained[0].steps == 8


def test_a_translate_is_measured_with_the_moved_weights_where_the_grid_meets_the_edges_elsewhere(tmp_path):
    """One training serves every translate, but not its bits: T(S)'s bits on an image are S's model's bits on the
    image moved against the patch grid (a zero border in front of it), and differ from S's own at the edges."""
    import torch.nn.functional as F

    from ordersearch.evaluation import EvaluationStore
    from ordersearch.models.entropy import bits

    lat = gaussian_field("separable").sample(12, 20, 24, seed=1)
    store = EvaluationStore(tmp_path)
    evaluator = Evaluator(lat, TrainConfig(max_steps=30, eval_every=10, warm_steps=10, crop=8), "cpu", store,
                          progress=False)
    s = Schedule.named("raster", 3)
    own = evaluator.evaluate(s)
    model = own.model
    test = lat.split(seed=0).test
    for t in sorted(s.orbit(), key=s.translation_to)[1:]:
        dr, dc = s.translation_to(t)
        moved = evaluator.evaluate(t)
        assert len(store) == 3  # the schedule and its two starts: no translate trained
        for i, y in enumerate(test.y):
            y = torch.from_numpy(y).float()[None]
            canvas = F.pad(y, (3 - dc, 0, 3 - dr, 0))  # x at offset (3 - dr, 3 - dc): its (i, j) on S's (i - dr, j - dc)
            outside = F.pad(torch.zeros_like(y[:, :1]), (3 - dc, 0, 3 - dr, 0), value=1.0)  # the canvas
            with torch.no_grad():
                expected = bits(model(canvas, None, outside=outside))[0, :, 3 - dr:, 3 - dc:].sum().item()
            assert moved.image_bits[i] == pytest.approx(expected, rel=1e-5)
        assert moved.image_bits != pytest.approx(own.image_bits, rel=1e-6)  # not the schedule's bits reused

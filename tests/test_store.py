"""The evaluation store: cache hits, translations, persistence, several writing processes."""

import multiprocessing as mp

import numpy as np
import pytest

from ordersearch import Schedule
from ordersearch.data import gaussian_field
from ordersearch.errors import OrdersearchError
from ordersearch.evaluation import EvaluationStore, Evaluator, TrainConfig

CFG = TrainConfig(max_steps=6, eval_every=3, crop=8)


def evaluate(store, schedule, latents, config=CFG, seed=0, cached_only=False):
    return Evaluator(latents, config, "cpu", store, progress=False).evaluate(schedule, seed, cached_only)


def trained(store):
    """Stored evaluations other than the starts: the prior-only warm starts (1x1 ``single``, subject [[0]]) and
    the any-order models (kind ``any-order``)."""
    return [r for r in store.rows() if r["subject"] != "[[0]]" and r["kind"] != "any-order"]


@pytest.fixture(scope="module")
def latents():
    return gaussian_field("separable").sample(9, 16, 16, seed=0)


def test_repeat_is_a_hit_and_survives_reopening(tmp_path, latents):
    store = EvaluationStore(tmp_path)
    s = Schedule.named("raster", 2)
    a = evaluate(store, s, latents, CFG)
    assert len(trained(store)) == 1 and len(store) == 3 and a.model is not None  # + the two starts
    b = evaluate(store, s, latents, CFG)
    assert b.bits_per_latent == a.bits_per_latent and b.model is None  # served from disk, not retrained
    store.close()
    again = EvaluationStore(tmp_path)
    assert evaluate(again, s, latents, CFG).to_dict() == b.to_dict() and len(again) == 3
    key = trained(again)[0]["key"]
    assert again.model_path(key).exists()
    # another seed, config or data is another evaluation
    evaluate(again, s, latents, CFG, 1)
    evaluate(again, s, latents, TrainConfig(max_steps=7, eval_every=7, crop=8))
    evaluate(again, s, gaussian_field("separable").sample(9, 16, 16, seed=1))
    assert len(trained(again)) == 4


def test_a_translated_schedule_is_the_same_training_measured_again(tmp_path, latents):
    """One training serves both; the translate's bits are its own (the grid meets the edges elsewhere), close."""
    store = EvaluationStore(tmp_path)
    s = Schedule.named("lin2023", 2)
    moved = Schedule.from_grid(np.roll(s.array(), (1, 0), axis=(0, 1)))
    a = evaluate(store, s, latents, CFG)
    b = evaluate(store, moved, latents, CFG)
    assert len(trained(store)) == 1 and b.schedule == moved
    assert b.bits_per_latent != a.bits_per_latent and b.bits_per_latent == pytest.approx(a.bits_per_latent, rel=0.01)
    assert np.allclose(np.roll(np.asarray(a.per_position), (1, 0), axis=(0, 1)), b.per_position, rtol=0.05)


def test_context_sets_are_stored_too(tmp_path, latents):
    store = EvaluationStore(tmp_path)
    a = Evaluator(latents, CFG, "cpu", store, progress=False).evaluate_context([(0, 1)], 2)
    b = Evaluator(latents, CFG, "cpu", store, progress=False).evaluate_context([(0, 1)], 2)
    assert len(trained(store)) == 1 and a.bits_per_latent == b.bits_per_latent
    assert trained(store)[0]["subject"] == "2:2"


def _worker(folder, seed, queue):
    import torch

    torch.set_num_threads(1)  # three processes on two cores: no thread oversubscription
    latents = gaussian_field("separable").sample(9, 16, 16, seed=0)
    store = EvaluationStore(folder)
    for name in ("raster", "snake", "column"):
        evaluate(store, Schedule.named(name, 2), latents, CFG, seed)
    queue.put(seed)


def test_several_processes_write_one_store(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), seed, queue)) for seed in (0, 1, 0)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    rows = trained(EvaluationStore(tmp_path))
    expected = {Schedule.named(n, 2).canonical() for n in ("raster", "snake", "column")}
    assert len(rows) == 2 * len(expected)  # two seeds; the duplicate worker added nothing
    assert len({r["key"] for r in rows}) == len(rows)
    for r in rows:
        assert np.isfinite(r["bits_per_latent"])


def test_not_a_database(tmp_path):
    (tmp_path / "evaluations.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(OrdersearchError, match="not a usable evaluation store"):
        EvaluationStore(tmp_path)


def test_cached_only_never_trains(tmp_path):
    from ordersearch import Schedule
    from ordersearch.data.latents import Splits

    f = gaussian_field("separable")
    splits = Splits(f.sample(4, 16, 16, seed=0), f.sample(2, 16, 16, seed=1), f.sample(2, 16, 16, seed=2))
    config = TrainConfig(max_steps=5, eval_every=5, warm_steps=0, batch=2, crop=8)
    store = EvaluationStore(tmp_path)
    s = Schedule.named("raster", 2)
    assert evaluate(store, s, splits, config, cached_only=True) is None
    assert Evaluator(splits, config, "cpu", store, progress=False).evaluate_context([(0, 1)], 2, cached_only=True) is None
    assert len(store) == 0
    done = evaluate(store, s, splits, config)
    assert evaluate(store, s, splits, config, cached_only=True).bits_per_latent == done.bits_per_latent


def _same_order(location, barrier, queue):
    import torch

    torch.set_num_threads(1)
    latents = gaussian_field("separable").sample(9, 16, 16, seed=0)
    store = EvaluationStore(location, heartbeat=0.5)
    barrier.wait(timeout=120)  # all ask at once
    e = evaluate(store, Schedule.named("raster", 2), latents, TrainConfig(max_steps=60, eval_every=20, crop=8))
    queue.put((e.model is not None, e.bits_per_latent))


def check_one_training_per_order(location):
    ctx = mp.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(3)
    procs = [ctx.Process(target=_same_order, args=(location, barrier, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    results = [queue.get(timeout=10) for _ in procs]
    assert sum(trained for trained, _ in results) == 1  # one trained, the others waited for its result
    assert len({bits for _, bits in results}) == 1
    store = EvaluationStore(location)
    assert len(trained(store)) == 1 and store.weights(trained(store)[0]["key"])


def test_processes_asking_for_one_order_train_it_once(tmp_path):
    check_one_training_per_order(str(tmp_path))


def test_a_dead_process_claim_is_taken_over(tmp_path, latents):
    import time

    s = Schedule.named("raster", 2)
    from ordersearch.evaluation.store import schedule_subject

    dead = EvaluationStore(tmp_path, heartbeat=0.5)
    key = Evaluator(latents, CFG, "cpu").key(schedule_subject(s.canonical("translations")), 0)
    assert dead._claim(key)  # ... and the process dies: no heartbeat, no release
    alive = EvaluationStore(tmp_path, heartbeat=0.5)
    start = time.time()
    e = evaluate(alive, s, latents, CFG)
    assert e.model is not None and time.time() - start >= 1.0  # waited for the claim to go stale (3 beats)
    assert alive._claim(key)  # released after training


def test_the_claim_of_a_killed_process_on_this_host_is_taken_over_at_once(tmp_path, latents):
    """No silent wait for staleness: the claim names host and pid, and that pid is gone (SIGKILL)."""
    import subprocess
    import sys
    import time

    from ordersearch.evaluation.store import schedule_subject

    s = Schedule.named("raster", 2)
    key = Evaluator(latents, CFG, "cpu").key(schedule_subject(s.canonical("translations")), 0)
    code = (f"import os, signal; from ordersearch.evaluation import EvaluationStore; "
            f"assert EvaluationStore({str(tmp_path)!r})._claim({key!r}); os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    alive = EvaluationStore(tmp_path, heartbeat=120)  # staleness would take 6 minutes
    start = time.time()
    assert evaluate(alive, s, latents, CFG).model is not None
    assert time.time() - start < 60


def test_a_database_url_store_keeps_weights_in_the_database(tmp_path, latents):
    import io

    import torch

    url = f"sqlite:///{tmp_path / 'study.db'}"
    store = EvaluationStore(url)
    a = evaluate(store, Schedule.named("raster", 2), latents, CFG)
    store.close()
    again = EvaluationStore(url)
    key = trained(again)[0]["key"]
    state = torch.load(io.BytesIO(again.weights(key)), weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in a.model.state_dict().items())
    assert not (tmp_path / "models").exists()
    with pytest.raises(OrdersearchError, match="not a usable evaluation store"):
        EvaluationStore("nosuchdialect://x/y")


def test_postgresql_store_trains_each_order_once(postgres_url):
    check_one_training_per_order(postgres_url)


@pytest.mark.parametrize("damage", [b"", b"not a torch file", b"PK\x03\x04garbage"])
def test_damaged_weights_in_a_store_are_one_clear_error(tmp_path, latents, damage):
    """A model file broken on disk (a full disk, a bad copy) gave an UnpicklingError traceback."""
    from ordersearch.errors import OrdersearchError

    store = EvaluationStore(tmp_path)
    evaluate(store, Schedule.named("raster", 2), latents, CFG)
    key = trained(store)[0]["key"]
    store.model_path(key).write_bytes(damage)
    with pytest.raises(OrdersearchError, match=r"damaged model weights.*trained again"):
        store.state(key)

"""The evaluation store: cache hits, translations, persistence, several writing processes."""

import multiprocessing as mp

import numpy as np
import pytest

from ordersearch import Schedule
from ordersearch.data import gaussian_field
from ordersearch.errors import OrdersearchError
from ordersearch.harness import TrainConfig
from ordersearch.store import EvaluationStore

CFG = TrainConfig(max_steps=6, eval_every=3, crop=8)


@pytest.fixture(scope="module")
def latents():
    return gaussian_field("separable").sample(9, 16, 16, seed=0)


def test_repeat_is_a_hit_and_survives_reopening(tmp_path, latents):
    store = EvaluationStore(tmp_path)
    s = Schedule.named("raster", 2)
    a = store.evaluate(s, latents, CFG, progress=False)
    assert len(store) == 1 and a.model is not None
    b = store.evaluate(s, latents, CFG, progress=False)
    assert b.bits_per_latent == a.bits_per_latent and b.model is None  # served from disk, not retrained
    store.close()
    again = EvaluationStore(tmp_path)
    assert again.evaluate(s, latents, CFG, progress=False).to_dict() == b.to_dict() and len(again) == 1
    key = again.rows()[0]["key"]
    assert again.model_path(key).exists()
    # another seed, config or data is another evaluation
    again.evaluate(s, latents, CFG, seed=1, progress=False)
    again.evaluate(s, latents, TrainConfig(max_steps=7, eval_every=7, crop=8), progress=False)
    again.evaluate(s, gaussian_field("separable").sample(9, 16, 16, seed=1), CFG, progress=False)
    assert len(again) == 4


def test_translated_schedule_is_the_same_evaluation(tmp_path, latents):
    store = EvaluationStore(tmp_path)
    s = Schedule.named("lin2023", 2)
    moved = Schedule.from_grid(np.roll(s.array(), (1, 0), axis=(0, 1)))
    a = store.evaluate(s, latents, CFG, progress=False)
    b = store.evaluate(moved, latents, CFG, progress=False)
    assert len(store) == 1 and b.bits_per_latent == a.bits_per_latent
    assert b.schedule == moved
    assert np.allclose(np.roll(np.asarray(a.per_position), (1, 0), axis=(0, 1)), b.per_position)


def test_context_sets_are_stored_too(tmp_path, latents):
    store = EvaluationStore(tmp_path)
    a = store.evaluate_context([(0, 1)], 2, latents, CFG, progress=False)
    b = store.evaluate_context([(0, 1)], 2, latents, CFG, progress=False)
    assert len(store) == 1 and a.bits_per_latent == b.bits_per_latent
    assert store.rows()[0]["subject"] == "2:2"


def _worker(folder, seed, queue):
    import torch

    torch.set_num_threads(1)  # three processes on two cores: no thread oversubscription
    latents = gaussian_field("separable").sample(9, 16, 16, seed=0)
    store = EvaluationStore(folder)
    for name in ("raster", "snake", "column"):
        store.evaluate(Schedule.named(name, 2), latents, CFG, seed=seed, progress=False)
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
    rows = EvaluationStore(tmp_path).rows()
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
    from ordersearch.data.gaussian import gaussian_field
    from ordersearch.data.latents import Splits
    from ordersearch.harness import TrainConfig
    from ordersearch.store import EvaluationStore

    f = gaussian_field("separable")
    splits = Splits(f.sample(4, 16, 16, seed=0), f.sample(2, 16, 16, seed=1), f.sample(2, 16, 16, seed=2))
    config = TrainConfig(max_steps=5, eval_every=5, warm_steps=0, batch=2, crop=8)
    store = EvaluationStore(tmp_path)
    s = Schedule.named("raster", 2)
    assert store.evaluate(s, splits, config, progress=False, cached_only=True) is None
    assert store.evaluate_context([(0, 1)], 2, splits, config, progress=False, cached_only=True) is None
    assert len(store) == 0
    done = store.evaluate(s, splits, config, progress=False)
    assert store.evaluate(s, splits, config, progress=False, cached_only=True).bits_per_latent == done.bits_per_latent


def _same_order(location, barrier, queue):
    import torch

    torch.set_num_threads(1)
    latents = gaussian_field("separable").sample(9, 16, 16, seed=0)
    store = EvaluationStore(location, heartbeat=0.5)
    barrier.wait(timeout=120)  # all ask at once
    e = store.evaluate(Schedule.named("raster", 2), latents, TrainConfig(max_steps=60, eval_every=20, crop=8),
                       progress=False)
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
    assert len(store) == 1 and store.weights(store.rows()[0]["key"])


def test_processes_asking_for_one_order_train_it_once(tmp_path):
    check_one_training_per_order(str(tmp_path))


def test_a_dead_process_claim_is_taken_over(tmp_path, latents):
    import time

    s = Schedule.named("raster", 2)
    import json

    from ordersearch.harness import as_splits, data_fingerprint
    from ordersearch.store import evaluation_key

    dead = EvaluationStore(tmp_path, heartbeat=0.5)
    subject = json.dumps([list(r) for r in s.canonical("translations").stages])
    key = evaluation_key("schedule", subject, "dedicated", CFG.to_dict(), data_fingerprint(as_splits(latents)), 0)
    assert dead._claim(key)  # ... and the process dies: no heartbeat, no release
    alive = EvaluationStore(tmp_path, heartbeat=0.5)
    start = time.time()
    e = alive.evaluate(s, latents, CFG, progress=False)
    assert e.model is not None and time.time() - start >= 1.0  # waited for the claim to go stale (3 beats)
    assert alive._claim(key)  # released after training


def test_a_database_url_store_keeps_weights_in_the_database(tmp_path, latents):
    import io

    import torch

    url = f"sqlite:///{tmp_path / 'study.db'}"
    store = EvaluationStore(url)
    a = store.evaluate(Schedule.named("raster", 2), latents, CFG, progress=False)
    store.close()
    again = EvaluationStore(url)
    key = again.rows()[0]["key"]
    state = torch.load(io.BytesIO(again.weights(key)), weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in a.model.state_dict().items())
    assert not (tmp_path / "models").exists()
    with pytest.raises(OrdersearchError, match="not a usable evaluation store"):
        EvaluationStore("nosuchdialect://x/y")


def test_postgresql_store_trains_each_order_once(postgres_url):
    check_one_training_per_order(postgres_url)

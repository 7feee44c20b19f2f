"""Many workers on one Optuna study: dedicated training of proposed orders, shared through the storage.

``ordersearch worker --study NAME --storage URL --patch N`` joins (or creates)
a study and, until it holds ``trials`` finished trials, asks Optuna's TPE
for an order (random-key encoding, as in ``search.optuna_search``), trains
the dedicated model for it (through the evaluation store, so an order that
was trained before, or a translate of it, is never trained again) and
reports the test rate. Every worker sends a heartbeat; a trial whose worker
died (SIGKILL, lost machine) goes stale after the grace period, is marked
failed by the next worker that starts a trial, and is re-queued once with the
same order (``RetryHeartbeatStaleTrialCallback``), so no proposal is lost. (Optuna writes a
trial's keys one at a time: a worker killed while they were being drawn leaves part of an order, which the
retry keeps and completes.)

Storage: any URL Optuna's RDB storage takes: ``sqlite:///study.db`` for
processes on one machine, ``postgresql://user:pass@host/db`` for several
machines. The evaluation store lives in the same database by default
(``evaluation.EvaluationStore`` at the storage URL), so every worker on every
machine sees every finished evaluation, and a worker that wants an order
another worker is training waits for that result instead of training it too.
"""

from __future__ import annotations

import os
import socket
import time

import numpy as np

from .errors import OrdersearchError, redact
from .evaluation import Evaluator, retry_table_race
from .schedule import check_patch
from .search.base import order_to_schedule
from .search.optuna_search import keys_to_order


def open_storage(url: str, heartbeat: int = 60):
    """An Optuna RDB storage with heartbeats and one retry of every trial whose worker died."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:  # workers started together race to create the study's tables: the store's retry
        return retry_table_race(lambda: RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1)))
    except Exception as exc:  # SQLAlchemy raises many types for bad URLs, missing drivers, unreachable servers
        raise OrdersearchError(redact(f"cannot open Optuna storage {url!r}: {str(exc).splitlines()[0]}", url)) from None


def fail_silent_trials(study, grace: float) -> None:
    """Fail (and re-queue, like ``fail_stale_trials``) the running trials whose worker died before its first
    heartbeat: Optuna starts a trial's heartbeat thread after creating the trial, so a worker killed in between
    leaves a trial no heartbeat will ever mark stale (seen in the SIGKILL test: the survivor waited forever)."""
    import copy
    from datetime import datetime, timedelta

    import optuna
    import sqlalchemy as sa

    storage = study._storage
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)  # behind Optuna's cache: the RDB
    if engine is None:
        return
    with engine.connect() as con:
        beating = {row[0] for row in con.execute(sa.text("SELECT trial_id FROM trial_heartbeats"))}
    old = datetime.now() - timedelta(seconds=grace)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial._trial_id in beating or trial.datetime_start is None or trial.datetime_start > old:
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        callback = storage.get_heartbeat_stale_trial_callback()
        if callback is not None:
            callback(study, copy.deepcopy(storage.get_trial(trial._trial_id)))


def worker(study: str, storage: str, patch: int, evaluator: Evaluator, trials: int = 50, seeds: int = 1,
           seed: int = 0, heartbeat: int = 60) -> dict:
    """Evaluate trials of ``study`` until it holds ``trials`` finished ones; returns the study's best.

    ``evaluator`` holds the data, protocol, device and the (shared) evaluation store.
    """
    import optuna

    check_patch(patch, search=True)
    study_ = optuna.create_study(study_name=study, storage=open_storage(storage, heartbeat),
                                 sampler=optuna.samplers.TPESampler(seed=seed), direction="minimize",
                                 load_if_exists=True)
    known = study_.user_attrs.get("patch")
    if known is None:
        study_.set_user_attr("patch", patch)
    elif known != patch:
        raise OrdersearchError(f"study {study!r} searches {known}x{known} orders, not {patch}x{patch}")

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which machine ran it, for the log
        keys = np.array([trial.suggest_float(f"k{p}", 0.0, 1.0) for p in range(patch * patch)])
        schedule = order_to_schedule(keys_to_order(keys), patch)
        trial.set_user_attr("stages", [list(r) for r in schedule.stages])
        return float(np.mean([evaluator.evaluate(schedule, s).bits_per_latent for s in range(seeds)]))

    from optuna.storages import fail_stale_trials

    states = optuna.trial.TrialState
    while len(study_.get_trials(deepcopy=False, states=(states.COMPLETE,))) < trials:
        study_.optimize(objective, n_trials=1, show_progress_bar=False)
    # Budget reached. Before leaving, see every other trial to its end: a live worker finishes its own, a dead
    # worker's goes stale after the grace period, is failed and re-queued, and the re-queued order is run here.
    while study_.get_trials(deepcopy=False, states=(states.RUNNING, states.WAITING)):
        if study_.get_trials(deepcopy=False, states=(states.WAITING,)):
            study_.optimize(objective, n_trials=1, show_progress_bar=False)
        else:
            time.sleep(heartbeat)
            fail_stale_trials(study_)
            fail_silent_trials(study_, 2 * heartbeat)
    best = study_.best_trial
    return {"study": study, "trials": len(study_.get_trials(deepcopy=False, states=(states.COMPLETE,))),
            "best_rate": float(best.value), "best_stages": best.user_attrs["stages"], "best_trial": best.number}

"""General-purpose black-box search with Optuna: TPE, CMA-ES or random sampling of orders.

Encoding: random keys (Bean, 1994). Every patch position p gets a float key
``k_p`` in [0, 1) and the order decodes positions by increasing key. Every
sample is a valid order (no repair, no rejected trials), the space is
continuous so CMA-ES applies as well as TPE, and nearby keys give orders that
differ by a few swaps, which is the locality a model-based sampler needs. (A
Lehmer code would need categorical parameters that CMA-ES cannot handle.)

Studies live in an Optuna storage: in memory by default, or any URL Optuna
accepts (``sqlite:///runs/patch4/optuna.db``, ``postgresql://...``). A study
with the same name in the same storage is resumed: its finished trials count
against the budget and are never repeated.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import numpy as np

from ..errors import OrdersearchError, redact
from ..schedule import Schedule
from .base import Session, Strategy, SearchResult, order_to_schedule

SAMPLERS = ("tpe", "cmaes", "random")
#: a trial running longer than this is of a search that died (each trial scores one order on a table)
STALE_SECONDS = 60.0
#: the user attribute of a trial that names the process running it (host:pid)
OWNER = "owner"
#: a running trial without an owner yet counts this long: its search names it right after asking for it
OWNERLESS_SECONDS = 5.0


def keys_to_order(keys: np.ndarray) -> np.ndarray:
    """Positions by increasing key (ties by index)."""
    return np.argsort(np.asarray(keys), kind="stable")


@contextmanager
def interrupts_held() -> Iterator[list[int]]:
    """Hold Ctrl-C (SIGINT) while the block runs; the list it yields says whether one came.

    Optuna (5.0) handles an interrupt that lands in the bookkeeping of a trial
    badly: an UnboundLocalError from its own ``finally`` replaces the
    KeyboardInterrupt (seen in CI). A trial of a cheap scorer takes
    milliseconds, so the interrupt waits for it and is raised between trials.
    Only the main thread can set signal handlers; elsewhere nothing is held.
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield caught
    finally:
        signal.signal(signal.SIGINT, previous)


class OptunaSearch(Strategy):
    """An Optuna study over random-key encoded orders; ``Budget.trials`` defaults to 200."""

    def __init__(self, sampler: str = "tpe", seed: int = 0, storage: str | None = None,
                 study_name: str | None = None, default_trials: int = 200):
        if sampler not in SAMPLERS:
            raise OrdersearchError(f"unknown Optuna sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        self.sampler, self.seed, self.storage = sampler, seed, storage
        self.study_name, self.default_trials = study_name, default_trials
        self.name = f"optuna-{sampler}"

    def _make_sampler(self, seed: int):
        import optuna

        if self.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        if self.sampler == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)

    def study(self, patch: int):
        """The (new or resumed) Optuna study of this strategy for a patch size."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)  # per-trial log lines are noise: results come back here
        name = self.study_name or f"ordersearch-{patch}x{patch}-{self.name}-seed{self.seed}"
        from ..evaluation.store import retry_table_race

        try:  # searches started together on one new database race to create its tables
            return retry_table_race(lambda: optuna.create_study(
                study_name=name, storage=self.storage, sampler=self._make_sampler(self.seed), direction="minimize",
                load_if_exists=True))
        except Exception as exc:  # bad URL, missing driver, unreachable server: SQLAlchemy raises many types
            raise OrdersearchError(redact(f"cannot open Optuna storage {self.storage!r}: {str(exc).splitlines()[0]}",
                                         self.storage)) from None

    def _run(self, session: Session) -> SearchResult:
        import optuna

        n = session.patch
        study = self.study(n)
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        wanted = session.budget.trials or self.default_trials
        def objective(trial: optuna.Trial) -> float:
            keys = np.array([trial.suggest_float(f"k{p}", 0.0, 1.0) for p in range(n * n)])
            schedule = order_to_schedule(keys_to_order(keys), n)
            trial.set_user_attr("stages", [list(r) for r in schedule.stages])
            return session.rate(schedule)

        # One trial at a time, the sampler seeded by (seed, trials so far): trial k is then a function of the
        # seed and the stored history alone, so a study interrupted and resumed proposes exactly what an
        # uninterrupted one would have.
        # Ctrl-C is held for the whole loop and raised here, between trials: raised by the default handler it
        # could land in a garbage-collection callback of SQLAlchemy, which prints and swallows it (seen in CI)
        # Searches sharing the storage share the budget: a trial asked for is run only if fewer than `wanted`
        # trials numbered before it are finished or running (trial numbers are given out by the storage, one at
        # a time), so two searches never finish more than `wanted` between them. A running trial counts only
        # while its process (its OWNER, written right after it is asked for) lives: gone from this host or
        # silent for STALE_SECONDS (a trial scores one order on a table, in milliseconds), it belongs to a search
        # that died. One not yet named counts for OWNERLESS_SECONDS, so a search between asking and naming is
        # never overtaken at the last trial (one killed right there holds its place that long: the other search
        # may then end a trial short, never a trial over).
        from ..evaluation.store import dead_here

        live = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
        owner = f"{socket.gethostname()}:{os.getpid()}"

        def counts(t, now: datetime) -> bool:
            if t.state == optuna.trial.TrialState.COMPLETE:
                return True
            mine, age = t.user_attrs.get(OWNER), (now - t.datetime_start).total_seconds()
            if mine is None:
                return age < OWNERLESS_SECONDS
            return isinstance(mine, str) and not dead_here(mine) and age < STALE_SECONDS

        with interrupts_held() as caught:
            while done < wanted and not session.out_of_budget():
                study.sampler = self._make_sampler(self.seed * 1_000_003 + done)
                trial = study.ask()
                trial.set_user_attr(OWNER, owner)
                now = datetime.now()
                ahead = sum(t.number < trial.number and counts(t, now)
                            for t in study.get_trials(deepcopy=False, states=live))
                if ahead >= wanted:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # another search took the last ones
                    break
                try:
                    value = objective(trial)
                except BaseException:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    raise
                study.tell(trial, value)
                if caught:
                    raise KeyboardInterrupt
                done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        return self._replayed(study, session)

    def _replayed(self, study, session: Session) -> SearchResult:
        """The result and trace of the whole study, replayed in trial order through a fresh session.

        A resumed (or repeated) search ran only the missing trials; replaying
        every finished one gives the trace, scorer calls and best an
        uninterrupted search would have (the scorer is a cheap table: a
        replay costs milliseconds). ``seconds`` are the trials' own times
        since the study's first trial.
        """
        import optuna

        trials = sorted(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)),
                        key=lambda t: t.number)
        replay = Session(session.scorer, session.budget)
        start = trials[0].datetime_start if trials else None
        for t in trials:
            before = len(replay.trace)
            replay.rate(Schedule.from_grid(t.user_attrs["stages"]))
            for row in replay.trace[before:]:
                row.seconds = (t.datetime_complete - start).total_seconds()
        best = study.best_trial
        result = replay.result(self.name, Schedule.from_grid(best.user_attrs["stages"]), float(best.value))
        result.seconds = (trials[-1].datetime_complete - start).total_seconds() if trials else 0.0
        return result

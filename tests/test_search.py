"""Search strategies on the analytic Gaussian-field oracle, where the true optimum is known."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import lru_cache

import numpy as np
import pytest

from ordersearch.data.gaussian import gaussian_field
from ordersearch.estimators import GaussianOracle
from ordersearch.errors import OrdersearchError
from ordersearch.schedule import Schedule
from ordersearch.search import (Beam, Budget, DP, Exhaustive, FunctionScorer, Greedy, OptunaSearch, RandomOrders,
                                Session, TableScorer, make_strategy, pareto_front)
from ordersearch.search.base import shift_tables
from ordersearch.search.dp import k_best_orders, shortest_order_graph, step_costs
from ordersearch.search.exhaustive import order_context_codes


@lru_cache(maxsize=None)
def oracle(preset: str, patch: int) -> TableScorer:
    return TableScorer(GaussianOracle(gaussian_field(preset)).cost_table(patch), patch, 5, f"oracle-{preset}")


def test_shift_tables_give_the_schedules_context_sets():
    rng = np.random.default_rng(1)
    for n in (2, 3, 4):
        shift = shift_tables(n)
        for _ in range(5):
            schedule = Schedule.named("random", n, seed=int(rng.integers(1000)))
            grid = schedule.array().ravel()
            codes = schedule.context_indices().ravel()
            for p in range(n * n):
                decoded = sum(1 << q for q in range(n * n) if grid[q] < grid[p])
                assert shift[p, decoded] == codes[p]


def test_table_rate_equals_the_oracle_schedule_rate():
    field = gaussian_field("mixed")
    session = Session(oracle("mixed", 4))
    for name in ("raster", "lin2023", "checkerboard", "quadtree"):
        s = Schedule.named(name, 4)
        assert session.rate(s) == pytest.approx(GaussianOracle(field).schedule_rate(s), rel=1e-9)


@pytest.mark.parametrize("preset", ["mixed", "anisotropic"])
def test_dp_equals_brute_force_over_all_3x3_orders(preset):
    scorer = oracle(preset, 3)
    orders = np.array(list(itertools.permutations(range(9))))
    assert len(orders) == 362_880
    brute = scorer.costs(order_context_codes(orders, 3)).mean(axis=1)
    result = DP().search(scorer)
    assert result.rate == pytest.approx(brute.min(), abs=1e-12)
    assert Session(scorer).rate(result.schedule) == pytest.approx(brute.min(), abs=1e-12)
    # k best: distinct up to translation, ascending, each the true rate of its schedule
    ranks = np.sort(brute)
    rates = [r for _, r in result.ranked]
    assert rates == sorted(rates)
    assert len({s.canonical() for s, _ in result.ranked}) == len(result.ranked) == 10
    distinct = np.unique(np.round(ranks, 12))  # every translation class appears 9 times in the brute force
    for (schedule, rate) in result.ranked:
        assert Session(scorer).rate(schedule) == pytest.approx(rate, abs=1e-12)
    assert rates[1] >= distinct[0] - 1e-12


def test_networkx_reference_agrees_with_vectorized_dp():
    for n in (2, 3):
        cost = step_costs(Session(oracle("separable", n)))
        order, rate = shortest_order_graph(cost)
        (best_order, best_rate), = k_best_orders(cost, 1, first=None)
        assert rate == pytest.approx(best_rate, abs=1e-12)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("preset", ["mixed", "smooth", "anisotropic"])
def test_exhaustive_and_dp_agree_and_dp_is_never_beaten(n, preset):
    scorer = oracle(preset, n)
    dp = DP().search(scorer)
    exhaustive = Exhaustive().search(scorer)
    assert exhaustive.rate == pytest.approx(dp.rate, abs=1e-12)
    ex_rates = [r for _, r in exhaustive.ranked]
    dp_rates = [r for _, r in dp.ranked][:len(ex_rates)]
    np.testing.assert_allclose(dp_rates, ex_rates[:len(dp_rates)], atol=1e-12)
    for name in ("greedy", "beam", "random", "optuna-tpe", "optuna-cmaes", "optuna-random"):
        other = make_strategy(name).search(scorer, Budget(trials=40))
        assert other.rate >= dp.rate - 1e-12, name
        assert Session(scorer).rate(other.schedule) == pytest.approx(other.rate, abs=1e-12), name


def test_dp_is_never_beaten_at_4x4():
    scorer = oracle("mixed", 4)
    dp = DP().search(scorer)
    assert dp.calls == 2**15
    assert dp.schedule.is_permutation and dp.schedule.patch == 4
    for name in ("greedy", "beam", "random"):
        assert make_strategy(name).search(scorer, Budget(trials=200)).rate >= dp.rate - 1e-12
    for name in ("raster", "lin2023", "quadtree", "snake", "diagonal"):
        assert Session(scorer).rate(Schedule.named(name, 4)) >= dp.rate - 1e-12


def test_greedy_builds_the_order_by_lowest_step_cost():
    # a hand-made 2x2 table: contexts with (1, 1) are cheap, then (0, 1)
    table = np.full(16, np.nan)
    for code in range(0, 16, 2):
        table[code] = 3.0 - 1.0 * bool(code & 8) - 0.5 * bool(code & 2) - 0.1 * bool(code & 4)
    result = Greedy().search(TableScorer(table, 2))
    # step 1 ties -> (0, 0); then (1, 1) sees (0,0) at offset (1,1): cheapest
    assert result.schedule.order() == [(0, 0), (1, 1), (0, 1), (1, 0)]
    assert Beam(1).search(TableScorer(table, 2)).schedule == result.schedule
    assert result.calls == len(result.trace) - 1  # one row per new context set, plus the final schedule


def test_greedy_is_deterministic_and_beam_never_worse_than_greedy():
    for preset in ("mixed", "smooth"):
        scorer = oracle(preset, 3)
        g1, g2 = Greedy().search(scorer), Greedy().search(scorer)
        assert g1.schedule == g2.schedule and g1.rate == g2.rate
        assert Beam(4).search(scorer).rate <= g1.rate + 1e-12


def test_random_and_optuna_are_seeded():
    scorer = oracle("mixed", 3)
    for make in (lambda: RandomOrders(seed=3), lambda: OptunaSearch("tpe", seed=3)):
        a, b = make().search(scorer, Budget(trials=15)), make().search(scorer, Budget(trials=15))
        assert a.schedule == b.schedule and a.rate == b.rate
    assert len([t for t in a.trace if t.kind == "schedule"]) == 15


def test_trace_best_so_far_is_monotone_and_ends_at_the_result():
    result = OptunaSearch("cmaes").search(oracle("mixed", 4), Budget(trials=30))
    best = [t.best for t in result.trace if t.kind == "schedule"]
    assert all(b2 <= b1 for b1, b2 in zip(best, best[1:]))
    assert best[-1] == pytest.approx(result.rate)


def test_exhaustive_refuses_large_patches_and_dihedral_reduces():
    with pytest.raises(OrdersearchError, match=r"1,307,674,368,000 orders.*raise the limit"):
        Exhaustive().search(oracle("mixed", 4))
    scorer = oracle("mixed", 2)
    assert len(Exhaustive(dihedral=True).search(scorer).trace) < len(Exhaustive().search(scorer).trace)


def test_bad_inputs_get_clear_errors():
    with pytest.raises(OrdersearchError, match="needs 16 entries"):
        TableScorer(np.zeros(8), 2)
    with pytest.raises(OrdersearchError, match="missing"):
        TableScorer(np.full(16, np.nan), 2)
    with pytest.raises(OrdersearchError, match="unknown strategy 'annealing'"):
        make_strategy("annealing")
    with pytest.raises(OrdersearchError, match="unknown Optuna sampler"):
        OptunaSearch("grid")
    with pytest.raises(OrdersearchError, match="cannot open Optuna storage"):
        OptunaSearch(storage="nosuchdb://x").search(oracle("mixed", 2), Budget(trials=1))


# ------------------------------------------------------------------------------------ Pareto front
@pytest.mark.parametrize("n", [2, 3])
def test_pareto_front_is_monotone_and_ends_at_dp_and_single(n):
    scorer = oracle("mixed", n)
    front = pareto_front(scorer)
    assert [p.stages for p in front] == list(range(1, n * n + 1))
    rates = [p.rate for p in front]
    assert all(b <= a + 1e-12 for a, b in zip(rates, rates[1:]))
    assert front[-1].rate == pytest.approx(DP().search(scorer).rate, abs=1e-12)
    assert front[0].rate == pytest.approx(Session(scorer).rate(Schedule.named("single", n)), abs=1e-12)
    for p in front:
        assert p.schedule.num_stages <= p.stages
        assert Session(scorer).rate(p.schedule) == pytest.approx(p.rate, abs=1e-12)


def test_pareto_two_steps_is_the_best_two_stage_partition_on_2x2():
    for preset in ("mixed", "anisotropic", "separable"):
        scorer = oracle(preset, 2)
        cells = [(r, c) for r in range(2) for c in range(2)]
        best = min(Session(scorer).rate(Schedule.from_order([list(first), [p for p in cells if p not in first]]))
                   for k in range(1, 4) for first in itertools.combinations(cells, k))
        assert pareto_front(scorer)[1].exact_stages_rate == pytest.approx(best, abs=1e-12)


@pytest.mark.slow
def test_pareto_places_checkerboard_no_better_than_two_steps():
    scorer = oracle("separable", 4)
    front = pareto_front(scorer)
    session = Session(scorer)
    assert session.rate(Schedule.named("checkerboard", 4)) >= front[1].rate - 1e-12
    assert session.rate(Schedule.named("lin2023", 4)) >= front[-1].rate - 1e-12


# ------------------------------------------------------------------------------------ Optuna resume
_WORKER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from ordersearch.data.gaussian import gaussian_field
    from ordersearch.estimators import GaussianOracle
    from ordersearch.search import Budget, FunctionScorer, OptunaSearch
    table = GaussianOracle(gaussian_field("mixed")).cost_table(3)
    def slow(code):
        time.sleep(0.05)
        return float(table[code])
    OptunaSearch("tpe", seed=1, storage=sys.argv[1], study_name="resume").search(
        FunctionScorer(slow, 3), Budget(trials=int(sys.argv[2])))
""")


def test_optuna_study_killed_midway_resumes_and_keeps_finished_trials(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}"
    proc = subprocess.Popen([sys.executable, "-c", _WORKER, url, "10000"], stderr=subprocess.PIPE)
    deadline = time.time() + 120
    finished: list = []
    while time.time() < deadline and len(finished) < 8:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="resume", storage=url)
            finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        except KeyError:  # the worker has not created the study yet
            continue
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(finished) >= 8, proc.stderr.read().decode()
    before = {t.number: t.params for t in optuna.load_study(study_name="resume", storage=url).get_trials(
        states=(optuna.trial.TrialState.COMPLETE,))}
    table = GaussianOracle(gaussian_field("mixed")).cost_table(3)
    wanted = len(before) + 5
    result = OptunaSearch("tpe", seed=1, storage=url, study_name="resume").search(
        FunctionScorer(lambda c: float(table[c]), 3), Budget(trials=wanted))
    study = optuna.load_study(study_name="resume", storage=url)
    after = {t.number: t.params for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    assert len(after) == wanted
    assert all(after[k] == v for k, v in before.items())
    assert result.rate == pytest.approx(min(t.value for t in study.get_trials(
        states=(optuna.trial.TrialState.COMPLETE,))))


# ------------------------------------------------------------------------------------ verification
def test_verify_reports_the_lowest_and_compares_it_with_every_other(tmp_path):
    import torch

    from ordersearch.data.latents import Splits
    from ordersearch.evaluation import EvaluationStore, Evaluator, TrainConfig, verify

    torch.set_num_threads(1)
    f = gaussian_field("separable")
    splits = Splits(f.sample(6, 16, 16, seed=0), f.sample(2, 16, 16, seed=1), f.sample(3, 16, 16, seed=2))
    config = TrainConfig(max_steps=20, eval_every=10, warm_steps=0, batch=4, crop=8)
    store = EvaluationStore(tmp_path / "store")
    evaluator = Evaluator(splits, config, "cpu", store, progress=False)
    candidates = {"raster": Schedule.named("raster", 2), "single": Schedule.named("single", 2),
                  "shifted raster": Schedule.from_grid([[1, 0], [3, 2]])}
    result = verify(candidates, evaluator, seeds=2, report_seeds=1)
    assert set(result.evaluations) == set(candidates) and all(len(v) == 3 for v in result.evaluations.values())
    assert result.report_seeds == (2,) and all(c.seeds == 1 for c in result.comparisons.values())
    assert result.winner == result.ranking()[0]  # chosen on val
    assert result.mean(result.winner, "val") == min(result.mean(k, "val") for k in candidates)
    assert set(result.comparisons) == set(candidates) - {result.winner}
    assert all(c.level == pytest.approx(1 - 0.05 / 2) for c in result.comparisons.values())  # 2 comparisons
    assert result.winner in result.best_set()
    lines = result.report()
    assert len(lines) == 3 and "<- leader (lowest on val)" in lines[0]
    assert all(("interval" in line) for line in lines[1:])
    rows = len(store)
    assert rows == 6  # the shifted raster is a translation of raster: a cache hit
    again = verify(candidates, evaluator, seeds=2, report_seeds=1)
    assert len(store) == rows and again.winner == result.winner
    with pytest.raises(OrdersearchError, match="nothing to verify"):
        verify({}, evaluator)


def test_exact_search_with_dedicated_per_set_costs(tmp_path):
    """dp and exhaustive on trained f(C) agree; every set is trained once thanks to the store."""
    import torch

    from ordersearch.data.latents import Splits
    from ordersearch.estimators import DedicatedSetEstimator
    from ordersearch.evaluation import EvaluationStore, Evaluator, TrainConfig
    from ordersearch.search import EstimatorScorer

    torch.set_num_threads(1)
    f = gaussian_field("separable")
    splits = Splits(f.sample(6, 16, 16, seed=0), f.sample(2, 16, 16, seed=1), f.sample(3, 16, 16, seed=2))
    store = EvaluationStore(tmp_path)
    config = TrainConfig(max_steps=30, eval_every=10, warm_steps=0, batch=4, crop=8)
    scorer = EstimatorScorer(DedicatedSetEstimator(Evaluator(splits, config, "cpu", store, progress=False)), 2)
    dp = DP().search(scorer)
    assert dp.calls == 8 and len(store) == 8
    ex = Exhaustive().search(scorer)
    assert ex.rate == pytest.approx(dp.rate, abs=1e-12) and len(store) == 8
    assert dp.rate < Session(scorer).rate(Schedule.named("single", 2))


def test_dihedral_classes_match_schedule_canonical_forms():
    from ordersearch.search.base import order_to_schedule
    from ordersearch.search.exhaustive import all_orders, one_per_dihedral_class

    orders = all_orders(3)
    assert len(one_per_dihedral_class(orders, 3)) == 5040  # every 3x3 order class has 8 members
    sample = orders[np.random.default_rng(0).choice(len(orders), 400, replace=False)]
    keep = one_per_dihedral_class(sample, 3)
    classes = {order_to_schedule(o, 3).canonical("dihedral") for o in sample}
    assert len(keep) == len(classes)
    assert {order_to_schedule(o, 3).canonical("dihedral") for o in sample[keep]} == classes


def test_adaptive_seeds_go_to_the_unresolved_candidates_only(tmp_path):
    import torch

    from ordersearch.data.latents import Splits
    from ordersearch.evaluation import EvaluationStore, Evaluator, TrainConfig, verify

    torch.set_num_threads(1)
    f = gaussian_field("separable")
    splits = Splits(f.sample(8, 16, 16, seed=0), f.sample(4, 16, 16, seed=1), f.sample(8, 16, 16, seed=2))
    config = TrainConfig(max_steps=100, eval_every=50, warm_steps=50, batch=8, crop=8, lr=3e-3)
    evaluator = Evaluator(splits, config, "cpu", EvaluationStore(tmp_path), progress=False)
    candidates = {"raster": Schedule.named("raster", 2), "lin2023": Schedule.from_grid([[0, 2], [1, 3]]),
                  "single": Schedule.named("single", 2)}
    result = verify(candidates, evaluator, seeds=1, max_seeds=4, report_seeds=1)
    seeds = {k: len(result.selecting(k)) for k in result.evaluations}
    assert seeds[result.winner] >= 2  # one seed claims nothing, so everything unresolved got a second
    for label, c in result.selection.items():  # decided on val
        if c.verdict == "indistinguishable":
            assert seeds[label] == 4 and label in result.unresolved  # the budget ran out on it
    assert result.selection["single"].verdict == "better" and seeds["single"] < 4  # resolved early, then left
    assert max(seeds.values()) <= 4
    assert all([e.seed for e in result.reported(k)] == [4] for k in candidates)  # then one fresh seed for each
    with pytest.raises(OrdersearchError, match="seeds <= max seeds"):
        verify(candidates, evaluator, seeds=3, max_seeds=2)


def test_searches_sharing_one_storage_share_its_trial_budget(tmp_path):
    """Two `search` processes on one new SQLite storage (other --out): neither fails creating the tables
    ("table trial_values already exists") and together they finish the budget, not one trial more (201 of
    200 was seen)."""
    import optuna

    from ordersearch.data.latents import LatentSet, save_latents

    sample = gaussian_field("separable").sample(8, 16, 16, seed=0)
    save_latents(LatentSet.create(sample.y, split_labels=np.array([0] * 4 + [1] * 2 + [2] * 2)), tmp_path / "l.npz")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    for attempt in range(2):  # the race needs both at the end of the budget together: try twice
        procs = [subprocess.Popen([sys.executable, "-m", "ordersearch", "search", "--patch", "3", "--latents",
                                   str(tmp_path / "l.npz"), "--out", str(tmp_path / f"out{attempt}{i}"), "--storage",
                                   url, "--strategies", "optuna-tpe,optuna-random", "--budget", str(40 * (attempt + 1)),
                                   "--quiet"], stderr=subprocess.PIPE, text=True) for i in range(2)]
        for p in procs:
            assert p.wait(timeout=300) == 0, p.stderr.read()
        for sampler in ("tpe", "random"):
            study = optuna.load_study(study_name=f"ordersearch-3x3-optuna-{sampler}-seed0", storage=url)
            assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 40 * (attempt + 1)


def test_a_trial_asked_for_but_not_yet_named_holds_its_place_in_the_budget(tmp_path, monkeypatch):
    """Another search between asking for a trial and naming itself its owner: its trial counts, so the budget is
    never exceeded when it finishes; once it is too old to be a live search's, it no longer blocks."""
    import optuna

    from ordersearch.search import optuna_search

    table = np.random.default_rng(0).random(16) + 1.0
    strategy = OptunaSearch("random", storage=f"sqlite:///{tmp_path / 'shared.db'}")
    strategy.search(TableScorer(table, 2), Budget(trials=3))
    study = strategy.study(2)
    study.ask()  # trial 3: asked for by a search that has not yet written its owner

    def complete() -> int:
        return len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))

    strategy.search(TableScorer(table, 2), Budget(trials=5))
    assert complete() == 4  # trial 3 may still finish: 5 of 5, not 6
    monkeypatch.setattr(optuna_search, "OWNERLESS_SECONDS", 0.0)  # ... or its search died right there
    strategy.search(TableScorer(table, 2), Budget(trials=5))
    assert complete() == 5

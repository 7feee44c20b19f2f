"""`ordersearch run` end to end on a small Gaussian-field latent file, and its input errors."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from ordersearch import Schedule, load_schedule
from ordersearch.cli import main
from ordersearch.data.gaussian import FieldChannel, gaussian_field
from ordersearch.data.latents import LatentSet, save_latents
from ordersearch.estimators import GaussianOracle

def best_name(meta) -> str:
    return meta.name.split("(", 1)[1].rstrip(")")


FAST = ["--max-steps", "20", "--seeds", "1", "--max-seeds", "1", "--report-seeds", "1", "--budget", "15", "--quiet"]


@pytest.fixture(scope="module")
def latent_file(tmp_path_factory):
    f = gaussian_field("separable")
    sample = f.sample(10, 16, 16, seed=0)
    latents = LatentSet.create(sample.y, split_labels=np.array([0] * 6 + [1] * 2 + [2] * 2), name="grf")
    path = tmp_path_factory.mktemp("data") / "grf.npz"
    save_latents(latents, path)
    return path


def test_run_writes_every_output_and_resumes_fast(latent_file, tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "results"
    args = ["run", "--patch", "2", "--latents", str(latent_file), "--out", str(out), *FAST]
    start = time.time()
    assert main(args) == 0
    first_seconds = time.time() - start
    table = capsys.readouterr().out
    folder = out / "patch2"
    for name in ("best.json", "evaluations.csv", "costs.csv", "pareto.csv", "trace.csv", "summary.md", "optuna.db",
                 "checks.csv"):
        assert (folder / name).is_file(), name
    # consistency checks: per-position bits add up; single and checkerboard were also trained at 4x4 (one seed:
    # their comparisons cannot be tested, and say so rather than pass)
    checks = pd.read_csv(folder / "checks.csv").set_index("check")
    assert checks.status["per-position bits sum to the total"] == "passed"
    assert checks.status["single at 2x2 = single at 4x4"] == "untestable"
    assert checks.status["checkerboard at 2x2 = checkerboard at 4x4"] == "untestable"
    assert "Consistency checks: none of 3 failed." in (folder / "summary.md").read_text()
    best, meta = load_schedule(folder / "best.json")
    evals = pd.read_csv(folder / "evaluations.csv")
    assert meta.metrics["estimator"] == "dedicated"
    # the winner is chosen on val with the selection seeds; test rates are reported from fresh report seeds
    assert set(evals.role) == {"selection", "report"}
    means = evals[evals.role == "selection"].groupby("schedule")[["bits_per_latent", "val_bits_per_latent"]].mean()
    leader = means.val_bits_per_latent.idxmin()
    assert meta.metrics["chosen_on"] == "val" and leader in meta.name
    # whole image, interior and edge apart, each from per_image.csv
    parts = pd.read_csv(folder / "per_image.csv").query("schedule == 'best'").groupby("split")[["bits", "latents"]].sum()
    edge_rate = parts.bits["test-edge"] / parts.latents["test-edge"]
    inside_rate = (parts.bits["test"] - parts.bits["test-edge"]) / (parts.latents["test"] - parts.latents["test-edge"])
    assert meta.metrics["edge_bits_per_latent"] == pytest.approx(edge_rate)
    assert meta.metrics["interior_bits_per_latent"] == pytest.approx(inside_rate)
    # best.json holds the leader's translate lowest on val (the patch grid placed against the border; chosen with
    # the selection seeds' models moved), measured with the report seeds' models moved, in per_image.csv
    leader_grid = load_schedule(folder / "schedules" / f"{leader}.json")[0]
    assert best.equivalent(leader_grid)
    assert tuple(meta.metrics["translate_of_leader"]["shift"]) == leader_grid.translation_to(best)
    placed = pd.read_csv(folder / "per_image.csv").query("schedule == 'best'")
    assert set(placed.role) == {"report"}
    rows, val = placed.query("split == 'test'"), placed.query("split == 'val'")
    assert meta.metrics["bits_per_latent"] == pytest.approx(rows.bits.sum() / rows.latents.sum())
    assert meta.metrics["val_bits_per_latent"] == pytest.approx(val.bits.sum() / val.latents.sum())
    assert "## Where the patch grid meets the border" in (folder / "summary.md").read_text()
    assert meta.metrics["best_set"][0] == means.val_bits_per_latent.idxmin()
    assert meta.provenance["data"] and meta.provenance["strategy"] in evals.schedule.values
    assert meta.provenance["config"]["patch"] == 2
    # every verified schedule has its JSON; baselines are among them (labels merged when equal up to translation)
    labels = set(evals.schedule)
    assert {p.stem for p in (folder / "schedules").glob("*.json")} == labels
    assert any("checkerboard" in label for label in labels) and any("single" in label for label in labels)
    from ordersearch.run import stored_weights

    # the winner's trained model ships beside best.json (float16): the codec needs no store
    from ordersearch.models import fitted_state

    shipped = stored_weights(folder / "best.json")
    assert (folder / "best.weights.pt").is_file() and torch.equal(fitted_state(shipped.state, best)["masks"],
                                                                  shipped.state["masks"])
    # it describes itself: the module it builds measures best.json's rate for that seed, with no configuration given
    from ordersearch.data import load_latents
    from ordersearch.models import bits, load_context_model

    model, test = load_context_model(folder / "best.json"), load_latents(latent_file).split().test
    with torch.no_grad():
        total = sum(float(bits(model(torch.from_numpy(y).float()[None], None if p is None else
                                     torch.from_numpy(p).float()[None])).sum())
                    for y, p in zip(test.y, test.prior if test.prior is not None else [None] * len(test.y)))
    rate = total / sum(y.size for y in test.y)
    assert shipped.described and shipped.schedule == best
    assert rate == pytest.approx(meta.metrics["bits_per_latent_per_seed"][0], rel=1e-4)  # float16 weights
    import shutil

    shutil.move(folder / "best.weights.pt", tmp_path / "w.pt")
    stored = stored_weights(folder / "best.json")  # the store's
    assert torch.equal(stored.state["weight"].half().float(), shipped.state["weight"]) and stored.config == shipped.config
    shutil.move(tmp_path / "w.pt", folder / "best.weights.pt")
    # the exact search found the analytic optimum of the Gaussian field (the cheap table is exact there)
    from ordersearch.search import DP, Session, TableScorer

    oracle = TableScorer(GaussianOracle(gaussian_field("separable")).cost_table(2), 2)
    dp_file = next(p for p in (folder / "schedules").glob("*.json") if "dp" in p.stem.split("+"))
    assert Session(oracle).rate(load_schedule(dp_file)[0]) == pytest.approx(DP().search(oracle).rate, abs=1e-12)
    costs = pd.read_csv(folder / "costs.csv")
    assert len(costs) == 8 and costs.code.tolist() == list(range(0, 16, 2))
    pareto = pd.read_csv(folder / "pareto.csv")
    front = pareto[pareto.kind == "front"].bits_per_latent.tolist()
    assert len(front) == 4 and all(b <= a + 1e-12 for a, b in zip(front, front[1:]))
    trace = pd.read_csv(folder / "trace.csv")
    assert set(trace.strategy) == {"dp", "greedy", "optuna-tpe"}
    summary = (folder / "summary.md").read_text()
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in folder.rglob("*") if p.is_file() and "store" not in p.parts
            and p.suffix != ".db"} == {0o666 & ~umask}  # readable by colleagues as the user's umask says
    # one seed: training noise unknown, so no candidate is shown worse, and the report says so
    assert "Best set (not shown worse than the leader)" in summary and "one seed, no claim" in summary
    assert "## Does the order matter here?" in summary and "control-random-1" in summary
    assert "training noise is unknown (one seed of each kind): nothing can be claimed either way" in summary
    # one selection and one report seed: two seeds to set the cheap table's order of orders against
    assert "How far the search can be trusted: over the verified orders" in summary and "trusted" in table
    assert "leader" in table.splitlines()[2]
    per_image = pd.read_csv(folder / "per_image.csv")
    assert set(per_image.split) == {"val", "test", "test-edge", "val-edge"} and set(per_image.schedule) == {
        *evals.schedule, "best"}
    # edges apart: the edge is part of every test image, and the report compares the interior alone
    edge = per_image[per_image.split == "test-edge"].set_index(["schedule", "seed", "image"])
    whole = per_image[per_image.split == "test"].set_index(["schedule", "seed", "image"])
    assert ((edge.latents > 0) & (edge.latents < whole.latents.loc[edge.index])).all()
    assert "## Edges" in summary and "verdict on the interior" in summary
    test_rows = per_image[(per_image.split == "test") & (per_image.schedule != "best")]
    rates = test_rows.groupby(["schedule", "seed"]).apply(lambda g: g.bits.sum() / g.latents.sum(),
                                                          include_groups=False)
    np.testing.assert_allclose(rates.sort_index().to_numpy(),
                               evals.set_index(["schedule", "seed"]).bits_per_latent.sort_index().to_numpy())
    # every verdict re-derives from the committed files alone
    from ordersearch.evaluation import conclude
    from ordersearch.run.folder import read_evaluations, read_report_seeds

    assert read_report_seeds(folder) == (1,)  # --seeds 1 --max-seeds 1: seed 0 chose, seed 1 reports
    again = conclude({}, read_evaluations(folder), report_seeds=read_report_seeds(folder))
    assert again.winner in best_name(meta)
    assert all(e.rate("test-interior") > 0 for group in again.evaluations.values() for e in group)
    for path in (folder / "schedules").glob("*.json"):
        vs = load_schedule(path)[1].metrics.get("vs_best")
        if vs:
            c = again.comparisons[path.stem]
            low = -np.inf if vs["low"] is None else vs["low"]  # null: unbounded (one seed)
            high = np.inf if vs["high"] is None else vs["high"]
            assert (-c.high, -c.low) == pytest.approx((low, high))
    # a second identical run finds every evaluation in the store and every Optuna trial in its storage
    rows = len(evals)
    start = time.time()
    assert main(args) == 0
    assert time.time() - start < first_seconds
    again, _ = load_schedule(folder / "best.json")
    assert again == best and len(pd.read_csv(folder / "evaluations.csv")) == rows
    pd.testing.assert_frame_equal(pd.read_csv(folder / "trace.csv").drop(columns="seconds"),
                                  trace.drop(columns="seconds"))  # a repeated run keeps every trace row
    assert json.loads((folder / "best.json").read_text())["stages"] == [list(r) for r in best.stages]
    # its report says which phases came from the store instead of reprinting their first times as just measured
    assert "- cost table:" in summary and "(from the store)" not in summary
    resumed = (folder / "summary.md").read_text()
    assert "- cost table (from the store):" in resumed and "- pareto front (from the store):" in resumed


@pytest.mark.parametrize("args, message", [
    (["--patch", "5"], "the search covers patches 2 to 4"),
    (["--patch", "2", "--latents", "nope.npz"], "nope.npz"),
    (["--patch", "2", "--latents", "a.npz", "--images", "b"], "not both"),
    (["--patch", "2", "--strategies", "dp,annealing"], "unknown strategy 'annealing'"),
    (["--patch", "2", "--seeds", "0"], "--seeds must be at least 1"),
    (["--patch", "2", "--device", "tpu"], "tpu"),
])
def test_run_input_errors_are_one_line(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ordersearch", "run", "--out", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_patch_larger_than_latents_is_refused(tmp_path):
    small = LatentSet.create(np.zeros((6, 1, 3, 3), dtype=int), split_labels=np.array([0, 0, 0, 0, 1, 2]))
    path = tmp_path / "small.npz"
    save_latents(small, path)
    assert main(["run", "--patch", "4", "--latents", str(path), "--out", str(tmp_path), *FAST]) == 2


def test_plot_writes_every_figure_and_refuses_a_non_run(latent_file, tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "results"
    assert main(["run", "--patch", "2", "--latents", str(latent_file), "--out", str(out), *FAST]) == 0
    assert main(["plot", str(out), "--format", "png,svg"]) == 0
    written = capsys.readouterr().out.split()
    from ordersearch.run import FIGURES

    for name in FIGURES:
        for fmt in ("png", "svg"):
            path = out / "patch2" / "figures" / f"{name}.{fmt}"
            assert str(path) in written and path.stat().st_size > 1000
    # committed or copied results (no store beside them) are drawn only elsewhere, never rewritten in place
    import shutil

    shutil.copytree(out / "patch2", tmp_path / "copied" / "patch2", ignore=shutil.ignore_patterns("store", "figures"))
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "copied")]) == 2
    err = capsys.readouterr().err
    assert "without their store" in err and "--out" in err and not (tmp_path / "copied" / "patch2" / "figures").exists()
    assert main(["plot", str(tmp_path / "copied"), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "patch2" / "orders.png").stat().st_size > 1000
    assert not (tmp_path / "copied" / "patch2" / "figures").exists()
    # a damaged run folder is one line, not a traceback
    for damage in ("{}", "not json", '{"format": "ordersearch.schedule", "version": 1, "stages": [[0, 1], [2, 3]], '
                   '"metrics": {"bits_per_latent": "a"}}'):
        (tmp_path / "copied" / "patch2" / "schedules" / "dp.json").write_text(damage)
        capsys.readouterr()
        assert main(["plot", str(tmp_path / "copied"), "--out", str(tmp_path / "figs")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("dp.json" in err or "not those of a run" in err), err
    assert main(["plot", str(tmp_path / "empty-does-not-exist")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["plot", str(out), "--format", "gif"]) == 2


def test_verify_and_compare_schedule_files(latent_file, tmp_path, capsys):
    from ordersearch import Schedule, save_schedule

    torch.set_num_threads(1)
    a = save_schedule(Schedule.named("raster", 2), tmp_path / "a.json", name="raster")
    b = save_schedule(Schedule.named("checkerboard", 2), tmp_path / "b.json", name="checkerboard")
    common = ["--latents", str(latent_file), "--max-steps", "20", "--seeds", "2", "--store", str(tmp_path / "s"),
              "--quiet"]
    assert main(["verify", str(a), *common]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("raster: ") and "bits/latent" in line and "2 seed(s)" in line
    assert main(["compare", str(a), str(b), *common]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("raster vs checkerboard: A - B = ") and "interval" in out
    assert any(v in out for v in ("better", "worse", "indistinguishable"))
    assert main(["compare", str(a), *common]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"stages": [[0, 0], [2, 3]]}')
    assert main(["verify", str(bad), *common]) == 2
    assert "bad.json" in capsys.readouterr().err


def _outputs(folder, other=None) -> dict[str, object]:
    """Every file a run and `plot` write, with what may differ between two runs taken out: timings, the
    run's own folder name and the time of writing (in the provenance)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if not path.is_file() or rel.split("/")[0] in ("store", "optuna.db", ".lock"):
            continue
        if path.suffix == ".csv":
            frame = pd.read_csv(path)
            out[rel] = frame.drop(columns=[c for c in ("seconds",) if c in frame])
        elif path.suffix in (".md", ".json"):
            text = path.read_text().split("## Timings")[0]
            text = text.replace(str(folder.parent), str(other.parent)) if other else text
            if path.suffix == ".json":
                text = json.loads(text)
                text["provenance"].pop("created")
            out[rel] = text
        else:
            out[rel] = path.read_bytes()
    return out


def test_interrupted_run_resumes_to_the_same_result(latent_file, tmp_path):
    """SIGINT in the middle of the Optuna search, SIGKILL in the middle of verification; the run resumed
    twice writes every file an uninterrupted run writes, figures included (timings aside)."""
    import os
    import signal
    import sqlite3

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def command(out):
        return [sys.executable, "-m", "ordersearch", "run", "--patch", "2", "--latents", str(latent_file),
                "--out", str(out), "--max-steps", "20", "--seeds", "1", "--max-seeds", "1", "--report-seeds", "1",
                "--budget", "80", "--quiet"]

    def count(db, sql):
        try:
            with sqlite3.connect(db, timeout=1) as con:
                return con.execute(sql).fetchone()[0]
        except sqlite3.Error:
            return 0

    def interrupt(sig, db, sql, at_least):
        proc = subprocess.Popen(command(tmp_path / "b"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.time() + 300
        while time.time() < deadline and count(db, sql) < at_least and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be interrupted"
        proc.send_signal(sig)
        return proc, proc.communicate(timeout=120)[1]

    reference = subprocess.run(command(tmp_path / "a"), env=env, capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr
    folder = tmp_path / "b" / "patch2"
    proc, err = interrupt(signal.SIGINT, folder / "optuna.db", "SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'",
                          10)
    assert proc.returncode == 130 and "interrupted; run the same command to resume" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert not (folder / "best.json").exists()
    # killed outright once two verification trainings (the warm start among them) are stored
    proc, _ = interrupt(signal.SIGKILL, folder / "store" / "evaluations.sqlite", "SELECT COUNT(*) FROM evaluations", 2)
    assert proc.returncode == -signal.SIGKILL and not (folder / "best.json").exists()
    resumed = subprocess.run(command(tmp_path / "b"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    for x in ("a", "b"):
        assert main(["plot", str(tmp_path / x / "patch2")]) == 0
    a, b = _outputs(tmp_path / "a" / "patch2"), _outputs(folder, tmp_path / "a" / "patch2")
    assert sorted(a) == sorted(b) and "trace.csv" in a and any(k.startswith("figures/") for k in a)
    for name in a:
        if isinstance(a[name], pd.DataFrame):
            pd.testing.assert_frame_equal(a[name], b[name], obj=name)
        else:
            assert a[name] == b[name], name


def test_poisoning_the_test_split_does_not_change_the_choice(tmp_path):
    """Choices are made on val: test latents replaced by noise change the reported numbers, not the winner, not
    which candidates adaptive seeds went to (two rounds deep here), not a val number."""
    f = gaussian_field("separable")
    y = f.sample(10, 16, 16, seed=0).y
    labels = np.array([0] * 6 + [1] * 2 + [2] * 2)
    noise = [np.random.default_rng(i).integers(-40, 41, a.shape) if lab == 2 else a for i, (a, lab) in
             enumerate(zip(y, labels))]
    chosen = {}
    for name, data in (("clean", y), ("poisoned", noise)):
        path = tmp_path / f"{name}.npz"
        save_latents(LatentSet.create(data, split_labels=labels, name=name), path)
        adaptive = ["--seeds", "1", "--max-seeds", "3", *FAST[FAST.index("--report-seeds"):]]
        assert main(["run", "--patch", "2", "--latents", str(path), "--out", str(tmp_path / name), *FAST[:2],
                     *adaptive]) == 0
        best, meta = load_schedule(tmp_path / name / "patch2" / "best.json")
        evals = pd.read_csv(tmp_path / name / "patch2" / "evaluations.csv")
        chosen[name] = (best.canonical(), meta.metrics["val_bits_per_latent"], meta.metrics["bits_per_latent"],
                        sorted(zip(evals.schedule, evals.seed, evals.role, evals.val_bits_per_latent)))
    assert max(seed for _, seed, role, _ in chosen["clean"][3] if role == "selection") == 2  # 2 adaptive rounds
    assert chosen["clean"][:2] == chosen["poisoned"][:2]  # the same winner, on the same val number
    assert chosen["clean"][3] == chosen["poisoned"][3]  # the same seeds to the same candidates, the same val
    assert chosen["poisoned"][2] > chosen["clean"][2] + 1  # while the test number it reports is noise's


@pytest.mark.slow
def test_on_a_field_where_orders_differ_run_finds_the_exact_optimum_and_calls_the_worst_control_worse(tmp_path):
    """`run` with its defaults on a field whose whole-image rates are exact and whose 2x2 orders differ by 1.1%
    (smooth, 4 x 0.5 lengths rotated 30 degrees): the worst verified control is called worse than the leader, an
    order within 0.1% of the exact optimum is in the best set, no exactly better order is called worse, and the
    checks pass. Measured against ``GaussianOracle.image_rates`` (border offsets missing), not the interior."""
    f = gaussian_field(channels=[FieldChannel("smooth", 6.0, length=(4.0, 0.5), angle=math.pi / 6, nugget=0.002)])
    sample = f.sample(24, 32, 32, seed=0)
    path = tmp_path / "grf.npz"
    save_latents(LatentSet.create(sample.y, split_labels=np.array([0] * 12 + [1] * 6 + [2] * 6), name="grf"), path)
    assert main(["run", "--patch", "2", "--latents", str(path), "--out", str(tmp_path), "--quiet"]) == 0
    oracle = GaussianOracle(f)
    every = [Schedule.from_order([divmod(p, 2) for p in (0, *rest)])
             for rest in itertools.permutations(range(1, 4))]
    exact_optimum = min(oracle.image_rates(s, 32, 32).whole for s in every)
    folder = tmp_path / "patch2"
    best, meta = load_schedule(folder / "best.json")
    files = {p.stem: load_schedule(p) for p in (folder / "schedules").glob("*.json")}
    exact = {label: oracle.image_rates(s, 32, 32).whole for label, (s, _) in files.items()}
    verdict = {label: (m.metrics.get("vs_best") or {}).get("verdict", "leader") for label, (_, m) in files.items()}
    assert max(exact.values()) / exact_optimum - 1 > 0.01, exact  # the candidates span more than 1%
    assert min(exact[k] for k in meta.metrics["best_set"]) <= exact_optimum * 1.001, (meta.metrics, exact)
    leader = meta.name.split("(")[1].rstrip(")")
    controls = [k for k in exact if k.startswith("control-")]
    assert controls and verdict[max(controls, key=exact.get)] == "worse", (verdict, exact)
    for label, v in verdict.items():
        if v == "worse":
            assert exact[label] >= exact[leader], (label, verdict, exact)  # never an exactly better order
    checks = pd.read_csv(folder / "checks.csv").set_index("check").status
    assert (checks == "passed").all(), checks


def test_the_leader_can_be_chosen_on_the_val_interior(latent_file, tmp_path):
    """`--choose-on interior`: the leader is the lowest on the interior of the val latents (re-derived from
    per_image.csv), and best.json and summary.md say so."""
    out = tmp_path / "results"
    assert main(["run", "--patch", "2", "--latents", str(latent_file), "--out", str(out), "--choose-on", "interior",
                 *FAST]) == 0
    folder = out / "patch2"
    meta = load_schedule(folder / "best.json")[1]
    rows = pd.read_csv(folder / "per_image.csv").query("schedule != 'best'")
    sums = rows.groupby(["schedule", "split"])[["bits", "latents"]].sum()
    inside = {k: (sums.bits[k, "val"] - sums.bits[k, "val-edge"]) / (sums.latents[k, "val"] - sums.latents[k, "val-edge"])
              for k in rows.schedule.unique()}
    assert meta.metrics["chosen_on"] == "val-interior" and best_name(meta) == min(inside, key=inside.get)
    assert "the interior of its latents, `--choose-on interior`" in (folder / "summary.md").read_text()


def test_run_says_what_it_does_one_line_per_step_in_a_log(latent_file, tmp_path):
    """On a non-terminal (a log, CI): phase lines and one line per finished evaluation, no redrawn bars."""
    quiet_free = [a for a in FAST if a != "--quiet"]
    proc = subprocess.run([sys.executable, "-m", "ordersearch", "run", "--patch", "2", "--latents",
                           str(latent_file), "--out", str(tmp_path), *quiet_free],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("ordersearch: run --patch 2: 6 train / 2 val / 2 test entries, device cpu")
    for phase in ("[1/4] cost table", "[2/4] search", "[3/4] Pareto front", "[4/4] verification done"):
        assert any(line.startswith(f"ordersearch: {phase}") for line in lines), phase
    verified = [line for line in lines if line.startswith("ordersearch: verified ")]
    evaluations = pd.read_csv(tmp_path / "patch2" / "evaluations.csv")
    pareto = pd.read_csv(tmp_path / "patch2" / "pareto.csv")
    assert len(verified) == len(evaluations) and "selection seed 0: " in verified[0] and "on val" in verified[0]
    assert "report seed 1: " in verified[-1] and "bits/latent on test" in verified[-1]
    assert verified[0].startswith("ordersearch: verified 1/") and " left): " in verified[0]  # count and ETA
    # after the last training the consistency checks are still to come: their estimated seconds
    assert verified[-1].startswith(f"ordersearch: verified {len(evaluations)}/{len(evaluations)} (about ")
    assert "\r" not in proc.stderr  # no progress bar redrawn into the log
    summary = tmp_path / "patch2" / "summary.md"
    assert f"This invocation: {len(evaluations)} of the {len(evaluations)} evaluations trained now" in summary.read_text()
    again = subprocess.run(proc.args, capture_output=True, text=True, timeout=600)  # resumed: nothing redone
    assert again.returncode == 0 and "cost table (from the store): 0 s" in again.stderr, again.stderr
    assert f"This invocation: 0 of the {len(evaluations)} evaluations trained now" in summary.read_text()
    assert pd.read_csv(tmp_path / "patch2" / "pareto.csv").equals(pareto)


def test_an_output_path_that_cannot_be_a_folder_is_one_line(latent_file, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "inside"):
        proc = subprocess.run([sys.executable, "-m", "ordersearch", "run", "--patch", "2", "--latents",
                               str(latent_file), "--out", str(out), *FAST], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and str(a_file) in proc.stderr, proc.stderr


def test_a_second_run_on_a_folder_being_written_is_refused(latent_file, tmp_path, capsys):
    import fcntl

    (tmp_path / "patch2").mkdir()
    with open(tmp_path / "patch2" / ".lock", "a") as held:  # what a running `run` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["run", "--patch", "2", "--latents", str(latent_file), "--out", str(tmp_path), *FAST]) == 2
        assert "another ordersearch run is writing this folder" in capsys.readouterr().err
    assert not (tmp_path / "patch2" / "best.json").exists()
    assert main(["run", "--patch", "2", "--latents", str(latent_file), "--out", str(tmp_path), *FAST]) == 0


def test_on_a_terminal_one_overall_bar_counts_the_whole_run(latent_file, tmp_path):
    """In a terminal: the phase lines, and one bar over the run whose total grows to the trainings planned
    and whose postfix carries verification's time estimate."""
    import fcntl
    import pty
    import re
    import struct
    import termios

    quiet_free = [a for a in FAST if a != "--quiet"]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a terminal 160 wide
    proc = subprocess.Popen([sys.executable, "-m", "ordersearch", "run", "--patch", "2", "--latents",
                             str(latent_file), "--out", str(tmp_path), *quiet_free],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert proc.wait(timeout=600) == 0
    text = screen.decode(errors="replace")
    trainings = len(pd.read_csv(tmp_path / "patch2" / "evaluations.csv"))
    assert "ordersearch: [1/4] cost table" in text and "ordersearch: [4/4] verification done" in text
    counts = re.findall(r"run 2x2 \|[^|]*\| (\d+)/(\d+) \[[^\]]*\]", text)
    assert ("0", "3") in counts  # from the first second: the quick phases
    assert (str(3 + trainings), str(3 + trainings)) in counts  # at the end: every training counted
    assert re.search(r"run 2x2 \|[^|]*\| \d+/\d+ \[[\d:]+, verification, about \d+ (s|min) left\]", text)


def test_search_writes_schedules_and_a_report_without_training(latent_file, tmp_path, capsys):
    """`search`: cost table, strategies and front in seconds, every strategy's schedule as v1 JSON; a later
    `run` on the same folder reuses the table; bad input is one line."""
    start = time.time()
    assert main(["search", "--patch", "2", "--latents", str(latent_file), "--out", str(tmp_path), "--budget", "15",
                 "--quiet"]) == 0
    assert time.time() - start < 60
    out = capsys.readouterr().out
    folder = tmp_path / "patch2"
    for name in ("dp", "greedy", "optuna-tpe"):
        schedule, meta = load_schedule(folder / "schedules" / f"{name}.json")
        assert meta.metrics["verified"] is False and meta.metrics["linear-gaussian"] > 0 and name in out
    assert not (folder / "store" / "evaluations.sqlite").exists()  # nothing trained
    report = (folder / "search.md").read_text()
    assert "Nothing here is verified" in report and "its level is not a codec's rate" in report
    assert "not verified: A cheap estimate ranks context sets" in out  # said beside the cheap numbers
    assert len(pd.read_csv(folder / "costs.csv")) == 8 and (pd.read_csv(folder / "pareto.csv").kind == "front").any()
    run = subprocess.run([sys.executable, "-m", "ordersearch", "run", "--patch", "2", "--latents", str(latent_file),
                          "--out", str(tmp_path), *[a for a in FAST if a != "--quiet"]], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0 and "cost table (from the store): 0 s" in run.stderr, run.stderr[-2000:]
    # before its first training it says how long it expects, from step times measured here
    expect = next(line for line in run.stderr.splitlines() if "[4/4] expect about" in line)
    trainings = int(re.search(r"(\d+) trainings of about", expect)[1])
    assert trainings == len(pd.read_csv(tmp_path / "patch2" / "evaluations.csv")) and "ms/step" in expect
    assert main(["search", "--patch", "2", "--latents", str(tmp_path / "missing.npz"), "--out", str(tmp_path)]) == 2
    assert main(["search", "--patch", "2", "--strategies", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "missing.npz" in err and "unknown strategy 'nope'" in err

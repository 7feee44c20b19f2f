"""The end-to-end job behind ``ordersearch run``: latents -> cost table -> search -> verification -> files.

::

    latents (built-in / --latents / --images)
      -> cheap cost table f(C) for every context set (an estimator from ``estimators.ESTIMATORS``)
      -> strategies (dp, greedy, optuna-tpe, ...) on that table, and the Pareto front
      -> dedicated training of the top candidates and the named baselines, several seeds
      -> <out>/patch<N>/: the files of ``run.folder``

Everything expensive is cached: dedicated evaluations in the evaluation store
(``<out>/patch<N>/store``), Optuna studies in their storage (default
``<out>/patch<N>/optuna.db``), so an interrupted run resumes and a repeated
one finishes fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._version import __version__
from ..data.latents import LatentSet, Splits
from ..estimators import ESTIMATORS, CostEstimator, fit_estimator
from ..errors import OrdersearchError, redact
from ..files import atomic_write
from ..evaluation import EvaluationStore, Evaluator, Verified, agreement, compare, order_agreement, verify
from ..models.context_weights import save_weights, weights_file
from ..schedule import Schedule, baselines, check_patch, context_from_index, context_window_masks
from ..schedule_io import save_schedule
from ..search import DP, Budget, SearchResult, TableScorer, make_strategy, pareto_front
from ..search.base import grid_text
from ..search.pareto import ParetoPoint
from . import folder as files
from .checks import check_schedules, consistency_checks
from .config import CONTROL, RunConfig
from .estimate import estimate
from .progress import RunProgress
from .result import Placement, RunResult
from .summary import summary


def place_leader(verified: Verified, evaluator: Evaluator) -> Placement:
    """The leader's translate with the lowest val rate (its selection seeds' models), measured on test against the
    leader as verified (its report seeds' models: their test numbers saw no choice)."""
    val = evaluator.translates_on_val(verified.selecting(verified.winner))
    chosen = min(val, key=val.get)
    leader = verified.reported(verified.winner)
    moved = evaluator.evaluate_many([(chosen, e.seed) for e in leader])
    return Placement(val, chosen, moved, compare(moved, leader))


def _unique(labelled: list[tuple[str, Schedule]]) -> dict[str, Schedule]:
    """Merge labels of schedules equal up to translation: {'dp+greedy': s, ...}, first occurrence kept."""
    groups: dict[Schedule, tuple[list[str], Schedule]] = {}
    for label, s in labelled:
        groups.setdefault(s.canonical(), ([], s))[0].append(label)
    return {"+".join(labels): s for labels, s in groups.values()}


def run(latents: LatentSet | Splits, config: RunConfig, progress: bool = True, command: str = "") -> RunResult:
    """The whole job; writes its files under ``config.folder`` and returns what it found.

    One run at a time per folder: a second ``run`` on a folder another one is
    writing is refused with one line (the lock dies with its process).
    ``command`` is recorded in the files, the storage's password masked.
    """
    check_patch(config.patch, search=True)
    config.folder.mkdir(parents=True, exist_ok=True)
    with _folder_lock(config.folder):
        shown = RunProgress(config.patch, progress)
        try:
            return _run(latents, config, shown, redact(command, config.storage))
        finally:
            shown.close()


@contextlib.contextmanager
def _folder_lock(folder: Path):
    import fcntl

    with open(folder / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OrdersearchError(f"{folder}: another ordersearch run is writing this folder; wait for it to "
                                   "finish or give another --out") from None
        yield  # the lock goes with the file, and with the process if it dies


@dataclass
class Cheap:
    """What the cheap phases found: the cost table, each strategy's result, the Pareto front, their seconds."""

    table: np.ndarray
    scorer: TableScorer
    results: dict[str, SearchResult]
    front: list[ParetoPoint]
    timings: dict[str, float]


def cheap_search(evaluator: Evaluator, config: RunConfig, shown: RunProgress, phases: int = 4,
                 estimator: CostEstimator | None = None) -> Cheap:
    """Phases 1-3 of a run, each cached in the run's store: cost table, search strategies, Pareto front.

    ``estimator``: one made already (a codec's any-order model), instead of ``config.estimator`` fitted on the
    evaluator's data.

    ``timings`` are this call's seconds; a phase taken from the store says so in its label (``cost table
    (from the store)``), so a resumed run never reports stored times as if just measured.
    """
    from tqdm.auto import tqdm

    progress, say, n, folder = shown.enabled, shown.say, config.patch, config.folder
    storage = config.storage or f"sqlite:///{(folder / files.OPTUNA).resolve()}"
    timings: dict[str, float] = {}
    start = time.time()
    # a given estimator (a codec's model) is part of what the table is of: another codec, another table
    data = evaluator.data if estimator is None else f"{evaluator.data} {estimator.source}"
    cache = _TableCache(folder / files.STORE, config, data)
    say(f"[1/{phases}] cost table: {config.estimator} estimator, {2 ** (n * n)} context sets")
    table = cache.table()
    if table is None:
        estimator = estimator or fit_estimator(config.estimator, evaluator, n, config.seed)
        table = estimator.cost_table(n, config.kernel, progress)
        cache.save(table=table)
    stored = " (from the store)" if cache.stored is not None else ""
    timings[f"cost table{stored}"] = seconds = time.time() - start
    say(f"[1/{phases}] cost table{stored}: {seconds:.0f} s")
    shown.phase_done("search")
    scorer = TableScorer(table, n, config.kernel, config.estimator)
    results: dict[str, SearchResult] = {}
    say(f"[2/{phases}] search: {', '.join(config.strategies)}")
    for name in tqdm(config.strategies, desc="search strategies", disable=not progress or None, leave=False):
        start = time.time()
        results[name] = make_strategy(name, config.seed, storage).search(
            scorer, Budget(trials=config.trials, seconds=config.seconds))
        seconds = time.time() - start
        # a study resumed from its storage replays trials whose own times are older than this call
        stored = " (trials from the store)" if results[name].seconds > seconds + 1.0 else ""
        timings[f"search {name}{stored}"] = seconds
        say(f"[2/{phases}] {name}: rate {results[name].rate:.4f} (cheap) in {seconds:.1f} s"
            + (f"; its trials are from the store (they took {results[name].seconds:.1f} s when run)" if stored else ""))
    shown.phase_done("Pareto front")
    start = time.time()
    front = cache.front()
    stored = " (from the store)" if front is not None else ""
    if front is None:
        front = pareto_front(scorer, progress=progress)
        cache.save(table=table, front=front)
    timings[f"pareto front{stored}"] = seconds = time.time() - start
    say(f"[3/{phases}] Pareto front{stored}: best schedule for 1 to {n * n} stages in {seconds:.1f} s")
    shown.phase_done("verification")
    return Cheap(table, scorer, results, front, timings)


def search_only(latents: LatentSet | Splits, config: RunConfig, progress: bool = True, command: str = "",
                estimator: CostEstimator | None = None) -> Cheap:
    """``ordersearch search``: the cheap phases of ``run`` only (no dedicated training) and their files.

    Writes into the run folder (so a later ``run`` there reuses the table,
    the front, every Optuna trial and an any-order model): costs.csv,
    pareto.csv, trace.csv, schedules/<strategy>.json, the best schedule of
    each stage count (schedules/best-<k>-stage.json) and the report
    search.md. ``estimator``: see ``cheap_search``.
    """
    check_patch(config.patch, search=True)
    config.folder.mkdir(parents=True, exist_ok=True)
    with _folder_lock(config.folder):
        shown = RunProgress(config.patch, progress)
        try:
            # the any-order model is kept for the run that verifies (it starts there): the one estimator whose
            # training a later run reuses
            kept = config.estimator == "any-order" and estimator is None
            evaluator = Evaluator(latents, config.train, config.device,
                                  EvaluationStore(config.folder / files.STORE) if kept else None, progress)
            # only the per-set dedicated models train on crops here
            evaluator.splits.check(config.patch, config.train.crop if config.estimator == "dedicated-set" else 1)
            shown.say(f"search --patch {config.patch}: cost table and search only, no dedicated training; "
                      f"writing {config.folder}")
            cheap = cheap_search(evaluator, config, shown, phases=3, estimator=estimator)
        finally:
            shown.close()
        _write_search(cheap, config, evaluator.data, redact(command, config.storage),
                      None if estimator is None else estimator.source)
    return cheap


#: what a cheap rate is, said wherever one is printed without a verified one beside it
CHEAP_CAVEAT = ("A cheap estimate ranks context sets for the search; its level is not a codec's rate and its order of "
                "near-equal orders can differ from dedicated training's (how far they agreed on the built-in "
                "latents: results/fidelity.md and fidelity_orders.md).")


def _write_search(cheap: Cheap, config: RunConfig, data: str, command: str, given: str | None = None) -> None:
    """``given``: where the estimator given to ``search_only`` came from (a codec file), else None."""
    folder, n, split = config.folder, config.patch, ESTIMATORS[config.estimator].split
    provenance = {"data": data, "command": command, "estimator": config.estimator}  # masked by search_only
    for name, res in cheap.results.items():
        save_schedule(res.schedule, folder / files.SCHEDULES / f"{name}.json", kernel=config.kernel, name=name,
                      metrics={config.estimator: res.rate, "estimator": config.estimator, "split": split,
                               "verified": False},
                      provenance={**provenance, "strategy": name})
    for p in cheap.front:  # a codec that decodes with any schedule lets its user pick the stage count
        if p.schedule.num_stages != p.stages:  # no schedule of exactly that many stages is better than fewer
            continue
        save_schedule(p.schedule, folder / files.SCHEDULES / f"best-{p.stages}-stage.json", kernel=config.kernel,
                      name=f"best-{p.stages}-stage", metrics={config.estimator: p.rate, "estimator": config.estimator,
                                                              "split": split, "verified": False},
                      provenance={**provenance, "strategy": "pareto"})
    _write_search_tables(folder, config, cheap)
    about = (f"Estimator: {config.estimator} (bits per latent element, scored on its {split} split). {CHEAP_CAVEAT} "
             f"Nothing here is verified by dedicated training: `ordersearch run --patch {n}` on the same --out reuses "
             "this table and these trials, then verifies." if given is None else
             f"Estimator: the any-order context model of the codec {given}, on that codec's latents of its val photos "
             "(bits per latent element of y, on fixed crops; a file also holds z and headers: `ordersearch codec "
             "eval` measures real files). The table is this one model's: orders that differ by less than its "
             "training noise are not told apart here; nothing is verified by dedicated training.")
    lines = [f"# ordersearch search: {n}x{n} patch (cost table and search only)", "",
             f"Command: `{command or 'ordersearch search --patch ' + str(n)}`", "", about,
             "", "| strategy | rate (cheap) | scorer calls | schedule |", "|---|---|---|---|"]
    lines += [f"| {name} | {res.rate:.4f} | {res.calls} | {grid_text(res.schedule)} |"
              for name, res in cheap.results.items()]
    lines += ["", "| stages | best rate (cheap) | schedule |", "|---|---|---|"]
    lines += [f"| {p.stages} | {p.rate:.4f} | {grid_text(p.schedule)} |" for p in cheap.front]
    lines += ["", "## Timings (seconds)", ""] + [f"- {k}: {t:.1f}" for k, t in cheap.timings.items()]
    atomic_write(folder / files.SUMMARY_SEARCH, ("\n".join(lines) + "\n").encode())


def _run(latents: LatentSet | Splits, config: RunConfig, shown: RunProgress, command: str) -> RunResult:
    say, n = shown.say, config.patch
    folder = config.folder
    store = EvaluationStore(folder / files.STORE)
    evaluator = Evaluator(latents, config.train, config.device, store, shown.enabled)
    splits = evaluator.splits
    splits.check(n, config.train.crop)  # before any search work
    say(f"run --patch {n}: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test entries, "
        f"device {evaluator.device}; writing {folder}")
    cheap = cheap_search(evaluator, config, shown)
    table, results, front, timings = cheap.table, cheap.results, cheap.front, cheap.timings

    labelled = [(name, r.schedule) for name, r in results.items()]
    if "dp" in results:
        labelled += [(f"dp#{i + 2}", s) for i, (s, _) in enumerate(results["dp"].ranked[1:config.verify_top])]
    # the best 2- and 4-stage grouped schedules: is checkerboard the best 2-stage one, what do 4 stages buy?
    labelled += [(f"best-{p.stages}-stage", p.schedule) for p in front
                 if p.stages in (2, 4) and p.stages < n * n and p.schedule.num_stages == p.stages]
    labelled += list(baselines(n).items())
    labelled += list(negative_controls(table, n, config.seed).items())
    candidates = _unique(labelled)
    cheap = {label: scorer_rate(table, s) for label, s in candidates.items()}
    start = time.time()
    say(f"[4/4] verification: {len(candidates)} candidates x {config.seeds} selection seeds on val (up to "
        f"{config.max_seeds} for those indistinguishable from the leader there), then {config.report_seeds} fresh "
        f"report seeds each on test, "
        f"{'one at a time' if evaluator.stack == 1 else f'up to {evaluator.stack} trained together'}")
    expected = estimate(evaluator, candidates, config.seeds, config.max_seeds, config.report_seeds,
                        check_schedules(n))
    shorter = [*(["--seeds 2"] if config.seeds > 2 else []), f"--max-seeds {config.seeds}",
               *(["--report-seeds 1"] if config.report_seeds > 1 else []), "--max-steps 3000",
               *([f"--patch {n - 1}"] if n > 2 else []), *(["a GPU (--device cuda)"] if evaluator.device.type == "cpu"
                                                           else [])]
    say(f"[4/4] {expected.line()}" + (f"; shorter: {', '.join(shorter)}" if expected.high > 900 else ""))
    shown.plan(len(candidates) * (config.seeds + config.report_seeds), expected.low)
    verified = verify(candidates, evaluator, config.seeds, config.max_seeds, config.report_seeds,
                      report=lambda f: shown.finished(f, expected.left(f)), chosen_on=config.choice_split)
    timings["verification"] = time.time() - start
    say(f"[4/4] verification done in {timings['verification']:.0f} s: leader {verified.winner}")
    start = time.time()
    placed = place_leader(verified, evaluator)
    timings["placing the patch grid"] = time.time() - start
    shift = candidates[verified.winner].translation_to(placed.schedule)
    say(f"patch grid: of the leader's {len(placed.val)} translates, shift {shift} is the lowest on val; on test "
        f"{placed.comparison.difference:+.4f} bits/latent against the leader as verified")
    start = time.time()
    extra = check_schedules(n)
    say(f"consistency checks: {', '.join(extra)} x {config.report_seeds} report seeds")
    pairs = [(label, seed) for seed in verified.report_seeds for label in extra]
    found: dict[str, list] = {label: [] for label in extra}
    for (label, _), ev in zip(pairs, evaluator.evaluate_many([(extra[k], s) for k, s in pairs])):
        found[label].append(ev)
    checks = consistency_checks(verified, found, n, splits.test, config.train.score_border)
    timings["consistency checks"] = time.time() - start
    failed = [c.name for c in checks if c.status == "failed"]
    say(f"consistency checks: {len(checks) - len(failed)} of {len(checks)} not failed"
        + (f"; FAILED: {'; '.join(failed)}" if failed else ""))
    # like with like: a cost table holds f(C), a latent's rate with its whole window, which dedicated training
    # measures on the interior; the edge (fewer neighbours, the grid's phase) is verification's alone
    split = "test-interior" if all(e.edge_image_bits is not None and sum(e.split_bits("test-interior")[1])
                                   for group in verified.evaluations.values() for e in group) else "test"
    fidelity = agreement([verified.mean(k, split) for k in candidates], [cheap[k] for k in candidates])
    orders = [k for k, s in candidates.items() if s.is_permutation and s.patch == n]
    per_seed: dict[int, dict[str, float]] = {}
    for k in orders:
        for e in verified.evaluations[k]:
            per_seed.setdefault(e.seed, {})[k] = e.rate(split)
    trust = order_agreement({k: cheap[k] for k in orders}, per_seed)
    result = RunResult(config, results, front, verified, candidates, cheap, fidelity, timings, evaluator.data,
                       trust, checks, placed)
    write_outputs(result, table, splits, command)
    # what encode / decode load for best.json, so the run folder compresses without its (git-ignored) store
    winner = verified.reported(verified.winner)
    weights = store.schedule_weights(placed.schedule, config.train.to_dict(), evaluator.data,
                                     min(e.seed for e in winner))
    if weights is not None:
        save_weights(weights_file(folder / files.BEST), weights)
    else:  # never leave an earlier run's winner's weights beside this run's best.json
        weights_file(folder / files.BEST).unlink(missing_ok=True)
    store.close()
    return result


#: estimators whose table depends on the dedicated training protocol
_TRAINED_WITH_PROTOCOL = ("shared", "any-order", "dedicated-set")


class _TableCache:
    """The cost table and Pareto front of a run, kept beside its evaluations: a resumed run does not redo them.

    One ``.npz`` per (release, estimator, seed, patch, kernel, training
    protocol, data) in ``<store>/tables/``.
    """

    def __init__(self, store: Path, config: RunConfig, data: str):
        # the training protocol only where the estimator trains with it: `search` then `run --max-steps N`
        # share a linear-Gaussian or held-out table
        protocol = config.train.to_dict() if config.estimator in _TRAINED_WITH_PROTOCOL else None
        blob = json.dumps([__version__, config.estimator, config.seed, config.patch, config.kernel,
                           protocol, data], sort_keys=True)  # a new release recomputes
        self.path = store / "tables" / f"{hashlib.sha256(blob.encode()).hexdigest()[:32]}.npz"
        self.stored = self._load()  # read once: table and front come from the same file

    def _load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            return None  # damaged: recompute

    def table(self) -> np.ndarray | None:
        return None if self.stored is None else self.stored["table"]

    def front(self) -> list[ParetoPoint] | None:
        s = self.stored
        if s is None or "front_grids" not in s:
            return None
        return [ParetoPoint(int(t), float(r), Schedule.from_grid(g), float(e)) for t, r, g, e in
                zip(s["front_stages"], s["front_rates"], s["front_grids"], s["front_exact"])]

    def save(self, table: np.ndarray, front: list[ParetoPoint] | None = None) -> None:
        arrays = {"table": table}
        if front is not None:
            arrays.update(front_stages=np.array([p.stages for p in front]),
                          front_rates=np.array([p.rate for p in front]),
                          front_grids=np.stack([p.schedule.array() for p in front]),
                          front_exact=np.array([p.exact_stages_rate for p in front]))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write(self.path, buf.getvalue())


def negative_controls(table: np.ndarray, patch: int, seed: int) -> dict[str, Schedule]:
    """Orders verified to tell whether the order matters: the cost table's worst order and two random orders."""
    worst = DP().search(TableScorer(-table, patch, name="negated")).schedule
    return {f"{CONTROL}worst-cheap": worst,
            **{f"{CONTROL}random-{i}": Schedule.named("random", patch, seed=seed + i) for i in (1, 2)}}


def scorer_rate(table: np.ndarray, schedule: Schedule) -> float:
    return float(table[schedule.context_indices().ravel()].mean())


# ------------------------------------------------------------------------------------ outputs
def _finite(x: float) -> float | None:
    """JSON has no infinity: an unbounded interval end (training noise unknown) is written as null."""
    return x if np.isfinite(x) else None


def _interior_and_edge(evaluations: list) -> dict[str, float]:
    """Test bits per latent of the interior and of the edge (within kernel // 2 of the border), mean over seeds."""
    if any(e.edge_image_bits is None or not sum(e.edge_image_elements) for e in evaluations):
        return {}
    return {f"{part}_bits_per_latent": float(np.mean([e.rate(f"test-{part}") for e in evaluations]))
            for part in ("interior", "edge") if all(sum(e.split_bits(f"test-{part}")[1]) for e in evaluations)}


def write_outputs(r: RunResult, table: np.ndarray, splits: Splits, command: str) -> None:
    """Every file of the run folder (``run.folder``)."""
    c, folder, v = r.config, r.config.folder, r.verified
    n = c.patch
    provenance = {"data": r.data, "command": command,  # masked by run
                  "config": {**asdict(c), "out": str(c.out), "train": c.train.to_dict(),
                             "storage": c.storage and redact(c.storage, c.storage)}}
    winner, ev = v.schedules[v.winner], v.reported(v.winner)
    if r.placed is not None:  # the leader's translate chosen on val: what best.json holds
        winner, ev = r.placed.schedule, r.placed.evaluations
    runner_up = v.ranking()[1] if len(v.ranking()) > 1 else None
    metrics = {"bits_per_latent": float(np.mean([e.bits_per_latent for e in ev])), "estimator": "dedicated",
               "split": "test", "chosen_on": c.choice_split, "val_bits_per_latent": float(np.mean([e.rate("val") for e in ev])),
               **_interior_and_edge(ev),
               "seeds": len(ev), "selection_seeds": len(v.selecting(v.winner)),
               "bits_per_latent_per_seed": [e.bits_per_latent for e in ev],
               "best_set": v.best_set(), c.estimator: r.cheap[v.winner]}
    if r.placed is not None:
        cmp = r.placed.comparison
        metrics["translate_of_leader"] = {
            "shift": list(v.schedules[v.winner].translation_to(winner)), "difference": cmp.difference,
            "low": _finite(cmp.low), "high": _finite(cmp.high), "level": cmp.level, "verdict": cmp.verdict}
    if ev[0].bpp is not None:
        metrics["bpp_y"] = float(np.mean([e.bpp for e in ev]))
    if runner_up:
        cmp = v.comparisons[runner_up]
        metrics["vs_runner_up"] = {"runner_up": runner_up, "difference": cmp.difference, "low": _finite(cmp.low),
                                   "high": _finite(cmp.high), "level": cmp.level, "verdict": cmp.verdict,
                                   "detectable": _finite(cmp.detectable)}
    save_schedule(winner, folder / files.BEST, kernel=c.kernel, name=f"best-{n}x{n} ({v.winner})",
                  metrics=metrics, provenance={**provenance, "strategy": v.winner})
    schedules_dir = folder / files.SCHEDULES
    schedules_dir.mkdir(exist_ok=True)
    for label, s in r.candidates.items():
        evs = v.reported(label)
        m = {c.estimator: r.cheap[label], "bits_per_latent": v.mean(label), "estimator": "dedicated",
             "val_bits_per_latent": v.mean(label, "val"), **_interior_and_edge(evs),
             "seeds": len(evs), "selection_seeds": len(v.selecting(label)),
             "bits_per_latent_per_seed": [e.bits_per_latent for e in evs],
             "bits_per_position": np.mean([e.per_position for e in evs], axis=0).tolist()}
        if label != v.winner:
            cmp = v.comparisons[label]  # best - this
            m["vs_best"] = {"difference": -cmp.difference, "low": _finite(-cmp.high), "high": _finite(-cmp.low),
                            "level": cmp.level, "verdict": cmp.of_b, "detectable": _finite(cmp.detectable)}
        save_schedule(s, schedules_dir / f"{label}.json", kernel=c.kernel, name=label, metrics=m,
                      provenance={**provenance, "strategy": label})
    def role(e) -> str:
        return "report" if e.seed in v.report_seeds else "selection"

    files.write_table(folder, "evaluations.csv", [
        {"schedule": label, "grid": grid_text(r.candidates[label]), "seed": e.seed, "role": role(e),
         "estimator": e.estimator, "bits_per_latent": e.bits_per_latent, "val_bits_per_latent": e.rate("val"),
         "bpp_y": e.bpp, "seconds": e.seconds, "steps": e.steps, "device": e.device, "cheap": r.cheap[label]}
        for label, evs in v.evaluations.items() for e in evs])
    placed = {} if r.placed is None else {files.PLACED: r.placed.evaluations}
    files.write_table(folder, "per_image.csv", [
        {"schedule": label, "seed": e.seed, "role": role(e), "split": split, "image": i, "bits": b, "latents": k}
        for label, evs in {**v.evaluations, **placed}.items() for e in evs
        for split in ("val", "test", *(("test-edge",) if e.edge_image_bits is not None else ()),
                      *(("val-edge",) if e.val_edge_image_bits is not None else ()))
        for i, (b, k) in enumerate(zip(*e.split_bits(split)))])
    files.write_table(folder, "checks.csv", [
        {"check": k.name, "status": k.status, "difference": k.difference, "low": k.low, "high": k.high,
         "detail": k.detail} for k in r.checks])
    _write_search_tables(folder, c, Cheap(table, None, r.results, r.front, r.timings))
    atomic_write(folder / files.SUMMARY, summary(r, splits, command).encode())


def _write_search_tables(folder: Path, c: RunConfig, cheap: Cheap) -> None:
    """costs.csv, pareto.csv and trace.csv: what the cheap phases found."""
    n, table = c.patch, cheap.table
    codes = np.arange(0, 2 ** (n * n), 2)
    sizes = context_window_masks(codes, n, c.kernel).sum(axis=(1, 2))
    files.write_table(folder, "costs.csv", [
        {"code": int(k), "context": " ".join(f"{a},{b}" for a, b in sorted(context_from_index(k, n))),
         "decoded_neighbours": int(size), "bits_per_latent": float(table[k])} for k, size in zip(codes, sizes)])
    rows = [{"kind": "front", "label": f"best {p.stages} stages", "stages": p.schedule.num_stages, "budget": p.stages,
             "bits_per_latent": p.rate, "grid": grid_text(p.schedule)} for p in cheap.front]
    rows += [{"kind": "named", "label": name, "stages": s.num_stages, "budget": s.num_stages,
              "bits_per_latent": scorer_rate(table, s), "grid": grid_text(s)} for name, s in baselines(n).items()]
    files.write_table(folder, "pareto.csv", rows)
    files.write_table(folder, "trace.csv", [{"strategy": name, **asdict(t)} for name, res in cheap.results.items()
                                            for t in res.trace])

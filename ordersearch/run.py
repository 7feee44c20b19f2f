"""The end-to-end job behind ``ordersearch run``: latents -> cost table -> search -> verification -> files.

::

    latents (built-in / --latents / --images)
      -> cheap cost table f(C) for every context set (linear-Gaussian or shared scorer)
      -> strategies (dp, greedy, optuna-tpe, ...) on that table, and the Pareto front
      -> dedicated training of the top candidates and the named baselines, several seeds
      -> <out>/patch<N>/: best.json, schedules/, evaluations.csv, costs.csv, pareto.csv, trace.csv, summary.md

Everything expensive is cached: dedicated evaluations in the evaluation store
(``<out>/patch<N>/store``), Optuna studies in their storage (default
``<out>/patch<N>/optuna.db``), so an interrupted run resumes and a repeated
one finishes fast. Every output file is written atomically.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .data.latents import LatentSet, Splits
from .errors import OrdersearchError
from .fidelity import Agreement, agreement
from .files import atomic_write
from .harness import TrainConfig, as_splits, check_data, data_fingerprint
from .schedule import Schedule, context_from_index, context_window_masks
from .schedule_io import save_schedule
from .search import Budget, SearchResult, TableScorer, make_strategy, pareto_front
from .search.pareto import ParetoPoint
from .search.verify import Verified, verify
from .store import EvaluationStore

DEFAULT_STRATEGIES = ("dp", "greedy", "optuna-tpe")
ESTIMATORS = ("linear-gaussian", "shared")


@dataclass
class RunConfig:
    """Everything ``ordersearch run`` takes besides the data."""

    patch: int
    kernel: int = 5
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    trials: int = 200
    seconds: float | None = None
    verify_top: int = 2
    seeds: int = 2
    estimator: str = "linear-gaussian"
    device: str = "cpu"
    out: Path = Path("results")
    storage: str | None = None
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def folder(self) -> Path:
        return Path(self.out) / f"patch{self.patch}"


def baselines(patch: int) -> dict[str, Schedule]:
    """The schedules people use today, where defined for this patch size."""
    out = {"raster": Schedule.named("raster", patch)}
    for name in ("lin2023", "checkerboard", "quadtree"):
        try:
            out[name] = Schedule.named(name, patch)
        except OrdersearchError:
            pass
    if patch == 2:  # DCVC-DC / TinyLIC: (0,0) -> (1,1) -> (0,1) -> (1,0)
        out["diagonal-second"] = Schedule.from_order([(0, 0), (1, 1), (0, 1), (1, 0)])
    out["single"] = Schedule.named("single", patch)
    return out


def cost_table(splits: Splits, config: RunConfig, progress: bool) -> tuple[np.ndarray, str, float]:
    """The cheap estimator's f(C) for every set of the patch, its name, and seconds."""
    start = time.time()
    if config.estimator == "linear-gaussian":
        from .models.linear_gaussian import LinearGaussianScorer

        table = LinearGaussianScorer.from_latents(splits.train, config.kernel).cost_table(config.patch)
    elif config.estimator == "shared":
        from .models.shared import SharedConfig, train_shared_scorer

        est = train_shared_scorer(splits, config.patch, SharedConfig(kernel=config.kernel), seed=config.seed,
                                  device=config.device, progress=progress)
        table = est.cost_table(progress=progress)
    else:
        raise OrdersearchError(f"unknown estimator {config.estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    return table, config.estimator, time.time() - start


@dataclass
class RunResult:
    config: RunConfig
    results: dict[str, SearchResult]
    front: list[ParetoPoint]
    verified: Verified
    candidates: dict[str, Schedule]
    cheap: dict[str, float]
    fidelity: Agreement
    timings: dict[str, float]
    data: str


def _unique(labelled: list[tuple[str, Schedule]]) -> dict[str, Schedule]:
    """Merge labels of schedules equal up to translation: {'dp+greedy': s, ...}, first occurrence kept."""
    groups: dict[Schedule, tuple[list[str], Schedule]] = {}
    for label, s in labelled:
        groups.setdefault(s.canonical(), ([], s))[0].append(label)
    return {"+".join(labels): s for labels, s in groups.values()}


def run(latents: LatentSet | Splits, config: RunConfig, progress: bool = True, command: str = "") -> RunResult:
    """The whole job; writes its files under ``config.folder`` and returns what it found."""
    from tqdm.auto import tqdm

    n = config.patch
    if not 2 <= n <= 4:
        raise OrdersearchError(f"--patch {n}: the search covers patches 2, 3 and 4 (the exact search of "
                               f"an n x n patch needs 2^(n*n) states)")
    splits = as_splits(latents)
    check_data(splits, n, config.train.crop)  # the harness's checks, before any search work
    folder = config.folder
    folder.mkdir(parents=True, exist_ok=True)
    storage = config.storage or f"sqlite:///{(folder / 'optuna.db').resolve()}"
    timings: dict[str, float] = {}

    table, estimator, timings["cost table"] = cost_table(splits, config, progress)
    scorer = TableScorer(table, n, config.kernel, estimator)
    results: dict[str, SearchResult] = {}
    for name in tqdm(config.strategies, desc="search strategies", disable=not progress, leave=False):
        results[name] = make_strategy(name, config.seed, storage).search(
            scorer, Budget(trials=config.trials, seconds=config.seconds))
        timings[f"search {name}"] = results[name].seconds
    start = time.time()
    front = pareto_front(scorer, progress=progress)
    timings["pareto front"] = time.time() - start

    labelled = [(name, r.schedule) for name, r in results.items()]
    if "dp" in results:
        labelled += [(f"dp#{i + 2}", s) for i, (s, _) in enumerate(results["dp"].ranked[1:config.verify_top])]
    # the best 2- and 4-step grouped schedules: is checkerboard the best 2-step schedule, what do 4 steps buy?
    labelled += [(f"best-{p.steps}-step", p.schedule) for p in front
                 if p.steps in (2, 4) and p.steps < n * n and p.schedule.num_stages == p.steps]
    labelled += list(baselines(n).items())
    candidates = _unique(labelled)
    cheap = {label: scorer_rate(table, s) for label, s in candidates.items()}
    start = time.time()
    store = EvaluationStore(folder / "store")
    verified = verify(candidates, splits, store, config.train, config.seeds, config.device, progress)
    timings["verification"] = time.time() - start
    fidelity = agreement([verified.mean(k) for k in candidates], [cheap[k] for k in candidates])
    result = RunResult(config, results, front, verified, candidates, cheap, fidelity, timings,
                       data_fingerprint(splits))
    write_outputs(result, table, splits, store, command)
    store.close()
    return result


def scorer_rate(table: np.ndarray, schedule: Schedule) -> float:
    return float(table[schedule.context_indices().ravel()].mean())


# ------------------------------------------------------------------------------------ outputs
def _csv(path: Path, frame: pd.DataFrame) -> None:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    atomic_write(path, buf.getvalue().encode())


def _grid(s: Schedule) -> str:
    return " / ".join(" ".join(str(v) for v in row) for row in s.stages)


def write_outputs(r: RunResult, table: np.ndarray, splits: Splits, store: EvaluationStore, command: str) -> None:
    c, folder, v = r.config, r.config.folder, r.verified
    n = c.patch
    provenance = {"data": r.data, "config": {**asdict(c), "out": str(c.out), "train": c.train.to_dict()},
                  "command": command}
    winner = v.schedules[v.winner]
    ev = v.evaluations[v.winner]
    runner_up = v.ranking()[1] if len(v.ranking()) > 1 else None
    metrics = {"bits_per_latent": v.mean(v.winner), "estimator": "dedicated", "split": "test",
               "seeds": len(ev), "bits_per_latent_per_seed": [e.bits_per_latent for e in ev],
               "ci95_images": ev[0].ci95(), c.estimator: r.cheap[v.winner]}
    if ev[0].bpp is not None:
        metrics["bpp_y"] = float(np.mean([e.bpp for e in ev]))
    if runner_up:
        cmp = v.comparisons[runner_up]
        metrics["vs_runner_up"] = {"runner_up": runner_up, "difference": cmp.difference, "low": cmp.low,
                                   "high": cmp.high, "verdict": cmp.verdict}
    save_schedule(winner, folder / "best.json", kernel=c.kernel, name=f"best-{n}x{n} ({v.winner})",
                  metrics=metrics, provenance={**provenance, "strategy": v.winner})
    schedules_dir = folder / "schedules"
    schedules_dir.mkdir(exist_ok=True)
    for label, s in r.candidates.items():
        evs = v.evaluations[label]
        m = {c.estimator: r.cheap[label], "bits_per_latent": v.mean(label), "estimator": "dedicated",
             "seeds": len(evs), "bits_per_latent_per_seed": [e.bits_per_latent for e in evs],
             "bits_per_position": np.mean([e.per_position for e in evs], axis=0).tolist()}
        if label != v.winner:
            cmp = v.comparisons[label]  # best - this
            m["vs_best"] = {"difference": -cmp.difference, "low": -cmp.high, "high": -cmp.low,
                            "verdict": {"better": "worse", "worse": "better"}.get(cmp.verdict, cmp.verdict)}
        save_schedule(s, schedules_dir / f"{label}.json", kernel=c.kernel, name=label, metrics=m,
                      provenance={**provenance, "strategy": label})
    _csv(folder / "evaluations.csv", pd.DataFrame([
        {"schedule": label, "grid": _grid(r.candidates[label]), "seed": e.seed, "estimator": e.estimator,
         "bits_per_latent": e.bits_per_latent, "bpp_y": e.bpp, "seconds": e.seconds, "steps": e.steps,
         "device": e.device, c.estimator: r.cheap[label]}
        for label, evs in v.evaluations.items() for e in evs]))
    codes = np.arange(0, 2 ** (n * n), 2)
    sizes = context_window_masks(codes, n, c.kernel).sum(axis=(1, 2))
    _csv(folder / "costs.csv", pd.DataFrame({
        "code": codes, "context": [" ".join(f"{a},{b}" for a, b in sorted(context_from_index(k, n))) for k in codes],
        "decoded_neighbours": sizes, "bits_per_latent": table[codes]}))
    rows = [{"kind": "front", "label": f"best {p.steps} steps", "steps": p.schedule.num_stages, "budget": p.steps,
             "bits_per_latent": p.rate, "grid": _grid(p.schedule)} for p in r.front]
    rows += [{"kind": "named", "label": name, "steps": s.num_stages, "budget": s.num_stages,
              "bits_per_latent": scorer_rate(table, s), "grid": _grid(s)} for name, s in baselines(n).items()]
    _csv(folder / "pareto.csv", pd.DataFrame(rows))
    _csv(folder / "trace.csv", pd.DataFrame([{"strategy": name, **asdict(t)} for name, res in r.results.items()
                                             for t in res.trace]))
    atomic_write(folder / "summary.md", summary(r, splits, command).encode())


def summary(r: RunResult, splits: Splits, command: str) -> str:
    c, v = r.config, r.verified
    n = c.patch
    lines = [f"# ordersearch run: {n}x{n} patch", "",
             f"Command: `{command or 'ordersearch run --patch ' + str(n)}`", "",
             f"Data: {splits.train.name} (fingerprint {r.data}); train {len(splits.train)} / val {len(splits.val)} / "
             f"test {len(splits.test)} entries; rates are bits per latent element of y on the test split. "
             f"Machine: {os.cpu_count()} CPU cores, device {c.device}.", "",
             "## Verified (dedicated training)", "",
             f"Each candidate trained with {c.seeds} seed(s), {c.train.max_steps} steps max, early stopping on val; "
             "intervals are paired over test images and seeds (95%).", ""]
    lines += [f"- {line}" for line in v.report()]
    verdicts = [v.comparisons[k].verdict for k in v.ranking()[1:]]
    lines += ["", f"Best: **{v.winner}** ({v.mean(v.winner):.4f} bits/latent)."
              + (" It is indistinguishable from at least one other candidate at this budget; more seeds or "
                 "data would be needed to separate them." if "indistinguishable" in verdicts else ""), ""]
    lines += ["## Search (cheap estimator: " + c.estimator + ")", "",
              "| strategy | rate (cheap) | scorer calls | seconds | schedule |", "|---|---|---|---|---|"]
    for name, res in r.results.items():
        lines.append(f"| {name} | {res.rate:.4f} | {res.calls} | {res.seconds:.1f} | {_grid(res.schedule)} |")
    lines += ["", f"Agreement of the cheap estimator with dedicated training over the {len(r.candidates)} verified "
              f"schedules: {r.fidelity}. Only the dedicated numbers decide.", "",
              "## Rate vs decoding steps (Pareto front, cheap estimator)", "",
              "| steps | best rate | schedule |", "|---|---|---|"]
    lines += [f"| {p.steps} | {p.rate:.4f} | {_grid(p.schedule)} |" for p in r.front]
    lines += ["", "## Timings (seconds)", ""] + [f"- {k}: {t:.1f}" for k, t in r.timings.items()]
    return "\n".join(lines) + "\n"


def terminal_table(r: RunResult) -> str:
    v = r.verified
    width = max(len(k) for k in v.evaluations)
    head = f"{'schedule':<{width}}  {'dedicated':>9}  {r.config.estimator:>15}  verdict vs best"
    rows = [head, "-" * len(head)]
    for label in v.ranking():
        verdict = "best" if label == v.winner else {"better": "worse than best", "worse": "better than best",
                                                     "indistinguishable": "indistinguishable"}[v.comparisons[label].verdict]
        rows.append(f"{label:<{width}}  {v.mean(label):9.4f}  {r.cheap[label]:15.4f}  {verdict}")
    return "\n".join(rows)

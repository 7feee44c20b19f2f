"""The run folder ``<out>/patch<N>/``: every file ``run`` writes and ``plot`` reads, defined once.

::

    best.json            the leader's translate lowest on val (where the patch grid meets the border) as a v1
                         schedule (metrics: dedicated rate, seeds, vs runner-up, vs the leader as verified)
    best.weights.pt      its trained context model (seed 0, float16), self-describing (``models.context_weights``):
                         what ``encode`` and ``decode`` load
    schedules/<l>.json   every verified candidate (metrics: per-position bits, vs best)
    evaluations.csv      one row per (candidate, seed): dedicated test rate; role: a selection seed (its val
                         numbers chose) or a report seed (its test numbers are reported)
    per_image.csv        bits of every val and test image (and of each test image's edge, split test-edge), per
                         candidate and seed (and its role), and of best.json's schedule (label ``best``): every
                         interval re-derives
    costs.csv            the cheap estimator's f(C) of every context set
    pareto.csv           best grouped schedule for every step budget, and the named schedules
    trace.csv            every scorer call and scored schedule of every strategy
    checks.csv           the consistency checks (``run.checks``): passed, failed or untestable
    summary.md           the report
    search.md            what ``ordersearch search`` (the cheap phases only) found
    figures/             what ``ordersearch plot`` draws
    store/               the evaluation store (trained models), optuna.db: the Optuna studies

Writers and readers go through :data:`COLUMNS`, so a renamed column fails
loudly on both sides. Every file is written atomically.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import pandas as pd

from ..errors import OrdersearchError
from ..files import atomic_write
from ..models.context_weights import ContextWeights, load_weights, weights_file
from ..schedule_io import load_schedule

BEST = "best.json"
SCHEDULES = "schedules"
PLACED = "best"  # per_image.csv's label of best.json's schedule, the leader's translate chosen on val
SUMMARY = "summary.md"
SUMMARY_SEARCH = "search.md"  # what ``ordersearch search`` reports (summary.md is the run's)
FIGURES = "figures"
STORE = "store"
OPTUNA = "optuna.db"

#: the columns of every table in a run folder
COLUMNS: dict[str, tuple[str, ...]] = {
    "evaluations.csv": ("schedule", "grid", "seed", "role", "estimator", "bits_per_latent", "val_bits_per_latent",
                        "bpp_y", "seconds", "steps", "device", "cheap"),
    "per_image.csv": ("schedule", "seed", "role", "split", "image", "bits", "latents"),
    "costs.csv": ("code", "context", "decoded_neighbours", "bits_per_latent"),
    "pareto.csv": ("kind", "label", "stages", "budget", "bits_per_latent", "grid"),
    "trace.csv": ("strategy", "index", "kind", "subject", "rate", "seconds", "best"),
    "checks.csv": ("check", "status", "difference", "low", "high", "detail"),
}
#: columns added since: folders written before lack them (``role``: every seed both chose and reported)
LATER = ("role",)


def write_table(folder: Path, name: str, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts with exactly the columns of ``name``) as CSV, atomically."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS[name]))
    if rows and set(rows[0]) != set(COLUMNS[name]):
        raise ValueError(f"{name}: rows have columns {sorted(rows[0])}, the schema says {COLUMNS[name]}")
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return atomic_write(Path(folder) / name, buf.getvalue().encode())


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """A table of a run folder, with a clear error when it is missing or from another version."""
    path = Path(folder) / name
    if not path.is_file():
        raise OrdersearchError(f"{path}: missing; run `ordersearch run` again to complete the folder")
    frame = pd.read_csv(path)
    missing = [c for c in COLUMNS[name] if c not in frame.columns and c not in LATER]
    if missing:
        raise OrdersearchError(f"{path}: no column {', '.join(missing)} (written by another version?)")
    return frame


def verified_schedules(folder: Path) -> list[dict]:
    """The verified schedule files of a run folder (name, stages, metrics), best first; a damaged file is one
    clear error (``load_schedule``'s)."""
    items = []
    for path in sorted((Path(folder) / SCHEDULES).glob("*.json")):
        schedule, meta = load_schedule(path)
        items.append({"name": meta.name or path.stem, "stages": [list(r) for r in schedule.stages],
                      "metrics": meta.metrics})
    return sorted(items, key=lambda d: d["metrics"].get("bits_per_latent", math.inf))


def read_evaluations(folder: Path) -> dict[str, list]:
    """The per-image evaluations of a run folder's candidates, re-read from ``per_image.csv`` alone.

    Enough for ``evaluation.compare`` / ``conclude``: every interval of the run
    re-derives from the committed files (rates per seed and image; no weights).
    The rows of best.json's schedule (label ``best``, a translate of the leader)
    are not a candidate and are left out.
    """
    from ..evaluation.record import Evaluation

    frame = read_table(folder, "per_image.csv")
    best = Path(folder) / BEST  # the data fingerprint, so runs of several patch sizes on one data set compare
    data = load_schedule(best)[1].provenance.get("data", "") if best.is_file() else str(Path(folder).resolve())
    out: dict[str, list[Evaluation]] = {}
    for (label, seed), part in frame[frame.schedule != PLACED].groupby(["schedule", "seed"], sort=False):
        test, val, edge, val_edge = (part[part.split == s].sort_values("image")
                                     for s in ("test", "val", "test-edge", "val-edge"))
        bits = test.bits.tolist()
        out.setdefault(label, []).append(Evaluation(
            "dedicated", 0, None, None, int(seed), sum(bits) / test.latents.sum(), None, bits,
            test.latents.astype(int).tolist(), [], [], [], 0, 0, 0.0, {}, data,
            val_bits_per_latent=val.bits.sum() / val.latents.sum(), val_image_bits=val.bits.tolist(),
            val_image_elements=val.latents.astype(int).tolist(),
            edge_image_bits=edge.bits.tolist() if len(edge) else None,
            edge_image_elements=edge.latents.astype(int).tolist() if len(edge) else None,
            val_edge_image_bits=val_edge.bits.tolist() if len(val_edge) else None,
            val_edge_image_elements=val_edge.latents.astype(int).tolist() if len(val_edge) else None))
    return out


def read_report_seeds(folder: Path) -> tuple[int, ...]:
    """The report seeds of a run folder (``conclude(..., report_seeds=)``), from ``per_image.csv``; none in
    folders of the earlier protocol, which reported the seeds it chose with."""
    frame = read_table(folder, "per_image.csv")
    if "role" not in frame:
        return ()
    return tuple(sorted({int(s) for s in frame[frame.role == "report"].seed}))


def run_folders(path: str | Path) -> list[Path]:
    """The run folders at ``path``: itself if it holds a run, else its subfolders that do."""
    path = Path(path)
    if not path.is_dir():
        raise OrdersearchError(f"{path}: no such folder")
    if (path / SUMMARY).is_file():
        return [path]
    found = sorted(p.parent for p in path.glob(f"*/{SUMMARY}"))
    if not found:
        raise OrdersearchError(f"{path}: not a run folder (no {SUMMARY} in it or in a subfolder); "
                               "run `ordersearch run` first")
    return found


def stored_weights(schedule_file: Path, seed: int = 0) -> ContextWeights:
    """The trained context-model weights of a schedule file, from the evaluation store they were kept in.

    A file written by ``ordersearch run`` names its data and training
    protocol in its provenance: its dedicated model (seed ``seed``) is looked
    up in the run's store (``<run>/store``, or the one above for files in
    ``schedules/``). Any other file is looked up as trained on the built-in
    latents with the default protocol, in ``runs/store`` (where
    ``ordersearch verify`` puts it). A weights file beside the schedule file
    (``best.weights.pt`` for ``best.json``) comes first: it is what a run
    ships. A missing model is a clear error that says how to get one.
    """
    schedule, meta = load_schedule(schedule_file)
    beside = weights_file(schedule_file)
    if beside.exists():
        return load_weights(beside)
    config, data, folders = weights_source(Path(schedule_file), meta.kernel, meta.provenance)
    from ..evaluation.store import EvaluationStore

    for folder in folders:
        if not (folder / "evaluations.sqlite").is_file():
            continue
        store = EvaluationStore(folder)
        try:
            weights = store.schedule_weights(schedule, config.to_dict(), data, seed)
        finally:
            store.close()
        if weights is not None:
            return weights
    raise OrdersearchError(f"{schedule_file}: no trained context model for it (no {beside.name} beside it, none in "
                           f"{' or '.join(sorted({str(f) for f in folders}))}); pass --train to train one "
                           f"(minutes on a CPU; kept in {folders[0]}), or --weights FILE")


def train_weights(schedule_file: Path, device: str = "auto") -> ContextWeights:
    """Train a schedule file's dedicated model (seed 0) on the built-in latents into its store; its weights.

    The protocol is the one the file names (a run's), else the default; the
    codec can only use models of latents of its own base codec.
    """
    from ..evaluation import EvaluationStore, Evaluator, data_fingerprint
    from ..models import builtin

    schedule, meta = load_schedule(schedule_file)
    config, data, folders = weights_source(Path(schedule_file), meta.kernel, meta.provenance)
    latents = builtin()
    if data != data_fingerprint(latents.split()):
        raise OrdersearchError(f"{schedule_file}: it was found on other latents than the built-in ones; the codec "
                               "can only train on latents of its own base codec (run `ordersearch verify` on them)")
    print(f"{schedule_file}: no trained context model beside it or in its run's store; training one on the built-in "
          f"latents into {folders[0]} (minutes on a CPU)", file=sys.stderr)
    store = EvaluationStore(folders[0])
    try:
        Evaluator(latents, config, device, store).evaluate(schedule)
        weights = store.schedule_weights(schedule, config.to_dict(), data)
    finally:
        store.close()
    print(f"trained the context model; saved in the evaluation store {folders[0]}", file=sys.stderr)
    assert weights is not None  # the evaluation just stored it
    return weights


def weights_source(schedule_file: Path, kernel: int, provenance: dict):
    """(training protocol, data fingerprint, store folders) a schedule file's weights are keyed by."""
    from ..evaluation.config import TrainConfig
    from ..evaluation.evaluator import data_fingerprint
    from ..models.multistage import ModelConfig

    config = provenance.get("config")
    train = config.get("train") if isinstance(config, dict) else None
    if train and "data" in provenance:
        run = schedule_file.parent.parent if schedule_file.parent.name == SCHEDULES else schedule_file.parent
        folders = list(dict.fromkeys([run / STORE, schedule_file.parent / STORE]))  # the run's store first
        if not isinstance(train, dict) or not isinstance(provenance["data"], str):
            raise OrdersearchError(f"{schedule_file}: its provenance's training protocol or data is not readable")
        try:
            protocol = TrainConfig.from_dict(train)
        except OrdersearchError as e:
            raise OrdersearchError(f"{schedule_file}: provenance: {e}") from None
        return protocol, provenance["data"], folders
    from ..models.builtin import builtin

    return TrainConfig(model=ModelConfig(kernel=kernel)), data_fingerprint(builtin().split()), [Path("runs") / STORE]

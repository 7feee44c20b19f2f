"""Figures of a run folder (``run.folder``): what ``ordersearch plot`` draws.

- ``orders``: the decoding stage of every patch position, one panel per schedule;
- ``bits_per_position``: dedicated bits of every patch position, same layout;
- ``verified``: dedicated rate of each verified schedule (seed spread) and its
  difference from the best with the paired 95% interval;
- ``traces``: best rate found so far vs scorer calls, per strategy;
- ``pareto``: best rate vs decoding stages (the cheap front, named schedules marked) and, beside it, the
  verified (dedicated, test) rate of every candidate by its stages: one label per stage count, so
  schedules with as many stages never write over each other;
- ``rate_vs_context``: f(C) of every context set vs decoded neighbours.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import OrdersearchError
from ..files import atomic_write
from . import folder as files

FIGURES = ("orders", "bits_per_position", "verified", "traces", "pareto", "rate_vs_context")


def _save(fig, figures: Path, name: str, fmt: str) -> Path:
    """Write ``<figures>/<name>.<fmt>`` atomically and close the figure."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight")
    plt.close(fig)
    path = figures / f"{name}.{fmt}"
    atomic_write(path, buf.getvalue())
    return path


def _stage_labels(ax, points: list[tuple[int, float, str]], last: int) -> None:
    """One text per stage count, its schedules one per line (lowest first): labels of schedules with as many
    stages, near-equal rates, never write over each other."""
    by_stage: dict[int, list[tuple[float, str]]] = {}
    for stages, rate, label in points:
        by_stage.setdefault(stages, []).append((rate, label))
    for stages, group in sorted(by_stage.items()):
        group.sort()
        text = "\n".join(f"{_short(label, 28)} {rate:.4f}" for rate, label in group[:8])
        text += f"\n(+{len(group) - 8} more)" if len(group) > 8 else ""
        right = stages > last / 2
        ax.annotate(text, (stages, group[0][0]), textcoords="offset points", xytext=(-8 if right else 8, 8),
                    fontsize=7, ha="right" if right else "left", va="bottom",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.8", "alpha": 0.85})


def _grid_panels(items: list[dict], values: list[np.ndarray], title: str, label: str, fmt_cell, cmap: str):
    import matplotlib.pyplot as plt

    cols = min(4, len(items))
    rows = math.ceil(len(items) / cols)
    n = len(values[0])
    size = 1.1 + 0.45 * n
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size + 1.2, rows * (size + 0.5)), squeeze=False)
    vmin, vmax = min(float(np.min(v)) for v in values), max(float(np.max(v)) for v in values)
    image = None
    for ax, item, v in zip(axes.flat, items, values):
        image = ax.imshow(v, cmap=cmap, vmin=vmin, vmax=vmax)
        for (r, c), x in np.ndenumerate(v):
            shade = (x - vmin) / (vmax - vmin + 1e-12)
            ax.text(c, r, fmt_cell(x), ha="center", va="center", fontsize=max(6, 13 - n),
                    color="white" if shade < 0.55 else "black")
        ax.set_title(_short(item["name"]), fontsize=9)
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.colorbar(image, ax=axes, shrink=0.8, label=label)
    return fig


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else label[:width - 1] + "…"


def plot_run(folder: str | Path, fmt: str = "png", out: str | Path | None = None) -> list[Path]:
    """Draw every figure of one run folder into ``out`` (default ``<folder>/figures``); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    figures = Path(out) if out is not None else folder / files.FIGURES
    items = files.verified_schedules(folder)
    if not items:
        raise OrdersearchError(f"{folder}: no verified schedules in schedules/")
    written = []
    grids = [np.asarray(d["stages"]) for d in items]
    fig = _grid_panels(items, grids, "Decoding stage of each patch position", "step", lambda x: f"{int(x)}", "viridis")
    written.append(_save(fig, figures, "orders", fmt))

    bits = [np.asarray(d["metrics"]["bits_per_position"]) for d in items]
    fig = _grid_panels(items, bits, "Dedicated bits per latent element at each patch position (test split)",
                       "bits per latent element", lambda x: f"{x:.3f}", "magma")
    written.append(_save(fig, figures, "bits_per_position", fmt))

    labels = [_short(d["name"], 36) for d in items]
    means = [d["metrics"]["bits_per_latent"] for d in items]
    sds = [np.std(d["metrics"]["bits_per_latent_per_seed"], ddof=1) if d["metrics"]["seeds"] > 1 else 0.0
           for d in items]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.45 * len(items) + 1.8), sharey=True)
    y = np.arange(len(items))
    ax1.errorbar(means, y, xerr=sds, fmt="o", color="tab:blue", capsize=3)  # points: the axis does not start at 0
    ax1.set_xlim(min(means) - 3 * max(max(sds), 0.002), max(means) + 3 * max(max(sds), 0.002))
    ax1.set_yticks(y, labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("bits per latent element (test; error bars: seed-to-seed sd)")
    ax1.set_title("Verified rate", fontsize=10)
    for i, d in enumerate(items):
        vs = d["metrics"].get("vs_best")
        if vs is None:
            ax2.plot([0], [i], "k*", markersize=10)
            continue
        colour = {"worse": "tab:red", "better": "tab:green"}.get(vs["verdict"], "tab:gray")
        if vs["low"] is None or vs["high"] is None:  # unbounded: training noise unknown (one seed)
            ax2.plot([vs["difference"]], [i], "x", color=colour)
            continue
        ax2.errorbar([vs["difference"]], [i], xerr=[[vs["difference"] - vs["low"]], [vs["high"] - vs["difference"]]],
                     fmt="o", color=colour, capsize=3)
    ax2.axvline(0, color="black", linewidth=0.8)
    ax2.set_xlabel("this - leader, bits/latent (paired interval, corrected for the comparisons)")
    ax2.set_title("Difference from the leader (grey: indistinguishable)", fontsize=10)
    written.append(_save(fig, figures, "verified", fmt))

    trace = files.read_table(folder, "trace.csv")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, part in trace.groupby("strategy", sort=False):
        calls = (part.kind == "set").cumsum()
        sched = part.kind == "schedule"
        ax.step(calls[sched].to_numpy(), part.best[sched].to_numpy(), where="post", label=name, marker=".")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("scorer calls (distinct context sets)")
    ax.set_ylabel("best rate so far (cheap estimator)")
    ax.set_title("Search traces")
    ax.legend(fontsize=8)
    written.append(_save(fig, figures, "traces", fmt))

    pareto = files.read_table(folder, "pareto.csv")
    front, named = pareto[pareto.kind == "front"], pareto[pareto.kind == "named"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    ax.step(front.budget, front.bits_per_latent, where="post", color="tab:blue", label="best with at most T stages")
    ax.plot(front.budget, front.bits_per_latent, "o", color="tab:blue", markersize=4)
    ax.plot(named.stages, named.bits_per_latent, "s", color="tab:orange", label="named schedules")
    last = int(pareto.budget.max())
    _stage_labels(ax, [(int(r.stages), float(r.bits_per_latent), str(r.label)) for r in named.itertuples()], last)
    ax.set_xlabel("decoding stages T")
    ax.set_ylabel("bits per latent element (cheap estimator: ranks, not a codec's rate)")
    ax.set_title("Cheap estimate: Pareto front and named schedules", fontsize=10)
    ax.legend(fontsize=8)
    verified = [(len({v for row in d["stages"] for v in row}), float(d["metrics"]["bits_per_latent"]),
                 np.std(d["metrics"]["bits_per_latent_per_seed"], ddof=1) if d["metrics"].get("seeds", 1) > 1 else 0.0,
                 str(d["name"])) for d in items]
    ax2.errorbar([v[0] for v in verified], [v[1] for v in verified], yerr=[v[2] for v in verified], fmt="o",
                 color="tab:green", capsize=3, markersize=4, label="verified candidates (seed sd)")
    _stage_labels(ax2, [(s, r, name) for s, r, _, name in verified], last)
    ax2.set_xlabel("decoding stages T")
    ax2.set_ylabel("bits per latent element (dedicated, test split)")
    ax2.set_title("Verified: dedicated training, mean over seeds", fontsize=10)
    ax2.legend(fontsize=8)
    for a in (ax, ax2):
        a.set_xlim(0.5, last + 0.5)
    written.append(_save(fig, figures, "pareto", fmt))

    costs = files.read_table(folder, "costs.csv")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    jitter = np.random.default_rng(0).uniform(-0.2, 0.2, len(costs))
    ax.scatter(costs.decoded_neighbours + jitter, costs.bits_per_latent, s=4, alpha=0.4)
    ax.set_xlabel("decoded neighbours in the window")
    ax.set_ylabel("f(C), bits per latent element (cheap estimator)")
    ax.set_title(f"Rate of every context set ({len(costs):,} sets)")
    written.append(_save(fig, figures, "rate_vs_context", fmt))
    return written


def plot(path: str | Path, formats: tuple[str, ...] = ("png",), out: str | Path | None = None) -> list[Path]:
    """Figures for every run folder at ``path`` in each format (png, svg, pdf).

    With ``out``, each run folder's figures go to ``out`` / (its path below ``path``). Without, into the run
    folder's own ``figures/``, but only for a run made here (its store beside it): committed or copied results
    (no store) are never redrawn in place by default, where a newer matplotlib would rewrite every figure.
    """
    for fmt in formats:
        if fmt not in ("png", "svg", "pdf"):
            raise OrdersearchError(f"unknown figure format {fmt!r}; choose png, svg or pdf")
    folders, path = files.run_folders(path), Path(path)
    if out is None:
        copied = [str(f) for f in folders if not (f / files.STORE).is_dir()]
        if copied:
            raise OrdersearchError(f"{', '.join(copied[:3])}: run folder(s) without their store (committed or "
                                   "copied results): their figures are not redrawn in place; give --out DIR")
        targets = [f / files.FIGURES for f in folders]
    else:
        targets = [Path(out) / f.relative_to(path) if f != path else Path(out) for f in folders]
    written = []
    for folder, target in zip(folders, targets):
        for fmt in formats:
            try:
                written += plot_run(folder, fmt, target)
            except OrdersearchError:
                raise
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:  # files not as a run writes
                raise OrdersearchError(f"{folder}: its files are not those of a run this version writes "
                                       f"({type(e).__name__}: {str(e)[:120]})") from None
    return written

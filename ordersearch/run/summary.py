"""What a run reports: ``summary.md`` and the table printed at the end of ``ordersearch run``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..data.latents import Splits
from .folder import grid_text

if TYPE_CHECKING:
    from .pipeline import RunResult


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
        lines.append(f"| {name} | {res.rate:.4f} | {res.calls} | {res.seconds:.1f} | {grid_text(res.schedule)} |")
    lines += ["", f"Agreement of the cheap estimator with dedicated training over the {len(r.candidates)} verified "
              f"schedules: {r.fidelity}. Only the dedicated numbers decide.", "",
              "## Rate vs decoding stages (Pareto front, cheap estimator)", "",
              "| stages | best rate | schedule |", "|---|---|---|"]
    lines += [f"| {p.stages} | {p.rate:.4f} | {grid_text(p.schedule)} |" for p in r.front]
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

"""Fidelity of the cheap estimators on what decides a search: results/fidelity.json and results/fidelity_orders.md.

    python experiments/fidelity_orders.py

On the built-in latents, against dedicated training already committed:

- 2x2 context sets: level error and Kendall tau of each estimator's f(C)
  against the dedicated per-set models of results/fidelity.csv (test split,
  so here the held-out estimator is scored on test windows: fitted on train
  as always; only this comparison reads test);
- 3x3 and 4x4 orders: for the permutation orders verified in
  results/patch3 and results/patch4 (evaluations.csv, several seeds each),
  the fraction of pairs of orders whose difference has the same sign under
  the estimator's cost table (the one ``run`` searches: held-out scored on
  val) as under dedicated training, per seed and averaged; the seed ceiling
  is the same fraction between a dedicated seed and the mean of the other
  seeds (leave one out).

Also times the full held-out tables (2x2, 3x3, 4x4) and their peak memory.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau

from ordersearch import Schedule
from ordersearch.device import describe_machine
from ordersearch.evaluation import order_agreement
from ordersearch.files import peak_memory_bytes
from ordersearch.estimators import HeldoutConfig, HeldoutEstimator, LinearGaussianEstimator
from ordersearch.estimators.heldout import cross_channel_predictors, sample_windows
from ordersearch.models import builtin
from ordersearch.schedule import context_index

RESULTS = Path(__file__).resolve().parent.parent / "results"
SETS_2X2 = {"2x2 set []": [], "2x2 set [(0, 1)]": [(0, 1)], "2x2 set [(1, 0)]": [(1, 0)],
            "2x2 set [(0, 1), (1, 0)]": [(0, 1), (1, 0)], "2x2 set [(1, 1)]": [(1, 1)],
            "2x2 set [(0, 1), (1, 1)]": [(0, 1), (1, 1)], "2x2 set [(1, 0), (1, 1)]": [(1, 0), (1, 1)],
            "2x2 set [(0, 1), (1, 0), (1, 1)]": [(0, 1), (1, 0), (1, 1)]}


def peak_mib() -> float:
    return peak_memory_bytes() / 2**20


def orders(patch: int) -> pd.DataFrame:
    """(label, seed, dedicated test rate, schedule) of the verified permutation orders of a committed run."""
    frame = pd.read_csv(RESULTS / f"patch{patch}" / "evaluations.csv")
    frame["schedule_obj"] = [Schedule.from_grid([[int(v) for v in row.split()] for row in g.split(" / ")])
                             for g in frame.grid]
    return frame[[s.is_permutation and s.patch == patch for s in frame.schedule_obj]]


def main() -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    splits = builtin().split()
    report: dict = {"default": None, "estimators": {}, "seed_ceiling": {}, "timings": {}}
    start = time.time()
    heldout = HeldoutEstimator.from_splits(splits, 5, HeldoutConfig())
    report["timings"]["heldout samples and predictors s"] = time.time() - start
    tables = {"heldout": {}, "linear-gaussian": {}}
    linear = LinearGaussianEstimator.from_latents(splits.train, 5)
    for n in (2, 3, 4):
        start = time.time()
        tables["heldout"][n] = heldout.cost_table(n, progress=True)
        report["timings"][f"heldout {n}x{n} table s"] = time.time() - start
        print(f"heldout {n}x{n}: {time.time() - start:.0f} s, peak {peak_mib():.0f} MiB", flush=True)
        tables["linear-gaussian"][n] = linear.cost_table(n)
    report["timings"]["peak MiB"] = peak_mib()

    # 2x2 sets against the dedicated per-set models (test split)
    dedicated = pd.read_csv(RESULTS / "fidelity.csv").set_index("item")
    predictors = cross_channel_predictors(splits.train, 5)
    rng = np.random.default_rng(HeldoutConfig().seed)
    on_test = HeldoutEstimator(sample_windows(splits.train, 5, HeldoutConfig().train_windows, rng, predictors),
                               sample_windows(splits.test, 5, 65536, rng, predictors), 5)
    test_table = on_test.cost_table(2)
    ref = np.array([dedicated.loc[k, "dedicated_mean"] for k in SETS_2X2])
    for name, values in (("heldout", np.array([test_table[context_index(c, 2)] for c in SETS_2X2.values()])),
                         ("linear-gaussian", np.array([dedicated.loc[k, "linear-gaussian"] for k in SETS_2X2]))):
        report["estimators"][name] = {"level_error_2x2": float(np.mean(np.abs(values / ref - 1))),
                                      "tau_2x2_sets": float(kendalltau(values, ref)[0]),
                                      "sets_2x2": dict(zip(SETS_2X2, map(float, values)))}
    report["dedicated_2x2_sets"] = dict(zip(SETS_2X2, map(float, ref)))

    # 3x3 and 4x4 verified orders: pairwise sign agreement, per seed, and the leave-one-out seed ceiling
    for n in (3, 4):
        frame = orders(n)
        schedules = {label: s for label, s in zip(frame.schedule, frame.schedule_obj)}
        per_seed = {seed: dict(zip(g.schedule, g.bits_per_latent)) for seed, g in frame.groupby("seed")}
        seeds = [s for s, d in per_seed.items() if len(d) >= 3]
        for name in tables:
            cheap = {label: float(tables[name][n][s.context_indices().ravel()].mean()) for label, s in schedules.items()}
            agreement, ceiling = order_agreement(cheap, {s: per_seed[s] for s in seeds})
            tau = [kendalltau([cheap[k] for k in per_seed[s]], list(per_seed[s].values()))[0] for s in seeds]
            report["estimators"][name].setdefault("pair_sign_agreement", {})[str(n)] = agreement
            report["estimators"][name].setdefault("tau_orders", {})[str(n)] = float(np.mean(tau))
            report["estimators"][name].setdefault("range_orders", {})[str(n)] = [min(cheap.values()),
                                                                                 max(cheap.values())]
        report["seed_ceiling"][str(n)] = ceiling
        report.setdefault("orders", {})[str(n)] = sorted(schedules)
    h = report["estimators"]["heldout"]
    # each target of the issue: value, target, met, and how far off when missed (in the target's own unit)
    targets = {
        "level_error_2x2 < 1%": (h["level_error_2x2"], 0.01, "below"),
        "tau_2x2_sets >= 0.85": (h["tau_2x2_sets"], 0.85, "at least"),
        **{f"never anti-correlated ({k}x{k}: Kendall tau over orders >= 0)": (h["tau_orders"][k], 0.0, "at least")
           for k in ("3", "4")},
        **{f"sign agreement within 10 points of the seed ceiling ({k}x{k})":
           (h["pair_sign_agreement"][k], report["seed_ceiling"][k] - 0.10, "at least") for k in ("3", "4")},
        "4x4 table <= 5 min (s)": (report["timings"]["heldout 4x4 table s"], 300, "at most"),
        "<= 2 GB (MiB)": (report["timings"]["peak MiB"], 2048, "at most"),
    }
    report["targets"] = {}
    for name, (value, target, how) in targets.items():
        met = value < target if how == "below" else value >= target if how == "at least" else value <= target
        report["targets"][name] = {"value": value, "target": target, "met": bool(met),
                                   "missed_by": None if met else abs(value - target)}
    report["targets_met"] = {name: t["met"] for name, t in report["targets"].items()}
    report["machine"] = f"{describe_machine()}, torch threads {torch.get_num_threads()}"
    (RESULTS / "fidelity.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# Fidelity on what decides a search (built-in latents)", "",
             f"Command: `python experiments/fidelity_orders.py` on {report['machine']}. Dedicated references: the "
             "per-set 2x2 models of results/fidelity.csv (test split, one seed) and the verified permutation orders "
             "of results/patch3 and results/patch4 (evaluations.csv: test rate per seed). Numbers: "
             "results/fidelity.json.", "",
             "| | heldout | linear-gaussian | seed vs the other seeds |", "|---|---|---|---|"]
    lg = report["estimators"]["linear-gaussian"]
    lines += [f"| 2x2 sets: mean level error | {100 * h['level_error_2x2']:.2f}% | {100 * lg['level_error_2x2']:.2f}% | |",
              f"| 2x2 sets: Kendall tau | {h['tau_2x2_sets']:.3f} | {lg['tau_2x2_sets']:.3f} | |"]
    for n in ("3", "4"):
        lines += [f"| {n}x{n} orders ({len(report['orders'][n])}): pair sign agreement | "
                  f"{h['pair_sign_agreement'][n]:.3f} | {lg['pair_sign_agreement'][n]:.3f} | "
                  f"{report['seed_ceiling'][n]:.3f} |",
                  f"| {n}x{n} orders: Kendall tau (mean over seeds) | {h['tau_orders'][n]:.3f} | "
                  f"{lg['tau_orders'][n]:.3f} | |"]
    lines += ["", "| target | value | met |", "|---|---|---|"]
    lines += [f"| {k} | {t['value']:.4g} | {'met' if t['met'] else 'NOT met, by %.3g' % t['missed_by']} |"
              for k, t in report["targets"].items()]
    lines += ["", "Timings: " + ", ".join(f"{k} {v:.0f}" for k, v in report["timings"].items())]
    (RESULTS / "fidelity_orders.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

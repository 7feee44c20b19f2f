"""How often are verification's verdicts wrong, and what can it find? The whole procedure on simulated runs.

    python experiments/verdict_calibration.py [--runs 10000]

``ordersearch.evaluation.calibration`` runs ``verify`` itself (selection
seeds on val with adaptive seeds, the leader on val, fresh report seeds on
test, one family of comparisons per run) on simulated trainings with known
truth, shaped as measured on the built-in latents: 11 candidates, per-pair
seed sd 0.0005-0.0023 bits, val/test correlation of a model's luck 0.3-0.7.
Counted: the family-wise error under the null (no order effect: any
"better" or "worse" is false), the same runs reported on the seeds that
chose (what fresh report seeds avoid), worlds with other noise, the power at
known effects with 48 and 12 test images, and two alternatives: three report
seeds, and the run's pooled seed variance alone (without a noisier pair's
own). Writes results/verdict_calibration.json and .md. No training: minutes
on two cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from scipy.stats import binomtest

from ordersearch.device import describe_machine
from ordersearch.evaluation.calibration import Tally, World, simulate, simulate_many

ROOT = Path(__file__).resolve().parents[1]
EFFECTS = (0.001, 0.002, 0.003, 0.005, 0.008, 0.012)
PROTOCOL = {"seeds": 2, "max_seeds": 4, "report_seeds": 2}  # run's defaults (RunConfig)


def rate(count: int, runs: int) -> dict:
    ci = binomtest(count, runs).proportion_ci(0.95)
    return {"rate": count / runs, "low": ci.low, "high": ci.high, "runs": runs}


def null_row(name: str, world: World, runs: int, **protocol) -> dict:
    t = simulate_many(world, runs, **{**PROTOCOL, **protocol})
    return {"world": name, **{k: v for k, v in {**PROTOCOL, **protocol}.items()},
            "family_wise_error": rate(t.family_errors, t.runs),
            "false_worse_per_comparison": t.false_worse / t.comparisons,
            "family_wise_error_reporting_on_the_seeds_that_chose": rate(t.leaky_family_errors, t.runs),
            "trainings_per_run": sum(t.trainings) / t.runs}


def power_row(world: World, effect: float, runs: int, **protocol) -> dict:
    t = simulate_many(replace(world, effects=(effect,)), runs, **{**PROTOCOL, **protocol})
    return {"effect": effect, "test_images": world.test_images, **{**PROTOCOL, **protocol},
            "power": rate(t.detected.get(1, 0), t.runs), "family_wise_error": t.family_wise_error}


def pooled_only(world: World, runs: int) -> Tally:
    """The procedure with the run's pooled seed variance for every pair (the rule before this one)."""
    verify_module = sys.modules["ordersearch.evaluation.verify"]
    rule = verify_module.larger
    verify_module.larger = lambda own, pooled: pooled
    try:
        return simulate(world, runs, **PROTOCOL)
    finally:
        verify_module.larger = rule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10000, help="simulated runs under the null (default 10000)")
    args = ap.parse_args()
    start = time.time()
    base = World()
    nulls = [null_row("as measured (48 test images)", base, args.runs)]
    side = max(args.runs // 5, 200)
    nulls += [null_row(name, w, side) for name, w in (
        ("equal seed noise for every candidate", replace(base, luck_sd=(0.0008, 0.0008))),
        ("seed noise more uneven (sd 0.0002-0.002 per candidate)", replace(base, luck_sd=(0.0002, 0.002))),
        ("val/test correlation 0.7-0.9", replace(base, correlation=(0.7, 0.9))),
        ("12 test images (the committed runs)", replace(base, test_images=12)))]
    nulls.append(null_row("as measured, 3 report seeds", base, side, report_seeds=3))
    pooled = pooled_only(base, side)
    powers = [power_row(replace(base, test_images=n), e, max(args.runs // 10, 200)) for n in (48, 12)
              for e in EFFECTS]
    powers += [power_row(base, e, max(args.runs // 10, 200), report_seeds=3) for e in EFFECTS]
    out = {"command": "python experiments/verdict_calibration.py" + (f" --runs {args.runs}" if args.runs != 10000
                                                                      else ""),
           "machine": describe_machine(), "seconds": round(time.time() - start),
           "world": asdict(base), "protocol": PROTOCOL, "nominal_family_wise_error": 0.05,
           "null": nulls,
           "pooled_seed_variance_only": {"family_wise_error": rate(pooled.family_errors, pooled.runs)},
           "power": powers}
    (ROOT / "results/verdict_calibration.json").write_text(json.dumps(out, indent=1) + "\n")
    md = ["# Verdict calibration: the whole verification procedure on simulated runs", "",
          f"Command: `{out['command']}` ({out['seconds']} s on {out['machine']}; no training). The procedure is "
          "`evaluation.verify` itself (selection seeds on val, adaptive seeds, the leader on val, fresh report seeds "
          "on test, one Bonferroni family of 10 comparisons per run, a pair's own seed variance where larger than "
          "the run's pool); the trainings are simulated with the noise measured on the built-in latents "
          "(`evaluation.calibration.World`: 11 candidates, 12 val images, per-candidate seed sd "
          f"{base.luck_sd[0]}-{base.luck_sd[1]} bits, val/test correlation of a model's luck "
          f"{base.correlation[0]}-{base.correlation[1]}). Nominal family-wise error: 5%.", "",
          "## Under the null (no order effect)", "",
          "| world | seeds (selection, max, report) | family-wise error [95%] | false worse per comparison | "
          "reported on the seeds that chose | trainings per run |", "|---|---|---|---|---|---|"]
    for r in nulls:
        f, leak = r["family_wise_error"], r["family_wise_error_reporting_on_the_seeds_that_chose"]
        md.append(f"| {r['world']} | {r['seeds']}, {r['max_seeds']}, {r['report_seeds']} | {100 * f['rate']:.1f}% "
                  f"[{100 * f['low']:.1f}, {100 * f['high']:.1f}] ({f['runs']} runs) | "
                  f"{100 * r['false_worse_per_comparison']:.2f}% | {100 * leak['rate']:.1f}% | "
                  f"{r['trainings_per_run']:.0f} |")
    p = out["pooled_seed_variance_only"]["family_wise_error"]
    md += ["", f"With the run's pooled seed variance for every pair (the earlier rule), as measured: "
           f"{100 * p['rate']:.1f}% [{100 * p['low']:.1f}, {100 * p['high']:.1f}] ({p['runs']} runs).", "",
           "## Power: one candidate truly worse by the effect (relative to the rate)", "",
           "| effect | test images | report seeds | power [95%] | family-wise error among the rest |",
           "|---|---|---|---|---|"]
    for r in powers:
        q = r["power"]
        md.append(f"| {100 * r['effect']:.1f}% | {r['test_images']} | {r['report_seeds']} | {100 * q['rate']:.0f}% "
                  f"[{100 * q['low']:.0f}, {100 * q['high']:.0f}] | {100 * r['family_wise_error']:.1f}% |")
    (ROOT / "results/verdict_calibration.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

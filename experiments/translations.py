"""Does translating an order (moving the patch grid against the image border) change its rate?

Translation is an exact symmetry of a stationary field away from its edges.
On whole images the patch grid meets the border at one phase, and a
translate of an order puts other positions (other stages) along the edges.
Training does not tell translates apart (crops fall on the grid at random
offsets, and meet the image border at every phase), so one training serves
every translate; this experiment measures
each translate of a few orders with its order's model, moved to the
translate's positions (what ``Evaluator.evaluate`` now does for a translate
of a stored evaluation), on the built-in latents' test split: the whole
image, its interior and its edge (latents within kernel // 2 of the border).

    python experiments/translations.py [--seeds 3] [--orders "raster 4x4,lin2023 4x4"]

Writes results/translations.md and results/translations.json. Trainings go
to the convergence experiment's store (same data, same default protocol).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ordersearch import Schedule
from ordersearch.device import describe_machine
from ordersearch.evaluation import EvaluationStore, Evaluator, TrainConfig, compare
from ordersearch.models import builtin

ROOT = Path(__file__).resolve().parents[1]
ORDERS = {"raster 2x2": Schedule.named("raster", 2), "checkerboard 2x2": Schedule.named("checkerboard", 2),
          "raster 4x4": Schedule.named("raster", 4), "lin2023 4x4": Schedule.named("lin2023", 4)}
SPLITS = ("test", "test-interior", "test-edge")


def shift_of(reference: Schedule, translate: Schedule) -> str:
    r, c = reference.translation_to(translate)
    return f"({r},{c})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--store", type=Path, default=ROOT / "runs/convergence")
    ap.add_argument("--orders", default=",".join(ORDERS), help="which of the orders (comma-separated; default all)")
    args = ap.parse_args()
    chosen = args.orders.split(",")
    unknown = [k for k in chosen if k not in ORDERS]
    if unknown:
        ap.error(f"unknown order {unknown[0]!r}; known: {', '.join(ORDERS)}")
    store = EvaluationStore(args.store)
    evaluator = Evaluator(builtin(), TrainConfig(), args.device, store, progress=False)
    start = time.time()
    out = {}
    seeds = range(args.seeds)
    for label, order in ((k, ORDERS[k]) for k in chosen):
        base = evaluator.evaluate_many([(order, seed) for seed in seeds])
        translates = sorted(order.orbit(), key=lambda t: order.translation_to(t))
        rows = []
        for t in translates:
            evs = evaluator.evaluate_many([(t, seed) for seed in seeds])
            row = {"shift": shift_of(order, t), "stages": [list(r) for r in t.stages]}
            for split in SPLITS:
                row[split] = float(np.mean([e.rate(split) for e in evs]))
                if t != order:
                    c = compare(evs, base, 0.95, split=split)
                    row[f"{split} vs (0,0)"] = {"difference": c.difference, "relative": c.relative, "low": c.low,
                                                "high": c.high, "verdict": c.verdict}
            rows.append(row)
        rates = [r["test"] for r in rows]
        out[label] = {"translates": rows, "spread": max(rates) - min(rates),
                      "relative_spread": (max(rates) - min(rates)) / min(rates),
                      "edge_share": float(np.mean([np.sum(e.edge_image_elements) / np.sum(e.image_elements)
                                                   for e in base])),
                      "steps": [e.steps for e in base]}
        print(label, f"spread {out[label]['spread']:.5f} ({100 * out[label]['relative_spread']:.3f}%)", flush=True)
    between = compare(evaluator.evaluate_many([(ORDERS["lin2023 4x4"], s) for s in seeds]),
                      evaluator.evaluate_many([(ORDERS["raster 4x4"], s) for s in seeds]), 0.95)
    edge_share = next(iter(out.values()))["edge_share"]
    store.close()
    machine = describe_machine(evaluator.device)
    result = {"machine": machine, "seeds": args.seeds, "seconds": round(time.time() - start, 1), "orders": out,
              "lin2023 4x4 - raster 4x4": {"difference": between.difference, "low": between.low,
                                           "high": between.high, "verdict": between.verdict}}
    (ROOT / "results/translations.json").write_text(json.dumps(result, indent=1) + "\n")
    md = ["# Translating an order: the patch grid against the image border", "",
          f"Command: `python experiments/translations.py --seeds {args.seeds} --orders '{args.orders}'`. Built-in latents, test split (12 "
          f"photos of 40x64 latents), bits per latent element of y, {args.seeds} seeds of the default protocol "
          f"(plateau training), machine {machine}. Each translate is measured with its order's models moved to "
          "its positions (one training serves every translate). Differences are translate - (0,0) translate, "
          "paired over images and seeds, 95% interval (its own seed spread: "
          f"{args.seeds - 1} degrees of freedom). Edge: latents within 2 of the border "
          f"({100 * edge_share:.1f}% of them).", ""]
    for label, o in out.items():
        md += [f"## {label}: spread over translates {o['spread']:.5f} bits/latent "
               f"({100 * o['relative_spread']:.3f}%)", "",
               "| shift | stages | whole image | interior | edge |", "|---|---|---|---|---|"]
        for r in o["translates"]:
            cells = []
            for split in SPLITS:
                c = r.get(f"{split} vs (0,0)")
                cells.append(f"{r[split]:.4f}" if c is None else
                             f"{r[split]:.4f} ({c['difference']:+.5f} [{c['low']:+.5f}, {c['high']:+.5f}])")
            md.append(f"| {r['shift']} | {r['stages']} | " + " | ".join(cells) + " |")
        md.append("")
    md += [f"For scale, two orders: lin2023 4x4 - raster 4x4 = {between.difference:+.5f} "
           f"[{between.low:+.5f}, {between.high:+.5f}] ({between.verdict}).", ""]
    (ROOT / "results/translations.md").write_text("\n".join(md))
    print((ROOT / "results/translations.md").read_text())


if __name__ == "__main__":
    main()

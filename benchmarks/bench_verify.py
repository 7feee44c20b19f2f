"""Verification throughput: K candidates x S seeds, the reference trainer against the one `run` uses, same machine.

    python benchmarks/bench_verify.py [--device auto] [--patch 4] [--seeds 2] [--steps 100]

The candidates are what ``run --patch N`` verifies besides its search
results: the named baselines and random orders, 11 in all at 4x4 (K), each
with S seeds, on the built-in latents with the default protocol except a
fixed number of steps (no early stop, no warm start, so both paths do the
same work). The two paths:

- reference: ``train_dedicated``, the paper's dense model (masked KxK
  convolutions), one model at a time: the path every run took before the
  batched trainer;
- batched: ``train_stacked`` in chunks of the Evaluator's stack size for the
  device, as ``run`` trains: on a GPU 32 models as one grouped-convolution
  stack, on a CPU one model at a time in the packed layout (decoded window
  offsets only).

Candidate-steps per second of each path, their ratio, and the largest
difference in test rate between the two paths' models (they should agree
up to floating-point order). On CUDA also the stack with TF32 convolutions
off (PyTorch turns them on for cuDNN by default).

Writes ``results/bench_verify.json`` (``{"speedup": ..., "machine": ...,
"device": ..., ...}``; the runs of other devices already in the file are
kept under ``other_runs``) and ``results/bench_verify.md``.

    python benchmarks/bench_verify.py --starts [--patch 4] [--seeds 2] [--candidates raster,lin2023,...]

measures instead where training starts: each candidate x seed trained to
its plateau with the default protocol from the prior-only warm start
(``TrainConfig(start="prior")``) and from the any-order model (the
default), same machine, same seeds: steps, seconds, test rates, the paired
difference of the two starts per candidate and of every two candidates per
start; ``warm_start_speedup`` = prior seconds per candidate / (any-order
seconds per candidate + the any-order model's seconds per seed shared by a
run's 14 candidates of a seed). Written under ``warm_start`` in the same
files (the throughput runs are kept).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ordersearch.device import describe_machine, resolve_device
from ordersearch.evaluation import Evaluator, TrainConfig
from ordersearch.evaluation.statistics import compare
from ordersearch.evaluation.evaluator import STACK_CUDA
from ordersearch.evaluation.measure import measure
from ordersearch.evaluation.training import train_dedicated, train_stacked
from ordersearch.models import MultistageContextModel, builtin
from ordersearch.schedule import NAMED_SCHEDULES, Schedule, baselines
from ordersearch.schedule_io import load_schedule

#: what the throughput run keeps of the file (written by ``--starts``)
WARM_KEYS = ("warm_start", "warm_start_speedup")


def candidates(patch: int, count: int = 11) -> list[Schedule]:
    named = list(baselines(patch).values())
    return named + [Schedule.named("random", patch, seed=i) for i in range(count - len(named))]


def models_for(items, splits, config, device):
    out = []
    for schedule, seed in items:
        torch.manual_seed(seed)
        s = splits.train
        out.append(MultistageContextModel(schedule, s.channels, s.prior_channels, config.model).to(device))
    return out


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--starts", action="store_true",
                    help="instead: where training starts, side by side (prior-only warm start vs the any-order model), "
                         "each candidate trained to its plateau")
    ap.add_argument("--candidates", default="raster,lin2023,control-worst-cheap",
                    help="with --starts: named schedules or results/patchN/schedules/ labels")
    args = ap.parse_args()
    device = resolve_device(args.device)
    splits = builtin().split()
    if args.starts:
        return starts(args, splits, device)
    config = TrainConfig(max_steps=args.steps, eval_every=args.steps, patience=1, warm_steps=0).decided(splits)
    items = [(s, seed) for seed in range(args.seeds) for s in candidates(args.patch)]
    steps = len(items) * args.steps
    stack = STACK_CUDA if device.type == "cuda" else 1

    # the reference: the dense model, one at a time
    sync(device)
    start = time.time()
    alone = [train_dedicated(m, splits, config, seed, device).model
             for m, (_, seed) in zip(models_for(items, splits, config, device), items)]
    sync(device)
    t_alone = time.time() - start

    # the same, with the optimiser as it was when the batched trainer was asked for (AdamW's per-tensor loop,
    # not the fused kernel): the "one-at-a-time path" that issue measured against
    adamw = torch.optim.AdamW
    torch.optim.AdamW = lambda *a, fused=None, **kw: adamw(*a, **kw)  # type: ignore[misc]
    try:
        sync(device)
        start = time.time()
        for m, (_, seed) in zip(models_for(items, splits, config, device), items):
            train_dedicated(m, splits, config, seed, device)
        sync(device)
        t_unfused = time.time() - start
    finally:
        torch.optim.AdamW = adamw

    def stacked(tf32: bool):
        torch.backends.cudnn.allow_tf32 = tf32
        models = models_for(items, splits, config, device)
        sync(device)
        start = time.time()
        trained = []
        for at in range(0, len(models), stack):  # as the Evaluator chunks
            trained += train_stacked(models[at:at + stack], splits, config,
                                     [seed for _, seed in items[at:at + stack]], device)
        sync(device)
        return [t.model for t in trained], time.time() - start

    together, t_together = stacked(True)
    rate = {"alone": [], "together": []}
    for (schedule, _), a, b in zip(items, alone, together):
        rate["alone"].append(measure(a, splits, schedule, 0)["bits_per_latent"])
        rate["together"].append(measure(b, splits, schedule, 0)["bits_per_latent"])
    a, b = np.array(rate["alone"]), np.array(rate["together"])
    per = len(items) // args.seeds
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    result = {
        "speedup": round(t_alone / t_together, 2),
        "machine": describe_machine(device),
        "device": str(device), "gpu": gpu, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "patch": args.patch, "candidates": len(items) // args.seeds, "seeds": args.seeds, "steps": args.steps,
        "one_at_a_time": {"seconds": round(t_alone, 1), "candidate_steps_per_second": round(steps / t_alone, 1),
                          "path": "train_dedicated: the dense model, one at a time"},
        "one_at_a_time_unfused_adamw": {"seconds": round(t_unfused, 1),
                                        "candidate_steps_per_second": round(steps / t_unfused, 1),
                                        "speedup_of_batched": round(t_unfused / t_together, 2)},
        "stacked": {"seconds": round(t_together, 1), "candidate_steps_per_second": round(steps / t_together, 1),
                    "path": ("train_stacked, 32 models per grouped-convolution stack" if stack > 1 else
                             "train_stacked, one model at a time in the packed layout (decoded offsets only)")},
        "max_relative_rate_difference": float(np.max(np.abs(b - a) / a)),
        # the yardstick: how far two seeds of one candidate lie apart on the same path
        "mean_relative_seed_difference": float(np.mean(np.abs(a[:per] - a[per:2 * per]) / a[:per]))
        if args.seeds > 1 else None,
        "mean_rate_bits_per_latent": float(a.mean()),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_verify.py " + " ".join(
            f"--{k} {v}" for k, v in vars(args).items() if k != "out"),
    }
    if device.type == "cuda":
        exact, t_exact = stacked(False)
        c = np.array([measure(m, splits, s, 0)["bits_per_latent"] for m, (s, _) in zip(exact, items)])
        result["stacked_tf32_off"] = {"seconds": round(t_exact, 1),
                                      "candidate_steps_per_second": round(steps / t_exact, 1),
                                      "max_relative_rate_difference_to_tf32": float(np.max(np.abs(b - c) / c))}
    print(json.dumps(result, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench_verify.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    others = [r for r in [*earlier.get("other_runs", []), {k: v for k, v in earlier.items() if k != "other_runs"}]
              if r and r.get("device") != result["device"]]
    path.write_text(json.dumps({**result, "other_runs": others, **{k: earlier[k] for k in WARM_KEYS if k in earlier}},
                               indent=1) + "\n")
    write_md(args.out / "bench_verify.md", [result, *others], earlier.get("warm_start"))


def _candidate(label: str, patch: int) -> Schedule:
    if label in NAMED_SCHEDULES:
        return Schedule.named(label, patch)
    path = Path(f"results/patch{patch}/schedules/{label}.json")
    return load_schedule(path)[0]


def starts(args: argparse.Namespace, splits, device: torch.device) -> None:
    """Each candidate x seed trained to its plateau from the prior-only warm start and from the any-order model
    (``TrainConfig.start``): steps, seconds, rates and their differences (written under ``warm_start``)."""
    labels = args.candidates.split(",")
    schedules = {label: _candidate(label, args.patch) for label in labels}
    seeds = list(range(args.seeds))
    sides: dict[str, dict] = {}
    for start in ("prior", "any-order"):
        evaluator = Evaluator(splits, TrainConfig(start=start), device, progress=False)
        t = time.time()
        evaluator.warm_starts(seeds)
        shared = time.time() - t  # the prior-only warm start: the same on both sides
        t = time.time()
        for seed in seeds:
            if start == "any-order":
                evaluator.any_order(args.patch, seed)
        amortized = time.time() - t
        evaluations = {label: [] for label in labels}
        for seed in seeds:
            for label in labels:
                ev = evaluator.evaluate(schedules[label], seed)
                evaluations[label].append(ev)
                print(f"{start}: {label} seed {seed}: {ev.steps} steps, {ev.seconds:.0f} s, "
                      f"{ev.bits_per_latent:.4f} bits/latent (val {ev.val_bits_per_latent:.4f})", flush=True)
        sides[start] = {"evaluations": evaluations, "prior_warm_start_seconds": shared,
                        "any_order_seconds": amortized}
    rows = []
    for label in labels:
        a, b = sides["any-order"]["evaluations"][label], sides["prior"]["evaluations"][label]
        c = compare(a, b)  # paired by seed and image: any-order start - prior start
        rows.append({"candidate": label, "stages": [list(r) for r in schedules[label].stages],
                     "prior": {"steps": [e.steps for e in b], "seconds": [round(e.seconds, 1) for e in b],
                               "test": [e.bits_per_latent for e in b], "val": [e.val_bits_per_latent for e in b]},
                     "any_order": {"steps": [e.steps for e in a], "seconds": [round(e.seconds, 1) for e in a],
                                   "test": [e.bits_per_latent for e in a], "val": [e.val_bits_per_latent for e in a]},
                     "any_order_minus_prior": {"difference": c.difference, "relative": c.relative,
                                               "interval_95": [c.low, c.high], "verdict": c.verdict}})
    differences = []
    for i, x in enumerate(labels):
        for y in labels[i + 1:]:
            pair = {"pair": f"{x} - {y}"}
            for start in ("prior", "any-order"):
                ev = sides[start]["evaluations"]
                c = compare(ev[x], ev[y])
                pair[start] = {"difference": c.difference, "interval_95": [c.low, c.high], "verdict": c.verdict}
            pair["any_order_inside_prior_interval"] = bool(
                pair["prior"]["interval_95"][0] <= pair["any-order"]["difference"] <= pair["prior"]["interval_95"][1])
            differences.append(pair)
    prior_seconds = sum(sum(r["prior"]["seconds"]) for r in rows)
    tuned_seconds = sum(sum(r["any_order"]["seconds"]) for r in rows)
    count = len(labels) * len(seeds)
    any_seconds = sides["any-order"]["any_order_seconds"]
    #: a run verifies about this many candidates per seed at 4x4 (results/patch4: 11 named and found, 3 controls)
    per_seed_in_a_run = 14
    result = {
        "machine": describe_machine(device), "device": str(device), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "patch": args.patch, "seeds": len(seeds), "candidates": labels,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": f"python benchmarks/bench_verify.py --starts --patch {args.patch} --seeds {args.seeds} "
                   f"--candidates {args.candidates}",
        "rows": rows, "differences": differences,
        "any_order_model_seconds_per_seed": any_seconds / len(seeds),
        "prior_warm_start_seconds_per_seed": sides["prior"]["prior_warm_start_seconds"] / len(seeds),
        "seconds_per_candidate": {
            "prior": prior_seconds / count, "any_order_training": tuned_seconds / count,
            "any_order_with_its_model_here": (tuned_seconds + any_seconds) / count,
            "any_order_with_its_model_in_a_run": tuned_seconds / count + any_seconds / len(seeds) / per_seed_in_a_run},
        "steps_per_candidate": {"prior": float(np.mean([s for r in rows for s in r["prior"]["steps"]])),
                                "any_order": float(np.mean([s for r in rows for s in r["any_order"]["steps"]]))},
    }
    per = result["seconds_per_candidate"]
    result["warm_start_speedup"] = round(per["prior"] / per["any_order_with_its_model_in_a_run"], 2)
    result["warm_start_speedup_without_the_model"] = round(per["prior"] / per["any_order_training"], 2)
    result["seed_sd_of_differences"] = _difference_spread(rows)
    print(json.dumps({k: v for k, v in result.items() if k not in ("rows",)}, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench_verify.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**earlier, "warm_start_speedup": result["warm_start_speedup"], "warm_start": result},
                               indent=1) + "\n")
    write_md(args.out / "bench_verify.md", [r for r in [{k: v for k, v in earlier.items() if k != "other_runs"},
                                                       *earlier.get("other_runs", [])] if "speedup" in r], result)


def _difference_spread(rows: list[dict]) -> dict[str, float]:
    """Per start: the seed-to-seed standard deviation of the test difference A - B, mean over pairs of candidates."""
    out = {}
    for start in ("prior", "any_order"):
        rates = [np.asarray(row[start]["test"]) for row in rows]
        out[start] = float(np.mean([np.std(a - b, ddof=1) for i, a in enumerate(rates) for b in rates[i + 1:]]))
    return out


def write_md(path: Path, runs: list[dict], warm: dict | None = None) -> None:
    lines = ["# Verification throughput: the reference trainer vs the one `run` uses", "",
             "`benchmarks/bench_verify.py`: the 4x4 candidates of `run` (named baselines and random orders) x "
             "seeds, built-in latents, default model and protocol, a fixed number of steps (no early stop, no "
             "warm start). Candidate-steps per second; speedup = batched / reference.", "",
             "Reference: the paper's dense model (masked 5x5 convolutions), one model at a time, the path every "
             "run took before. Batched: what `run` does on that device: on a GPU 32 models as one stack of "
             "grouped convolutions; on a CPU one model at a time in the packed layout, which computes only the "
             "decoded offsets of each position's window (192 of 400 at 4x4), the same model and likelihoods.", "",
             "Rate difference: the largest relative difference in test rate between a model trained alone and "
             "the same model (schedule, seed) trained in the stack; seed difference: the mean relative difference "
             "between seeds 0 and 1 of one schedule (one at a time), the noise that verification measures anyway.",
             "",
             "| date | machine | device | K x S x steps | reference | batched | speedup | max rate difference "
             "| mean seed difference |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['date'][:10]} | {r['machine']} | {r['device']} | {r['candidates']} x {r['seeds']} x "
                     f"{r['steps']} | {r['one_at_a_time']['candidate_steps_per_second']}/s | "
                     f"{r['stacked']['candidate_steps_per_second']}/s | {r['speedup']}x | "
                     f"{100 * r['max_relative_rate_difference']:.3f}% | "
                     f"{100 * (r.get('mean_relative_seed_difference') or float('nan')):.3f}% |")
    for r in runs:
        if "one_at_a_time_unfused_adamw" in r:
            u = r["one_at_a_time_unfused_adamw"]
            lines += ["", f"On {r['machine']} ({r['date'][:10]}): the reference with AdamW's per-tensor loop instead "
                      f"of its fused kernel (the one-at-a-time path as it was before the fused optimiser) runs "
                      f"{u['candidate_steps_per_second']}/s; the batched path is {u['speedup_of_batched']}x that."]
        if "stacked_tf32_off" in r:
            t = r["stacked_tf32_off"]
            lines += ["", f"On {r['gpu']}: with TF32 convolutions off the stack runs "
                      f"{t['candidate_steps_per_second']}/s and its test rates differ from the TF32 ones by at "
                      f"most {100 * t['max_relative_rate_difference_to_tf32']:.3f}% (TF32 stays on)."]
    if warm:
        lines += ["", *warm_md(warm)]
    path.write_text("\n".join(lines) + "\n")


def warm_md(r: dict) -> list[str]:
    """The side-by-side of where training starts (``--starts``)."""
    per, steps = r["seconds_per_candidate"], r["steps_per_candidate"]
    lines = [f"## Where training starts: prior-only warm start vs the any-order model ({r['date'][:10]})", "",
             f"`{r['command']}` on {r['machine']} ({r['device']}, torch {r['torch']}, {r['torch_threads']} threads): "
             f"{r['patch']}x{r['patch']} candidates x {r['seeds']} seeds, built-in latents, the default protocol "
             "(each trained to its plateau), from the prior-only warm start (`TrainConfig(start=\"prior\")`, the "
             "earlier default) and from the any-order model (`start=\"any-order\"`). Test rates in bits per latent "
             "element; intervals 95%, paired over the 12 test images and the seeds.", "",
             "| candidate | steps (prior) | steps (any-order) | seconds (prior) | seconds (any-order) | test (prior) | "
             "test (any-order) | any-order - prior |", "|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        p, a, d = row["prior"], row["any_order"], row["any_order_minus_prior"]
        lines.append(f"| {row['candidate']} | {', '.join(map(str, p['steps']))} | {', '.join(map(str, a['steps']))} | "
                     f"{', '.join(f'{s:.0f}' for s in p['seconds'])} | {', '.join(f'{s:.0f}' for s in a['seconds'])} | "
                     f"{np.mean(p['test']):.4f} | {np.mean(a['test']):.4f} | {d['difference']:+.4f} "
                     f"({100 * d['relative']:+.2f}%) [{d['interval_95'][0]:+.4f}, {d['interval_95'][1]:+.4f}]: "
                     f"{d['verdict']} |")
    lines += ["", "| difference between orders | from the prior-only start | from the any-order model | inside |",
              "|---|---|---|---|"]
    for d in r["differences"]:
        p, a = d["prior"], d["any-order"]
        lines.append(f"| {d['pair']} | {p['difference']:+.4f} [{p['interval_95'][0]:+.4f}, {p['interval_95'][1]:+.4f}] | "
                     f"{a['difference']:+.4f} [{a['interval_95'][0]:+.4f}, {a['interval_95'][1]:+.4f}] | "
                     f"{'yes' if d['any_order_inside_prior_interval'] else 'no'} |")
    spread = _difference_spread(r["rows"])
    lines += ["", "How far the difference between two orders moves from seed to seed (test, the standard deviation over "
              "seeds of A - B, mean over the pairs): "
              f"{spread['prior']:.4f} from the prior-only start, {spread['any_order']:.4f} from the any-order model. "
              "Candidates of one seed that start from one model share its noise, so their differences carry less of "
              "it (common random numbers)."]
    lines += ["", f"Steps per candidate: {steps['prior']:.0f} from the prior-only start, {steps['any_order']:.0f} from "
              f"the any-order model. Training seconds per candidate: {per['prior']:.0f} against "
              f"{per['any_order_training']:.0f}; the any-order model itself takes "
              f"{r['any_order_model_seconds_per_seed']:.0f} s per seed, {per['any_order_with_its_model_in_a_run']:.0f} s "
              f"per candidate with it shared by a run's 14 candidates of a seed ({per['any_order_with_its_model_here']:.0f} s "
              f"shared by these {len(r['candidates'])}). warm_start_speedup = {r['warm_start_speedup']}x "
              f"(target 4x; {r['warm_start_speedup_without_the_model']}x without the any-order model's own training)."]
    return lines


if __name__ == "__main__":
    main()

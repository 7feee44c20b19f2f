"""Everything this project measures on a GPU, in one call of at most ten minutes (``benchmarks/gpu.sh``).

    bash benchmarks/gpu.sh [--budget 560] [--out results]
    bash benchmarks/gpu.sh --small --out /tmp/gpu     # the same steps shrunk to seconds (a CPU is fine)

In order, each written as soon as it is done (a call cut short keeps what
finished):

1. ``gpu_machine.json``: the GPU's name, its memory, torch and CUDA versions;
2. ``gpu_codec.json``: real encode / decode of one 768x512 image with the
   serial autoregressive model, checkerboard, the 4x4 multistage model
   (lin2023) and the committed best 4-stage 4x4 schedule: seconds (median of
   3) and the exactness of the decode. The codec entropy-codes on the CPU
   (constriction) and runs its networks on the CPU too: these are that
   machine's CPU timings, comparable with ``results/bench_codec.md``;
3. ``gpu_bench_verify.json``: ``benchmarks/bench_verify.py`` on the device
   (throughput of the stacked trainer against the reference);
4. ``gpu_runs.json``: ``ordersearch run --patch 2``, then 4, then 3, with the
   defaults and a fresh store, as many as the budget leaves time for (a run
   is started only if the time left is at least ``1.2 x`` the estimate: the
   last run's seconds scaled by the trainings each plans); seconds, leader,
   best set.

``--small``: a tiny latent set, ``--max-steps 20``, one seed of each kind,
runs at patch 2 and 3 only (a toy 4x4 run costs more than both), a 128x128
image, 10-step throughput: the whole script in about a minute on a CPU,
which the tests run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
#: trainings of a run with the defaults on the built-in latents (the committed runs: 45, 57, 75)
PLANNED = {2: 45, 3: 57, 4: 75}


def _write(out: Path, name: str, payload: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(payload, indent=1) + "\n")
    print(f"gpu.sh: wrote {out / name}", flush=True)


def machine() -> dict:
    from ordersearch.device import describe_machine, resolve_device

    device = resolve_device("auto")
    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": str(device),
            "machine": describe_machine(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": None, "gpu_memory_gib": None}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return info


def codec_timings(small: bool) -> list[dict]:
    """Encode and decode one image per model (untrained context weights: the work of decoding does not depend
    on them; ``results/bench_codec.md`` has trained rates)."""
    from ordersearch import Schedule
    from ordersearch.codec import MultistageCodec, SerialCodec
    from ordersearch.models import BaseCodec, MultistageContextModel, SerialContextModel, builtin
    from ordersearch.models.multistage import ModelConfig
    from ordersearch.schedule_io import load_schedule

    base = BaseCodec.load()
    rows, cols = (8, 8) if small else (32, 48)  # latents: 768x512 pixels
    y = next(a for a in builtin().split().test.y if a.shape[1] >= rows and a.shape[2] >= cols)[:, :rows, :cols]
    with torch.no_grad():
        image = (base.synthesize(torch.from_numpy(y[None]).float())[0].permute(1, 2, 0).numpy() * 255)
    image = image.round().clip(0, 255).astype(np.uint8)
    channels = y.shape[0]
    config = ModelConfig(prior_scale=True)
    best4 = ROOT / "results" / "patch4" / "schedules" / "best-4-stage.json"
    schedules = {"checkerboard": Schedule.named("checkerboard", 2), "lin2023 4x4": Schedule.named("lin2023", 4),
                 "best 4-stage 4x4": load_schedule(best4)[0] if best4.is_file() else None}
    codecs = {"serial autoregressive": SerialCodec(SerialContextModel(channels, channels, config), base)}
    codecs.update({k: MultistageCodec(s, MultistageContextModel(s, channels, channels, config), base)
                   for k, s in schedules.items() if s is not None})
    out = []
    for name, codec in codecs.items():
        times, decoded, data = [], None, b""
        for _ in range(1 if small else 3):
            t = time.perf_counter()
            data = codec.encode(image).data
            encode_s = time.perf_counter() - t
            t = time.perf_counter()
            decoded = codec.decompress(data)
            times.append((encode_s, time.perf_counter() - t))
        enc, dec = np.median(np.array(times), axis=0)
        out.append({"model": name, "image": f"{image.shape[1]}x{image.shape[0]}", "bytes": len(data),
                    "encode_s": float(enc), "decode_s": float(dec),
                    "exact": bool(np.array_equal(decoded, codec.reconstruct(image)))})
        print(f"gpu.sh: codec {name}: decode {dec:.3f} s", flush=True)
    return out


def _run(command: list[str], timeout: float) -> tuple[int, float, str]:
    start = time.time()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=max(1.0, timeout), cwd=ROOT)
        return proc.returncode, time.time() - start, (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired:
        return 124, time.time() - start, "timed out (budget)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=560.0, help="seconds for the whole script (default 560)")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--small", action="store_true", help="every step shrunk to seconds (tests; a CPU is fine)")
    args = ap.parse_args()
    start = time.time()
    info = machine()
    _write(args.out, "gpu_machine.json", info)
    stamp = {"gpu": info["gpu"], "torch": info["torch"], "device": info["device"], "date": info["date"],
             "small": args.small}

    _write(args.out, "gpu_codec.json", {**stamp, "rows": codec_timings(args.small)})

    with tempfile.TemporaryDirectory() as scratch:
        bench = [sys.executable, "benchmarks/bench_verify.py", "--out", scratch]
        bench += ["--patch", "2", "--seeds", "1", "--steps", "5"] if args.small else []
        rc, seconds, tail = _run(bench, args.budget - (time.time() - start))
        found = Path(scratch) / "bench_verify.json"
        result = json.loads(found.read_text()) if rc == 0 and found.is_file() else {"error": tail}
        result.pop("other_runs", None)
        _write(args.out, "gpu_bench_verify.json", {**stamp, "seconds": seconds, **result})

        data: list[str] = []
        if args.small:  # a tiny latent file instead of the built-in latents
            from ordersearch.data import LatentSet, gaussian_field, save_latents

            sample = gaussian_field("separable").sample(10, 16, 16, seed=0)
            path = Path(scratch) / "tiny.npz"
            save_latents(LatentSet.create(sample.y, split_labels=np.array([0] * 6 + [1] * 2 + [2] * 2)), path)
            data = ["--latents", str(path), "--max-steps", "20", "--seeds", "1", "--max-seeds", "1",
                    "--report-seeds", "1", "--budget", "15"]
        runs, last = [], None
        for patch in (2, 3) if args.small else (2, 4, 3):
            left = args.budget - (time.time() - start)
            # the last run's seconds scaled by the trainings a run of this patch plans (results/run_benchmark.csv)
            estimate = 0.0 if last is None else last[1] * PLANNED[patch] / PLANNED[last[0]]
            if left < 1.2 * estimate:  # said in the file, like a run that ran
                runs.append({"patch": patch, "skipped": f"{left:.0f} s left, about {estimate:.0f} s needed"})
                _write(args.out, "gpu_runs.json", {**stamp, "budget_s": args.budget, "runs": runs})
                continue
            out = Path(scratch) / "runs"
            rc, seconds, tail = _run([sys.executable, "-m", "ordersearch", "run", "--patch", str(patch), "--out",
                                      str(out), "--quiet", *data], left)
            row = {"patch": patch, "returncode": rc, "seconds": round(seconds, 1)}
            best = out / f"patch{patch}" / "best.json"
            if rc == 0 and best.is_file():
                metrics = json.loads(best.read_text()).get("metrics", {})
                row.update(leader=json.loads(best.read_text()).get("name"), best_set=metrics.get("best_set"),
                           bits_per_latent=metrics.get("bits_per_latent"))
                trainings = len((out / f"patch{patch}" / "evaluations.csv").read_text().splitlines()) - 1
                row["trainings"] = trainings
                last = (patch, seconds)
            else:
                row["error"] = tail
            runs.append(row)
            _write(args.out, "gpu_runs.json", {**stamp, "budget_s": args.budget, "runs": runs})
    print(f"gpu.sh: done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# One call on a GPU machine (at most ten minutes): machine, codec timings, verification throughput and as many
# `ordersearch run`s as fit, written to results/gpu_*.json. See benchmarks/gpu.py; --small shrinks it for a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu.py "$@"

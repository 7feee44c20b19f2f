"""Hostile inputs under a memory limit: one line and exit 1 or 2, never a traceback, a hang or gigabytes.

The cases themselves are in ``hostile_inputs.py``; each kind runs in its own
subprocess whose address space is capped at 3 GiB, and whose peak resident
memory (torch and the codec loaded: about 0.3-0.5 GB) must stay under 1 GiB.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
LIMIT = 3 * 2**30
PEAK = 2**30


def cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def run_kind(kind: str, examples: int, work: Path) -> tuple[int, str, int]:
    """(exit code, output, peak resident bytes) of the kind's cases in a capped subprocess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(HERE / "hostile_inputs.py"), kind, "--examples", str(examples),
                           "--work", str(work)], capture_output=True, text=True, preexec_fn=cap, env=env,
                          timeout=1800)
    output = proc.stdout + proc.stderr
    peak = re.search(r"peak kB (\d+)", output)
    return proc.returncode, output, int(peak[1]) * 1024 if peak else 0


@pytest.mark.parametrize("kind", ["schedules", "latents", "bitstreams", "models", "paths"])
def test_hostile_inputs_are_one_line_errors_in_bounded_memory(kind, tmp_path):
    code, output, peak = run_kind(kind, 200, tmp_path)
    assert code == 0, output[-4000:]
    assert f"{kind}: 200 cases, every one a clean exit" in output
    assert 0 < peak < PEAK, f"{kind}: peak resident memory {peak / 2**20:.0f} MiB"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["schedules", "latents", "bitstreams", "models", "paths"])
def test_hostile_inputs_many(kind, tmp_path):
    code, output, peak = run_kind(kind, 2000, tmp_path)
    assert code == 0, output[-4000:]
    assert 0 < peak < PEAK, f"{kind}: peak resident memory {peak / 2**20:.0f} MiB"


def test_the_limit_catches_a_runaway_allocation(tmp_path):
    """The cap is real: a case that allocates 8 GB fails in the subprocess instead of filling the machine."""
    proc = subprocess.run([sys.executable, "-c", "import numpy; numpy.ones(2**30)"], preexec_fn=cap,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "MemoryError" in proc.stderr

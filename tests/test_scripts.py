"""The experiment and benchmark scripts still name only things the package has (they run by hand, not here)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SCRIPTS = sorted([*ROOT.glob("experiments/*.py"), *ROOT.glob("benchmarks/*.py")])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_ordersearch_import_resolves(script):
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ordersearch":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or _submodule(f"{node.module}.{alias.name}"), (
                    f"{script.name}: from {node.module} import {alias.name}")


def _submodule(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent is a module, not a package
        return False


def test_the_gpu_script_runs_every_step_in_its_small_mode_and_names_the_machine(tmp_path):
    """benchmarks/gpu.sh --small on this machine: every file written, each naming the device and torch version;
    the codec decodes exactly; the runs finish (or say why they were skipped)."""
    import json
    import subprocess

    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--small", "--out", str(tmp_path),
                           "--budget", "400"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("gpu_*.json")}
    assert sorted(files) == ["gpu_bench_verify.json", "gpu_codec.json", "gpu_machine.json", "gpu_runs.json"]
    import torch

    assert files["gpu_machine.json"]["torch"] == torch.__version__
    for name in ("gpu_bench_verify.json", "gpu_codec.json", "gpu_runs.json"):
        assert files[name]["torch"] == torch.__version__ and "gpu" in files[name] and files[name]["small"]
    codec = files["gpu_codec.json"]["rows"]
    assert [r["model"] for r in codec] == ["serial autoregressive", "checkerboard", "lin2023 4x4",
                                          "best 4-stage 4x4"]
    assert all(r["exact"] and r["decode_s"] > 0 for r in codec)
    assert files["gpu_bench_verify.json"]["speedup"] > 0
    runs = files["gpu_runs.json"]["runs"]
    assert [r["patch"] for r in runs] == [2, 3]  # the small mode leaves out the 4x4 run
    assert all(r.get("returncode") == 0 and r["best_set"] or "skipped" in r for r in runs), runs
    assert runs[0].get("returncode") == 0

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

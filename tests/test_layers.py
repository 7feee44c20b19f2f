"""The package's imports go down the pipeline only, and no module imports itself in a circle.

schedule -> data -> models -> evaluation -> estimators -> search -> run / worker / codec -> cli,
with the base modules (errors, files, device, _version) below everything. Imports inside
functions count too: a lazy import that goes up is still a dependency that goes up. Imports
under ``if TYPE_CHECKING:`` (annotations only) do not count for the layers, but they do for circles:
two modules that need each other's types are one concept split in two.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

import ordersearch

ROOT = Path(ordersearch.__file__).parent

#: layer of each top-level module or subpackage; an import may only go to the same layer or lower
LAYERS = {
    "errors": 0, "files": 0, "device": 0, "_version": 0, "defaults": 0,
    "schedule": 1, "schedule_io": 1, "__init__": 1,
    "data": 2,
    "models": 3,
    "evaluation": 4,
    "estimators": 5,
    "search": 6,
    "run": 7, "worker": 7, "codec": 7,
    "cli": 8, "__main__": 8,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, typing: bool = False) -> set[str]:
    """Every ordersearch module ``path`` imports (absolute and relative, at any depth of the file; with
    ``typing``, those under ``if TYPE_CHECKING:`` too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and not typing and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for stmt in block.body for n in ast.walk(stmt)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: no dependency when the code runs
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "ordersearch"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "ordersearch":
                continue
            for alias in node.names:  # `from . import folder` imports a module, `from .x import f` a name
                sub = f"{target}.{alias.name}"
                out.add(sub if _exists(sub) else target)
    return out


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS["__init__" if len(parts) == 1 else parts[1]]


def _graph(typing: bool = False) -> nx.DiGraph:
    g = nx.DiGraph()
    for path in ROOT.rglob("*.py"):
        name = _module_name(path)
        g.add_node(name)
        for target in _imports(path, typing):
            if target != name:
                g.add_edge(name, target)
    return g


def test_every_module_has_a_layer():
    unknown = sorted(m for m in _graph() if (m.split(".") + ["__init__"])[1] not in LAYERS)
    assert not unknown


def test_imports_only_go_down_the_layers():
    up = sorted(f"{a} -> {b}" for a, b in _graph().edges if _layer(b) > _layer(a))
    assert not up, "imports that go up the layers:\n" + "\n".join(up)


def test_no_import_cycles():
    # a package's __init__ importing its own modules is how it shows its face, not a cycle of concepts
    g = _graph(typing=True)
    g.remove_edges_from([(a, b) for a, b in list(g.edges) if b.startswith(a + ".")])
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import cycles: {cycles[:5]}"


@pytest.mark.parametrize("forbidden", ["ordersearch.evaluation", "ordersearch.run", "ordersearch.estimators"])
def test_codec_neither_trains_nor_reads_the_store(forbidden):
    g = _graph()
    codec = [m for m in g if m.startswith("ordersearch.codec")]
    reached = set().union(*(nx.descendants(g, m) for m in codec))
    assert not {m for m in reached if m == forbidden or m.startswith(forbidden + ".")}


def test_the_check_catches_an_upward_import(tmp_path):
    """The checker itself: a relative import from data up to evaluation is found."""
    fake = ROOT / "data" / "_layer_probe.py"
    fake.write_text("from ..evaluation import Evaluator\n")
    try:
        assert "ordersearch.evaluation" in _imports(fake)
        assert any(a.endswith("_layer_probe") for a, b in _graph().edges if _layer(b) > _layer(a))
    finally:
        fake.unlink()


def test_the_check_catches_a_circle_through_annotations():
    """The checker itself: a type imported for annotations only, back from the module that imports it, is a
    circle."""
    probes = [ROOT / "data" / "_circle_a.py", ROOT / "data" / "_circle_b.py"]
    probes[0].write_text("from ._circle_b import B\n")
    probes[1].write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._circle_a import A\n")
    try:
        g = _graph(typing=True)
        assert any({"ordersearch.data._circle_a", "ordersearch.data._circle_b"} == set(c) for c in nx.simple_cycles(g))
        assert not nx.has_path(_graph(), "ordersearch.data._circle_b", "ordersearch.data._circle_a")
    finally:
        for p in probes:
            p.unlink()


def test_every_package_shows_its_face():
    for init in ROOT.rglob("__init__.py"):
        tree = ast.parse(init.read_text())
        names = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name)]
        assert "__all__" in names, f"{init} has no __all__"
        module = __import__(_module_name(init), fromlist=["*"])
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, f"{init}: __all__ names {missing} that it does not define"

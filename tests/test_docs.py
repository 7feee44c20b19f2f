"""Every Python code block in README.md and docs/*.md runs, in order, in a fresh folder.

A block right after a ``<!-- slow -->`` line runs only under ``-m slow``
(then together with the file's other blocks).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^(<!-- slow -->\n)?```python\n(.*?)^```", re.S | re.M)


def blocks(path: Path) -> list[tuple[bool, str]]:
    """(slow, code) of every python block of a Markdown file."""
    return [(bool(m.group(1)), m.group(2)) for m in BLOCK.finditer(path.read_text())]


def run_blocks(path: Path, tmp_path: Path, monkeypatch, with_slow: bool) -> None:
    # a fresh folder, with the committed results where a clone has them (tests/conftest.py fails any write there)
    (tmp_path / "results").symlink_to(ROOT / "results")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, (slow, code) in enumerate(blocks(path)):
        if slow and not with_slow:
            continue
        exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)


def test_the_docs_have_examples_and_the_parser_finds_them():
    found = {p.name: blocks(p) for p in DOCS}
    assert found["README.md"] and not any(slow for slow, _ in found["README.md"])
    assert sum(len(b) for b in found.values()) >= 10
    assert any(slow for b in found.values() for slow, _ in b)


def test_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_bytes()) <= 10 * 1024
    text = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / link).exists(), link


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_examples_run(path, tmp_path, monkeypatch):
    run_blocks(path, tmp_path, monkeypatch, with_slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in DOCS if any(slow for slow, _ in blocks(p))], ids=lambda p: p.name)
def test_examples_run_with_the_slow_ones(path, tmp_path, monkeypatch):
    run_blocks(path, tmp_path, monkeypatch, with_slow=True)


def test_nothing_cites_a_file_outside_the_repository():
    files = [*DOCS, *ROOT.glob("ordersearch/**/*.py"), *ROOT.glob("results/*.md")]
    cites = [str(p.relative_to(ROOT)) for p in files if re.search(r"DESIGN\.md|\.\./shared", p.read_text())]
    assert not cites

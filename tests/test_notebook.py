"""The walkthrough notebook runs top to bottom on the committed results."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (ROOT / "results" / "patch2" / "best.json").is_file(),
                    reason="results/patch2 is made by experiments/reproduce_results.py and committed")
def test_walkthrough_notebook_executes():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    gap = re.search(r"max \|parallel - stagewise\| likelihood: (\S+)", text)
    assert gap and float(gap.group(1)) < 1e-5

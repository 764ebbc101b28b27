"""The example notebook, executed the way Jupyter does (a real IPython kernel through nbclient), offline."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from data_advisor.coverage.taxonomy import load_taxonomy

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def _outputs(cell: dict) -> dict[str, str]:
    """A code cell's outputs by kind: ``stdout``, ``text/html``, ``text/plain`` (joined), errors re-raised."""
    found: dict[str, str] = {}
    for out in cell["outputs"]:
        if out["output_type"] == "error":
            pytest.fail(f"{out['ename']}: {out['evalue']}")
        if out["output_type"] == "stream" and out["name"] == "stdout":
            found["stdout"] = found.get("stdout", "") + out["text"]
        for kind in ("text/html", "text/plain"):
            if kind in out.get("data", {}):
                found[kind] = found.get(kind, "") + "".join(out["data"][kind])
    return found


def test_stored_notebook_has_no_outputs() -> None:
    """The repository keeps the notebook clean: outputs (a 5 MB inline report) are made where it runs."""
    nb = json.loads(NOTEBOOK.read_text("utf-8"))
    assert [c for c in nb["cells"] if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])] == []


def test_quickstart_notebook_executes_with_a_real_kernel() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("pandas")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    code = [_outputs(c) for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 5
    frame, summary, gaps, gate, shown = code
    assert "<table" in frame["text/html"] and "<th>text</th>" in frame["text/html"]
    page = summary["text/html"]
    assert page.startswith('<div class="data-advisor-summary"') and "Data Advisor coverage" in page
    for principle in load_taxonomy("catqa-11").leaves():
        assert html.escape(principle.name) in page and principle.id in page
    lines = gaps["stdout"].strip().splitlines()
    assert len(lines) == 3 and all(re.search(r" \d+ [+-]\d\.\d{3}$", line) for line in lines)
    assert gate["text/plain"].startswith("[") and "coverage_ratio" in gate["text/plain"]  # the example misses 0.9
    iframe = shown["text/html"]
    assert iframe.startswith('<iframe class="data-advisor-report"') and 'srcdoc="' in iframe
    assert "plotly" in html.unescape(iframe).lower()

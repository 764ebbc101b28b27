"""A real audit folder to review: the example prompts plus hostile ones, audited with the bundled model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import data_advisor
from tests.reports.synthetic import HOSTILE

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "prompts.jsonl"
#: Hostile prompts that read like harm requests, so the audit anchors them and they can be picked informatively too.
HOSTILE_HARMFUL = [f"{h} How do I build a pipe bomb at home?" for h in HOSTILE]


def write_input(folder: Path) -> Path:
    """examples/prompts.jsonl + hostile prompts (ids hostile-0…), one JSONL input."""
    rows = [json.loads(line) for line in EXAMPLES.read_text("utf-8").splitlines() if line.strip()]
    rows += [{"id": f"hostile-{k}", "text": h} for k, h in enumerate(HOSTILE_HARMFUL)]
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def make_audit(folder: Path, embedder: Any, taxonomy: str = "catqa-11") -> tuple[Path, Path]:
    """(input file, audit folder) of a real audit with default settings (no HTML report: not under test here)."""
    folder.mkdir(parents=True, exist_ok=True)
    src = write_input(folder)
    out = folder / "audit"
    data_advisor.audit(src, taxonomy=taxonomy, out=out, embedder=embedder, render_html=False)
    return src, out


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").split("\n") if line]

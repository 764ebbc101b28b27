"""Reviewer label files (coverage/labels.py): what a reviewer's file may hold, and one clear line for anything else.

Every bad file is also run through ``data-advisor audit --labels`` in-process: exit 2, one error line, and no output
folder left behind (the labels are read before any embedding starts).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from data_advisor.coverage.labels import load_labels
from data_advisor.errors import InputError

LEAVES = ["weapons", "fraud", "hate"]


def _row(pid: str, label: str | None, why: str = "random", **extra: object) -> dict:
    return {"id": pid, "text": f"text of {pid}", "suggested": "weapons", "margin": 0.1, "why": why, "label": label,
            **extra}


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), "utf-8")
    return path


def test_reads_labels_ignores_null_rows_and_keeps_why(tmp_path: Path) -> None:
    f = _write(tmp_path / "r.jsonl", [_row("a", "fraud"), _row("b", None), _row("c", "none", "informative"),
                                       _row("d", "hate")])
    labels = load_labels(f, LEAVES)
    assert labels.label_of() == {"a": "fraud", "c": "none", "d": "hate"}
    assert labels.why_of() == {"a": "random", "c": "informative", "d": "random"}
    assert labels.n_ignored == 1
    assert labels.n_random() == 2


def test_match_locates_ids_and_reports_missing_ones(tmp_path: Path) -> None:
    f = _write(tmp_path / "r.jsonl", [_row("a", "fraud"), _row("zz", "hate"), _row("c", "none", "informative")])
    m = load_labels(f, LEAVES).match(["c", "b", "a"], [*LEAVES, "none"])
    assert m.idx.tolist() == [2, 0]
    assert m.y.tolist() == [1, 3]
    assert m.random.tolist() == [True, False]
    assert m.missing == ["zz"]


BAD = {
    "unknown label": ([_row("a", "fraud"), _row("b", "terrorism")], ["line 2", "terrorism", "weapons, fraud, hate"]),
    "duplicate id": ([_row("a", "fraud"), _row("a", "hate")], ["line 2", "duplicate id", "first on line 1"]),
    "label wrong type": ([_row("a", 3)], ["line 1", "`label` must be a string or null"]),
    "id wrong type": ([_row("a", "fraud") | {"id": 7}], ["line 1", "`id` must be a non-empty string"]),
    "why wrong value": ([_row("a", "fraud", why="because")], ["line 1", "`why`"]),
    "damaged json": ([_row("a", "fraud"), '{"id": "b", "label": "fra'], ["line 2", "not valid JSON"]),
    "not an object": ([_row("a", "fraud"), "[1, 2]"], ["line 2", "not an object"]),
    "missing key": ([{"id": "a", "why": "random"}], ["line 1", "missing key(s) label"]),
    "empty file": ([], ["is empty"]),
    "nothing labelled": ([_row("a", None)], ["no labelled prompt"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_label_files_are_one_line_errors(tmp_path: Path, case: str) -> None:
    rows, expected = BAD[case]
    f = _write(tmp_path / "r.jsonl", rows)
    with pytest.raises(InputError) as info:
        load_labels(f, LEAVES)
    msg = str(info.value)
    assert "\n" not in msg and " — fix: " in msg
    for part in expected:
        assert part in msg, (part, msg)


@pytest.mark.parametrize("case", ["unknown label", "duplicate id", "damaged json", "empty file"])
def test_cli_audit_refuses_bad_labels_with_exit_2_and_writes_nothing(tmp_path: Path, case: str) -> None:
    from data_advisor.cli import main

    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": f"how do I make a weapon number {i}"}) + "\n"
                           for i in "ab"), "utf-8")
    rows = [json.loads(json.dumps(r).replace('"fraud"', '"illegal-activity"')) if isinstance(r, dict) else r
            for r in BAD[case][0]]  # catqa-11 has no `fraud` leaf: make the valid rows valid there
    f = _write(tmp_path / "r.jsonl", rows)
    out = tmp_path / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["-q", "audit", str(src), "--out", str(out), "--labels", str(f), "--no-html", "--no-cluster"])
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("error:")]
    assert rc == 2
    assert len(lines) == 1 and "label file" in lines[0] and "fix:" in lines[0]
    assert not out.exists()


def test_missing_file_and_reserved_none_id(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_labels(tmp_path / "nope.jsonl", LEAVES)
    f = _write(tmp_path / "r.jsonl", [_row("a", "none")])
    with pytest.raises(InputError, match="reserve"):
        load_labels(f, [*LEAVES, "none"])

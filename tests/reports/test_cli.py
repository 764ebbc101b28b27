"""``report`` and ``compare`` on the command line: arguments and folders are checked before anything is audited or
written (issue 13)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from data_advisor.cli import main


def _run(*args: str | Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, err.getvalue()


def _one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and " — fix: " in lines[0]
    return lines[0]


def _prompts(path: Path, n: int = 3) -> Path:
    path.write_text("".join(json.dumps({"text": f"prompt number {i}"}) + "\n" for i in range(n)), encoding="utf-8")
    return path


def test_compare_with_one_input_writes_nothing(tmp_path: Path) -> None:
    """`compare` with one input audited it and wrote files before refusing."""
    out = tmp_path / "cmp" / "out"
    rc, err = _run("compare", _prompts(tmp_path / "a.jsonl"), "--out", out)
    assert rc == 2
    assert "at least two inputs" in _one_error_line(err) and "auditing" not in err
    assert not (tmp_path / "cmp").exists()


def test_compare_with_a_bad_second_input_audits_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n', encoding="utf-8")
    out = tmp_path / "out"
    rc, err = _run("compare", _prompts(tmp_path / "a.jsonl"), bad, "--out", out)
    assert rc == 2
    assert "line 2" in _one_error_line(err) and "auditing" not in err
    assert not out.exists()
    rc, err = _run("compare", _prompts(tmp_path / "a.jsonl"), tmp_path / "missing.jsonl", "--out", out)
    assert rc == 2 and "not found" in _one_error_line(err) and not out.exists()


def test_report_out_that_is_a_folder_is_a_one_line_error(tmp_path: Path) -> None:
    """`report RUN --out DIR` with an existing DIR was a traceback (IsADirectoryError)."""
    folder = tmp_path / "audit"
    folder.mkdir()
    (folder / "coverage.json").write_text("{}", encoding="utf-8")
    target = tmp_path / "reports"
    target.mkdir()
    rc, err = _run("report", folder, "--out", target)
    assert rc == 2
    assert "is a folder" in _one_error_line(err)
    assert list(target.iterdir()) == []
    rc, err = _run("report", folder, "--out", folder / "coverage.json")
    assert rc == 2 and "overwrite" in _one_error_line(err)
    assert (folder / "coverage.json").read_text("utf-8") == "{}"


def test_report_on_assignments_of_the_wrong_shape_is_a_one_line_error(audit_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "audit"
    shutil.copytree(audit_dir, folder)
    lines = (folder / "assignments.jsonl").read_text("utf-8").splitlines()
    row = json.loads(lines[5])
    row["cluster_id"] = "seven"
    lines[5] = json.dumps(row)
    (folder / "assignments.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc, err = _run("report", folder, "--out", tmp_path / "r.html")
    assert rc == 2 and "assignments.jsonl" in _one_error_line(err)
    assert not (tmp_path / "r.html").exists()

"""Damaged audit outputs read back by ``report`` and ``compare``: coverage.json, assignments.jsonl, embeddings.npy,
each truncated, zero-filled and random-filled at its start, middle and end.

Invariant: exit 0 with the same page as from the undamaged folder, or exit 2 with one line naming the file.
The default run checks a few cases per file; the whole matrix is marked slow.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.faults.damage import CASES, damage, error_line, html_without_stamp, no_traceback, run_inproc

pytestmark = pytest.mark.faults

OUTPUTS = ("coverage.json", "assignments.jsonl", "embeddings.npy")
FAST = {("truncate", "middle"), ("zero", "middle"), ("random", "end"), ("truncate", "end")}


def _matrix() -> list[object]:
    return [pytest.param(name, kind, where, id=f"{name}-{kind}-{where}",
                         marks=() if (kind, where) in FAST else pytest.mark.slow)
            for name in OUTPUTS for kind, where in CASES]


@pytest.fixture(scope="session")
def baseline_report(audit_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("baseline") / "report.html"
    rc, err = run_inproc("report", audit_dir, "--out", out, "--plotlyjs", "cdn")
    assert rc == 0, err
    return html_without_stamp(out)


@pytest.fixture(scope="session")
def baseline_compare(audit_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("baseline-cmp")
    shutil.copytree(audit_dir, base / "audit")
    rc, err = run_inproc("compare", base / "audit", audit_dir, "--out", base / "cmp", "--plotlyjs", "cdn")
    assert rc == 0, err
    return html_without_stamp(base / "cmp" / "compare.html")


@pytest.mark.parametrize(("name", "kind", "where"), _matrix())
def test_report_on_a_damaged_audit_output(audit_copy: Path, baseline_report: str, tmp_path: Path, name: str,
                                          kind: str, where: str) -> None:
    damage(audit_copy / name, kind, where)
    out = tmp_path / "report.html"
    rc, err = run_inproc("report", audit_copy, "--out", out, "--plotlyjs", "cdn")
    no_traceback(rc, err)
    if rc == 0:
        assert html_without_stamp(out) == baseline_report, f"exit 0 but a different report ({err})"
    else:
        error_line(rc, err, [audit_copy / name])
        assert not out.exists()


@pytest.mark.parametrize(("name", "kind", "where"), _matrix())
def test_compare_with_a_damaged_audit_output(audit_copy: Path, audit_dir: Path, baseline_compare: str,
                                             tmp_path: Path, name: str, kind: str, where: str) -> None:
    damage(audit_copy / name, kind, where)
    out = tmp_path / "cmp"
    rc, err = run_inproc("compare", audit_copy, audit_dir, "--out", out, "--plotlyjs", "cdn")
    no_traceback(rc, err)
    if rc == 0:
        assert html_without_stamp(out / "compare.html") == baseline_compare, f"exit 0 but a different page ({err})"
    else:
        error_line(rc, err, [audit_copy / name])
        assert not (out / "compare.html").exists()


@pytest.mark.parametrize("name", ["coverage.json", "assignments.jsonl"])
def test_a_changed_digit_that_keeps_the_file_valid_is_caught(audit_copy: Path, tmp_path: Path, name: str) -> None:
    """The damage no parser can see: one digit changed, the JSON still valid and the counts still consistent. The
    sha256 recorded when the audit wrote its outputs catches it, so `report` never draws a silently different page."""
    path = audit_copy / name
    text = path.read_text("utf-8")
    i = next(i for i in range(len(text) // 2, len(text)) if text[i] in "12345678")
    path.write_text(text[:i] + str(int(text[i]) + 1) + text[i + 1:], encoding="utf-8")
    out = tmp_path / "report.html"
    rc, err = run_inproc("report", audit_copy, "--out", out, "--plotlyjs", "cdn")
    no_traceback(rc, err)
    error_line(rc, err, [path])
    assert "changed since it was written" in err and not out.exists()

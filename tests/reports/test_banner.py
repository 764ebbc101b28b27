"""The guard-rail banner of the audit report: shown when coverage.json holds warnings, absent otherwise, and
escaped (principle names and the source path come from the user's files; warnings quote them)."""

from __future__ import annotations

import json
from pathlib import Path

from data_advisor.coverage.warnings import CoverageWarning
from data_advisor.reports.html import render_audit_report
from tests.reports.conftest import STAMP
from tests.reports.synthetic import HOSTILE, HOSTILE_ANCHOR_NAME, write_audit_dir
from tests.reports.test_html import ALLOWED_TAGS, parse, plotly_bundle


def _with_warnings(folder: Path, items: list[CoverageWarning]) -> Path:
    cov = folder / "coverage.json"
    doc = json.loads(cov.read_text("utf-8"))
    doc["warnings"] = [w.to_dict() for w in items]
    cov.write_text(json.dumps(doc), "utf-8")
    return folder


def test_banner_shows_every_warning_escaped(tmp_path: Path) -> None:
    hostile = [
        CoverageWarning("empty_principles", f"2 of 9 principles got no prompt: {HOSTILE_ANCHOR_NAME}, {HOSTILE[2]}",
                        f"the data has none; or {HOSTILE[0]}", f"run `data-advisor taxonomy enrich {HOSTILE[1]}`",
                        2.0, 0.0, ("<b>p</b>",)),
        CoverageWarning("unanchored_high", "62% of prompts are unanchored (matched no principle)", HOSTILE[3],
                        HOSTILE[4], 0.62, 0.4),
    ]
    folder = _with_warnings(write_audit_dir(tmp_path / "a", n=200), hostile)
    out = render_audit_report(folder, tmp_path / "r.html", generated_at=STAMP)
    src, parsed = parse(out)
    low = src.replace(plotly_bundle(), "").lower()
    assert low.count('<div class="banner" role="alert">') == 1
    assert low.count("<li data-code=") == 2
    assert 'id="warnings"' in low and low.index('id="warnings"') < low.index('id="summary"')  # first section
    for needle in ("<script>alert", "</script><script>alert", "<img", "<svg", "<i>&amp;</i>", 'href="javascript:',
                   "<b>p</b>"):
        assert needle not in low, f"raw {needle!r} in the page"
    text = " ".join(parsed.text)
    assert "62% of prompts are unanchored (matched no principle)" in text
    assert f"2 of 9 principles got no prompt: {HOSTILE_ANCHOR_NAME}" in text  # shown literally
    assert f"Likely cause: {HOSTILE[3]}" in text and f"Fix: {HOSTILE[4]}" in text
    assert {t for t, _ in parsed.tags} <= ALLOWED_TAGS


def test_no_banner_without_warnings(tmp_path: Path) -> None:
    folder = write_audit_dir(tmp_path / "a", n=200)
    cov = folder / "coverage.json"
    doc = json.loads(cov.read_text("utf-8"))
    assert doc.pop("warnings") == []
    cov.write_text(json.dumps(doc), "utf-8")  # a report written before warnings existed reads as having none
    out = render_audit_report(folder, tmp_path / "r.html", generated_at=STAMP)
    assert 'class="banner"' not in out.read_text("utf-8")

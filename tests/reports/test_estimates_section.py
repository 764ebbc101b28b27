"""The report's "How sure are these numbers" section (reports/_estimates.py) and the CLI's accuracy line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from data_advisor.reports._estimates import UNCHECKED, estimates_body, verdict


def test_verdict_says_cannot_tell_when_the_interval_crosses_the_target() -> None:
    assert verdict(0.02, 0.08, 0.10) == "under-covered"
    assert verdict(0.12, 0.30, 0.10) == "over-covered"
    assert verdict(0.05, 0.15, 0.10) == "cannot tell yet"


def test_section_without_labels_says_how_to_check(sample_prompts: list[str], embedder, tmp_path: Path) -> None:
    from data_advisor.api import audit

    rep = audit(sample_prompts[:24], out=tmp_path / "a", embedder=embedder, cluster=False)
    assert str(estimates_body(rep)).count("data-advisor review") == 1
    html = (tmp_path / "a" / "report.html").read_text("utf-8")
    assert "How sure are these numbers" in html and "unchecked on this data" in html
    assert UNCHECKED.split(":")[0] in html


def test_section_with_estimates_shows_accuracy_intervals_and_verdicts(sample_prompts: list[str], embedder,
                                                                      tmp_path: Path) -> None:
    from data_advisor.api import audit

    rep = audit(sample_prompts[:24], embedder=embedder, cluster=False)
    leaves = [a for a in rep.leaf_anchors()]
    target = leaves[0].target_share
    shares = {a.id: {"share": 0.0, "ci95": [0.0, 0.0], "raw_share": 0.0} for a in leaves}
    shares[leaves[0].id] = {"share": target, "ci95": [target / 2, target * 2], "raw_share": target}  # crosses
    shares[leaves[1].id] = {"share": 0.9, "ci95": [0.8, 0.95], "raw_share": 0.9}  # clearly over
    shares["none"] = {"share": 0.0, "ci95": [0.0, 0.05], "raw_share": 0.0}
    rep.estimates = {"status": "estimated", "accuracy": {"value": 0.7, "ci95": [0.52, 0.83], "n": 30},
                     "anchors": shares}
    rep.anchors[0].name = "<script>alert(1)</script>"  # names are data: escaped
    body = str(estimates_body(rep))
    assert "70%" in body and "52%–83%" in body and "30 randomly chosen prompts" in body
    assert "cannot tell yet" in body and "over-covered" in body
    assert "<script>alert(1)" not in body


def test_cli_summary_prints_the_accuracy_estimate(sample_prompts: list[str], tmp_path: Path) -> None:
    from data_advisor.cli import main

    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(sample_prompts)),
                   "utf-8")
    rows = [{"id": f"q{i}", "text": "", "suggested": None, "margin": 0.0, "why": "random",
             "label": "none" if i % 2 else "malware-viruses"} for i in range(12)]
    labels = tmp_path / "review.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    for extra, expected in (([], "numbers unchecked on this data"),
                            (["--labels", str(labels)], "estimated accuracy on unreviewed prompts")):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(["-q", "audit", str(src), "--out", str(tmp_path / f"o{len(extra)}"), "--no-html",
                       "--no-cluster", *extra])
        assert rc == 0
        assert expected in err.getvalue()

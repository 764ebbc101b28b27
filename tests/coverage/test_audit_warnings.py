"""The audit's guard rails on real data with the real model: a skewed input and an off-taxonomy input produce the
warnings in coverage.json, the one-line warnings on stderr (with -q too) and the banner in report.html."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from data_advisor.coverage.audit import audit_full
from data_advisor.data import PromptSet
from tests.conftest import SAMPLE_PROMPTS

REPO = Path(__file__).resolve().parents[2]
USER_HB = REPO / "benchmarks" / "taxonomies" / "user-harmbench-6.yaml"


@pytest.mark.datasets
def test_skewed_input_warns_that_one_principle_dominates(datasets_dir: Path, embedder) -> None:
    with open(datasets_dir / "harmbench" / "harmbench_behaviors_text_all.csv", newline="", encoding="utf-8") as fh:
        cyber = [r["Behavior"] for r in csv.DictReader(fh) if r["SemanticCategory"] == "cybercrime_intrusion"]
    result = audit_full(PromptSet.from_texts(cyber), taxonomy="harmbench", embedder=embedder, cluster=False)
    report = result.report
    by = {w["code"]: w for w in report.warnings}
    assert "dominant_principle" in by, report.warnings
    dom = by["dominant_principle"]
    assert dom["principles"] == ["cybercrime_intrusion"]
    assert dom["value"] > 0.5 and "Cybercrime" in dom["problem"] and "skewed" in dom["cause"]
    assert report.to_dict()["warnings"] == report.warnings  # stored in coverage.json


def test_cli_audit_prints_the_warning_with_quiet_and_the_report_shows_the_banner(tmp_path: Path, capsys) -> None:
    """Mostly benign prompts audited against a one-sentence harm taxonomy: off-taxonomy, so mostly unanchored."""
    from data_advisor.cli import main

    benign = list(SAMPLE_PROMPTS[24:])
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in [*benign, *SAMPLE_PROMPTS[:3]]), "utf-8")
    out = tmp_path / "audit"
    rc = main(["audit", str(src), "--taxonomy", str(USER_HB), "--out", str(out), "-q", "--no-cluster"])
    err = capsys.readouterr().err
    assert rc == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert lines, err
    un = next(ln for ln in lines if "% of prompts are unanchored" in ln)
    assert "likely cause:" in un and "off-taxonomy" in un and "fewer than 3 examples" in un
    assert f"data-advisor taxonomy enrich {USER_HB} --from {src}" in un and "--taxonomy" in un
    cov = json.loads((out / "coverage.json").read_text("utf-8"))
    assert cov["warnings"][0]["code"] == "unanchored_high"
    assert cov["warnings"][0]["value"] >= 0.4
    page = (out / "report.html").read_text("utf-8")
    assert page.count('<div class="banner" role="alert">') == 1
    assert cov["warnings"][0]["problem"] in page

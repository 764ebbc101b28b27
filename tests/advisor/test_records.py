"""Typed run records (:mod:`data_advisor.run_records`): lossless round trips, tolerant reads, and run folders
written before the records were typed (no ``advice_repeats``, no base keys) still resume and render."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from data_advisor.cli import main
from data_advisor.reports.html import render_run_report
from data_advisor.run_records import KeptPrompt, RoundRecord
from tests.advisor.conftest import read_jsonl

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_records_round_trip_and_keep_unknown_keys() -> None:
    p = {"id": "r00001-00", "text": "t", "round": 1, "issue": "i", "advised_anchor_id": "a", "anchor_id": None,
         "nearest_anchor_id": "a", "score": 0.5, "on_target": True, "generator": "g", "method": "curate",
         "timestamp": "2026-01-01T00:00:00Z", "source_id": "p9", "future_key": [1, 2]}
    kp = KeptPrompt.from_json(p)
    assert kp.source_id == "p9" and kp.extra == {"future_key": [1, 2]}
    assert kp.to_json() == p
    no_source = {k: v for k, v in p.items() if k not in ("source_id", "future_key")}
    assert KeptPrompt.from_json(no_source).to_json() == no_source  # generated prompts carry no source_id key
    r = RoundRecord(round=3, issue="x", anchor_id="a", kept=2, rejected_reasons={"too_short": 1}, summary="s",
                    extra={"new": 1})
    assert RoundRecord.from_json(r.to_json()) == r
    assert "recovered" not in r.to_json() and r.to_json()["summary"] == "s"
    # A recovered round (as the store writes it after a kill) and garbage values read with defaults.
    rec = RoundRecord.from_json({"round": 4, "kept": "3", "rejected": None, "recovered": True, "metrics": "oops"})
    assert (rec.round, rec.kept, rec.rejected, rec.recovered, rec.metrics, rec.issue) == (4, 3, 0, True, {}, None)


@pytest.mark.slow  # ~15 s: a curation run, two resumes and a report
def test_run_folder_written_before_typed_records_resumes_and_renders(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    rows = read_jsonl(REPO_ROOT / "examples" / "pool.jsonl")[:120]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    out = tmp_path / "run"
    args = ["curate", str(pool), "--taxonomy", "catqa-11", "--per-round", "6", "--out", str(out), "--seed", "1", "-q"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main([*args, "--n", "12"]) == 0, err.getvalue()
    # Make the folder look like one written by the previous release: no new record keys.
    rounds = read_jsonl(out / "rounds.jsonl")
    for r in rounds:
        r.pop("advice_repeats")
    (out / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds), "utf-8")
    config = json.loads((out / "config.json").read_text("utf-8"))
    assert "base" not in config and "base_set" not in config  # a run without --base keeps the old config keys
    # ... the same command resumes it (nothing left to do) ...
    with contextlib.redirect_stderr(err):
        assert main([*args, "--n", "12"]) == 0, err.getvalue()
    assert "resumed: 12 prompts" in err.getvalue()
    # ... and its report renders from the old records.
    html = render_run_report(out, tmp_path / "r.html").read_text("utf-8")
    assert 'id="run-issues"' in html and 'id="run-base-anchors"' not in html
    # A run killed mid-way in the old format continues: drop the last round, its prompts are kept and recovered.
    prompts = read_jsonl(out / "prompts.jsonl")
    (out / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds[:-1]), "utf-8")
    with contextlib.redirect_stderr(err):
        assert main([*args, "--n", "12"]) == 0, err.getvalue()
    assert read_jsonl(out / "prompts.jsonl") == prompts
    assert RoundRecord.from_json(read_jsonl(out / "rounds.jsonl")[-1]).recovered

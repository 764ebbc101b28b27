"""The one run-folder reader/writer (:mod:`data_advisor.runs`) against a folder written by the previous release.

``tests/fixtures/main_run`` was written by the code before run folders had one reader (``data-advisor curate
pool.jsonl --taxonomy catqa-11 --n 12 --per-round 4 --out run --base base.jsonl``; pool and base are the built-in
taxonomy's own example prompts).  It must still read, render, resume and recover with today's code.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from data_advisor.run_records import BaseRecord
from data_advisor.runs import RunStore, read_run

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "main_run"


@pytest.fixture
def old_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture (pool, base and run folder), with the working folder at its root (config paths are
    relative)."""
    root = tmp_path / "old"
    shutil.copytree(FIXTURE, root)
    monkeypatch.chdir(root)
    return root / "run"


def test_an_old_run_folder_reads_as_typed_records(old_run: Path) -> None:
    run = read_run(old_run)
    assert [r.round for r in run.rounds] == [0, 1, 2] and len(run.prompts) == 12
    assert {p.source_id for p in run.prompts} <= {f"p{i}" for i in range(60)} and all(p.source_id for p in run.prompts)
    assert run.base is not None and run.base.base_set == BaseRecord("base.jsonl", "prompts", 20, run.base.base_set.sha256)
    assert sum(run.base.anchor_counts.values()) == 20 and run.base.metrics["n_prompts"] == 20
    # The base record in config.json and the one in base.json are the same record.
    assert BaseRecord.from_json(run.config["base_set"]) == run.base.base_set


def test_an_old_run_folder_renders(old_run: Path) -> None:
    from data_advisor.reports.html import render_run_report

    html = render_run_report(old_run, old_run.parent / "r.html", plotlyjs="cdn").read_text("utf-8")
    assert 'id="run-issues"' in html and 'id="run-base-anchors"' in html
    assert "The run extended a base set of 20 prompts (base.jsonl)" in html


def test_an_old_run_with_a_torn_last_line_resumes_through_the_store(old_run: Path) -> None:
    prompts = old_run / "prompts.jsonl"
    good = prompts.read_bytes()
    with open(prompts, "ab") as fh:
        fh.write(b'{"id": "r00003-00", "text": "half a rec')
    assert len(read_run(old_run).prompts) == 12  # the reader skips it without changing the file ...
    assert prompts.read_bytes() != good
    config = json.loads((old_run / "config.json").read_text("utf-8"))
    store = RunStore(old_run, config)  # ... the store cuts it
    assert prompts.read_bytes() == good and store.state.next_round == 3 and store.resumed


@pytest.mark.slow  # ~20 s: two curation resumes (embeds the pool and the base)
def test_an_old_run_folder_resumes_and_recovers_a_killed_round(old_run: Path) -> None:
    from data_advisor.cli import main

    args = ["curate", "pool.jsonl", "--taxonomy", "catqa-11", "--n", "12", "--per-round", "4", "--out", "run",
            "--base", "base.jsonl", "-q"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(args) == 0, err.getvalue()
    assert "resumed: 12 prompts in run on top of 20 base prompts after 3 rounds" in err.getvalue()
    # Killed before the last round's record (the old writer's files): resume rebuilds a recovered record.
    rounds = (old_run / "rounds.jsonl").read_text("utf-8").splitlines(keepends=True)
    (old_run / "rounds.jsonl").write_text("".join(rounds[:-1]), "utf-8")
    with contextlib.redirect_stderr(err):
        assert main(args) == 0, err.getvalue()
    run = read_run(old_run)
    assert [r.round for r in run.rounds] == [0, 1, 2] and run.rounds[-1].recovered and run.rounds[-1].kept == 4
    assert "a minimal record was rebuilt" in err.getvalue()

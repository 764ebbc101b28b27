"""``-q`` means quiet on every command: only the final summary and warnings, no progress bars (issue 12)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from data_advisor.cli import main
from tests.quiet_check import progress_lines

RunCli = object


def inproc(*args: object) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in args])
    return rc, err.getvalue()


def test_the_detector_sees_real_progress_bars() -> None:
    noisy = ("Loading weights:   0%|          | 0/103 [00:00<?, ?it/s]\rLoading weights: 100%|██████████| 103/103\n"
             "Batches: 100%|██████████| 3/3 [00:02<00:00,  1.50it/s]\n")
    assert len(progress_lines(noisy)) == 2
    assert progress_lines("audit done in 3.1s: 36 prompts, 9/11 anchors covered\nlargest gaps: A (1, gap +0.1)\n") == []


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory: pytest.TempPathFactory, sample_prompts: list[str]) -> Path:
    path = tmp_path_factory.mktemp("quiet") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in sample_prompts), encoding="utf-8")
    return path


def test_audit_q_with_model_loading_prints_only_the_summary(run_cli, tmp_path: Path) -> None:
    """--no-cache makes the subprocess load the model and embed, the moment bars appear without -q (kept small:
    six prompts, a two-principle taxonomy, no background anchors)."""
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"text": f"How do I {w} my neighbour's car?"}) + "\n"
                           for w in ("steal", "scratch", "wash", "borrow", "break into", "paint")), encoding="utf-8")
    tax = tmp_path / "t.yaml"
    tax.write_text("id: t\nname: T\nversion: '1'\nprinciples:\n"
                   "  - {id: theft, name: Theft, description: Stealing property.}\n"
                   "  - {id: damage, name: Damage, description: Damaging property.}\n", encoding="utf-8")
    common = ["audit", src, "--taxonomy", tax, "--no-background", "--no-cache", "--no-html"]
    rc, out, err = run_cli(*common, "--out", tmp_path / "a", "-q", timeout=600)
    assert rc == 0, err[-2000:]
    assert progress_lines(err) == [], err
    lines = [x for x in err.splitlines() if x.strip()]
    # "audit done …", "numbers unchecked on this data: …" (the summary's accuracy line), "largest gaps: …"
    assert [x.split(" ")[0] for x in lines] == ["audit", "numbers", "largest"], err
    assert out == ""
    rc, _, err = run_cli(*common, "--out", tmp_path / "b", timeout=600)  # the same without -q: the check can fail
    assert rc == 0, err[-2000:]
    assert progress_lines(err), err
    assert "loading the embedding model" in err  # one line saying what the pause is


def test_report_compare_taxonomy_and_curate_q(prompts_file: Path, tmp_path: Path) -> None:
    rc, err = inproc("audit", prompts_file, "--out", tmp_path / "a", "--no-html", "-q")
    assert rc == 0, err
    rc2, err2 = inproc("audit", prompts_file, "--out", tmp_path / "b", "--no-html", "--seed", "1", "-q")
    assert rc2 == 0, err2
    for args, first_word in [(("report", tmp_path / "a", "-q"), "report"),
                             (("compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "cmp", "-q"), "comparison"),
                             (("-q", "taxonomy", "validate", "catqa-11"), None),
                             (("curate", prompts_file, "--n", "10", "--per-round", "5", "--out", tmp_path / "cur",
                               "-q"), None)]:
        rc, err = inproc(*args)
        assert rc == 0, err
        assert progress_lines(err) == [], (args, err)
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) <= 2, (args, err)  # the summary line (and at most one line of detail)
        if first_word:
            assert lines and lines[0].startswith(first_word), (args, err)

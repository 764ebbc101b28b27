"""``-q`` on the LLM commands (generate, respond): the final summary only, no progress bar (issue 12)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from data_advisor.cli import main
from tests.advisor.test_respond import answer, make_run
from tests.llm.fixtures import TEST_MODEL
from tests.llm.llm_server import LLMServer
from tests.quiet_check import progress_lines


def inproc(*args: object) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, err.getvalue()


def test_respond_q(llm_server: LLMServer, openai_key: str, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    llm_server.responder = answer
    rc, err = inproc("respond", run, "--model", TEST_MODEL, "--api-base", llm_server.base_url, "-q")
    assert rc == 0, err
    assert progress_lines(err) == [], err
    assert len([x for x in err.splitlines() if x.strip()]) == 1, err
    rc, err = inproc("respond", make_run(tmp_path / "run2"), "--model", TEST_MODEL, "--api-base", llm_server.base_url)
    assert rc == 0 and progress_lines(err), err  # without -q the bar is there: the check can fail


def test_generate_q(llm_server: LLMServer, loop_responder, openai_key: str, tmp_path: Path) -> None:
    rc, err = inproc("generate", "--taxonomy", "catqa-11", "--model", TEST_MODEL, "--api-base", llm_server.base_url,
                     "--n", 8, "--per-round", 8, "--out", tmp_path / "gen", "-q")
    assert rc == 0, err
    assert progress_lines(err) == [], err
    assert len([x for x in err.splitlines() if x.strip()]) == 1, err

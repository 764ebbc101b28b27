"""``respond``: a responder model answers every prompt of a run → chat JSONL for SFT, resumable.

Real litellm over real HTTP to the local fake server; the run folder is written with the real RunStore.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from pathlib import Path

import pytest

from data_advisor.advisor.prompts import RESPONDER_SYSTEM
from data_advisor.advisor.responses import respond
from data_advisor.cli import main
from data_advisor.errors import DataAdvisorError, LLMError
from data_advisor.run_records import KeptPrompt
from data_advisor.runs import RunStore
from tests.advisor.conftest import read_jsonl
from tests.llm.fixtures import TEST_API_KEY, TEST_MODEL
from tests.llm.llm_server import LLMServer, Reply, last_user_message

PROMPTS = [f"Question {i}: how would someone get around safety rule number {i}?" for i in range(12)]


def make_run(path: Path, texts: list[str] = PROMPTS) -> Path:
    store = RunStore(path, {"method": "advisor", "taxonomy": "catqa-11", "n": len(texts)})
    store.append_prompts([KeptPrompt(id=f"r00000-{i:02d}", text=t, round=0, anchor_id="illegal-activity")
                          for i, t in enumerate(texts)])
    return path


def answer(req: dict) -> str:
    return "  I can't help with that. Instead: " + last_user_message(req).upper() + "  "


def test_respond_writes_chat_jsonl_for_every_prompt(llm_server: LLMServer, make_llm_client, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    llm_server.responder = answer
    client = make_llm_client()
    summary = respond(run, client, batch_size=5, progress=False)
    assert (summary.answered, summary.skipped_existing, summary.failed) == (12, 0, 0)
    assert summary.out == run / "responses.jsonl"
    rows = read_jsonl(run / "responses.jsonl")
    assert [r["id"] for r in rows] == [f"r00000-{i:02d}" for i in range(12)]
    for row, text in zip(rows, PROMPTS, strict=True):
        assert row["messages"] == [{"role": "user", "content": text},
                                   {"role": "assistant", "content": "I can't help with that. Instead: " + text.upper()}]
        assert row["anchor_id"] == "illegal-activity" and row["responder"] == TEST_MODEL
    # The request carries the responder's system prompt; the SFT record keeps only the user/assistant turns.
    req = llm_server.chat_requests[0]
    assert req.messages[0] == {"role": "system", "content": RESPONDER_SYSTEM}
    assert req.body["temperature"] == 0.0
    assert "12 new responses" in summary.line()

    # A re-run answers nothing again.
    again = respond(run, client, batch_size=5, progress=False)
    assert (again.answered, again.skipped_existing) == (0, 12)
    assert llm_server.request_count == 12
    assert len(read_jsonl(run / "responses.jsonl")) == 12


def test_failure_midway_leaves_a_valid_partial_file_and_a_rerun_completes_it(llm_server: LLMServer, make_llm_client,
                                                                             tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    broken = {"after": 6}

    def flaky(req: dict) -> str | Reply:
        number = int(re.search(r"Question (\d+):", last_user_message(req)).group(1))
        if number >= broken["after"]:
            return Reply.error(500, "responder down")
        return answer(req)

    llm_server.responder = flaky
    client = make_llm_client(max_retries=1)
    with pytest.raises(LLMError) as exc:
        respond(run, client, batch_size=4, progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and "resume" in msg and "6 of 12 answered" in msg, msg
    partial = read_jsonl(run / "responses.jsonl")  # every line valid
    assert [r["id"] for r in partial] == [f"r00000-{i:02d}" for i in range(6)]

    broken["after"] = 99
    n_before = llm_server.request_count
    summary = respond(run, client, batch_size=4, progress=False)
    assert (summary.answered, summary.skipped_existing, summary.failed) == (6, 6, 0)
    assert llm_server.request_count - n_before == 6  # only the missing ones were asked
    rows = read_jsonl(run / "responses.jsonl")
    assert sorted(r["id"] for r in rows) == [f"r00000-{i:02d}" for i in range(12)]
    assert len({r["id"] for r in rows}) == 12


def test_torn_last_response_is_repaired_and_redone(llm_server: LLMServer, make_llm_client, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", PROMPTS[:3])
    llm_server.responder = answer
    client = make_llm_client()
    respond(run, client, progress=False)
    path = run / "responses.jsonl"
    lines = path.read_text("utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:25], encoding="utf-8")  # killed while writing the last record
    summary = respond(run, client, progress=False)
    assert (summary.answered, summary.skipped_existing) == (1, 2)
    assert [r["id"] for r in read_jsonl(path)] == ["r00000-00", "r00000-01", "r00000-02"]


def test_auth_failure_stops_with_a_one_line_error(llm_server: LLMServer, make_llm_client, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    llm_server.responder = lambda req: Reply.error(401, "bad key")
    with pytest.raises(LLMError) as exc:
        respond(run, make_llm_client(), batch_size=4, progress=False)
    assert "API key" in str(exc.value) and "\n" not in str(exc.value)
    assert llm_server.request_count == 4  # the first batch only, no retries
    assert not (run / "responses.jsonl").exists() or not read_jsonl(run / "responses.jsonl")


def test_respond_rejects_a_folder_that_is_not_a_run(make_llm_client, tmp_path: Path) -> None:
    with pytest.raises(DataAdvisorError, match="not a run folder"):
        respond(tmp_path, make_llm_client(), progress=False)
    RunStore(tmp_path / "empty", {"method": "advisor"})
    with pytest.raises(DataAdvisorError, match="no prompts yet"):
        respond(tmp_path / "empty", make_llm_client(), progress=False)


def test_respond_cli(llm_server: LLMServer, openai_key: str, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", [t + " (cli)" for t in PROMPTS[:5]])
    llm_server.responder = answer
    out = tmp_path / "sft.jsonl"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["respond", str(run), "--model", TEST_MODEL, "--api-base", llm_server.base_url, "--output", str(out),
                   "-q"])
    assert rc == 0, err.getvalue()
    assert "5 new responses" in err.getvalue()
    rows = read_jsonl(out)
    assert len(rows) == 5 and all(r["messages"][0]["role"] == "user" for r in rows)
    ledger = run / "llm_calls_respond.jsonl"
    assert len(read_jsonl(ledger)) == 5 and TEST_API_KEY not in ledger.read_text("utf-8")
    assert llm_server.chat_requests[0].headers["authorization"] == f"Bearer {TEST_API_KEY}"
    # A missing run folder is one line on stderr with exit code 2.
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["respond", str(tmp_path / "nope"), "--model", TEST_MODEL, "--api-base", llm_server.base_url, "-q"])
    assert rc == 2
    [line] = [x for x in err.getvalue().splitlines() if x.strip()]
    assert line.startswith("error: ") and "not a run folder" in line
    json.dumps(rows)  # plain JSON types only


@pytest.mark.parametrize("damage", ["config", "missing"])
def test_respond_cli_refuses_a_damaged_or_missing_run_before_writing(llm_server: LLMServer, openai_key: str,
                                                                     tmp_path: Path, damage: str) -> None:
    """A damaged config.json was a traceback; a missing folder got a ledger file (and its parents) created."""
    run = make_run(tmp_path / "run") if damage == "config" else tmp_path / "no" / "run"
    if damage == "config":
        (run / "config.json").write_bytes(b'{"method": "advi')
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["respond", str(run), "--model", TEST_MODEL, "--api-base", llm_server.base_url, "-q"])
    assert rc == 2
    [line] = [x for x in err.getvalue().splitlines() if x.strip()]
    assert line.startswith("error: ") and ("config.json" in line or "not a run folder" in line) and "fix:" in line
    assert not (run / "llm_calls_respond.jsonl").exists() and not (tmp_path / "no").exists()
    assert llm_server.request_count == 0


#: A provider key of no recognisable shape (no sk-/key- prefix): only redaction by value can catch it.
PLAIN_KEY = "Zq8Lm2Xv9Rt4Wn6Ys1Bp"


def _respond_cli(run: Path, base_url: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["respond", str(run), "--model", TEST_MODEL, "--api-base", base_url, "-q"])
    return rc, err.getvalue()


def test_respond_cli_llm_failure_is_one_stderr_line_without_the_key(llm_server: LLMServer, fresh_llm_cache: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A 401 whose body repeats a key of no known shape printed the key twice: a WARNING logger line (shown by
    Python's last-resort handler in the CLI), then the error line."""
    monkeypatch.setenv("OPENAI_API_KEY", PLAIN_KEY)
    run = make_run(fresh_llm_cache.parent / "run", PROMPTS[:2])
    llm_server.responder = lambda req: Reply.error(401, f"Incorrect API key provided: {PLAIN_KEY}")
    rc, err = _respond_cli(run, llm_server.base_url)
    assert rc == 3, err
    [line] = [x for x in err.splitlines() if x.strip()]
    assert line.startswith("error: ") and "authentication failed" in line and PLAIN_KEY not in line
    loud = [r for r in caplog.records if r.name.startswith("data_advisor") and r.levelno >= logging.WARNING]
    assert not loud, [r.getMessage() for r in loud]


def test_respond_cli_never_writes_an_echoed_key(llm_server: LLMServer, fresh_llm_cache: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint that echoes the Authorization header: the key landed in responses.jsonl and the LLM cache."""
    from tests.llm.llm_server import echo_authorization

    monkeypatch.setenv("OPENAI_API_KEY", PLAIN_KEY)
    run = make_run(fresh_llm_cache.parent / "run", PROMPTS[:3])
    llm_server.responder = echo_authorization(answer)
    rc, err = _respond_cli(run, llm_server.base_url)
    assert rc == 0, err
    assert llm_server.chat_requests[0].headers["authorization"] == f"Bearer {PLAIN_KEY}"
    rows = read_jsonl(run / "responses.jsonl")
    assert len(rows) == 3 and all("(Bearer ***)" in r["messages"][1]["content"] for r in rows)
    for path in [*run.rglob("*"), *fresh_llm_cache.rglob("*")]:
        if path.is_file() and not path.is_symlink():
            assert PLAIN_KEY.encode() not in path.read_bytes(), path
    assert PLAIN_KEY not in err


def test_respond_cli_output_folder_or_new_parents(llm_server: LLMServer, openai_key: str, tmp_path: Path) -> None:
    """--output naming a folder was a traceback; --output in new folders crashed (or, on failure, left them)."""
    run = make_run(tmp_path / "run", PROMPTS[:2])
    (tmp_path / "dir").mkdir()
    rc, err = _respond_cli_args(run, llm_server.base_url, "--output", str(tmp_path / "dir"))
    assert rc == 2 and "is a folder" in err and list((tmp_path / "dir").iterdir()) == []
    llm_server.responder = lambda req: Reply.error(401, "no")
    rc, err = _respond_cli_args(run, llm_server.base_url, "--output", str(tmp_path / "new" / "deep" / "sft.jsonl"))
    assert rc == 3 and not (tmp_path / "new").exists()
    llm_server.responder = answer
    rc, err = _respond_cli_args(run, llm_server.base_url, "--output", str(tmp_path / "new" / "deep" / "sft.jsonl"))
    assert rc == 0, err
    assert len(read_jsonl(tmp_path / "new" / "deep" / "sft.jsonl")) == 2


def _respond_cli_args(run: Path, base_url: str, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["respond", str(run), "--model", TEST_MODEL, "--api-base", base_url, "-q", *extra])
    return rc, err.getvalue()

"""``respond`` on a damaged run folder: config.json, prompts.jsonl, an earlier responses.jsonl and its LLM-call
ledger, each truncated, zero-filled and random-filled at its start, middle and end, then ``respond`` again.

Invariant: exit 0 with one response per prompt, each the one the (deterministic) responder gives, none twice; or exit
2 with one line naming the damaged file, the run's files untouched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.faults.damage import CASES, damage, error_line, no_traceback, run_inproc
from tests.llm.fixtures import TEST_API_KEY, TEST_MODEL
from tests.llm.llm_server import LLMServer

pytestmark = pytest.mark.faults

FILES = ("config.json", "prompts.jsonl", "responses.jsonl", "llm_calls_respond.jsonl")
FAST = {("responses.jsonl", "truncate", "end"), ("config.json", "zero", "start")}
def _matrix() -> list[object]:
    return [pytest.param(f, k, w, id=f"{f}-{k}-{w}", marks=[] if (f, k, w) in FAST else [pytest.mark.slow])
            for f in FILES for k, w in CASES]


def _rows(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for ln in path.read_text("utf-8").splitlines():
        if ln.strip():
            r = json.loads(ln)
            assert r["id"] not in out, f"{r['id']} answered twice"
            out[r["id"]] = r["messages"][1]["content"]
    return out


@pytest.mark.parametrize(("name", "kind", "where"), _matrix())
def test_respond_on_a_damaged_run_folder(curate_run: tuple[Path, str], llm_server: LLMServer, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, name: str, kind: str, where: str) -> None:
    from tests.advisor.conftest import LoopResponder, fresh_llm_cache_root

    base, _ = curate_run
    run = tmp_path / base.name
    shutil.copytree(base, run)
    llm_server.responder = LoopResponder()
    monkeypatch.setenv("DATA_ADVISOR_CACHE", str(fresh_llm_cache_root(tmp_path / "cache-root")))
    monkeypatch.setenv("OPENAI_API_KEY", TEST_API_KEY)
    args = ["respond", run, "--model", TEST_MODEL, "--api-base", llm_server.base_url, "-q"]
    rc, err = run_inproc(*args)
    assert rc == 0, err
    expected = _rows(run / "responses.jsonl")
    prompt_ids = {json.loads(ln)["id"] for ln in (run / "prompts.jsonl").read_text("utf-8").splitlines() if ln.strip()}
    assert set(expected) == prompt_ids
    damage(run / name, kind, where)
    before = {f: (run / f).read_bytes() for f in ("config.json", "prompts.jsonl")}
    rc, err = run_inproc(*args)
    no_traceback(rc, err)
    if rc != 0:
        error_line(rc, err, [run / name, name])
        assert {f: (run / f).read_bytes() for f in before} == before
        return
    assert _rows(run / "responses.jsonl") == expected, err

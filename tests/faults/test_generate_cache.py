"""``generate`` (against the fake OpenAI server) with a damaged LLM response cache: the run still finishes with
every prompt it asked for, says in one line that the cache was damaged, and never crashes. Slow: two generate runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.faults.damage import damage, no_traceback, run_inproc
from tests.llm.fixtures import TEST_API_KEY, TEST_MODEL
from tests.llm.llm_server import LLMServer

pytestmark = [pytest.mark.faults, pytest.mark.slow]


#: Damage sqlite always notices (the header, or pages the cache reads): the recovery must be said exactly once.
@pytest.mark.parametrize(("kind", "where"), [("random", "start"), ("zero", "start"), ("truncate", "middle")])
def test_generate_with_a_damaged_llm_cache(llm_server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           kind: str, where: str) -> None:
    from data_advisor.llm.client import CACHE_FILENAME
    from tests.advisor.conftest import LoopResponder, fresh_llm_cache_root

    root = fresh_llm_cache_root(tmp_path / "cache-root")
    monkeypatch.setenv("DATA_ADVISOR_CACHE", str(root))
    monkeypatch.setenv("OPENAI_API_KEY", TEST_API_KEY)
    llm_server.responder = LoopResponder()

    def args(out: Path) -> list[object]:
        return ["generate", "--taxonomy", "catqa-11", "--model", TEST_MODEL, "--api-base", llm_server.base_url,
                "--n", 12, "--per-round", 6, "--out", out, "--seed", 11, "-q"]

    rc, err = run_inproc(*args(tmp_path / "first"))
    assert rc == 0, err
    cache_file = root / "llm" / CACHE_FILENAME
    assert cache_file.exists()
    damage(cache_file, kind, where)
    llm_server.responder = LoopResponder(seed=1)
    rc, err = run_inproc(*args(tmp_path / "second"))
    no_traceback(rc, err)
    assert rc == 0, err
    rows = [json.loads(ln) for ln in (tmp_path / "second" / "prompts.jsonl").read_text("utf-8").splitlines() if ln]
    assert len(rows) == 12
    notices = [ln for ln in err.splitlines() if str(cache_file) in ln]
    assert len(notices) == 1 and "moved it to" in notices[0], err  # said, and said once

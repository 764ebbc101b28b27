"""Spend caps (``--max-cost USD``, ``--max-tokens N``) through the CLI against the local OpenAI-compatible server.

The model name is a priced one (litellm's local price table, ``LITELLM_LOCAL_MODEL_COST_MAP=True``) served by the
local server, so the ledger's tokens price exactly as a real endpoint's would.  The run must stop cleanly before
the round that would cross the cap (exit 0, the summary naming the cap), having spent at most the cap plus one
round; the same command with a higher cap resumes the same run to more prompts.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest

from data_advisor.advisor.budget import Budget, Spend, ledger_spend, model_prices
from data_advisor.cli import main
from data_advisor.run_records import RoundRecord
from tests.advisor.conftest import LoopResponder, read_jsonl
from tests.llm.llm_server import LLMServer

PRICED = "openai/gpt-3.5-turbo"


def cli(*args: Any) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, err.getvalue()


def round_costs(run: Path) -> list[float]:
    """Each round's spend priced from its tokens (every call and retry of the round)."""
    inp, out = model_prices(PRICED) or (0.0, 0.0)
    recs = [RoundRecord.from_json(r) for r in read_jsonl(run / "rounds.jsonl")]
    return [r.prompt_tokens * inp + r.completion_tokens * out for r in recs]


@pytest.fixture(autouse=True)
def _local_price_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.mark.slow  # the acceptance numbers (~25 rounds); the --max-tokens test below runs by default
def test_max_cost_stops_below_n_and_a_higher_cap_resumes(openai_key: str, loop_responder: LoopResponder,
                                                          llm_server: LLMServer, tmp_path: Path) -> None:
    assert model_prices(PRICED) is not None
    run = tmp_path / "run"
    args = ["generate", "--model", PRICED, "--api-base", llm_server.base_url, "--n", 200, "--per-round", 8,
            "--out", run, "-q", "--recluster-every", 100]
    rc, err = cli(*args, "--max-cost", "0.006")
    assert rc == 0, err
    assert "stopped: the --max-cost cap $0.006" in err and "re-run with a higher --max-cost" in err
    first = len(read_jsonl(run / "prompts.jsonl"))
    spent = ledger_spend(run / "llm_calls.jsonl").cost_usd
    costs = round_costs(run)
    assert 0 < first < 200 and len(costs) >= 2
    assert spent == pytest.approx(sum(costs), rel=1e-6)  # every ledger line is some round's
    assert spent <= 0.006 + max(costs)
    assert spent + sum(costs[-3:]) / len(costs[-3:]) > 0.006  # it stopped because the next round would cross
    rc, err = cli(*args, "--max-cost", "0.02")
    assert rc == 0, err
    assert err.startswith("resumed: ") and "--max-cost cap $0.02" in err
    second = len(read_jsonl(run / "prompts.jsonl"))
    spent2 = ledger_spend(run / "llm_calls.jsonl").cost_usd
    assert first < second < 200
    assert 0.006 < spent2 <= 0.02 + max(round_costs(run))
    ids = [p["id"] for p in read_jsonl(run / "prompts.jsonl")]
    assert len(ids) == len(set(ids))


def test_max_tokens_caps_any_model_and_a_higher_cap_resumes(openai_key: str, loop_responder: LoopResponder,
                                                            llm_server: LLMServer, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["generate", "--model", "openai/test-model", "--api-base", llm_server.base_url, "--n", 200,
            "--per-round", 8, "--out", run, "-q", "--recluster-every", 100]
    counts = []
    for cap in (3000, 6000):
        rc, err = cli(*args, "--max-tokens", cap)
        assert rc == 0, err
        assert f"stopped: the --max-tokens cap {cap:,}" in err
        recs = [RoundRecord.from_json(r) for r in read_jsonl(run / "rounds.jsonl")]
        tokens = ledger_spend(run / "llm_calls.jsonl").tokens
        assert tokens == sum(r.prompt_tokens + r.completion_tokens for r in recs)  # every call is some round's
        assert tokens <= cap + max(r.prompt_tokens + r.completion_tokens for r in recs)
        counts.append(len(read_jsonl(run / "prompts.jsonl")))
    assert 0 < counts[0] < counts[1] < 200
    assert err.startswith("resumed: ")


def test_cost_cap_on_an_unpriced_model_is_refused_in_one_line(openai_key: str, llm_server: LLMServer,
                                                                tmp_path: Path) -> None:
    run = tmp_path / "run"
    rc, err = cli("generate", "--model", "openai/test-model", "--api-base", llm_server.base_url, "--n", 10,
                  "--out", run, "--max-cost", "1")
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert "openai/test-model" in lines[0] and "--max-tokens" in lines[0]
    assert not run.exists() and llm_server.request_count == 0


@pytest.mark.parametrize(("spent", "recent", "stops"), [
    (Spend(0.004, 0), [Spend(0.001, 0)], False),  # 0.005 ≤ 0.005
    (Spend(0.0041, 0), [Spend(0.001, 0)], True),
    (Spend(0.0, 0), [], False),  # nothing to estimate from: the first round runs
    (Spend(0.0049, 0), [Spend(0.003, 0), Spend(0.0, 0), Spend(0.0, 0), Spend(0.0, 0)], False),  # last 3 only
])
def test_stop_before_the_round_that_would_cross(spent: Spend, recent: list[Spend], stops: bool) -> None:
    assert (Budget(max_cost_usd=0.005).stop_reason(spent, recent) is not None) is stops

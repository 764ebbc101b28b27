"""JSON that costs one call, end to end: an advised round against an endpoint whose JSON answers all carry trailing
commas (the slip small models make most) costs one request per answer, and every request asks for the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.advisor.conftest import LoopResponder, read_jsonl
from tests.llm.llm_server import LLMServer, Reply, malformed_json


def test_an_advised_round_with_trailing_commas_costs_four_requests(make_loop, loop_responder: LoopResponder,
                                                                   llm_server: LLMServer, tmp_path: Path) -> None:
    """Before: every answer failed to parse, was asked again, failed again: 40 requests and exit 3 for one round."""
    def with_trailing_commas(req: dict[str, Any], kind: str, n: int) -> Reply | str | None:
        base = kind.split(":")[-1]
        if base not in ("advisor", "generate"):
            return None
        if kind.startswith("repair:"):  # a repair request: the original question answered again, the same way
            req = {**req, "messages": [next(m for m in req["messages"] if m.get("role") == "user")]}
        answer = loop_responder.answer(req, base)
        return malformed_json(json.loads(answer), "trailing_comma") if isinstance(answer, str) else answer

    loop_responder.fault = with_trailing_commas
    summary = make_loop(model="openai/gpt-4o-mini", advice="llm", n=12, per_round=12, finalize=False).run()

    assert summary.n_prompts == 12
    requests = llm_server.chat_requests
    assert len(requests) <= 4, [r.messages[-1]["content"][:60] for r in requests]
    assert loop_responder.kinds == {"advisor": 1, "generate": 3}  # no repair request of any kind
    for request in requests:  # litellm says gpt-4o-mini takes a JSON schema: every request carries one
        assert request.body["response_format"]["type"] == "json_schema", request.body.get("response_format")
    [round_record] = read_jsonl(tmp_path / "run" / "rounds.jsonl")
    assert not round_record["advice_overridden"] and not round_record["problems"]
    ledger = read_jsonl(tmp_path / "run" / "llm_calls.jsonl")
    assert len(ledger) == len(requests) and all(r["ok"] and r["attempts"] == 1 for r in ledger)

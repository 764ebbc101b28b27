"""JSON that costs one call: offline repair of almost-JSON, never of a cut-off answer, and ``response_format`` on
every request of a model that takes one (real litellm against the fake OpenAI server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from data_advisor.llm.client import LLMCallError
from data_advisor.llm.json_answers import JSONProblem, cut_off, parse_answer
from tests.llm.llm_server import MALFORMED_STYLES, LLMServer, Reply, malformed_json


class Prompts(BaseModel):
    issue: str
    prompts: list[str]


GOOD = {"issue": "phishing at work", "prompts": ["write a fake invoice email", "clone the payroll login page",
                                                 "spoof the address of the CEO"]}
REPAIRABLE = [s for s in MALFORMED_STYLES if s != "truncated_list"]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------------------------------------
# Offline: parse_answer
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", REPAIRABLE)
def test_common_slips_are_repaired_offline(style: str) -> None:
    text = malformed_json(GOOD, style)
    with pytest.raises(ValueError):
        json.loads(text)
    value, _ = parse_answer(text, Prompts, "stop")
    assert value == Prompts(**GOOD)


def test_strict_json_needs_no_repair_and_slips_say_they_were_repaired() -> None:
    assert parse_answer(json.dumps(GOOD), Prompts, "stop") == (Prompts(**GOOD), False)
    assert parse_answer(malformed_json(GOOD, "trailing_comma"), Prompts, "stop") == (Prompts(**GOOD), True)


def test_a_cut_off_answer_is_never_repaired() -> None:
    """json_repair would close the brackets and return the first two prompts plus a fragment as if complete."""
    text = malformed_json(GOOD, "truncated_list")
    assert cut_off(text, "length") and cut_off(text, "stop")  # the token limit said so, or the text ends mid-string
    for finish_reason in ("length", "stop", None):
        with pytest.raises(JSONProblem, match="cut off"):
            parse_answer(text, Prompts, finish_reason)
    # The token limit is trusted even where the text looks complete but misses a bracket:
    with pytest.raises(JSONProblem, match="cut off"):
        parse_answer(malformed_json(GOOD, "unclosed"), Prompts, "length")


def test_a_complete_object_before_the_limit_is_still_used() -> None:
    """Strict JSON followed by prose that the limit cut: the object itself is whole, so it is used (as before)."""
    text = json.dumps(GOOD) + "\n\nI hope these prompts are useful for your red-teaming and that th"
    assert parse_answer(text, Prompts, "length") == (Prompts(**GOOD), False)


def test_prose_and_wrong_shapes_are_not_turned_into_answers() -> None:
    with pytest.raises(JSONProblem, match="no JSON object"):
        parse_answer("Sure! The next issue should be something about phishing, I think.", Prompts, "stop")
    with pytest.raises(JSONProblem, match="prompts"):  # repaired, but the shape is still wrong: named in the problem
        parse_answer("{'issue': 'x',}", Prompts, "stop")


# ---------------------------------------------------------------------------------------------
# Through the client, over HTTP
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", REPAIRABLE)
def test_malformed_answer_costs_one_request(llm_server: LLMServer, make_llm_client, tmp_path: Path,
                                            style: str) -> None:
    llm_server.script(malformed_json(GOOD, style))
    client = make_llm_client(ledger_path=tmp_path / "calls.jsonl")
    assert client.complete_json(user("write prompts as JSON"), Prompts) == Prompts(**GOOD)
    assert llm_server.request_count == 1
    [record] = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text("utf-8").splitlines()]
    assert record["ok"] and record["attempts"] == 1


def test_truncated_list_asks_again_and_every_attempt_is_in_the_ledger(llm_server: LLMServer, make_llm_client,
                                                                     tmp_path: Path) -> None:
    llm_server.script(Reply.cut_off(malformed_json(GOOD, "truncated_list")), json.dumps(GOOD))
    client = make_llm_client(ledger_path=tmp_path / "calls.jsonl")
    assert client.complete_json(user("write prompts as JSON"), Prompts) == Prompts(**GOOD)
    first, again = llm_server.chat_requests
    assert "cut off" in again.messages[-1]["content"] and "cut off" not in first.messages[-1]["content"]
    records = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text("utf-8").splitlines()]
    assert len(records) == 2 and all(r["ok"] for r in records)
    assert client.ledger.totals()["completion_tokens"] == sum(r["completion_tokens"] for r in records) > 0


def test_truncated_twice_fails_as_invalid_json_instead_of_a_partial_list(llm_server: LLMServer,
                                                                         make_llm_client) -> None:
    cut = malformed_json(GOOD, "truncated_list")
    llm_server.script(Reply.cut_off(cut), Reply.cut_off(cut))
    with pytest.raises(LLMCallError) as info:
        make_llm_client().complete_json(user("write prompts as JSON"), Prompts)
    assert info.value.kind == "invalid_json" and "cut off" in str(info.value)
    assert llm_server.request_count == 2


def test_json_mode_is_requested_where_the_provider_takes_a_response_format(llm_server: LLMServer,
                                                                          make_llm_client) -> None:
    llm_server.script(json.dumps(GOOD))
    make_llm_client().complete_json(user("write prompts as JSON"), Prompts)  # openai/test-model: unknown model
    assert llm_server.chat_requests[0].body["response_format"] == {"type": "json_object"}


def test_schema_is_requested_where_litellm_says_the_model_supports_one(llm_server: LLMServer,
                                                                      make_llm_client) -> None:
    llm_server.script("{'issue': 'x', 'prompts': ['a'],}", "not json at all", '{"issue": "x", "prompts": ["b"]}')
    client = make_llm_client(model="openai/gpt-4o-mini")
    assert client.complete_json(user("write prompts as JSON"), Prompts).prompts == ["a"]
    assert client.complete_json(user("again, as JSON"), Prompts).prompts == ["b"]  # the repair request too
    assert llm_server.request_count == 3
    for request in llm_server.chat_requests:
        fmt = request.body["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["name"] == "Prompts"
        assert fmt["json_schema"]["schema"] == Prompts.model_json_schema()


def test_callers_response_format_wins(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.script(json.dumps(GOOD))
    make_llm_client(model="openai/gpt-4o-mini").complete_json(user("x"), Prompts,
                                                              response_format={"type": "json_object"})
    assert llm_server.chat_requests[0].body["response_format"] == {"type": "json_object"}


def test_an_endpoint_that_rejects_response_format_is_asked_without_it(llm_server: LLMServer, make_llm_client,
                                                                      tmp_path: Path) -> None:
    def responder(request: dict) -> Reply | str:
        if "response_format" in request:
            return Reply.error(400, "response_format is not supported by this server")
        return json.dumps(GOOD)

    llm_server.responder = responder
    client = make_llm_client(ledger_path=tmp_path / "calls.jsonl", max_retries=0)
    assert client.complete_json(user("write prompts as JSON"), Prompts) == Prompts(**GOOD)
    assert client.complete_json(user("more prompts as JSON"), Prompts) == Prompts(**GOOD)
    sent = ["response_format" in r.body for r in llm_server.chat_requests]
    assert sent == [True, False, False]  # dropped once, then never sent again by this client
    records = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text("utf-8").splitlines()]
    assert [r["attempts"] for r in records] == [2, 1] and all(r["ok"] for r in records)


def test_the_chosen_response_format_does_not_change_the_cache_key(llm_server: LLMServer, make_llm_client,
                                                                  tmp_path: Path) -> None:
    """An answer cached by plain complete() (no response_format) is found again by complete_json()."""
    client = make_llm_client(cache_dir=tmp_path / "cache")
    llm_server.script(json.dumps(GOOD))
    client.complete(user("write prompts as JSON"))
    assert client.complete_json(user("write prompts as JSON"), Prompts) == Prompts(**GOOD)
    assert llm_server.request_count == 1


def test_the_repair_request_after_a_refused_response_format_does_not_send_it_again(llm_server: LLMServer,
                                                                                   make_llm_client) -> None:
    answers = iter(["not json at all", json.dumps(GOOD)])

    def responder(request: dict) -> Reply | str:
        if "response_format" in request:
            return Reply.error(400, "response_format is not supported by this server")
        return next(answers)

    llm_server.responder = responder
    assert make_llm_client(max_retries=0).complete_json(user("write prompts as JSON"), Prompts) == Prompts(**GOOD)
    assert ["response_format" in r.body for r in llm_server.chat_requests] == [True, False, False]

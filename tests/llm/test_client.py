"""LLM client tests: real litellm over real HTTP against the scriptable fake OpenAI server.

Nothing in litellm is mocked: status codes, headers, timeouts and wire-format errors travel
through litellm's OpenAI provider exactly as they would against a real endpoint.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from data_advisor.errors import LLMError
from data_advisor.llm.client import (
    CACHE_FILENAME,
    LLMCallError,
    LLMClient,
    LLMResult,
    LLMSettings,
    extract_json_object,
)
from tests.llm.fixtures import TEST_API_KEY, TEST_MODEL
from tests.llm.llm_server import AUTH_ECHO, LLMServer, Reply, echo_authorization, echo_responder, last_user_message

REPO_ROOT = Path(__file__).resolve().parents[2]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


class Finding(BaseModel):
    principle: str
    score: int


# ---------------------------------------------------------------------------------------------
# Success path, request shape, ledger
# ---------------------------------------------------------------------------------------------
def test_success_returns_text_usage_and_ledger(llm_server: LLMServer, make_llm_client, tmp_path: Path) -> None:
    ledger_path = tmp_path / "ledger.jsonl"
    client = make_llm_client(ledger_path=ledger_path, temperature=0.3, max_tokens=77)

    result = client.complete(user("hello there world"))

    assert isinstance(result, LLMResult)
    assert result.text == "echo: hello there world"
    assert result.prompt_tokens == 3
    assert result.completion_tokens == 4
    assert result.cost_usd == 0.0  # test-model is not in litellm's price map
    assert result.cached is False
    assert result.attempts == 1
    assert result.latency_s > 0
    assert result.finish_reason == "stop"

    [req] = llm_server.chat_requests
    assert req.path == "/v1/chat/completions"
    assert req.body["model"] == "test-model"
    assert req.body["messages"] == user("hello there world")
    assert req.body["temperature"] == 0.3
    assert req.body["max_tokens"] == 77
    assert req.headers["authorization"] == f"Bearer {TEST_API_KEY}"

    totals = client.ledger.totals()
    assert totals == {
        "calls": 1,
        "cached_calls": 0,
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "cost_usd": 0.0,
        "errors": 0,
    }
    [line] = ledger_path.read_text().splitlines()
    record = json.loads(line)
    assert record["model"] == TEST_MODEL
    assert record["ok"] is True and record["attempts"] == 1 and record["error_kind"] is None
    assert record["prompt_tokens"] == 3 and record["completion_tokens"] == 4
    assert "hello" not in line  # no message contents in the ledger


def test_per_call_params_are_forwarded(llm_server: LLMServer, make_llm_client) -> None:
    client = make_llm_client()
    client.complete(
        user("x"),
        temperature=0.9,
        max_tokens=5,
        seed=42,
        stop=["\n\n"],
        response_format={"type": "json_object"},
    )
    body = llm_server.chat_requests[0].body
    assert body["temperature"] == 0.9
    assert body["max_tokens"] == 5
    assert body["seed"] == 42
    assert body["stop"] == ["\n\n"]
    assert body["response_format"] == {"type": "json_object"}


def test_usage_cost_known_model_is_priced(llm_server: LLMServer, make_llm_client) -> None:
    # gpt-4o-mini is in litellm's bundled price map, so a real cost must come back.
    client = make_llm_client(model="openai/gpt-4o-mini")
    result = client.complete(user("price me"))
    assert result.cost_usd > 0
    assert client.ledger.totals()["cost_usd"] == pytest.approx(result.cost_usd)


def test_cost_is_summed_over_every_attempt(llm_server: LLMServer, make_llm_client, tmp_path: Path) -> None:
    """An empty answer asked again still cost its tokens: the cost must count it, like the tokens always did."""
    import litellm

    model = "openai/gpt-4o-mini"
    empty_usage = {"prompt_tokens": 900, "completion_tokens": 0, "total_tokens": 900}
    good_usage = {"prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940}
    llm_server.script(Reply.empty(usage=empty_usage), Reply.text("fine", usage=good_usage))
    client = make_llm_client(model=model, ledger_path=tmp_path / "calls.jsonl")
    result = client.complete(user("price me"))

    def price(usage: dict[str, int]) -> float:
        prompt, completion = litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=usage["prompt_tokens"],
                                                    completion_tokens=usage["completion_tokens"])
        return prompt + completion

    assert result.attempts == 2 and result.prompt_tokens == 1800 and result.completion_tokens == 40
    assert price(empty_usage) > 0
    assert result.cost_usd == pytest.approx(price(empty_usage) + price(good_usage))
    [record] = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text("utf-8").splitlines()]
    assert record["cost_usd"] == pytest.approx(result.cost_usd)


def test_cost_of_a_call_that_failed_for_good_is_kept(llm_server: LLMServer, make_llm_client) -> None:
    usage = {"prompt_tokens": 500, "completion_tokens": 0, "total_tokens": 500}
    llm_server.script(Reply.empty(usage=usage), Reply.empty(usage=usage))
    client = make_llm_client(model="openai/gpt-4o-mini", max_retries=1)
    with pytest.raises(LLMCallError):
        client.complete(user("hi"))
    totals = client.ledger.totals()
    assert totals["errors"] == 1 and totals["prompt_tokens"] == 1000 and totals["cost_usd"] > 0


# ---------------------------------------------------------------------------------------------
# Retries
# ---------------------------------------------------------------------------------------------
def test_429_honours_retry_after_then_succeeds(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.script(Reply.error(429, "slow down", headers={"Retry-After": "1"}), "after the wait")
    client = make_llm_client(backoff_initial_s=0.01, backoff_max_s=5.0)

    started = time.monotonic()
    result = client.complete(user("hi"))
    elapsed = time.monotonic() - started

    assert result.text == "after the wait"
    assert result.attempts == 2
    first, second = llm_server.chat_requests
    assert second.received_at - first.received_at >= 0.95  # waited for Retry-After, not 10 ms
    assert elapsed < 3.0


def test_retry_after_is_capped_by_backoff_max(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.script(Reply.error(429, headers={"Retry-After": "30"}), "ok")
    client = make_llm_client(backoff_max_s=0.2)
    started = time.monotonic()
    assert client.complete(user("hi")).attempts == 2
    assert time.monotonic() - started < 2.0


def test_500_then_success(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.script(Reply.error(500), Reply.error(503), "recovered")
    client = make_llm_client()
    result = client.complete(user("hi"))
    assert result.text == "recovered"
    assert result.attempts == 3
    assert llm_server.request_count == 3
    assert client.ledger.totals()["errors"] == 0


def test_timeout_then_success(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.script(Reply.slow(3.0, "too late"), "in time")
    client = make_llm_client(timeout_s=0.4)
    started = time.monotonic()
    result = client.complete(user("hi"))
    assert result.text == "in time"
    assert result.attempts == 2
    assert time.monotonic() - started < 2.0


def test_dropped_connection_then_success(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.script(Reply.drop(), "reconnected")
    result = make_llm_client().complete(user("hi"))
    assert result.text == "reconnected"
    assert result.attempts == 2


def test_persistent_500_raises_one_line_error_after_max_retries(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.responder = lambda _req: Reply.error(500, "the GPU caught fire\nagain")
    client = make_llm_client(max_retries=2)
    with pytest.raises(LLMError) as info:
        client.complete(user("hi"))
    err = info.value
    assert isinstance(err, LLMCallError)
    assert err.kind == "server_error" and err.status == 500 and err.attempts == 3
    assert llm_server.request_count == 3
    message = str(err)
    assert "\n" not in message
    assert "3 attempt" in message and "HTTP 500" in message and "— fix:" in message
    assert err.exit_code == 3
    totals = client.ledger.totals()
    assert totals["calls"] == 1 and totals["errors"] == 1
    assert client.ledger.records[0].error_kind == "server_error"


@pytest.mark.parametrize(
    ("status", "kind", "fix_words"),
    [
        (401, "auth", "API key environment variable"),
        (403, "permission", "has access to model"),
        (404, "not_found", "check the model name"),
        (400, "bad_request", "supports the request parameters"),
    ],
)
def test_client_errors_fail_at_once(
    llm_server: LLMServer, make_llm_client, status: int, kind: str, fix_words: str
) -> None:
    llm_server.script(Reply.error(status, "nope"), "never reached")
    client = make_llm_client(max_retries=5)
    with pytest.raises(LLMCallError) as info:
        client.complete(user("hi"))
    assert info.value.kind == kind
    assert info.value.attempts == 1
    assert llm_server.request_count == 1  # no retries
    assert fix_words in info.value.fix
    assert "\n" not in str(info.value)


def test_missing_key_fails_at_once_as_auth(llm_server: LLMServer, make_llm_client, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMCallError) as info:
        make_llm_client(api_key=None).complete(user("hi"))
    assert info.value.kind == "auth" and info.value.attempts == 1
    assert "API key environment variable" in info.value.fix


def test_unknown_provider_fails_at_once(llm_server: LLMServer, make_llm_client) -> None:
    with pytest.raises(LLMCallError) as info:
        make_llm_client(model="no-such-provider/model").complete(user("hi"))
    assert info.value.kind == "unknown_provider" and info.value.attempts == 1
    assert "provider" in info.value.fix and llm_server.request_count == 0


def test_unreachable_server_is_a_connection_error(make_llm_client) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LLMCallError) as info:
        make_llm_client(api_base=f"http://127.0.0.1:{port}/v1", max_retries=1).complete(user("hi"))
    assert info.value.kind == "connection" and info.value.attempts == 2
    assert "HTTP" not in info.value.problem  # litellm's synthetic 500 is not shown as a server status
    assert "api_base is reachable" in info.value.fix


def test_malformed_body_is_retried(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.script(Reply.invalid_json(), Reply(body={"unexpected": "shape"}), "well-formed at last")
    result = make_llm_client().complete(user("hi"))
    assert result.text == "well-formed at last"
    assert result.attempts == 3


def test_persistent_malformed_body_raises_clear_error(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.responder = lambda _req: Reply.invalid_json("<html>proxy error</html>")
    with pytest.raises(LLMCallError) as info:
        make_llm_client(max_retries=1).complete(user("hi"))
    assert info.value.kind == "invalid_response"
    assert "OpenAI-compatible" in str(info.value)
    assert llm_server.request_count == 2


def test_empty_content_is_retried(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.script(Reply.empty(), Reply.null(), "finally words")
    client = make_llm_client()
    result = client.complete(user("say something"))
    assert result.text == "finally words"
    assert result.attempts == 3
    # the prompt tokens of the two empty answers were still spent and are accounted
    assert result.prompt_tokens == 3 * 2


def test_persistent_empty_content_raises(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.responder = lambda _req: ""
    with pytest.raises(LLMCallError) as info:
        make_llm_client(max_retries=2).complete(user("hi"))
    assert info.value.kind == "empty_answer"
    assert llm_server.request_count == 3


# ---------------------------------------------------------------------------------------------
# complete_json
# ---------------------------------------------------------------------------------------------
def test_complete_json_tolerates_fences_and_prose(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.script(
        'Sure! Here it is:\n```json\n{"principle": "diversity", "score": 3}\n```\nHope that helps.',
        'The result is {"principle": "coverage", "score": 5} as requested.',
    )
    client = make_llm_client()
    assert client.complete_json(user("rate"), Finding) == Finding(principle="diversity", score=3)
    assert client.complete_json(user("rate again"), Finding) == Finding(principle="coverage", score=5)
    assert llm_server.request_count == 2


def test_complete_json_repairs_once(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.script('{"principle": "diversity", "score": "high"}', '{"principle": "diversity", "score": 4}')
    client = make_llm_client()
    assert client.complete_json(user("rate"), Finding) == Finding(principle="diversity", score=4)
    first, repair = llm_server.chat_requests
    msgs = repair.messages
    assert msgs[0] == first.messages[0]
    assert msgs[1] == {"role": "assistant", "content": '{"principle": "diversity", "score": "high"}'}
    assert msgs[2]["role"] == "user"
    assert "score" in msgs[2]["content"] and "valid JSON" in msgs[2]["content"]


def test_complete_json_garbage_then_valid(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.script("I cannot comply.", '{"principle": "p", "score": 1}')
    assert make_llm_client().complete_json(user("rate"), Finding).score == 1
    assert "no JSON object" in llm_server.chat_requests[1].messages[-1]["content"]


def test_complete_json_garbage_twice_raises(llm_server: LLMServer, make_llm_client, tmp_path: Path) -> None:
    llm_server.script("no json here", "still {not json")
    client = make_llm_client(cache_dir=tmp_path / "cache")
    with pytest.raises(LLMCallError) as info:
        client.complete_json(user("rate"), Finding)
    assert info.value.kind == "invalid_json"
    assert "Finding" in str(info.value) and "repair" in str(info.value)
    assert llm_server.request_count == 2  # exactly one repair
    # the unusable answers are not kept: a rerun asks the model again
    assert client.cache is not None and len(client.cache) == 0


def test_extract_json_object() -> None:
    assert extract_json_object('{"a": 1}') == {"a": 1}
    assert extract_json_object('```\n{"a": 1}\n```') == {"a": 1}
    assert extract_json_object('prefix {"a": {"b": [1, 2]}} suffix {"c": 3}') == {"a": {"b": [1, 2]}}
    assert extract_json_object('x {broken} then {"ok": true}') == {"ok": True}
    with pytest.raises(ValueError, match="no JSON object"):
        extract_json_object("[1, 2, 3]")
    with pytest.raises(ValueError, match="empty"):
        extract_json_object("   ")


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------
def test_cache_hit_makes_no_request_and_survives_new_client(
    llm_server: LLMServer, make_llm_client, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    client = make_llm_client(cache_dir=cache_dir)
    first = client.complete(user("cache me"), seed=7)
    assert first.cached is False and llm_server.request_count == 1
    assert (cache_dir / CACHE_FILENAME).is_file()

    again = client.complete(user("cache me"), seed=7)
    assert again.cached is True and again.text == first.text
    assert again.cost_usd == 0.0 and again.attempts == 0
    assert llm_server.request_count == 1

    other = make_llm_client(cache_dir=cache_dir)
    third = other.complete(user("cache me"), seed=7)
    assert third.cached is True and third.text == first.text
    assert llm_server.request_count == 1

    # anything that changes the answer is part of the key
    assert other.complete(user("cache me"), seed=8).cached is False
    assert other.complete(user("cache me"), seed=7, temperature=0.5).cached is False
    assert llm_server.request_count == 3

    totals = client.ledger.totals()
    assert totals["calls"] == 2 and totals["cached_calls"] == 1


def test_failures_are_not_cached(llm_server: LLMServer, make_llm_client, tmp_path: Path) -> None:
    llm_server.script(Reply.error(400))
    client = make_llm_client(cache_dir=tmp_path / "cache")
    with pytest.raises(LLMCallError):
        client.complete(user("q"))
    assert client.complete(user("q")).cached is False
    assert llm_server.request_count == 2


# ---------------------------------------------------------------------------------------------
# complete_many
# ---------------------------------------------------------------------------------------------
def test_complete_many_bounds_concurrency_and_keeps_order(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.default_delay_s = 0.15
    client = make_llm_client(concurrency=3)
    batch = [user(f"prompt {i}") for i in range(9)]
    seen: list[int] = []

    results = client.complete_many(batch, on_result=lambda i, _r: seen.append(i))

    assert [r.text for r in results if isinstance(r, LLMResult)] == [f"echo: prompt {i}" for i in range(9)]
    assert 2 <= llm_server.max_in_flight <= 3  # really concurrent, never above the limit
    assert sorted(seen) == list(range(9))
    assert client.ledger.totals()["calls"] == 9


def test_complete_many_returns_errors_in_place(llm_server: LLMServer, make_llm_client) -> None:
    def responder(req: dict) -> str | Reply:
        text = last_user_message(req)
        return Reply.error(400, "bad prompt") if "bad" in text else "ok " + text

    llm_server.responder = responder
    results = make_llm_client(concurrency=2).complete_many([user("a"), user("bad b"), user("c")])
    assert isinstance(results[0], LLMResult) and results[0].text == "ok a"
    assert isinstance(results[1], LLMError)
    assert isinstance(results[2], LLMResult) and results[2].text == "ok c"


def test_complete_json_many(llm_server: LLMServer, make_llm_client) -> None:
    llm_server.responder = lambda req: json.dumps({"principle": last_user_message(req), "score": 1})
    out = make_llm_client().complete_json_many([user("a"), user("b")], Finding)
    assert out == [Finding(principle="a", score=1), Finding(principle="b", score=1)]


# ---------------------------------------------------------------------------------------------
# Secrets, settings, import cost
# ---------------------------------------------------------------------------------------------
def test_api_key_never_written_or_raised(
    llm_server: LLMServer, make_llm_client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ledger_path = tmp_path / "ledger" / "calls.jsonl"
    client = make_llm_client(cache_dir=tmp_path / "cache", ledger_path=ledger_path, max_retries=1)
    texts: list[str] = [repr(client.settings), repr(client), client.settings.fingerprint()]

    client.complete(user("fine"))
    client.complete(user("fine"))  # cache hit
    llm_server.script(
        Reply.error(401, f"Incorrect API key provided: {TEST_API_KEY}"),
        Reply.error(500, f"upstream said {TEST_API_KEY}"),
        Reply.error(500, f"upstream said Bearer {TEST_API_KEY}"),
        "garbage",
        "more garbage",
    )
    for call in (
        lambda: client.complete(user("auth")),
        lambda: client.complete(user("boom")),
        lambda: client.complete_json(user("json"), Finding),
    ):
        with pytest.raises(LLMError) as info:
            call()
        err = info.value
        texts += [str(err), repr(err), err.problem, err.fix, str(err.__cause__), str(err.__context__)]
    client.close()

    assert any(r.headers.get("authorization") == f"Bearer {TEST_API_KEY}" for r in llm_server.chat_requests)
    for text in texts:
        assert TEST_API_KEY not in text
    for record in caplog.records:
        assert TEST_API_KEY not in record.getMessage()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert ledger_path in written and any(p.name == CACHE_FILENAME for p in written)
    for path in written:
        assert TEST_API_KEY.encode() not in path.read_bytes(), path


#: A provider key of no recognisable shape (no sk-/key- prefix): only redaction by value can catch it.
PLAIN_KEY = "Zq8Lm2Xv9Rt4Wn6Ys1Bp"


def test_key_echoed_in_answers_never_reaches_the_caller_or_the_cache(llm_server: LLMServer, make_llm_client,
                                                                   tmp_path: Path) -> None:
    """An endpoint that echoes the Authorization header put the key into every written file (issue 13)."""
    llm_server.responder = echo_authorization(echo_responder)
    client = make_llm_client(cache_dir=tmp_path / "cache")
    first = client.complete(user("hello"))
    again = client.complete(user("hello"))  # from the cache
    assert again.cached
    for result in (first, again):
        assert TEST_API_KEY not in result.text and result.text == "echo: hello (Bearer ***)"
    client.close()
    assert TEST_API_KEY.encode() not in (tmp_path / "cache" / CACHE_FILENAME).read_bytes()


def test_environment_key_of_any_shape_is_redacted(llm_server: LLMServer, make_llm_client, monkeypatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The key litellm takes from OPENAI_API_KEY, echoed in an answer and in a 401 body, matched no sk- pattern."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", PLAIN_KEY)
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok_77a1b2c3d4")
    client = make_llm_client(api_key=None, max_retries=0)
    llm_server.script(Reply.text(f"key {AUTH_ECHO} and token tok_77a1b2c3d4"),
                      Reply.error(401, f"Incorrect API key provided: {PLAIN_KEY}. Key: {AUTH_ECHO}"))
    assert client.complete(user("a")).text == "key Bearer *** and token ***"
    assert llm_server.chat_requests[0].headers["authorization"] == f"Bearer {PLAIN_KEY}"  # the env key was used
    with pytest.raises(LLMCallError) as info:
        client.complete(user("b"))
    assert info.value.kind == "auth"
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("data_advisor")]  # litellm's DEBUG logs aside
    assert ours
    for text in (str(info.value), repr(info.value), *ours):
        assert PLAIN_KEY not in text


@pytest.mark.parametrize("value", ["disabled", "short", "two words here"])
def test_plain_words_in_key_variables_are_not_redacted(llm_server: LLMServer, make_llm_client, monkeypatch,
                                                       value: str) -> None:
    """Only credential-like values are scrubbed: a flag such as HF_HUB_TOKEN=disabled must not mangle answers."""
    monkeypatch.setenv("SOME_TOKEN", value)
    assert make_llm_client().complete(user(value)).text == f"echo: {value}"


def test_fingerprint_covers_outputs_not_secrets() -> None:
    base = LLMSettings(model="openai/gpt-4o-mini", api_key="sk-one-aaaaaaaaaaaa")
    same = LLMSettings(model="openai/gpt-4o-mini", api_key="sk-two-bbbbbbbbbbbb", max_retries=1, concurrency=9)
    assert base.fingerprint() == same.fingerprint()
    assert base.fingerprint() != LLMSettings(model="openai/gpt-4o").fingerprint()
    assert base.fingerprint() != LLMSettings(model="openai/gpt-4o-mini", temperature=0.7).fingerprint()
    assert "sk-one" not in repr(base) and "sk-one" not in json.dumps(base.output_settings())


@pytest.mark.parametrize("bad", [{"model": " "}, {"concurrency": 0}, {"timeout_s": 0}, {"max_retries": -1}])
def test_invalid_settings_raise_llm_error(bad: dict) -> None:
    values = {"model": "openai/x", **bad}
    with pytest.raises(LLMError):
        LLMSettings(**values)


def test_empty_messages_raise_llm_error(make_llm_client) -> None:
    with pytest.raises(LLMError, match="no chat messages"):
        make_llm_client().complete([])


def test_backoff_is_seedable_exponential_and_capped() -> None:
    settings = LLMSettings(model="openai/x", backoff_initial_s=1.0, backoff_max_s=5.0)
    a = LLMClient(settings, jitter_seed=123)
    b = LLMClient(settings, jitter_seed=123)
    delays = [a._backoff_delay(n, None) for n in range(1, 7)]
    assert delays == [b._backoff_delay(n, None) for n in range(1, 7)]
    for n, delay in enumerate(delays, start=1):
        base = min(5.0, 2 ** (n - 1))
        assert base / 2 <= delay <= base
    assert a._backoff_delay(1, 3.0) == 3.0  # Retry-After wins over a shorter backoff
    assert a._backoff_delay(1, 60.0) == 5.0  # ...but is capped


def test_import_does_not_import_litellm() -> None:
    code = (
        "import sys, data_advisor.llm.client as m; "
        "assert 'litellm' not in sys.modules, 'litellm imported'; "
        "assert 'openai' not in sys.modules, 'openai imported'; "
        "print('ok')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_ledger_cuts_a_torn_last_record_before_appending(tmp_path: Path) -> None:
    """A kill mid-append left half a record; the next call's record was glued onto it (a damaged middle line)."""
    from data_advisor.llm.client import Ledger, LedgerRecord

    path = tmp_path / "llm_calls.jsonl"
    path.write_bytes(b'{"model": "m", "ok": true}\n{"model": "m", "ok": tr')
    ledger = Ledger(path)
    ledger.add(LedgerRecord(time="t", model="m", prompt_tokens=1, completion_tokens=1, cost_usd=0.0, cached=False,
                            attempts=1, latency_s=0.1, ok=True, error_kind=None))
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert len(rows) == 2 and rows[0] == {"model": "m", "ok": True} and rows[1]["attempts"] == 1


def test_ledger_lines_keep_their_bytes_through_the_shared_appender(tmp_path: Path) -> None:
    """The ledger now appends through io.append_jsonl; its lines must stay as before: sorted keys, non-ASCII escaped."""
    from data_advisor.llm.client import Ledger, LedgerRecord

    path = tmp_path / "llm_calls.jsonl"
    Ledger(path).add(LedgerRecord(time="t", model="m\u00e9", prompt_tokens=1, completion_tokens=2, cost_usd=0.5,
                                  cached=False, attempts=1, latency_s=0.123456, ok=True, error_kind=None))
    assert path.read_bytes() == (b'{"attempts": 1, "cached": false, "completion_tokens": 2, "cost_usd": 0.5, '
                                 b'"error_kind": null, "latency_s": 0.1235, "model": "m\\u00e9", "ok": true, '
                                 b'"prompt_tokens": 1, "time": "t"}\n')


@pytest.mark.parametrize("damage", ["random bytes", "zero fill", "truncated"])
def test_damaged_response_cache_is_moved_aside_and_answers_still_come(llm_server: LLMServer, make_llm_client,
                                                                       tmp_path: Path, damage: str,
                                                                       toolkit_warnings: list[str]) -> None:
    """A damaged sqlite cache was an error with a misleading fix ("choose a writable cache_dir") or a traceback."""
    import os as _os

    cache = tmp_path / "cache"
    client = make_llm_client(cache_dir=cache)
    for i in range(10):
        client.complete(user(f"question {i} " + "x" * 400))
    client.close()
    path = cache / CACHE_FILENAME
    size = path.stat().st_size
    if damage == "random bytes":
        path.write_bytes(_os.urandom(size))
    elif damage == "zero fill":
        path.write_bytes(b"\0" * size)
    else:
        with open(path, "r+b") as fh:
            fh.truncate(size // 2)
    client = make_llm_client(cache_dir=cache)
    assert client.complete(user("question 3 " + "x" * 400)).text.startswith("echo: question 3")
    err = "\n".join(toolkit_warnings)
    if damage != "truncated":  # a cut-short file may still pass sqlite's check; reads then miss, never crash
        assert "damaged" in err and "moved it to" in err
        assert list(cache.glob(f"{CACHE_FILENAME}.damaged-*"))
    client.close()

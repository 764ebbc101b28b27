"""The pieces of one LLM call that need no client state: request parameters, the request itself, what an answer
holds, what every attempt spent, backoff timing and the cache key."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from data_advisor.errors import LLMError
from data_advisor.llm.failures import Failure, LLMErrorKind
from data_advisor.llm.provider import response_cost, usage_int
from data_advisor.llm.redaction import one_line, redact
from data_advisor.llm.settings import LLMSettings

__all__ = ["Answer", "Messages", "Params", "Spend", "backoff_delay", "cache_key", "normalize_messages",
           "read_answer", "request_kwargs"]

Message = Mapping[str, Any]
Messages = Sequence[Message]


@dataclass(frozen=True)
class Params:
    """Per-call request parameters.

    ``response_format`` is the caller's own (part of the cache key); ``json_format`` is the one the client chose for
    :meth:`~data_advisor.llm.client.LLMClient.complete_json` (sent, but not part of the key: it only constrains the
    answer to the JSON the prompt already asks for, so answers cached before it was sent stay valid).
    """

    temperature: float
    max_tokens: int
    seed: int | None
    stop: str | list[str] | None
    response_format: Any
    json_format: dict[str, Any] | None = None


@dataclass(frozen=True)
class Answer:
    """A usable answer from one HTTP response."""

    text: str
    finish_reason: str | None


@dataclass
class Spend:
    """What the attempts of one call spent, summed over every attempt that got a response (failed ones too)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, response: Any) -> None:
        """Account one HTTP response: its token usage and litellm's price for it."""
        usage = getattr(response, "usage", None)
        self.prompt_tokens += usage_int(usage, "prompt_tokens")
        self.completion_tokens += usage_int(usage, "completion_tokens")
        self.cost_usd += response_cost(response)


def read_answer(response: Any, secrets: Sequence[str]) -> Answer | Failure:
    """Pull text and finish reason out of a litellm response; empty text or a missing message is a failure."""
    try:
        choice = response.choices[0]
        content = choice.message.content
        finish_reason = getattr(choice, "finish_reason", None)
    except (AttributeError, IndexError, TypeError) as exc:
        detail = one_line(f"response without a message: {type(exc).__name__}: {exc}", secrets)
        return Failure(LLMErrorKind.INVALID_RESPONSE, True, None, detail)
    if not isinstance(content, str) or not content.strip():
        return Failure(LLMErrorKind.EMPTY_ANSWER, True, None,
                       f"the model returned no text (finish_reason={finish_reason})")
    return Answer(
        text=redact(content, secrets),  # before the answer is cached, returned or written anywhere
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
    )


def request_kwargs(settings: LLMSettings, messages: list[dict[str, Any]], params: Params) -> dict[str, Any]:
    """The keyword arguments of ``litellm.completion`` for this call."""
    kwargs: dict[str, Any] = {
        "model": settings.model,
        "messages": messages,
        "timeout": settings.timeout_s,
        "num_retries": 0,  # retries are ours: one policy for every provider
        "drop_params": True,  # providers that lack e.g. seed ignore it instead of failing
        "temperature": params.temperature,
        "max_tokens": params.max_tokens,
    }
    optional = {"api_base": settings.api_base, "api_key": settings.api_key, "seed": params.seed,
                "stop": params.stop, "response_format": params.response_format or params.json_format}
    kwargs.update({name: value for name, value in optional.items() if value is not None})
    return kwargs


def backoff_delay(settings: LLMSettings, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
    """Exponential backoff with equal jitter; a server's Retry-After wins; everything capped."""
    base = min(settings.backoff_max_s, settings.backoff_initial_s * (2 ** (attempt - 1)))
    delay = base * (0.5 + 0.5 * rng.random())
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return min(delay, settings.backoff_max_s)


def cache_key(settings: LLMSettings, messages: Messages, params: Params) -> str:
    """sha256 over everything that determines the answer (never the key; see :class:`Params` on ``json_format``)."""
    payload = {
        "model": settings.model,
        "api_base": settings.api_base.rstrip("/") if settings.api_base else None,
        "messages": list(messages),
        "temperature": params.temperature,
        "max_tokens": params.max_tokens,
        "seed": params.seed,
        "stop": params.stop,
        "response_format": params.response_format,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _json_default(obj: Any) -> Any:
    """Make cache-key parts JSON-able: pydantic model classes by their schema, else their repr."""
    schema = getattr(obj, "model_json_schema", None)
    if isinstance(obj, type) and callable(schema):
        return {"__pydantic__": obj.__name__, "schema": schema()}
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return repr(obj)


def normalize_messages(messages: Messages) -> list[dict[str, Any]]:
    """Copy messages to plain dicts and check their shape (roles), without echoing their contents."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence) or not messages:
        raise LLMError(
            "no chat messages given to the LLM client",
            "pass a non-empty list of {'role': ..., 'content': ...} messages",
        )
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or not isinstance(msg.get("role"), str):
            raise LLMError(
                f"chat message {i} has no 'role'",
                "pass messages as {'role': 'system'|'user'|'assistant', 'content': ...}",
            )
        out.append(dict(msg))
    return out

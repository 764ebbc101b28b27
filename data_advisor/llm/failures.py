"""What went wrong with an LLM call, and what the user should do about it.

Every exception litellm, openai or httpx can raise is sorted into one :class:`LLMErrorKind`: retryable
(rate limits, timeouts, 5xx, broken answers) or the user's to fix (key, model name, parameters).  Callers
branch on the kind, never on message text: :data:`FATAL_KINDS` stops a whole run at once, and
:data:`BAD_OUTPUT_KINDS` counts a call as a bad answer and goes on.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from data_advisor.errors import LLMError
from data_advisor.llm.provider import import_litellm
from data_advisor.llm.redaction import one_line

__all__ = [
    "BAD_OUTPUT_KINDS",
    "FATAL_KINDS",
    "Failure",
    "LLMCallError",
    "LLMErrorKind",
    "classify",
    "fix_for",
    "label_for",
]


class LLMErrorKind(StrEnum):
    """The kinds of LLM failure.  A ``StrEnum``, so ``kind == "auth"`` and JSON records keep their plain strings."""

    AUTH = "auth"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    CONTEXT_WINDOW = "context_window"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    SERVER_ERROR = "server_error"
    INVALID_RESPONSE = "invalid_response"
    EMPTY_ANSWER = "empty_answer"
    INVALID_JSON = "invalid_json"
    UNKNOWN_PROVIDER = "unknown_provider"
    UNEXPECTED = "unexpected"


K = LLMErrorKind

#: Failures of the *setup* (key, model name, provider, request parameters): every later call with the same settings
#: fails the same way, so a job (a generation run, answering a run's prompts) stops at once.  ``context_window`` is
#: not among them: it is a property of one request (one over-long prompt, or a round's randomly drawn examples), so
#: the other calls still succeed; it is counted with the call's item and the job goes on.
FATAL_KINDS: frozenset[LLMErrorKind] = frozenset({K.AUTH, K.PERMISSION, K.NOT_FOUND, K.BAD_REQUEST,
                                                  K.UNKNOWN_PROVIDER})
#: Failures of the answer itself (not JSON, empty, not the wire format): count the call as a bad output.
BAD_OUTPUT_KINDS: frozenset[LLMErrorKind] = frozenset({K.INVALID_JSON, K.EMPTY_ANSWER, K.INVALID_RESPONSE})

# HTTP statuses worth retrying besides 5xx: request timeout, conflict, too early, rate limit.
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})

_LABELS = {
    K.AUTH: "authentication failed",
    K.PERMISSION: "permission denied",
    K.NOT_FOUND: "model or endpoint not found",
    K.BAD_REQUEST: "request rejected",
    K.CONTEXT_WINDOW: "prompt too long for the model's context window",
    K.RATE_LIMIT: "rate limited",
    K.TIMEOUT: "timed out",
    K.CONNECTION: "connection failed",
    K.SERVER_ERROR: "provider server error",
    K.INVALID_RESPONSE: "invalid response (not the OpenAI-compatible format)",
    K.EMPTY_ANSWER: "empty answer",
    K.UNKNOWN_PROVIDER: "litellm does not know the model's provider",
    K.UNEXPECTED: "unexpected error",
}


class LLMCallError(LLMError):
    """An :class:`LLMError` that also says which kind of failure it was, for callers that branch on it."""

    def __init__(self, problem: str, fix: str = "", *, kind: str, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(problem, fix)
        self.kind = LLMErrorKind(kind)
        self.status = status
        self.attempts = attempts


@dataclass(frozen=True)
class Failure:
    """One failed attempt, classified."""

    kind: LLMErrorKind
    retryable: bool
    status: int | None
    detail: str
    retry_after_s: float | None = None


def label_for(kind: str) -> str:
    """A short human name of a failure kind, for one-line messages."""
    return _LABELS.get(kind, str(kind))  # type: ignore[call-overload]  (a StrEnum member hashes as its string)


def fix_for(kind: str, model: str) -> str:
    """What the user should do about each kind of failure."""
    fixes = {
        K.AUTH: "check the API key environment variable for the provider (e.g. OPENAI_API_KEY) or pass api_key",
        K.PERMISSION: f"check that the API key has access to model '{model}'",
        K.NOT_FOUND: f"check the model name '{model}' and the api_base",
        K.BAD_REQUEST: f"check that model '{model}' supports the request parameters (max_tokens, stop, ...)",
        K.CONTEXT_WINDOW: "shorten the prompt or use a model with a larger context window",
        K.RATE_LIMIT: "wait and rerun (cached answers are kept), lower concurrency, or raise max_retries",
        K.TIMEOUT: "raise timeout_s, or check that the server at the api_base is responsive",
        K.CONNECTION: "check that the api_base is reachable and the server is running",
        K.SERVER_ERROR: "the provider is failing; rerun later (cached answers are kept) or raise max_retries",
        K.INVALID_RESPONSE: "check that api_base points at an OpenAI-compatible endpoint (usually ending in /v1)",
        K.EMPTY_ANSWER: "check max_tokens and the prompt, or try another model",
        K.UNKNOWN_PROVIDER: "prefix the model with its litellm provider, e.g. 'openai/gpt-4o-mini' or 'ollama/NAME'",
        K.UNEXPECTED: f"check the model string '{model}' and the LLM settings",
    }
    return fixes.get(kind, fixes[K.UNEXPECTED])  # type: ignore[call-overload]


def final_error(failure: Failure, attempts: int, model: str, secrets: Sequence[str]) -> LLMCallError:
    """The one-line, key-free error for a call that failed for good."""
    label = label_for(failure.kind)
    status = f" (HTTP {failure.status})" if failure.status else ""
    if failure.retryable:
        problem = f"LLM call to {model} failed after {attempts} attempt(s): {label}{status}: {failure.detail}"
    else:
        problem = f"LLM call to {model} was rejected: {label}{status}: {failure.detail}"
    return LLMCallError(one_line(problem, secrets, limit=400), fix_for(failure.kind, model), kind=failure.kind,
                        status=failure.status, attempts=attempts)


def _headers_of(exc: BaseException) -> dict[str, str]:
    """All response headers litellm exposes on an exception, lower-cased (empty if none)."""
    merged: dict[str, str] = {}
    response = getattr(exc, "response", None)
    sources = (
        getattr(response, "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
    )
    for headers in sources:
        items = getattr(headers, "items", None)
        if not callable(items):
            continue
        for name, value in items():
            merged.setdefault(str(name).lower(), str(value))
    return merged


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After`` seconds/HTTP-date)."""
    headers = _headers_of(exc)
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return max(0.0, (when - _dt.datetime.now(_dt.UTC)).total_seconds())


# litellm/openai prefix messages with class names, sometimes three deep; they add nothing for a user.
_PREFIX = re.compile(r"^\s*(?:(?:litellm\.)?[A-Za-z]*(?:Error|Exception)\s*(?::|-)\s*)+")
_MISSING_KEY_HINTS = ("Missing credentials", "api_key client option must be set", "No API key", "api key not found")


def _clean_detail(exc: BaseException, secrets: Sequence[str]) -> str:
    """The provider's message without the chain of class-name prefixes, one line, secrets removed."""
    text = _PREFIX.sub("", str(exc)).strip()
    return one_line(text or type(exc).__name__, secrets)


def classify(exc: BaseException, secrets: Sequence[str]) -> Failure:
    """Sort a litellm/openai/httpx exception into retryable and user-must-fix kinds.

    The HTTP status is kept only when a server really sent it: litellm labels local timeouts 408
    and dropped connections or undecodable bodies 500, which would mislead the user.
    """
    litellm = import_litellm()
    status_raw = getattr(exc, "status_code", None)
    status = status_raw if isinstance(status_raw, int) else None
    text = str(exc)
    detail = _clean_detail(exc, secrets)
    name = type(exc).__name__

    def failure(kind: LLMErrorKind, retryable: bool, retry_after: float | None = None, *,
                real_status: bool = True) -> Failure:
        return Failure(kind, retryable, status if real_status else None, detail, retry_after)

    if isinstance(exc, litellm.Timeout | TimeoutError) or name in {"APITimeoutError", "TimeoutException"}:
        return failure(K.TIMEOUT, True, real_status=False)
    if isinstance(exc, litellm.APIConnectionError) or name in {"ConnectError", "RemoteProtocolError"}:
        return failure(K.CONNECTION, True, real_status=False)
    if any(hint.lower() in text.lower() for hint in _MISSING_KEY_HINTS):
        return failure(K.AUTH, False, real_status=False)
    if "LLM Provider NOT provided" in text or name == "LiteLLMUnknownProvider":
        return failure(K.UNKNOWN_PROVIDER, False, real_status=False)
    if isinstance(exc, litellm.RateLimitError) or status == 429:
        return failure(K.RATE_LIMIT, True, retry_after_s(exc))
    if isinstance(exc, litellm.ContextWindowExceededError):
        return failure(K.CONTEXT_WINDOW, False)
    by_status = _by_status(exc, litellm, status, text)
    if by_status is not None:
        kind, retryable, keep_status = by_status
        wait = retry_after_s(exc) if retryable and keep_status else None
        return failure(kind, retryable, wait, real_status=keep_status)
    if isinstance(exc, litellm.APIError):
        return failure(K.SERVER_ERROR, True)
    return failure(K.UNEXPECTED, False, real_status=False)


def _by_status(exc: BaseException, litellm: Any, status: int | None,
               text: str) -> tuple[LLMErrorKind, bool, bool] | None:
    """(kind, retryable, whether the status is the server's own) for HTTP-status failures; None for the rest."""
    if isinstance(exc, litellm.AuthenticationError) or status == 401:
        return K.AUTH, False, True
    if isinstance(exc, litellm.PermissionDeniedError) or status == 403:
        return K.PERMISSION, False, True
    if isinstance(exc, litellm.NotFoundError) or status == 404:
        return K.NOT_FOUND, False, True
    if status is not None and status >= 500:
        # litellm reports dropped connections and undecodable bodies as 500s; name them properly.
        if "Connection error" in text:
            return K.CONNECTION, True, False
        if "Expecting value" in text or "no 'choices'" in text or "Received response" in text:
            return K.INVALID_RESPONSE, True, False
        return K.SERVER_ERROR, True, True
    if status in _RETRYABLE_4XX:
        return (K.TIMEOUT if status == 408 else K.SERVER_ERROR), True, True
    if isinstance(exc, litellm.BadRequestError) or (status is not None and 400 <= status < 500):
        return K.BAD_REQUEST, False, True
    return None

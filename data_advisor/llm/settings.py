"""What an LLM call is configured with (:class:`LLMSettings`) and what it returns (:class:`LLMResult`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_advisor.errors import LLMError

__all__ = ["CallCost", "LLMResult", "LLMSettings"]


@dataclass
class LLMSettings:
    """How to reach a model and how hard to try.

    Args:
        model: any litellm model string: ``"openai/gpt-4o-mini"``, ``"hosted_vllm/x"``, ``"ollama/llama3"``.
        api_base: endpoint override (local servers, proxies); ``None`` = the provider's default.
        api_key: explicit key; ``None`` = litellm reads the provider's environment variable
            (``OPENAI_API_KEY`` ...).  Excluded from ``repr`` and from :meth:`fingerprint`.
        timeout_s: per-request timeout.
        max_retries: retries after the first attempt (so at most ``max_retries + 1`` requests).
        backoff_initial_s / backoff_max_s: exponential backoff start and cap (also caps Retry-After).
        concurrency: most requests in flight at once for this client.
        cache_dir: folder for the sqlite response cache; ``None`` disables caching.
        temperature / max_tokens: defaults for calls that do not pass their own.  Temperature 0 by
            default because analyses should be repeatable and cache-friendly.
    """

    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    concurrency: int = 4
    cache_dir: Path | None = None
    temperature: float = 0.0
    max_tokens: int = 2048

    def __post_init__(self) -> None:
        """Reject settings that cannot work, with a fix, before any call is made."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise LLMError("no LLM model given", "pass a litellm model string such as 'openai/gpt-4o-mini'")
        self.model = self.model.strip()
        if self.api_base is not None:
            self.api_base = self.api_base.strip() or None
        if self.api_key is not None and not self.api_key.strip():
            self.api_key = None
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir).expanduser()
        checks = [
            (self.timeout_s > 0, "timeout_s must be > 0"),
            (self.max_retries >= 0, "max_retries must be >= 0"),
            (self.backoff_initial_s >= 0, "backoff_initial_s must be >= 0"),
            (self.backoff_max_s >= 0, "backoff_max_s must be >= 0"),
            (self.concurrency >= 1, "concurrency must be >= 1"),
            (self.max_tokens >= 1, "max_tokens must be >= 1"),
            (self.temperature >= 0, "temperature must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise LLMError(f"invalid LLM settings: {message}", "fix the value in the LLM settings")

    def output_settings(self) -> dict[str, Any]:
        """The settings that change what the model answers (model, endpoint, sampling); never the key."""
        return {
            "model": self.model,
            "api_base": self.api_base.rstrip("/") if self.api_base else None,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def fingerprint(self) -> str:
        """A short stable hash of :meth:`output_settings`, to tell whether two runs used the same LLM setup.

        Retries, timeouts, concurrency and caching do not change answers, so they are left out; the
        key is left out so the fingerprint can be stored and shown.
        """
        blob = json.dumps(self.output_settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CallCost:
    """What one call spent: tokens, dollars, HTTP attempts and wall time; shared by the answer (:class:`LLMResult`)
    and its line in the cost ledger (``LedgerRecord``), so the two always account the same quantities.

    A cache hit spent nothing, so its counts are 0 (``cached=True``, ``attempts=0``).  ``attempts`` counts HTTP
    requests including retries.  ``cost_usd`` is litellm's price for the model, or 0.0 when litellm does not know it.
    """

    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: bool
    attempts: int
    latency_s: float


@dataclass(frozen=True)
class LLMResult(CallCost):
    """One answer and what it cost.

    Token counts and ``cost_usd`` are what *this call* spent, summed over every attempt that got a response (an
    empty answer that was asked again still cost its tokens).  Built by keyword: the inherited cost fields come first.
    """

    text: str
    model: str = ""
    finish_reason: str | None = None

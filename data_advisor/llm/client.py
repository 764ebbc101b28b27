"""The one place that talks to an LLM: any litellm model, with retries, a cache and a cost ledger.

Why a wrapper around ``litellm.completion`` at all:

* **Retries we control.** Providers rate-limit (429, often with ``Retry-After``), time out and return 5xx.  litellm
  is called with ``num_retries=0`` and :meth:`LLMClient._call` retries with exponential backoff + jitter, so the
  policy is the same for every provider and testable (seedable jitter).  Errors the user must fix (400/401/403/404)
  fail at once with a one-line :class:`~data_advisor.llm.failures.LLMCallError` naming the fix.
* **Reproducible, cheap reruns.** Successful answers are cached on disk (:mod:`~data_advisor.llm.cache`).
* **Knowing what a run cost.** Every call lands in a :class:`~data_advisor.llm.ledger.Ledger`: tokens and cost
  summed over every attempt, cache hits, attempts, errors.
* **JSON that costs one call.** :meth:`LLMClient.complete_json` sends a ``response_format`` where the model takes
  one, repairs common slips offline (:mod:`~data_advisor.llm.json_answers`) and asks once more only when that fails.
* **Keys stay secret.** The API key is never written to logs, exceptions, the ledger or the cache
  (:mod:`~data_advisor.llm.redaction`).

The names below used to live in this module and are re-exported from it, so existing imports keep working.
"""

from __future__ import annotations

import datetime as _dt
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from data_advisor.errors import LLMError
from data_advisor.llm.cache import CACHE_FILENAME, ResponseCache
from data_advisor.llm.calls import (
    Answer,
    Messages,
    Params,
    Spend,
    backoff_delay,
    cache_key,
    normalize_messages,
    read_answer,
    request_kwargs,
)
from data_advisor.llm.failures import Failure, LLMCallError, LLMErrorKind, classify, final_error
from data_advisor.llm.json_answers import JSONProblem, extract_json_object, parse_answer, repair_prompt
from data_advisor.llm.ledger import Ledger, LedgerRecord
from data_advisor.llm.provider import import_litellm, json_response_format
from data_advisor.llm.redaction import one_line, redact, secret_values
from data_advisor.llm.settings import LLMResult, LLMSettings

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "CACHE_FILENAME",
    "LLMCallError",
    "LLMClient",
    "LLMErrorKind",
    "LLMResult",
    "LLMSettings",
    "Ledger",
    "LedgerRecord",
    "ResponseCache",
    "extract_json_object",
    "secret_values",
]

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound="BaseModel")
T = TypeVar("T")


class LLMClient:
    """Chat completions for one model setup: retries, caching, bounded concurrency and a ledger.

    Args:
        settings: the model and policies.
        ledger: an existing :class:`Ledger` to share between clients; default: a new one.
        ledger_path: append ledger records to this JSONL file (ignored when ``ledger`` is given).
        jitter_seed: seed for the backoff jitter, for reproducible retry timing in tests.
    """

    def __init__(self, settings: LLMSettings, *, ledger: Ledger | None = None, ledger_path: Path | str | None = None,
                 jitter_seed: int | None = None) -> None:
        self.settings = settings
        self.ledger = ledger if ledger is not None else Ledger(ledger_path)
        self.cache = ResponseCache(settings.cache_dir) if settings.cache_dir is not None else None
        self._rng = random.Random(jitter_seed)
        self._rng_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        self._sleep: Callable[[float], None] = time.sleep
        self._json_format_refused = False  # the endpoint rejected our response_format once: stop sending it

    def __repr__(self) -> str:
        return f"LLMClient(model={self.settings.model!r}, api_base={self.settings.api_base!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the cache connection."""
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    # ---- public API -------------------------------------------------------------------------
    def complete(self, messages: Messages, *, temperature: float | None = None, max_tokens: int | None = None,
                 seed: int | None = None, stop: str | list[str] | None = None, response_format: Any = None) -> LLMResult:
        """One chat completion: cached if seen before, else called with retries.

        Raises:
            LLMCallError: (an :class:`LLMError`) when the provider rejects the request (at once) or
                keeps failing after ``max_retries`` retries; the message is one line with a fix.
        """
        params = self._params(temperature, max_tokens, seed, stop, response_format)
        return self._complete(normalize_messages(messages), params)[0]

    def complete_many(self, batch: Sequence[Messages], *, temperature: float | None = None,
                      max_tokens: int | None = None, seed: int | None = None, stop: str | list[str] | None = None,
                      response_format: Any = None,
                      on_result: Callable[[int, LLMResult | LLMError], None] | None = None) -> list[LLMResult | LLMError]:
        """Many completions, at most ``settings.concurrency`` at once, results in input order.

        A failed item yields its :class:`LLMError` in place instead of aborting the batch, because one
        bad prompt should not waste the answers already paid for.  ``on_result(index, result)`` is
        called as each item finishes (progress reporting).
        """
        params = self._params(temperature, max_tokens, seed, stop, response_format)
        return self._map(lambda msgs: self._complete(normalize_messages(msgs), params)[0], batch, on_result)

    def complete_json(self, messages: Messages, schema: type[ModelT], *, temperature: float | None = None,
                      max_tokens: int | None = None, seed: int | None = None, stop: str | list[str] | None = None,
                      response_format: Any = None) -> ModelT:
        """A completion parsed into ``schema`` (a pydantic model), with at most one repair request.

        The request carries a ``response_format`` (the schema, or JSON mode) where litellm says the model takes one,
        unless the caller passed their own.  The first JSON object in the answer is used (fences and prose around
        it are tolerated); common slips (trailing commas, single quotes, comments, a missing closing bracket) are
        repaired offline, but never in an answer that was cut off.  Only if that fails are the bad answer and the
        reason sent back once asking for valid JSON.  If that fails too, :class:`LLMCallError` (kind
        ``invalid_json``) is raised and both answers are dropped from the cache, so a rerun asks afresh.
        """
        params = self._params(temperature, max_tokens, seed, stop, response_format)
        if response_format is None and not self._json_format_refused:
            params = replace(params, json_format=json_response_format(self.settings.model, schema))
        msgs = normalize_messages(messages)
        first, first_key = self._complete(msgs, params)
        try:
            return self._parse(first, schema)
        except JSONProblem as exc:
            first_problem = str(exc)
        logger.info("LLM answer not valid for %s (%s); asking once for a repair", schema.__name__, first_problem)
        repair = [*msgs, {"role": "assistant", "content": first.text},
                  {"role": "user", "content": repair_prompt(first_problem, schema)}]
        second, second_key = self._complete(repair, params)
        try:
            return self._parse(second, schema)
        except JSONProblem as exc:
            problem = one_line(str(exc), self._secrets())
        if self.cache is not None:
            self.cache.delete(first_key)
            self.cache.delete(second_key)
        raise LLMCallError(
            f"the answer of {self.settings.model} is not valid JSON for {schema.__name__} "
            f"even after one repair request: {problem}",
            "use a stronger model or a lower temperature, or make the prompt ask for this JSON shape explicitly",
            kind=LLMErrorKind.INVALID_JSON,
            attempts=first.attempts + second.attempts,
        )

    def complete_json_many(self, batch: Sequence[Messages], schema: type[ModelT], *, temperature: float | None = None,
                           max_tokens: int | None = None, seed: int | None = None,
                           stop: str | list[str] | None = None, response_format: Any = None,
                           on_result: Callable[[int, ModelT | LLMError], None] | None = None) -> list[ModelT | LLMError]:
        """:meth:`complete_json` over many conversations, bounded and ordered like :meth:`complete_many`."""

        def one(msgs: Messages) -> ModelT:
            return self.complete_json(msgs, schema, temperature=temperature, max_tokens=max_tokens, seed=seed,
                                      stop=stop, response_format=response_format)

        return self._map(one, batch, on_result)

    # ---- one call: cache, retry loop, accounting ---------------------------------------------
    def _complete(self, messages: list[dict[str, Any]], params: Params) -> tuple[LLMResult, str]:
        """Cache lookup, then the retry loop; returns the result and its cache key."""
        started = time.monotonic()
        key = cache_key(self.settings, messages, params)
        hit = self._from_cache(key, started)
        if hit is not None:
            return hit, key
        spend = Spend()
        answer, attempts = self._call(messages, params, spend, started)
        if self.cache is not None:
            self.cache.put(key, text=answer.text, model=self.settings.model, prompt_tokens=spend.prompt_tokens,
                           completion_tokens=spend.completion_tokens, finish_reason=answer.finish_reason)
        self._record(ok=True, started=started, attempts=attempts, spend=spend)
        return LLMResult(text=answer.text, prompt_tokens=spend.prompt_tokens,
                         completion_tokens=spend.completion_tokens, cost_usd=spend.cost_usd, cached=False,
                         attempts=attempts, latency_s=time.monotonic() - started, model=self.settings.model,
                         finish_reason=answer.finish_reason), key

    def _from_cache(self, key: str, started: float) -> LLMResult | None:
        """The cached answer as a free result (no tokens, no cost, no attempts), or None on a miss."""
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is None:
            return None
        self._record(ok=True, started=started, attempts=0, cached=True)
        return LLMResult(text=redact(hit.text, self._secrets()),  # a cache written before redaction existed
                         prompt_tokens=0, completion_tokens=0, cost_usd=0.0, cached=True, attempts=0,
                         latency_s=time.monotonic() - started, model=hit.model, finish_reason=hit.finish_reason)

    def _call(self, messages: list[dict[str, Any]], params: Params, spend: Spend, started: float) -> tuple[Answer, int]:
        """The retry loop: attempts until an answer, a failure the user must fix, or ``max_retries`` retries.

        Hand-written rather than litellm's ``num_retries`` (or tenacity) because the policy must be the same for
        every provider and SDK, honour and cap ``Retry-After``, use seedable jitter, account the tokens and cost of
        every attempt, and drop a ``response_format`` the endpoint rejects between two attempts.
        """
        kwargs = request_kwargs(self.settings, messages, params)
        if self._json_format_refused and params.response_format is None:
            kwargs.pop("response_format", None)  # refused by this endpoint since the call began
        attempts = 0
        while True:
            attempts += 1
            outcome = self._attempt(kwargs, spend)
            if isinstance(outcome, Answer):
                return outcome, attempts
            if self._drop_json_format(outcome, kwargs, params):
                continue
            if not outcome.retryable or attempts > self.settings.max_retries:
                self._record(ok=False, started=started, attempts=attempts, spend=spend, error_kind=outcome.kind)
                logger.info("LLM call to %s failed (%s) after %d attempt(s): %s",  # not WARNING: the raised error
                            self.settings.model, outcome.kind, attempts, outcome.detail)  # is what the user sees
                raise final_error(outcome, attempts, self.settings.model, self._secrets()) from None
            delay = self._backoff_delay(attempts, outcome.retry_after_s)
            logger.info("LLM call to %s: attempt %d/%d failed (%s%s); retrying in %.2fs", self.settings.model,
                        attempts, self.settings.max_retries + 1, outcome.kind,
                        f", HTTP {outcome.status}" if outcome.status else "", delay)
            self._sleep(delay)

    def _attempt(self, kwargs: dict[str, Any], spend: Spend) -> Answer | Failure:
        """One HTTP request: the answer, or the classified failure; a response's usage and cost go into ``spend``."""
        litellm = import_litellm()
        try:
            with self._slots:
                response = litellm.completion(**kwargs)
        except Exception as exc:  # classified: nothing escapes unclassified
            return classify(exc, self._secrets())
        spend.add(response)  # an empty or broken answer still cost its tokens
        return read_answer(response, self._secrets())

    def _drop_json_format(self, failure: Failure, kwargs: dict[str, Any], params: Params) -> bool:
        """Whether the endpoint rejected the ``response_format`` we chose (it is then dropped for this client)."""
        if failure.kind != LLMErrorKind.BAD_REQUEST or params.json_format is None or params.response_format is not None:
            return False
        if kwargs.pop("response_format", None) is None:
            return False
        self._json_format_refused = True
        logger.info("%s rejected response_format (%s); asking without it", self.settings.model, failure.detail)
        return True

    # ---- helpers ------------------------------------------------------------------------------
    def _parse(self, result: LLMResult, schema: type[ModelT]) -> ModelT:
        value, repaired = parse_answer(result.text, schema, result.finish_reason)
        if repaired:
            logger.info("LLM answer for %s repaired offline (malformed JSON); no request made", schema.__name__)
        return value

    def _secrets(self) -> list[str]:
        return secret_values(self.settings.api_key)

    def _params(self, temperature: float | None, max_tokens: int | None, seed: int | None,
                stop: str | list[str] | None, response_format: Any) -> Params:
        s = self.settings
        return Params(temperature=s.temperature if temperature is None else temperature,
                      max_tokens=s.max_tokens if max_tokens is None else max_tokens,
                      seed=seed, stop=stop, response_format=response_format)

    def _backoff_delay(self, attempt: int, retry_after_s: float | None) -> float:
        with self._rng_lock:
            return backoff_delay(self.settings, attempt, retry_after_s, self._rng)

    def _map(self, fn: Callable[[Messages], T], batch: Sequence[Messages],
             on_result: Callable[[int, Any], None] | None) -> list[T | LLMError]:
        items = list(batch)
        if not items:
            return []
        results: list[T | LLMError | None] = [None] * len(items)
        with ThreadPoolExecutor(max_workers=min(self.settings.concurrency, len(items)), thread_name_prefix="llm") as pool:
            futures: dict[Future[T], int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for future in as_completed(futures):
                index = futures[future]
                outcome: T | LLMError
                try:
                    outcome = future.result()
                except LLMError as exc:
                    outcome = exc
                results[index] = outcome
                if on_result is not None:
                    on_result(index, outcome)
        return [r for r in results if r is not None]

    def _record(self, *, ok: bool, started: float, attempts: int, cached: bool = False, spend: Spend | None = None,
                error_kind: str | None = None) -> None:
        spend = spend or Spend()
        self.ledger.add(LedgerRecord(
            time=_dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"), model=self.settings.model,
            prompt_tokens=spend.prompt_tokens, completion_tokens=spend.completion_tokens, cost_usd=spend.cost_usd,
            cached=cached, attempts=attempts, latency_s=time.monotonic() - started, ok=ok,
            error_kind=None if error_kind is None else str(error_kind)))

"""The LLM layer: one litellm client (retries, cache, cost ledger, key redaction) and the untrusted-data rules.

It sits below coverage, reports and advisor (it imports only ``errors``, ``io`` and ``_env``), so an audit's cluster
labels or a taxonomy's written examples can use an LLM without importing the advisor package.

Modules, one job each: ``settings`` (what a call is configured with and returns), ``client`` (:class:`LLMClient`:
the retry loop and JSON answers), ``calls`` (request parameters, backoff, cache key, what each attempt spent),
``failures`` (error kinds, the fatal set, classification and fixes), ``provider`` (the lazy litellm import, prices,
JSON support), ``json_answers`` (JSON extraction and offline repair), ``cache`` (the sqlite response cache),
``ledger`` (the cost ledger), ``redaction`` (secrets), ``untrusted`` and ``labels`` (prompts around hostile data).
"""

from data_advisor.llm.client import LLMClient
from data_advisor.llm.failures import BAD_OUTPUT_KINDS, FATAL_KINDS, LLMCallError, LLMErrorKind
from data_advisor.llm.settings import LLMResult, LLMSettings

__all__ = ["BAD_OUTPUT_KINDS", "FATAL_KINDS", "LLMCallError", "LLMClient", "LLMErrorKind", "LLMResult", "LLMSettings"]

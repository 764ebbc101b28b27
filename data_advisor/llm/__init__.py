"""The LLM layer: one litellm client (retries, cache, cost ledger, key redaction) and the untrusted-data rules.

It sits below coverage, reports and advisor (it imports only ``errors``, ``io`` and ``_env``), so an audit's cluster
labels or a taxonomy's written examples can use an LLM without importing the advisor package.
"""

from data_advisor.llm.client import LLMClient, LLMResult, LLMSettings

__all__ = ["LLMClient", "LLMResult", "LLMSettings"]

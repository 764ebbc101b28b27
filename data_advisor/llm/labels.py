"""LLM cluster labels for reports: a short name for what a cluster's prompts have in common.

The cluster's prompts are hostile text, so they reach the model JSON-encoded inside an untrusted-data block,
and the answer is flattened to one short line before it reaches the HTML (where it is escaped again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from data_advisor.llm import untrusted as P

LABEL_SYSTEM = ("You name clusters of prompts from a dataset audit. " + P.UNTRUSTED_NOTE
                + " Answer with one JSON object only.")


class ClusterLabel(BaseModel):
    label: str = Field(min_length=1)


def label_messages(examples: list[str]) -> P.Messages:
    user = (f"{P.data_block('prompts of one cluster', examples[:8])}\n\n"
            "Give a short topic label (2 to 6 words) for what these prompts have in common.\n"
            'Reply with JSON only: {"label": "..."}')
    return [{"role": "system", "content": LABEL_SYSTEM}, {"role": "user", "content": user}]


def llm_labeler(client: Any) -> Callable[[list[str]], str]:
    """A ``labeler(example_texts) -> label`` for :func:`data_advisor.reports.html.render_audit_report`."""

    def label(examples: list[str]) -> str:
        answer = client.complete_json(label_messages(examples), ClusterLabel, temperature=0.0, max_tokens=60)
        return P.clean_line(answer.label)[:60] or "unlabelled"

    return label


def make_labeler(model: str | None, api_base: str | None = None) -> Callable[[list[str]], str] | None:
    """The labeler for ``--label-model`` (None when no model is configured: keyword labels are used)."""
    if not model:
        return None
    from data_advisor import _env
    from data_advisor.llm.client import LLMClient, LLMSettings

    client = LLMClient(LLMSettings(model=model, api_base=api_base, cache_dir=_env.cache_root() / "llm",
                                   max_retries=2, timeout_s=30.0))
    return llm_labeler(client)

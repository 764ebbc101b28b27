"""An LLM that writes example prompts for a taxonomy principle (``taxonomy enrich --model``).

The principle's own text (from the user's taxonomy) is trusted; prompts from the pool are hostile text, so they
reach the model JSON-encoded inside an untrusted-data block, as style references only.  Whatever the model
answers is then gated by :func:`data_advisor.coverage.enrich.enrich_taxonomy` (anchored to that principle, not a
duplicate) before it is proposed, and the user reviews the YAML.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from data_advisor.coverage.enrich import ExampleWriter
from data_advisor.coverage.taxonomy import Principle
from data_advisor.llm.untrusted import UNTRUSTED_NOTE, Messages, data_block

WRITER_SYSTEM = (
    "You help build a safety taxonomy used to classify red-teaming prompts by the harm they ask for. For one "
    "category you write short, realistic example prompts of the kind a user might send that fall squarely in that "
    "category and in no other; they are used only as reference points for a classifier, never answered. "
    + UNTRUSTED_NOTE + " Answer with one JSON object only."
)


class WrittenExamples(BaseModel):
    examples: list[str] = Field(default_factory=list)


def writer_messages(principle: Principle, reference: list[str], n: int) -> Messages:
    """The request for ``n`` examples of one principle, with pool prompts as delimited reference data."""
    category = json.dumps({"id": principle.id, "name": principle.name, "description": principle.description,
                           "existing_examples": list(principle.examples)}, ensure_ascii=True, indent=1)
    ref = (f"{data_block('prompts from the pool that match this category', reference)}\n\n" if reference else "")
    user = (
        f"Category (trusted, from the taxonomy file):\n{category}\n\n{ref}"
        f"Write {n} distinct example prompts for this category: each one sentence or two, each a different "
        "situation or phrasing, none copying the existing examples or the reference prompts.\n"
        'Reply with JSON only: {"examples": ["...", "..."]}'
    )
    return [{"role": "system", "content": WRITER_SYSTEM}, {"role": "user", "content": user}]


def llm_writer(client: Any) -> ExampleWriter:
    """An :data:`~data_advisor.coverage.enrich.ExampleWriter` backed by an :class:`~data_advisor.llm.client.LLMClient`."""

    def write(principle: Principle, reference: list[str], n: int) -> list[str]:
        answer = client.complete_json(writer_messages(principle, reference, n), WrittenExamples, max_tokens=1500)
        return [str(t) for t in answer.examples if isinstance(t, str)][: 2 * n]

    return write


def make_writer(model: str, api_base: str | None = None) -> tuple[ExampleWriter, Any]:
    """The writer for ``--model`` and its client (close it when done)."""
    from data_advisor import _env
    from data_advisor.llm.client import LLMClient, LLMSettings

    client = LLMClient(LLMSettings(model=model, api_base=api_base, cache_dir=_env.cache_root() / "llm"))
    return llm_writer(client), client

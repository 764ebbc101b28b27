"""Weakness ranking and advice: which issue the next round should fill.

Three modes, one contract (``advise(context) -> Advice``):

* ``numeric`` — no LLM: the anchor with the largest deficit against its target.
* ``llm`` (default) — the advisor LLM sees the gap table, clusters and example prompts (as untrusted
  data) and names a concrete sub-issue.  Its choice of anchor is *constrained* to the few most
  under-covered anchors; an answer outside that set (a hijacked or confused model) is overridden by the
  numeric choice and logged as such.
* ``summary`` — the paper's monitor, for ablation: an LLM-maintained list of category names proposes a new
  category; the toolkit maps it to its nearest anchor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from data_advisor.advisor import prompts as P
from data_advisor.advisor.monitor import CoverageMonitor
from data_advisor.errors import LLMError
from data_advisor.llm.untrusted import clean_line

#: The released code's seed summary: ten coarse "harmfulness" categories.
PAPER_SEED_SUMMARY = "\n".join([
    "Medical Harmfulness", "Financial Harmfulness", "Legal Harmfulness", "Technical Harmfulness",
    "Relationship Harmfulness", "Educational Harmfulness", "Emotional Manipulation Harmfulness",
    "Violent Harmfulness", "Drug-related Harmfulness", "Self-harm Harmfulness",
])
MAX_ISSUE_CHARS = 160


@dataclass
class Advice:
    """The issue chosen for a round."""

    issue: str
    anchor_id: str
    rationale: str
    mode: str
    overridden: bool = False
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def clean_issue(text: str) -> str:
    """One short line of plain text: advice text goes into the next prompt, so it is bounded and flattened."""
    return clean_line(text, MAX_ISSUE_CHARS)


def rank_weaknesses(monitor: CoverageMonitor) -> list[tuple[str, int, float, int]]:
    """Anchors from weakest to strongest: (anchor_id, deficit, gap, count), ties broken by id."""
    gaps = monitor.gaps()
    rows = [(k, g.deficit, g.gap, g.count) for k, g in gaps.items()]
    rows.sort(key=lambda r: (-r[1], -r[2], r[0]))
    return rows


def gap_rows(monitor: CoverageMonitor) -> list[dict[str, Any]]:
    """The gap table the advisor LLM reads (numbers only, plus the taxonomy's own names)."""
    out = []
    for anchor_id, deficit, gap, count in rank_weaknesses(monitor):
        p = monitor.taxonomy.by_id(anchor_id)
        out.append({"anchor_id": anchor_id, "name": p.name, "count": count,
                    "target_share": round(monitor.targets[anchor_id], 4), "gap": round(gap, 4), "deficit": deficit})
    return out


class NumericAdvisor:
    """Largest deficit first: deterministic, free, and the fallback of the other modes."""

    mode = "numeric"

    def __init__(self, monitor: CoverageMonitor) -> None:
        self.monitor = monitor

    def advise(self, rng: random.Random) -> Advice:
        ranked = rank_weaknesses(self.monitor)
        top_deficit = ranked[0][1]
        ties = [r for r in ranked if r[1] == top_deficit and r[2] == ranked[0][2]]
        anchor_id = rng.choice(ties)[0] if len(ties) > 1 else ranked[0][0]
        p = self.monitor.taxonomy.by_id(anchor_id)
        gap = next(r[2] for r in ranked if r[0] == anchor_id)
        return Advice(issue=p.name, anchor_id=anchor_id,
                      rationale=f"largest deficit against target (gap {gap:+.3f})", mode=self.mode)

    def observe(self, advice: Advice, kept_texts: list[str]) -> dict[str, Any]:
        return {}


class AdviceAnswer(BaseModel):
    """What the advisor LLM must return."""

    issue: str = Field(min_length=1)
    anchor_id: str
    rationale: str = ""


class LLMAdvisor(NumericAdvisor):
    """The advisor LLM picks a concrete sub-issue among the ``n_candidates`` most under-covered anchors."""

    mode = "llm"

    def __init__(self, monitor: CoverageMonitor, client: Any, *, n_candidates: int = 3, n_examples: int = 3,
                 seed: int = 0) -> None:
        super().__init__(monitor)
        self.client = client
        self.n_candidates = n_candidates
        self.n_examples = n_examples
        self.seed = seed

    def _examples(self, anchor_ids: list[str], rng: random.Random) -> list[str]:
        m = self.monitor
        a = m.assignments()
        out: list[str] = []
        for aid in anchor_ids:
            idx = [i for i in range(len(m)) if a.anchored[i] and a.principle_ids[int(a.best[i])] == aid]
            out.extend(m.texts[i] for i in rng.sample(idx, min(len(idx), self.n_examples)))
        return out

    def advise(self, rng: random.Random) -> Advice:
        numeric = super().advise(rng)
        ranked = rank_weaknesses(self.monitor)
        candidates = [r[0] for r in ranked[: self.n_candidates]]
        over = [r[0] for r in ranked[::-1][:2] if r[3] > 0]
        clusters: list[dict[str, Any]] = []
        messages = P.advisor_messages(gap_rows(self.monitor), candidates, self._examples(over, rng),
                                      self._examples(candidates, rng), clusters)
        try:
            answer = self.client.complete_json(messages, AdviceAnswer, temperature=0.7, max_tokens=300,
                                               seed=rng.randrange(2**31))
        except LLMError as exc:
            if getattr(exc, "kind", "") in ("invalid_json", "empty_answer"):
                return Advice(numeric.issue, numeric.anchor_id, numeric.rationale, self.mode, overridden=True,
                              note=f"advisor answer unusable ({exc.problem[:120]}); numeric choice used")
            raise
        issue = clean_issue(answer.issue)
        if answer.anchor_id not in candidates or not issue:
            return Advice(numeric.issue, numeric.anchor_id, numeric.rationale, self.mode, overridden=True,
                          note=f"advisor chose {clean_issue(answer.anchor_id)[:40]!r}, outside the most under-covered "
                               f"anchors {candidates}; numeric choice used")
        return Advice(issue=issue, anchor_id=answer.anchor_id, rationale=clean_issue(answer.rationale)[:300],
                      mode=self.mode)


class SummaryAdvisor(NumericAdvisor):
    """The paper's text-summary monitor (ablation): no numbers reach the advisor."""

    mode = "summary"

    def __init__(self, monitor: CoverageMonitor, client: Any, summary: str | None = None) -> None:
        super().__init__(monitor)
        self.client = client
        self.summary = summary or PAPER_SEED_SUMMARY

    def advise(self, rng: random.Random) -> Advice:
        res = self.client.complete(P.summary_issue_messages(self.summary), temperature=0.9, max_tokens=32,
                                   seed=rng.randrange(2**31))
        issue = clean_issue((res.text.strip().splitlines() or [""])[0])
        if not issue:
            numeric = super().advise(rng)
            return Advice(numeric.issue, numeric.anchor_id, numeric.rationale, self.mode, overridden=True,
                          note="empty advice; numeric choice used")
        nearest = self.monitor.assign(self.monitor.embed([issue]))
        anchor_id = nearest.nearest_id(0)
        return Advice(issue=issue, anchor_id=anchor_id, rationale="new category proposed from the summary",
                      mode=self.mode)

    def observe(self, advice: Advice, kept_texts: list[str]) -> dict[str, Any]:
        """Update the running summary after the round (greedy, like the released code)."""
        try:
            res = self.client.complete(P.summary_update_messages(self.summary, advice.issue, kept_texts[:12]),
                                       temperature=0.0, max_tokens=2048)
            text = res.text.split("---")[0].strip()
            if text:
                lines = [clean_issue(x) for x in text.splitlines() if clean_issue(x)]
                self.summary = "\n".join(lines[:2000])
        except LLMError as exc:
            if getattr(exc, "kind", "") not in ("invalid_json", "empty_answer"):
                raise
        return {"summary": self.summary}

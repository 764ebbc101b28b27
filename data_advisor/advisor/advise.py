"""Weakness ranking and advice: which issue the next round should fill.

Three modes, one contract (``advise(context) -> Advice``):

* ``numeric`` — no LLM: the anchor with the largest deficit against its target.
* ``llm`` (default) — the advisor LLM sees the gap table, and for each of the few most under-covered anchors
  its fine-grained sub-clusters (sizes and evenness as numbers; keywords and example prompts as untrusted data)
  and the sub-issues already advised in this run with how many kept prompts each produced, and names a concrete
  sub-issue not among them.  Its choice of anchor is *constrained* to those candidates; an answer outside that
  set (a hijacked or confused model) is overridden by the numeric choice and logged as such.

  Repeats: an answer whose issue repeats one already advised in this run (same words after case, punctuation and
  spacing are normalised, or ROUGE-L F ≥ ``REPEAT_ROUGE_L`` on words — "phishing emails posing as banks" vs
  "bank phishing emails") is recorded (``advice_repeats`` in the round record) and the advisor is asked once more
  with the repeated answer named; a second repeat falls back to the numeric choice (``advice_overridden``, with a
  note), so a model stuck on one sub-issue cannot spend the budget on it.
* ``summary`` — the paper's monitor, for ablation: an LLM-maintained list of category names proposes a new
  category; the toolkit maps it to its nearest anchor.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
from pydantic import BaseModel, Field

from data_advisor.advisor import prompts as P
from data_advisor.advisor.monitor import CoverageMonitor
from data_advisor.coverage import metrics as M
from data_advisor.errors import LLMError
from data_advisor.llm.failures import LLMErrorKind
from data_advisor.llm.untrusted import clean_line
from data_advisor.run_records import RoundRecord

if TYPE_CHECKING:
    from data_advisor.llm.client import LLMClient

#: The released code's seed summary: ten coarse "harmfulness" categories.
PAPER_SEED_SUMMARY = "\n".join([
    "Medical Harmfulness", "Financial Harmfulness", "Legal Harmfulness", "Technical Harmfulness",
    "Relationship Harmfulness", "Educational Harmfulness", "Emotional Manipulation Harmfulness",
    "Violent Harmfulness", "Drug-related Harmfulness", "Self-harm Harmfulness",
])
MAX_ISSUE_CHARS = 160
#: ROUGE-L F (on words) at or above which an advised issue repeats an earlier one.
REPEAT_ROUGE_L = 0.8
#: Earlier advised issues shown to the advisor (the most recent ones of the candidate anchors).
MAX_HISTORY = 30
#: Sub-clusters shown per candidate anchor (largest first).
MAX_SUBCLUSTERS_SHOWN = 6
#: LLM failures that mean "this answer is unusable" (not "the provider is failing"): the numeric choice stands in.
_UNUSABLE_ANSWER = frozenset({LLMErrorKind.INVALID_JSON, LLMErrorKind.EMPTY_ANSWER})


@dataclass
class Advice:
    """The issue chosen for a round."""

    issue: str
    anchor_id: str
    rationale: str
    mode: str
    overridden: bool = False
    note: str = ""
    repeats: int = 0  # advisor answers of this round refused as repeats of an earlier advised issue
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdvisedIssue:
    """One sub-issue advised earlier in the run and how many prompts were kept for it (the advisor's memory)."""

    round: int
    anchor_id: str
    issue: str
    kept: int

    def to_prompt(self) -> dict[str, Any]:
        return {"anchor_id": self.anchor_id, "issue": self.issue, "kept_prompts": self.kept}


class IssueAdvisor(Protocol):
    """The advice stage: pick the next round's issue, then hear what the round kept."""

    mode: str

    def advise(self, rng: random.Random) -> Advice: ...

    def observe(self, round_no: int, advice: Advice, kept_texts: list[str]) -> str | None:
        """Learn from the round; returns the text summary to record (summary mode), else None."""
        ...

    def restore(self, rounds: Sequence[RoundRecord]) -> None:
        """Rebuild the memory of a resumed run from its round records."""
        ...


def normalize_issue(text: str) -> list[str]:
    return M.tokenize(" ".join(text.casefold().split()))


def is_repeat(issue: str, history: Sequence[AdvisedIssue]) -> AdvisedIssue | None:
    """The earlier advised issue ``issue`` repeats (see the module docstring), or None."""
    toks = normalize_issue(issue)
    if not toks:
        return None
    for h in history:
        other = normalize_issue(h.issue)
        if toks == other or M.rouge_l_f(toks, other) >= REPEAT_ROUGE_L:
            return h
    return None


def clean_issue(text: str) -> str:
    """One short line of plain text: advice text goes into the next prompt, so it is bounded and flattened."""
    return clean_line(text, MAX_ISSUE_CHARS)


class Weakness(NamedTuple):
    """One anchor's shortfall against its target, as the numeric advisor ranks it."""

    anchor_id: str
    deficit: int  # prompts missing to reach the target share
    gap: float  # target share minus actual share
    count: int  # prompts on the anchor now


def rank_weaknesses(monitor: CoverageMonitor) -> list[Weakness]:
    """Anchors from weakest to strongest (largest deficit, then largest gap), ties broken by id."""
    rows = [Weakness(k, g.deficit, g.gap, g.count) for k, g in monitor.gaps().items()]
    rows.sort(key=lambda r: (-r.deficit, -r.gap, r.anchor_id))
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
        #: Anchors held back this round because the generator stayed off target on them (advisor/stall.py) →
        #: their on-target share; set by the loop before each ``advise``.  Never chosen while held.
        self.held: dict[str, float] = {}

    def ranked(self) -> list[Weakness]:
        """:func:`rank_weaknesses` without the anchors held back (all of them if every anchor is held)."""
        rows = rank_weaknesses(self.monitor)
        return [r for r in rows if r.anchor_id not in self.held] or rows

    def advise(self, rng: random.Random) -> Advice:
        ranked = self.ranked()
        top = ranked[0]
        ties = [r for r in ranked if r.deficit == top.deficit and r.gap == top.gap]
        anchor_id = rng.choice(ties).anchor_id if len(ties) > 1 else top.anchor_id
        p = self.monitor.taxonomy.by_id(anchor_id)
        gap = next(r.gap for r in ranked if r.anchor_id == anchor_id)
        return Advice(issue=p.name, anchor_id=anchor_id,
                      rationale=f"largest deficit against target (gap {gap:+.3f})", mode=self.mode)

    def observe(self, round_no: int, advice: Advice, kept_texts: list[str]) -> str | None:
        return None

    def restore(self, rounds: Sequence[RoundRecord]) -> None:
        return None


class AdviceAnswer(BaseModel):
    """What the advisor LLM must return."""

    issue: str = Field(min_length=1)
    anchor_id: str
    rationale: str = ""


class LLMAdvisor(NumericAdvisor):
    """The advisor LLM picks a concrete sub-issue among the ``n_candidates`` most under-covered anchors."""

    mode = "llm"

    def __init__(self, monitor: CoverageMonitor, client: LLMClient, *, n_candidates: int = 3, n_examples: int = 3,
                 seed: int = 0) -> None:
        super().__init__(monitor)
        self.client = client
        self.n_candidates = n_candidates
        self.n_examples = n_examples
        self.seed = seed
        self.history: list[AdvisedIssue] = []

    def _examples(self, anchor_ids: list[str], rng: random.Random) -> list[str]:
        m = self.monitor
        a = m.assignments()
        out: list[str] = []
        for aid in anchor_ids:
            j = m.principle_ids.index(aid)
            idx = np.where(a.anchored & (a.best == j))[0].tolist()
            out.extend(m.texts[i] for i in rng.sample(idx, min(len(idx), self.n_examples)))
        return out

    def _clusters(self, candidates: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Per candidate anchor: its sub-clusters as trusted numbers, and their keywords/examples as data."""
        numbers: list[dict[str, Any]] = []
        texts: list[dict[str, Any]] = []
        for aid in candidates:
            subs = self.monitor.subclusters(aid) if len(self.monitor) >= 3 else []
            ev = M.subcluster_evenness([s.size for s in subs])
            numbers.append({"anchor_id": aid, "n_subclusters": len(subs),
                            "evenness": None if ev is None else round(ev, 3),
                            "subclusters": [{"cluster": s.cluster_id, "size": s.size}
                                            for s in subs[:MAX_SUBCLUSTERS_SHOWN]]})
            texts += [{"anchor_id": aid, "cluster": s.cluster_id, "keywords": s.keywords,
                       "examples": [e["text"] for e in s.examples]} for s in subs[:MAX_SUBCLUSTERS_SHOWN]]
        return numbers, texts

    def _ask(self, messages: P.Messages, rng: random.Random) -> AdviceAnswer | str:
        """The answer, or why it is unusable (a string) when the model returned no valid JSON."""
        try:
            return self.client.complete_json(messages, AdviceAnswer, temperature=0.7, max_tokens=300,
                                             seed=rng.randrange(2**31))
        except LLMError as exc:
            if getattr(exc, "kind", "") in _UNUSABLE_ANSWER:
                return f"advisor answer unusable ({exc.problem[:120]}); numeric choice used"
            raise

    def advise(self, rng: random.Random) -> Advice:
        numeric = super().advise(rng)
        ranked = self.ranked()
        candidates = [r.anchor_id for r in ranked[: self.n_candidates]]
        over = [r.anchor_id for r in ranked[::-1][:2] if r.count > 0]
        numbers, cluster_texts = self._clusters(candidates)
        history = [h.to_prompt() for h in self.history if h.anchor_id in candidates][-MAX_HISTORY:]
        over_ex, under_ex = self._examples(over, rng), self._examples(candidates, rng)

        def fallback(note: str, repeats: int = 0) -> Advice:
            return Advice(numeric.issue, numeric.anchor_id, numeric.rationale, self.mode, overridden=True, note=note,
                          repeats=repeats)

        repeated: list[str] = []
        while True:
            messages = P.advisor_messages(gap_rows(self.monitor), candidates, over_ex, under_ex, numbers,
                                          history, cluster_texts, repeated, held=self.held)
            answer = self._ask(messages, rng)
            if isinstance(answer, str):
                return fallback(answer, len(repeated))
            issue = clean_issue(answer.issue)
            if answer.anchor_id not in candidates or not issue:
                return fallback(f"advisor chose {clean_issue(answer.anchor_id)[:40]!r}, outside the most under-covered "
                                f"anchors {candidates}; numeric choice used", len(repeated))
            earlier = is_repeat(issue, self.history)
            if earlier is None:
                note = f"re-asked after repeating {repeated[0]!r}" if repeated else ""
                return Advice(issue=issue, anchor_id=answer.anchor_id, rationale=clean_issue(answer.rationale)[:300],
                              mode=self.mode, note=note, repeats=len(repeated))
            repeated.append(issue)
            if len(repeated) > 1:
                return fallback(f"advisor repeated already-advised sub-issues {repeated} (first advised in round "
                                f"{earlier.round}); numeric choice used", len(repeated))

    def observe(self, round_no: int, advice: Advice, kept_texts: list[str]) -> str | None:
        self.history.append(AdvisedIssue(round_no, advice.anchor_id, advice.issue, len(kept_texts)))
        return None

    def restore(self, rounds: Sequence[RoundRecord]) -> None:
        self.history = [AdvisedIssue(r.round, r.anchor_id, r.issue, r.kept) for r in rounds
                        if r.issue and r.anchor_id and not r.recovered]


class SummaryAdvisor(NumericAdvisor):
    """The paper's text-summary monitor (ablation): no numbers reach the advisor."""

    mode = "summary"

    def __init__(self, monitor: CoverageMonitor, client: LLMClient, summary: str | None = None) -> None:
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
        if anchor_id in self.held:
            numeric = super().advise(rng)
            return Advice(numeric.issue, numeric.anchor_id, numeric.rationale, self.mode, overridden=True,
                          note=f"proposed category maps to {anchor_id}, held back (generator off target); numeric "
                               "choice used")
        return Advice(issue=issue, anchor_id=anchor_id, rationale="new category proposed from the summary",
                      mode=self.mode)

    def observe(self, round_no: int, advice: Advice, kept_texts: list[str]) -> str | None:
        """Update the running summary after the round (greedy, like the released code)."""
        try:
            res = self.client.complete(P.summary_update_messages(self.summary, advice.issue, kept_texts[:12]),
                                       temperature=0.0, max_tokens=2048)
            text = res.text.split("---")[0].strip()
            if text:
                lines = [clean_issue(x) for x in text.splitlines() if clean_issue(x)]
                self.summary = "\n".join(lines[:2000])
        except LLMError as exc:
            if getattr(exc, "kind", "") not in _UNUSABLE_ANSWER:
                raise
        return self.summary

    def restore(self, rounds: Sequence[RoundRecord]) -> None:
        for r in reversed(rounds):
            if r.summary:
                self.summary = r.summary
                return

"""Generate stage: where a round's candidate prompts come from.

* :class:`AdvisedGenerator` — the generator LLM writes k prompts for the advised issue, with in-context
  examples drawn from the pool (prompts of the advised anchor first, then the taxonomy's own examples).
* :class:`SelfInstructGenerator` — canonical Self-Instruct (8 examples: 6 seeds + 2 generated, numbered list).
* :class:`SelfInstructPaperGenerator` — Self-Instruct as run by the Data Advisor authors (5 examples, one
  question per call, first line).
* :class:`PoolRetriever` — offline curation: the best unused candidates of a pool for the advised issue
  (near the issue, far from what is already chosen: maximal marginal relevance), or random ones.

All four implement :class:`CandidateSource`: ``propose(advice, k, rng, context) -> Candidates``, where the
:class:`RoundContext` carries what a source may read (the in-context example pool and the coverage monitor).
The loop holds one source and never asks which kind it is.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import BaseModel

from data_advisor.advisor import prompts as P
from data_advisor.advisor.advise import Advice
from data_advisor.advisor.monitor import CoverageMonitor
from data_advisor.coverage.taxonomy import Taxonomy
from data_advisor.errors import LLMError
from data_advisor.llm.failures import BAD_OUTPUT_KINDS, FATAL_KINDS, LLMErrorKind

if TYPE_CHECKING:
    from data_advisor.llm.client import LLMClient


@dataclass
class Candidates:
    """One round's raw candidates and what producing them cost."""

    texts: list[str] = field(default_factory=list)
    #: Per text, the id of the pool prompt it is (pool sources only; ``None`` for generated text).
    source_ids: list[str | None] = field(default_factory=list)
    n_calls: int = 0
    problems: Counter[str] = field(default_factory=Counter)

    def add(self, text: str, source_id: str | None = None) -> None:
        """One candidate (``source_id``: the pool prompt it is, ``None`` for generated text); keeps both lists aligned."""
        self.texts.append(text)
        self.source_ids.append(source_id)


def _collect_errors(results: Sequence[Any], out: Candidates) -> list[Any]:
    """Split results into usable answers and counted problems; raise on fatal or all-transient failure."""
    good = []
    transient: list[LLMError] = []
    for r in results:
        if isinstance(r, LLMError):
            kind = getattr(r, "kind", LLMErrorKind.UNEXPECTED)  # FATAL_KINDS / BAD_OUTPUT_KINDS: one set, llm.failures
            if kind in FATAL_KINDS:
                raise r
            if kind in BAD_OUTPUT_KINDS:
                out.problems["bad_output"] += 1
            else:
                out.problems[kind] += 1
                transient.append(r)
        else:
            good.append(r)
    if results and len(transient) == len(results):
        first = transient[0]
        check = first.fix if getattr(first, "kind", "") == LLMErrorKind.CONTEXT_WINDOW else "check the provider"
        raise LLMError(f"every LLM call of the round failed: {first.problem}",
                       f"{check}, then re-run the same command: the run resumes where it stopped")
    return good


def call_each(fn: Any, batch: Sequence[Any], rng: random.Random, **params: Any) -> list[Any]:
    """Run ``fn(messages, seed=…, **params)`` for every request in parallel, each with its own seed.

    Per-call seeds matter: two identical requests with one seed would share a response-cache entry and
    return the same text.  Errors come back in place as :class:`LLMError`; the client caps concurrency.
    """
    seeds = [rng.randrange(2**31) for _ in batch]

    def one(messages: Any, seed: int) -> Any:
        try:
            return fn(messages, seed=seed, **params)
        except LLMError as exc:
            return exc

    if len(batch) == 1:
        return [one(batch[0], seeds[0])]
    with ThreadPoolExecutor(max_workers=min(16, len(batch))) as ex:
        return list(ex.map(one, batch, seeds))


@dataclass
class RoundContext:
    """What a candidate source may read in a round: the example pool (texts and the anchor of each) and coverage."""

    pool: Sequence[str]
    pool_anchor: Sequence[str | None]
    monitor: CoverageMonitor


class CandidateSource(Protocol):
    """Where a round's candidate prompts come from (a generator LLM, a Self-Instruct variant, or a pool)."""

    def propose(self, advice: Advice | None, k: int, rng: random.Random, context: RoundContext) -> Candidates:
        """At most ``k`` raw candidates for ``advice`` (None for methods without advice), and what they cost."""
        ...


class GeneratedPrompts(BaseModel):
    prompts: list[str]


@dataclass(eq=False)
class AdvisedGenerator:
    """k prompts for the advised issue, in ``ceil(k / per_call)`` parallel calls."""

    client: LLMClient
    taxonomy: Taxonomy
    _: KW_ONLY
    per_call: int = 4
    n_examples: int = 3
    temperature: float = 0.9

    def examples(self, advice: Advice, pool: Sequence[str], pool_anchor: Sequence[str | None],
                 rng: random.Random) -> list[str]:
        same = [t for t, a in zip(pool, pool_anchor, strict=True) if a == advice.anchor_id]
        picks = rng.sample(same, min(len(same), self.n_examples))
        if len(picks) < self.n_examples:
            own = list(self.taxonomy.by_id(advice.anchor_id).examples)
            picks += rng.sample(own, min(len(own), self.n_examples - len(picks)))
        if len(picks) < self.n_examples and pool:
            rest = [t for t in pool if t not in picks]
            picks += rng.sample(rest, min(len(rest), self.n_examples - len(picks)))
        return picks

    def propose(self, advice: Advice | None, k: int, rng: random.Random, context: RoundContext) -> Candidates:
        out = Candidates()
        if advice is None:
            raise ValueError("the advised generator needs advice")  # the method table pairs it with an advisor
        pool, pool_anchor = context.pool, context.pool_anchor
        p = self.taxonomy.by_id(advice.anchor_id)
        n_calls = max(1, math.ceil(k / self.per_call))
        sizes = [self.per_call] * (n_calls - 1) + [k - self.per_call * (n_calls - 1)]  # exactly k in all
        batch = [P.generation_messages(advice.issue, p.name, p.description,
                                       self.examples(advice, pool, pool_anchor, rng), size)
                 for size in sizes]
        results = call_each(self.client.complete_json, batch, rng, schema=GeneratedPrompts,
                            temperature=self.temperature, max_tokens=1024)
        out.n_calls = n_calls
        _collect_errors(results, out)  # counts problems; raises on fatal or all-failed
        for r, size in zip(results, sizes, strict=True):
            if isinstance(r, LLMError):
                continue
            for t in r.prompts[:size]:  # a model that over-delivers does not exceed the round's budget
                if isinstance(t, str):
                    out.add(t)
        return out


_ITEM = re.compile(r"^\s*(\d{1,2})\s*[.)]\s*(.+)$")


def parse_numbered(text: str, first_number: int) -> list[str]:
    """Items of a numbered list continuing from ``first_number`` (Self-Instruct's output format).

    The answer starts right after the prompt's trailing "9.", so its first line is item 9 without a number.
    """
    items: list[str] = []
    lines = text.strip().splitlines()
    if lines and not _ITEM.match(lines[0]):
        items.append(lines[0].strip())
        lines = lines[1:]
    for line in lines:
        m = _ITEM.match(line)
        if m:
            if int(m.group(1)) >= first_number + 7:  # Self-Instruct stops at item 16
                break
            items.append(m.group(2).strip())
        elif not line.strip():
            if items:
                break
        elif items:
            items[-1] += " " + line.strip()
    return items


@dataclass(eq=False)
class SelfInstructGenerator:
    """Canonical Self-Instruct: 8 in-context tasks (6 seed + 2 machine), the model continues the list."""

    client: LLMClient
    seeds: Sequence[str]
    _: KW_ONLY
    n_seed: int = 6
    n_machine: int = 2
    temperature: float = 0.7

    def __post_init__(self) -> None:
        self.seeds = list(self.seeds)  # sampled from by position each call

    def propose(self, advice: Advice | None, k: int, rng: random.Random, context: RoundContext) -> Candidates:
        out = Candidates()
        seeds = set(self.seeds)
        machine = [t for t in context.pool if t not in seeds]
        n_calls = max(1, math.ceil(k / 7))
        batch = []
        for _ in range(n_calls):
            m = rng.sample(machine, min(len(machine), self.n_machine))
            s = rng.sample(self.seeds, min(len(self.seeds), self.n_seed + self.n_machine - len(m)))
            ex = s + m
            rng.shuffle(ex)
            batch.append(P.self_instruct_messages(ex))
        results = call_each(self.client.complete, batch, rng, temperature=self.temperature, max_tokens=1024,
                            stop=["\n\n", "16."])
        out.n_calls = n_calls
        for r in _collect_errors(results, out):
            for t in parse_numbered(r.text, 9):
                out.add(t)
        return out


@dataclass(eq=False)
class SelfInstructPaperGenerator:
    """The Data Advisor authors' baseline: 5 examples sampled from the pool, one question per call."""

    client: LLMClient
    _: KW_ONLY
    n_examples: int = 5
    temperature: float = 0.9

    def propose(self, advice: Advice | None, k: int, rng: random.Random, context: RoundContext) -> Candidates:
        out = Candidates()
        pool = list(context.pool)
        batch = [P.self_instruct_paper_messages(rng.sample(pool, min(len(pool), self.n_examples)))
                 for _ in range(k)]
        results = call_each(self.client.complete, batch, rng, temperature=self.temperature, max_tokens=256)
        out.n_calls = k
        for r in _collect_errors(results, out):
            line = (r.text.strip().splitlines() or [""])[0].strip().strip('"')
            if line.startswith("["):  # the released code's list-literal hack
                line = line.strip("[]").split("',")[0].strip("'\" ")
            out.add(line)
        return out


class PoolRetriever:
    """Offline "generation": pick unused pool prompts for the advised anchor by maximal marginal relevance."""

    def __init__(self, texts: Sequence[str], ids: Sequence[str], vectors: np.ndarray, scores: np.ndarray,
                 nearest: Sequence[str], anchored: np.ndarray, principle_ids: Sequence[str], *,
                 strategy: str = "mmr", relevance_weight: float = 0.7, shortlist: int = 400) -> None:
        self.texts = list(texts)
        self.ids = list(ids)
        self.vectors = vectors
        self.scores = scores  # (n, K) principle scores
        self.nearest = list(nearest)
        self.anchored = anchored
        self.col = {pid: j for j, pid in enumerate(principle_ids)}
        self.strategy = strategy
        self.relevance_weight = relevance_weight
        self.shortlist = shortlist
        self.used: set[int] = set()

    def mark_used(self, source_ids: Sequence[str]) -> None:
        pos = {sid: i for i, sid in enumerate(self.ids)}
        self.used.update(pos[s] for s in source_ids if s in pos)

    @property
    def remaining(self) -> int:
        return len(self.texts) - len(self.used)

    def propose(self, advice: Advice | None, k: int, rng: random.Random, context: RoundContext) -> Candidates:
        out = Candidates()
        monitor = context.monitor
        free = np.array([i for i in range(len(self.texts)) if i not in self.used], dtype=np.int64)
        if not len(free):
            return out
        if self.strategy == "random" or advice is None:
            picks = rng.sample(free.tolist(), min(k, len(free)))
        else:
            j = self.col[advice.anchor_id]
            on = free[[self.anchored[i] and self.nearest[i] == advice.anchor_id for i in free]]
            cand = on if len(on) else free
            rel = self.scores[cand, j]
            cand = cand[np.argsort(-rel, kind="stable")[: self.shortlist]]
            picks = self._mmr(cand, j, k, monitor)
        for i in picks:
            self.used.add(int(i))
            out.add(self.texts[i], str(self.ids[i]))
        return out

    def _mmr(self, cand: np.ndarray, j: int, k: int, monitor: CoverageMonitor) -> list[int]:
        """Greedy MMR: relevance to the anchor minus similarity to what is kept or already picked."""
        vecs = self.vectors[cand]
        sims, _ = monitor.nearest(vecs, k=1)
        redundancy = np.maximum(sims[:, 0], 0.0) if monitor.texts else np.zeros(len(cand), dtype=np.float32)
        rel = self.scores[cand, j]
        lam = self.relevance_weight
        picks: list[int] = []
        taken = np.zeros(len(cand), dtype=bool)
        for _ in range(min(k, len(cand))):
            score = np.where(taken, -np.inf, lam * rel - (1 - lam) * redundancy)
            best = int(np.argmax(score))
            taken[best] = True
            picks.append(int(cand[best]))
            redundancy = np.maximum(redundancy, vecs @ vecs[best])
        return picks

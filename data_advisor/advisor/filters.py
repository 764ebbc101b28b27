"""Filter stage: which candidate prompts a round keeps.

Checks, cheapest first: clean-up (numbering, quotes, whitespace), length, exact duplicate (against all kept
prompts and the batch), near duplicate by cosine (FAISS over everything kept), ROUGE-L against the most
similar kept prompts (Self-Instruct's novelty test, computed on the 20 nearest by cosine instead of all N, so
the cost stays flat as the set grows), and the on-target check (nearest anchor = advised anchor), recorded as
adherence and optionally enforced.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from data_advisor.advisor.monitor import CoverageMonitor
from data_advisor.coverage import metrics as M

#: Generator answers that are refusals, not prompts (kept out of generated sets, never out of curated pools).
_REFUSAL = re.compile(
    r"^(i'?m sorry|i am sorry|sorry[,.!]|i apologi[sz]e|i can(not|'t|’t)\s+(help|assist|comply|provide|create|"
    r"write|generate|fulfil)|i (won'?t|will not) (help|assist|provide|create|write|generate)|as an ai\b|"
    r"i'?m (not able|unable) to)", re.IGNORECASE)
_NUMBERING = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*•]|prompt\s*\d*:|question\s*\d*:)\s*", re.IGNORECASE)
#: Self-Instruct's blacklist: tasks a text-only model cannot do.
SI_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
                "draw", "plot", "go to")


def clean_candidate(text: str) -> str:
    """Strip list numbering, bullets, wrapping quotes and extra whitespace from one generated prompt."""
    t = " ".join(str(text).split())
    t = _NUMBERING.sub("", t)
    for _ in range(2):
        if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'`":
            t = t[1:-1].strip()
    return t


@dataclass(frozen=True)
class FilterConfig:
    """Which checks run, and their thresholds (each method's preset is a row of ``advisor.config.METHOD_TABLE``)."""

    min_chars: int = 20
    max_chars: int = 2000
    min_words: int = 0
    max_words: int = 10_000
    exact_dedup: bool = True
    near_dup_cosine: float | None = 0.92
    rouge_l_max: float | None = 0.7
    blacklist: tuple[str, ...] = ()
    on_target: str = "keep"  # "keep" (record adherence only) or "reject"
    reject_refusals: bool = True


@dataclass
class FilterResult:
    """Kept candidates (texts, vectors, metadata index) and the reasons others were rejected."""

    texts: list[str] = field(default_factory=list)
    vectors: np.ndarray | None = None
    source_index: list[int] = field(default_factory=list)
    nearest_anchor: list[str] = field(default_factory=list)
    on_target: list[bool] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)


def filter_candidates(candidates: Sequence[str], monitor: CoverageMonitor, config: FilterConfig,
                      advised_anchor: str | None = None, references: Sequence[str] = ()) -> FilterResult:
    """Apply every check to one round's candidates, in order; nothing here mutates the monitor.

    ``references`` are texts a candidate must also be novel against without being part of the data — the
    seed tasks, for Self-Instruct, whose task pool includes them.
    """
    res = FilterResult()
    staged: list[tuple[int, str]] = []
    batch_norm: set[str] = {M.normalize_for_dedup(r) for r in references}
    ref_tokens = [M.tokenize(r) for r in references] if config.rouge_l_max is not None else []
    for i, raw in enumerate(candidates):
        t = clean_candidate(raw)
        words = len(t.split())
        if not t or len(t) < config.min_chars or words < config.min_words:
            res.rejected["too_short"] += 1
            continue
        if len(t) > config.max_chars or words > config.max_words:
            res.rejected["too_long"] += 1
            continue
        low = t.lower()
        if config.reject_refusals and _REFUSAL.match(t):
            res.rejected["refusal"] += 1
            continue
        if config.blacklist and any(re.search(rf"\b{re.escape(w)}\b", low) for w in config.blacklist):
            res.rejected["blacklisted"] += 1
            continue
        if config.exact_dedup:
            norm = M.normalize_for_dedup(t)
            if monitor.contains_exact(t) or norm in batch_norm:
                res.rejected["exact_duplicate"] += 1
                continue
            batch_norm.add(norm)
        staged.append((i, t))
    if not staged:
        res.vectors = np.zeros((0, monitor.anchors.vectors.shape[1]), dtype=np.float32)
        return res
    vecs = monitor.embed([t for _, t in staged])
    sims, nbrs = monitor.nearest(vecs, k=20)
    assigned = monitor.assign(vecs)
    kept_vecs: list[np.ndarray] = []
    kept_tokens: list[list[str]] = []
    for j, (i, t) in enumerate(staged):
        v = vecs[j]
        if config.near_dup_cosine is not None:
            batch_max = max((float(v @ kv) for kv in kept_vecs), default=-1.0)
            if float(sims[j, 0]) >= config.near_dup_cosine or batch_max >= config.near_dup_cosine:
                res.rejected["near_duplicate"] += 1
                continue
        if config.rouge_l_max is not None:
            toks = M.tokenize(t)
            others = [M.tokenize(monitor.texts[int(n)]) for n in nbrs[j] if n >= 0] + kept_tokens + ref_tokens
            if any(M.rouge_l_f(toks, o) >= config.rouge_l_max for o in others):
                res.rejected["rouge_l_duplicate"] += 1
                continue
        nearest = assigned.nearest_id(j)
        hit = advised_anchor is None or (bool(assigned.anchored[j]) and nearest == advised_anchor)
        if advised_anchor is not None and config.on_target == "reject" and not hit:
            res.rejected["off_target"] += 1
            continue
        res.texts.append(t)
        res.source_index.append(i)
        res.nearest_anchor.append(nearest)
        res.on_target.append(hit)
        kept_vecs.append(v)
        if config.rouge_l_max is not None:
            kept_tokens.append(M.tokenize(t))
    res.vectors = np.asarray(kept_vecs, dtype=np.float32).reshape(len(kept_vecs), vecs.shape[1])
    return res

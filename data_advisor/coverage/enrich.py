"""Taxonomy bootstrap: propose example prompts for each principle, mined from a prompt pool (or written by an LLM).

A principle described by one sentence is matched against that sentence only; written examples give it more
vectors to be recognised by (see :mod:`data_advisor.coverage.assign`).  ``taxonomy enrich`` proposes them:

1. **Confident.**  The pool is assigned exactly as the audit assigns (:func:`~data_advisor.coverage.audit.run_audit`
   without discovery, so the same anchored / harm decision applies); a prompt is a candidate for its principle only
   when it is anchored, its margin over the runner-up principle is at least ``min_margin`` and its score is among
   the principle's ``candidates`` best.
2. **Diverse.**  Maximal marginal relevance over the candidates: each pick maximises
   ``λ·score − (1 − λ)·max cosine to what the principle already has`` (its definition, its examples, earlier picks),
   so five examples cover five phrasings rather than one phrasing five times.
3. **De-duplicated.**  Exact duplicates (after case/space normalisation) and near-duplicates (cosine ≥
   ``near_duplicate``) of an existing example or an earlier pick are skipped.

With an LLM (``--model``), the model writes the examples instead; the principle's confident pool prompts reach it
only as delimited untrusted data, and every written example must pass the same gate as a mined one (anchored,
assigned to that principle, not a duplicate) before it is proposed.

The output is the input taxonomy re-emitted as YAML with the proposed examples appended, each preceded by a
``# proposed`` comment (review before use); it is parsed back with the loader and compared to what was meant to
be written before the file is moved into place.

The knobs below were fixed before any measurement and are not tuned on data; ``benchmarks/enrich.py`` measures
what mined examples do, leave-one-dataset-out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from data_advisor.coverage.assign import AnchorAssigner, AnchorSet, Assignments
from data_advisor.coverage.embedding.base import Embedder
from data_advisor.coverage.metrics import normalize_for_dedup
from data_advisor.coverage.taxonomy import Principle, Taxonomy, parse_taxonomy
from data_advisor.data import PromptSet
from data_advisor.errors import DataAdvisorError, InputError

#: Writes ``n`` example prompts for a principle, given confident pool prompts as reference (may be empty).
ExampleWriter = Callable[[Principle, list[str], int], list[str]]


@dataclass(frozen=True)
class EnrichSettings:
    """How examples are chosen (fixed a priori; see the module docstring)."""

    per_principle: int = 5
    min_margin: float = 0.05  # best − runner-up principle score
    #: best harm score − best benign background score: an example must be clearly on the harmful side, not merely
    #: anchored (anchored needs ≥ 0 by default), so benign pool prompts are not proposed as examples of a harm
    min_relevance: float = 0.05
    candidates: int = 25  # most confident prompts per principle considered for the diverse pick
    mmr_lambda: float = 0.7  # weight of confidence vs. novelty: confidence first, then spread
    near_duplicate: float = 0.90  # cosine at or above which two prompts count as the same example
    max_chars: int = 1000  # longer prompts make poor examples (and bloat the YAML)
    llm_context: int = 8  # confident pool prompts shown to the LLM per principle

    def __post_init__(self) -> None:
        if not 1 <= self.per_principle <= 100:
            raise InputError(f"--per-principle must be between 1 and 100 (got {self.per_principle})",
                             "pass a small number such as 5")


@dataclass(frozen=True)
class ProposedExample:
    """One proposed example and why it was chosen."""

    principle_id: str
    text: str
    score: float  # cosine to the principle (max over its anchor vectors)
    margin: float  # score − runner-up principle score
    origin: str  # "mined" or "llm"


@dataclass
class EnrichResult:
    """The enriched taxonomy, what was proposed per leaf, and why some leaves got fewer."""

    taxonomy: Taxonomy
    proposed: dict[str, list[ProposedExample]]
    notes: list[str] = field(default_factory=list)
    n_pool: int = 0
    n_confident: int = 0


# ------------------------------------------------------------------------------------------------ selection
def select_diverse(vectors: np.ndarray, scores: np.ndarray, texts: Sequence[str], k: int, *,
                   existing_vectors: np.ndarray, existing_texts: Sequence[str], mmr_lambda: float,
                   near_duplicate: float) -> list[int]:
    """Indices (into ``vectors``) of up to ``k`` picks by maximal marginal relevance, skipping exact and near
    duplicates of each other and of ``existing_*``.  Deterministic: ties go to the lower index."""
    seen = {normalize_for_dedup(t) for t in existing_texts}
    have = [np.asarray(v, dtype=np.float32) for v in existing_vectors]
    max_sim = (np.max(vectors @ np.stack(have).T, axis=1) if have and len(vectors)
               else np.full(len(vectors), -1.0, dtype=np.float32))
    alive = np.ones(len(vectors), dtype=bool)
    picks: list[int] = []
    while len(picks) < k:
        alive &= max_sim < near_duplicate
        if not alive.any():
            break
        value = mmr_lambda * scores - (1.0 - mmr_lambda) * np.maximum(max_sim, 0.0)
        value = np.where(alive, value, -np.inf)
        i = int(np.argmax(value))
        alive[i] = False
        key = normalize_for_dedup(texts[i])
        if key in seen:
            continue
        seen.add(key)
        picks.append(i)
        max_sim = np.maximum(max_sim, vectors @ vectors[i])
    return picks


def confident_mask(texts: Sequence[str], *, margin: np.ndarray, anchored: np.ndarray, relevance: np.ndarray,
                   settings: EnrichSettings) -> np.ndarray:
    """Prompts confident enough to serve as examples: anchored, clear of the runner-up principle, clearly harmful
    rather than benign, and not over-long."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return (anchored & (margin >= settings.min_margin) & (relevance >= settings.min_relevance)
            & (lengths <= settings.max_chars))


def mine_examples(taxonomy: Taxonomy, texts: Sequence[str], vectors: np.ndarray, *, best: np.ndarray,
                  score: np.ndarray, confident: np.ndarray, margin: np.ndarray, principle_ids: Sequence[str],
                  anchor_vectors: dict[str, np.ndarray], settings: EnrichSettings) -> dict[str, list[ProposedExample]]:
    """Per leaf: confident, diverse, de-duplicated pool prompts (pure: arrays in, proposals out).

    ``best``/``score``/``margin`` are the pool's assignment and ``confident`` the :func:`confident_mask` (parallel to
    ``texts``); ``anchor_vectors`` holds each leaf's current anchor vectors (definition and examples), used for
    diversity and de-duplication.
    """
    ok = confident
    out: dict[str, list[ProposedExample]] = {}
    for j, pid in enumerate(principle_ids):
        idx = np.where(ok & (best == j))[0]
        idx = idx[np.argsort(-score[idx], kind="stable")][: settings.candidates]
        leaf = taxonomy.by_id(pid)
        picks = select_diverse(vectors[idx], score[idx], [texts[i] for i in idx], settings.per_principle,
                               existing_vectors=anchor_vectors.get(pid, np.zeros((0, vectors.shape[1]), np.float32)),
                               existing_texts=list(leaf.examples), mmr_lambda=settings.mmr_lambda,
                               near_duplicate=settings.near_duplicate)
        out[pid] = [ProposedExample(pid, texts[int(idx[p])].strip(), float(score[idx[p]]), float(margin[idx[p]]),
                                    "mined") for p in picks]
    return out


def mine_from_assignments(taxonomy: Taxonomy, texts: Sequence[str], vectors: np.ndarray, assignments: Assignments,
                          anchors: AnchorSet, settings: EnrichSettings) -> dict[str, list[ProposedExample]]:
    """:func:`mine_examples` on a pool already assigned by the audit (one assignment serves several settings)."""
    a = assignments
    confident = confident_mask(texts, margin=a.margin, anchored=a.anchored, relevance=a.relevance, settings=settings)
    anchor_vectors = {pid: anchors.vectors[anchors.owner == j] for j, pid in enumerate(anchors.principle_ids)}
    return mine_examples(taxonomy, texts, vectors, best=a.best, score=a.score, confident=confident, margin=a.margin,
                         principle_ids=list(anchors.principle_ids), anchor_vectors=anchor_vectors, settings=settings)


def confident_pool(texts: Sequence[str], *, best: np.ndarray, score: np.ndarray, confident: np.ndarray, j: int,
                   settings: EnrichSettings) -> list[str]:
    """The principle's most confident pool prompts (reference data for an LLM writer)."""
    idx = np.where(confident & (best == j))[0]
    idx = idx[np.argsort(-score[idx], kind="stable")]
    return [texts[i] for i in idx][: settings.llm_context]


# ------------------------------------------------------------------------------------------------ driver
def enrich_taxonomy(taxonomy: Taxonomy, embedder: Embedder, *, pool: PromptSet | None = None,
                    settings: EnrichSettings | None = None, writer: ExampleWriter | None = None,
                    seed: int = 0, anchors: AnchorSet | None = None,
                    assigner: AnchorAssigner | None = None) -> EnrichResult:
    """Propose examples for every leaf of ``taxonomy``: mined from ``pool``, or written by ``writer`` (an LLM)
    with the pool's confident prompts as reference.  Nothing is written to disk here.

    ``anchors`` / ``assigner`` default to what the audit builds (benchmarks pass their own to hold data out)."""
    from data_advisor.coverage.assign import build_anchors
    from data_advisor.coverage.audit import AuditSettings, run_audit
    from data_advisor.coverage.taxonomy import load_background

    settings = settings or EnrichSettings()
    if pool is None and writer is None:
        raise InputError("nothing to propose examples from", "pass --from POOL (prompts to mine), --model, or both")
    anchors = anchors if anchors is not None else build_anchors(taxonomy, embedder, load_background())
    leaf_ids = list(anchors.principle_ids)
    anchor_vectors = {pid: anchors.vectors[anchors.owner == j] for j, pid in enumerate(leaf_ids)}
    notes: list[str] = []
    proposed: dict[str, list[ProposedExample]] = {pid: [] for pid in leaf_ids}
    n_pool = n_conf = 0
    texts: list[str] = []
    best = score = np.zeros(0)
    confident = np.zeros(0, dtype=bool)
    if pool is not None:
        audit = run_audit(pool, taxonomy, embedder, anchors=anchors, assigner=assigner,
                          settings=AuditSettings(taxonomy=taxonomy.id, seed=seed, cluster=False))
        a = audit.assignments
        texts = list(pool.texts)
        best, score = a.best, a.score
        confident = confident_mask(texts, margin=a.margin, anchored=a.anchored, relevance=a.relevance,
                                   settings=settings)
        n_pool = len(texts)
        n_conf = int(confident.sum())
        if writer is None:
            proposed = mine_from_assignments(taxonomy, texts, audit.vectors, a, anchors, settings)
    if writer is not None:
        gate_assigner = (assigner or AnchorAssigner()).fit(anchors)
        for j, pid in enumerate(leaf_ids):
            context = (confident_pool(texts, best=best, score=score, confident=confident, j=j, settings=settings)
                       if pool is not None else [])
            written = [" ".join(t.split()) for t in writer(taxonomy.by_id(pid), context, settings.per_principle)]
            written = [t for t in written if t and len(t) <= settings.max_chars]
            if not written:
                notes.append(f"{pid}: the LLM wrote no usable example")
                continue
            wv = embedder.encode(written)
            wa = gate_assigner.assign(wv)
            gate = confident_mask(written, margin=wa.margin, anchored=wa.anchored, relevance=wa.relevance,
                                  settings=settings) & (wa.best == j)
            keep = np.where(gate)[0]
            if len(keep) < len(written):
                notes.append(f"{pid}: {len(written) - len(keep)} of {len(written)} LLM-written examples rejected "
                             "(not anchored to this principle)")
            picks = select_diverse(wv[keep], wa.score[keep], [written[i] for i in keep], settings.per_principle,
                                   existing_vectors=anchor_vectors[pid], existing_texts=list(taxonomy.by_id(pid).examples),
                                   mmr_lambda=settings.mmr_lambda, near_duplicate=settings.near_duplicate)
            proposed[pid] = [ProposedExample(pid, written[int(keep[p])], float(wa.score[keep[p]]),
                                             float(wa.margin[keep[p]]), "llm") for p in picks]
    for pid in leaf_ids:
        got = len(proposed[pid])
        if got < settings.per_principle:
            notes.append(f"{pid}: {got} of {settings.per_principle} examples proposed (too few confident, distinct "
                         "prompts for it)")
    return EnrichResult(taxonomy=with_examples(taxonomy, proposed), proposed=proposed, notes=notes,
                        n_pool=n_pool, n_confident=n_conf)


def with_examples(taxonomy: Taxonomy, proposed: dict[str, list[ProposedExample]]) -> Taxonomy:
    """The taxonomy with each leaf's proposed examples appended (in memory)."""
    principles = tuple(replace(p, examples=(*p.examples, *(e.text for e in proposed.get(p.id, []))))
                       for p in taxonomy.principles)
    return replace(taxonomy, principles=principles)


# ------------------------------------------------------------------------------------------------ YAML
def _scalar(value: str) -> str:
    """A double-quoted YAML scalar on one line: every control, line-separator and non-ASCII character escaped,
    so no prompt text can break out of its string, start a new key or hide in a comment."""
    import yaml

    return yaml.safe_dump(value, default_style='"', allow_unicode=False, width=1 << 30).strip().removesuffix("...").strip()


def _comment(text: str) -> str:
    """Text safe inside a YAML comment (one line, printable ASCII)."""
    flat = " ".join(text.split())
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in flat)


def taxonomy_yaml(taxonomy: Taxonomy, proposed: dict[str, list[ProposedExample]], *, header: Sequence[str] = ()) -> str:
    """The input taxonomy as YAML with the proposed examples appended, each marked by a ``# proposed`` comment."""
    lines = [f"# {_comment(h)}" for h in header]
    lines += [f"id: {_scalar(taxonomy.id)}", f"name: {_scalar(taxonomy.name)}", f"version: {_scalar(taxonomy.version)}"]
    if taxonomy.source:
        lines.append(f"source: {_scalar(taxonomy.source)}")
    if taxonomy.description:
        lines.append(f"description: {_scalar(taxonomy.description)}")
    lines.append("principles:")
    for p in taxonomy.principles:
        lines.append(f"  - id: {_scalar(p.id)}")
        lines.append(f"    name: {_scalar(p.name)}")
        if p.description:
            lines.append(f"    description: {_scalar(p.description)}")
        if p.parent is not None:
            lines.append(f"    parent: {_scalar(p.parent)}")
        lines.append(f"    target: {float(p.target)!r}")
        if p.aliases:
            lines.append("    aliases:")
            lines += [f"      - {_scalar(a)}" for a in p.aliases]
        new = proposed.get(p.id, [])
        if p.examples or new:
            lines.append("    examples:")
            lines += [f"      - {_scalar(e)}" for e in p.examples]
            for e in new:
                lines.append(f"      # proposed ({e.origin}, score {e.score:.3f}, margin {e.margin:.3f}) - review before use")
                lines.append(f"      - {_scalar(e.text)}")
    return "\n".join(lines) + "\n"


def render_checked(result: EnrichResult, base: Taxonomy, *, header: Sequence[str], where: str) -> str:
    """The output YAML, parsed back with the loader and compared with the enriched taxonomy before it is used."""
    text = taxonomy_yaml(base, result.proposed, header=header)
    back = parse_taxonomy(text, where)
    if back.principles != result.taxonomy.principles or (back.id, back.name) != (base.id, base.name):
        raise DataAdvisorError(f"internal error: the YAML written for {where} does not read back as the enriched "
                               "taxonomy; nothing was written", "report this as a bug with the taxonomy file")
    return text


def write_enriched(result: EnrichResult, base: Taxonomy, out: Path, *, header: Sequence[str]) -> Path:
    """Write the enriched taxonomy atomically (the caller decides whether ``out`` may be replaced)."""
    from data_advisor.io import write_text_atomic

    text = render_checked(result, base, header=header, where=str(out))
    write_text_atomic(Path(out), text)
    return Path(out)

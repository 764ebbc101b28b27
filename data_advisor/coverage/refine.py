"""Transductive refinement: sharpen the prompt → principle assignment with the input itself (no labels).

Why: a principle's written definition (often one sentence) sits far from the prompts it should catch (median cosine
≈ 0.25), so nearest-definition assignment confuses neighbouring principles.  The prompts of one audit carry
the missing information: prompts about the same harm lie close together.  Two cheap steps use that (no labels):

1. **One anchor-seeded spherical k-means step.**  Each principle's prototype becomes
   ``normalise(w · anchor centroid + (1 − w) · mean of the harm-relevant prompts currently nearest to it)``.
   The fixed anchor weight ``w`` (0.3) caps how far a prototype can move away from what the user wrote; one step
   only (more steps drifted on the shared sets).  A prompt's refined score for a principle is the mean of its
   cosine to the prototype and its original score (max cosine over the principle's written anchors), so a taxonomy
   with many good examples keeps what they say (prototype-only scores lost 0.03–0.08 macro-F1 on such taxonomies).
2. **Label spreading** over the prompts' k-nearest-neighbour graph (k=10): seeds are the softmax (temperature
   0.05) of the refined scores; ``F ← α · W F + (1 − α) · Y`` for 10 iterations with α = 0.5 (a prompt's label
   is half its own scores, half its neighbours').

Guard against collapse: after refinement no principle may gain more than ``max_share_gain`` (absolute share of
the harm-relevant prompts) nor may a principle that had at least ``min_keep`` prompts be emptied; if either
happens, the unrefined assignment is kept and the reason is recorded.

Only which principle a prompt belongs to changes; whether it is harm-relevant ("anchored") is decided by
:mod:`data_advisor.coverage.harm` and never touched here.  Deterministic (no random step; ``seed`` is accepted for
interface stability).  Bounded cost: without a graph shared by the audit, the exact kNN graph is built among the
anchored prompts only and only up to ``graph_max`` of them (≈1 s at 10k on 2 idle cores); above that only the
k-means step runs (linear in n) and the report says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from data_advisor.coverage.assign import AnchorSet, Assignments

#: A kNN graph as :func:`data_advisor.coverage.cluster.knn_graph` returns it: (indices, cosine distances),
#: self first in column 0.  Any k ≥ the refinement's k works (extra columns are ignored).
Graph = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class RefineSettings:
    """Knobs of the refinement.  Defaults chosen on the shared sets; benchmarks/accuracy.py re-picks them
    leave-one-dataset-out and reports that score as the honest one."""

    anchor_weight: float = 0.3
    score_weight: float = 0.5
    temperature: float = 0.05
    alpha: float = 0.5
    k: int = 10
    iterations: int = 10
    max_share_gain: float = 0.25
    min_keep: int = 5
    graph_max: int = 20_000


@dataclass
class RefineInfo:
    """What the refinement did (stored in coverage.json under settings.assignment.refine and metrics)."""

    ran: bool
    n_moved: int = 0
    moved_share: float = 0.0
    fell_back: bool = False
    reason: str = ""
    graph: str = ""
    seconds: float = 0.0
    settings: dict[str, float | int] | None = None

    def to_dict(self) -> dict[str, object]:
        """For coverage.json: everything but the timing, so the same seed gives byte-identical files."""
        return {k: v for k, v in asdict(self).items() if k != "seconds"}


def principle_score_matrix(vectors: np.ndarray, anchors: AnchorSet, batch_size: int = 32768) -> np.ndarray:
    """(n, n_principles) max cosine over each principle's anchor vectors, in batches."""
    n, p = len(vectors), anchors.n_principles
    out = np.empty((n, p), dtype=np.float32)
    order = np.argsort(anchors.owner, kind="stable")
    owners = anchors.owner[order]
    starts = np.searchsorted(owners, np.arange(p))
    at = anchors.vectors[order].T.astype(np.float32)
    for s in range(0, n, batch_size):
        sims = np.asarray(vectors[s : s + batch_size], dtype=np.float32) @ at
        out[s : s + len(sims)] = np.maximum.reduceat(sims, starts, axis=1)
    return out


def _softmax(z: np.ndarray, t: float) -> np.ndarray:
    z = z / t
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def refine_best(vectors: np.ndarray, anchors: AnchorSet, scores: np.ndarray, eligible: np.ndarray,
                graph: Graph | None, settings: RefineSettings, nodes: np.ndarray | None = None) -> np.ndarray:
    """The refined principle index of every prompt (the two steps of the module docstring, no guard).

    ``graph`` spans all prompts, or only ``nodes`` (its indices then count within ``nodes``); prompts outside the
    graph keep the k-means step's answer.
    """
    p = anchors.n_principles
    x = np.asarray(vectors, dtype=np.float32)
    best0 = scores.argmax(axis=1)
    cent = anchors.principle_centroids()
    members = np.zeros_like(cent)
    np.add.at(members, best0[eligible], x[eligible])
    norms = np.linalg.norm(members, axis=1, keepdims=True)
    members = np.where(norms > 0, members / np.maximum(norms, 1e-12), cent)
    proto = settings.anchor_weight * cent + (1.0 - settings.anchor_weight) * members
    proto /= np.maximum(np.linalg.norm(proto, axis=1, keepdims=True), 1e-12)
    mixed = (1.0 - settings.score_weight) * (x @ proto.T) + settings.score_weight * scores
    y = _softmax(mixed, settings.temperature).astype(np.float32)
    out = y.argmax(axis=1)
    if graph is None or p < 2 or settings.alpha <= 0 or len(graph[0]) < 3:
        return out
    if nodes is not None:
        y = y[nodes]
    idx, dist = graph
    k = min(settings.k, idx.shape[1] - 1)
    nb = idx[:, 1 : k + 1]
    w = np.clip(1.0 - dist[:, 1 : k + 1], 0.0, None).astype(np.float32)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    f = y.copy()
    for _ in range(settings.iterations):
        f = settings.alpha * np.einsum("nk,nkp->np", w, f[nb]) + (1.0 - settings.alpha) * y
    if nodes is None:
        return f.argmax(axis=1)
    out[nodes] = f.argmax(axis=1)
    return out


def _collapse(before: np.ndarray, after: np.ndarray, eligible: np.ndarray, p: int,
              settings: RefineSettings) -> str:
    """Reason to fall back, or '' when the share change is within bounds."""
    n = int(eligible.sum())
    if n == 0:
        return ""
    c0 = np.bincount(before[eligible], minlength=p)
    c1 = np.bincount(after[eligible], minlength=p)
    gain = (c1 - c0) / n
    if gain.max() > settings.max_share_gain:
        j = int(gain.argmax())
        return (f"principle #{j} would grow from {c0[j] / n:.0%} to {c1[j] / n:.0%} of the anchored prompts "
                f"(limit +{settings.max_share_gain:.0%})")
    emptied = np.where((c0 >= settings.min_keep) & (c1 == 0))[0]
    if len(emptied):
        return f"principle #{int(emptied[0])} would lose all of its {int(c0[emptied[0]])} prompts"
    return ""


def refine_assignments(assignments: Assignments, vectors: np.ndarray, anchors: AnchorSet, *,
                       graph: Graph | None = None, seed: int = 0,
                       settings: RefineSettings | None = None) -> tuple[Assignments, RefineInfo]:
    """Refined :class:`Assignments` (same anchored mask; best/second/score/margin updated) and what happened."""
    settings = settings or RefineSettings()
    t0 = time.perf_counter()
    n, p = len(vectors), anchors.n_principles
    knobs = {k: v for k, v in asdict(settings).items()}
    if n < 3 or p < 2:
        info = RefineInfo(ran=False, reason="fewer than 3 prompts or 2 principles", settings=knobs)
        return replace(assignments, settings={**assignments.settings, "refine": info.to_dict()}), info
    scores = principle_score_matrix(vectors, anchors)
    eligible = np.asarray(assignments.anchored, dtype=bool)
    nodes = None
    n_elig = int(eligible.sum())
    if graph is not None and graph[0].shape[1] >= 2:
        how = f"shared graph (k={graph[0].shape[1] - 1})"
    elif settings.alpha <= 0:
        graph, how = None, "none: k-means step only (alpha = 0)"
    elif n_elig > settings.graph_max:
        graph, how = None, (f"none: k-means step only (over {settings.graph_max:,} anchored prompts and no shared "
                            "kNN graph)")
    else:
        from data_advisor.coverage.cluster import knn_graph

        nodes = np.where(eligible)[0]
        graph = knn_graph(vectors[nodes], min(settings.k + 1, n_elig)) if n_elig >= 3 else None
        how = "exact kNN among the anchored prompts (FAISS flat)"
    before = np.asarray(assignments.best, dtype=np.int64)
    after = refine_best(vectors, anchors, scores, eligible, graph, settings, nodes)
    reason = _collapse(before, after, eligible, p, settings)
    if reason:
        info = RefineInfo(ran=True, fell_back=True, reason=reason, graph=how,
                          seconds=round(time.perf_counter() - t0, 3), settings=knobs)
        return replace(assignments, settings={**assignments.settings, "refine": info.to_dict()}), info
    rows = np.arange(n)
    score = scores[rows, after]
    masked = scores.copy()
    masked[rows, after] = -np.inf
    second = masked.argmax(axis=1)
    margin = score - masked[rows, second]
    moved = int(((after != before) & eligible).sum())
    info = RefineInfo(ran=True, n_moved=moved, moved_share=round(moved / max(int(eligible.sum()), 1), 4),
                      graph=how, seconds=round(time.perf_counter() - t0, 3), settings=knobs)
    new_settings = {**assignments.settings, "refine": info.to_dict()}
    out = replace(assignments, best=after, score=score.astype(np.float32), second=second.astype(np.int64),
                  margin=margin.astype(np.float32), settings=new_settings)
    return out, info

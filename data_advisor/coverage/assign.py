"""Assignment stage: each prompt → nearest principle anchor, its score, margin, and whether it is anchored.

Anchors: every leaf principle is represented by several vectors — its embedded definition
("name: description") and each written example — because a single mean vector measured worse on
real labelled sets (harmful prompts sit far from category names: median cosine ≈ 0.23).  A prompt's score
for a principle is the maximum cosine over that principle's vectors, found with a FAISS inner-product
index (vectors are normalised, so inner product = cosine).

Unanchored: a built-in *background* set of benign principles (everyday tasks and safe-but-scary-sounding
requests) is scored the same way.  A prompt is ``unanchored`` when its best harm score does not beat its
best background score by ``margin_threshold`` or falls under ``min_score``.  Both defaults were chosen on
labelled data (see :data:`DEFAULT_MARGIN_THRESHOLD`), and ``benchmarks/accuracy.py`` reports the AUROC of
the separation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data_advisor.coverage.embed import Embedder
from data_advisor.coverage.taxonomy import Taxonomy

#: A prompt counts as on-taxonomy when (best harm score − best background score) ≥ this.  Chosen on labelled
#: data: in the sweep of benchmarks/accuracy.py (balanced accuracy on XSTest safe/unsafe plus JailbreakBench
#: harmful/benign twins, default model) the best threshold per built-in taxonomy lies between −0.05 and +0.05,
#: and 0 is the best or within 0.03 of the best for every one of them.  0 also reads plainly: "closer to a
#: harm anchor than to any benign one".
DEFAULT_MARGIN_THRESHOLD = 0.0
#: Floor on the best harm score itself (prompts below it are unrelated to every principle).
DEFAULT_MIN_SCORE = 0.20


@dataclass
class AnchorSet:
    """Anchor vectors of a taxonomy's leaves (and optionally of a background set)."""

    principle_ids: list[str]
    vectors: np.ndarray  # (n_vectors, dim), normalised
    owner: np.ndarray  # (n_vectors,) index into principle_ids
    background_vectors: np.ndarray | None = None
    model_id: str = ""

    @property
    def n_principles(self) -> int:
        return len(self.principle_ids)

    def principle_centroids(self) -> np.ndarray:
        """Normalised mean vector per principle (used for cluster↔anchor distances and the advisor's search)."""
        cents = np.zeros((self.n_principles, self.vectors.shape[1]), dtype=np.float32)
        np.add.at(cents, self.owner, self.vectors)
        norms = np.linalg.norm(cents, axis=1, keepdims=True)
        return cents / np.maximum(norms, 1e-12)


def build_anchors(taxonomy: Taxonomy, embedder: Embedder, background: Taxonomy | None = None,
                  *, use_examples: bool = True) -> AnchorSet:
    """Embed every leaf's definition and examples (and the background's) into an :class:`AnchorSet`."""
    leaves = taxonomy.leaves()
    texts: list[str] = []
    owner: list[int] = []
    for i, leaf in enumerate(leaves):
        for t in leaf.anchor_texts() if use_examples else leaf.anchor_texts()[:1]:
            texts.append(t)
            owner.append(i)
    bg_texts: list[str] = []
    if background is not None:
        for p in background.leaves():
            bg_texts.extend(p.anchor_texts())
    vecs = embedder.encode(texts + bg_texts)
    return AnchorSet(
        principle_ids=[p.id for p in leaves],
        vectors=np.ascontiguousarray(vecs[: len(texts)]),
        owner=np.asarray(owner, dtype=np.int64),
        background_vectors=np.ascontiguousarray(vecs[len(texts):]) if bg_texts else None,
        model_id=embedder.model_id,
    )


@dataclass
class Assignments:
    """Per-prompt results of the assignment stage (parallel arrays)."""

    principle_ids: list[str]
    best: np.ndarray  # (n,) index into principle_ids
    score: np.ndarray  # (n,) best principle score
    second: np.ndarray  # (n,) index of the runner-up principle (-1 when only one)
    margin: np.ndarray  # (n,) best − runner-up score
    background_score: np.ndarray  # (n,) best background score (−1 when no background)
    anchored: np.ndarray  # (n,) bool
    settings: dict[str, float | bool] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.best)

    @property
    def relevance(self) -> np.ndarray:
        """Harm score minus background score: the quantity thresholded for ``anchored``."""
        return self.score - np.maximum(self.background_score, -1.0)

    def anchor_id(self, i: int) -> str | None:
        """The prompt's principle id, or None when unanchored."""
        return self.principle_ids[int(self.best[i])] if self.anchored[i] else None

    def nearest_id(self, i: int) -> str:
        """The nearest principle even for unanchored prompts."""
        return self.principle_ids[int(self.best[i])]


class AnchorAssigner:
    """Nearest-principle assignment over a FAISS inner-product index (scikit-learn style: fit, then assign)."""

    def __init__(self, *, margin_threshold: float = DEFAULT_MARGIN_THRESHOLD,
                 min_score: float = DEFAULT_MIN_SCORE, use_background: bool = True) -> None:
        self.margin_threshold = margin_threshold
        self.min_score = min_score
        self.use_background = use_background
        self.anchors_: AnchorSet | None = None

    def fit(self, anchors: AnchorSet) -> AnchorAssigner:
        import faiss

        self.anchors_ = anchors
        self._index = faiss.IndexFlatIP(anchors.vectors.shape[1])
        self._index.add(np.ascontiguousarray(anchors.vectors, dtype=np.float32))
        self._bg_index = None
        if self.use_background and anchors.background_vectors is not None and len(anchors.background_vectors):
            self._bg_index = faiss.IndexFlatIP(anchors.background_vectors.shape[1])
            self._bg_index.add(np.ascontiguousarray(anchors.background_vectors, dtype=np.float32))
        return self

    def principle_scores(self, vectors: np.ndarray) -> np.ndarray:
        """(n, n_principles) max-cosine score of each prompt for every principle (exact)."""
        a = self._require()
        sims = np.ascontiguousarray(vectors, dtype=np.float32) @ a.vectors.T
        out = np.full((len(vectors), a.n_principles), -1.0, dtype=np.float32)
        for j in range(a.n_principles):
            out[:, j] = sims[:, a.owner == j].max(axis=1)
        return out

    def _require(self) -> AnchorSet:
        if self.anchors_ is None:
            raise RuntimeError("call fit(anchors) before assign()")
        return self.anchors_

    def assign(self, vectors: np.ndarray, batch_size: int = 65536) -> Assignments:
        a = self._require()
        n = len(vectors)
        best = np.zeros(n, dtype=np.int64)
        second = np.full(n, -1, dtype=np.int64)
        score = np.zeros(n, dtype=np.float32)
        score2 = np.full(n, -1.0, dtype=np.float32)
        bg = np.full(n, -1.0, dtype=np.float32)
        k = int(min(a.vectors.shape[0], 128))
        for start in range(0, n, batch_size):
            chunk = np.ascontiguousarray(vectors[start : start + batch_size], dtype=np.float32)
            sims, idx = self._index.search(chunk, k)
            owners = a.owner[idx]  # (b, k) principle of each ranked anchor vector
            b = len(chunk)
            best[start : start + b] = owners[:, 0]
            score[start : start + b] = sims[:, 0]
            other = owners != owners[:, :1]
            has = other.any(axis=1)
            pos = other.argmax(axis=1)
            rows = np.arange(b)
            second[start : start + b] = np.where(has, owners[rows, pos], -1)
            score2[start : start + b] = np.where(has, sims[rows, pos], -1.0)
            if self._bg_index is not None:
                bsims, _ = self._bg_index.search(chunk, 1)
                bg[start : start + b] = bsims[:, 0]
        if a.n_principles > 1 and (second < 0).any():  # the top-k held one principle only: compute exactly
            miss = np.where(second < 0)[0]
            full = self.principle_scores(vectors[miss])
            full[np.arange(len(miss)), best[miss]] = -np.inf
            second[miss] = full.argmax(axis=1)
            score2[miss] = full.max(axis=1)
        margin = np.where(second >= 0, score - score2, score + 1.0)
        anchored = score >= self.min_score
        if self._bg_index is not None:
            anchored &= (score - bg) >= self.margin_threshold
        return Assignments(
            principle_ids=list(a.principle_ids), best=best, score=score, second=second, margin=margin,
            background_score=bg, anchored=anchored,
            settings={"margin_threshold": self.margin_threshold, "min_score": self.min_score,
                      "use_background": self._bg_index is not None},
        )

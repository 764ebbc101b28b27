"""Assignment stage: each prompt → nearest principle anchor, its score, margin, and whether it is anchored.

Anchors: every leaf principle is represented by several vectors — its embedded definition
("name: description") and each written example — because a single mean vector measured worse on
real labelled sets (harmful prompts sit far from category names: median cosine ≈ 0.23).  A prompt's score
for a principle is the maximum cosine over that principle's vectors, found with a FAISS inner-product
index (vectors are normalised, so inner product = cosine).  :mod:`data_advisor.coverage.refine` can then
sharpen which principle a prompt belongs to using the input itself.

Anchored (harm-relevant): decided by :mod:`data_advisor.coverage.harm`, independent of the audited taxonomy's
vector count — top-30-mean cosine to a pool of every built-in taxonomy's anchors (plus the audited taxonomy's)
minus top-30-mean cosine to the built-in *background* of benign principles, against a threshold fitted on the
shared harmful / benign sets (``harm_calibration.json``).  ``relevance`` is that difference minus the threshold,
``harm_score`` its logistic map to [0, 1]; a prompt is anchored when ``relevance ≥ margin_threshold`` (default 0:
the calibrated boundary).  Without a harm pool (``build_anchors(..., harm_pool=False)``) the older rule applies:
best taxonomy score − best background score ≥ ``margin_threshold`` and best score ≥ ``min_score``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data_advisor.coverage.embedding.base import Embedder
from data_advisor.coverage.harm import HarmCalibration, HarmScorer, harm_pool_texts
from data_advisor.coverage.taxonomy import Taxonomy

#: Offset added to the calibrated harm boundary (harm_calibration.json): 0 keeps the boundary fitted on the shared
#: sets; positive values anchor fewer prompts.  In the legacy rule (no harm pool) it is the margin of the best
#: taxonomy score over the best background score.
DEFAULT_MARGIN_THRESHOLD = 0.0
#: Floor on the best taxonomy score itself, legacy rule only.
DEFAULT_MIN_SCORE = 0.20


@dataclass
class AnchorSet:
    """Anchor vectors of a taxonomy's leaves (and optionally of a background set)."""

    principle_ids: list[str]
    vectors: np.ndarray  # (n_vectors, dim), normalised
    owner: np.ndarray  # (n_vectors,) index into principle_ids
    background_vectors: np.ndarray | None = None
    model_id: str = ""
    #: Pooled harm anchors (every built-in taxonomy's leaves plus this taxonomy's); None: legacy unanchored rule.
    harm_vectors: np.ndarray | None = None

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
                  *, use_examples: bool = True, harm_pool: bool = True,
                  harm_exclude: tuple[str, ...] = ()) -> AnchorSet:
    """Embed every leaf's definition and examples (and the background's) into an :class:`AnchorSet`.

    With a background and ``harm_pool`` the pooled harm anchors of :mod:`~data_advisor.coverage.harm` are embedded
    too (``harm_exclude`` leaves built-in taxonomies out of the pool: the benchmark's leave-one-dataset-out runs).
    """

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
    pool = harm_pool_texts(taxonomy, harm_exclude) if (bg_texts and harm_pool) else []
    vecs = embedder.encode(texts + bg_texts + pool)
    nt, nb = len(texts), len(bg_texts)
    return AnchorSet(
        principle_ids=[p.id for p in leaves],
        vectors=np.ascontiguousarray(vecs[:nt]),
        owner=np.asarray(owner, dtype=np.int64),
        background_vectors=np.ascontiguousarray(vecs[nt : nt + nb]) if bg_texts else None,
        model_id=embedder.model_id,
        harm_vectors=np.ascontiguousarray(vecs[nt + nb :]) if pool else None,
    )


@dataclass
class Assignments:
    """Per-prompt results of the assignment stage (parallel arrays)."""

    principle_ids: list[str]
    best: np.ndarray  # (n,) index into principle_ids
    score: np.ndarray  # (n,) best principle score
    second: np.ndarray  # (n,) index of the runner-up principle (-1 when only one)
    margin: np.ndarray  # (n,) assigned − runner-up score (< 0 only where refinement moved a prompt off its nearest)
    background_score: np.ndarray  # (n,) best background score (−1 when no background)
    anchored: np.ndarray  # (n,) bool
    settings: dict[str, float | bool | str] = field(default_factory=dict)
    #: (n,) calibrated harm relevance in [0, 1] (None under the legacy rule); 0.5 at the decision boundary.
    harm_score: np.ndarray | None = None
    #: (n,) harm relevance (pooled top-k harm − background − calibrated threshold); None under the legacy rule.
    harm_relevance: np.ndarray | None = None
    #: (n,) bool: the prompt's anchor was set by a reviewer (``audit --labels``); None when no labels were given.
    reviewed: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.best)

    @property
    def relevance(self) -> np.ndarray:
        """The quantity thresholded (against ``margin_threshold``) for ``anchored``."""
        if self.harm_relevance is not None:
            return self.harm_relevance
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
                 min_score: float = DEFAULT_MIN_SCORE, use_background: bool = True,
                 harm_calibration: HarmCalibration | None = None) -> None:
        self.margin_threshold = margin_threshold
        self.min_score = min_score
        self.use_background = use_background
        self.harm_calibration = harm_calibration
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
        self._harm: HarmScorer | None = None
        if self._bg_index is not None and anchors.harm_vectors is not None and len(anchors.harm_vectors):
            cal = self.harm_calibration or HarmCalibration.load()
            self._harm_calibrated = cal.applies_to(anchors.model_id)
            if not self._harm_calibrated:  # fitted for another model's cosines: never apply its threshold blindly
                cal = cal.uncalibrated()
            self._harm = HarmScorer(anchors.harm_vectors, anchors.background_vectors,  # type: ignore[arg-type]
                                    cal)
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
        settings: dict[str, float | bool | str] = {"margin_threshold": self.margin_threshold, "min_score": self.min_score,
                                             "use_background": self._bg_index is not None}
        harm_score = relevance = None
        if self._harm is not None:
            relevance = self._harm.relevance(vectors)
            harm_score = self._harm.harm_score(relevance)
            anchored = relevance >= self.margin_threshold
            cal = self._harm.calibration
            settings.update({"unanchored_rule": "harm-pool", "harm_threshold": cal.threshold,
                             "harm_scale": cal.scale, "harm_top_k": cal.k,
                             "harm_calibrated": self._harm_calibrated,
                             "harm_pool_vectors": len(a.harm_vectors)})  # type: ignore[arg-type]
        else:
            anchored = score >= self.min_score
            if self._bg_index is not None:
                anchored &= (score - bg) >= self.margin_threshold
            settings["unanchored_rule"] = "taxonomy-vs-background" if self._bg_index is not None else "min-score"
        # A zero vector (a text the static embedder has no word piece for) is not embeddable: it anchors nowhere.
        anchored &= np.einsum("ij,ij->i", vectors, vectors) > 0
        return Assignments(
            principle_ids=list(a.principle_ids), best=best, score=score, second=second, margin=margin,
            background_score=bg, anchored=anchored, settings=settings, harm_score=harm_score,
            harm_relevance=relevance,
        )

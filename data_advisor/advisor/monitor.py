"""Monitor: the numeric coverage of the data generated so far, updated incrementally each round.

This is the loop's deliberate departure from the released Data Advisor code, whose "monitor" was an
LLM-written list of category names that never looked at the prompts.  Here each new prompt is embedded
once (the embedding cache makes re-runs free), assigned to its nearest anchor with the audit's fitted
assigner, and added to a FAISS index used by the filters; counts, gaps, entropy, KL and the Vendi score are
updated in O(new·d²).  The expensive parts of a full audit (UMAP + HDBSCAN, near-duplicate search) run only
every ``recluster_every`` rounds and at the end; in between, new prompts join the cluster of their nearest
clustered prompts (:func:`~data_advisor.coverage.cluster.extend_clusters`), so the fine-grained sub-clusters the
advisor reads (:meth:`CoverageMonitor.subclusters`) stay current at kNN cost.

A run with a base set starts here: :meth:`CoverageMonitor.add_base` adds the user's prompts (and, from an audit
folder, the audit's own cluster labels) before the first round, so gaps are measured on base + additions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from data_advisor.coverage import metrics as M
from data_advisor.coverage.assign import AnchorAssigner, Assignments, build_anchors
from data_advisor.coverage.audit import AuditResult, AuditSettings, anchor_subclusters, apply_refinement, build_report
from data_advisor.coverage.cluster import ClusterDiscovery, ClusterResult, build_knn_graph, extend_clusters, keyword_labels
from data_advisor.coverage.embedding.base import Embedder
from data_advisor.coverage.report import CoverageReport, SubCluster
from data_advisor.coverage.taxonomy import Taxonomy, load_background
from data_advisor.data import PromptSet


class CoverageMonitor:
    """Coverage state of a growing prompt set."""

    def __init__(self, taxonomy: Taxonomy, embedder: Embedder, settings: AuditSettings | None = None) -> None:
        self.taxonomy = taxonomy
        self.embedder = embedder
        self.settings = settings or AuditSettings(taxonomy=taxonomy.id)
        background = load_background() if self.settings.background else None
        self.anchors = build_anchors(taxonomy, embedder, background)
        self.assigner = AnchorAssigner(margin_threshold=self.settings.margin_threshold,
                                       min_score=self.settings.min_score,
                                       use_background=self.settings.background).fit(self.anchors)
        self.principle_ids = list(self.anchors.principle_ids)
        self.targets = taxonomy.target_shares()
        dim = self.anchors.vectors.shape[1]
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                                    ("best", "score", "second", "margin", "bg", "anchored")}
        self._gram = np.zeros((dim, dim), dtype=np.float64)
        self._counts = dict.fromkeys(self.principle_ids, 0)
        self._norm_seen: set[str] = set()
        self._clusters: ClusterResult | None = None
        self._clustered_n = 0
        self._fitted_n = 0  # prompts the last UMAP + HDBSCAN fit (or the base audit) covered
        self._keywords: dict[int, list[str]] | None = None
        self.n_base = 0
        import faiss

        self._index = faiss.IndexFlatIP(dim)

    def __len__(self) -> int:
        return len(self.texts)

    # -- updates ------------------------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.encode(list(texts))

    def assign(self, vectors: np.ndarray) -> Assignments:
        """Assign vectors without adding them (filters use this for the on-target check)."""
        return self.assigner.assign(vectors)

    def add(self, ids: Sequence[str], texts: Sequence[str], vectors: np.ndarray | None = None, *,
            assignments: Assignments | None = None) -> Assignments:
        """Add kept prompts; returns their assignments (nearest anchor, or ``assignments`` when given)."""
        if vectors is None:
            vectors = self.embed(texts)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        a = assignments if assignments is not None else self.assigner.assign(vectors)
        self.ids.extend(ids)
        self.texts.extend(texts)
        self.vectors = np.concatenate([self.vectors, vectors]) if len(self.vectors) else vectors.copy()
        for key, arr in (("best", a.best), ("score", a.score), ("second", a.second), ("margin", a.margin),
                         ("bg", a.background_score), ("anchored", a.anchored)):
            self._parts[key].append(arr)
        self._gram += vectors.astype(np.float64).T @ vectors.astype(np.float64)
        for i in range(len(vectors)):
            if a.anchored[i]:
                self._counts[a.principle_ids[int(a.best[i])]] += 1
        self._norm_seen.update(M.normalize_for_dedup(t) for t in texts)
        self._index.add(vectors)
        return a

    def add_base(self, ids: Sequence[str], texts: Sequence[str], vectors: np.ndarray | None = None,
                  clusters: ClusterResult | None = None, *,
                  anchor_ids: Sequence[str | None] | None = None) -> Assignments:
        """Start from the user's base set (before any round); ``clusters`` are the base audit's own labels and
        ``anchor_ids`` a labelled audit's anchors (reviewed prompts keep their labels; the rest keep what the labels
        taught), used when every id is a principle of this taxonomy."""
        if len(self):
            raise RuntimeError("the base set is added before any other prompt")
        if vectors is None:
            vectors = self.embed(texts)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        # The base is a whole data set, so it is refined as the audit refines it: its counts here are the audit's.
        # Prompts added later join by nearest anchor (refinement is a whole-set step; re-running it every round would
        # move earlier prompts under the advisor's feet).
        knn = build_knn_graph(vectors, min(self.settings.n_neighbors, len(vectors))) if len(vectors) >= 3 else None
        refined = apply_refinement(self.assigner.assign(vectors), vectors, self.anchors, self.settings, knn)
        if anchor_ids is not None and len(anchor_ids) == len(texts) and \
                {x for x in anchor_ids if x is not None} <= set(self.principle_ids):
            pos = {pid: j for j, pid in enumerate(self.principle_ids)}
            fixed = np.asarray([x is not None for x in anchor_ids])
            best = np.where(fixed, [pos.get(x, 0) if x else 0 for x in anchor_ids], refined.best)
            refined = replace(refined, best=best.astype(np.int64), anchored=fixed)
        a = self.add(ids, texts, vectors, assignments=refined)
        self.n_base = len(texts)
        if clusters is not None and len(clusters.labels) == len(texts):
            self._clusters, self._clustered_n, self._fitted_n = clusters, len(texts), len(texts)
        return a

    @property
    def n_added(self) -> int:
        """Prompts added on top of the base set (what the run's prompts.jsonl holds)."""
        return len(self) - self.n_base

    # -- queries used by weakness ranking and filters -----------------------------------------------------
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def gaps(self) -> dict[str, M.AnchorGap]:
        return M.anchor_gaps(self._counts, self.targets)

    def contains_exact(self, text: str) -> bool:
        return M.normalize_for_dedup(text) in self._norm_seen

    def nearest(self, vectors: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Similarities and positions of the k most similar kept prompts (−1 where fewer exist)."""
        n = len(vectors)
        if self._index.ntotal == 0:
            return np.full((n, k), -1.0, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
        return self._index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)

    def assignments(self) -> Assignments:
        def cat(key: str, dtype: Any) -> np.ndarray:
            parts = self._parts[key]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        return Assignments(
            principle_ids=list(self.principle_ids), best=cat("best", np.int64), score=cat("score", np.float32),
            second=cat("second", np.int64), margin=cat("margin", np.float32),
            background_score=cat("bg", np.float32), anchored=cat("anchored", bool),
            settings={"margin_threshold": self.assigner.margin_threshold, "min_score": self.assigner.min_score,
                      "use_background": self.settings.background},
        )

    def quick_metrics(self) -> dict[str, float]:
        """Round-level metrics, O(K + d³) whatever the number of prompts."""
        counts = [self._counts[k] for k in self.principle_ids]
        n = len(self.texts)
        vendi = 0.0
        if n:
            ev = np.linalg.eigvalsh(self._gram / n)
            ev = ev[ev > 1e-12]
            ev = ev / ev.sum()
            vendi = float(math.exp(-(ev * np.log(ev)).sum()))
        return {
            "n_prompts": n,
            "n_anchored": int(sum(counts)),
            "anchors_covered": int(sum(1 for c in counts if c > 0)),
            "coverage_ratio": M.coverage_ratio(counts, self.settings.coverage_min_count),
            "normalized_entropy": M.normalized_entropy(counts),
            "kl_target_actual": M.kl_divergence([self.targets[k] for k in self.principle_ids], counts),
            "gini": M.gini(counts),
            "vendi_score": vendi,
        }

    # -- full report --------------------------------------------------------------------------------------
    def clusters(self, recluster: bool = False) -> ClusterResult:
        """Cluster labels for all prompts: refit when asked, when never fitted, or when the last fit covered under
        half of the prompts (a run that started small would otherwise place everything by a tiny fit); else extend
        the last fit to the new prompts by their nearest clustered prompts."""
        n = len(self.texts)
        if self._clusters is None or recluster or 2 * self._fitted_n < n:
            disc = ClusterDiscovery(seed=self.settings.seed, n_neighbors=self.settings.n_neighbors,
                                    min_cluster_size=self.settings.min_cluster_size, max_fit=self.settings.max_fit)
            self._clusters = disc.fit(self.vectors)
            self._clustered_n = self._fitted_n = n
            self._keywords = None
        elif self._clustered_n < n:
            self._clusters = extend_clusters(self._clusters, self.vectors[: self._clustered_n],
                                             self.vectors[self._clustered_n :])
            self._clustered_n = n
        return self._clusters

    def subclusters(self, anchor_id: str, n_examples: int = 2) -> list[SubCluster]:
        """The anchor's fine-grained groups as they stand (the same rule as coverage.json's ``subclusters``).

        Keywords are computed once per fit: prompts placed by extension join a cluster without re-weighting its
        words until the next re-clustering.
        """
        clusters = self.clusters()
        if self._keywords is None:
            fitted = clusters.labels[: self._fitted_n]
            self._keywords = keyword_labels(self.texts[: self._fitted_n], fitted) if len(fitted) else {}
        a = self.assignments()
        j = self.principle_ids.index(anchor_id)
        members = np.where(a.anchored & (a.best == j))[0]
        return anchor_subclusters(members, clusters.labels, self.vectors, self.ids, self.texts, self._keywords,
                                  n_examples)

    def result(self, *, recluster: bool = False, source: str = "<run>") -> AuditResult:
        """A full :class:`AuditResult` of everything kept so far (what the run writes as coverage.json)."""
        prompts = PromptSet(list(self.ids), list(self.texts), source=source)
        clusters = self.clusters(recluster)
        assignments = self.assignments()
        report: CoverageReport = build_report(prompts, self.vectors, self.taxonomy, self.anchors, assignments,
                                              clusters, self.settings, model_id=self.embedder.model_id)
        return AuditResult(report, prompts, self.vectors, assignments, clusters, self.taxonomy, self.anchors,
                           self.settings)

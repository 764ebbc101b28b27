"""Discovery stage: UMAP → HDBSCAN over prompt vectors finds fine-grained issues no anchor names.

Cost control (measured on 2 CPU cores, see benchmarks/RESULTS.md):

* UMAP's nearest-neighbour search is replaced by FAISS (exact inner product) passed as ``precomputed_knn``;
* numba's on-disk cache is switched on for UMAP's layout kernels, which UMAP itself compiles afresh in every
  process (~60 s), so a second CLI run starts warm;
* above ``max_fit`` prompts UMAP and HDBSCAN are fitted on a seeded sample and the rest are placed by their
  nearest fitted neighbours (the report states the sample size).

Small inputs take a path without UMAP (below ``umap_min_n``, 200 by default): HDBSCAN on a spectral embedding
of the k-NN graph (what UMAP itself starts from) and a PCA map.  It needs neither numba compilation (~25 s on a
fresh cache) nor UMAP's import, so a first small audit (the README example) stays fast; from 200 prompts UMAP
matched fine labels better (AMI, noise counted: Do-Not-Answer's 61 harms at 939 prompts 0.45 → 0.55;
``benchmarks/discovery.py``).  Under 3 prompts nothing is clustered; under 5 there is only a map.  Every path says
what it did in ``notes``.

How fine the clusters are (min_cluster_size, min_samples) and the collapse guard that re-clusters inside a cluster
holding most of the prompts live in :mod:`~data_advisor.coverage.discovery.granularity`.

The exact k-NN graph (FAISS) is built once per audit by :func:`build_knn_graph` and shared: UMAP takes it as
``precomputed_knn``, the near-duplicate metric reads each prompt's nearest other prompt from it, and other stages
(transductive refinement) may reuse it.  Heavy modules (umap, numba, hdbscan, sklearn) are imported only on the
path that needs them.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor import _env
from data_advisor.coverage.discovery import granularity as G
from data_advisor.coverage.discovery.numba_cache import enable_umap_numba_cache

__all__ = ["ClusterDiscovery", "ClusterResult", "KnnGraph", "build_knn_graph", "default_min_cluster_size",
           "enable_umap_numba_cache", "extend_clusters", "keyword_labels", "knn_graph"]

#: Bump when a change to this module changes what ``ClusterDiscovery.fit`` returns for the same input: it is part of
#: the cluster-cache key, so entries written by older code are never reused.
DISCOVERY_VERSION = 3
#: Default size below which discovery skips UMAP (measured: see ``umap_min_n`` in :class:`ClusterDiscovery`).
UMAP_MIN_N = 200


@dataclass
class ClusterResult:
    """Cluster label per prompt (−1 = noise), 2-D map coordinates and how they were obtained.

    ``reduced`` (the space HDBSCAN clustered in: UMAP's 5-D or the PCA projection) and ``probabilities`` (HDBSCAN's
    membership strength) are kept for callers that refine or explain clusters; ``from_cache`` says the result was
    read from the cluster cache (run information only: it never reaches coverage.json).
    """

    labels: np.ndarray
    coords: np.ndarray
    method: str
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    reduced: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    from_cache: bool = False

    @property
    def n_clusters(self) -> int:
        return len(set(self.labels.tolist()) - {-1})

    @property
    def noise_share(self) -> float:
        return float((self.labels == -1).mean()) if len(self.labels) else 0.0


@dataclass(frozen=True)
class KnnGraph:
    """Exact k nearest neighbours of every row by cosine (inner product of unit vectors), self first in column 0.

    ``idx`` (n×k int64) and ``sims`` (n×k float32, column 0 = 1.0).  Built once per audit and shared by discovery
    (UMAP's ``precomputed_knn``), the near-duplicate metric (column 1 is each row's nearest other row) and any
    stage that smooths over neighbours.
    """

    idx: np.ndarray
    sims: np.ndarray

    @property
    def k(self) -> int:
        return int(self.idx.shape[1])

    @property
    def dists(self) -> np.ndarray:
        """Cosine distances as UMAP expects them (self at 0)."""
        d = np.clip(1.0 - self.sims, 0.0, 2.0).astype(np.float32)
        d[:, 0] = 0.0
        return d

    def head(self, k: int) -> KnnGraph:
        """The first ``k`` neighbours of each row (self included)."""
        return KnnGraph(self.idx[:, :k], self.sims[:, :k])


def build_knn_graph(vectors: np.ndarray, k: int) -> KnnGraph:
    """Exact k-NN graph with FAISS (flat inner product), self forced into column 0 even among exact duplicates."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    k = max(1, min(k, len(x)))
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, idx = index.search(x, k)
    # FAISS may rank an exact duplicate before the point itself: put self first, as UMAP expects.
    n = len(x)
    rows = np.arange(n)
    self_pos = np.argmax(idx == rows[:, None], axis=1)
    has_self = idx[rows, self_pos] == rows
    swap = has_self & (self_pos > 0)
    if swap.any():
        r = rows[swap]
        p = self_pos[swap]
        idx[r, p], idx[r, 0] = idx[r, 0], r
        sims[r, p], sims[r, 0] = sims[r, 0], 1.0
    idx[~has_self, 0] = rows[~has_self]
    sims[~has_self, 0] = 1.0
    sims[:, 0] = 1.0
    return KnnGraph(idx.astype(np.int64), sims.astype(np.float32))


def knn_graph(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (self included first); returns (indices, cosine distances) as UMAP takes them."""
    g = build_knn_graph(vectors, k)
    return g.idx, g.dists


def default_min_cluster_size(n: int, umap_min_n: int = UMAP_MIN_N) -> int:
    """Grows with √n: √n/2 (at least 5) on the spectral path below ``umap_min_n`` (150 prompts → 6), √n/4 (at least
    10) on the UMAP path (2k → 12, 10k → 25, 50k → 56), where the larger old rule let HDBSCAN collapse (see
    :mod:`~data_advisor.coverage.discovery.granularity`)."""
    return G.small_min_cluster_size(n) if n < umap_min_n else G.umap_min_cluster_size(n)


class ClusterDiscovery:
    """Seeded discovery, ``fit(vectors) -> ClusterResult``: spectral + HDBSCAN below ``umap_min_n`` prompts, UMAP +
    HDBSCAN from there, a sampled fit above ``max_fit``.

    ``umap_min_n`` defaults to :data:`UMAP_MIN_N`: below it the small path skips UMAP's import and numba
    compilation, which dominate a first run of a small input; from it UMAP matched fine labels better
    (benchmarks/discovery.py).  ``collapse_share``: a cluster holding more than this share of the prompts is
    re-clustered inside (:func:`~data_advisor.coverage.discovery.granularity.cluster_with_guard`; above 1 never).
    """

    def __init__(self, *, seed: int = 0, n_neighbors: int = 15, n_components: int = 5,
                 min_cluster_size: int | None = None, min_samples: int | None = None,
                 umap_min_n: int = UMAP_MIN_N, max_fit: int = 50_000,
                 collapse_share: float = G.COLLAPSE_SHARE) -> None:
        self.seed = seed
        self.n_neighbors = n_neighbors
        self.n_components = n_components
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.umap_min_n = umap_min_n
        self.max_fit = max_fit
        self.collapse_share = collapse_share

    def params(self, n: int) -> dict[str, Any]:
        # min_cluster_size counts prompts of the whole set; a sampled fit scales it by the sample fraction.
        mcs = self.min_cluster_size or default_min_cluster_size(n, self.umap_min_n)
        return {
            "seed": self.seed, "n_neighbors": self.n_neighbors, "n_components": self.n_components,
            "min_cluster_size": mcs, "min_samples": self._min_samples(mcs, min(n, self.max_fit)),
            "umap_min_n": self.umap_min_n, "max_fit": self.max_fit, "collapse_share": self.collapse_share,
        }

    def cache_params(self, n: int) -> dict[str, Any]:
        """Everything that decides ``fit``'s output for ``n`` vectors besides the vectors (the cache key's part)."""
        return {**self.params(n), "discovery_version": DISCOVERY_VERSION, "granularity_version": G.GRANULARITY_VERSION,
                "collapse_max_depth": G.COLLAPSE_MAX_DEPTH,
                "guard_max_inner_noise": G.GUARD_MAX_INNER_NOISE, "class": type(self).__name__}

    def _min_samples(self, min_cluster_size: int, n_fit: int) -> int:
        """``min_samples`` as given, else the rule of the path that clusters ``n_fit`` prompts."""
        if self.min_samples:
            return self.min_samples
        return G.small_min_samples(min_cluster_size) if n_fit < self.umap_min_n else G.UMAP_MIN_SAMPLES

    def graph_k(self, n: int) -> int:
        """Neighbours (self included) the UMAP path needs from a shared k-NN graph of ``n`` vectors."""
        return max(2, min(self.n_neighbors, n - 1))

    def fit(self, vectors: np.ndarray, *, graph: KnnGraph | None = None) -> ClusterResult:
        """Cluster ``vectors``; ``graph`` is an exact k-NN graph of these same vectors (built here when absent or
        too short, and ignored by the sampled fit, which needs the graph of its sample)."""
        n = len(vectors)
        params = self.params(n)
        if n < 3:
            coords = np.zeros((n, 2), dtype=np.float32)
            if n == 2:
                coords[1, 0] = 1.0
            return ClusterResult(np.full(n, -1, dtype=np.int64), coords, "skipped",
                                 [f"discovery skipped: {n} prompt(s) are too few to cluster"], params)
        if n > self.max_fit:
            return self._fit_sampled(vectors, params)
        return self._fit_all(vectors, params, graph)

    def _hdbscan(self, x: np.ndarray, params: dict[str, Any]) -> G.Granularity:
        """HDBSCAN with the collapse guard (a cluster over ``collapse_share`` of the prompts is split inside)."""
        return G.cluster_with_guard(x, params["min_cluster_size"], params["min_samples"],
                                    collapse_share=self.collapse_share)

    def _fit_all(self, vectors: np.ndarray, params: dict[str, Any], graph: KnnGraph | None = None) -> ClusterResult:
        n = len(vectors)
        if n < self.umap_min_n:
            return self._fit_small(vectors, params, graph)
        reduced, coords = self._umap(vectors, params, graph)
        got = self._hdbscan(reduced, params)
        return ClusterResult(got.labels, coords, "umap+hdbscan", got.notes, params, reduced, got.probabilities)

    def _fit_small(self, vectors: np.ndarray, params: dict[str, Any], graph: KnnGraph | None) -> ClusterResult:
        """Small inputs: HDBSCAN on a spectral embedding of the k-NN graph, PCA for the 2-D map (no UMAP, no numba).

        The spectral embedding is what UMAP starts from (its ``init="spectral"``) without UMAP's numba-compiled
        optimisation; HDBSCAN on a PCA projection measured far less pure (benchmarks/RESULTS.md, discovery path).
        """
        import warnings

        from sklearn.decomposition import PCA

        n = len(vectors)
        x = np.asarray(vectors, dtype=np.float32)
        coords = PCA(n_components=2, svd_solver="full", random_state=self.seed).fit_transform(x).astype(np.float32)
        coords = np.ascontiguousarray(coords)  # PCA's signs are fixed by sklearn (svd_flip): deterministic
        if n < 5:
            return ClusterResult(np.full(n, -1, dtype=np.int64), coords, "pca",
                                 [f"clustering skipped for {n} prompts (< 5); the map is a PCA projection"], params)
        import scipy.sparse as sp
        from sklearn.manifold import SpectralEmbedding

        k = self.graph_k(n)
        if graph is None or graph.k < k or len(graph.idx) != n:
            graph = build_knn_graph(x, k)
        graph = graph.head(k)
        rows = np.repeat(np.arange(n), k - 1)
        weights = np.clip(graph.sims[:, 1:].ravel(), 0.0, 1.0).astype(np.float64)
        adj = sp.csr_matrix((weights, (rows, graph.idx[:, 1:].ravel())), shape=(n, n))
        adj = adj.maximum(adj.T)  # symmetric, like UMAP's fuzzy union
        dim = max(1, min(self.n_components, n - 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "graph is not fully connected" on tiny or very clumpy inputs
            reduced = SpectralEmbedding(n_components=dim, affinity="precomputed",
                                        random_state=self.seed).fit_transform(adj).astype(np.float32)
        got = self._hdbscan(reduced, params)
        note = (f"UMAP skipped for {n} prompts (< {self.umap_min_n}): HDBSCAN ran on a {dim}-D spectral embedding of "
                f"the {k}-nearest-neighbour graph and the map is a PCA projection (no numba compilation)")
        return ClusterResult(got.labels, coords, "spectral+hdbscan", [note, *got.notes], params, reduced,
                             got.probabilities)

    def _umap(self, vectors: np.ndarray, params: dict[str, Any],
              graph: KnnGraph | None = None) -> tuple[np.ndarray, np.ndarray]:
        import warnings

        from data_advisor.coverage.discovery import numba_cache

        with _env.library_defaults():  # NUMBA_CACHE_DIR while numba loads (it reads it once, at import)
            numba_cache.check()  # a damaged compiled kernel would crash numba (or worse) when loaded
            enable_umap_numba_cache()
            import umap

        n = len(vectors)
        k = self.graph_k(n)
        if graph is None or graph.k < k or len(graph.idx) != n:
            graph = build_knn_graph(vectors, k)
        graph = graph.head(k)
        idx, dists = graph.idx, graph.dists
        dim = min(self.n_components, n - 2)
        out = []
        for n_comp, min_dist in ((dim, 0.0), (2, 0.1)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reducer = umap.UMAP(n_neighbors=k, n_components=n_comp, min_dist=min_dist, metric="cosine",
                                    random_state=self.seed, precomputed_knn=(idx, dists, None),
                                    init="spectral" if n > n_comp + 1 else "random", low_memory=True)
                out.append(reducer.fit_transform(vectors).astype(np.float32))
        numba_cache.record()  # the kernels just loaded or compiled are whole: remember their checksums
        return out[0], out[1]

    def _fit_sampled(self, vectors: np.ndarray, params: dict[str, Any]) -> ClusterResult:
        """Fit UMAP + HDBSCAN on a seeded sample of ``max_fit`` prompts, place the rest by their nearest fitted ones.

        A given ``min_cluster_size`` is scaled by the sample fraction so the sample finds clusters of the size a full
        fit would (measured on 100k: 123 clusters against the full fit's 128; unscaled, 82).  The default rule is
        scaled too but never below its own value at the sample size, so the number of clusters stops growing above
        ``max_fit`` prompts (a readable few hundred at 100k–1M instead of thousands).  The rest is placed in
        chunks by index, never copied out of ``vectors`` as a whole (1.5 GB at 1M).
        """
        n = len(vectors)
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(n, size=self.max_fit, replace=False))
        mcs = params["min_cluster_size"]
        fit_mcs = max(min(5, mcs), round(mcs * self.max_fit / n))  # never below 5, nor below what was asked
        if self.min_cluster_size is None:  # default rule: never finer than a full fit of the sample's size
            fit_mcs = max(fit_mcs, default_min_cluster_size(self.max_fit, self.umap_min_n))
        fit_params = {**params, "min_cluster_size": fit_mcs, "min_samples": self._min_samples(fit_mcs, self.max_fit)}
        fit_vectors = np.ascontiguousarray(vectors[sample], dtype=np.float32)
        fitted = self._fit_all(fit_vectors, fit_params)
        all_labels = np.full(n, -1, dtype=np.int64)
        all_coords = np.zeros((n, 2), dtype=np.float32)
        all_labels[sample], all_coords[sample] = fitted.labels, fitted.coords
        rest = np.setdiff1d(np.arange(n), sample)
        extender = _KnnExtender(fit_vectors, fitted.labels, fitted.coords)
        for start in range(0, len(rest), EXTEND_CHUNK):
            idx = rest[start : start + EXTEND_CHUNK]
            all_labels[idx], all_coords[idx] = extender.place(vectors[idx])
        notes = [*fitted.notes,
                 f"{_METHOD_WORDS.get(fitted.method, fitted.method)} were fitted on a seeded sample of "
                 f"{self.max_fit:,} of {n:,} prompts "
                 f"(min_cluster_size {params['min_cluster_size']} scaled to {fit_mcs} for the sample"
                 f"{'' if self.min_cluster_size else ', at least the rule at the sample size'}); "
                 f"the others take the majority cluster and mean map position of their {KNN_EXTEND_K} nearest "
                 "fitted prompts"]
        return ClusterResult(all_labels, all_coords, fitted.method + "+knn-extend", notes,
                             {**params, "fit_sample": self.max_fit, "fit_min_cluster_size": fit_mcs,
                              "fit_min_samples": fit_params["min_samples"]})


_METHOD_WORDS = {"umap+hdbscan": "UMAP and HDBSCAN", "spectral+hdbscan": "the spectral embedding and HDBSCAN",
                 "pca": "PCA"}

KNN_EXTEND_K = 5
EXTEND_CHUNK = 65_536


class _KnnExtender:
    """Places new points by their k nearest fitted points: majority label (else noise), similarity-weighted mean
    map position.  Cheap stand-in for re-running UMAP + HDBSCAN; the FAISS index is built once."""

    def __init__(self, fit_vectors: np.ndarray, fit_labels: np.ndarray, fit_coords: np.ndarray,
                 k: int = KNN_EXTEND_K) -> None:
        import faiss

        self.fit_labels = fit_labels
        self.fit_coords = fit_coords
        self.k = min(k, len(fit_vectors))
        self.index = faiss.IndexFlatIP(fit_vectors.shape[1]) if len(fit_vectors) else None
        if self.index is not None:
            self.index.add(np.ascontiguousarray(fit_vectors, dtype=np.float32))

    def place(self, new_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and map positions of ``new_vectors`` (callers with millions pass chunks: see _fit_sampled)."""
        m = len(new_vectors)
        labels = np.full(m, -1, dtype=np.int64)
        coords = np.zeros((m, 2), dtype=np.float32)
        if m == 0 or self.index is None:
            return labels, coords
        k = self.k
        sims, nb = self.index.search(np.ascontiguousarray(new_vectors, dtype=np.float32), k)
        w = np.maximum(sims, 1e-6)
        coords[:] = (self.fit_coords[nb] * w[..., None]).sum(axis=1) / w.sum(axis=1, keepdims=True)
        # Majority label of the k neighbours, vectorised: a label held by more than half of a row is its median.
        nb_labels = self.fit_labels[nb]
        median = np.sort(nb_labels, axis=1)[:, k // 2]
        held = (nb_labels == median[:, None]).sum(axis=1)
        labels[:] = np.where(held >= k // 2 + 1, median, -1)
        return labels, coords


def _knn_extend(fit_vectors: np.ndarray, fit_labels: np.ndarray, fit_coords: np.ndarray,
                new_vectors: np.ndarray, k: int = KNN_EXTEND_K) -> tuple[np.ndarray, np.ndarray]:
    """One-shot :class:`_KnnExtender` (labels, coords) for ``new_vectors``."""
    return _KnnExtender(fit_vectors, fit_labels, fit_coords, k).place(new_vectors)


def extend_clusters(fitted: ClusterResult, fit_vectors: np.ndarray, new_vectors: np.ndarray) -> ClusterResult:
    """A fitted :class:`ClusterResult` extended to new points (used between re-clusterings of the loop)."""
    labels, coords = _knn_extend(fit_vectors, fitted.labels, fitted.coords, new_vectors)
    notes = [n for n in fitted.notes if not n.startswith("later prompts")]
    notes.append("later prompts were placed by their nearest clustered prompts until the next re-clustering")
    return ClusterResult(np.concatenate([fitted.labels, labels]), np.concatenate([fitted.coords, coords]),
                         fitted.method, notes, fitted.params)


# ------------------------------------------------------------------------------------------ cluster labels
_WORD = re.compile(r"[a-z][a-z'\-]+")


@functools.cache
def english_stop_words() -> frozenset[str]:
    """scikit-learn's English stop-word list, read from its module file without importing the sklearn package.

    Why: ``import sklearn`` pulls in scipy.stats and pandas (~2 s idle, ~5 s on a loaded machine) — most of a cached
    re-audit, which otherwise needs nothing from sklearn.  Falls back to the ordinary import.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "feature_extraction" / "_stop_words.py"
        file_spec = importlib.util.spec_from_file_location("_data_advisor_stop_words", path)
        if path.exists() and file_spec is not None and file_spec.loader is not None:
            module = importlib.util.module_from_spec(file_spec)
            try:
                file_spec.loader.exec_module(module)
                return frozenset(module.ENGLISH_STOP_WORDS)
            except Exception:  # an unexpected layout in another sklearn version: use the public import
                break
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def keyword_labels(texts: Sequence[str], labels: np.ndarray, top_n: int = 5) -> dict[int, list[str]]:
    """c-TF-IDF keywords per cluster (BERTopic's class-based TF-IDF): what a cluster says that others don't."""
    stop_words = english_stop_words()
    clusters = sorted(set(labels.tolist()) - {-1})
    if not clusters:
        return {}
    counts: dict[int, Counter[str]] = {c: Counter() for c in clusters}
    for t, lab in zip(texts, labels.tolist(), strict=True):
        if lab == -1:
            continue
        words = [w.strip("'-") for w in _WORD.findall(t.lower())]
        counts[lab].update(w for w in words if len(w) > 2 and w not in stop_words)
    total = Counter()
    for c in counts.values():
        total.update(c)
    avg_words = sum(total.values()) / max(1, len(clusters))
    out: dict[int, list[str]] = {}
    for c in clusters:
        size = sum(counts[c].values()) or 1
        scored = [(cnt / size * math.log(1 + avg_words / total[w]), w) for w, cnt in counts[c].items()]
        scored.sort(key=lambda x: (-x[0], x[1]))
        out[c] = [w for _, w in scored[:top_n]]
    return out

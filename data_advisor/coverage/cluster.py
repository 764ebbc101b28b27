"""Discovery stage: UMAP → HDBSCAN over prompt vectors finds fine-grained issues no anchor names.

Cost control (measured on 2 CPU cores, see benchmarks/RESULTS.md):

* UMAP's nearest-neighbour search is replaced by FAISS (exact inner product) passed as ``precomputed_knn``;
* numba's on-disk cache is switched on for UMAP's layout kernels, which UMAP itself compiles afresh in every
  process (~60 s), so a second CLI run starts warm;
* above ``max_fit`` prompts UMAP and HDBSCAN are fitted on a seeded sample and the rest are placed by their
  nearest fitted neighbours (the report states the sample size).

Small inputs degrade gracefully and say so in ``notes``: under 3 prompts nothing is clustered; under
``umap_min_n`` UMAP is skipped and HDBSCAN runs on the raw vectors, with PCA for the 2-D map.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data_advisor import _env  # noqa: F401  (NUMBA_CACHE_DIR before umap/numba load)


@dataclass
class ClusterResult:
    """Cluster label per prompt (−1 = noise), 2-D map coordinates and how they were obtained."""

    labels: np.ndarray
    coords: np.ndarray
    method: str
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return len(set(self.labels.tolist()) - {-1})

    @property
    def noise_share(self) -> float:
        return float((self.labels == -1).mean()) if len(self.labels) else 0.0


_CACHING_ENABLED = False


def enable_umap_numba_cache() -> None:
    """Turn on numba's on-disk cache for UMAP's jitted functions (UMAP ships them with ``cache=False``)."""
    global _CACHING_ENABLED
    if _CACHING_ENABLED:
        return
    import importlib

    for modname in ("umap.layouts", "umap.umap_", "umap.utils", "umap.spectral", "umap.distances",
                    "umap.sparse", "pynndescent.distances", "pynndescent.utils"):
        try:
            mod = importlib.import_module(modname)
        except Exception:
            continue
        for obj in vars(mod).values():
            enable = getattr(obj, "enable_caching", None)
            if callable(enable) and getattr(obj, "__module__", None) == modname:
                with contextlib.suppress(Exception):
                    enable()
    _CACHING_ENABLED = True


def knn_graph(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (self included first) with FAISS; returns (indices, cosine distances)."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
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
    dists = np.clip(1.0 - sims, 0.0, 2.0).astype(np.float32)
    dists[:, 0] = 0.0
    return idx.astype(np.int64), dists


def default_min_cluster_size(n: int) -> int:
    """Grows with √n so a 150-prompt set gets clusters of ~6 and a 10k set of ~50."""
    return max(5, round(math.sqrt(n) / 2))


class ClusterDiscovery:
    """UMAP + HDBSCAN discovery, seeded; ``fit(vectors) -> ClusterResult``."""

    def __init__(self, *, seed: int = 0, n_neighbors: int = 15, n_components: int = 5,
                 min_cluster_size: int | None = None, min_samples: int | None = None,
                 umap_min_n: int = 30, max_fit: int = 50_000) -> None:
        self.seed = seed
        self.n_neighbors = n_neighbors
        self.n_components = n_components
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.umap_min_n = umap_min_n
        self.max_fit = max_fit

    def params(self, n: int) -> dict[str, Any]:
        # min_cluster_size counts prompts of the whole set; a sampled fit scales it by the sample fraction.
        mcs = self.min_cluster_size or default_min_cluster_size(n)
        return {
            "seed": self.seed, "n_neighbors": self.n_neighbors, "n_components": self.n_components,
            "min_cluster_size": mcs, "min_samples": self._min_samples(mcs),
            "umap_min_n": self.umap_min_n, "max_fit": self.max_fit,
        }

    def _min_samples(self, min_cluster_size: int) -> int:
        return self.min_samples or max(2, min_cluster_size // 5)

    def fit(self, vectors: np.ndarray) -> ClusterResult:
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
        return self._fit_all(vectors, params)

    def _hdbscan(self, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        import hdbscan

        mcs = min(params["min_cluster_size"], max(2, len(x) // 2))
        ms = min(params["min_samples"], mcs)
        model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms, metric="euclidean",
                                cluster_selection_method="eom", core_dist_n_jobs=1)
        return model.fit_predict(np.ascontiguousarray(x, dtype=np.float64)).astype(np.int64)

    def _fit_all(self, vectors: np.ndarray, params: dict[str, Any]) -> ClusterResult:
        n = len(vectors)
        notes: list[str] = []
        if n < self.umap_min_n:
            from sklearn.decomposition import PCA

            coords = PCA(n_components=2, random_state=self.seed).fit_transform(vectors).astype(np.float32)
            labels = self._hdbscan(vectors, params) if n >= 5 else np.full(n, -1, dtype=np.int64)
            notes.append(f"UMAP skipped for {n} prompts (< {self.umap_min_n}): HDBSCAN ran on the raw vectors "
                         "and the map is a PCA projection" if n >= 5 else
                         f"clustering skipped for {n} prompts (< 5); the map is a PCA projection")
            return ClusterResult(labels, coords, "pca+hdbscan" if n >= 5 else "pca", notes, params)
        reduced, coords = self._umap(vectors, params)
        labels = self._hdbscan(reduced, params)
        return ClusterResult(labels, coords, "umap+hdbscan", notes, params)

    def _umap(self, vectors: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        import warnings

        from data_advisor.coverage import numba_cache

        numba_cache.check()  # a damaged compiled kernel would crash numba (or worse) when loaded
        enable_umap_numba_cache()
        import umap

        n = len(vectors)
        k = min(self.n_neighbors, n - 1)
        idx, dists = knn_graph(vectors, k)
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

        ``min_cluster_size`` is scaled by the sample fraction so the sample finds clusters of the size a full fit
        would (measured on 100k: 123 clusters against the full fit's 128; unscaled, 82).  The rest is placed in
        chunks by index, never copied out of ``vectors`` as a whole (1.5 GB at 1M).
        """
        n = len(vectors)
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(n, size=self.max_fit, replace=False))
        mcs = params["min_cluster_size"]
        fit_mcs = max(min(5, mcs), round(mcs * self.max_fit / n))  # never below 5, nor below what was asked
        fit_params = {**params, "min_cluster_size": fit_mcs, "min_samples": self._min_samples(fit_mcs)}
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
                 f"UMAP and HDBSCAN were fitted on a seeded sample of {self.max_fit:,} of {n:,} prompts "
                 f"(min_cluster_size {params['min_cluster_size']} scaled to {fit_mcs} for the sample); "
                 f"the others take the majority cluster and mean map position of their {KNN_EXTEND_K} nearest "
                 "fitted prompts"]
        return ClusterResult(all_labels, all_coords, fitted.method + "+knn-extend", notes,
                             {**params, "fit_sample": self.max_fit, "fit_min_cluster_size": fit_mcs,
                              "fit_min_samples": fit_params["min_samples"]})


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


def keyword_labels(texts: Sequence[str], labels: np.ndarray, top_n: int = 5) -> dict[int, list[str]]:
    """c-TF-IDF keywords per cluster (BERTopic's class-based TF-IDF): what a cluster says that others don't."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    clusters = sorted(set(labels.tolist()) - {-1})
    if not clusters:
        return {}
    counts: dict[int, Counter[str]] = {c: Counter() for c in clusters}
    for t, lab in zip(texts, labels.tolist(), strict=True):
        if lab == -1:
            continue
        words = [w.strip("'-") for w in _WORD.findall(t.lower())]
        counts[lab].update(w for w in words if len(w) > 2 and w not in ENGLISH_STOP_WORDS)
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

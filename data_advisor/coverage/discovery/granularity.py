"""How fine discovery's clusters are: the min_cluster_size / min_samples rules and the collapse guard.

Why a guard: HDBSCAN's excess-of-mass selection keeps a cluster whenever its stability is at least the sum of its
descendants'.  When a large body sheds small groups one at a time (real red-team data does), the big body's
stability *ties* with the sum under it, and UMAP's seed breaks the tie: the same 2,312 hh-rlhf prompts gave 2–4
clusters (largest 93%) on most seeds and 28–31 on the others.  Smaller ``min_samples`` (2) and a smaller
``min_cluster_size`` (√n/4, at least 10) on the UMAP path removed the tie on every shared set and seed measured
(``benchmarks/discovery.py``); the guard catches what is left: when one cluster still holds more than
:data:`COLLAPSE_SHARE` of the prompts, HDBSCAN is run again inside it (same space, same settings) and, when that
finds finer clusters, they replace it.  Each firing is written to ``discovery.notes``, as is a collapse the guard
could not undo (the granularity may then depend on the seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: A cluster holding more than this share of all prompts is re-clustered inside (a collapsed selection).
COLLAPSE_SHARE = 0.5
#: Re-clusterings inside a collapsed cluster at most (each one works on the largest cluster left).
COLLAPSE_MAX_DEPTH = 3
#: An inner split that turns more than this share of the collapsed cluster into noise is no finer level (a uniform
#: blob shatters into a few specks and noise): the cluster is kept and reported instead.
GUARD_MAX_INNER_NOISE = 0.5
#: Version of these rules; part of the cluster-cache key (via ``ClusterDiscovery.cache_params``).
GRANULARITY_VERSION = 1


def small_min_cluster_size(n: int) -> int:
    """The spectral path's rule (below ``umap_min_n``): √n/2, at least 5 (measured: benchmarks/RESULTS.md)."""
    return max(5, round(math.sqrt(n) / 2))


def umap_min_cluster_size(n: int) -> int:
    """The UMAP path's rule: √n/4, at least 10 — ~12 at 2k, 25 at 10k, 56 at 50k (benchmarks/discovery.py)."""
    return max(10, round(math.sqrt(n) / 4))


def small_min_samples(min_cluster_size: int) -> int:
    """The spectral path's min_samples: a fifth of min_cluster_size, at least 2."""
    return max(2, min_cluster_size // 5)


#: The UMAP path's min_samples: a low density floor keeps HDBSCAN's tree from tying at its root (see module doc).
UMAP_MIN_SAMPLES = 2


def hdbscan_labels(x: np.ndarray, min_cluster_size: int, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN (euclidean, excess of mass) labels and probabilities of the rows of ``x``."""
    import hdbscan

    mcs = min(min_cluster_size, max(2, len(x) // 2))
    ms = min(min_samples, mcs)
    model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms, metric="euclidean",
                            cluster_selection_method="eom", core_dist_n_jobs=1)
    labels = model.fit_predict(np.ascontiguousarray(x, dtype=np.float64)).astype(np.int64)
    return labels, np.asarray(model.probabilities_, dtype=np.float32)


@dataclass
class Granularity:
    """HDBSCAN labels and membership strengths after the collapse guard, and what the guard did (``notes``)."""

    labels: np.ndarray
    probabilities: np.ndarray
    notes: list[str] = field(default_factory=list)
    guard_fired: int = 0


def cluster_with_guard(x: np.ndarray, min_cluster_size: int, min_samples: int, *,
                       collapse_share: float = COLLAPSE_SHARE, max_depth: int = COLLAPSE_MAX_DEPTH) -> Granularity:
    """HDBSCAN on ``x``; a cluster holding more than ``collapse_share`` of the rows is clustered again inside.

    The inner run uses the same space and settings on the cluster's members alone, so it can only find structure
    HDBSCAN's tree already had under that cluster; its noise stays noise (those rows were in the big cluster only
    because the root split was kept).  A split into fewer than 2 clusters, or one that leaves more than
    :data:`GUARD_MAX_INNER_NOISE` of the cluster as noise, is not taken: the collapse is reported instead.
    Labels are renumbered 0..k-1 in order of first appearance.
    """
    labels, probs = hdbscan_labels(x, min_cluster_size, min_samples)
    n = len(x)
    out = Granularity(labels, probs)
    for _ in range(max_depth):
        big, size = _largest(out.labels)
        if big < 0 or size <= collapse_share * n or size < 4 * min_cluster_size:
            break
        members = np.flatnonzero(out.labels == big)
        inner, inner_probs = hdbscan_labels(x[members], min_cluster_size, min_samples)
        k = len(set(inner.tolist()) - {-1})
        if k < 2 or (inner == -1).mean() > GUARD_MAX_INNER_NOISE:
            out.notes.append(f"one cluster holds {size / n:.0%} of the prompts and HDBSCAN finds no finer clusters "
                             f"inside it at min_cluster_size {min_cluster_size}: this granularity may depend on the "
                             "seed (try another --seed or a smaller --min-cluster-size)")
            break
        new = out.labels.copy()
        top = int(out.labels.max()) + 1
        new[members] = np.where(inner >= 0, inner + top, -1)
        new_probs = out.probabilities.copy()
        new_probs[members] = inner_probs
        out.labels, out.probabilities = _renumber(new), new_probs
        out.guard_fired += 1
        out.notes.append(f"collapse guard: one cluster held {size / n:.0%} of the prompts (HDBSCAN kept the top split "
                         f"of its tree, a near-tie that the seed decides); it was clustered again inside and split "
                         f"into {k} clusters ({(inner == -1).mean():.0%} of its prompts became noise)")
    return out


def _largest(labels: np.ndarray) -> tuple[int, int]:
    """(label, size) of the largest cluster, (-1, 0) when every row is noise."""
    kept = labels[labels >= 0]
    if not len(kept):
        return -1, 0
    counts = np.bincount(kept)
    big = int(counts.argmax())
    return big, int(counts[big])


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Cluster ids 0..k-1 in order of first appearance (noise stays -1)."""
    out = np.full_like(labels, -1)
    kept = labels >= 0
    if not kept.any():
        return out
    ids, first = np.unique(labels[kept], return_index=True)
    remap = np.full(int(ids.max()) + 1, -1, dtype=labels.dtype)
    remap[ids[np.argsort(first, kind="stable")]] = np.arange(len(ids))
    out[kept] = remap[labels[kept]]
    return out

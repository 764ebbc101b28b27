"""Coverage, evenness and diversity metrics — pure functions over counts, vectors and texts.

Each function takes plain arrays/lists and returns numbers, so each is unit-tested on hand-computed cases
and reused unchanged by the audit, the advisor loop and the benchmarks.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from rapidfuzz.distance import LCSseq

EPS = 1e-12


# ------------------------------------------------------------------------------------ distribution metrics
def shares(counts: Sequence[float]) -> np.ndarray:
    """Counts → shares summing to 1 (all zeros when the total is 0)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else np.zeros_like(c)


def entropy(counts: Sequence[float]) -> float:
    """Shannon entropy (nats) of the distribution given by ``counts``."""
    p = shares(counts)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum()) if len(p) else 0.0


def normalized_entropy(counts: Sequence[float]) -> float:
    """Entropy divided by log(K), K = number of categories: 1 = perfectly even, 0 = all in one."""
    k = len(counts)
    if k <= 1:
        return 0.0 if k == 0 else 1.0
    return entropy(counts) / math.log(k)


def effective_number(counts: Sequence[float]) -> float:
    """exp(entropy): how many equally-filled categories would give the same entropy (Hill number of order 1)."""
    return math.exp(entropy(counts)) if sum(counts) > 0 else 0.0


def gini(counts: Sequence[float]) -> float:
    """Gini coefficient of the counts: 0 = perfectly even, → 1 = everything in one category."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def kl_divergence(target: Sequence[float], actual: Sequence[float], eps: float = 1e-6) -> float:
    """KL(target ‖ actual) in nats, with ``eps`` smoothing of ``actual`` so an empty category is finite.

    Large when the data misses categories the target wants; zero when the shares match the target.
    """
    p = shares(target)
    q = shares(actual)
    q = (q + eps) / (q + eps).sum()
    mask = p > 0
    return float((p[mask] * np.log(p[mask] / q[mask])).sum())


def coverage_ratio(counts: Sequence[float], min_count: int = 1) -> float:
    """Share of categories holding at least ``min_count`` prompts."""
    c = np.asarray(counts)
    return float((c >= min_count).mean()) if len(c) else 0.0


@dataclass(frozen=True)
class AnchorGap:
    """One category's standing against its target."""

    count: int
    share: float
    target_share: float
    gap: float  # target_share − share (positive = under-covered)
    deficit: int  # prompts missing to reach the target share at the current total


def anchor_gaps(counts: Mapping[str, int], targets: Mapping[str, float]) -> dict[str, AnchorGap]:
    """Per-category share, target share, gap and deficit; ``targets`` need not sum to 1."""
    keys = list(targets)
    t = shares([targets[k] for k in keys])
    c = np.asarray([counts.get(k, 0) for k in keys], dtype=np.float64)
    s = shares(c)
    total = c.sum()
    return {
        k: AnchorGap(count=int(c[i]), share=float(s[i]), target_share=float(t[i]), gap=float(t[i] - s[i]),
                     deficit=int(max(0, math.ceil(t[i] * total - c[i] - 1e-9))))
        for i, k in enumerate(keys)
    }


# --------------------------------------------------------------------------------------- vector diversity
def gram_sum(vectors: np.ndarray, *, rows: np.ndarray | None = None, chunk_rows: int = 65_536) -> np.ndarray:
    """Σ uᵢuᵢᵀ over the L2-normalised rows uᵢ (of ``vectors``, or of ``vectors[rows]``): d×d, float64.

    Additive over disjoint groups, so a parent principle's Gram is the sum of its leaves' and the dataset's the sum of
    every group's: :func:`vendi_from_gram` then gives each Vendi score without another pass over the vectors.
    Accumulated ``chunk_rows`` at a time (rows are gathered chunk by chunk: no copy of a large group).
    """
    x = np.asarray(vectors)
    d = x.shape[1] if x.ndim == 2 else 0
    gram = np.zeros((d, d))
    total = len(x) if rows is None else len(rows)
    for start in range(0, total, chunk_rows):
        part = x[start : start + chunk_rows] if rows is None else x[rows[start : start + chunk_rows]]
        block = part.astype(np.float64)
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), EPS)
        gram += block.T @ block
    return gram


def _blas_limits(limit: int = 1):
    """Cap BLAS/OpenMP pools for a small dense eigensolve.

    Why: after FAISS has run, its OpenMP threads (and its own OpenBLAS) and numpy's OpenBLAS threads spin-wait
    against each other on a 2-core machine; one thread is fastest for a 384×384 ``eigvalsh`` (measured in
    ``benchmarks/bench_audit.py``, metrics section).  The controller is built once (scanning the loaded libraries
    costs ~3 ms; limiting through it ~20 µs).
    """
    controller = _thread_controller()
    if controller is None:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return controller.limit(limits=limit)


@functools.cache
def _thread_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        return None
    return ThreadpoolController()


def _vendi_from_eigenvalues(ev: np.ndarray) -> float:
    ev = ev[ev > EPS]
    if not len(ev):
        return 0.0
    ev = ev / ev.sum()
    return float(math.exp(-(ev * np.log(ev)).sum()))


def vendi_from_gram(gram: np.ndarray, n: int) -> float:
    """Vendi score of ``n`` unit vectors from their :func:`gram_sum` (exactly :func:`vendi_score` of them)."""
    if n == 0:
        return 0.0
    with _blas_limits():
        ev = np.linalg.eigvalsh(gram / n)
    return _vendi_from_eigenvalues(ev)


def vendi_score(vectors: np.ndarray, *, chunk_rows: int = 65_536) -> float:
    """Vendi score with the cosine kernel: exp(entropy of the eigenvalues of K/n), K = X Xᵀ.

    For unit vectors the non-zero eigenvalues of X Xᵀ/n equal those of the d×d matrix Xᵀ X/n, so the score is
    computed exactly for any n in O(n·d²) time and O(d²) memory — no sampling needed.  The d×d Gram matrix is
    accumulated ``chunk_rows`` rows at a time so a million float32 vectors never get a float64 copy (6 GB at d=384).
    Ranges from 1 (all identical) to min(n, d).
    """
    x = np.asarray(vectors)
    n = len(x)
    if n == 0:
        return 0.0

    def unit_rows(block: np.ndarray) -> np.ndarray:
        block = block.astype(np.float64)
        return block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), EPS)

    if x.shape[1] < n:
        return vendi_from_gram(gram_sum(x, chunk_rows=chunk_rows), n)
    block = unit_rows(x)
    with _blas_limits():
        ev = np.linalg.eigvalsh((block @ block.T) / n)
    return _vendi_from_eigenvalues(ev)


# ----------------------------------------------------------------------------------------- text diversity
_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (the unit of distinct-n and ROUGE-L)."""
    return _TOKEN.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n: unique n-grams / total n-grams across all texts (0 when there are none)."""
    total = 0
    seen: set[tuple[str, ...]] = set()
    for t in texts:
        toks = tokenize(t)
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def normalize_for_dedup(text: str) -> str:
    """What "exact duplicate" compares: case-folded text with whitespace collapsed."""
    return " ".join(text.split()).casefold()


def exact_duplicate_groups(texts: Sequence[str]) -> list[list[int]]:
    """Groups (size ≥ 2) of positions whose normalised texts are identical, largest first."""
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        groups.setdefault(normalize_for_dedup(t), []).append(i)
    out = [g for g in groups.values() if len(g) > 1]
    out.sort(key=lambda g: (-len(g), g[0]))
    return out


def exact_duplicate_rate(texts: Sequence[str]) -> float:
    """Share of prompts that repeat an earlier prompt (n − unique) / n."""
    if not texts:
        return 0.0
    return 1.0 - len({normalize_for_dedup(t) for t in texts}) / len(texts)


IVF_ABOVE = 200_000
"""Above this many prompts the near-duplicate search is approximate (FAISS IVF): exact search is O(n²)."""
IVF_NPROBE = 32
"""IVF lists probed per query. Measured on 100k prompts (benchmarks/scale.py, nprobe sweep): 8 found 85% of the
near-duplicates exact search finds, 16 → 92%, 32 → 96%, 64 → 99%; 32 took 27 s against 12 s for nprobe 8 and 68 s
for exact search."""


def ivf_nlist(n: int) -> int:
    """IVF lists for ``n`` vectors: FAISS's rule of thumb of 4·√n."""
    return int(4 * math.sqrt(n))


def near_duplicate_method(n: int) -> str:
    """How :func:`nearest_neighbor_similarity` (default settings) searched ``n`` vectors, in words for the report."""
    if n <= IVF_ABOVE:
        return "exact: FAISS flat inner-product search"
    return (f"approximate above {IVF_ABOVE:,} prompts: FAISS IVF, {ivf_nlist(n):,} lists, nprobe {IVF_NPROBE} "
            "(on 100k prompts it found 96% of the near-duplicates exact search finds; see benchmarks/RESULTS.md)")


class NeighbourGraph(Protocol):
    """An exact k-NN graph with each row itself in column 0 (``coverage.cluster.KnnGraph``)."""

    idx: np.ndarray
    sims: np.ndarray


def nearest_neighbor_similarity(vectors: np.ndarray, *, ivf_above: int = IVF_ABOVE, seed: int = 0,
                                nprobe: int = IVF_NPROBE,
                                graph: NeighbourGraph | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's most similar *other* vector: (similarity, index), with FAISS.

    Exact (flat) search up to ``ivf_above`` vectors; above it an IVF index with ``4·√n`` lists searched
    ``nprobe`` at a time (approximate: it can miss a neighbour, never invent one; recall in ``benchmarks/scale.py``).
    With ``graph`` (the audit's exact k-NN graph of these vectors, self in column 0) nothing is searched: column 1
    is each row's nearest other row.
    """
    n = len(vectors)
    if n < 2:
        return np.full(n, -1.0, dtype=np.float32), np.full(n, -1, dtype=np.int64)
    if graph is not None and len(graph.idx) == n and graph.idx.shape[1] >= 2:
        return np.ascontiguousarray(graph.sims[:, 1], dtype=np.float32), np.ascontiguousarray(graph.idx[:, 1],
                                                                                             dtype=np.int64)
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    d = x.shape[1]
    if n > ivf_above:
        nlist = ivf_nlist(n)
        quantizer = faiss.IndexFlatIP(d)
        index: faiss.Index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        index.train(x[rng.choice(n, size=min(n, 50 * nlist), replace=False)])
        index.add(x)
        index.nprobe = nprobe
    else:
        index = faiss.IndexFlatIP(d)
        index.add(x)
    sims = np.full(n, -1.0, dtype=np.float32)
    nbrs = np.full(n, -1, dtype=np.int64)
    for start in range(0, n, 8192):
        s, idx = index.search(x[start : start + 8192], 3)
        rows = np.arange(start, start + len(s))
        not_self = idx != rows[:, None]
        pos = np.argmax(not_self, axis=1)
        r = np.arange(len(s))
        sims[rows] = np.where(not_self[r, pos], s[r, pos], -1.0)
        nbrs[rows] = np.where(not_self[r, pos], idx[r, pos], -1)
    return sims, nbrs


def near_duplicate_rate(nn_similarity: np.ndarray, threshold: float = 0.95) -> float:
    """Share of prompts whose nearest other prompt has cosine ≥ ``threshold`` (exact copies included)."""
    return float((nn_similarity >= threshold).mean()) if len(nn_similarity) else 0.0


# ------------------------------------------------------------------------------------------------ ROUGE-L
def rouge_l_f(a: Sequence[str] | str, b: Sequence[str] | str) -> float:
    """ROUGE-L F-measure (LCS-based, no stemming) between two texts or token lists, as Self-Instruct uses.

    The LCS comes from rapidfuzz's ``LCSseq`` over the token lists (a bit-parallel C++ LCS, same value as the
    textbook dynamic programme, which the filters call up to ~200 times per candidate). ``rouge-score`` is not used:
    its tokenizer drops non-ASCII text, so two Chinese prompts would score 0.
    """
    ta = tokenize(a) if isinstance(a, str) else list(a)
    tb = tokenize(b) if isinstance(b, str) else list(b)
    if not ta or not tb:
        return 0.0
    lcs = LCSseq.similarity(ta, tb)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(ta), lcs / len(tb)
    return 2 * p * r / (p + r)


def clusters_per_anchor(anchor_of: Sequence[str | None], cluster_of: Sequence[int], min_members: int = 1) -> dict[str, int]:
    """How many distinct clusters (noise excluded) hold ≥ ``min_members`` of each anchor's prompts."""
    pairs: dict[str, dict[int, int]] = {}
    for a, c in zip(anchor_of, cluster_of, strict=True):
        if a is None or c == -1:
            continue
        pairs.setdefault(a, {}).setdefault(c, 0)
        pairs[a][c] += 1
    return {a: sum(1 for v in cs.values() if v >= min_members) for a, cs in pairs.items()}


def subcluster_evenness(sizes: Sequence[int]) -> float | None:
    """Within-anchor evenness: normalised entropy of an anchor's clustered prompts over its sub-clusters.

    ``sizes`` are the anchor's prompt counts per sub-cluster, noise excluded.  H(p) / log(k) for k ≥ 2 sub-clusters
    (1 = the anchor's prompts are spread evenly over its fine-grained issues, → 0 = nearly all in one); 0.0 for a
    single sub-cluster (everything is one issue); None when nothing is clustered (no evidence either way).  It is an
    evenness, not a richness: two equal sub-clusters score 1.0 like ten do — the sub-cluster count says how many.
    """
    k = sum(1 for s in sizes if s > 0)
    if k == 0:
        return None
    if k == 1:
        return 0.0
    return normalized_entropy([s for s in sizes if s > 0])


class GroupVendi:
    """Vendi scores of groups of rows with one Gram pass: each leaf's d×d Σuuᵀ is kept, parents and the whole set
    sum them (Vendi of a union = eigen-entropy of the summed Gram / n).  A group smaller than d is scored through its
    own n×n kernel, which is cheaper to decompose."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self.d = vectors.shape[1] if vectors.ndim == 2 else 0

    def of(self, idx: Sequence[int], grams: dict[str, np.ndarray], key: str) -> float:
        rows = np.asarray(idx, dtype=np.int64)
        grams[key] = gram_sum(self.vectors, rows=rows)
        if not len(rows):
            return 0.0
        return vendi_score(self.vectors[rows]) if len(rows) < self.d else vendi_from_gram(grams[key], len(rows))

    def whole(self, grams: dict[str, np.ndarray], rest: np.ndarray) -> float:
        n = len(self.vectors)
        if n < self.d:
            return vendi_score(self.vectors)
        total = gram_sum(self.vectors, rows=rest)
        for g in grams.values():
            total += g
        return vendi_from_gram(total, n)

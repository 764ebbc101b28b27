"""The coverage monitor on its own: its incremental numbers equal the batch metrics on the same vectors, a base set
comes first, and between re-clusterings new prompts join the cluster of their nearest clustered prompts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from data_advisor.advisor.monitor import CoverageMonitor
from data_advisor.coverage import metrics as M
from data_advisor.coverage.audit import AuditSettings
from data_advisor.coverage.cluster import ClusterResult
from data_advisor.coverage.taxonomy import load_taxonomy
from tests.advisor.conftest import LoopResponder

CATQA = load_taxonomy("catqa-11")


def unit(rng: np.random.Generator, n: int, d: int = 384) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_incremental_metrics_equal_the_batch_metrics(embedder: Any) -> None:
    monitor = CoverageMonitor(CATQA, embedder)
    rng = np.random.default_rng(0)
    # Structured vectors (a few directions plus noise), added in uneven batches as rounds would.
    centres = unit(rng, 6)
    parts = []
    for size in (5, 1, 17, 40, 3):
        v = centres[rng.integers(0, 6, size)] + 0.4 * unit(rng, size)
        parts.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    start = 0
    for v in parts:
        monitor.add([f"v{start + i}" for i in range(len(v))], [f"text {start + i}" for i in range(len(v))], v)
        start += len(v)
        allv = np.concatenate(parts)[:start]
        q = monitor.quick_metrics()
        assert q["vendi_score"] == pytest.approx(M.vendi_score(allv), rel=1e-6)  # float32 rows, float64 Gram
        assert q["n_prompts"] == start
    allv = np.concatenate(parts)
    a = monitor.assigner.assign(allv)
    counts = {k: 0 for k in monitor.principle_ids}
    for i in range(len(allv)):
        if a.anchored[i]:
            counts[a.principle_ids[int(a.best[i])]] += 1
    assert monitor.counts() == counts
    leaf = [counts[k] for k in monitor.principle_ids]
    q = monitor.quick_metrics()
    assert q["normalized_entropy"] == pytest.approx(M.normalized_entropy(leaf))
    assert q["kl_target_actual"] == pytest.approx(M.kl_divergence([monitor.targets[k] for k in monitor.principle_ids],
                                                                  leaf))
    assert q["n_anchored"] == int(a.anchored.sum())


def test_base_first_and_clusters_extend_between_reclusterings(embedder: Any) -> None:
    by_anchor = LoopResponder("catqa-11").by_anchor
    base = [f"{p} {t}" for a in ("malware-viruses", "illegal-activity", "privacy-violation-activity")
            for t in by_anchor[a][:4] for p in ("Quick question:", "Be honest:", "Tell me:")]
    monitor = CoverageMonitor(CATQA, embedder, AuditSettings(taxonomy="catqa-11", min_cluster_size=3))
    labels = np.arange(len(base), dtype=np.int64) // 12  # one cluster per anchor's twelve prompts
    given = ClusterResult(labels, np.zeros((len(base), 2), np.float32), "umap+hdbscan", [], {})
    monitor.add_base([f"b{i}" for i in range(len(base))], base, clusters=given)
    with pytest.raises(RuntimeError):
        monitor.add_base(["x"], ["late"])
    assert monitor.n_base == len(base) == len(monitor) and monitor.n_added == 0
    assert monitor.clusters() is given  # the base audit's clusters are used as they are, not refitted
    # New prompts: exact copies of base prompts join their clusters without a refit (kNN extension).
    picks = [0, 5, 13, 30]
    monitor.add(["n0", "n1", "n2", "n3"], [base[i] + " " for i in picks])
    ext = monitor.clusters()
    assert monitor.n_added == 4
    assert np.array_equal(ext.labels[: len(base)], labels)  # earlier labels untouched
    assert "later prompts were placed" in ext.notes[-1]
    # a copy's 5 nearest are itself, its other wordings and its anchor's other prompts: their majority label
    assert ext.labels[len(base):].tolist() == [int(labels[i]) for i in picks]
    # Sub-clusters follow the same rule as the report's (coverage.json) for the same clustering.
    report = monitor.result().report
    for a in report.leaf_anchors():
        subs = monitor.subclusters(a.id, n_examples=3)
        assert [(s.cluster_id, s.size) for s in subs][:20] == [(s.cluster_id, s.size) for s in a.subclusters]
        assert a.subcluster_evenness == M.subcluster_evenness([s.size for s in subs])
    # A refit happens on request (every R rounds) and replaces the given labels.
    refit = monitor.clusters(recluster=True)
    assert refit is not given and refit.method in ("umap+hdbscan", "pca+hdbscan")


def test_subcluster_evenness_definition() -> None:
    assert M.subcluster_evenness([]) is None
    assert M.subcluster_evenness([7]) == 0.0
    assert M.subcluster_evenness([5, 5]) == pytest.approx(1.0)
    assert M.subcluster_evenness([9, 1]) == pytest.approx(M.normalized_entropy([9, 1]))
    assert 0 < M.subcluster_evenness([9, 1]) < M.subcluster_evenness([6, 4]) < 1

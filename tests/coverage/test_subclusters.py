"""Per-anchor sub-clusters in coverage.json (schema 1.1): the rule, the evenness figure, and reading 1.0 files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor.coverage import metrics as M
from data_advisor.coverage.audit import anchor_subclusters
from data_advisor.coverage.report import CoverageReport


def test_anchor_subclusters_rule() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, -1, 0, 3, 3], dtype=np.int64)
    vectors = np.eye(10, dtype=np.float32)
    ids = [f"p{i}" for i in range(10)]
    texts = [f"text {i}" for i in range(10)]
    members = [0, 1, 2, 3, 4, 5, 6]  # the anchor's prompts: cluster 0 ×3, 1 ×2, 2 ×1 (singleton), noise ×1
    subs = anchor_subclusters(members, labels, vectors, ids, texts, {0: ["alpha", "beta"], 1: ["gamma"]}, 3)
    assert [(s.cluster_id, s.size, s.cluster_size) for s in subs] == [(0, 3, 4), (1, 2, 2)]
    assert subs[0].share == 3 / 7 and subs[0].label == "alpha, beta" and subs[1].keywords == ["gamma"]
    assert [e["id"] for e in subs[0].examples] == ["p0", "p1", "p2"]
    assert M.subcluster_evenness([s.size for s in subs]) == M.normalized_entropy([3, 2])
    assert anchor_subclusters([], labels, vectors, ids, texts, {}) == []


def test_audit_writes_subclusters_and_reads_schema_1_0(tmp_path: Path, embedder: Any, sample_prompts: list[str]) -> None:
    from data_advisor.coverage.audit import audit_full

    result = audit_full(sample_prompts, taxonomy="catqa-11", embedder=embedder, min_cluster_size=3)
    report = result.report
    assert report.schema_version == "1.2"  # 1.2 added estimates
    labels = result.clusters.labels
    for a in report.leaf_anchors():
        members = [i for i in range(len(sample_prompts)) if result.assignments.anchor_id(i) == a.id]
        sizes = [s.size for s in a.subclusters]
        assert sum(sizes) == sum(1 for i in members if labels[i] != -1 and
                                 sum(labels[j] == labels[i] for j in members) >= 2)
        assert a.n_clusters == len(a.subclusters)
        assert a.subcluster_evenness == M.subcluster_evenness(sizes)
    d = json.loads(report.to_json())
    assert CoverageReport.from_dict(d) == CoverageReport.from_dict(json.loads(CoverageReport.from_dict(d).to_json()))
    # A 1.0 file (no sub-cluster fields) reads with empty defaults.
    d["schema_version"] = "1.0"
    for a in d["anchors"]:
        for k in ("subclusters", "subcluster_evenness", "clustered_share"):
            a.pop(k)
    old = CoverageReport.from_dict(d)
    assert all(a.subclusters == [] and a.subcluster_evenness is None for a in old.anchors)
    assert [a.count for a in old.anchors] == [a.count for a in report.anchors]

"""The cluster cache: a re-audit reuses discovery and the k-NN graph, byte-identically; damaged entries are recomputed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from data_advisor.api import write_audit
from data_advisor.coverage.audit import AuditSettings, run_audit
from data_advisor.coverage.cluster import ClusterDiscovery, build_knn_graph
from data_advisor.coverage.cluster_cache import ClusterCache, vectors_digest
from data_advisor.coverage.embedding.cached import CachedEmbedder
from data_advisor.coverage.taxonomy import load_taxonomy
from data_advisor.data import PromptSet


@pytest.fixture(scope="module")
def vectors(embedder: CachedEmbedder, sample_prompts: list[str]) -> np.ndarray:
    return embedder.encode(sample_prompts)


def _entries(cache: ClusterCache, kind: str) -> list[Path]:
    return sorted((cache.root / kind).rglob("*.npz"))


def _same(a, b) -> None:  # two ClusterResults hold the same numbers
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.coords, b.coords)
    np.testing.assert_array_equal(a.reduced, b.reduced)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    assert (a.method, a.notes, a.params) == (b.method, b.notes, b.params)


def test_second_fit_comes_from_the_cache(tmp_path: Path, vectors: np.ndarray) -> None:
    disc = ClusterDiscovery(seed=0)
    digest = vectors_digest(vectors)
    first_cache = ClusterCache(tmp_path)
    first = first_cache.fit(disc, vectors, digest=digest, model_id="m")
    assert not first.from_cache and first_cache.notes == []
    assert len(_entries(first_cache, "clusters")) == 1
    again = ClusterCache(tmp_path)  # a new process: nothing in memory
    second = again.fit(ClusterDiscovery(seed=0), vectors, digest=digest, model_id="m")
    assert second.from_cache
    assert any("read from the cluster cache" in n for n in again.notes)
    _same(first, second)
    np.testing.assert_array_equal(second.labels, ClusterDiscovery(seed=0).fit(vectors).labels)


SETTINGS = {"seed": 1, "min_cluster_size": 7, "min_samples": 3, "n_neighbors": 10, "umap_min_n": 500,
            "max_fit": 1000, "collapse_share": 0.7}


@pytest.mark.parametrize("change", [*SETTINGS, "model", "vectors", "guard rules"])
def test_anything_that_changes_discovery_changes_the_key(tmp_path: Path, vectors: np.ndarray, change: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from data_advisor.coverage.discovery import granularity

    cache = ClusterCache(tmp_path)
    digest = vectors_digest(vectors)
    cache.fit(ClusterDiscovery(seed=0), vectors, digest=digest, model_id="m")
    if change == "guard rules":  # a change to the granularity code's constants (or its version) is a new key too
        monkeypatch.setattr(granularity, "GUARD_MAX_INNER_NOISE", 0.4)
    disc = ClusterDiscovery(**({change: SETTINGS[change]} if change in SETTINGS else {}))
    v = vectors.copy()
    if change == "vectors":
        v[0] = v[1]  # one prompt changed
    r = cache.fit(disc, v, digest=vectors_digest(v), model_id="other" if change == "model" else "m")
    assert not r.from_cache
    assert len(_entries(cache, "clusters")) == 2


@pytest.mark.parametrize("damage", ["torn", "flipped bytes", "empty", "not a zip"])
def test_damaged_entry_is_reported_deleted_and_recomputed(tmp_path: Path, vectors: np.ndarray, damage: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    digest = vectors_digest(vectors)
    fresh = ClusterCache(tmp_path).fit(ClusterDiscovery(seed=0), vectors, digest=digest, model_id="m")
    (entry,) = _entries(ClusterCache(tmp_path), "clusters")
    data = entry.read_bytes()
    if damage == "torn":  # a writer killed half-way (what the atomic rename prevents, done by hand)
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "flipped bytes":  # bit rot inside an array: the zip CRC catches it
        mid = len(data) // 2
        entry.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 16]) + data[mid + 16 :])
    elif damage == "empty":
        entry.write_bytes(b"")
    else:
        entry.write_text("hello", encoding="utf-8")
    cache = ClusterCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="data_advisor"):
        again = cache.fit(ClusterDiscovery(seed=0), vectors, digest=digest, model_id="m")
    assert not again.from_cache
    _same(fresh, again)
    assert len(cache.warnings) == 1 and "damaged" in cache.warnings[0] and "recomputed" in cache.warnings[0]
    assert any("damaged" in r.getMessage() for r in caplog.records)
    # the recomputed result was stored again, complete: a third fit reads it
    third = ClusterCache(tmp_path).fit(ClusterDiscovery(seed=0), vectors, digest=digest, model_id="m")
    assert third.from_cache
    _same(fresh, third)


def test_entry_for_other_shapes_is_not_used(tmp_path: Path, vectors: np.ndarray) -> None:
    """An entry whose arrays do not fit the input (e.g. copied in by hand under another key) is never used."""
    cache = ClusterCache(tmp_path)
    digest = vectors_digest(vectors)
    cache.fit(ClusterDiscovery(seed=0), vectors, digest=digest, model_id="m")
    (entry,) = _entries(cache, "clusters")
    short = vectors[:20]
    key = cache.discovery_key(ClusterDiscovery(seed=0), len(short), digest=vectors_digest(short), model_id="m")
    target = cache.root / "clusters" / key[:2] / f"{key}.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(entry.read_bytes())
    r = ClusterCache(tmp_path).fit(ClusterDiscovery(seed=0), short, digest=vectors_digest(short), model_id="m")
    assert not r.from_cache and len(r.labels) == 20


def test_knn_graph_from_the_cache_equals_a_fresh_one(tmp_path: Path, vectors: np.ndarray) -> None:
    digest = vectors_digest(vectors)
    built = ClusterCache(tmp_path).knn_graph(vectors, 10, digest=digest)
    cached = ClusterCache(tmp_path).knn_graph(vectors, 10, digest=digest)
    fresh = build_knn_graph(vectors, 10)
    for g in (built, cached):
        np.testing.assert_array_equal(g.idx, fresh.idx)
        np.testing.assert_array_equal(g.sims, fresh.sims)
    assert len(_entries(ClusterCache(tmp_path), "knn")) == 1


def test_unwritable_cache_only_warns(tmp_path: Path, vectors: np.ndarray) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    cache = ClusterCache(blocker / "clusters")  # cannot create a folder under a file
    r = cache.fit(ClusterDiscovery(seed=0), vectors, digest=vectors_digest(vectors), model_id="m")
    assert len(r.labels) == len(vectors)
    assert cache.warnings and "could not write the cluster cache" in cache.warnings[0]


def test_reaudit_with_cached_clusters_is_byte_identical_and_remaps_anchors(
        tmp_path: Path, embedder: CachedEmbedder, sample_prompts: list[str]) -> None:
    """Cached or not, coverage.json is the same bytes; another taxonomy reuses the clusters and maps them anew."""
    prompts = PromptSet.from_texts(sample_prompts)
    catqa, sst = load_taxonomy("catqa-11"), load_taxonomy("simplesafetytests-5")
    plain = run_audit(prompts, catqa, embedder, settings=AuditSettings(taxonomy=catqa.id, seed=2))
    cache = ClusterCache(tmp_path / "clusters")
    first = run_audit(prompts, catqa, embedder, settings=AuditSettings(taxonomy=catqa.id, seed=2), cluster_cache=cache)
    cache2 = ClusterCache(tmp_path / "clusters")
    second = run_audit(prompts, catqa, embedder, settings=AuditSettings(taxonomy=catqa.id, seed=2),
                       cluster_cache=cache2)
    assert not first.clusters.from_cache and second.clusters.from_cache
    assert plain.report.to_json() == first.report.to_json() == second.report.to_json()
    assert any("cluster cache" in n for n in second.run_notes) and not first.run_notes
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    first.write(out_a)
    write_audit(second, out_b, render_html=True, plotlyjs="cdn")
    assert (out_a / "coverage.json").read_bytes() == (out_b / "coverage.json").read_bytes()
    assert "clusters read from the cluster cache" in (out_b / "report.html").read_text("utf-8")

    other = run_audit(prompts, sst, embedder, settings=AuditSettings(taxonomy=sst.id, seed=2),
                      cluster_cache=ClusterCache(tmp_path / "clusters"))
    assert other.clusters.from_cache
    np.testing.assert_array_equal(other.clusters.labels, first.clusters.labels)
    sst_ids = {p.id for p in sst.leaves()}
    assert {c.nearest_anchor for c in other.report.clusters} <= sst_ids  # mapped to the new taxonomy
    fresh = run_audit(prompts, sst, embedder, settings=AuditSettings(taxonomy=sst.id, seed=2))
    assert fresh.report.to_json() == other.report.to_json()


@pytest.mark.parametrize("odd", ["damaged, read-only", "folder", "pipe"])
def test_odd_or_undeletable_entry_is_ignored_and_recomputed(tmp_path: Path, vectors: np.ndarray, odd: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18: a damaged entry on a read-only cache raised ``OSError`` from the unlink, a folder entry
    ``IsADirectoryError``; a pipe would have blocked np.load.  The fit must go on with a warning."""
    import errno

    from tests.faults.damage import PipeWatch

    digest = vectors_digest(vectors)
    fresh = ClusterCache(tmp_path).fit(ClusterDiscovery(seed=0), vectors, digest=digest, model_id="m")
    (entry,) = _entries(ClusterCache(tmp_path), "clusters")
    entry.unlink()
    watch = PipeWatch(after_s=20)  # np.load on a pipe waited forever: fail instead of hanging
    if odd == "folder":
        entry.mkdir()
    elif odd == "pipe":
        watch.pipe(entry)
    else:
        entry.write_bytes(b"garbage")
        real_unlink = Path.unlink

        def read_only(self: Path, missing_ok: bool = False) -> None:
            if self == entry:
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            real_unlink(self, missing_ok=missing_ok)

        monkeypatch.setattr(Path, "unlink", read_only)
    cache = ClusterCache(tmp_path)
    again = cache.fit(ClusterDiscovery(seed=0), vectors, digest=digest, model_id="m")
    watch.close()
    assert not watch.hung
    assert not again.from_cache
    _same(fresh, again)
    assert cache.warnings and "damaged" in cache.warnings[0]
    if odd != "pipe":  # a pipe is replaced by the atomic write; a folder or an undeletable entry stays
        assert "could not be deleted" in cache.warnings[0]

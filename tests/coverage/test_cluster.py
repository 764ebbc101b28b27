"""Discovery on real prompt embeddings: the small-input path (spectral embedding of the k-NN graph → HDBSCAN), the
UMAP path, tiny inputs, determinism, sampling, and the shared k-NN graph."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from data_advisor.coverage.cluster import (
    ClusterDiscovery,
    ClusterResult,
    KnnGraph,
    build_knn_graph,
    default_min_cluster_size,
    english_stop_words,
    keyword_labels,
    knn_graph,
)
from data_advisor.coverage.embedding.cached import CachedEmbedder
from data_advisor.coverage.taxonomy import load_background, load_taxonomy


@pytest.fixture(scope="module")
def corpus(embedder: CachedEmbedder) -> tuple[list[str], np.ndarray]:
    """150 real, varied prompts (the built-in taxonomies' written examples, harmful and benign interleaved)."""
    harm = [e for p in load_taxonomy("catqa-11").leaves() for e in p.examples]
    benign = [e for p in load_background().leaves() for e in p.examples]
    texts: list[str] = []
    for pair in zip(harm, benign, strict=False):
        texts.extend(pair)
    texts = list(dict.fromkeys(texts))[:150]
    assert len(texts) == 150
    return texts, embedder.encode(texts)


def _check_shapes(r: ClusterResult, n: int) -> None:
    assert r.labels.shape == (n,)
    assert r.coords.shape == (n, 2)
    assert np.isfinite(r.coords).all()
    assert set(r.labels.tolist()) <= {-1, *range(n)}
    assert r.n_clusters == len(set(r.labels.tolist()) - {-1})


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_to_cluster(corpus: tuple[list[str], np.ndarray], n: int) -> None:
    _, v = corpus
    r = ClusterDiscovery().fit(v[:n])
    _check_shapes(r, n)
    assert r.method == "skipped"
    assert (r.labels == -1).all()
    assert r.n_clusters == 0
    assert any("skipped" in note and "too few" in note for note in r.notes)


def test_four_prompts_get_a_map_but_no_clusters(corpus: tuple[list[str], np.ndarray]) -> None:
    _, v = corpus
    r = ClusterDiscovery().fit(v[:4])
    _check_shapes(r, 4)
    assert r.method == "pca"
    assert (r.labels == -1).all()
    assert any("clustering skipped" in note for note in r.notes)


def test_ten_prompts_skip_umap(corpus: tuple[list[str], np.ndarray]) -> None:
    _, v = corpus
    r = ClusterDiscovery().fit(v[:10])
    _check_shapes(r, 10)
    assert r.method == "spectral+hdbscan"
    assert any("UMAP skipped" in note and "10 prompts" in note for note in r.notes)
    assert r.reduced is not None and r.reduced.shape == (10, 5)
    assert r.probabilities is not None and r.probabilities.shape == (10,)


def test_small_inputs_take_the_path_without_umap(corpus: tuple[list[str], np.ndarray]) -> None:
    """Below umap_min_n (default 200) discovery never imports UMAP (no numba compilation on a first run)."""
    import subprocess
    import sys

    _, v = corpus
    r = ClusterDiscovery(seed=0).fit(v)
    _check_shapes(r, 150)
    assert r.method == "spectral+hdbscan"
    assert r.n_clusters >= 2
    # PCA map: the coordinates are the data's projection on its first two principal components.
    centred = v - v.mean(axis=0)
    top2 = np.linalg.svd(centred, full_matrices=False)[2][:2]
    np.testing.assert_allclose(np.abs(r.coords), np.abs(centred @ top2.T), atol=1e-3)
    code = ("import sys, numpy as np; from data_advisor.coverage.cluster import ClusterDiscovery; "
            "x = np.random.default_rng(0).normal(size=(199, 32)).astype('float32'); "
            "x /= np.linalg.norm(x, axis=1, keepdims=True); ClusterDiscovery().fit(x); "
            "print(sorted(m for m in ('umap', 'numba', 'pynndescent', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_forty_prompts_umap_pipeline(corpus: tuple[list[str], np.ndarray]) -> None:
    _, v = corpus
    r = ClusterDiscovery(seed=0, umap_min_n=30).fit(v[:40])
    _check_shapes(r, 40)
    assert r.method == "umap+hdbscan"
    assert r.notes == []  # nothing was skipped
    # the UMAP path's rule (√n/4, at least 10) and min_samples 2, not the spectral path's (√40/2 → 5)
    assert r.params["min_cluster_size"] == default_min_cluster_size(40, umap_min_n=30) == 10
    assert r.params["min_samples"] == 2
    assert r.params["seed"] == 0
    assert r.reduced is not None and r.reduced.shape == (40, 5)
    assert 0.0 <= r.noise_share <= 1.0


def test_umap_reuses_a_shared_graph(corpus: tuple[list[str], np.ndarray]) -> None:
    """A graph passed in (longer than needed) gives the same result as the one UMAP would build itself."""
    _, v = corpus
    x = v[:60]
    own = ClusterDiscovery(seed=1, umap_min_n=30).fit(x)
    shared = ClusterDiscovery(seed=1, umap_min_n=30).fit(x, graph=build_knn_graph(x, 20))
    np.testing.assert_array_equal(own.labels, shared.labels)
    np.testing.assert_array_equal(own.coords, shared.coords)


@pytest.mark.parametrize("umap_min_n", [30, 1000])
def test_same_seed_same_labels_and_coords(corpus: tuple[list[str], np.ndarray], umap_min_n: int) -> None:
    _, v = corpus
    a = ClusterDiscovery(seed=7, umap_min_n=umap_min_n).fit(v[:40])
    b = ClusterDiscovery(seed=7, umap_min_n=umap_min_n).fit(v[:40].copy())
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.coords, b.coords)


def test_clusters_follow_topics(embedder: CachedEmbedder) -> None:
    """Three clearly different everyday topics: the clusters agree with them far better than chance (ARI 0)."""
    from sklearn.metrics import adjusted_rand_score

    leaves = {p.id: p for p in load_background().leaves()}
    texts: list[str] = []
    topic: list[str] = []
    for pid in ("cooking_food", "education_learning", "fiction_games_media"):
        ex = list(leaves[pid].examples)[:13]
        texts += ex
        topic += [pid] * len(ex)
    r = ClusterDiscovery(seed=0).fit(embedder.encode(texts))
    keep = r.labels != -1
    ari = adjusted_rand_score(np.array(topic)[keep], r.labels[keep])
    print(f"\n3 topics × 13 prompts: {r.n_clusters} clusters, noise {r.noise_share:.2f}, ARI {ari:.2f}")
    assert r.n_clusters >= 2
    assert keep.mean() >= 0.5
    assert ari >= 0.35  # measured 0.44–0.76 over seeds 0–4


def test_sampled_fit_assigns_every_prompt(corpus: tuple[list[str], np.ndarray]) -> None:
    _, v = corpus
    n, max_fit, seed = len(v), 60, 3
    r = ClusterDiscovery(seed=seed, max_fit=max_fit, min_cluster_size=20).fit(v)
    _check_shapes(r, n)
    assert r.method == "spectral+hdbscan+knn-extend"
    assert r.params["fit_sample"] == max_fit
    assert r.params["min_cluster_size"] == 20  # counted in prompts of the whole set…
    assert r.params["fit_min_cluster_size"] == 8  # …and scaled by the sample fraction: 20 × 60/150
    assert any("60 of 150" in note and "scaled to 8" in note for note in r.notes)

    # The documented procedure, recomputed independently: a seeded sample is clustered on its own, every other
    # prompt takes the majority label of its 5 most similar sampled prompts (−1 without a 3-of-5 majority).
    sample = np.sort(np.random.default_rng(seed).choice(n, size=max_fit, replace=False))
    alone = ClusterDiscovery(seed=seed, min_cluster_size=8).fit(v[sample])
    np.testing.assert_array_equal(r.labels[sample], alone.labels)
    np.testing.assert_array_equal(r.coords[sample], alone.coords)
    rest = np.setdiff1d(np.arange(n), sample)
    sims = v[rest] @ v[sample].T
    nearest5 = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    expected = []
    for row in nearest5:
        lab, cnt = Counter(alone.labels[row].tolist()).most_common(1)[0]
        expected.append(lab if cnt >= 3 else -1)
    agree = (r.labels[rest] == np.array(expected)).mean()
    assert agree >= 0.97  # exact ties between neighbour similarities may order differently
    lo, hi = alone.coords.min(axis=0), alone.coords.max(axis=0)
    assert ((r.coords[rest] >= lo - 1e-4) & (r.coords[rest] <= hi + 1e-4)).all()  # weighted means of fitted points


def test_knn_graph_puts_self_first_even_with_duplicates(corpus: tuple[list[str], np.ndarray]) -> None:
    _, v = corpus
    x = np.vstack([v[:20], v[:5]])  # rows 20..24 duplicate rows 0..4
    idx, dists = knn_graph(x, 6)
    n = len(x)
    assert (idx[:, 0] == np.arange(n)).all()
    assert (dists[:, 0] == 0).all()
    assert (dists >= 0).all()
    sims = x @ x.T
    for i in range(n):
        others = np.sort(np.delete(sims[i], i))[::-1][:5]  # brute force; ties make the indices ambiguous, not the values
        np.testing.assert_allclose(1.0 - dists[i, 1:], others, atol=1e-5)
        np.testing.assert_allclose(sims[i, idx[i, 1:]], others, atol=1e-5)
        assert i not in idx[i, 1:].tolist()
    for i in range(5):
        assert i + 20 in idx[i].tolist()  # the copy is a neighbour at distance ~0
        assert dists[i, idx[i].tolist().index(i + 20)] == pytest.approx(0.0, abs=1e-5)


def test_knn_graph_object_matches_the_tuple_form(corpus: tuple[list[str], np.ndarray]) -> None:
    _, v = corpus
    g = build_knn_graph(v, 8)
    idx, dists = knn_graph(v, 8)
    assert isinstance(g, KnnGraph) and g.k == 8
    np.testing.assert_array_equal(g.idx, idx)
    np.testing.assert_allclose(g.dists, dists)
    assert (g.sims[:, 0] == 1.0).all()
    np.testing.assert_allclose(g.sims[:, 1:], 1.0 - dists[:, 1:], atol=1e-6)
    np.testing.assert_array_equal(g.head(3).idx, idx[:, :3])


def test_stop_words_are_sklearns_without_importing_it() -> None:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    assert english_stop_words() == frozenset(ENGLISH_STOP_WORDS)


def test_default_min_cluster_size() -> None:
    assert default_min_cluster_size(10) == 5  # spectral path (below 200 prompts): √n/2, at least 5
    assert default_min_cluster_size(150) == 6  # √150 / 2 = 6.12
    assert default_min_cluster_size(200) == 10  # UMAP path: √n/4, at least 10
    assert default_min_cluster_size(10_000) == 25
    assert ClusterDiscovery(max_fit=400).params(1_000_000)["min_cluster_size"] == 250  # of the whole set
    assert ClusterDiscovery().params(150)["min_samples"] == 2 and ClusterDiscovery().params(10_000)["min_samples"] == 2
    assert ClusterDiscovery(umap_min_n=10**6).params(10_000)["min_samples"] == 10  # spectral rule: a fifth of 50


def test_keyword_labels_hand_computed() -> None:
    texts = ["apple apple banana", "the and of", "banana cherry", "zebra zebra zebra"]
    labels = np.array([0, 0, 1, -1])
    # counts: c0 {apple 2, banana 1} (stop words dropped), c1 {banana 1, cherry 1}; noise ignored
    # avg words per cluster = 5 / 2 = 2.5; score = cnt/size · ln(1 + 2.5 / total count of the word)
    # c0: apple ⅔·ln(2.25)=0.541, banana ⅓·ln(2.25)=0.270; c1: cherry ½·ln(3.5)=0.626, banana ½·ln(2.25)=0.405
    assert keyword_labels(texts, labels) == {0: ["apple", "banana"], 1: ["cherry", "banana"]}
    assert keyword_labels(texts, labels, top_n=1) == {0: ["apple"], 1: ["cherry"]}


def test_keyword_labels_all_noise() -> None:
    assert keyword_labels(["a b c", "d e f"], np.array([-1, -1])) == {}


def test_sampled_fit_of_the_default_rule_is_never_finer_than_a_full_fit_of_the_sample(
        corpus: tuple[list[str], np.ndarray]) -> None:
    """The default min_cluster_size scaled by the sample fraction (10 × 100/150 → 7) is raised to the rule at the
    sample's size (10), so the number of clusters stops growing above max_fit prompts."""
    _, v = corpus
    r = ClusterDiscovery(seed=0, max_fit=100, umap_min_n=50).fit(v)
    assert r.params["min_cluster_size"] == default_min_cluster_size(150, umap_min_n=50) == 10
    assert r.params["fit_min_cluster_size"] == default_min_cluster_size(100, umap_min_n=50) == 10
    assert any("at least the rule at the sample size" in note for note in r.notes)

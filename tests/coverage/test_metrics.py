"""Every metric on cases computed by hand (in the comments) or by an independent, naive computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data_advisor.coverage import metrics as M


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def basis(d: int, i: int) -> np.ndarray:
    e = np.zeros(d)
    e[i] = 1.0
    return e


# ------------------------------------------------------------------------------------ distribution metrics
def test_shares() -> None:
    np.testing.assert_allclose(M.shares([1, 3]), [0.25, 0.75])
    np.testing.assert_allclose(M.shares([2, 0, 2]), [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(M.shares([0, 0]), [0.0, 0.0])
    assert M.shares([]).shape == (0,)


def test_entropy() -> None:
    assert M.entropy([1, 1]) == pytest.approx(math.log(2))
    assert M.entropy([3, 3, 3, 3]) == pytest.approx(math.log(4))
    assert M.entropy([5, 0, 0]) == 0.0
    # -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.5623351446…
    assert M.entropy([1, 3]) == pytest.approx(0.5623351446188083)
    assert M.entropy([1, 3, 0]) == pytest.approx(0.5623351446188083)  # empty categories add nothing
    assert M.entropy([]) == 0.0
    assert M.entropy([0, 0]) == 0.0


def test_normalized_entropy() -> None:
    assert M.normalized_entropy([2, 2, 2]) == pytest.approx(1.0)
    assert M.normalized_entropy([7, 0, 0]) == pytest.approx(0.0)
    assert M.normalized_entropy([1, 1, 0]) == pytest.approx(math.log(2) / math.log(3))
    assert M.normalized_entropy([1, 3]) == pytest.approx(0.5623351446188083 / math.log(2))
    assert M.normalized_entropy([]) == 0.0
    assert M.normalized_entropy([4]) == 1.0


def test_effective_number() -> None:
    assert M.effective_number([5, 5, 5, 5]) == pytest.approx(4.0)
    assert M.effective_number([9, 0, 0]) == pytest.approx(1.0)
    assert M.effective_number([1, 3]) == pytest.approx(math.exp(0.5623351446188083))
    assert M.effective_number([0, 0]) == 0.0


def _gini_mean_abs_difference(x: list[float]) -> float:
    """Gini = Σᵢ Σⱼ |xᵢ − xⱼ| / (2 n² mean): the textbook definition, independent of the sorted-cumsum formula."""
    a = np.asarray(x, dtype=float)
    return float(np.abs(a[:, None] - a[None, :]).sum() / (2 * len(a) ** 2 * a.mean()))


def test_gini() -> None:
    assert M.gini([4, 4, 4, 4]) == pytest.approx(0.0)
    assert M.gini([0, 0, 0, 10]) == pytest.approx(0.75)  # all in one of n: (n − 1) / n
    assert M.gini([1, 2, 3]) == pytest.approx(2 / 9)  # Σ|xi−xj| = 8, 2·n²·mean = 36
    assert M.gini([3, 1, 2]) == pytest.approx(2 / 9)  # order does not matter
    assert M.gini([]) == 0.0
    assert M.gini([0, 0]) == 0.0
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = rng.integers(0, 50, size=12).tolist()
        assert M.gini(x) == pytest.approx(_gini_mean_abs_difference(x))


def test_kl_divergence() -> None:
    assert M.kl_divergence([1, 1], [5, 5]) == pytest.approx(0.0, abs=1e-9)
    # p = (½, ½), q = (¾, ¼): ½ ln(⅔) + ½ ln 2 = ½ ln(4/3)
    assert M.kl_divergence([1, 1], [3, 1]) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-5)
    # a category the target does not want contributes nothing: p = (1, 0), q = (½, ½) → ln 2
    assert M.kl_divergence([1, 0], [1, 1]) == pytest.approx(math.log(2), rel=1e-5)


def test_kl_divergence_empty_category_is_finite() -> None:
    eps = 1e-6
    # p = (½, ½), actual (1, 0) → q = ((1+ε)/(1+2ε), ε/(1+2ε))
    q0, q1 = (1 + eps) / (1 + 2 * eps), eps / (1 + 2 * eps)
    expected = 0.5 * math.log(0.5 / q0) + 0.5 * math.log(0.5 / q1)
    got = M.kl_divergence([1, 1], [1, 0], eps=eps)
    assert math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-9)
    assert got > M.kl_divergence([1, 1], [9, 1])  # missing a category is worse than thin coverage


def test_coverage_ratio() -> None:
    assert M.coverage_ratio([0, 1, 5, 7], min_count=5) == 0.5
    assert M.coverage_ratio([0, 1, 5, 7]) == 0.75
    assert M.coverage_ratio([0, 0]) == 0.0
    assert M.coverage_ratio([]) == 0.0


def test_anchor_gaps() -> None:
    # targets (1, 1, 2) → (¼, ¼, ½); counts (6, 2, 0) of 8 → shares (¾, ¼, 0)
    g = M.anchor_gaps({"a": 6, "b": 2, "c": 0, "ignored": 99}, {"a": 1, "b": 1, "c": 2})
    assert list(g) == ["a", "b", "c"]
    assert [g[k].count for k in "abc"] == [6, 2, 0]
    assert [g[k].share for k in "abc"] == pytest.approx([0.75, 0.25, 0.0])
    assert [g[k].target_share for k in "abc"] == pytest.approx([0.25, 0.25, 0.5])
    assert [g[k].gap for k in "abc"] == pytest.approx([-0.5, 0.0, 0.5])
    # deficit = ceil(target_share · total − count), at least 0: ceil(2−6)→0, ceil(2−2)=0, ceil(4−0)=4
    assert [g[k].deficit for k in "abc"] == [0, 0, 4]


def test_anchor_gaps_fractional_deficit_and_missing_keys() -> None:
    # total 5, targets ½ each: b needs ceil(2.5 − 1) = 2 more
    g = M.anchor_gaps({"a": 4, "b": 1}, {"a": 0.3, "b": 0.3})
    assert (g["a"].deficit, g["b"].deficit) == (0, 2)
    # a key absent from counts counts as 0
    g = M.anchor_gaps({"a": 3}, {"a": 1, "b": 2})
    assert g["b"].count == 0
    assert g["b"].deficit == 2  # ceil(⅔ · 3 − 0)
    # nothing counted: shares 0, gaps = targets, no deficits
    g = M.anchor_gaps({}, {"a": 1, "b": 3})
    assert [g[k].gap for k in "ab"] == pytest.approx([0.25, 0.75])
    assert [g[k].deficit for k in "ab"] == [0, 0]


# --------------------------------------------------------------------------------------- vector diversity
def _vendi_naive(x: np.ndarray) -> float:
    """Friedman & Dieng's definition, literally: eigenvalues of the n×n cosine kernel matrix divided by n."""
    x = np.asarray(x, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    k = x @ x.T / len(x)
    ev = np.linalg.eigvalsh(k)
    ev = ev[ev > 1e-12]
    return float(np.exp(-(ev * np.log(ev)).sum()))


def test_vendi_identical_vectors_is_one() -> None:
    v = unit(np.arange(1, 9, dtype=float))
    assert M.vendi_score(np.tile(v, (20, 1))) == pytest.approx(1.0)  # n > d
    assert M.vendi_score(np.tile(v, (3, 1))) == pytest.approx(1.0)  # n < d
    assert M.vendi_score(v[None, :]) == pytest.approx(1.0)
    assert M.vendi_score(np.zeros((0, 8))) == 0.0


@pytest.mark.parametrize(("k", "repeats", "d"), [(3, 4, 8), (5, 1, 16), (4, 10, 4)])
def test_vendi_orthogonal_vectors_equally_often_is_k(k: int, repeats: int, d: int) -> None:
    x = np.vstack([basis(d, i) for i in range(k) for _ in range(repeats)])
    assert M.vendi_score(x) == pytest.approx(k)


def test_vendi_two_vectors_hand_case() -> None:
    # cos = ½ → K/n = [[1, ½], [½, 1]]/2, eigenvalues ¾ and ¼ → exp(H(¾, ¼)) = exp(0.5623…)
    x = np.vstack([basis(3, 0), unit(np.array([0.5, math.sqrt(3) / 2, 0.0]))])
    assert M.vendi_score(x) == pytest.approx(math.exp(0.5623351446188083))


@pytest.mark.parametrize(("n", "d"), [(60, 8), (6, 24), (30, 30)])
def test_vendi_matches_naive_eigenvalues(n: int, d: int) -> None:
    rng = np.random.default_rng(n * 100 + d)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=(n, 1))  # unnormalised on purpose
    assert M.vendi_score(x) == pytest.approx(_vendi_naive(x), rel=1e-6)
    # accumulated a few rows at a time (how a million vectors avoid a float64 copy): the same number
    assert M.vendi_score(x.astype(np.float32), chunk_rows=7) == pytest.approx(_vendi_naive(x), rel=1e-5)


# ----------------------------------------------------------------------------------------- text diversity
def test_tokenize() -> None:
    assert M.tokenize("Don't STOP-me now, 42!") == ["don", "t", "stop", "me", "now", "42"]


def test_distinct_n() -> None:
    # tokens a b a b: unigrams 2 unique / 4; bigrams ab, ba, ab: 2 unique / 3
    assert M.distinct_n(["a b a b"], 1) == pytest.approx(0.5)
    assert M.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    # across texts: the, cat, the, dog → 3/4; bigrams never cross a text boundary: (the cat), (the dog) → 2/2
    assert M.distinct_n(["The cat", "the dog"], 1) == pytest.approx(0.75)
    assert M.distinct_n(["The cat", "the dog"], 2) == pytest.approx(1.0)
    assert M.distinct_n(["one two"], 3) == 0.0
    assert M.distinct_n([], 1) == 0.0


def test_exact_duplicates() -> None:
    texts = ["A b", "a  B", "c", "C", "d", "a b\n"]
    # normalised: "a b" ×3 (0, 1, 5), "c" ×2 (2, 3), "d"
    assert M.exact_duplicate_groups(texts) == [[0, 1, 5], [2, 3]]
    assert M.exact_duplicate_rate(texts) == pytest.approx(1 - 3 / 6)
    assert M.exact_duplicate_groups(["x", "y"]) == []
    assert M.exact_duplicate_rate(["x", "y"]) == 0.0
    assert M.exact_duplicate_rate([]) == 0.0


def test_nearest_neighbor_similarity_constructed() -> None:
    d = 6
    x = np.vstack([
        basis(d, 0),                                  # 0 ↔ 1: cos 1/√1.01 ≈ 0.995
        unit(basis(d, 0) + 0.1 * basis(d, 1)),        # 1
        basis(d, 2),                                  # 2 ↔ 3: cos 1/√2
        unit(basis(d, 2) + basis(d, 3)),              # 3
        unit(basis(d, 4) + 0.05 * basis(d, 2)),       # 4: nearest is 2 (cos ≈ 0.0499)
    ]).astype(np.float32)
    sims, nbrs = M.nearest_neighbor_similarity(x)
    c01 = 1 / math.sqrt(1.01)
    c23 = 1 / math.sqrt(2)
    c42 = 0.05 / math.sqrt(1.0025)
    np.testing.assert_allclose(sims, [c01, c01, c23, c23, c42], atol=1e-6)
    assert nbrs.tolist() == [1, 0, 3, 2, 2]
    assert M.near_duplicate_rate(sims, 0.95) == pytest.approx(2 / 5)
    assert M.near_duplicate_rate(sims, 0.7) == pytest.approx(4 / 5)
    assert M.near_duplicate_rate(np.array([])) == 0.0


def test_nearest_neighbor_similarity_exact_copies_are_not_self() -> None:
    d = 4
    x = np.vstack([basis(d, 0), basis(d, 1), basis(d, 0), basis(d, 0)]).astype(np.float32)
    sims, nbrs = M.nearest_neighbor_similarity(x)
    np.testing.assert_allclose(sims, [1.0, 0.0, 1.0, 1.0], atol=1e-6)
    for i in (0, 2, 3):
        assert nbrs[i] in {0, 2, 3} - {i}
    assert M.near_duplicate_rate(sims) == pytest.approx(3 / 4)


def test_nearest_neighbor_similarity_single_vector() -> None:
    sims, nbrs = M.nearest_neighbor_similarity(np.ones((1, 3), dtype=np.float32) / math.sqrt(3))
    assert sims.tolist() == [-1.0]
    assert nbrs.tolist() == [-1]


def test_nearest_neighbor_similarity_ivf_path_agrees_with_brute_force() -> None:
    rng = np.random.default_rng(0)
    n, d = 2000, 16
    centres = rng.normal(size=(40, d))
    x = centres[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    sims, nbrs = M.nearest_neighbor_similarity(x, ivf_above=100)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    best = s.argmax(axis=1)
    assert (nbrs == best).mean() >= 0.95
    assert (sims <= s.max(axis=1) + 1e-5).all()  # approximate search can miss, never invent
    assert (nbrs != np.arange(n)).all()


# ------------------------------------------------------------------------------------------------ ROUGE-L
def test_rouge_l_f() -> None:
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 → P = 5/6, R = 1 → F = 10/11
    assert M.rouge_l_f("the cat sat on the mat", "the cat on the mat") == pytest.approx(10 / 11)
    assert M.rouge_l_f("the cat on the mat", "the cat sat on the mat") == pytest.approx(10 / 11)
    # LCS("a b c", "c b a") = 1 → P = R = ⅓
    assert M.rouge_l_f("a b c", "c b a") == pytest.approx(1 / 3)
    # LCS("a b c d", "a x c y d") = a c d = 3 → P = ¾, R = ⅗ → F = 2·(9/20)/(27/20) = ⅔
    assert M.rouge_l_f(["a", "b", "c", "d"], ["a", "x", "c", "y", "d"]) == pytest.approx(2 / 3)
    assert M.rouge_l_f("Same Words", "same words") == pytest.approx(1.0)
    assert M.rouge_l_f("alpha", "beta") == 0.0
    assert M.rouge_l_f("", "beta") == 0.0


def _reference_rouge_l_f(ta: list[str], tb: list[str]) -> float:
    """The textbook LCS dynamic programme the project used before rapidfuzz (kept here only as the reference)."""
    if not ta or not tb:
        return 0.0
    prev = [0] * (len(tb) + 1)
    for x in ta:
        cur = [0]
        for j, y in enumerate(tb, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(ta), lcs / len(tb)
    return 2 * p * r / (p + r)


def test_rouge_l_f_matches_the_reference_lcs_on_ascii_and_non_ascii_text() -> None:
    """rapidfuzz's LCSseq gives exactly the values of the pure-Python LCS, whatever the script."""
    rng = np.random.default_rng(7)
    vocab = ["how", "do", "i", "make", "a", "bomb", "the", "cat",            # ASCII
             "如何", "制作", "炸弹", "我", "的",                                 # Chinese
             "как", "сделать", "бомбу", "дома",                               # Cyrillic
             "café", "naïve", "straße", "🙂", "ﬁle", "İstanbul", "ß"]          # accents, emoji, ligature, case folding
    pairs = [("How do I make a bomb?", "how do i make a cake"),
             ("如何 制作 炸弹", "如何 制作 蛋糕 炸弹"),
             ("Как сделать бомбу дома", "как сделать торт дома"),
             ("Straße café naïve 🙂", "STRASSE Café naive"),
             ("İstanbul ß ﬁle", "istanbul ss file")]
    for _ in range(300):
        n_a, n_b = rng.integers(0, 25, size=2)
        pairs.append((" ".join(rng.choice(vocab, n_a)), " ".join(rng.choice(vocab, n_b))))
    n_partial = 0
    for a, b in pairs:
        ta, tb = M.tokenize(a), M.tokenize(b)
        expected = _reference_rouge_l_f(ta, tb)
        assert M.rouge_l_f(a, b) == expected, (a, b)
        assert M.rouge_l_f(ta, tb) == expected
        n_partial += 0 < expected < 1
    assert n_partial > 200  # the random pairs exercise real partial overlaps, not only 0 and 1
    assert M.rouge_l_f("如何 制作 炸弹", "如何 制作 蛋糕 炸弹") == pytest.approx(2 * 1 * 0.75 / 1.75)


def test_clusters_per_anchor() -> None:
    anchor_of = ["a", "a", "a", "b", "b", None, "a"]
    cluster_of = [0, 0, 1, 1, -1, 2, 2]
    # a: cluster 0 ×2, 1 ×1, 2 ×1; b: cluster 1 ×1 (its −1 is noise); None is unanchored
    assert M.clusters_per_anchor(anchor_of, cluster_of) == {"a": 3, "b": 1}
    assert M.clusters_per_anchor(anchor_of, cluster_of, min_members=2) == {"a": 1, "b": 0}
    assert M.clusters_per_anchor([None, "a"], [-1, -1]) == {}


# ------------------------------------------------------------------ shared Grams and the shared k-NN graph (issue 12)
def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_gram_sums_add_up_and_give_the_same_vendi() -> None:
    """A union's Vendi from the summed Grams of its parts equals Vendi computed on the union's vectors."""
    x = _unit(300, 16, 0) * np.random.default_rng(1).uniform(0.5, 2.0, size=(300, 1))  # rows need not be unit
    a, b, c = x[:40], x[40:200], x[200:]
    total = M.gram_sum(a) + M.gram_sum(b) + M.gram_sum(c)
    np.testing.assert_allclose(total, M.gram_sum(x), atol=1e-10)
    assert M.vendi_from_gram(total, 300) == pytest.approx(M.vendi_score(x), rel=1e-9)
    assert M.vendi_from_gram(M.gram_sum(b), len(b)) == pytest.approx(M.vendi_score(b), rel=1e-9)
    assert M.vendi_from_gram(M.gram_sum(a[:5]), 5) == pytest.approx(M.vendi_score(a[:5]), rel=1e-9)  # n < d
    assert M.vendi_from_gram(np.zeros((16, 16)), 0) == 0.0


def test_nearest_neighbor_from_the_shared_graph_equals_a_search() -> None:
    from data_advisor.coverage.cluster import build_knn_graph

    x = _unit(200, 12, 2).astype(np.float32)
    x[150:160] = x[:10]  # exact copies: their nearest other is the original at similarity 1
    sims, _ = M.nearest_neighbor_similarity(x)
    g_sims, g_idx = M.nearest_neighbor_similarity(x, graph=build_knn_graph(x, 15))
    np.testing.assert_allclose(g_sims, sims, atol=1e-6)
    brute = x @ x.T
    np.fill_diagonal(brute, -np.inf)
    np.testing.assert_allclose(g_sims, brute.max(axis=1), atol=1e-5)
    assert (g_idx != np.arange(200)).all()
    np.testing.assert_allclose(brute[np.arange(200), g_idx], brute.max(axis=1), atol=1e-5)

"""Anchor assignment: the mechanics on constructed vectors, and its accuracy on public labelled safety sets.

Accuracy floors were set a few points below the values measured with the bundled all-MiniLM-L6-v2 and the
built-in taxonomies (the measured values are printed; run with ``-s`` to see them).  Chance is 1/6 for HarmBench,
1/12 and 1/5 for Do-Not-Answer's two levels and 0.5 for AUROC.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from data_advisor.coverage.assign import (
    DEFAULT_MARGIN_THRESHOLD,
    DEFAULT_MIN_SCORE,
    AnchorAssigner,
    AnchorSet,
    Assignments,
    build_anchors,
)
from data_advisor.coverage.embedding.cached import CachedEmbedder
from data_advisor.coverage.taxonomy import Taxonomy, load_background, load_taxonomy

# Floors ≈ 4–5 points under the measured values (bundled MiniLM, built-in taxonomies as of this writing; the values
# moved by up to 0.025 while the taxonomies' example texts were being edited).
HARMBENCH_ACC_FLOOR = 0.81  # measured 0.857 (0.847 with an earlier harmbench.yaml)
HARMBENCH_F1_FLOOR = 0.78  # measured 0.830
DNA12_ACC_FLOOR = 0.67  # measured 0.720
DNA12_F1_FLOOR = 0.66  # measured 0.705
DNA5_ACC_FLOOR = 0.74  # measured 0.784
DNA5_F1_FLOOR = 0.73  # measured 0.773
# Separation of the harm-pool relevance (harm.py; the legacy best-harm − best-background rule measured 0.802 / 0.668).
XSTEST_AUROC_FLOOR = 0.82  # measured 0.851; catqa-11 is the default taxonomy
JBB_AUROC_FLOOR = 0.70  # measured 0.739: harmful vs benign *twins* is the hard case


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def column(row: dict[str, str], name: str) -> str:
    """A column by case-insensitive name (JailbreakBench's benign file spells its columns in lower case)."""
    for k, v in row.items():
        if k.lower() == name.lower():
            return v
    raise KeyError(name)


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    return float(np.mean([a == b for a, b in zip(y_true, y_pred, strict=True)]))


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(list(y_true), list(y_pred), average="macro"))


def auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive.astype(int), scores))


def assign_texts(taxonomy: Taxonomy, embedder: CachedEmbedder, texts: Sequence[str]) -> tuple[Assignments, np.ndarray]:
    anchors = build_anchors(taxonomy, embedder, load_background())
    vectors = embedder.encode(list(texts))
    assigner = AnchorAssigner().fit(anchors)
    return assigner.assign(vectors), assigner.principle_scores(vectors)


# ------------------------------------------------------------------------------------ constructed vectors
def _basis(d: int, i: int) -> np.ndarray:
    e = np.zeros(d, dtype=np.float32)
    e[i] = 1.0
    return e


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_assign_on_constructed_anchors() -> None:
    d = 4
    # principle p0 anchored at e0 and e1, p1 at e2; background at e3
    anchors = AnchorSet(principle_ids=["p0", "p1"],
                        vectors=np.vstack([_basis(d, 0), _basis(d, 1), _basis(d, 2)]),
                        owner=np.array([0, 0, 1]), background_vectors=_basis(d, 3)[None, :])
    queries = np.vstack([
        _unit(np.array([0.9, 0.1, 0.3, 0.0])),   # p0 (via e0) vs p1 0.3/|q|
        _unit(np.array([0.1, 0.8, 0.0, 0.6])),   # p0 via e1, background 0.6 < 0.8 → anchored
        _unit(np.array([0.0, 0.2, 0.5, 0.9])),   # p1, but background wins → unanchored
        _unit(np.array([0.15, 0.05, 0.1, -1.0])),  # best harm score below min_score → unanchored
    ])
    a = AnchorAssigner().fit(anchors).assign(queries)
    q = queries
    assert a.best.tolist() == [0, 0, 1, 0]
    assert a.second.tolist() == [1, 1, 0, 1]
    np.testing.assert_allclose(a.score, [q[0, 0], q[1, 1], q[2, 2], q[3, 0]], atol=1e-6)
    np.testing.assert_allclose(a.margin, [q[0, 0] - q[0, 2], q[1, 1] - q[1, 2], q[2, 2] - q[2, 1],
                                          q[3, 0] - q[3, 2]], atol=1e-6)
    np.testing.assert_allclose(a.background_score, q[:, 3], atol=1e-6)
    np.testing.assert_allclose(a.relevance, a.score - q[:, 3], atol=1e-6)
    assert a.anchored.tolist() == [True, True, False, False]
    assert [a.anchor_id(i) for i in range(4)] == ["p0", "p0", None, None]
    assert [a.nearest_id(i) for i in range(4)] == ["p0", "p0", "p1", "p0"]
    assert a.settings == {"margin_threshold": DEFAULT_MARGIN_THRESHOLD, "min_score": DEFAULT_MIN_SCORE,
                          "use_background": True, "unanchored_rule": "taxonomy-vs-background"}  # no harm pool: legacy
    assert a.harm_score is None
    no_bg = AnchorAssigner(use_background=False).fit(anchors).assign(queries)
    assert no_bg.anchored.tolist() == [True, True, True, False]
    assert (no_bg.background_score == -1).all()


def test_runner_up_found_when_top_k_holds_one_principle() -> None:
    """Over 128 anchor vectors of one principle fill FAISS's top-k; the runner-up is then computed exactly."""
    d = 8
    rng = np.random.default_rng(0)
    crowd = np.vstack([_unit(_basis(d, 0) + 0.01 * rng.normal(size=d).astype(np.float32)) for _ in range(140)])
    other = _unit(_basis(d, 0) * 0.2 + _basis(d, 1))
    anchors = AnchorSet(principle_ids=["crowd", "other"], vectors=np.vstack([crowd, other[None, :]]),
                        owner=np.array([0] * 140 + [1]))
    q = _basis(d, 0)[None, :]
    a = AnchorAssigner(use_background=False).fit(anchors).assign(q)
    assert a.best.tolist() == [0]
    assert a.second.tolist() == [1]
    expected_margin = float((crowd @ q[0]).max() - other @ q[0])
    assert a.margin[0] == pytest.approx(expected_margin, abs=1e-5)


def test_single_principle_taxonomy_has_no_runner_up() -> None:
    anchors = AnchorSet(principle_ids=["only"], vectors=_basis(3, 0)[None, :], owner=np.array([0]))
    a = AnchorAssigner(use_background=False).fit(anchors).assign(np.vstack([_basis(3, 0), _basis(3, 1)]))
    assert a.second.tolist() == [-1, -1]
    np.testing.assert_allclose(a.margin, a.score + 1.0)


def test_assign_before_fit_raises() -> None:
    with pytest.raises(RuntimeError):
        AnchorAssigner().assign(np.zeros((1, 3), dtype=np.float32))


def test_build_anchors_layout(embedder: CachedEmbedder) -> None:
    tax = load_taxonomy("simplesafetytests-5")
    bg = load_background()
    anchors = build_anchors(tax, embedder, bg)
    leaves = tax.leaves()
    assert anchors.principle_ids == [p.id for p in leaves]
    assert len(anchors.vectors) == sum(1 + len(p.examples) for p in leaves)
    assert np.bincount(anchors.owner).tolist() == [1 + len(p.examples) for p in leaves]
    assert anchors.background_vectors is not None
    assert len(anchors.background_vectors) == sum(1 + len(p.examples) for p in bg.leaves())
    assert anchors.model_id == embedder.model_id
    # the pooled harm anchors: every built-in taxonomy's anchor texts plus this one's (de-duplicated)
    from data_advisor.coverage.harm import harm_pool_texts

    assert anchors.harm_vectors is not None and len(anchors.harm_vectors) == len(harm_pool_texts(tax))
    assert build_anchors(tax, embedder, bg, harm_pool=False).harm_vectors is None
    # each anchor vector is the embedding of its text
    first = leaves[0]
    np.testing.assert_allclose(anchors.vectors[: 1 + len(first.examples)], embedder.encode(first.anchor_texts()),
                               atol=1e-6)
    cents = anchors.principle_centroids()
    np.testing.assert_allclose(np.linalg.norm(cents, axis=1), 1.0, atol=1e-5)
    only_defs = build_anchors(tax, embedder, None, use_examples=False)
    assert len(only_defs.vectors) == len(leaves)
    assert only_defs.background_vectors is None
    assert only_defs.harm_vectors is None  # no background: no harm decision either


# ------------------------------------------------------------------------------------------ labelled data
@pytest.fixture(scope="module")
def harmbench(datasets_dir: Path, embedder: CachedEmbedder) -> dict[str, object]:
    rows = [r for r in read_csv(datasets_dir / "harmbench" / "harmbench_behaviors_text_all.csv")
            if r["SemanticCategory"] != "copyright"]
    tax = load_taxonomy("harmbench")
    amap = tax.alias_map()
    y = [amap[r["SemanticCategory"].strip().lower()] for r in rows]
    a, full = assign_texts(tax, embedder, [r["Behavior"] for r in rows])
    return {"rows": rows, "taxonomy": tax, "y": y, "assignments": a, "full": full}


@pytest.fixture(scope="module")
def do_not_answer(datasets_dir: Path, embedder: CachedEmbedder) -> dict[str, object]:
    rows = read_csv(datasets_dir / "do-not-answer" / "do_not_answer_en.csv")
    tax = load_taxonomy("do-not-answer")
    amap = tax.alias_map()
    y_leaf = [amap[r["types_of_harm"].strip().lower()] for r in rows]
    y_area = [amap[r["risk_area"].strip().lower()] for r in rows]
    a, full = assign_texts(tax, embedder, [r["question"] for r in rows])
    return {"rows": rows, "taxonomy": tax, "y_leaf": y_leaf, "y_area": y_area, "assignments": a, "full": full}


@pytest.mark.datasets
def test_harmbench_nearest_principle_accuracy(harmbench: dict[str, object]) -> None:
    a: Assignments = harmbench["assignments"]  # type: ignore[assignment]
    y: list[str] = harmbench["y"]  # type: ignore[assignment]
    assert len(y) == 300  # 400 text behaviors − 100 copyright
    pred = [a.nearest_id(i) for i in range(len(a))]
    acc, f1 = accuracy(y, pred), macro_f1(y, pred)
    print(f"\nHarmBench (6 categories, n={len(y)}): accuracy {acc:.3f}, macro-F1 {f1:.3f}")
    assert acc >= HARMBENCH_ACC_FLOOR
    assert f1 >= HARMBENCH_F1_FLOOR


@pytest.mark.datasets
def test_do_not_answer_leaf_and_parent_accuracy(do_not_answer: dict[str, object]) -> None:
    a: Assignments = do_not_answer["assignments"]  # type: ignore[assignment]
    tax: Taxonomy = do_not_answer["taxonomy"]  # type: ignore[assignment]
    y_leaf: list[str] = do_not_answer["y_leaf"]  # type: ignore[assignment]
    y_area: list[str] = do_not_answer["y_area"]  # type: ignore[assignment]
    assert len(y_leaf) == 939
    pred_leaf = [a.nearest_id(i) for i in range(len(a))]
    pred_area = [tax.ancestors(p)[-1] for p in pred_leaf]  # roll the leaf up to its risk area
    acc12, f112 = accuracy(y_leaf, pred_leaf), macro_f1(y_leaf, pred_leaf)
    acc5, f15 = accuracy(y_area, pred_area), macro_f1(y_area, pred_area)
    print(f"\nDo-Not-Answer 12 harm types: accuracy {acc12:.3f}, macro-F1 {f112:.3f}; "
          f"5 risk areas (roll-up): accuracy {acc5:.3f}, macro-F1 {f15:.3f}")
    assert acc12 >= DNA12_ACC_FLOOR
    assert f112 >= DNA12_F1_FLOOR
    assert acc5 >= DNA5_ACC_FLOOR
    assert f15 >= DNA5_F1_FLOOR
    assert acc5 >= acc12  # a coarser level cannot be harder when leaves roll up exactly


@pytest.mark.datasets
@pytest.mark.parametrize("name", ["harmbench", "do_not_answer"])
def test_scores_and_margins_match_exact_computation(request: pytest.FixtureRequest, name: str) -> None:
    data = request.getfixturevalue(name)
    a: Assignments = data["assignments"]
    full: np.ndarray = data["full"]  # (n, principles) exact max-cosine scores, plain numpy
    assert (a.margin >= 0).all()
    np.testing.assert_allclose(a.score, full.max(axis=1), atol=1e-5)
    top2 = np.sort(full, axis=1)[:, -2:]
    np.testing.assert_allclose(a.margin, top2[:, 1] - top2[:, 0], atol=1e-5)
    clear = (top2[:, 1] - top2[:, 0]) > 1e-4  # ties may break either way
    assert (a.best[clear] == full.argmax(axis=1)[clear]).all()
    # anchored is the harm-pool decision (harm.py), not a property of the taxonomy's own scores
    assert a.settings["unanchored_rule"] == "harm-pool"
    assert (a.anchored == (a.relevance >= DEFAULT_MARGIN_THRESHOLD)).all()
    assert a.harm_score is not None and ((a.harm_score >= 0.5) == a.anchored).all()


@pytest.mark.datasets
def test_relevance_separates_xstest_unsafe_from_safe(datasets_dir: Path, embedder: CachedEmbedder) -> None:
    rows = read_csv(datasets_dir / "xstest" / "xstest_prompts.csv")
    unsafe = np.array([r["label"] == "unsafe" for r in rows])
    assert (unsafe.sum(), (~unsafe).sum()) == (200, 250)
    a, _ = assign_texts(load_taxonomy("catqa-11"), embedder, [r["prompt"] for r in rows])
    auc = auroc(unsafe, a.relevance)
    print(f"\nXSTest unsafe vs safe (catqa-11): relevance AUROC {auc:.3f}; anchored share unsafe "
          f"{a.anchored[unsafe].mean():.2f} vs safe {a.anchored[~unsafe].mean():.2f}")
    assert auc >= XSTEST_AUROC_FLOOR
    assert a.anchored[unsafe].mean() > a.anchored[~unsafe].mean()


@pytest.mark.datasets
def test_relevance_separates_jailbreakbench_harmful_from_benign_twins(datasets_dir: Path,
                                                                      embedder: CachedEmbedder) -> None:
    harmful = [column(r, "Goal") for r in read_csv(datasets_dir / "jailbreakbench" / "jbb_harmful_behaviors.csv")]
    benign = [column(r, "Goal") for r in read_csv(datasets_dir / "jailbreakbench" / "jbb_benign_behaviors.csv")]
    assert (len(harmful), len(benign)) == (100, 100)
    a, _ = assign_texts(load_taxonomy("catqa-11"), embedder, harmful + benign)
    is_harmful = np.array([True] * len(harmful) + [False] * len(benign))
    auc = auroc(is_harmful, a.relevance)
    print(f"\nJailbreakBench harmful vs benign twins (catqa-11): relevance AUROC {auc:.3f}; anchored share "
          f"harmful {a.anchored[is_harmful].mean():.2f} vs benign {a.anchored[~is_harmful].mean():.2f}")
    assert auc >= JBB_AUROC_FLOOR

"""Harm relevance (the anchored / unanchored decision): mechanics, the shipped calibration, and its behaviour on
public labelled sets with a one-sentence user taxonomy.

Floors sit a few points under the values measured with the bundled MiniLM (printed with ``-s``); each set is scored
with the built-in taxonomy written beside it left out of the harm pool, as benchmarks/accuracy.py does.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from data_advisor.coverage.assign import AnchorAssigner, build_anchors
from data_advisor.coverage.embedding.cached import CachedEmbedder
from data_advisor.coverage.harm import (
    CALIBRATION_FILE,
    HarmCalibration,
    HarmScorer,
    builtin_harm_texts,
    harm_pool_texts,
    to_harm_score,
    top_k_mean,
)
from data_advisor.coverage.taxonomy import builtin_taxonomies, load_background, load_taxonomy

REPO = Path(__file__).resolve().parents[2]
USER = REPO / "benchmarks" / "taxonomies"

HARMBENCH_UNANCHORED_CEIL = 0.10  # measured 0.06 (user taxonomy, default settings)
STRONGREJECT_UNANCHORED_CEIL = 0.08  # measured 0.03
ALPACA_ANCHORED_CEIL = 0.20  # measured 0.12 (Alpaca instructions anchored by mistake)
XSTEST_AUROC_FLOOR = 0.82  # measured 0.85 (legacy rule: 0.78)
HARMBENCH_ALPACA_AUROC_FLOOR = 0.93  # measured 0.965 (legacy rule: 0.91)
JBB_TWINS_AUROC_FLOOR = 0.69  # measured 0.72 (legacy rule: 0.67); harmful vs benign twins is the hard case


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y.astype(int), s))


# ------------------------------------------------------------------------------------------------ mechanics
def test_top_k_mean_matches_sorting() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    pool = rng.normal(size=(40, 8)).astype(np.float32)
    expected = np.sort(x @ pool.T, axis=1)[:, -7:].mean(axis=1)
    np.testing.assert_allclose(top_k_mean(x, pool, 7, batch_size=16), expected, rtol=1e-5)
    # k larger than the pool: the mean over the whole pool
    np.testing.assert_allclose(top_k_mean(x, pool[:3], 30), (x @ pool[:3].T).mean(axis=1), rtol=1e-5)


def test_harm_score_is_a_monotone_map_to_unit_interval() -> None:
    rel = np.linspace(-1, 1, 201)
    s = to_harm_score(rel, 0.035)
    assert s.min() >= 0.0 and s.max() <= 1.0
    assert (np.diff(s) >= 0).all() and s[0] < 0.01 and s[-1] > 0.99
    assert to_harm_score(np.array([0.0]), 0.035)[0] == pytest.approx(0.5)


def test_shipped_calibration_is_the_file_and_plausible() -> None:
    import data_advisor.coverage as cov

    data = json.loads((Path(cov.__file__).parent / CALIBRATION_FILE).read_text("utf-8"))
    cal = HarmCalibration.load()
    assert (cal.threshold, cal.scale, cal.k) == (data["threshold"], data["scale"], data["k"])
    assert 0.0 < cal.threshold < 0.2 and 0.0 < cal.scale < 0.2 and cal.k >= 5
    assert data["fitted_by"] == "benchmarks/fit_harm.py" and data["data"]  # provenance is recorded


def test_decision_does_not_depend_on_the_taxonomy_vector_count() -> None:
    """The top-k mean gives the same relevance whether the harm side holds 1 vector or 40 of the same direction,
    while a 300-vector background is summarised by its top-k mean rather than its luckiest vector."""
    d = 16
    rng = np.random.default_rng(0)
    harm_dir = np.eye(d, dtype=np.float32)[0]
    bg_dir = np.eye(d, dtype=np.float32)[1]

    def cloud(center: np.ndarray, n: int, noise: float) -> np.ndarray:
        v = center + noise * rng.normal(size=(n, d)).astype(np.float32)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    q = cloud(0.8 * harm_dir + 0.6 * bg_dir, 200, 0.05)  # closer to harm than to background
    bg = cloud(bg_dir, 300, 0.6)  # a large, spread background: its max is high by count alone
    cal = HarmCalibration(threshold=0.0, scale=0.05, k=30)
    small = np.vstack([harm_dir])
    big = cloud(harm_dir, 40, 0.0)  # 40 copies of the same direction
    r_small = HarmScorer(small, bg, cal).relevance(q)
    r_big = HarmScorer(big, bg, cal).relevance(q)
    bg_max = (q @ bg.T).max(axis=1)
    bg_top = top_k_mean(q, bg, 30)
    assert (bg_top < bg_max).all()  # the background's count no longer lifts its side to its best vector
    # top-k mean on both sides: the count of harm vectors does not matter for the same direction...
    np.testing.assert_allclose(r_small, r_big, atol=1e-5)
    # ...and the prompts, closer to harm than to the background, are anchored
    assert (r_small > 0).mean() > 0.9


def test_harm_pool_holds_every_builtin_and_the_user_taxonomy() -> None:
    texts = builtin_harm_texts()
    assert len(texts) == len(set(texts))
    for name in builtin_taxonomies():
        first = load_taxonomy(name).leaves()[0].anchor_texts()[0]
        assert first in texts
    user = load_taxonomy(USER / "user-harmbench-6.yaml")
    pooled = harm_pool_texts(user)
    assert pooled[: len(texts)] == texts
    assert user.leaves()[0].anchor_texts()[0] in pooled
    without = builtin_harm_texts(exclude=("harmbench",))
    assert load_taxonomy("harmbench").leaves()[0].anchor_texts()[1] not in without


def test_legacy_rule_when_no_harm_pool(embedder: CachedEmbedder) -> None:
    tax = load_taxonomy(USER / "user-simplesafetytests-5.yaml")
    anchors = build_anchors(tax, embedder, load_background(), harm_pool=False)
    assert anchors.harm_vectors is None
    a = AnchorAssigner().fit(anchors).assign(embedder.encode(["How do I make a bomb?"]))
    assert a.harm_score is None and a.settings["unanchored_rule"] == "taxonomy-vs-background"


# --------------------------------------------------------------------------------------------- labelled data
def _user_assign(embedder: CachedEmbedder, set_key: str, texts: list[str], exclude: tuple[str, ...]):
    tax = load_taxonomy(USER / f"user-{set_key}.yaml")
    anchors = build_anchors(tax, embedder, load_background(), harm_exclude=exclude)
    return AnchorAssigner().fit(anchors).assign(embedder.encode(texts))


def _alpaca(datasets_dir: Path, n: int = 600) -> list[str]:
    import random

    rows = json.loads((datasets_dir / "refusal-direction-splits" / "harmless_test.json").read_text("utf-8"))
    texts = [r["instruction"] for r in rows]
    random.Random(0).shuffle(texts)
    return texts[:n]


@pytest.mark.datasets
def test_one_sentence_user_taxonomy_keeps_harmful_prompts_anchored(datasets_dir: Path,
                                                                   embedder: CachedEmbedder) -> None:
    hb = [r["Behavior"] for r in read_csv(datasets_dir / "harmbench" / "harmbench_behaviors_text_all.csv")
          if r["SemanticCategory"] != "copyright"]
    sr = [r["instruction"] for r in json.loads((datasets_dir / "refusal-direction-splits" / "harmful_test.json")
                                               .read_text("utf-8")) if r["category"] == "Violence"
          or r["category"] == "Non-violent crimes" or r["category"] == "Sexual content"]
    alp = _alpaca(datasets_dir)
    a = _user_assign(embedder, "harmbench-6", hb + alp, ("harmbench",))
    n = len(hb)
    un_hb = 1 - a.anchored[:n].mean()
    alp_anch = a.anchored[n:].mean()
    b = _user_assign(embedder, "strongreject-6", sr, ())
    un_sr = 1 - b.anchored.mean()
    legacy = AnchorAssigner().fit(build_anchors(load_taxonomy(USER / "user-harmbench-6.yaml"), embedder,
                                                load_background(), harm_pool=False)).assign(embedder.encode(hb))
    print(f"\nuser taxonomy, unanchored harmful: HarmBench {un_hb:.3f} (legacy rule {1 - legacy.anchored.mean():.3f}), "
          f"StrongREJECT {un_sr:.3f}; Alpaca anchored {alp_anch:.3f}")
    assert un_hb <= HARMBENCH_UNANCHORED_CEIL
    assert un_sr <= STRONGREJECT_UNANCHORED_CEIL
    assert alp_anch <= ALPACA_ANCHORED_CEIL
    assert 1 - legacy.anchored.mean() > 0.4  # the failure the new rule fixes is real on this data
    assert a.harm_score is not None and ((a.harm_score >= 0.5) == a.anchored).all()


@pytest.mark.datasets
def test_harm_score_separates_harmful_from_benign(datasets_dir: Path, embedder: CachedEmbedder) -> None:
    xs = read_csv(datasets_dir / "xstest" / "xstest_prompts.csv")
    y_xs = np.array([r["label"] == "unsafe" for r in xs])
    a = _user_assign(embedder, "harmbench-6", [r["prompt"] for r in xs], ())
    auc_xs = auroc(y_xs, a.harm_score)  # type: ignore[arg-type]
    jh = [r["Goal"] for r in read_csv(datasets_dir / "jailbreakbench" / "jbb_harmful_behaviors.csv")]
    jb = [r["goal"] for r in read_csv(datasets_dir / "jailbreakbench" / "jbb_benign_behaviors.csv")]
    b = _user_assign(embedder, "jailbreakbench-10", jh + jb, ("jailbreakbench-10",))
    auc_jbb = auroc(np.array([1] * len(jh) + [0] * len(jb)), b.harm_score)  # type: ignore[arg-type]
    hb = [r["Behavior"] for r in read_csv(datasets_dir / "harmbench" / "harmbench_behaviors_text_all.csv")
          if r["SemanticCategory"] != "copyright"]
    alp = _alpaca(datasets_dir)
    c = _user_assign(embedder, "harmbench-6", hb + alp, ("harmbench",))
    auc_hb = auroc(np.array([1] * len(hb) + [0] * len(alp)), c.harm_score)  # type: ignore[arg-type]
    print(f"\nharm_score AUROC: XSTest {auc_xs:.3f}, JailbreakBench twins {auc_jbb:.3f}, HarmBench vs Alpaca {auc_hb:.3f}")
    assert auc_xs >= XSTEST_AUROC_FLOOR
    assert auc_jbb >= JBB_TWINS_AUROC_FLOOR
    assert auc_hb >= HARMBENCH_ALPACA_AUROC_FLOOR


@pytest.mark.datasets
def test_anchored_decision_hardly_depends_on_the_audited_taxonomy(datasets_dir: Path,
                                                                  embedder: CachedEmbedder) -> None:
    xs = [r["prompt"] for r in read_csv(datasets_dir / "xstest" / "xstest_prompts.csv")]
    user = _user_assign(embedder, "simplesafetytests-5", xs, ())
    builtin = AnchorAssigner().fit(build_anchors(load_taxonomy("catqa-11"), embedder, load_background())).assign(
        embedder.encode(xs))
    agree = float((user.anchored == builtin.anchored).mean())
    print(f"\nXSTest anchored decision, 5-sentence user taxonomy vs built-in catqa-11: {agree:.3f} agree")
    assert agree >= 0.95


def test_calibration_applies_only_to_the_model_it_was_fitted_for() -> None:
    """Cosines of another model live on another scale: its fitted threshold must not be applied there silently."""
    from data_advisor.coverage.harm import HarmCalibration

    cal = HarmCalibration.load()
    m = cal.embedding_model
    assert m and cal.applies_to(m) and cal.applies_to(f"onnx[v1,fp32]:{m}")
    assert cal.applies_to(f"cascade[static[s1,sif=1]:{m} > {m}]@target=0.99")
    assert not cal.applies_to(f"static[s1,sif=1]:{m}") and not cal.applies_to("intfloat/e5-small-v2")
    fallback = cal.uncalibrated()
    assert fallback.threshold == 0.0 and fallback.scale == cal.scale and fallback.k == cal.k


def test_an_uncalibrated_model_is_said_in_settings_and_warnings() -> None:
    from data_advisor.coverage.taxonomy import load_taxonomy
    from data_advisor.coverage.warnings import audit_warnings

    tax = load_taxonomy("catqa-11")
    ws = audit_warnings(taxonomy=tax, leaf_counts={}, n_prompts=10, n_unanchored=0, harm_calibrated=False,
                        model_id="some/other-model")
    assert [w.code for w in ws] == ["harm_uncalibrated"] and "some/other-model" in ws[0].problem
    assert audit_warnings(taxonomy=tax, leaf_counts={}, n_prompts=10, n_unanchored=0) == []

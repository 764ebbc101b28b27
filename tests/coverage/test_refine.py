"""Transductive refinement: it lifts an untuned user taxonomy on real labelled data, never lets one principle
swallow a skewed input, is deterministic, and the audit records it (and ``--no-refine`` turns it off).

Floors sit a few points under the values measured with the bundled MiniLM (printed with ``-s``); each set is scored
with the built-in taxonomy written beside it left out of the harm pool (as benchmarks/accuracy.py does).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from data_advisor.coverage.assign import AnchorAssigner, AnchorSet, Assignments, build_anchors
from data_advisor.coverage.embedding.cached import CachedEmbedder
from data_advisor.coverage.refine import RefineSettings, principle_score_matrix, refine_assignments
from data_advisor.coverage.taxonomy import load_background, load_taxonomy

REPO = Path(__file__).resolve().parents[2]
USER = REPO / "benchmarks" / "taxonomies"

HARMBENCH_USER_F1_FLOOR = 0.68  # measured 0.713 (macro-F1, unanchored wrong; 0.650 without refinement)
STRONGREJECT_USER_F1_FLOOR = 0.59  # measured 0.63 (0.543 without refinement)
MIN_GAIN = 0.03  # refinement beats nearest-anchor assignment by at least this on both sets (measured +0.06/+0.09)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def macro_f1(gold: list[str], pred: list[str | None]) -> float:
    from sklearn.metrics import f1_score

    p = [x if x is not None else "__unanchored__" for x in pred]
    return float(f1_score(gold, p, labels=sorted(set(gold)), average="macro", zero_division=0))


# -------------------------------------------------------------------------------------------- constructed
def _toy(n_per: int = 40, seed: int = 0) -> tuple[AnchorSet, np.ndarray, Assignments]:
    """Three principles whose anchors sit off-centre of their prompt clouds (as written definitions do)."""
    rng = np.random.default_rng(seed)
    d = 12
    centers = np.eye(d, dtype=np.float32)[:3]
    x = np.vstack([c + 0.25 * rng.normal(size=(n_per, d)) for c in centers]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    anchor = centers + 0.6 * np.eye(d, dtype=np.float32)[3:6]
    anchor /= np.linalg.norm(anchor, axis=1, keepdims=True)
    anchors = AnchorSet(["a", "b", "c"], anchor.astype(np.float32), np.arange(3))
    a = AnchorAssigner(use_background=False, min_score=-1.0).fit(anchors).assign(x)
    return anchors, x, a


def test_principle_score_matrix_is_max_over_each_principles_vectors() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(size=(7, 5)).astype(np.float32)
    anchors = AnchorSet(["p", "q"], v, np.array([1, 0, 1, 1, 0, 0, 1]))
    x = rng.normal(size=(9, 5)).astype(np.float32)
    sims = x @ v.T
    expected = np.stack([sims[:, anchors.owner == 0].max(1), sims[:, anchors.owner == 1].max(1)], axis=1)
    np.testing.assert_allclose(principle_score_matrix(x, anchors, batch_size=4), expected, rtol=1e-5)


def test_refinement_is_deterministic_and_keeps_the_anchored_mask() -> None:
    anchors, x, a = _toy()
    r1, i1 = refine_assignments(a, x, anchors, seed=7)
    r2, i2 = refine_assignments(a, x, anchors, seed=7)
    assert i1.ran and not i1.fell_back
    assert (r1.best == r2.best).all() and i1.n_moved == i2.n_moved
    assert (r1.anchored == a.anchored).all()
    # score/second/margin describe the refined principle
    full = principle_score_matrix(x, anchors)
    rows = np.arange(len(x))
    np.testing.assert_allclose(r1.score, full[rows, r1.best], atol=1e-6)
    assert (r1.second != r1.best).all()
    assert r1.settings["refine"]["n_moved"] == i1.n_moved  # type: ignore[index]


def test_collapse_guard_falls_back_when_one_principle_would_swallow_the_set() -> None:
    anchors, x, a = _toy()
    n = len(x)
    # a pathological shared graph: every prompt's neighbours are ten prompts of principle "a"
    idx = np.column_stack([np.arange(n)] + [np.full(n, i) for i in range(10)]).astype(np.int64)
    dist = np.zeros_like(idx, dtype=np.float32)
    r, info = refine_assignments(a, x, anchors, graph=(idx, dist),
                                 settings=RefineSettings(alpha=0.95, iterations=30))
    assert info.fell_back and "would grow" in info.reason
    assert (r.best == a.best).all()  # the unrefined assignment is kept
    assert r.settings["refine"]["fell_back"] is True  # type: ignore[index]


def test_large_input_without_a_graph_runs_the_kmeans_step_only() -> None:
    anchors, x, a = _toy()
    _, info = refine_assignments(a, x, anchors, settings=RefineSettings(graph_max=10))
    assert info.ran and info.graph.startswith("none: k-means step only")


# ------------------------------------------------------------------------------------------ labelled data
def _user_case(embedder: CachedEmbedder, key: str, texts: list[str], labels: list[str],
               exclude: tuple[str, ...]) -> tuple[list[str], Assignments, Assignments, AnchorSet, np.ndarray]:
    tax = load_taxonomy(USER / f"user-{key}.yaml")
    amap = tax.alias_map()
    gold = [amap[lab.strip().lower()] for lab in labels]
    anchors = build_anchors(tax, embedder, load_background(), harm_exclude=exclude)
    vecs = embedder.encode(texts)
    a = AnchorAssigner().fit(anchors).assign(vecs)
    r, _ = refine_assignments(a, vecs, anchors)
    return gold, a, r, anchors, vecs


def _strongreject(datasets_dir: Path) -> tuple[list[str], list[str]]:
    rows = json.loads((datasets_dir / "refusal-direction-splits" / "harmful_test.json").read_text("utf-8"))
    keep = {"Non-violent crimes", "Violence", "Disinformation and deception", "Hate, harassment and discrimination",
            "Illegal goods and services", "Sexual content"}
    rows = [r for r in rows if r["category"] in keep]
    return [r["instruction"] for r in rows], [r["category"] for r in rows]


@pytest.mark.datasets
def test_refinement_lifts_untuned_user_taxonomies(datasets_dir: Path, embedder: CachedEmbedder) -> None:
    hb = [r for r in read_csv(datasets_dir / "harmbench" / "harmbench_behaviors_text_all.csv")
          if r["SemanticCategory"] != "copyright"]
    cases = {
        "harmbench-6": ([r["Behavior"] for r in hb], [r["SemanticCategory"] for r in hb], ("harmbench",),
                        HARMBENCH_USER_F1_FLOOR),
        "strongreject-6": (*_strongreject(datasets_dir), (), STRONGREJECT_USER_F1_FLOOR),
    }
    for key, (texts, labels, exclude, floor) in cases.items():
        gold, a, r, _, _ = _user_case(embedder, key, texts, labels, exclude)
        before = macro_f1(gold, [a.anchor_id(i) for i in range(len(a))])
        after = macro_f1(gold, [r.anchor_id(i) for i in range(len(r))])
        print(f"\n{key} user taxonomy, default settings: macro-F1 {after:.3f} (no refinement {before:.3f}); "
              f"unanchored {1 - r.anchored.mean():.3f}")
        assert after >= floor
        assert after - before >= MIN_GAIN


@pytest.mark.datasets
def test_refinement_does_not_let_a_dominant_principle_swallow_a_skewed_input(datasets_dir: Path,
                                                                             embedder: CachedEmbedder) -> None:
    """90% of the input from one category: the minority categories keep their prompts (recall barely moves)."""
    texts, labels = _strongreject(datasets_dir)
    tax = load_taxonomy(USER / "user-strongreject-6.yaml")
    amap = tax.alias_map()
    gold_all = np.array([amap[lab.strip().lower()] for lab in labels])
    major = "violence"
    rng = np.random.default_rng(0)
    maj_idx = np.where(gold_all == major)[0]
    minor_idx = np.concatenate([rng.choice(np.where(gold_all == g)[0], 6, replace=False)
                                for g in sorted(set(gold_all) - {major})])
    # repeat the majority (with its own texts) until it is ~90% of the input
    reps = int(np.ceil(9 * len(minor_idx) / len(maj_idx)))
    idx = np.concatenate([np.tile(maj_idx, reps)[: 9 * len(minor_idx)], minor_idx])
    vecs = embedder.encode([texts[i] for i in idx])
    gold = gold_all[idx]
    anchors = build_anchors(tax, embedder, load_background())
    a = AnchorAssigner().fit(anchors).assign(vecs)
    r, info = refine_assignments(a, vecs, anchors)
    ids = np.array(anchors.principle_ids)
    minority = gold != major
    rec_before = float((ids[a.best][minority] == gold[minority]).mean())
    rec_after = float((ids[r.best][minority] == gold[minority]).mean())
    share_before = float((ids[a.best] == major).mean())
    share_after = float((ids[r.best] == major).mean())
    print(f"\nskewed input ({minority.sum()} minority of {len(gold)}): minority recall {rec_before:.2f} → {rec_after:.2f}, "
          f"majority share {share_before:.2f} → {share_after:.2f}, fell back: {info.fell_back}")
    assert rec_after >= rec_before - 0.1
    assert share_after <= share_before + RefineSettings().max_share_gain


@pytest.mark.datasets
def test_refinement_is_deterministic_on_real_data(datasets_dir: Path, embedder: CachedEmbedder) -> None:
    texts, labels = _strongreject(datasets_dir)
    _, _, r1, anchors, vecs = _user_case(embedder, "strongreject-6", texts, labels, ())
    a = AnchorAssigner().fit(anchors).assign(vecs)
    r2, _ = refine_assignments(a, vecs, anchors, seed=0)
    assert (r1.best == r2.best).all()
    np.testing.assert_array_equal(r1.margin, r2.margin)


# ------------------------------------------------------------------------------------------------ audit/CLI
def test_audit_records_refinement_and_no_refine_changes_results(embedder: CachedEmbedder, run_cli, tmp_path: Path,
                                                                sample_prompts: list[str]) -> None:
    from data_advisor.coverage.audit import AuditSettings, run_audit
    from data_advisor.data import PromptSet

    prompts = PromptSet.from_texts(list(sample_prompts))
    tax = load_taxonomy(USER / "user-simplesafetytests-5.yaml")
    on = run_audit(prompts, tax, embedder, settings=AuditSettings(taxonomy=tax.id, cluster=False))
    off = run_audit(prompts, tax, embedder, settings=AuditSettings(taxonomy=tax.id, cluster=False, refine=False))
    info = on.report.settings["assignment"]["refine"]
    assert info["ran"] is True and on.report.metrics["refine_moved"] == info["n_moved"]
    assert off.report.settings["assignment"]["refine"]["ran"] is False
    assert off.report.metrics["refine_moved"] == 0
    moved = int((on.assignments.best != off.assignments.best)[on.assignments.anchored].sum())
    assert moved == info["n_moved"]
    rows = list(on.rows())
    assert all(0.0 <= r["harm_score"] <= 1.0 for r in rows)
    assert all((r["anchor_id"] is not None) == (r["harm_score"] >= 0.5) for r in rows)

    # the CLI flag reaches the settings, and the report card says refinement was off
    inp = tmp_path / "p.txt"
    inp.write_text("\n".join(sample_prompts) + "\n", "utf-8")
    out = tmp_path / "off"
    code, _, err = run_cli("audit", inp, "--taxonomy", USER / "user-simplesafetytests-5.yaml", "--out", out,
                           "--no-cluster", "-q", "--no-refine")
    assert code == 0, err
    cov = json.loads((out / "coverage.json").read_text("utf-8"))
    assert cov["settings"]["refine"] is False and cov["settings"]["assignment"]["refine"]["ran"] is False
    html = (out / "report.html").read_text("utf-8")
    assert "Refinement" in html and "turned off (--no-refine" in html
    from data_advisor.reports._audit import refine_card

    assert refine_card(on.report)[1] == str(info["n_moved"])

"""Reviewer labels applied to an audit (coverage/estimates.py, coverage/labelled.py): reviewed rows, what the labels
teach the other prompts, the estimates in coverage.json, the base-rate boundary, and schema compatibility.

The real-set tests simulate a reviewer with the gold labels of Do-Not-Answer (12 types of harm) and its one-sentence
user taxonomy: 60 labels (5 per principle), 30 of them a uniform random slice.  Floors sit under the values measured
with the bundled MiniLM (printed with ``-s``; benchmarks/labels.py measures every set).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from data_advisor.coverage.assign import AnchorAssigner, build_anchors
from data_advisor.coverage.estimates import MAX_FOLDS, adapt_base_rate, apply_labels, cross_fit, shrunk_rectifier, wilson
from data_advisor.coverage.labelled import base_rate_offset, estimate_base_rate, fit_softmax, refit_gate, softmax_log_proba
from data_advisor.coverage.labels import LabelMatch, ReviewLabels
from data_advisor.coverage.refine import refine_assignments
from data_advisor.coverage.report import CoverageReport
from data_advisor.coverage.taxonomy import load_background, load_taxonomy

REPO = Path(__file__).resolve().parents[2]
USER = REPO / "benchmarks" / "taxonomies"


# ------------------------------------------------------------------------------------------------ mechanics
def test_em_base_rate_matches_quapy_and_recovers_a_known_prior() -> None:
    EMQ = pytest.importorskip("quapy.method.aggregative").EMQ  # the reference implementation, test extra

    rng = np.random.default_rng(0)
    y = rng.random(4000) < 0.1  # 10 % harmful
    z = np.where(y, rng.normal(1.5, 1.0, 4000), rng.normal(-1.5, 1.0, 4000))
    p = 1 / (1 + np.exp(-3 * z))  # calibrated P(harm | z) under a 50 % prior: log-odds 3z for N(±1.5, 1)
    ours = estimate_base_rate(p)
    prev, _ = EMQ.EM(np.array([0.5, 0.5]), np.c_[1 - p, p])
    assert abs(ours - float(prev[1])) < 1e-3
    assert abs(ours - 0.1) < 0.03
    # a set estimated 10 % harmful moves the boundary up; an all-harmful one keeps it
    assert base_rate_offset(p, scale=0.05)[0] > 0
    assert base_rate_offset(np.full(100, 0.9), scale=0.05)[0] == 0.0


def test_refit_gate_follows_the_labels_and_stays_near_the_prior_without_them() -> None:
    r = np.r_[np.linspace(-0.1, 0.05, 20), np.linspace(0.08, 0.2, 20)]  # harmful above 0.065
    y = r > 0.065
    b = refit_gate(r, y, scale=0.02, prior_offset=0.0)
    assert 0.03 < b < 0.09
    assert abs(refit_gate(r[:0], y[:0], scale=0.02, prior_offset=0.01) - 0.01) < 1e-9
    assert refit_gate(r[y], y[y], scale=0.02, prior_offset=0.0) < 0.0  # all-harmful labels lower the boundary


def test_wilson_and_shrinkage() -> None:
    lo, hi = wilson(21, 30)
    assert abs(lo - 0.521) < 0.002 and abs(hi - 0.833) < 0.002
    rng = np.random.default_rng(0)
    noise = np.eye(6)[rng.integers(0, 6, 30)] - np.eye(6)[rng.integers(0, 6, 30)]  # pure noise: mostly dropped
    assert np.abs(shrunk_rectifier(noise)).sum() < np.abs(noise.mean(axis=0)).sum()
    biased = np.tile(np.r_[0.5, -0.5, 0, 0, 0, 0], (30, 1))  # a consistent bias: kept in full
    np.testing.assert_allclose(shrunk_rectifier(biased), biased[0])


# ------------------------------------------------------------------------------------------------ audits
def test_softmax_head_solves_scikit_learns_objective_and_warm_starts_to_the_same_optimum() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    k, d, n = 7, 48, 160
    centres = rng.normal(size=(k, d))
    y = rng.integers(0, k, n)
    x = centres[y] * 0.4 + rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    test = rng.normal(size=(300, d))
    sw = np.where(np.arange(n) % 3 == 0, 2.0, 1.0)
    ref = LogisticRegression(C=10.0, class_weight="balanced", solver="newton-cg", tol=1e-8, max_iter=5000)
    ref.fit(x, y, sample_weight=sw)
    w = fit_softmax(x, y, k, sw, 10.0, tol=1e-7)
    assert np.abs(softmax_log_proba(w, test) - ref.predict_log_proba(test)).max() < 1e-3
    keep = np.arange(n) >= 5  # a fold: warm start from the full fit reaches the fold's own optimum
    cold = fit_softmax(x[keep], y[keep], k, sw[keep], 10.0, tol=1e-7)
    warm = fit_softmax(x[keep], y[keep], k, sw[keep], 10.0, start=w, tol=1e-7)
    assert np.abs(softmax_log_proba(warm, test) - softmax_log_proba(cold, test)).max() < 1e-3
    absent = fit_softmax(x[y != 2], y[y != 2], k, sw[y != 2], 10.0)  # a class without rows is never predicted
    assert np.isneginf(softmax_log_proba(absent, test)[:, 2]).all()


class _SpyModel:
    """Records what each cross-fit fold trained on and was graded on; predicts the true class."""

    def __init__(self, truth: dict[int, int]) -> None:
        self.truth, self.calls = truth, []

    def predict(self, train_idx: np.ndarray, train_y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, float]:
        self.calls.append((set(train_idx.tolist()), train_y.copy(), set(rows.tolist())))
        return np.array([self.truth[r] for r in rows]), 0.0


@pytest.mark.parametrize("n_random", [25, 60])
def test_cross_fit_keeps_every_class_in_each_fold_and_never_grades_with_a_model_that_saw_the_label(
        n_random: int) -> None:
    # 25 random labels over 5 principles (review's default n on a 5-leaf taxonomy): the old 5 random folds often
    # held out all of a class's labels; stratified folds hold out at most ceil(count / folds) of each class
    rng = np.random.default_rng(1)
    y_rand = rng.permutation(np.resize(np.arange(5), n_random))
    y = np.concatenate([y_rand, rng.integers(0, 5, 10)])  # plus 10 informative labels, always in training
    idx = rng.choice(1000, len(y), replace=False)
    match = LabelMatch(idx=idx, y=y, random=np.arange(len(y)) < n_random, missing=[])
    spy = _SpyModel(dict(zip(idx.tolist(), y.tolist(), strict=True)))
    oof = cross_fit(spy, match, seed=0)  # type: ignore[arg-type]
    np.testing.assert_array_equal(oof, y_rand)
    assert len(spy.calls) == min(MAX_FOLDS, n_random)
    graded: list[int] = []
    for train, train_y, rows in spy.calls:
        assert not train & rows  # a label never grades a model that learned from it
        assert set(idx[n_random:].tolist()) <= train  # informative labels always teach
        assert set(train_y.tolist()) == set(range(5))  # every class keeps labels in every fold
        held_y = [y[np.where(idx == r)[0][0]] for r in rows]
        assert max(np.bincount(held_y)) <= -(-max(np.bincount(y_rand)) // len(spy.calls))
        graded += rows
    assert sorted(graded) == sorted(idx[:n_random].tolist())  # every random label graded exactly once


def _labels_file(path: Path, rows: list[tuple[str, str | None, str]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": "", "suggested": None, "margin": 0.0, "why": w,
                                        "label": lab}) + "\n" for i, lab, w in rows), "utf-8")
    return path


def test_labelled_audit_marks_reviewed_rows_and_writes_estimates(tmp_path: Path, sample_prompts: list[str],
                                                                 embedder) -> None:
    from data_advisor.api import audit
    from data_advisor.data import PromptSet

    prompts = PromptSet.from_texts(sample_prompts)
    ids = prompts.ids
    rows = [(ids[0], "none", "random"), (ids[1], "malware-viruses", "random"), (ids[2], None, "random"),
            (ids[3], "fraud-deception", "informative")]
    f = _labels_file(tmp_path / "review.jsonl", rows)
    plain = audit(prompts, out=tmp_path / "a0", embedder=embedder, cluster=False, render_html=False)
    assert plain.estimates == "unverified"
    rep = audit(prompts, out=tmp_path / "a1", embedder=embedder, cluster=False, labels=f)
    got = {json.loads(ln)["id"]: json.loads(ln) for ln in (tmp_path / "a1" / "assignments.jsonl").open()}
    assert got[ids[0]]["reviewed"] and got[ids[0]]["anchor_id"] is None
    assert got[ids[1]]["reviewed"] and got[ids[1]]["anchor_id"] == "malware-viruses"
    assert got[ids[3]]["reviewed"] and got[ids[3]]["anchor_id"] == "fraud-deception"
    assert not got[ids[2]]["reviewed"]  # label null: ignored
    assert sum(r["reviewed"] for r in got.values()) == 3
    # too few random labels to estimate: said so, with the reason
    assert isinstance(rep.estimates, dict) and rep.estimates["status"] == "unverified"
    assert "random-slice labels" in rep.estimates["reason"]
    saved = json.loads((tmp_path / "a1" / "coverage.json").read_text())
    assert saved["schema_version"] == "1.2" and saved["settings"]["labels"].endswith("review.jsonl")
    html = (tmp_path / "a1" / "report.html").read_text("utf-8")
    assert "How sure are these numbers" in html and "not enough to estimate" in html


def test_schema_compatibility(tmp_path: Path, sample_prompts: list[str], embedder) -> None:
    from data_advisor.api import audit

    rep = audit(sample_prompts[:20], out=tmp_path / "a", embedder=embedder, cluster=False, render_html=False)
    d = rep.to_dict()
    assert d["estimates"] == "unverified"
    old = {k: v for k, v in d.items() if k != "estimates"} | {"schema_version": "1.1"}
    assert CoverageReport.from_dict(old).estimates == "unverified"  # files written before 1.2 still read
    assert CoverageReport.from_dict(json.loads(json.dumps(d))).estimates == "unverified"


# ------------------------------------------------------------------------------------------------ real set
def _dna(datasets_dir: Path, column: str = "types_of_harm") -> tuple[list[str], list[str]]:
    with open(datasets_dir / "do-not-answer" / "do_not_answer_en.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["question"] for r in rows], [r[column] for r in rows]


def _macro_f1(gold: list[str], pred: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=sorted(set(gold)), average="macro", zero_division=0))


@pytest.mark.datasets
def test_labels_improve_unreviewed_prompts_and_estimates_hold_the_truth(datasets_dir: Path, embedder) -> None:
    texts, raw = _dna(datasets_dir)
    tax = load_taxonomy(USER / "user-do-not-answer-12.yaml")
    amap = tax.alias_map()
    gold = [amap[lab.strip().lower()] for lab in raw]
    vecs = embedder.encode(texts)
    anchors = build_anchors(tax, embedder, load_background(), harm_exclude=("do-not-answer",))
    base, _ = refine_assignments(adapt_base_rate(AnchorAssigner().fit(anchors).assign(vecs)), vecs, anchors)
    ids = [f"p{i}" for i in range(len(texts))]
    rng = np.random.default_rng(0)
    rand = rng.choice(len(texts), 30, replace=False)
    order = [i for i in np.argsort(base.margin) if i not in set(rand.tolist())][:30]  # informative: low margin
    labels = ReviewLabels([ids[i] for i in [*rand, *order]], [gold[i] for i in [*rand, *order]],
                          ["random"] * 30 + ["informative"] * 30, source="simulated")
    out = apply_labels(base, vecs, anchors, ids, labels)
    un = np.where(~out.reviewed)[0]
    before = _macro_f1([gold[i] for i in un], [base.anchor_id(i) or "none" for i in un])
    after_pred = [out.assignments.anchor_id(i) or "none" for i in un]
    after = _macro_f1([gold[i] for i in un], after_pred)
    truth = float(np.mean([after_pred[j] == gold[i] for j, i in enumerate(un)]))
    est = out.estimates
    print(f"\nmacro-F1 on unreviewed prompts: {before:.3f} → {after:.3f}; accuracy {truth:.3f}, estimate "
          f"{est['accuracy']['value']:.3f} {est['accuracy']['ci95']}")
    assert after >= before + 0.10  # measured 0.39 → 0.60 (benchmarks/labels.py)
    lo, hi = est["accuracy"]["ci95"]
    assert lo <= truth <= hi and hi - lo <= 0.36
    assert est["accuracy"]["n"] == 30 and est["n_informative"] == 30
    shares = {c: gold.count(c) / len(gold) for c in [*amap.values(), "none"]}
    inside = [est["anchors"][c]["ci95"][0] - 1e-9 <= shares[c] <= est["anchors"][c]["ci95"][1] + 1e-9
              for c in est["anchors"]]
    assert np.mean(inside) >= 0.8
    assert abs(sum(a["share"] for a in est["anchors"].values()) - 1.0) < 1e-6


@pytest.mark.datasets
def test_accuracy_estimate_at_small_n_holds_the_truth_on_a_five_principle_taxonomy(datasets_dir: Path,
                                                                                  embedder) -> None:
    """25 random labels over 5 principles (review's default n there), 10 reviewer draws.  With 5 random folds the
    fold models often lost a class's only labels and graded worse models than the final one: mean error −0.050
    over these draws (the interval missed 0.63 at 0.36 [0.17, 0.52] in one CLI run); stratified folds: −0.026.
    Any single draw of 25 labels can still be unrepresentative (draw 0's labels are ones the unlabelled audit got
    28 % right against 41 % overall), so the test asks for the nominal coverage over draws, not every draw."""
    texts, raw = _dna(datasets_dir, "risk_area")
    tax = load_taxonomy(USER / "user-do-not-answer-5.yaml")
    amap = tax.alias_map()
    gold = [amap[lab.strip().lower()] for lab in raw]
    vecs = embedder.encode(texts)
    anchors = build_anchors(tax, embedder, load_background(), harm_exclude=("do-not-answer",))
    base, _ = refine_assignments(adapt_base_rate(AnchorAssigner().fit(anchors).assign(vecs)), vecs, anchors)
    ids = [f"p{i}" for i in range(len(texts))]
    hits, errors, widths = [], [], []
    for seed in range(10):
        rand = np.random.default_rng(seed).choice(len(texts), 25, replace=False)
        labels = ReviewLabels([ids[i] for i in rand], [gold[i] for i in rand], ["random"] * 25, source="simulated")
        out = apply_labels(base, vecs, anchors, ids, labels)
        un = np.where(~out.reviewed)[0]
        truth = float(np.mean([(out.assignments.anchor_id(i) or "none") == gold[i] for i in un]))
        lo, hi = out.estimates["accuracy"]["ci95"]
        hits.append(lo <= truth <= hi)
        errors.append(out.estimates["accuracy"]["value"] - truth)
        widths.append(hi - lo)
    print(f"\ncoverage {np.mean(hits):.2f}, mean error {np.mean(errors):+.3f}, widest {max(widths):.3f}")
    widest = wilson(12.5, 25)[1] - wilson(12.5, 25)[0]  # a binomial interval on 25 labels is at most this wide
    assert np.mean(hits) >= 0.8 and max(widths) <= widest + 1e-9
    assert abs(float(np.mean(errors))) <= 0.04  # no longer systematically pessimistic


def test_labelled_audit_base_carries_labels_into_the_monitor(tmp_path: Path, sample_prompts: list[str],
                                                             embedder) -> None:
    """`--base AUDIT` from a labelled audit: reviewed prompts keep their labels in generate / curate's monitor."""
    from data_advisor.advisor.base import load_base
    from data_advisor.advisor.monitor import CoverageMonitor
    from data_advisor.api import audit
    from data_advisor.data import PromptSet

    prompts = PromptSet.from_texts(sample_prompts)
    ids = prompts.ids
    f = _labels_file(tmp_path / "review.jsonl", [(ids[0], "child-abuse", "random"), (ids[1], "none", "random")])
    audit(prompts, out=tmp_path / "a", embedder=embedder, cluster=False, render_html=False, labels=f)
    base = load_base(tmp_path / "a")
    assert base.anchor_ids is not None
    assert base.anchor_ids[0] == "child-abuse" and base.anchor_ids[1] is None
    monitor = CoverageMonitor(load_taxonomy("catqa-11"), embedder)
    a = monitor.add_base(base.ids, base.texts, embedder.encode(base.texts), anchor_ids=base.anchor_ids)
    assert a.anchor_id(0) == "child-abuse" and a.anchor_id(1) is None
    got = [json.loads(ln)["anchor_id"] for ln in (tmp_path / "a" / "assignments.jsonl").open()]
    assert [a.anchor_id(i) for i in range(len(got))] == got  # the monitor starts from the labelled audit's counts
    # an unlabelled audit folder carries nothing
    audit(prompts, out=tmp_path / "b", embedder=embedder, cluster=False, render_html=False)
    assert load_base(tmp_path / "b").anchor_ids is None

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
from data_advisor.coverage.estimates import adapt_base_rate, apply_labels, shrunk_rectifier, wilson
from data_advisor.coverage.labelled import base_rate_offset, estimate_base_rate, refit_gate
from data_advisor.coverage.labels import ReviewLabels
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
def _dna(datasets_dir: Path) -> tuple[list[str], list[str]]:
    with open(datasets_dir / "do-not-answer" / "do_not_answer_en.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["question"] for r in rows], [r["types_of_harm"] for r in rows]


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

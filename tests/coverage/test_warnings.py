"""Guard-rail warnings: pure functions over a taxonomy and an audit's counts (coverage/warnings.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_advisor.coverage import warnings as W
from data_advisor.coverage.taxonomy import load_taxonomy, parse_taxonomy

REPO = Path(__file__).resolve().parents[2]


def _taxonomy(n_examples: int = 0, targets: tuple[float, ...] = (1, 1, 1, 1)):
    principles = []
    for i, t in enumerate(targets):
        ex = "".join(f"\n    - 'example {j} of p{i}'" for j in range(n_examples))
        principles.append(f"  - id: p{i}\n    name: Principle {i}\n    description: one sentence {i}\n"
                          f"    target: {t}\n" + (f"    examples:{ex}\n" if n_examples else ""))
    return parse_taxonomy("id: t\nname: T\nprinciples:\n" + "".join(principles), "/tmp/t.yaml")


def test_unanchored_high_names_missing_examples_and_the_enrich_fix() -> None:
    tax = _taxonomy(0)
    out = W.audit_warnings(taxonomy=tax, leaf_counts={"p0": 10, "p1": 10, "p2": 10, "p3": 10}, n_prompts=100,
                           n_unanchored=60, source="data/my prompts.jsonl")
    codes = [w.code for w in out]
    assert codes == ["unanchored_high"]
    w = out[0]
    assert w.problem.startswith("60% of prompts are unanchored")
    assert "fewer than 3 examples" in w.cause and "off-taxonomy" in w.cause
    assert "data-advisor taxonomy enrich /tmp/t.yaml --from 'data/my prompts.jsonl' --out t-enriched.yaml" in w.fix
    assert "--taxonomy" in w.fix
    line = w.one_line()
    assert "\n" not in line and "likely cause:" in line and "fix:" in line


def test_unanchored_cause_without_thin_principles_is_off_taxonomy_only() -> None:
    tax = _taxonomy(3)
    w = W.audit_warnings(taxonomy=tax, leaf_counts={"p0": 20}, n_prompts=100, n_unanchored=80)[0]
    assert w.code == "unanchored_high" and "fewer than 3 examples" not in w.cause and "off-taxonomy" in w.cause


def test_no_warning_below_thresholds() -> None:
    tax = _taxonomy(3)
    counts = {"p0": 30, "p1": 25, "p2": 25, "p3": 20}
    assert W.audit_warnings(taxonomy=tax, leaf_counts=counts, n_prompts=130, n_unanchored=30) == []


def test_empty_and_dominant_principles() -> None:
    tax = _taxonomy(3)
    out = W.audit_warnings(taxonomy=tax, leaf_counts={"p0": 70, "p1": 30}, n_prompts=100, n_unanchored=0)
    by = {w.code: w for w in out}
    assert set(by) == {"empty_principles", "dominant_principle"}
    assert by["empty_principles"].principles == ("p2", "p3")
    assert "Principle 2, Principle 3" in by["empty_principles"].problem
    assert by["dominant_principle"].principles == ("p0",)
    assert "70%" in by["dominant_principle"].problem and "target 25%" in by["dominant_principle"].problem


def test_small_sets_do_not_warn_about_empty_or_dominant_principles() -> None:
    """With fewer than 3 anchored prompts per principle an empty principle is expected by chance."""
    tax = _taxonomy(3)
    assert W.audit_warnings(taxonomy=tax, leaf_counts={"p0": 9, "p1": 2}, n_prompts=11, n_unanchored=0) == []


def test_a_principle_targeted_heavily_is_not_dominant() -> None:
    tax = _taxonomy(3, targets=(6, 1, 1, 1))
    out = W.audit_warnings(taxonomy=tax, leaf_counts={"p0": 70, "p1": 10, "p2": 10, "p3": 10}, n_prompts=100,
                           n_unanchored=0)
    assert out == []


def test_warning_dict_round_trip() -> None:
    tax = _taxonomy(0)
    out = W.audit_warnings(taxonomy=tax, leaf_counts={"p0": 100}, n_prompts=200, n_unanchored=100)
    assert W.warnings_from_dicts([w.to_dict() for w in out]) == out
    assert W.warnings_from_dicts(None) == []


def test_few_examples_on_a_user_taxonomy_but_not_on_a_builtin() -> None:
    user = load_taxonomy(REPO / "benchmarks" / "taxonomies" / "user-harmbench-6.yaml")
    out = W.taxonomy_warnings(user)
    assert [w.code for w in out] == ["few_examples"]
    assert out[0].problem.startswith("6 of 6 principles have fewer than 3 examples (6 have none)")
    assert "matched by their one-line description only" in out[0].cause
    assert W.taxonomy_warnings(load_taxonomy("catqa-11")) == []


def test_examples_cost_cites_the_measured_figures() -> None:
    """The figure `taxonomy validate` prints is the one benchmarks/enrich.py measured, not a typed-in guess."""
    path = REPO / "benchmarks" / "results" / "enrich.json"
    if not path.exists():
        pytest.skip("benchmarks/results/enrich.json not generated yet (python benchmarks/enrich.py)")
    measured = json.loads(path.read_text("utf-8"))["examples_cost"]
    assert measured == W.EXAMPLES_COST
    text = W.examples_cost_text()
    assert f"{measured['dev_macro_f1_points']:.0f} points" in text
    assert f"{measured['held_out_macro_f1_points']:+.1f} points" in text
    assert f"forced-nearest macro-F1 by {measured['held_out_forced_macro_f1_points']:+.1f}" in text

"""Taxonomies: the built-ins load and are true to their sources; a bad YAML file gets an error naming file,
principle and problem."""

from __future__ import annotations

import csv
import re
import textwrap
from pathlib import Path

import pytest

from data_advisor.coverage.taxonomy import (
    Taxonomy,
    builtin_taxonomies,
    load_background,
    load_taxonomy,
    parse_taxonomy,
)
from data_advisor.errors import TaxonomyError

MIN_EXAMPLES_PER_LEAF = 10


def _all_builtins() -> list[str]:
    return [*builtin_taxonomies(), "background"]


def _load(name: str) -> Taxonomy:
    return load_background() if name == "background" else load_taxonomy(name)


def _require_builtin(name: str) -> Taxonomy:
    assert name in builtin_taxonomies(), f"built-in taxonomy {name!r} is missing"
    return load_taxonomy(name)


# --------------------------------------------------------------------------------------------- built-ins
def test_expected_builtins_present() -> None:
    names = builtin_taxonomies()
    for name in ("catqa-11", "harmbench", "do-not-answer", "jailbreakbench-10", "simplesafetytests-5", "llamaguard3",
                 "beavertails-14", "mlcommons-ailuminate"):
        assert name in names
    assert "background" not in names  # the benign anchor set is not a harm taxonomy


@pytest.mark.parametrize("name", _all_builtins())
def test_builtin_loads_with_enough_examples(name: str) -> None:
    t = _load(name)
    assert t.id == name
    assert t.name and t.source
    leaves = t.leaves()
    assert leaves
    thin = {p.id: len(p.examples) for p in leaves if len(p.examples) < MIN_EXAMPLES_PER_LEAF}
    assert not thin, f"leaves with fewer than {MIN_EXAMPLES_PER_LEAF} examples: {thin}"
    for p in leaves:
        assert p.description, p.id
        assert len(set(p.examples)) == len(p.examples), f"{p.id} repeats an example"
    shares = t.target_shares()
    assert set(shares) == {p.id for p in leaves}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in shares.values())


@pytest.mark.parametrize("name", builtin_taxonomies())
def test_builtin_examples_distinct_from_background(name: str) -> None:
    """A harm anchor example that is also a benign background anchor would cancel itself out."""
    bg = {e.strip().lower() for p in load_background().principles for e in p.examples}
    shared = [e for p in load_taxonomy(name).principles for e in p.examples if e.strip().lower() in bg]
    assert not shared


@pytest.mark.parametrize("name", _all_builtins())
def test_builtin_round_trips_through_to_dict(name: str) -> None:
    import yaml

    t = _load(name)
    again = parse_taxonomy(yaml.safe_dump(t.to_dict(), allow_unicode=True, sort_keys=False), "<round-trip>")
    assert again == t
    assert again.fingerprint() == t.fingerprint()


# The category names as their sources publish them (papers / dataset label columns), written out independently.
SOURCE_LABELS: dict[str, list[str]] = {
    "harmbench": ["chemical_biological", "cybercrime_intrusion", "harassment_bullying", "harmful", "illegal",
                  "misinformation_disinformation"],
    "catqa-11": ["Illegal Activity", "Child Abuse", "Hate/Harass/Violence", "Malware Viruses", "Physical Harm",
                 "Economic Harm", "Fraud/Deception", "Adult Content", "Political Campaigning",
                 "Privacy Violation Activity", "Tailored Financial Advice"],
    "jailbreakbench-10": ["Harassment/Discrimination", "Malware/Hacking", "Physical harm", "Economic harm",
                          "Fraud/Deception", "Disinformation", "Sexual/Adult content", "Privacy", "Expert advice",
                          "Government decision-making"],
    "simplesafetytests-5": ["Suicide, Self-Harm, and Eating Disorders", "Physical harm and Violence",
                            "Illegal and Highly Regulated items", "Scams and fraud", "Child safety"],
    "beavertails-14": ["animal_abuse", "child_abuse", "controversial_topics,politics",
                       "discrimination,stereotype,injustice", "drug_abuse,weapons,banned_substance",
                       "financial_crime,property_crime,theft", "hate_speech,offensive_language",
                       "misinformation_regarding_ethics,laws_and_safety", "non_violent_unethical_behavior",
                       "privacy_violation", "self_harm", "sexually_explicit,adult_content", "terrorism,organized_crime",
                       "violence,aiding_and_abetting,incitement"],
    "do-not-answer": [
        "Risks from leaking or inferring sensitive information (organization/gov)", "Assisting illegal activities",
        "Compromise privacy by leaking or inferring private information (person/individual)",
        "Social stereotypes and unfair discrimination", "Disseminating false or misleading information",
        "Nudging or advising users to perform unethical or unsafe actions", "Mental Health or Overreliance Crisis",
        "Causing material harm by disseminating misinformation e.g. in medicine or law", "Toxic language (hate speech)",
        "Treat Chatbot as a Human", "Reducing the cost of disinformation campaigns", "Adult Content",
    ],
}


@pytest.mark.parametrize("name", sorted(SOURCE_LABELS))
def test_names_true_to_source(name: str) -> None:
    t = _require_builtin(name)
    labels = SOURCE_LABELS[name]
    leaves = t.leaves()
    assert len(leaves) == len(labels)
    amap = t.alias_map()
    mapped = [amap.get(label.strip().lower()) for label in labels]
    assert None not in mapped, [lab for lab, m in zip(labels, mapped, strict=True) if m is None]
    assert sorted(mapped) == sorted(p.id for p in leaves)  # one source label per leaf, each leaf named once


def test_llamaguard3_ids_are_s1_to_s14() -> None:
    t = load_taxonomy("llamaguard3")
    assert [p.id for p in t.leaves()] == [f"S{i}" for i in range(1, 15)]
    expected = ["Violent Crimes", "Non-Violent Crimes", "Sex-Related Crimes", "Child Sexual Exploitation", "Defamation",
                "Specialized Advice", "Privacy", "Intellectual Property", "Indiscriminate Weapons", "Hate",
                "Suicide & Self-Harm", "Sexual Content", "Elections", "Code Interpreter Abuse"]
    amap = t.alias_map()
    assert [amap.get(n.lower()) for n in expected] == [f"S{i}" for i in range(1, 15)]


def test_harmbench_excludes_copyright() -> None:
    t = load_taxonomy("harmbench")
    assert "copyright" not in t.alias_map()


def _csv_column(path: Path, column: str) -> set[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {row[column] for row in csv.DictReader(fh)}


@pytest.mark.datasets
@pytest.mark.parametrize(("name", "relpath", "column", "exclude"), [
    ("harmbench", "harmbench/harmbench_behaviors_text_all.csv", "SemanticCategory", {"copyright"}),
    ("do-not-answer", "do-not-answer/do_not_answer_en.csv", "types_of_harm", set()),
    ("do-not-answer", "do-not-answer/do_not_answer_en.csv", "risk_area", set()),
    ("simplesafetytests-5", "simplesafetytests/SimpleSafetyTests - test cases.csv", "harm_area", set()),
    ("jailbreakbench-10", "jailbreakbench/jbb_harmful_behaviors.csv", "Category", set()),
])
def test_dataset_labels_map_to_principles(datasets_dir: Path, name: str, relpath: str, column: str,
                                          exclude: set[str]) -> None:
    t = _require_builtin(name)
    labels = _csv_column(datasets_dir / relpath, column) - exclude
    amap = t.alias_map()
    unmapped = sorted(lab for lab in labels if lab.strip().lower() not in amap)
    assert not unmapped
    mapped = {amap[lab.strip().lower()] for lab in labels}
    assert len(mapped) == len(labels)  # distinct labels stay distinct


# ---------------------------------------------------------------------------------------------- hierarchy
def test_do_not_answer_hierarchy() -> None:
    t = load_taxonomy("do-not-answer")
    assert t.is_hierarchical
    parents = [p for p in t.principles if t.children(p.id)]
    leaves = t.leaves()
    assert len(parents) == 5
    assert len(leaves) == 12
    assert all(p.parent is None for p in parents)
    assert {leaf.parent for leaf in leaves} == {p.id for p in parents}
    for leaf in leaves:
        assert t.ancestors(leaf.id) == [leaf.parent]
    shares = t.target_shares()
    assert set(shares) == {leaf.id for leaf in leaves}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert sum(len(t.children(p.id)) for p in parents) == 12
    amap = t.alias_map()
    for area in ["Information Hazards", "Malicious Uses", "Discrimination, Exclusion, Toxicity, Hateful, Offensive",
                 "Misinformation Harms", "Human-Chatbot Interaction Harms"]:
        assert amap[area.lower()] in {p.id for p in parents}


def test_flat_taxonomy_is_not_hierarchical() -> None:
    t = load_taxonomy("catqa-11")
    assert not t.is_hierarchical
    assert len(t.leaves()) == len(t.principles) == 11


def _yaml(body: str) -> str:
    return textwrap.dedent(body).lstrip()


GOOD = _yaml("""
    id: mini
    name: Mini taxonomy
    version: "2"
    source: written for the tests
    principles:
      - id: A
        name: Group A
        target: 2
      - id: a1
        name: Leaf a1
        description: first leaf
        parent: A
        target: 1
        examples: ["example one", "example two"]
        aliases: ["Leaf One"]
      - id: a2
        name: Leaf a2
        parent: A
        target: 3
      - id: b1
        name: Leaf b1
""")


def test_target_shares_multiply_down_the_tree(tmp_path: Path) -> None:
    p = tmp_path / "mini.yaml"
    p.write_text(GOOD, encoding="utf-8")
    t = load_taxonomy(p)
    assert (t.id, t.version, t.path) == ("mini", "2", str(p))
    assert [x.id for x in t.leaves()] == ["a1", "a2", "b1"]
    # raw weights: a1 = 1·2, a2 = 3·2, b1 = 1 (default) → total 9
    assert t.target_shares() == pytest.approx({"a1": 2 / 9, "a2": 6 / 9, "b1": 1 / 9})
    assert t.ancestors("a2") == ["A"]
    assert [c.id for c in t.children("A")] == ["a1", "a2"]
    amap = t.alias_map()
    assert amap["leaf one"] == amap["leaf a1"] == amap["a1"] == "a1"
    assert t.by_id("a1").anchor_texts() == ["Leaf a1: first leaf", "example one", "example two"]
    assert t.by_id("b1").anchor_texts() == ["Leaf b1"]


def test_fingerprint_follows_content() -> None:
    a = parse_taxonomy(GOOD, "a")
    assert parse_taxonomy(GOOD, "elsewhere").fingerprint() == a.fingerprint()
    assert parse_taxonomy(GOOD.replace("example two", "example 2"), "b").fingerprint() != a.fingerprint()


# ---------------------------------------------------------------------------------------------- validation
def _error_for(tmp_path: Path, text: str) -> tuple[str, Path]:
    p = tmp_path / "tax.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(TaxonomyError) as ei:
        load_taxonomy(p)
    msg = ei.value.one_line()
    assert "\n" not in msg
    assert " — fix: " in msg and ei.value.fix
    assert str(p) in msg, msg
    return msg, p


BAD_CASES = {
    "duplicate id": (GOOD + "  - id: a2\n    name: Again\n", ["duplicate principle id 'a2'"]),
    "unknown parent": (GOOD.replace("parent: A\n    target: 3", "parent: Z\n    target: 3"),
                       ["principle 'a2'", "parent 'Z'", "not defined"]),
    "own parent": (GOOD.replace("parent: A\n    target: 3", "parent: a2\n    target: 3"),
                   ["principle 'a2'", "its own parent"]),
    "unknown principle key": (GOOD.replace("    name: Leaf b1\n", "    name: Leaf b1\n    colour: red\n"),
                              ["principle 'b1'", "unknown keys", "colour"]),
    "unknown top-level key": ("author: me\n" + GOOD, ["unknown top-level keys", "author"]),
    "missing name": (GOOD.replace("    name: Leaf b1\n", ""), ["principle 'b1'", "no name"]),
    "empty name": (GOOD.replace("name: Leaf b1", "name: '  '"), ["principle 'b1'", "no name"]),
    "missing id": (GOOD + "  - name: Nameless\n", ["principle #5", "no id"]),
    "negative target": (GOOD.replace("target: 3", "target: -1"), ["principle 'a2'", "invalid target", "-1"]),
    "text target": (GOOD.replace("target: 3", "target: lots"), ["principle 'a2'", "invalid target", "lots"]),
    "boolean target": (GOOD.replace("target: 3", "target: true"), ["principle 'a2'", "invalid target"]),
    "examples not a list": (GOOD.replace('examples: ["example one", "example two"]', "examples: just one"),
                            ["principle 'a1'", "'examples'", "list of strings"]),
    "missing principles": ("id: x\nname: X\n", ["missing required key 'principles'"]),
    "empty principles": ("id: x\nname: X\nprinciples: []\n", ["non-empty list"]),
    "not a mapping": ("- just\n- a list\n", ["not a YAML mapping"]),
    "principle not a mapping": ("id: x\nname: X\nprinciples:\n  - just text\n", ["principle #1", "not a mapping"]),
    "all targets zero": ("id: x\nname: X\nprinciples:\n  - id: a\n    name: A\n    target: 0\n", ["targets are zero"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_validation_error_names_file_principle_and_problem(tmp_path: Path, case: str) -> None:
    text, needles = BAD_CASES[case]
    msg, _ = _error_for(tmp_path, text)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_parent_cycle(tmp_path: Path) -> None:
    text = _yaml("""
        id: cyc
        name: Cycle
        principles:
          - id: x
            name: X
            parent: z
          - id: y
            name: Y
            parent: x
          - id: z
            name: Z
            parent: y
          - id: leaf
            name: Leaf
    """)
    msg, _ = _error_for(tmp_path, text)
    assert "parent cycle" in msg
    cycle = re.search(r"parent cycle ([\w -> ]+?) —", msg)
    assert cycle, msg
    nodes = cycle.group(1).split(" -> ")
    assert nodes[0] == nodes[-1]
    assert set(nodes) == {"x", "y", "z"}


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    text = "id: t\nname: T\nprinciples:\n  - id: a\n    name: A: B\n"
    msg, _ = _error_for(tmp_path, text)
    assert "invalid YAML at line 5" in msg


def test_invalid_yaml_unclosed_bracket_names_a_line(tmp_path: Path) -> None:
    text = "id: t\nname: T\nprinciples:\n  - id: a\n    name: A\n    examples: [\"one\", \"two\"\n  - id: b\n"
    msg, _ = _error_for(tmp_path, text)
    assert re.search(r"invalid YAML at line \d+", msg), msg


def test_unknown_taxonomy_name_lists_builtins() -> None:
    with pytest.raises(TaxonomyError) as ei:
        load_taxonomy("no-such-taxonomy")
    msg = ei.value.one_line()
    assert "'no-such-taxonomy'" in msg
    assert "\n" not in msg
    for name in builtin_taxonomies():
        assert name in ei.value.fix


def test_missing_taxonomy_file(tmp_path: Path) -> None:
    p = tmp_path / "missing.yaml"
    with pytest.raises(TaxonomyError) as ei:
        load_taxonomy(p)
    assert str(p) in ei.value.one_line()
    assert "not found" in ei.value.problem
    assert ei.value.fix


# ------------------------------------------------------------------------------------- hostile files (issue 13)
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN", "1.0e+300", "-0.5", "1.0e+7"])
def test_non_finite_negative_or_huge_target_is_refused(tmp_path: Path, value: str) -> None:
    """`target: .inf` validated and made every share nan ("nan%" in `taxonomy show`, every gap 0 in the audit)."""
    msg, _ = _error_for(tmp_path, GOOD.replace("target: 3", f"target: {value}"))
    assert "principle 'a2'" in msg and "invalid target" in msg and "finite" in msg


def test_deep_chains_whose_weights_would_overflow_are_refused(tmp_path: Path) -> None:
    """Each weight in range, but their product down a 60-level chain overflows to inf (shares nan); the depth cap
    also keeps validation linear (a 40,000-level chain was quadratic)."""
    chain = "".join(f"  - id: p{i}\n    name: P{i}\n    target: 1000000\n" + (f"    parent: p{i - 1}\n" if i else "")
                    for i in range(60))
    msg, _ = _error_for(tmp_path, "id: deep\nname: Deep\nprinciples:\n" + chain + "  - id: other\n    name: Other\n")
    assert "levels deep" in msg


def test_too_many_principles_or_examples_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from data_advisor.coverage import taxonomy as T

    monkeypatch.setattr(T, "MAX_PRINCIPLES", 3)
    msg, _ = _error_for(tmp_path, GOOD)
    assert "4 principles, over the limit of 3" in msg
    monkeypatch.setattr(T, "MAX_PRINCIPLES", 5_000)
    monkeypatch.setattr(T, "MAX_EXAMPLES", 1)
    msg, _ = _error_for(tmp_path, GOOD)
    assert "2 examples, over the limit of 1" in msg


def test_zero_parent_target_leaving_no_share_is_refused(tmp_path: Path) -> None:
    """Leaf weights > 0 but a zero parent weight: every share 0/0 (a ZeroDivisionError before)."""
    text = "id: z\nname: Z\nprinciples:\n  - id: g\n    name: G\n    target: 0\n  - id: l\n    name: L\n    parent: g\n"
    msg, _ = _error_for(tmp_path, text)
    assert "out of range" in msg


def test_taxonomy_that_is_not_utf8_is_a_one_line_error(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes(GOOD.replace("first leaf", "caf\u00e9 leaf").encode("latin-1"))
    with pytest.raises(TaxonomyError) as ei:
        load_taxonomy(p)
    assert "not valid UTF-8" in ei.value.problem and "line 11" in ei.value.problem and str(p) in ei.value.problem
    assert ei.value.fix and ei.value.exit_code == 2


@pytest.mark.parametrize("name", ["folder.yaml", "folder"])
def test_taxonomy_path_that_is_a_folder_is_a_one_line_error(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.mkdir()
    with pytest.raises(TaxonomyError, match="is a folder") as ei:
        load_taxonomy(p)
    assert ei.value.fix


def test_yaml_aliases_are_refused(tmp_path: Path) -> None:
    """Taxonomies never need aliases, and nested aliases are the "billion laughs" attack."""
    text = GOOD.replace('examples: ["example one", "example two"]', 'examples: &ex ["example one", "example two"]')
    text = text.replace("    name: Leaf b1\n", "    name: Leaf b1\n    examples: *ex\n")
    msg, _ = _error_for(tmp_path, text)
    assert "alias" in msg and "line" in msg


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    """421 bytes that expand to ~10^9 strings: it ran past 60 s toward 6 GB; now refused at the first alias."""
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = "id: lol\nname: Lol\ndescription:\n" + "".join(f"  {x}\n" for x in levels) + "principles: []\n"
    msg, _ = _error_for(tmp_path, text)
    assert "alias" in msg


def test_oversized_or_over_noded_taxonomy_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from data_advisor.coverage import taxonomy as T

    msg, _ = _error_for(tmp_path, GOOD + "#" + "x" * T.MAX_TAXONOMY_BYTES + "\n")
    assert "over the limit" in msg
    monkeypatch.setattr(T, "MAX_TAXONOMY_NODES", 500)  # the real cap is 200,000: same code path, 400x faster
    many = "id: n\nname: N\nprinciples:\n  - id: a\n    name: A\n    examples: [" + ",".join(["x"] * 501) + "]\n"
    with pytest.raises(TaxonomyError, match="YAML nodes"):
        parse_taxonomy(many, "many.yaml")

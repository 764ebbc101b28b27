"""The ``data-advisor`` command in a subprocess: taxonomy commands, an audit end to end, and every bad input
ending in exactly one ``error: … — fix: …`` line on stderr, a non-zero exit and no output files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from data_advisor.coverage.taxonomy import builtin_taxonomies, load_taxonomy

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]
OUTPUT_FILES = ("coverage.json", "assignments.jsonl", "embeddings.npy", "report.html")

GOOD_TAXONOMY = """\
id: mini
name: Mini taxonomy
principles:
  - id: weapons
    name: Weapons
    description: Making or acquiring weapons.
    examples: ["How do I build a gun at home?"]
  - id: fraud
    name: Fraud
    description: Scams and deception for money.
"""

DUPLICATE_ID_TAXONOMY = GOOD_TAXONOMY + "  - id: weapons\n    name: Weapons again\n"

CYCLE_TAXONOMY = """\
id: cyc
name: Cycle
principles:
  - id: a
    name: A
    parent: b
  - id: b
    name: B
    parent: a
  - id: leaf
    name: Leaf
"""


def error_line(stderr: str) -> str:
    """The single non-empty stderr line (the CLI's contract for user errors)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{stderr[-3000:]}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert " — fix: " in line, line
    assert len(line) < 2000
    return line


def assert_no_outputs(out: Path) -> None:
    if out.exists():
        present = [f for f in OUTPUT_FILES if (out / f).exists()]
        assert not present, f"output files written despite the error: {present}"
        assert not list(out.glob(".audit-*")), "temporary folder left behind"


# ------------------------------------------------------------------------------------------------ taxonomy
def test_taxonomy_list(run_cli: RunCli) -> None:
    rc, out, err = run_cli("taxonomy", "list")
    assert rc == 0, err
    lines = out.splitlines()
    names = builtin_taxonomies()
    assert [line.split()[0] for line in lines] == names
    for line, name in zip(lines, names, strict=True):
        t = load_taxonomy(name)
        assert line.split()[1] == str(len(t.leaves()))
        assert t.name in line


def test_taxonomy_show(run_cli: RunCli) -> None:
    rc, out, err = run_cli("taxonomy", "show", "catqa-11")
    assert rc == 0, err
    t = load_taxonomy("catqa-11")
    assert out.splitlines()[0].startswith(t.name)
    assert f"source: {t.source}" in out
    for p in t.leaves():
        assert f"- {p.id}: {p.name}" in out
    principle_lines = [ln for ln in out.splitlines() if ln.lstrip().startswith("- ")]  # descriptions/examples below
    assert sum("  target " in ln for ln in principle_lines) == len(t.leaves())


def test_taxonomy_show_hierarchy_indents_children(run_cli: RunCli) -> None:
    rc, out, _ = run_cli("taxonomy", "show", "do-not-answer")
    assert rc == 0
    t = load_taxonomy("do-not-answer")
    for p in t.principles:
        indent = "  " if p.parent else ""
        assert any(line.startswith(f"{indent}- {p.id}: ") for line in out.splitlines()), p.id


def test_taxonomy_show_json(run_cli: RunCli) -> None:
    rc, out, _ = run_cli("taxonomy", "show", "harmbench", "--json")
    assert rc == 0
    assert json.loads(out) == load_taxonomy("harmbench").to_dict()


def test_taxonomy_validate_good_file(run_cli: RunCli, tmp_path: Path) -> None:
    p = tmp_path / "mini.yaml"
    p.write_text(GOOD_TAXONOMY, encoding="utf-8")
    rc, out, err = run_cli("taxonomy", "validate", str(p))
    assert rc == 0, err
    assert out.strip() == "ok: mini — 2 principles (2 leaves), 1 examples"


@pytest.mark.parametrize(("text", "needle"), [
    (DUPLICATE_ID_TAXONOMY, "duplicate principle id 'weapons'"),
    (CYCLE_TAXONOMY, "parent cycle"),
    (GOOD_TAXONOMY.replace("name: Fraud", "name: Fraud\n    colour: red"), "unknown keys"),
    ("id: x\nname: X\nprinciples:\n  - id: a\n    name: A: B\n", "invalid YAML at line 5"),
])
def test_taxonomy_validate_bad_file(run_cli: RunCli, tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text, encoding="utf-8")
    rc, out, err = run_cli("taxonomy", "validate", str(p))
    assert rc == 2
    assert out == ""
    line = error_line(err)
    assert needle in line
    assert str(p) in line


def test_taxonomy_show_needs_a_name(run_cli: RunCli) -> None:
    rc, _, err = run_cli("taxonomy", "show")
    assert rc != 0
    assert "taxonomy show" in error_line(err)


def test_version(run_cli: RunCli) -> None:
    import data_advisor

    rc, out, _ = run_cli("--version")
    assert rc == 0
    assert out.strip() == f"data-advisor {data_advisor.__version__}"


# --------------------------------------------------------------------------------------------------- audit
def test_audit_end_to_end(run_cli: RunCli, tmp_path: Path, sample_prompts: list[str]) -> None:
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i:02d}", "prompt": t}) + "\n" for i, t in enumerate(sample_prompts)),
                   encoding="utf-8")
    out = tmp_path / "out"
    # What a SIGKILL during an earlier audit's output writing leaves (pid above any pid_max: that writer is gone).
    stale = out / ".audit-4194305-abcd1234"
    stale.mkdir(parents=True)
    (stale / "embeddings.npy").write_bytes(b"\0" * 4096)
    rc, _, err = run_cli("audit", src, "--out", out, "--taxonomy", "catqa-11", "-q", cwd=tmp_path, timeout=600)
    assert rc == 0, err[-3000:]
    assert not [line for line in err.splitlines() if line.startswith("error")]
    assert "audit done" in err
    assert "loaded" not in err  # -q: the final summary only
    files = {p.name for p in out.iterdir()}
    assert files >= {"coverage.json", "assignments.jsonl", "embeddings.npy", "report.html"}
    assert not [f for f in files if f.startswith(".")]  # no temp files or folders left, the stale one removed
    cov = json.loads((out / "coverage.json").read_text("utf-8"))
    assert cov["dataset"]["n_prompts"] == len(sample_prompts)
    assert cov["dataset"]["text_field"] == "prompt"
    assert cov["taxonomy"]["id"] == "catqa-11"
    assert cov["settings"]["seed"] == 0
    rows = [json.loads(line) for line in (out / "assignments.jsonl").read_text("utf-8").splitlines()]
    assert [r["id"] for r in rows] == [f"p{i:02d}" for i in range(len(sample_prompts))]
    assert [r["text"] for r in rows] == sample_prompts
    m = cov["metrics"]
    summary = f"{m['anchors_covered']}/{m['n_leaf_anchors']} anchors covered"
    assert summary in err


def _jsonl(rows: list[object]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


# (case id) → (input file name, input bytes or None for "do not create", extra CLI args, needle in the error line)
BAD_INPUTS: dict[str, tuple[str, bytes | None, list[str], str]] = {
    "missing file": ("nope.jsonl", None, [], "input file not found"),
    "empty file": ("empty.jsonl", b"", [], "input file is empty"),
    "invalid JSON line": ("bad.jsonl", b'{"text": "a"}\n{"text": "b"}\n{"text": oops}\n', [], "invalid JSON on line 3"),
    "missing field": ("p.jsonl", _jsonl([{"prompt": "a"}, {"question": "b"}]), ["--text-field", "prompt"],
                      "has no field 'prompt'; fields found: question"),
    "non-UTF-8": ("p.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n', [], "byte 0xe9 on line 2"),
    "empty text": ("p.jsonl", _jsonl([{"text": "ok"}, {"text": "   "}]), [], "empty or whitespace-only text"),
    "1 MB text": ("p.jsonl", _jsonl([{"text": "x" * 1_000_000}]), [], "1,000,000 characters"),
    "duplicate ids": ("p.jsonl", _jsonl([{"id": 1, "text": "a"}, {"id": 1, "text": "b"}]), [], "duplicate id '1'"),
    "unknown taxonomy": ("p.jsonl", _jsonl([{"text": "a"}]), ["--taxonomy", "no-such-taxonomy"],
                         "unknown taxonomy 'no-such-taxonomy'"),
    "duplicate-id taxonomy": ("p.jsonl", _jsonl([{"text": "a"}]), ["--taxonomy", "{tmp}/dup.yaml"],
                              "duplicate principle id 'weapons'"),
    "parent-cycle taxonomy": ("p.jsonl", _jsonl([{"text": "a"}]), ["--taxonomy", "{tmp}/cycle.yaml"], "parent cycle"),
    "missing taxonomy file": ("p.jsonl", _jsonl([{"text": "a"}]), ["--taxonomy", "{tmp}/absent.yaml"],
                              "taxonomy file not found"),
    "unwritable output folder": ("p.jsonl", _jsonl([{"text": "a"}]), ["--out", "{tmp}/a-file/out"],
                                 "cannot write to output folder"),
    # issue 13: hostile or damaged inputs that were exit 0 or a traceback
    "NUL-only text": ("p.jsonl", _jsonl([{"text": "ok"}, {"text": "\x00\x00\x00"}]), [], "line 2"),
    "not-UTF-8 taxonomy": ("p.jsonl", _jsonl([{"text": "a"}]), ["--taxonomy", "{tmp}/latin1.yaml"],
                           "not valid UTF-8"),
    "taxonomy folder": ("p.jsonl", _jsonl([{"text": "a"}]), ["--taxonomy", "{tmp}"], "is a folder"),
    "infinite target": ("p.jsonl", _jsonl([{"text": "a"}]), ["--taxonomy", "{tmp}/inf.yaml"], "invalid target"),
    "aliased taxonomy": ("p.jsonl", _jsonl([{"text": "a"}]), ["--taxonomy", "{tmp}/alias.yaml"], "alias"),
    "missing input, deep --out": ("nope.jsonl", None, ["--out", "{tmp}/a/deep/er"], "input file not found"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_audit_bad_input(run_cli: RunCli, tmp_path: Path, case: str) -> None:
    name, data, extra, needle = BAD_INPUTS[case]
    (tmp_path / "dup.yaml").write_text(DUPLICATE_ID_TAXONOMY, encoding="utf-8")
    (tmp_path / "cycle.yaml").write_text(CYCLE_TAXONOMY, encoding="utf-8")
    (tmp_path / "a-file").write_text("a regular file", encoding="utf-8")
    (tmp_path / "latin1.yaml").write_bytes(GOOD_TAXONOMY.replace("Scams", "Scams \u00e0 la").encode("latin-1"))
    (tmp_path / "inf.yaml").write_text(GOOD_TAXONOMY + "    target: .inf\n", encoding="utf-8")
    (tmp_path / "alias.yaml").write_text(GOOD_TAXONOMY.replace('examples: ["', 'examples: &ex ["')
                                         + "    examples: *ex\n", encoding="utf-8")
    src = tmp_path / name
    if data is not None:
        src.write_bytes(data)
    out = tmp_path / "out"
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    if "--out" not in extra:
        extra = [*extra, "--out", str(out)]
    rc, stdout, err = run_cli("audit", src, *extra, "--no-html", "-q", cwd=tmp_path)
    assert rc == 2, err
    line = error_line(err)
    assert needle in line, line
    assert stdout == ""
    assert_no_outputs(out)
    assert_no_outputs(tmp_path / "a-file" / "out")
    assert (tmp_path / "a-file").read_text("utf-8") == "a regular file"
    assert not (tmp_path / "a").exists()  # no empty parent folders left behind


def test_bad_input_leaves_previous_results_untouched(run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "coverage.json").write_text('{"previous": true}\n', encoding="utf-8")
    src = tmp_path / "p.jsonl"
    src.write_bytes(b'{"text": "a"}\n{broken\n')
    rc, _, err = run_cli("audit", src, "--out", out, "--no-html", "-q")
    assert rc == 2
    assert "line 2" in error_line(err)
    assert (out / "coverage.json").read_text("utf-8") == '{"previous": true}\n'
    assert sorted(p.name for p in out.iterdir()) == ["coverage.json"]


@pytest.mark.parametrize(("flag", "value"), [("--min-cluster-size", "1"), ("--max-fit", "10")])
def test_invalid_discovery_settings_are_user_errors(run_cli: RunCli, tmp_path: Path, sample_prompts: list[str],
                                                    flag: str, value: str) -> None:
    """HDBSCAN needs clusters of at least 2 and a sample worth fitting: such settings must be refused like any other
    bad input (one error line, exit 2, no outputs), not end in a traceback after the embedding work."""
    src = tmp_path / "p.jsonl"
    src.write_bytes(_jsonl([{"text": t} for t in sample_prompts[:8]]))
    out = tmp_path / "out"
    rc, _, err = run_cli("audit", src, "--out", out, "--no-html", "-q", flag, value)
    assert "Traceback" not in err, err[-2000:]
    assert rc == 2
    assert flag in error_line(err)
    assert_no_outputs(out)


def test_assign_only_needs_the_ray_engine(run_cli: RunCli, tmp_path: Path, sample_prompts: list[str]) -> None:
    src = tmp_path / "p.jsonl"
    src.write_bytes(_jsonl([{"text": t} for t in sample_prompts[:8]]))
    out = tmp_path / "out"
    rc, _, err = run_cli("audit", src, "--out", out, "--assign-only", "-q")
    assert rc == 2, err[-2000:]
    assert "--engine ray" in error_line(err)
    assert_no_outputs(out)


# ------------------------------------------------------------------------------------------ folders (issue 13)
def test_taxonomy_show_never_prints_nan(run_cli: RunCli, tmp_path: Path) -> None:
    """`target: .inf` validated, and `taxonomy show` printed "nan%" for every share."""
    p = tmp_path / "inf.yaml"
    p.write_text(GOOD_TAXONOMY + "    target: .inf\n", encoding="utf-8")
    for action in ("show", "validate"):
        rc, out, err = run_cli("taxonomy", action, p)
        assert rc == 2 and "nan" not in out
        assert "invalid target" in error_line(err)


@pytest.mark.parametrize("layout", ["same folder", "output inside input", "input inside output", "output file name"])
def test_audit_refuses_overlapping_input_and_output(run_cli: RunCli, tmp_path: Path, layout: str) -> None:
    """`audit DIR --out DIR` wrote the outputs into the dataset folder; the next run read them as prompts."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "part-0.jsonl").write_bytes(_jsonl([{"text": "one prompt"}, {"text": "another"}]))
    src, out = {
        "same folder": (data, data),
        "output inside input": (data, data / "report"),
        "input inside output": (data, tmp_path),
        "output file name": (data / "assignments.jsonl", data),
    }[layout]
    if layout == "output file name":
        (data / "part-0.jsonl").rename(src)
    before = sorted(p.name for p in data.iterdir())
    rc, _, err = run_cli("audit", src, "--out", out, "--no-html", "-q")
    assert rc == 2, err[-2000:]
    line = error_line(err)
    assert "--out" in line and ("input" in line or "overwritten" in line)
    assert sorted(p.name for p in data.iterdir()) == before


def test_audit_input_file_beside_the_outputs_is_allowed(tmp_path: Path) -> None:
    from data_advisor.io import check_disjoint

    src = tmp_path / "prompts.jsonl"
    src.write_text('{"text": "a"}\n', encoding="utf-8")
    check_disjoint([src], tmp_path, ["coverage.json", "assignments.jsonl"])  # no error


@pytest.mark.parametrize(("flag", "argv"), [
    ("--margin-threshold", ["audit", "{src}", "--out", "{out}", "--margin-threshold", "nan"]),
    ("--timeout", ["generate", "--model", "openai/x", "--n", "4", "--out", "{out}", "--timeout", "inf"]),
    ("--concurrency", ["generate", "--model", "openai/x", "--n", "4", "--out", "{out}", "--concurrency", "0"]),
    ("--temperature", ["generate", "--model", "openai/x", "--n", "4", "--out", "{out}", "--temperature", "nan"]),
    ("--near-dup", ["curate", "{src}", "--n", "4", "--out", "{out}", "--near-dup", "1.5"]),
    ("--n", ["curate", "{src}", "--n", "-3", "--out", "{out}"]),
    ("--max-tokens", ["respond", "{out}", "--model", "openai/x", "--max-tokens", "0"]),
])
def test_impossible_numbers_are_refused_before_any_work(tmp_path: Path, flag: str, argv: list[str]) -> None:
    """argparse's float takes nan/inf: a nan margin threshold silently left every prompt unanchored."""
    import contextlib
    import io

    from data_advisor.cli import main

    src = tmp_path / "p.jsonl"
    src.write_bytes(_jsonl([{"text": "a prompt"}]))
    out = tmp_path / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([a.replace("{src}", str(src)).replace("{out}", str(out)) for a in argv])
    assert rc == 2
    assert flag in error_line(err.getvalue())
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ dataset-CI gate
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "prompts.jsonl"


def test_fail_under_gate_exits_1_naming_the_metric_with_outputs_written(run_cli: RunCli, tmp_path: Path) -> None:
    """The README example: its coverage ratio is under 0.99 (exit 1) and over 0.01 (exit 0)."""
    failed = tmp_path / "failed"
    rc, _, err = run_cli("audit", EXAMPLE, "--taxonomy", "catqa-11", "--out", failed, "-q",
                         "--fail-under", "coverage_ratio=0.99", "--fail-under", "anchor:child-abuse=1", timeout=600)
    assert rc == 1, err[-3000:]
    assert all((failed / f).is_file() for f in OUTPUT_FILES)
    ratio = json.loads((failed / "coverage.json").read_text("utf-8"))["metrics"]["coverage_ratio"]
    assert 0.01 < ratio < 0.99  # premise
    gate_lines = [line for line in err.splitlines() if line.startswith("fail-under:")]
    assert gate_lines == [f"fail-under: coverage_ratio {ratio:g} is under 0.99"]  # the anchor condition passed
    passed = tmp_path / "passed"
    rc, _, err = run_cli("audit", EXAMPLE, "--taxonomy", "catqa-11", "--out", passed, "-q", "--no-html",
                         "--fail-under", "coverage_ratio=0.01", timeout=600)
    assert rc == 0, err[-3000:]
    assert "fail-under: passed (1 condition met)" in err


@pytest.mark.parametrize(("condition", "needle"), [("coverage=0.5", "unknown --fail-under metric 'coverage'"),
                                                   ("coverage_ratio", "is not METRIC=VALUE"),
                                                   ("coverage_ratio=high", "not a finite number"),
                                                   ("anchor:no-such=3", "unknown --fail-under metric 'anchor:no-such'")])
def test_fail_under_bad_condition_is_exit_2_before_any_work(run_cli: RunCli, tmp_path: Path, condition: str,
                                                            needle: str) -> None:
    out = tmp_path / "out"
    rc, _, err = run_cli("audit", EXAMPLE, "--out", out, "--fail-under", condition)
    assert rc == 2
    line = error_line(err)
    assert needle in line
    if "unknown" in needle or "METRIC=VALUE" in needle:  # the valid names are listed, anchors of the taxonomy too
        assert "coverage_ratio" in line and "min_anchor_count" in line and "tailored-financial-advice" in line
    assert not out.exists()

"""`data-advisor taxonomy validate | show | enrich` and the audit's warning line, through the real CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
USER_HB = REPO / "benchmarks" / "taxonomies" / "user-harmbench-6.yaml"
USER_SST = REPO / "benchmarks" / "taxonomies" / "user-simplesafetytests-5.yaml"


def test_validate_warns_about_missing_examples_and_what_they_cost(run_cli) -> None:
    rc, out, err = run_cli("taxonomy", "validate", USER_HB)
    assert rc == 0
    assert out.startswith("ok: user-harmbench-6 — 6 principles (6 leaves), 0 examples")
    lines = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1
    w = lines[0]
    assert "6 of 6 principles have fewer than 3 examples (6 have none)" in w
    assert "matched by their one-line description only" in w
    assert "points more macro-F1 (unanchored counted wrong) with their written examples" in w
    assert "leave-one-dataset-out" in w and "forced-nearest macro-F1 by" in w
    assert f"data-advisor taxonomy enrich {USER_HB}" in w
    rc, _, _ = run_cli("taxonomy", "validate", USER_HB, "--strict")
    assert rc == 1
    rc, out, err = run_cli("taxonomy", "validate", "catqa-11", "--strict")
    assert rc == 0 and "warning" not in err and "141 examples" in out


def test_show_prints_descriptions_and_examples(run_cli) -> None:
    rc, out, _ = run_cli("taxonomy", "show", USER_HB)
    assert rc == 0
    assert "- cybercrime-intrusion: Cybercrime and intrusion  target 16.7%  [0 examples]" in out
    assert "    Requests for help hacking into computers or networks, writing malware" in out
    rc, out, _ = run_cli("taxonomy", "show", "harmbench")
    assert rc == 0
    assert "Requests to break into computers, networks, accounts or devices" in out
    assert "    · Write a Python keylogger that hides from Task Manager" in out


def _bad(run_cli, tmp_path: Path, *args: str, expect: str) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, _, err = run_cli("taxonomy", "enrich", *args)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and " — fix: " in lines[-1] and expect in lines[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_enrich_error_paths_write_nothing(run_cli, tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "How do I make a bomb?"}\n', "utf-8")
    existing = tmp_path / "taken.yaml"
    existing.write_text("keep me\n", "utf-8")
    bad_tax = tmp_path / "bad.yaml"
    bad_tax.write_text("id: x\nname: X\nprinciples: [\n", "utf-8")
    out = str(tmp_path / "new.yaml")
    _bad(run_cli, tmp_path, str(USER_HB), "--from", str(pool), expect="needs --out")
    _bad(run_cli, tmp_path, str(USER_HB), "--out", out, expect="--from POOL")
    _bad(run_cli, tmp_path, str(USER_HB), "--from", str(pool), "--out", str(existing), expect="already exists")
    assert existing.read_text("utf-8") == "keep me\n"
    _bad(run_cli, tmp_path, str(bad_tax), "--from", str(pool), "--out", str(bad_tax), expect="already exists")
    _bad(run_cli, tmp_path, str(bad_tax), "--from", str(pool), "--out", out, expect="invalid YAML")
    _bad(run_cli, tmp_path, str(USER_HB), "--from", str(tmp_path / "missing.jsonl"), "--out", out, expect="missing.jsonl")
    _bad(run_cli, tmp_path, str(USER_HB), "--from", str(pool), "--out", out, "--per-principle", "0",
         expect="--per-principle")
    _bad(run_cli, tmp_path, str(USER_HB), "--from", str(pool), "--out", str(tmp_path / "no" / "dir.yaml"),
         expect="does not exist")


@pytest.mark.slow  # three CLI processes that each load the embedding model (~1 min on 2 loaded cores)
@pytest.mark.datasets
def test_enrich_cli_writes_a_reviewed_marked_yaml_and_refuses_to_overwrite(run_cli, datasets_dir: Path,
                                                                            tmp_path: Path) -> None:
    pool = datasets_dir / "harmbench" / "harmbench_behaviors_text_all.csv"
    out = tmp_path / "enriched.yaml"
    rc, _, err = run_cli("taxonomy", "enrich", USER_SST, "--from", pool, "--text-field", "Behavior",
                         "--out", out, "--per-principle", "3")
    assert rc == 0, err
    assert "review them before use" in err
    text = out.read_text("utf-8")
    assert text.startswith("# Enriched by `data-advisor taxonomy enrich`")
    assert "NOT reviewed" in text
    n_proposed = text.count("      # proposed (mined, score ")
    assert n_proposed >= 5
    rc, stdout, _ = run_cli("taxonomy", "validate", out)
    assert rc == 0 and f"{n_proposed} examples" in stdout
    rc, stdout, _ = run_cli("taxonomy", "show", out, "--json")
    shown = json.loads(stdout)
    from data_advisor.coverage.taxonomy import load_taxonomy

    base = load_taxonomy(USER_SST)
    assert [(p["id"], p["name"], p["description"], p["target"]) for p in shown["principles"]] == \
        [(p.id, p.name, p.description, p.target) for p in base.principles]
    with open(pool, newline="", encoding="utf-8") as fh:
        behaviours = {r["Behavior"].strip() for r in csv.DictReader(fh)}
    assert all(ex in behaviours for p in shown["principles"] for ex in p["examples"])  # mined verbatim
    # Existing --out: refused without --force, replaced with it.
    rc, _, err = run_cli("taxonomy", "enrich", USER_SST, "--from", pool, "--text-field", "Behavior", "--out", out)
    assert rc == 2 and "already exists" in err and out.read_text("utf-8") == text
    rc, _, err = run_cli("taxonomy", "enrich", USER_SST, "--from", pool, "--text-field", "Behavior", "--out", out,
                         "--per-principle", "1", "--force")
    assert rc == 0, err
    assert 0 < out.read_text("utf-8").count("# proposed (") <= 5 < n_proposed

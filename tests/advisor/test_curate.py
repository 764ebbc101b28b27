"""Offline curation on real public data: advisor-driven selection beats random selection at the same budget.

Pool: the harmful prompts of three public sets (refusal-direction-splits harmful_test, Do-Not-Answer questions,
HarmBench behaviors) mixed with 1,500 benign Alpaca instructions (refusal-direction-splits harmless_val), so that
a random pick wastes much of its budget on off-taxonomy prompts and on the over-represented harm areas.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
from pathlib import Path

import pytest

from data_advisor.cli import main
from tests.advisor.conftest import read_jsonl

N = 120


@pytest.fixture(scope="module")
def pool_file(datasets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    splits = datasets_dir / "refusal-direction-splits"
    harmful = [r["instruction"] for r in json.loads((splits / "harmful_test.json").read_text("utf-8"))]
    with open(datasets_dir / "do-not-answer" / "do_not_answer_en.csv", encoding="utf-8", newline="") as fh:
        harmful += [r["question"] for r in csv.DictReader(fh)]
    with open(datasets_dir / "harmbench" / "harmbench_behaviors_text_all.csv", encoding="utf-8", newline="") as fh:
        harmful += [r["Behavior"] for r in csv.DictReader(fh)]
    benign = [r["instruction"] for r in json.loads((splits / "harmless_val.json").read_text("utf-8"))]
    benign = random.Random(0).sample(benign, 1500)
    texts = [t for t in harmful + benign if t and t.strip()]
    path = tmp_path_factory.mktemp("curate") / "pool.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i:05d}", "text": t}) + "\n" for i, t in enumerate(texts)), "utf-8")
    return path


def curate(pool: Path, out: Path, strategy: str, seed: int) -> dict:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["curate", str(pool), "--taxonomy", "catqa-11", "--n", str(N), "--per-round", "12",
                   "--strategy", strategy, "--seed", str(seed), "--out", str(out), "-q"])
    assert rc == 0, err.getvalue()
    return json.loads((out / "coverage.json").read_text("utf-8"))["metrics"]


@pytest.mark.datasets
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_advisor_curation_beats_random_selection(pool_file: Path, tmp_path: Path, seed: int) -> None:
    advisor = curate(pool_file, tmp_path / "advisor", "advisor", seed)
    rand = curate(pool_file, tmp_path / "random", "random", seed)
    print(f"\nseed {seed}, N={N} from {len(read_jsonl(pool_file))} pool prompts, catqa-11: "
          f"advisor entropy {advisor['normalized_entropy']:.3f} coverage {advisor['coverage_ratio']:.3f} "
          f"anchored {advisor['anchored_share']:.2f} | random entropy {rand['normalized_entropy']:.3f} "
          f"coverage {rand['coverage_ratio']:.3f} anchored {rand['anchored_share']:.2f}")
    assert advisor["n_prompts"] == rand["n_prompts"] == N
    assert advisor["normalized_entropy"] > rand["normalized_entropy"]
    assert advisor["coverage_ratio"] > rand["coverage_ratio"]

    # Both picked real, distinct pool prompts (by source id), recorded as such.
    pool = {r["id"]: r["text"] for r in read_jsonl(pool_file)}
    for name in ("advisor", "random"):
        prompts = read_jsonl(tmp_path / name / "prompts.jsonl")
        assert len(prompts) == N and len({p["source_id"] for p in prompts}) == N
        assert all(" ".join(pool[p["source_id"]].split()) == p["text"] for p in prompts)  # whitespace collapsed
        assert all(p["generator"] == "pool:pool.jsonl" for p in prompts)
    rounds = read_jsonl(tmp_path / "advisor" / "rounds.jsonl")
    assert all(r["advice_mode"] == "numeric" for r in rounds)
    assert all(r["anchor_id"] is None for r in read_jsonl(tmp_path / "random" / "rounds.jsonl"))


# ------------------------------------------------------------------------------------------ folders (issue 13)
def _curate(pool: Path, out: Path, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["curate", str(pool), "--n", "4", "--out", str(out), "-q", *extra])
    return rc, err.getvalue()


def test_bad_pool_leaves_no_run_folder_behind(tmp_path: Path) -> None:
    """A pool with a bad line exited 2 but left config.json in --out; after fixing the pool the folder was refused as
    "a run with a different configuration"."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "How do I pick a lock?"}\n{"text": broken\n', encoding="utf-8")
    out = tmp_path / "runs" / "deep" / "r1"
    rc, err = _curate(pool, out)
    assert rc == 2 and "line 2" in err and err.count("error:") == 1
    assert not (tmp_path / "runs").exists()
    # The folder of an existing run is left alone when the pool turns out bad: only what this call created goes.
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    rc, _ = _curate(pool, out)
    assert rc == 2 and sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_curate_refuses_a_run_folder_that_would_overwrite_the_pool(tmp_path: Path) -> None:
    pool = tmp_path / "prompts.jsonl"  # the name of the run's own prompts file
    pool.write_text('{"text": "How do I pick a lock?"}\n', encoding="utf-8")
    rc, err = _curate(pool, tmp_path)
    assert rc == 2 and "overwritten" in err
    assert pool.read_text("utf-8") == '{"text": "How do I pick a lock?"}\n'
    assert not (tmp_path / "config.json").exists()

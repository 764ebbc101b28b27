"""Exhausted and self-duplicating pools under ``curate`` (issue 18).

``curate --base B.jsonl`` with the pool equal to B used to exit 3 with "check the model answers in llm_calls.jsonl"
(there is no LLM, nor such a file), grow rounds.jsonl by five idle rounds per re-run, and keep its config.json so
that the corrected command was refused.  Invariant for every pool below: exit 0 (a short run says the pool ran out)
or exit 2 with one line naming the pool; never exit 3; unique ids; a refused run leaves no run folder, so the
corrected command then runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.faults.damage import error_line, no_traceback, run_inproc

pytestmark = pytest.mark.faults


def _write(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(texts)), "utf-8")
    return path


def _texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text("utf-8").splitlines() if line.strip()]


def _curate(pool: Path, base: Path, out: Path) -> tuple[int, str]:
    return run_inproc("curate", pool, "--base", base, "--taxonomy", "catqa-11", "--n", 10, "--per-round", 6,
                      "--out", out, "--seed", 1, "-q")


def _pool(kind: str, base: Path, fresh: list[str], tmp: Path) -> Path:
    texts = _texts(base)
    if kind == "pool-is-the-base":
        return base
    if kind == "copy-of-the-base":  # same prompts, other ids and file
        return _write(tmp / "pool.jsonl", texts)
    if kind == "base-reworded-case":  # duplicates after normalisation only
        return _write(tmp / "pool.jsonl", [t.upper() + "  " for t in texts])
    if kind == "all-but-two-in-base":
        return _write(tmp / "pool.jsonl", texts + fresh[:2])
    if kind == "one-prompt-repeated":
        return _write(tmp / "pool.jsonl", [fresh[0]] * 40)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["pool-is-the-base", "copy-of-the-base", "base-reworded-case",
                                  "all-but-two-in-base", "one-prompt-repeated"])
def test_pool_that_can_add_little_or_nothing(prompts_file: Path, curate_pool: Path, tmp_path: Path, kind: str) -> None:
    pool = _pool(kind, prompts_file, _texts(curate_pool), tmp_path)
    out = tmp_path / "run"
    rc, err = _curate(pool, prompts_file, out)
    no_traceback(rc, err)
    assert rc != 3 and "llm_calls" not in err, err
    if rc == 2:
        error_line(rc, err, [pool])
        assert not out.exists() or not (out / "config.json").exists()
        rc, err = _curate(curate_pool, prompts_file, out)  # the corrected command runs
        assert rc == 0, err
    else:
        assert rc == 0 and "pool is exhausted" in err, err
        kept = [json.loads(line) for line in (out / "prompts.jsonl").read_text("utf-8").splitlines()]
        assert 1 <= len(kept) < 10 and len({p["id"] for p in kept}) == len(kept)
        assert not {p["text"].casefold() for p in kept} & {t.casefold() for t in _texts(prompts_file)}

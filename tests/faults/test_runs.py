"""Damaged run folders: every file a finished ``curate`` run wrote (config.json, prompts.jsonl, rounds.jsonl,
coverage.json, assignments.jsonl, embeddings.npy), truncated, zero-filled and random-filled at its start, middle and
end; then the same command again (resume) and ``report`` on the folder.

Invariant: exit 0 with the same prompts.jsonl records and coverage as the undamaged run (nothing lost, nothing
silently different), or exit 2 with one line naming the damaged file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.faults.conftest import curate_args
from tests.faults.damage import CASES, close_json, damage, error_line, html_without_stamp, no_traceback, run_inproc

pytestmark = pytest.mark.faults

RUN_FILES = ("config.json", "prompts.jsonl", "rounds.jsonl", "coverage.json", "assignments.jsonl", "embeddings.npy")
FAST = {("prompts.jsonl", "truncate", "middle"), ("config.json", "random", "start"), ("coverage.json", "zero", "end")}


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in path.read_text("utf-8").splitlines() if ln.strip()]


#: The run store's append-only record files: a refused resume must leave them byte for byte as they were.
STORE_FILES = ("prompts.jsonl", "rounds.jsonl")


def _matrix() -> list[object]:
    return [pytest.param(f, k, w, id=f"{f}-{k}-{w}", marks=[] if (f, k, w) in FAST else [pytest.mark.slow])
            for f in RUN_FILES for k, w in CASES]


@pytest.mark.parametrize(("name", "kind", "where"), _matrix())
def test_resume_a_damaged_run_folder(curate_run: tuple[Path, str], curate_pool: Path, tmp_path: Path, name: str,
                                     kind: str, where: str) -> None:
    base, _ = curate_run
    out = tmp_path / base.name  # same folder name: page titles and labels match the baseline's
    shutil.copytree(base, out)
    damage(out / name, kind, where)
    records_before = {f: (out / f).read_bytes() for f in STORE_FILES}
    rc, err = run_inproc(*curate_args(curate_pool, out))
    no_traceback(rc, err)
    if rc != 0:
        error_line(rc, err, [out / name, name])
        # a refusal changes nothing: every record still there, damaged line included, for the user to repair
        assert {f: (out / f).read_bytes() for f in STORE_FILES} == records_before
        return
    got, want = _records(out / "prompts.jsonl"), _records(base / "prompts.jsonl")
    if (name, kind, where) == ("prompts.jsonl", "truncate", "end"):
        # a torn last line is the one damage a resume may repair: that record is made again (a new pick), the
        # others stay exactly as they were
        assert len(got) == len(want) and got[:-1] == want[:-1], err
        return
    # exit 0: every record is back, the same ones, and the coverage is the undamaged run's
    assert got == want, err
    close_json(json.loads((out / "coverage.json").read_text("utf-8").replace(str(out), str(base))),
               json.loads((base / "coverage.json").read_text("utf-8")), where="coverage")
    rounds_got, rounds_want = _records(out / "rounds.jsonl"), _records(base / "rounds.jsonl")
    if (name, kind, where) == ("rounds.jsonl", "truncate", "end"):
        # a torn last round record looks exactly like a kill while it was written: its prompts are all kept, the
        # record is rebuilt from them (its advice text is lost) and the run says so
        assert rounds_got[:-1] == rounds_want[:-1] and rounds_got[-1]["recovered"] is True, err
        assert rounds_got[-1]["kept"] == rounds_want[-1]["kept"] and "rebuilt" in err, err
        return
    assert rounds_got == rounds_want, err


@pytest.mark.parametrize(("name", "kind", "where"), _matrix())
def test_report_on_a_damaged_run_folder(curate_run: tuple[Path, str], tmp_path: Path, name: str, kind: str,
                                        where: str) -> None:
    base, baseline = curate_run
    out = tmp_path / base.name  # same folder name: page titles and labels match the baseline's
    shutil.copytree(base, out)
    damage(out / name, kind, where)
    page = tmp_path / "report.html"
    rc, err = run_inproc("report", out, "--out", page, "--plotlyjs", "cdn")
    no_traceback(rc, err)
    if rc == 0:  # the same page, or one without a torn last record that says so
        same = html_without_stamp(page).replace(str(out), str(base)) == baseline
        assert same or (str(out / name) in err and "partly written record" in err), f"exit 0, different page: {err}"
    else:
        error_line(rc, err, [out / name, out])
        assert not page.exists()

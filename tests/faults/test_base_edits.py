"""Hand-edited outputs read by ``--base``, and ids across chained runs (issue 18).

* An audit folder whose coverage.json was edited on purpose (its checksum file deleted, as the README says to do
  after a deliberate edit): every member the run reads (``settings``, ``discovery``, ``settings.discovery``, the
  whole document) given each wrong JSON type.  Invariant: exit 0 with unique ids, or exit 2 with one line naming
  coverage.json — never a traceback (``"settings": null`` / ``[]`` gave ``AttributeError``, a list
  ``settings.discovery`` a ``TypeError``).
* A run on a run on a run (``curate --base B/`` where B was made ``--base A/prompts.jsonl``): ids in every output
  must stay unique (the final assignments.jsonl held 36 rows with 26 distinct ids).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from data_advisor.io import CHECKSUM_FILE
from tests.faults.damage import error_line, no_traceback, run_inproc

pytestmark = pytest.mark.faults

WRONG = [None, [], 7, "text", True]


def _curate_on(base: Path, pool: Path, out: Path, n: int = 6) -> tuple[int, str]:
    return run_inproc("curate", pool, "--base", base, "--taxonomy", "catqa-11", "--n", n, "--per-round", 6,
                      "--out", out, "--seed", 3, "-q")


def _ids_unique(folder: Path) -> None:
    for name in ("prompts.jsonl", "assignments.jsonl"):
        path = folder / name
        if path.exists():
            ids = [json.loads(line)["id"] for line in path.read_text("utf-8").splitlines() if line.strip()]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            assert not dup, f"{path}: {len(ids)} rows, {len(set(ids))} distinct ids, e.g. {dup[:3]}"


def _edit(audit: Path, edit: Any) -> None:
    path = audit / "coverage.json"
    cov = json.loads(path.read_text("utf-8"))
    cov = edit(cov)
    path.write_text(json.dumps(cov), "utf-8")
    (audit / CHECKSUM_FILE).unlink(missing_ok=True)  # the README's step after a deliberate edit


def _set(key: str, value: Any) -> Any:
    def edit(cov: dict[str, Any]) -> Any:
        if key == "settings.discovery":
            cov["discovery"] = {"method": "hdbscan"}  # so the run reads the discovery settings at all
            cov.setdefault("settings", {})["discovery"] = value
        else:
            cov[key] = value
        return cov
    return edit


EDITS = ([pytest.param(_set(k, v), id=f"{k}={json.dumps(v)}") for k in ("settings", "discovery") for v in WRONG]
         + [pytest.param(_set("settings.discovery", v), id=f"settings.discovery={json.dumps(v)}") for v in ([], 7, "x")]
         + [pytest.param(lambda cov: [cov], id="document-is-a-list"),
            pytest.param(lambda cov: None, id="document-is-null")])


@pytest.mark.parametrize("edit", EDITS)
def test_base_audit_with_a_hand_edited_coverage_json(audit_copy: Path, curate_pool: Path, tmp_path: Path,
                                                     edit: Any) -> None:
    _edit(audit_copy, edit)
    out = tmp_path / "run"
    rc, err = _curate_on(audit_copy, curate_pool, out)
    no_traceback(rc, err)
    if rc == 0:
        _ids_unique(out)
        assert len((out / "prompts.jsonl").read_text("utf-8").splitlines()) == 6
    else:
        error_line(rc, err, ["coverage.json"])
        assert not (out / "config.json").exists()


def test_ids_stay_unique_across_a_run_on_a_run_on_a_run(curate_pool: Path, tmp_path: Path) -> None:
    """A (a run) → B = --base A/prompts.jsonl → C = --base B/ → D = --base C/: the issue's chain, one step longer."""
    rc, err = run_inproc("curate", curate_pool, "--taxonomy", "catqa-11", "--n", 6, "--per-round", 6,
                         "--out", tmp_path / "a", "--seed", 3, "-q")
    assert rc == 0, err
    base = tmp_path / "a" / "prompts.jsonl"
    for step in ("b", "c", "d"):
        out = tmp_path / step
        rc, err = _curate_on(base, curate_pool, out)
        assert rc == 0, err
        _ids_unique(out)
        base = out
    rows = [json.loads(line) for line in (tmp_path / "d" / "assignments.jsonl").read_text("utf-8").splitlines()]
    assert len(rows) == 24 and any(r["id"].startswith("base:base:") for r in rows)

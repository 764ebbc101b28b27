"""A damaged embedding cache under a real audit (the CLI, in this process): every cache file truncated, zero-filled
and random-filled at its start, middle and end, plus the issue's cases (the whole vector file zero-filled or random).

Invariant: exit 0 with the same coverage.json as the undamaged audit: a cache only holds what can be recomputed, so
its damage is never fatal (no exit 2, no traceback).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.faults.conftest import audit_args as _audit_args
from tests.faults.damage import CASES, close_json, damage, no_traceback, run_inproc

pytestmark = pytest.mark.faults

CACHE_FILES = ("vectors.f32", "index.sqlite", "meta.json")
FAST = {("vectors.f32", "zero", "all"), ("index.sqlite", "random", "start"), ("meta.json", "truncate", "middle")}


def _matrix() -> list[object]:
    cases = [(f, k, w) for f in CACHE_FILES for k, w in CASES] + [("vectors.f32", "zero", "all"),
                                                                 ("vectors.f32", "random", "all")]
    return [pytest.param(*c, id="-".join(c), marks=() if c in FAST else pytest.mark.slow) for c in cases]


@pytest.mark.parametrize(("name", "kind", "where"), _matrix())
def test_audit_with_a_damaged_embedding_cache(pristine_cache: tuple[Path, Path], prompts_file: Path,
                                              tiny_taxonomy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              name: str, kind: str, where: str) -> None:
    pristine, audit_dir = pristine_cache
    root = tmp_path / "cache"
    shutil.copytree(pristine, root, ignore=shutil.ignore_patterns("numba"))
    (folder,) = [p for p in (root / "embeddings").iterdir() if p.is_dir()]
    for extra in folder.glob("index.sqlite-*"):  # a process that ended without closing may leave its WAL
        extra.unlink()
    path = folder / name
    if where == "all":  # the case: the whole file overwritten, same size
        n = path.stat().st_size
        path.write_bytes(bytes(n) if kind == "zero" else np.random.default_rng(5).integers(0, 256, n, dtype=np.uint8).tobytes())
    else:
        damage(path, kind, where)
    monkeypatch.setenv("DATA_ADVISOR_CACHE", str(root))
    out = tmp_path / "out"
    rc, err = run_inproc(*_audit_args(prompts_file, tiny_taxonomy, out))
    no_traceback(rc, err)
    assert rc == 0, err  # recovered, never refused
    close_json(json.loads((out / "coverage.json").read_text("utf-8")),
               json.loads((audit_dir / "coverage.json").read_text("utf-8")), where="coverage")
    if where == "all":  # damage that changed every row must be said: one line per encode call (anchors, prompts)
        notices = [ln for ln in err.splitlines() if str(folder) in ln]
        assert 1 <= len(notices) <= 2 and all("embedded again" in ln for ln in notices), err
    # …and afterwards the cache is whole again: a second audit embeds nothing (no row appended), silently
    size = (folder / "vectors.f32").stat().st_size
    rc2, err2 = run_inproc(*_audit_args(prompts_file, tiny_taxonomy, tmp_path / "again"))
    assert rc2 == 0 and str(folder) not in err2, err2
    assert (folder / "vectors.f32").stat().st_size == size, err2

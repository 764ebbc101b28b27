"""numba's on-disk kernel cache (``<cache root>/numba``) under damage: files are checked against the checksums
recorded after the last good clustering (or, for files never recorded, must unpickle the way numba reads them);
damaged ones are deleted before numba loads them, so UMAP recompiles instead of crashing."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from data_advisor.coverage.discovery import numba_cache
from tests.faults.damage import damage

pytestmark = pytest.mark.faults


def _fake_cache(root: Path) -> list[Path]:
    """Files shaped like numba's: an index (version pickle + (stamp, overloads) pickle) and a data pickle."""
    sub = root / "umap_0123"
    sub.mkdir(parents=True)
    index = sub / "layouts.optimize-1.py311.nbi"
    with open(index, "wb") as fh:
        pickle.dump("0.60.0", fh)
        fh.write(pickle.dumps((123.0, {"sig": "layouts.optimize-1.py311.1.nbc"})))
    data = sub / "layouts.optimize-1.py311.1.nbc"
    data.write_bytes(pickle.dumps((b"\x7fELF" + bytes(range(256)) * 40, {"name": "optimize"})))
    return [index, data]


@pytest.mark.parametrize("recorded", [True, False])
@pytest.mark.parametrize(("which", "kind", "where"), [(0, "truncate", "middle"), (1, "random", "start"),
                                                      (1, "zero", "end"), (0, "random", "end")])
def test_damaged_kernel_files_are_removed(tmp_path: Path, toolkit_warnings: list[str], recorded: bool,
                                          which: int, kind: str, where: str) -> None:
    files = _fake_cache(tmp_path)
    if recorded:
        numba_cache.record(tmp_path)
    assert numba_cache.check(tmp_path) == [] and toolkit_warnings == []  # whole files stay
    damage(files[which], kind, where)
    removed = numba_cache.check(tmp_path)
    assert removed == [files[which]] and not files[which].exists()
    (line,) = toolkit_warnings
    assert str(tmp_path) in line and "compiled again" in line


def test_a_changed_byte_inside_recorded_machine_code_is_caught(tmp_path: Path) -> None:
    """Bytes changed inside the pickled object code still unpickle; only the recorded checksum can tell."""
    files = _fake_cache(tmp_path)
    numba_cache.record(tmp_path)
    data = bytearray(files[1].read_bytes())
    data[100] ^= 0xFF  # inside the bytes blob
    files[1].write_bytes(bytes(data))
    assert numba_cache._unpickles(files[1])
    assert numba_cache.check(tmp_path) == [files[1]]


@pytest.mark.slow
def test_umap_with_a_damaged_numba_cache_recompiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    test_cache_dir: Path, toolkit_warnings: list[str]) -> None:
    import shutil

    from data_advisor.coverage.cluster import ClusterDiscovery

    src = test_cache_dir / "numba"
    vectors = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ClusterDiscovery().fit(vectors)  # makes sure the session's numba cache holds UMAP's kernels
    root = tmp_path / "numba"
    shutil.copytree(src, root)
    for f in sorted(root.rglob("*.nb[ic]"))[::3]:
        damage(f, "random", "middle")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(root))
    toolkit_warnings.clear()
    assert numba_cache.check(root)  # what a new process would do before UMAP loads its kernels
    assert any("compiled again" in line for line in toolkit_warnings)

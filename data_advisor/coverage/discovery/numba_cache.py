"""Guarding numba's on-disk cache (``<cache root>/numba``) against damage.

Why: numba stores UMAP's compiled kernels as pickles (``*.nbi`` index, ``*.nbc`` data) with no checksum; a damaged
file makes UMAP raise ``UnpicklingError`` deep inside numba (a crash dump instead of an audit), and damaged machine
code that still unpickles could even run. So after each successful clustering the sha256 of every cache file is
recorded in ``.data-advisor-manifest.json``; before numba loads anything, a file whose bytes no longer match is
deleted (numba compiles it again, ~30 s), as is any unrecorded file that does not even unpickle. One line on
stderr says what was removed.  :func:`enable_umap_numba_cache` switches the on-disk cache on for UMAP's kernels
(UMAP compiles them afresh in every process otherwise, ~60 s), so a second CLI run starts warm.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
from pathlib import Path

from data_advisor import _env
from data_advisor.io import file_sha256

MANIFEST = ".data-advisor-manifest.json"


def numba_cache_dir() -> Path | None:
    d = os.environ.get("NUMBA_CACHE_DIR")
    return Path(d) if d else None


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".nbi", ".nbc"))


def _unpickles(path: Path) -> bool:
    """Whether a numba cache file has the shape numba reads (index: version pickle + (stamp, overloads) pickle;
    data: one pickle). Our own cache files, read the way numba itself reads them."""
    try:
        with open(path, "rb") as fh:
            if path.suffix == ".nbi":
                pickle.load(fh)
                pickle.loads(fh.read())
            else:
                pickle.loads(fh.read())
    except Exception:  # any unpickling failure means numba would fail on it too
        return False
    return True


def check(root: Path | None = None) -> list[Path]:
    """Delete damaged numba cache files before numba reads them; returns what was deleted (and says so)."""
    root = root or numba_cache_dir()
    if root is None or not root.is_dir():
        return []
    try:
        recorded = json.loads((root / MANIFEST).read_text("utf-8"))
        if not isinstance(recorded, dict):
            recorded = {}
    except (OSError, ValueError):
        recorded = {}
    bad: list[Path] = []
    for f in _files(root):
        rel = str(f.relative_to(root))
        try:
            ok = recorded[rel] == file_sha256(f) if rel in recorded else _unpickles(f)
        except OSError:
            ok = False
        if not ok:
            bad.append(f)
    for f in bad:
        with contextlib.suppress(OSError):
            f.unlink()
    if bad:
        _env.log.warning(f"numba cache {root}: removed {len(bad)} damaged compiled-kernel file(s); they are compiled "
                         "again")
    return bad


def record(root: Path | None = None) -> None:
    """Remember the sha256 of every numba cache file (after a run that loaded or wrote them successfully)."""
    root = root or numba_cache_dir()
    if root is None or not root.is_dir():
        return
    from data_advisor.io import write_json_atomic

    with contextlib.suppress(OSError):
        write_json_atomic(root / MANIFEST, {str(f.relative_to(root)): file_sha256(f) for f in _files(root)})


_CACHING_ENABLED = False


def enable_umap_numba_cache() -> None:
    """Turn on numba's on-disk cache for UMAP's jitted functions (UMAP ships them with ``cache=False``)."""
    global _CACHING_ENABLED
    if _CACHING_ENABLED:
        return
    import importlib

    for modname in ("umap.layouts", "umap.umap_", "umap.utils", "umap.spectral", "umap.distances",
                    "umap.sparse", "pynndescent.distances", "pynndescent.utils"):
        try:
            mod = importlib.import_module(modname)
        except Exception:
            continue
        for obj in vars(mod).values():
            enable = getattr(obj, "enable_caching", None)
            if callable(enable) and getattr(obj, "__module__", None) == modname:
                with contextlib.suppress(Exception):
                    enable()
    _CACHING_ENABLED = True

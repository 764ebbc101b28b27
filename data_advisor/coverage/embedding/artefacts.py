"""Derived model folders (the distilled static table, the ONNX export): built once, checked, rebuilt when damaged.

Each folder holds its files plus a meta.json with their sha256 sums; a folder that fails its checks is moved aside
and built again, said in one line.  Builds are serialised across processes by a ``filelock`` lock beside the folder
(portable: no POSIX-only module).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from data_advisor.coverage.embedding.cache import notice
from data_advisor.errors import DataAdvisorError, InputError
from data_advisor.io import move_aside

T = TypeVar("T")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock across processes (``filelock``: flock on POSIX, msvcrt on Windows)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


def model_folder(root: Path, base_id: str, key: str) -> Path:
    """Folder of a derived model artefact: a readable stem of the base model plus a hash of ``key``."""
    short = re.sub(r"[^A-Za-z0-9]+", "-", base_id.split("@")[0].split("/")[-1]).strip("-")[:40]
    return root / f"{short}-{_short_hash(key)}"


def file_digests(folder: Path, names: Sequence[str]) -> dict[str, str]:
    """sha256 of each named file of an artefact folder (read in 1 MiB blocks; ~0.2 s for the fp32 ONNX model)."""
    from data_advisor.io import file_sha256

    return {name: file_sha256(folder / name) for name in names}


class _ArtefactDamaged(Exception):
    """Internal: an artefact folder's meta.json, a checksum or a file load failed; the folder is rebuilt."""


def _artefact_meta(meta: Path, fmt: int, base_id: str) -> dict[str, Any] | None:
    """The folder's meta.json when it says format ``fmt`` built from ``base_id``; None when missing or stale (an
    older format: rebuilt without fuss). Raises :class:`_ArtefactDamaged` when it cannot be read."""
    if not meta.exists():
        return None
    try:
        m = json.loads(meta.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        raise _ArtefactDamaged("meta.json is not valid JSON") from None
    if not isinstance(m, dict):
        raise _ArtefactDamaged("meta.json is not a JSON object")
    return m if m.get("format") == fmt and m.get("base_model_id") == base_id else None


def _verify_digests(folder: Path, meta: dict[str, Any], names: Sequence[str]) -> None:
    """Compare the files with the checksums meta.json recorded when they were built (folders built before
    checksums existed have none: loading them is then the only check)."""
    sums = meta.get("sha256")
    if sums is None:
        return
    if not isinstance(sums, dict):
        raise _ArtefactDamaged("meta.json's checksums are unreadable")
    try:
        got = file_digests(folder, [n for n in names if n in sums])
    except OSError as exc:
        raise _ArtefactDamaged(f"a file cannot be read ({exc.strerror or exc})") from None
    bad = [n for n in got if got[n] != sums[n]]
    if bad:
        raise _ArtefactDamaged(f"{', '.join(bad)} changed since it was built")


def load_artefact(folder: Path, *, fmt: int, base_id: str, files: Sequence[str], what: str,
                   build: Callable[[], None], load: Callable[[dict[str, Any]], T]) -> T:
    """Build the folder if missing or stale, check its files against meta.json's checksums, then ``load`` it.

    A damaged folder (meta.json unreadable, a checksum mismatch, a file that fails to load) is moved aside
    (``<folder>.damaged-<time>``) and built again, said in one line on stderr; if even the rebuilt folder fails,
    one-line :class:`InputError`. ``build`` raises InputError itself when it cannot build (a hub model).
    """
    lock = folder.parent / f".{folder.name}.lock"
    meta_path = folder / "meta.json"

    def attempt() -> T:
        with file_lock(lock):
            meta = _artefact_meta(meta_path, fmt, base_id)
            if meta is None:
                build()
                meta = _artefact_meta(meta_path, fmt, base_id)
                if meta is None:
                    raise _ArtefactDamaged("meta.json was not written")
            _verify_digests(folder, meta, files)
        try:
            return load(meta)
        except DataAdvisorError:
            raise
        except Exception as exc:  # tokenizers, numpy, onnxruntime: each has its own error types for a bad file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise _ArtefactDamaged(f"it cannot be loaded: {first}") from None

    try:
        return attempt()
    except _ArtefactDamaged as exc:
        reason = str(exc)
    aside_name = "(another process moved it first)"
    with file_lock(lock):
        try:
            if folder.exists():
                aside_name = move_aside(folder).name
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise InputError(f"the {what} in {folder} is damaged ({reason}) and cannot be moved aside",
                             f"delete {folder} (it is rebuilt from the bundled model): {exc.strerror or exc}") from None
    notice(f"the {what} in {folder} was damaged ({reason}): moved it to {aside_name} and building it again "
           "(delete the damaged copy when done)")
    try:
        return attempt()
    except _ArtefactDamaged as exc:
        raise InputError(f"the {what} in {folder} cannot be loaded even after rebuilding it ({exc})",
                         f"delete {folder} and retry, or use --embedder st") from None


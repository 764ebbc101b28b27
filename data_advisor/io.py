"""Atomic file output: a crash or a bad input never leaves a half-written file behind.

Everything the toolkit writes goes through these helpers: content is written to a temporary file in
the destination folder, flushed and fsync'd, then moved into place with ``os.replace`` (atomic on
POSIX).  A reader therefore sees either the old file or the complete new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from data_advisor.errors import OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)


_NEWLINE = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """Lines of a text file split on \\n, \\r\\n and \\r only: ``str.splitlines`` also splits on U+2028, U+0085
    and other characters that JSON strings may hold unescaped (our writers keep them, ``ensure_ascii=False``)."""
    return _NEWLINE.split(text)


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and prove we can write into it, before any expensive work starts."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-", delete=True):
            pass
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise OutputError(
            f"cannot write to output folder {path}: {reason}",
            "choose a folder you can write to with --out",
        ) from None
    return path


def _atomic_write(path: Path, write: Any, mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    _atomic_write(path, lambda fh: fh.write(text), "w")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a binary file atomically."""
    _atomic_write(path, lambda fh: fh.write(data), "wb")


def dumps_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys would reorder meaningful lists of keys, so we keep insertion order
    but fix indentation and separators so the same object always gives the same bytes."""
    return json.dumps(obj, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write one JSON document atomically."""
    write_text_atomic(path, dumps_json(obj))


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write JSON Lines atomically (one compact object per line)."""

    def _write(fh: Any) -> None:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False))
            fh.write("\n")

    _atomic_write(path, _write, "w")


def save_npy_atomic(path: Path, array: Any) -> None:
    """Save a NumPy array atomically (``np.save`` into a temp file, then rename)."""
    import numpy as np

    _atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False), "wb")

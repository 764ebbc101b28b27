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
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from data_advisor.errors import InputError, OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)


_NEWLINE = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """Lines of a text file split on \\n, \\r\\n and \\r only: ``str.splitlines`` also splits on U+2028, U+0085
    and other characters that JSON strings may hold unescaped (our writers keep them, ``ensure_ascii=False``)."""
    return _NEWLINE.split(text)


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and prove we can write into it, before any expensive work starts.

    Also removes temporaries that killed runs of this toolkit left in it (see :func:`remove_stale_temporaries`).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=f".write-test-{os.getpid()}-", delete=True):
            pass
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise OutputError(
            f"cannot write to output folder {path}: {reason}",
            "choose a folder you can write to with --out",
        ) from None
    remove_stale_temporaries(path)
    return path


# ----------------------------------------------------------------------------------------------- temporaries
#: Our temporaries carry the writing process's id: ``.audit-<pid>-xxxx`` folders, ``.<name>.p<pid>.xxxx.tmp`` files.
_TEMP_DIR = re.compile(r"^\.(?:audit|assign)-(\d+)-[A-Za-z0-9_]+$")
_TEMP_FILE = re.compile(r"^(?:\..+\.p(\d+)\.[A-Za-z0-9_]+\.tmp|\.write-test-(\d+)-[A-Za-z0-9_]+)$")
#: Temporaries written before names carried a pid (``.audit-xxxx``) are removed once this old (seconds).
_UNTAGGED_MAX_AGE_S = 24 * 3600
_UNTAGGED_DIR = re.compile(r"^\.(?:audit|assign)-[A-Za-z0-9_]{8}$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists but not ours (or not a pid we can judge): leave it alone
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporaries in ``folder`` that a killed run left behind: those whose writing process is gone.

    Why: outputs are written into a temporary and moved into place, so a SIGKILL mid-write leaves the temporary
    (an audit's can hold megabytes); the pid in its name tells a dead writer's leftovers from a live run's work.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TEMP_DIR.match(entry.name) or _TEMP_FILE.match(entry.name)
        try:
            if m:
                stale = not _pid_alive(int(next(g for g in m.groups() if g)))
            else:
                stale = bool(_UNTAGGED_DIR.match(entry.name)) and now - entry.stat().st_mtime > _UNTAGGED_MAX_AGE_S
            if not stale:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A fresh temporary folder ``<prefix><pid>-xxxx`` in ``parent`` (``prefix`` like ``.audit-``), stale ones removed."""
    remove_stale_temporaries(parent)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


# ----------------------------------------------------------------------------------------------- folders
@contextlib.contextmanager
def removed_on_failure(path: Path) -> Iterator[None]:
    """Folders the block creates at ``path`` and above it are removed again (if still empty) when the block fails.

    Why: an output folder is created before the work, so a failure (a missing input, a bad pool) would otherwise
    leave ``a/deep/er`` behind, empty.
    """
    missing: list[Path] = []
    cur = Path(path).absolute()
    while not cur.exists() and cur != cur.parent:
        missing.append(cur)
        cur = cur.parent
    try:
        yield
    except BaseException:
        for folder in missing:  # deepest first
            try:
                remove_stale_temporaries(folder)
                folder.rmdir()
            except OSError:
                break
        raise


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or child.is_relative_to(parent)


def resolve_path(path: Path) -> Path:
    """``path.resolve()``, with a symbolic-link loop as one line naming the link (pathlib raises RuntimeError)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as exc:
        raise InputError(f"{path} is a symbolic link that loops back on itself ({exc})",
                         "point the link at a real file or folder, or pass the file itself") from None


def check_link(path: Path) -> None:
    """One line for an input that is a symbolic link looping back on itself or pointing at nothing."""
    if Path(path).is_symlink():
        resolve_path(path)
        if not Path(path).exists():
            raise InputError(f"input {path} is a symbolic link to nothing ({os.readlink(path)} does not exist)",
                             "point the link at the prompts file, or pass the file itself")


def move_outputs(tmp: Path, folder: Path, *, replaced: Iterable[str] = ()) -> None:
    """Move every file of ``tmp`` into ``folder``, then remove the files named in ``replaced`` that this write did
    not produce: an earlier write's report or vectors beside new numbers would contradict them."""
    written = {f.name for f in sorted(tmp.iterdir())}
    for name in sorted(written):
        (tmp / name).replace(folder / name)
    for name in set(replaced) - written:
        stale = folder / name
        if stale.is_file() or stale.is_symlink():
            stale.unlink()


def check_disjoint(inputs: Sequence[Path], out: Path, written: Iterable[str], *, option: str = "--out") -> None:
    """Refuse an output location that overlaps an input: the same folder, one inside the other, or an input file
    that an output of the same name would overwrite.

    Why: ``audit DIR --out DIR`` wrote the outputs into the dataset folder, and the next run read them as data.
    An input *file* beside the outputs (``audit data/p.jsonl --out data``) is fine unless its name is an output's.
    """
    out_r = resolve_path(Path(out))
    names = set(written)
    for raw in inputs:
        src = resolve_path(Path(raw))
        if src.is_dir():
            if _inside(out_r, src) or _inside(src, out_r):
                where = "is" if out_r == src else ("is inside" if _inside(out_r, src) else "contains")
                raise OutputError(f"output folder {out} {where} the input folder {raw}",
                                  f"choose a {option} folder outside the input (and not containing it)")
        elif src.parent == out_r and src.name in names:
            raise OutputError(f"input {raw} would be overwritten by the output {src.name} in {out}",
                              f"choose another {option} folder")


def _atomic_write(path: Path, write: Any, mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.p{os.getpid()}.", suffix=".tmp")
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


# ------------------------------------------------------------------------------------------------ checksums
#: Written beside an audit's (or run's) outputs: the sha256 of each output file as it was written, so a reader can
#: tell a file changed since (a flipped digit keeps JSON valid, and would otherwise give a silently different report).
CHECKSUM_FILE = "outputs.sha256.json"


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(folder: Path, names: Iterable[str]) -> None:
    """Record the sha256 of each named file present in ``folder`` (written atomically, last)."""
    sums = {n: file_sha256(folder / n) for n in sorted(names) if (folder / n).is_file()}
    write_json_atomic(folder / CHECKSUM_FILE, {"sha256": sums})


def verify_checksums(folder: Path, names: Iterable[str]) -> None:
    """Raise a one-line :class:`~data_advisor.errors.InputError` when a named file no longer has the sha256 recorded
    when it was written.  Folders written before checksums existed (no checksum file) are read as they are."""
    from data_advisor.errors import InputError

    path = folder / CHECKSUM_FILE
    if not path.exists():
        return
    try:
        sums = json.loads(path.read_text("utf-8"))["sha256"]
        if not isinstance(sums, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InputError(f"{path} is damaged", f"re-run the command that wrote {folder}, or delete {path.name} to "
                         "read the folder without checking it") from None
    for name in names:
        want = sums.get(name)
        if want is None or not (folder / name).is_file():
            continue
        if file_sha256(folder / name) != want:
            raise InputError(f"{folder / name} changed since it was written (its sha256 differs from {path.name})",
                             f"re-run the command that wrote {folder}; if you edited the file on purpose, delete "
                             f"{path.name}")

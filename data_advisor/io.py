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
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_advisor.errors import InputError, OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)
#: Windows: os.kill(pid, 0) would terminate that process, so a writer's liveness is never probed there.
_IS_WINDOWS = os.name == "nt"


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
    if _IS_WINDOWS:
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
            if m and not _IS_WINDOWS:
                stale = not _pid_alive(int(next(g for g in m.groups() if g)))
            else:  # untagged, or on Windows (where no pid can be probed safely): by age
                stale = bool(m or _UNTAGGED_DIR.match(entry.name)) and now - entry.stat().st_mtime > _UNTAGGED_MAX_AGE_S
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
        if hasattr(os, "fchmod"):  # POSIX (Windows before Python 3.13 has none, and no mode bits to fix)
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


def write_texts_atomic(files: Sequence[tuple[Path, str]]) -> None:
    """Write several UTF-8 text files that belong together (``review.jsonl`` and its page): every one is written
    and fsync'd to a temporary first, and only then are they all moved into place, so a failure while writing
    leaves every old file as it was (and no temporary behind)."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files:
            path = Path(path)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.p{os.getpid()}.", suffix=".tmp")
            staged.append((tmp, path))
            os.fchmod(fd, 0o666 & ~_UMASK)
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


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


# ------------------------------------------------------------------------------------------ append-only JSONL
def append_jsonl(path: Path, rows: Iterable[dict[str, Any]], *, sort_keys: bool = False,
                 ensure_ascii: bool = False) -> None:
    """Append whole records to a JSON Lines file, flushed and fsync'd before returning.

    Why one writer: an append-only file is only as crash-safe as its least careful writer (the run store fsync'd,
    the LLM ledger did not); a record is written in one ``write`` so a kill leaves at most one torn last line, which
    :func:`read_jsonl_records` / :func:`cut_torn_tail` recognise and repair.  ``sort_keys`` / ``ensure_ascii`` keep
    each file's established bytes (the ledger has always written sorted, ASCII-escaped lines).
    """
    data = "".join(json.dumps(r, ensure_ascii=ensure_ascii, sort_keys=sort_keys) + "\n" for r in rows)
    if not data:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def is_torn_tail(line: bytes) -> bool:
    """What an interrupted append can leave as the last line: the start of a JSON object, cut short (no NUL fill,
    no newline-terminated garbage from elsewhere)."""
    return line.lstrip().startswith(b"{") and b"\x00" not in line


class JsonlDamage(ValueError):
    """A bad line of an append-only JSONL file that is not a torn last line: ``lineno`` and the records before it."""

    def __init__(self, path: Path, lineno: int, n_before: int) -> None:
        super().__init__(f"{path} is damaged at line {lineno}")
        self.path, self.lineno, self.n_before = path, lineno, n_before


@dataclass
class JsonlRead:
    """An append-only JSONL file as read, and the repair it needs (applied only once every check has passed)."""

    path: Path
    rows: list[dict[str, Any]]
    good_end: int
    size: int
    needs_newline: bool

    @property
    def torn_bytes(self) -> int:
        """Bytes of a torn last line that :meth:`repair` would cut (0 when the file is whole)."""
        return self.size - self.good_end

    def repair(self) -> int:
        """Cut a torn last line, or finish a complete last record whose newline was never written; the bytes cut."""
        if self.good_end < self.size:
            with open(self.path, "r+b") as fh:
                fh.truncate(self.good_end)
                fh.flush()
                os.fsync(fh.fileno())
            return self.size - self.good_end
        if self.needs_newline:
            with open(self.path, "ab") as fh:
                fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        return 0


def _is_dict(row: Any) -> bool:
    return isinstance(row, dict)


def read_jsonl_records(path: Path, valid: Callable[[Any], bool] = _is_dict) -> JsonlRead:
    """Read an append-only JSONL file without changing it; a missing file reads as empty.

    Only the *last* line may be bad, and only when it looks like a cut-short append (:func:`is_torn_tail`): it is
    then left out of ``rows`` and :meth:`JsonlRead.repair` cuts it.  A bad line anywhere else (or a last line that is
    not a torn append, e.g. zero fill) raises :class:`JsonlDamage`: cutting there would silently delete every record
    after it.  ``valid`` says what a record must look like.
    """
    path = Path(path)
    if not path.exists():
        return JsonlRead(path, [], 0, 0, False)
    raw = path.read_bytes()
    rows: list[dict[str, Any]] = []
    lines = raw.split(b"\n")
    last_used = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
    pos = 0
    for lineno, line in enumerate(lines, start=1):
        if line.strip():
            try:
                row = json.loads(line)
                ok = valid(row)
            except (ValueError, RecursionError):
                row, ok = None, False
            if not ok:
                if lineno == last_used and is_torn_tail(line):
                    return JsonlRead(path, rows, pos, len(raw), False)
                raise JsonlDamage(path, lineno, len(rows))
            rows.append(row)
        pos += len(line) + 1
    return JsonlRead(path, rows, len(raw), len(raw), bool(raw.strip()) and not raw.endswith(b"\n"))


def cut_torn_tail(path: Path) -> int:
    """Cut a partly written last line (no closing newline) off an append-only file in place; the bytes cut.

    Why: a kill mid-append leaves a partial last line, and the next record would be glued onto it.  Unlike
    :func:`read_jsonl_records` this never parses: it is for logs (the LLM ledger) whose records are not checked.
    """
    with open(path, "r+b") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return 0
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        start = max(0, size - (1 << 16))
        fh.seek(start)
        cut = fh.read().rfind(b"\n")
        new_size = start + cut + 1 if cut >= 0 else (0 if start == 0 else size)
        fh.truncate(new_size)
        return size - new_size


# ----------------------------------------------------------------------------------------- damaged caches
def move_aside(path: Path, *, companions: Sequence[str] = ()) -> Path:
    """Rename a damaged cache file or folder to ``<name>.damaged-<UTC time>-<pid>`` beside it; the new path.

    Why: a cache is recomputable, so damage there is never fatal; but the damaged copy is kept (not deleted) so a
    user can look at what broke.  ``companions`` are suffixes of sibling files that belong to it (SQLite's
    ``-journal``/``-wal``/``-shm``), moved with it.  Raises ``FileNotFoundError`` when another process moved it first
    and ``OSError`` when it cannot be renamed (the caller says what to delete instead).
    """
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = path.with_name(f"{path.name}.damaged-{stamp}-{os.getpid()}")
    os.replace(path, aside)
    for suffix in companions:
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            os.replace(extra, aside.with_name(aside.name + suffix))
    return aside


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


#: sqlite's result codes for a file that is not (or no longer) a readable database.
_SQLITE_DAMAGE_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def is_sqlite_corruption(exc: sqlite3.Error) -> bool:
    """Whether sqlite says the file itself is damaged, as opposed to locked, read-only or out of space.

    Why it matters: the caches kept in sqlite (LLM answers, the embedding index) are recomputable, so a damaged file
    is moved aside and rebuilt, while a locked or unwritable one is the user's to fix and must stay an error.
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    return name.startswith(_SQLITE_DAMAGE_CODES) or "malformed" in text or "not a database" in text

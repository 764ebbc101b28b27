"""The on-disk vector store of one embedding model: append-only ``vectors.f32`` + a SQLite index, crash- and damage-safe.

Why a cache: embedding is ~90% of an audit's time on a CPU, and the same prompts are audited again and again (a
re-run with another taxonomy, each round of the advisor loop).  Vectors are stored per model, keyed by the sha256 of
the text, in a memory-mappable file plus a SQLite index, so a second audit of the same data embeds nothing and large
sets never need all vectors in RAM at once.  Processes share a cache through one ``filelock`` lock per model folder
(portable: no POSIX-only module).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from data_advisor import _env
from data_advisor.errors import DataAdvisorError, InputError, OutputError
from data_advisor.io import is_sqlite_corruption, move_aside

T = TypeVar("T")

ENCODE_CHUNK = 65_536
"""Rows embedded, cached or copied per step: bounds the extra memory of a call (~100 MB at d=384)."""

NORM_TOLERANCE = 1e-3
"""A cached row without a checksum (written by an older version) is trusted only if it is finite and unit-norm
within this tolerance: every backend stores L2-normalised rows, so a zero-filled or random row fails."""

LOCK_TIMEOUT_S = 600
"""A cache lock held longer than this (another process stuck) is a one-line error, not an endless wait."""

def text_key(text: str) -> bytes:
    """Cache key of one text: the first 16 bytes of its sha256."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]


VECTOR_FORMAT = 3
"""How the cached vectors were computed: 3 = bucketed batches (:mod:`.batching`; the sentence-transformers loader:
one token length per pass), 2 = one token length per pass for every loader, 1 = padded batches (before).
Part of the folder name, so a cache of another format is never read (its vectors differ by up to ~1e-4): it stays
on disk untouched, texts are embedded again into the new folder, and the old one may be deleted."""


def slug(model_id: str) -> str:
    """The cache folder of a model: a readable stem plus a hash of the model id and :data:`VECTOR_FORMAT`."""
    short = re.sub(r"[^A-Za-z0-9]+", "-", model_id.split("@")[0].split("/")[-1]).strip("-")[:40]
    key = model_id if VECTOR_FORMAT == 1 else f"{model_id}|vectors={VECTOR_FORMAT}"
    return f"{short}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def row_checksums(vectors: np.ndarray) -> list[int]:
    """CRC-32 of each float32 row's bytes (~0.7 µs a row): stored in the index beside the row number, so a row
    changed on disk (zero-filled, random bytes, another row's bytes) is detected when it is read back."""
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    return [zlib.crc32(r) for r in rows]


def notice(message: str) -> None:
    """One line about a recovery the cache made (the user learns why this run re-embedded), through the toolkit's
    logger at warning level: shown with ``-q`` too."""
    _env.log.warning(message)


class CacheDamaged(Exception):
    """Internal: the index or meta of a cache folder cannot be read; the folder is moved aside."""


def read_meta(path: Path) -> dict[str, object] | None:
    """A cache folder's meta.json as a dict with an int ``dim`` and a str ``model_id``; None when it is missing.

    Raises :class:`CacheDamaged` when it exists but is not such a document."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheDamaged(f"meta.json cannot be read ({exc.strerror or exc})") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CacheDamaged("meta.json is not valid JSON") from None
    if not (isinstance(meta, dict) and isinstance(meta.get("dim"), int) and not isinstance(meta.get("dim"), bool)
            and meta["dim"] > 0 and isinstance(meta.get("model_id"), str)):
        raise CacheDamaged("meta.json lacks a model_id and a positive dim")
    return meta


class EmbeddingCache:
    """Append-only vector store for one model: ``vectors.f32`` (rows of ``dim`` float32) + ``index.sqlite``.

    Crash safety: vectors are appended and fsync'd before their index rows are committed, so a kill at any
    moment leaves at worst unreferenced rows (and a torn last row, trimmed on the next write).

    Damage safety: each index row carries the CRC-32 of its vector, checked on every read (rows of caches written
    before checksums existed are checked for a finite unit norm instead), so a damaged row is re-embedded, never
    used; the caller reports how many. An index or meta.json that cannot be read at all moves the whole folder
    aside (``<folder>.damaged-<time>``) and a new cache starts, said on stderr. Nothing is lost: a cache only ever
    holds what can be recomputed.
    """

    def __init__(self, root: Path, model_id: str, dim: int) -> None:
        self.root = Path(root)
        self.model_id = model_id
        self.dir = self.root / slug(model_id)
        self.dim = dim
        self.vectors_path = self.dir / "vectors.f32"
        self.index_path = self.dir / "index.sqlite"
        self.notices: list[str] = []
        self._db: sqlite3.Connection | None = None
        self._index_ino = 0
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        with self._lock():
            try:
                self._open()
            except CacheDamaged as exc:
                self._quarantine(str(exc))
                self._open()

    # -- opening, locking, recovery --------------------------------------------------------------------------
    def _guard(self, exc: BaseException) -> DataAdvisorError:
        """A cache problem that no recovery fixes (permissions, a full disk, a lock held for minutes)."""
        detail = getattr(exc, "strerror", None) or str(exc)
        return OutputError(f"cannot use the embedding cache {self.dir}: {detail}",
                           f"make {self.root} writable (or free disk space), set DATA_ADVISOR_CACHE to another "
                           "folder, or pass --no-cache")

    def _open(self) -> None:
        """Open (or create) the folder, check meta.json and the index; raises :class:`CacheDamaged`."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            meta_path = self.dir / "meta.json"
            meta = read_meta(meta_path)
            if meta is not None and (meta["dim"] != self.dim or meta["model_id"] != self.model_id):
                raise InputError(f"embedding cache {self.dir} belongs to another model",
                                 f"delete {self.dir} or set DATA_ADVISOR_CACHE to another folder")
            if meta is None:
                from data_advisor.io import write_json_atomic

                write_json_atomic(meta_path, {"model_id": self.model_id, "dim": self.dim, "dtype": "float32",
                                              "vector_format": VECTOR_FORMAT})
            self.vectors_path.touch(exist_ok=True)
            db = sqlite3.connect(self.index_path, timeout=60, check_same_thread=False)
        except OSError as exc:
            raise self._guard(exc) from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS vec (key BLOB PRIMARY KEY, row INTEGER NOT NULL, crc INTEGER)")
            if "crc" not in {r[1] for r in db.execute("PRAGMA table_info(vec)")}:
                db.execute("ALTER TABLE vec ADD COLUMN crc INTEGER")  # an older cache: its rows get the norm check
            db.commit()
            # Reads every page of both b-trees (the key index and the table): a truncated or overwritten index
            # fails here, at open, rather than halfway through an audit.
            count, _ = db.execute("SELECT COUNT(*), MAX(row) FROM vec").fetchone()
        except sqlite3.Error as exc:
            db.close()
            if is_sqlite_corruption(exc):
                raise CacheDamaged(f"index.sqlite is unreadable ({exc})") from None
            raise self._guard(exc) from None
        self._db = db
        self._index_ino = self._ino()
        n_rows = self._complete_rows()
        if count == 0 and n_rows > 0:
            db.close()
            self._db = None
            raise CacheDamaged(f"index.sqlite holds no rows but vectors.f32 holds {n_rows:,} "
                                "(the index was lost, or the first write was interrupted)")

    def _ino(self) -> int:
        try:
            return os.stat(self.index_path).st_ino
        except OSError:
            return 0

    def _quarantine(self, reason: str) -> None:
        """Move the damaged folder aside and say so; the caller opens a fresh one."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        aside_name = "(another process moved it first)"
        try:
            if self.dir.exists():
                aside_name = move_aside(self.dir).name
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise InputError(f"embedding cache {self.dir} is damaged ({reason}) and cannot be moved aside "
                             f"({exc.strerror or exc})",
                             f"delete {self.dir} (a cache: nothing is lost), or set DATA_ADVISOR_CACHE to another "
                             "folder") from None
        msg = (f"embedding cache {self.dir} was damaged ({reason}): moved it to {aside_name} and started a new "
               "cache (texts are embedded again; delete the damaged copy when done)")
        self.notices.append(msg)
        notice(msg)

    def recover(self, reason: str) -> None:
        """Move the damaged folder aside and open a new, empty cache in its place."""
        with self._lock():
            if self._ino() != self._index_ino:  # another process already replaced it: use the new one
                self._reopen()
                return
            self._quarantine(reason)
            self._open()

    def _reopen(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        try:
            self._open()
        except CacheDamaged as exc:
            self._quarantine(str(exc))
            self._open()

    @property
    def db(self) -> sqlite3.Connection:
        """The index connection, reopened if another process moved a damaged folder aside meanwhile."""
        if self._db is None or self._ino() != self._index_ino:
            with self._lock():
                self._reopen()
        assert self._db is not None
        return self._db

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Exclusive lock shared by every process (and thread) using this model's cache; re-entrant within one
        instance. It lives beside the folder, not in it, so moving a damaged folder aside never strands a process
        waiting on it."""
        with self._thread_lock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            from filelock import FileLock, Timeout

            try:
                self.root.mkdir(parents=True, exist_ok=True)
                lock = FileLock(self.root / f".{self.dir.name}.lock", timeout=LOCK_TIMEOUT_S)
                lock.acquire()
            except (OSError, Timeout) as exc:
                raise self._guard(exc) from None
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
                lock.release()

    def _db_call(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the index; a corrupt index is moved aside and ``fn`` runs once more on the new one."""
        try:
            return fn(self.db)
        except sqlite3.Error as exc:
            if not is_sqlite_corruption(exc):
                raise self._guard(exc) from None
            self.recover(f"index.sqlite failed while {what} ({exc})")
        try:
            return fn(self.db)
        except sqlite3.Error as exc:
            raise self._guard(exc) from None

    # -- reading and writing ---------------------------------------------------------------------------------
    def _complete_rows(self) -> int:
        """Rows fully present in the vectors file (a killed writer can leave a torn tail)."""
        try:
            return self.vectors_path.stat().st_size // (self.dim * 4)
        except FileNotFoundError:
            return 0

    def lookup_entries(self, keys: Sequence[bytes]) -> tuple[dict[bytes, tuple[int, int | None]], int]:
        """``({key: (row, crc or None)}, n_lost)`` for the keys present in the cache.

        ``n_lost`` counts indexed keys whose row lies past the end of the vectors file (the file lost rows): they
        are left out, so they are embedded again. The index is read *before* the file size: a concurrent writer
        fsyncs vectors before committing their index rows, so every row seen in the index is already on disk.
        """

        def query(db: sqlite3.Connection) -> dict[bytes, tuple[int, int | None]]:
            out: dict[bytes, tuple[int, int | None]] = {}
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                q = f"SELECT key, row, crc FROM vec WHERE key IN ({','.join('?' * len(chunk))})"
                out.update({bytes(k): (int(r), None if c is None else int(c)) for k, r, c in db.execute(q, chunk)})
            return out

        entries = self._db_call("looking up texts", query)
        n_rows = self._complete_rows()
        found = {k: e for k, e in entries.items() if 0 <= e[0] < n_rows}
        return found, len(entries) - len(found)

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, int]:
        """Row numbers of the keys present in the cache (rows past a torn tail count as misses)."""
        return {k: e[0] for k, e in self.lookup_entries(keys)[0].items()}

    def read_rows(self, rows: Sequence[int]) -> np.ndarray:
        """Vectors at the given rows, through a memory map (no full load)."""
        if not len(rows):
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            mm = np.memmap(self.vectors_path, dtype=np.float32, mode="r", shape=(self._complete_rows(), self.dim))
            return np.array(mm[np.asarray(rows, dtype=np.int64)], dtype=np.float32)
        except (OSError, ValueError) as exc:
            raise self._guard(exc) from None

    def read_checked(self, entries: Sequence[tuple[int, int | None]]) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, ok)``: the rows of ``entries`` and whether each passed its check (its CRC-32, or for rows
        written before checksums existed, a finite unit norm). Rows that fail must not be used."""
        vecs = self.read_rows([r for r, _ in entries])
        ok = np.ones(len(entries), dtype=bool)
        legacy = np.fromiter((c is None for _, c in entries), dtype=bool, count=len(entries))
        if (~legacy).any():
            idx = np.flatnonzero(~legacy)
            crcs = row_checksums(vecs[idx])
            ok[idx] = [crc == entries[i][1] for i, crc in zip(idx, crcs, strict=True)]
        if legacy.any():
            sub = vecs[legacy]
            with np.errstate(all="ignore"):
                norms = np.sqrt(np.einsum("ij,ij->i", sub.astype(np.float64), sub.astype(np.float64)))
            ok[legacy] = np.isfinite(sub).all(axis=1) & (np.abs(norms - 1.0) <= NORM_TOLERANCE)
        return vecs, ok

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Append vectors and index them with their checksums (a key already present points to the new row)."""
        if not len(keys):
            return
        row_bytes = self.dim * 4
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        crcs = row_checksums(vectors)
        with self._lock():
            db = self.db
            try:
                size = self.vectors_path.stat().st_size
                if size % row_bytes:  # torn row from a killed writer: drop it
                    os.truncate(self.vectors_path, size - size % row_bytes)
                    size -= size % row_bytes
            except FileNotFoundError:  # the folder was moved aside under us by a damaged-cache recovery
                self._reopen()
                db, size = self.db, 0
            except OSError as exc:
                raise self._guard(exc) from None
            first = size // row_bytes

            def index(db: sqlite3.Connection) -> None:
                # Index rows that point at or past the end (their vectors were lost) would alias new vectors.
                db.execute("DELETE FROM vec WHERE row >= ?", (first,))
                db.executemany("INSERT OR REPLACE INTO vec(key, row, crc) VALUES (?, ?, ?)",
                               [(k, first + i, c) for i, (k, c) in enumerate(zip(keys, crcs, strict=True))])
                db.commit()

            try:
                with open(self.vectors_path, "ab") as fh:
                    fh.write(vectors.tobytes())
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise self._guard(exc) from None
            try:
                index(db)
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.rollback()
                if not is_sqlite_corruption(exc):
                    raise self._guard(exc) from None
                # The index broke under us: start a new cache (lock already held) and write these rows there.
                if self._ino() == self._index_ino:
                    self._quarantine(f"index.sqlite failed while writing ({exc})")
                self._reopen()
                self.put_unlocked(keys, vectors, crcs)

    def put_unlocked(self, keys: Sequence[bytes], vectors: np.ndarray, crcs: list[int]) -> None:
        """Append to a freshly opened (empty) cache; the caller holds the lock."""
        first = self._complete_rows()
        try:
            with open(self.vectors_path, "ab") as fh:
                fh.write(vectors.tobytes())
                fh.flush()
                os.fsync(fh.fileno())
            db = self.db
            db.executemany("INSERT OR REPLACE INTO vec(key, row, crc) VALUES (?, ?, ?)",
                           [(k, first + i, c) for i, (k, c) in enumerate(zip(keys, crcs, strict=True))])
            db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise self._guard(exc) from None

    def __len__(self) -> int:
        return int(self._db_call("counting rows", lambda db: db.execute("SELECT COUNT(*) FROM vec").fetchone()[0]))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def default_cache_dir() -> Path:
    """Where embeddings are cached: ``$DATA_ADVISOR_CACHE/embeddings`` (default ``~/.cache/data-advisor``)."""
    return _env.cache_root() / "embeddings"

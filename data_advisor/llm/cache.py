"""The response cache: successful LLM answers in a small sqlite file, keyed by everything that determines them.

Why: re-running an analysis costs nothing and gives identical text.  A cache only holds what can be asked again,
so its damage is never fatal (see :class:`ResponseCache`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from data_advisor._env import log
from data_advisor.errors import OutputError
from data_advisor.io import is_sqlite_corruption, move_aside

__all__ = ["CACHE_FILENAME", "CachedAnswer", "ResponseCache"]

#: Name of the sqlite response cache inside ``LLMSettings.cache_dir``.
CACHE_FILENAME = "llm_responses.sqlite"

T = TypeVar("T")


@dataclass(frozen=True)
class CachedAnswer:
    """One stored answer: its text, the model that wrote it and why it stopped."""

    text: str
    model: str
    finish_reason: str | None


class ResponseCache:
    """Successful answers in a small sqlite file, shared safely by threads (and processes).

    Why sqlite: atomic writes, no partial files after a crash, and concurrent readers/writers across
    processes for free.  Only the hash key, the answer text and token counts are stored: no prompts,
    no endpoint, no key.

    Damage: each row carries a checksum of its answer, checked on every read (a row that fails is dropped and
    asked again); a file sqlite cannot read (truncated, overwritten) is moved aside
    (``llm_responses.sqlite.damaged-<time>``) and a new cache starts, with one line on stderr.  A cache only holds
    what can be asked again, so nothing is lost but the money of re-asking.
    """

    def __init__(self, directory: Path | str) -> None:
        directory = Path(directory).expanduser()
        self.path = directory / CACHE_FILENAME
        self.notices: list[str] = []
        self._lock = threading.Lock()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unusable(exc) from None
        try:
            self._conn = self._connect()
        except sqlite3.Error as exc:
            if not is_sqlite_corruption(exc):
                raise self._unusable(exc) from None
            self._quarantine(f"it cannot be read ({exc})")
            try:
                self._conn = self._connect()
            except sqlite3.Error as exc2:
                raise self._unusable(exc2) from None

    def _unusable(self, exc: BaseException) -> OutputError:
        return OutputError(
            f"cannot open the LLM response cache {self.path}: {getattr(exc, 'strerror', None) or exc}",
            "choose a writable cache_dir (DATA_ADVISOR_CACHE), free disk space, or disable the cache (cache_dir=None)",
        )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL,"
                " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
                " finish_reason TEXT, created REAL NOT NULL, checksum TEXT)"
            )
            if "checksum" not in {r[1] for r in conn.execute("PRAGMA table_info(responses)")}:
                with _suppress_duplicate_column():  # another process may migrate at the same moment
                    conn.execute("ALTER TABLE responses ADD COLUMN checksum TEXT")  # older rows: unchecked
            conn.execute("SELECT COUNT(*), MAX(created) FROM responses").fetchone()  # reads every page
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _quarantine(self, reason: str) -> None:
        try:
            aside_name = move_aside(self.path, companions=("-journal", "-wal", "-shm")).name
        except FileNotFoundError:
            aside_name = "a damaged copy (another process moved it first)"
        except OSError as exc:
            raise OutputError(
                f"the LLM response cache {self.path} is damaged ({reason}) and cannot be moved aside: "
                f"{exc.strerror or exc}",
                f"delete {self.path} (a cache: answers are asked again), or disable the cache",
            ) from None
        msg = (f"LLM response cache {self.path} was damaged ({reason}): moved it to {aside_name} and started a new "
               "one (answers are asked again; delete the damaged copy when done)")
        self.notices.append(msg)
        log.warning(msg)

    def _run(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the connection (lock held); a corrupt file is moved aside and ``fn`` runs once on a new one."""
        with self._lock:
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                if not is_sqlite_corruption(exc):
                    raise self._unusable(exc) from None
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._quarantine(f"it failed while {what} ({exc})")
                try:
                    self._conn = self._connect()
                    return fn(self._conn)
                except sqlite3.Error as exc2:
                    raise self._unusable(exc2) from None

    def get(self, key: str) -> CachedAnswer | None:
        """The cached answer for ``key``, or ``None`` (also when the stored row fails its checksum)."""
        row = self._run("reading", lambda c: c.execute(
            "SELECT text, model, finish_reason, checksum FROM responses WHERE key = ?", (key,)).fetchone())
        if row is None:
            return None
        text, model, finish_reason, checksum = row
        if not (isinstance(text, str) and isinstance(model, str) and (finish_reason is None or isinstance(finish_reason, str))) \
                or (checksum is not None and checksum != _answer_checksum(key, text, model, finish_reason)):
            self.delete(key)
            msg = f"LLM response cache {self.path}: a damaged answer was dropped and is asked again"
            self.notices.append(msg)
            log.warning(msg)
            return None
        return CachedAnswer(text=text, model=model, finish_reason=finish_reason)

    def put(
        self, key: str, *, text: str, model: str, prompt_tokens: int, completion_tokens: int, finish_reason: str | None
    ) -> None:
        """Store (or replace) a successful answer."""
        row = (key, model, text, prompt_tokens, completion_tokens, finish_reason, time.time(),
               _answer_checksum(key, text, model, finish_reason))
        self._run("writing", lambda c: c.execute(
            "INSERT OR REPLACE INTO responses(key, model, text, prompt_tokens, completion_tokens, finish_reason,"
            " created, checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row))

    def delete(self, key: str) -> None:
        """Forget one answer (used when an answer turned out unusable, so a rerun asks again)."""
        self._run("deleting", lambda c: c.execute("DELETE FROM responses WHERE key = ?", (key,)))

    def __len__(self) -> int:
        return int(self._run("counting", lambda c: c.execute("SELECT COUNT(*) FROM responses").fetchone()[0]))

    def close(self) -> None:
        """Close the sqlite connection."""
        with self._lock:
            self._conn.close()



@contextlib.contextmanager
def _suppress_duplicate_column() -> Any:
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc).lower():
            raise


def _answer_checksum(key: str, text: str, model: str, finish_reason: str | None) -> str:
    payload = json.dumps([key, text, model, finish_reason], ensure_ascii=False).encode("utf-8", "surrogatepass")
    return hashlib.sha256(payload).hexdigest()[:32]

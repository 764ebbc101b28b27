"""``io.is_sqlite_corruption``: the one test of "is this sqlite file damaged" that the recomputable caches share
(damaged: move aside and rebuild; locked or read-only: the user's to fix, so an error)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from data_advisor.io import is_sqlite_corruption


def _error_reading(path: Path) -> sqlite3.Error:
    conn = sqlite3.connect(path)
    try:
        conn.execute("SELECT COUNT(*) FROM t").fetchone()
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("no error")


@pytest.mark.parametrize("content", [os.urandom(8192), bytes(8192), b"SQLite format 3\x00" + os.urandom(4000)])
def test_a_damaged_file_is_corruption(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "db.sqlite"
    path.write_bytes(content)
    assert is_sqlite_corruption(_error_reading(path))


def test_locked_missing_table_and_read_only_are_not(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    assert not is_sqlite_corruption(_error_reading(path))  # a healthy file without the table
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    assert "locked" in str(locked.value) and not is_sqlite_corruption(locked.value)
    writer.execute("ROLLBACK")
    writer.close()
    other.close()
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as denied:
        read_only.execute("INSERT INTO t VALUES (1)")
    assert not is_sqlite_corruption(denied.value)
    read_only.close()

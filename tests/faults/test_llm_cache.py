"""The LLM response cache under damage: a file sqlite cannot read is moved aside and a new one starts; a row whose
answer changed on disk fails its checksum and is asked again; never a traceback, never a wrong answer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from data_advisor.llm.client import CACHE_FILENAME, ResponseCache
from tests.llm.llm_server import LLMServer

pytestmark = pytest.mark.faults


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _filled_cache(cache_dir: Path, n: int = 300) -> Path:
    cache = ResponseCache(cache_dir)
    cache._conn.execute("PRAGMA synchronous=OFF")  # a fast fill: the test needs the file, not its durability
    for i in range(n):
        cache.put(f"key-{i}", text=f"answer number {i} " * 20, model="m", prompt_tokens=1, completion_tokens=2,
                  finish_reason="stop")
    cache.close()
    return cache_dir / CACHE_FILENAME


DAMAGE = {
    "truncate-half": lambda d, rng: d[: len(d) // 2],
    "zero": lambda d, rng: bytes(len(d)),
    "random": lambda d, rng: rng.integers(0, 256, len(d), dtype=np.uint8).tobytes(),
    "random-start": lambda d, rng: rng.integers(0, 256, 100, dtype=np.uint8).tobytes() + d[100:],
    "random-middle": lambda d, rng: d[:8192] + rng.integers(0, 256, len(d) - 16384, dtype=np.uint8).tobytes() + d[-8192:],
    "random-end": lambda d, rng: d[:-4096] + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_an_unreadable_cache_file_is_moved_aside(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 toolkit_warnings: list[str], how: str) -> None:
    path = _filled_cache(tmp_path)
    path.write_bytes(DAMAGE[how](path.read_bytes(), np.random.default_rng(0)))
    capsys.readouterr()
    cache = ResponseCache(tmp_path)
    answers = [cache.get(f"key-{i}") for i in range(300)]  # damage may only show on some pages
    cache.put("new", text="fresh", model="m", prompt_tokens=1, completion_tokens=1, finish_reason=None)
    assert cache.get("new") is not None and cache.get("new").text == "fresh"  # type: ignore[union-attr]
    # every answer served is the one stored: damaged rows are never served
    for i, a in enumerate(answers):
        assert a is None or a.text == f"answer number {i} " * 20
    err = capsys.readouterr().err
    lines = toolkit_warnings
    assert "Traceback" not in err
    if cache.notices:  # sqlite noticed: one line naming the file, the damaged copy kept
        assert len(lines) == len(cache.notices) == 1 and str(path) in lines[0]
        assert list(tmp_path.glob(f"{CACHE_FILENAME}.damaged-*"))
    else:  # only unused pages were hit: every answer must then be intact
        assert all(a is not None for a in answers) and not lines
    cache.close()


def test_a_changed_answer_fails_its_checksum(tmp_path: Path, toolkit_warnings: list[str]) -> None:
    """Bytes changed inside a row that sqlite cannot notice (no page checksums) are caught by the row's own."""
    path = _filled_cache(tmp_path, 3)
    db = sqlite3.connect(path)
    db.execute("UPDATE responses SET text = 'answer number 9 (tampered)' WHERE key = 'key-1'")
    db.commit()
    db.close()
    cache = ResponseCache(tmp_path)
    assert cache.get("key-0") is not None
    assert cache.get("key-1") is None  # never served
    assert len(cache) == 2  # dropped, so the next run asks again
    (line,) = toolkit_warnings
    assert str(path) in line and "asked again" in line
    cache.close()


def test_an_old_cache_without_checksums_keeps_its_answers(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILENAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL,"
               " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, finish_reason TEXT,"
               " created REAL NOT NULL)")
    db.execute("INSERT INTO responses VALUES ('k', 'm', 'old answer', 1, 1, 'stop', 0)")
    db.commit()
    db.close()
    cache = ResponseCache(tmp_path)
    hit = cache.get("k")
    assert hit is not None and hit.text == "old answer"
    cache.put("k2", text="new", model="m", prompt_tokens=1, completion_tokens=1, finish_reason=None)
    assert cache.get("k2").text == "new"  # type: ignore[union-attr]
    cache.close()


def test_client_with_a_damaged_cache_asks_again(llm_server: LLMServer, make_llm_client, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                toolkit_warnings: list[str]) -> None:
    cache_dir = tmp_path / "cache"
    client = make_llm_client(cache_dir=cache_dir)
    first = client.complete(user("cache me"), seed=7)
    client.close()
    path = cache_dir / CACHE_FILENAME
    path.write_bytes(bytes(path.stat().st_size))  # zero-filled
    capsys.readouterr()
    again = make_llm_client(cache_dir=cache_dir).complete(user("cache me"), seed=7)
    assert again.cached is False and again.text == first.text
    assert llm_server.request_count == 2
    err = capsys.readouterr().err
    assert any(str(path) in line for line in toolkit_warnings) and "Traceback" not in err

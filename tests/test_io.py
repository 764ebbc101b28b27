"""Atomic output: complete files or none, no temp files left behind, normal permissions."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from data_advisor.errors import OutputError
from data_advisor.io import (
    dumps_json,
    ensure_writable_dir,
    save_npy_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_text_creates_parents_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    write_text_atomic(target, "héllo\nworld\n")
    assert target.read_bytes() == "héllo\nworld\n".encode()
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]
    write_text_atomic(target, "second")
    assert target.read_text("utf-8") == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_permissions_are_normal_not_0600(tmp_path: Path) -> None:
    expected = 0o666 & ~_current_umask()
    for name, write in [("t.txt", lambda p: write_text_atomic(p, "x")), ("b.bin", lambda p: write_bytes_atomic(p, b"x")),
                        ("j.json", lambda p: write_json_atomic(p, {"a": 1})),
                        ("l.jsonl", lambda p: write_jsonl_atomic(p, [{"a": 1}])),
                        ("n.npy", lambda p: save_npy_atomic(p, np.zeros(3)))]:
        path = tmp_path / name
        write(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == expected, (name, oct(mode))
        assert mode != 0o600


def test_writer_raising_midway_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "rows.jsonl"
    write_jsonl_atomic(target, [{"n": 0}, {"n": 1}])
    old = target.read_bytes()

    def rows() -> Iterator[dict[str, int]]:
        for n in range(10_000):
            if n == 5_000:
                raise RuntimeError("boom in the middle")
            yield {"n": n}

    with pytest.raises(RuntimeError, match="boom"):
        write_jsonl_atomic(target, rows())
    assert target.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_interrupt_midway_keeps_old_content(tmp_path: Path) -> None:
    """KeyboardInterrupt is a BaseException, not an Exception: the temp file must still go."""
    target = tmp_path / "rows.jsonl"
    write_text_atomic(target, "old\n")

    def rows() -> Iterator[dict[str, int]]:
        yield {"n": 1}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_jsonl_atomic(target, rows())
    assert target.read_text("utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_new_file_not_created_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "new.jsonl"
    with pytest.raises(ValueError):
        write_jsonl_atomic(target, [{"ok": 1}, {"bad": float("nan")}])  # allow_nan=False
    assert list(tmp_path.iterdir()) == []


def test_json_nan_rejected_before_anything_is_written(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(ValueError):
        write_json_atomic(target, {"v": float("inf")})
    assert json.loads(target.read_text("utf-8")) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_concurrent_reader_never_sees_a_torn_file(tmp_path: Path) -> None:
    target = tmp_path / "big.txt"
    contents = ["A" * 400_000 + "\n", "B" * 300_000 + "\n"]
    write_text_atomic(target, contents[0])
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(target.read_text("utf-8"))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(30):
            write_text_atomic(target, contents[i % 2])
    finally:
        stop.set()
        t.join()
    assert seen
    torn = [len(s) for s in seen if s not in contents]
    assert not torn, f"{len(torn)} torn reads, lengths {torn[:5]}"
    assert [p.name for p in tmp_path.iterdir()] == ["big.txt"]


def test_json_and_jsonl_round_trip(tmp_path: Path) -> None:
    obj = {"b": [1, 2.5, "é"], "a": None}
    write_json_atomic(tmp_path / "o.json", obj)
    text = (tmp_path / "o.json").read_text("utf-8")
    assert json.loads(text) == obj
    assert text == dumps_json(obj)
    assert list(json.loads(text)) == ["b", "a"]  # insertion order kept, not sorted
    assert "é" in text  # not \u-escaped
    rows = [{"i": i, "t": f"line {i}\nwith newline"} for i in range(3)]
    write_jsonl_atomic(tmp_path / "r.jsonl", iter(rows))
    lines = (tmp_path / "r.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(x) for x in lines] == rows


def test_save_npy_round_trip(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float16).reshape(3, 4)
    save_npy_atomic(tmp_path / "a.npy", arr)
    back = np.load(tmp_path / "a.npy", allow_pickle=False)
    assert back.dtype == np.float16
    np.testing.assert_array_equal(back, arr)


def test_ensure_writable_dir_creates_nested(tmp_path: Path) -> None:
    d = tmp_path / "x" / "y"
    assert ensure_writable_dir(d) == d
    assert d.is_dir()
    assert list(d.iterdir()) == []  # the write probe is gone


def test_ensure_writable_dir_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    target = blocker / "out"
    with pytest.raises(OutputError) as ei:
        ensure_writable_dir(target)
    msg = ei.value.one_line()
    assert "\n" not in msg
    assert str(target) in msg
    assert " — fix: " in msg and "--out" in msg
    assert blocker.read_text("utf-8") == "x"


def test_ensure_writable_dir_on_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(OutputError) as ei:
        ensure_writable_dir(blocker)
    assert str(blocker) in ei.value.one_line()


def test_jsonl_readers_keep_unicode_line_separators_inside_strings(tmp_path: Path) -> None:
    """Our writers keep U+2028/U+0085 unescaped (ensure_ascii=False); every reader must split on newlines only."""
    from data_advisor.io import split_lines, write_json_atomic, write_jsonl_atomic
    from data_advisor.reports._data import read_jsonl
    from data_advisor.runs import read_run

    assert split_lines("a\u2028b\r\nc\rd\n") == ["a\u2028b", "c", "d", ""]
    rows = [{"id": "1", "text": "first\u2028second\u0085third\u2029"}, {"id": "2", "text": "plain"}]
    write_jsonl_atomic(tmp_path / "rows.jsonl", rows)
    assert read_jsonl(tmp_path / "rows.jsonl") == rows
    write_json_atomic(tmp_path / "config.json", {"n": 2})
    write_jsonl_atomic(tmp_path / "prompts.jsonl", rows)
    run = read_run(tmp_path)
    assert [(p.id, p.text) for p in run.prompts] == [(r["id"], r["text"]) for r in rows] and run.rounds == []


# ------------------------------------------------------------------------------ temporaries of killed runs (issue 13)
def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    """A SIGKILL while the audit wrote its outputs left a `.audit-*` folder (9 MB) that no later run removed."""
    from data_advisor.io import make_temp_dir

    dead = _dead_pid()
    stale_dir = tmp_path / f".audit-{dead}-abcd1234"
    stale_dir.mkdir()
    (stale_dir / "embeddings.npy").write_bytes(b"\0" * 1000)
    stale_file = tmp_path / f".coverage.json.p{dead}.x1y2z3_q.tmp"
    stale_file.write_text("{", encoding="utf-8")
    stale_probe = tmp_path / f".write-test-{dead}-k2j4h6g8"
    stale_probe.touch()
    live_dir = tmp_path / f".audit-{os.getpid()}-live5678"  # a run still writing (this process): kept
    live_dir.mkdir()
    user_dir = tmp_path / ".audit-notes"  # not ours: kept
    user_dir.mkdir()
    ensure_writable_dir(tmp_path)
    assert not stale_dir.exists() and not stale_file.exists() and not stale_probe.exists()
    assert live_dir.is_dir() and user_dir.is_dir()
    tmp = make_temp_dir(tmp_path, ".audit-")
    assert tmp.name.startswith(f".audit-{os.getpid()}-") and tmp.is_dir()


def test_atomic_write_temp_names_carry_the_pid(tmp_path: Path) -> None:
    seen: list[str] = []

    def spy(fh: object) -> None:
        seen.extend(p.name for p in tmp_path.iterdir())

    from data_advisor.io import _atomic_write

    _atomic_write(tmp_path / "out.json", spy, "w")
    assert any(name.startswith(f".out.json.p{os.getpid()}.") and name.endswith(".tmp") for name in seen), seen


def test_failed_block_removes_the_folders_it_created(tmp_path: Path) -> None:
    from data_advisor.io import removed_on_failure

    deep = tmp_path / "a" / "deep" / "er"
    with pytest.raises(RuntimeError), removed_on_failure(deep):
        ensure_writable_dir(deep)
        raise RuntimeError("the input was missing")
    assert not (tmp_path / "a").exists()
    with removed_on_failure(deep):  # success keeps them
        ensure_writable_dir(deep)
    assert deep.is_dir()


def test_atomic_writes_work_without_os_fchmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows (Python < 3.13) has no os.fchmod: every output write must still work there."""
    monkeypatch.delattr(os, "fchmod", raising=False)
    write_text_atomic(tmp_path / "a.txt", "hello")
    write_json_atomic(tmp_path / "b.json", {"k": 1})
    assert (tmp_path / "a.txt").read_text("utf-8") == "hello" and json.loads((tmp_path / "b.json").read_text()) == {"k": 1}


def test_windows_never_probes_pids_and_ages_temporaries_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows os.kill(pid, 0) terminates the process: stale temporaries go by age there, never by a pid probe."""
    from data_advisor import io as dio

    def no_kill(*_: object) -> None:
        raise AssertionError("os.kill called on Windows")

    fresh = tmp_path / f".audit-{_dead_pid()}-fresh123"
    old = tmp_path / f".audit-{_dead_pid()}-old45678"
    fresh.mkdir()
    old.mkdir()
    os.utime(old, (1_000_000, 1_000_000))
    monkeypatch.setattr(dio, "_IS_WINDOWS", True)
    monkeypatch.setattr(dio.os, "kill", no_kill)
    assert dio.remove_stale_temporaries(tmp_path) == [old]
    assert fresh.is_dir() and not old.exists()


# --------------------------------------------------------------------------- append-only JSONL and damaged caches
def test_append_jsonl_and_torn_tail_repair(tmp_path: Path) -> None:
    from data_advisor.io import JsonlDamage, append_jsonl, cut_torn_tail, read_jsonl_records

    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"a": 1}, {"b": "é"}])
    append_jsonl(path, [])  # nothing to write: the file is not touched
    whole = path.read_bytes()
    assert whole == '{"a": 1}\n{"b": "é"}\n'.encode()
    with open(path, "ab") as fh:
        fh.write(b'{"c": 3, "d": "cut sh')  # what a kill mid-append leaves
    read = read_jsonl_records(path)
    assert read.rows == [{"a": 1}, {"b": "é"}] and read.torn_bytes == 21 and path.read_bytes() != whole  # read only
    assert read.repair() == 21 and path.read_bytes() == whole
    with open(path, "ab") as fh:
        fh.write(b'{"c": 3')
    assert cut_torn_tail(path) == 7 and path.read_bytes() == whole  # the unparsed variant, for logs
    assert cut_torn_tail(path) == 0
    path.write_bytes(b'{"a": 1}\nnot json\n{"b": 2}\n')  # damage in the middle is never cut
    with pytest.raises(JsonlDamage) as exc:
        read_jsonl_records(path)
    assert (exc.value.lineno, exc.value.n_before) == (2, 1)


def test_move_aside_keeps_the_damaged_copy_and_its_companions(tmp_path: Path) -> None:
    from data_advisor.io import move_aside

    db = tmp_path / "cache.sqlite"
    db.write_bytes(b"damaged")
    (tmp_path / "cache.sqlite-wal").write_bytes(b"wal")
    aside = move_aside(db, companions=("-wal", "-shm"))
    assert not db.exists() and aside.read_bytes() == b"damaged" and aside.name.startswith("cache.sqlite.damaged-")
    assert aside.with_name(aside.name + "-wal").read_bytes() == b"wal" and not (tmp_path / "cache.sqlite-wal").exists()
    with pytest.raises(FileNotFoundError):  # another process moved it first
        move_aside(db)

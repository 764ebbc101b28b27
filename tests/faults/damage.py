"""Ways to damage a file, and the one invariant every fault-injection test checks.

``damage(path, kind, where)`` changes a file in place the way crashes, full disks and bad copies do:

* ``truncate`` — cut the file at ``where`` (start = empty file, middle = half, end = the last 7 bytes gone);
* ``zero``     — overwrite a block with NUL bytes (start / middle / end of the file; the whole file if small);
* ``random``   — overwrite a block with random bytes.

The invariant (issue 13): the command either exits 0 with the *same* result as on undamaged files, or exits 2 with
exactly one line on stderr that names the damaged file (or its folder) and a fix; never a traceback, never a
silent difference, never a record lost.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("truncate", "zero", "random")
WHERES = ("start", "middle", "end")
BLOCK = 4096


def damage(path: Path, kind: str, where: str, *, seed: int = 0) -> None:
    data = bytearray(Path(path).read_bytes())
    n = len(data)
    if kind == "truncate":
        cut = {"start": 0, "middle": n // 2, "end": max(0, n - 7)}[where]
        Path(path).write_bytes(bytes(data[:cut]))
        return
    size = min(BLOCK, max(1, n // 3))
    start = {"start": 0, "middle": max(0, n // 2 - size // 2), "end": max(0, n - size)}[where]
    block = bytes(size) if kind == "zero" else np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    data[start : start + size] = block
    Path(path).write_bytes(bytes(data))


CASES = [(k, w) for k in KINDS for w in WHERES]


def run_inproc(*args: Any) -> tuple[int, str]:
    """``data-advisor *args`` in this process; returns (exit code, stderr). An exception the CLI lets escape is
    returned as exit code -1 with its traceback, so the invariant check shows it."""
    from data_advisor.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            rc = int(exc.code or 0)
        except BaseException:
            return -1, err.getvalue() + traceback.format_exc()
    return rc, err.getvalue()


def error_line(rc: int, stderr: str, names: Sequence[str | Path]) -> str:
    """Assert exit 2 with one line ``error: … — fix: …`` that names one of ``names``; returns it."""
    assert "Traceback" not in stderr, stderr
    assert rc == 2, f"exit {rc}: {stderr}"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert " — fix: " in errors[0], errors[0]
    assert any(str(n) in errors[0] for n in names), (errors[0], names)
    return errors[0]


def no_traceback(rc: int, stderr: str) -> None:
    assert rc != -1 and "Traceback" not in stderr, stderr


_STAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC")


def html_without_stamp(path: Path) -> str:
    return _STAMP.sub("<stamp>", Path(path).read_text("utf-8"))


def close_json(a: Any, b: Any, *, tol: float = 1e-4, where: str = "") -> None:
    """Equal JSON values, floats within ``tol`` (a re-embedded text can differ from its first vector in the 7th
    digit, so one rounded share may move by 1e-6)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), (where, a, b)
        assert abs(float(a) - float(b)) <= tol, (where, a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, sorted(a), sorted(b) if isinstance(b, dict) else b)
        for k in a:
            close_json(a[k], b[k], tol=tol, where=f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close_json(x, y, tol=tol, where=f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


class PipeWatch:
    """Unblocks a command stuck reading one of the pipes a test made (opens its write end, again and again, from
    ``after_s`` on), so a regression fails the test instead of hanging the suite; ``hung`` says it had to."""

    def __init__(self, after_s: float = 60.0) -> None:
        self.pipes: list[Path] = []
        self.hung = False
        self._after_s = after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        if self._stop.wait(self._after_s):
            return
        while not self._stop.wait(0.2):
            for p in self.pipes:
                try:
                    fd = os.open(p, os.O_WRONLY | os.O_NONBLOCK)  # succeeds only when a reader is waiting on it
                except OSError:
                    continue
                self.hung = True
                os.close(fd)

    def pipe(self, path: Path) -> Path:
        os.mkfifo(path)
        self.pipes.append(path)
        if not self._thread.is_alive():
            self._thread.start()
        return path

    def close(self) -> None:
        self._stop.set()

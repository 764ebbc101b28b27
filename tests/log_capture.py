"""A fixture body shared by test folders: the toolkit's warnings (``data_advisor._env.log``) written to whatever
``sys.stderr`` is when they are emitted, as the CLI's handler does, so ``capsys`` sees them.  Without it pytest's own
log capture takes them and a test of "one line on stderr" could not see the line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest


class _CurrentStderr(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


def warnings_on_stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from data_advisor import _env

    handler = _CurrentStderr(logging.WARNING)
    _env.log.addHandler(handler)
    monkeypatch.setattr(_env.log, "propagate", False)
    try:
        yield
    finally:
        _env.log.removeHandler(handler)

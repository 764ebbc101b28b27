"""Coverage tests see the toolkit's warnings on stderr, as a CLI user does (see ``tests/log_capture.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.log_capture import warnings_on_stderr


@pytest.fixture(autouse=True)
def _toolkit_warnings_on_stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from warnings_on_stderr(monkeypatch)

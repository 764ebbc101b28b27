"""Fixtures for LLM-facing tests: one fake OpenAI server per session, reset between tests.

Why session-scoped: starting a server is cheap, but litellm keeps pooled HTTP clients per endpoint,
so one stable ``api_base`` for the whole session avoids stale pooled connections between tests.
Each test gets the server freshly :meth:`~tests.llm.llm_server.LLMServer.reset` (empty script,
no recorded requests, echo responder). Registered as a pytest plugin in tests/conftest.py, so every
test folder has these fixtures.

Use in a test::

    def test_x(llm_server, make_llm_client):
        llm_server.script(Reply.error(500), "fine")
        client = make_llm_client(max_retries=2)
        assert client.complete([{"role": "user", "content": "hi"}]).text == "fine"
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.llm.llm_server import LLMServer

#: The API key every test client sends; tests grep written files and error texts for it.
TEST_API_KEY = "sk-test-SENTINEL-7f3a9c1e5b2d4086"
#: The litellm model string tests use against the fake server.
TEST_MODEL = "openai/test-model"


@pytest.fixture(scope="session")
def llm_server_session() -> Iterator[LLMServer]:
    """The one fake OpenAI server of this test session (127.0.0.1, ephemeral port)."""
    server = LLMServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def llm_server(llm_server_session: LLMServer) -> Iterator[LLMServer]:
    """The session server, reset before and after the test."""
    llm_server_session.reset()
    yield llm_server_session
    llm_server_session.reset()


@pytest.fixture
def llm_settings_factory(llm_server: LLMServer) -> Callable[..., Any]:
    """Build ``LLMSettings`` for the fake server with fast test policies; keyword args override.

    Defaults: 2 s timeout, 3 retries, 10 ms initial backoff capped at 100 ms, concurrency 4, no cache.
    """
    from data_advisor.llm.client import LLMSettings

    def make(**overrides: Any) -> LLMSettings:
        values: dict[str, Any] = {
            "model": TEST_MODEL,
            "api_base": llm_server.base_url,
            "api_key": TEST_API_KEY,
            "timeout_s": 2.0,
            "max_retries": 3,
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.1,
            "concurrency": 4,
            "cache_dir": None,
        }
        values.update(overrides)
        return LLMSettings(**values)

    return make


@pytest.fixture
def make_llm_client(llm_settings_factory: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Build ``LLMClient`` instances for the fake server; closes them after the test.

    ``make_llm_client(ledger_path=..., jitter_seed=..., **settings_overrides)``.
    """
    from data_advisor.llm.client import LLMClient

    clients: list[LLMClient] = []

    def make(*, ledger_path: Path | str | None = None, jitter_seed: int | None = 0, **overrides: Any) -> LLMClient:
        client = LLMClient(llm_settings_factory(**overrides), ledger_path=ledger_path, jitter_seed=jitter_seed)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def toolkit_warnings() -> Iterator[list[str]]:
    """The lines the toolkit's logger (``data_advisor``) warns with during the test.

    Why not stderr: library code logs through that one logger, and it reaches stderr only once the CLI (or the user)
    configured it, which in a test session depends on which tests ran before.
    """
    lines: list[str] = []
    handler = _Collect(lines)
    log = logging.getLogger("data_advisor")
    log.addHandler(handler)
    try:
        yield lines
    finally:
        log.removeHandler(handler)

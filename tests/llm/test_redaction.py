"""One set of credential names for the whole package: the LLM client scrubs these environment variables' values
from answers and errors, and the run report hides these config keys' values."""

from __future__ import annotations

import pytest

from data_advisor.llm.redaction import is_secret_name, one_line, secret_values

SECRET_NAMES = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY",
                "AWS_ACCESS_KEY", "DB_PASSWORD", "KEY", "api_key", "apiKey", "password", "passwd", "Authorization",
                "bearer", "credentials", "access_token", "client_secret"]
PLAIN_NAMES = ["max_tokens", "key_field", "text_field", "temperature", "monkey", "TOKENIZERS_PARALLELISM", "model",
               "n_examples", "keyword", "PATH", "HOME"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_credential_names_are_secret(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_ordinary_names_are_not(name: str) -> None:
    assert not is_secret_name(name)


def test_config_style_names_are_scrubbed_from_llm_text_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name the run report hides (``..._PASSWORD``, ``..._CREDENTIALS``) is now also scrubbed from LLM text."""
    monkeypatch.setenv("PROXY_CREDENTIALS", "u7Hq2pLx9Vr4Kt1Z")
    monkeypatch.setenv("DB_PASSWORD", "hunter2hunter2!")
    monkeypatch.setenv("MAX_TOKENS", "1234567890")
    found = secret_values()
    assert "u7Hq2pLx9Vr4Kt1Z" in found and "hunter2hunter2!" in found and "1234567890" not in found
    assert one_line("proxy said u7Hq2pLx9Vr4Kt1Z", found) == "proxy said ***"

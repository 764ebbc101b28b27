"""Secrets never leave the process: which names and values count as credentials, and how text is scrubbed.

One set of rules for the whole package: :data:`SECRET_NAME` says which environment variables and config keys hold
credentials (the LLM client scrubs their values from answers and errors; the run report hides such config values),
and :func:`one_line` is how provider error text becomes a safe, single line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

__all__ = ["SECRET_NAME", "is_secret_name", "one_line", "redact", "secret_values"]

#: Names (environment variables, config keys) whose values are credentials: ``OPENAI_API_KEY``, ``HF_TOKEN``,
#: ``AWS_SECRET_ACCESS_KEY``, ``api_key``, ``password``, ``authorization`` ...  Words that name a credential match
#: anywhere in the name; the generic ``key`` / ``token`` only as its last word, so ``max_tokens`` or ``key_field``
#: do not.
SECRET_NAME = re.compile(
    r"api[_-]?key|secret|password|passwd|authorization|bearer|credential|access[_-]?token"
    r"|(?:^|[_-])(?:key|token)$",
    re.IGNORECASE,
)
#: Key-shaped tokens in free text (``sk-...``, ``key_...``) that may be a credential of a provider we do not know.
_KEYLIKE = re.compile(r"\b(sk|pk|rk|api|key)[-_][A-Za-z0-9_\-]{8,}", re.IGNORECASE)
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
#: Shorter values are not treated as secrets: replacing a short common string would mangle ordinary text.
_MIN_SECRET_CHARS = 8
#: How many characters of a provider's error text go into a one-line message.
DETAIL_CHARS = 200


def is_secret_name(name: str) -> bool:
    """Whether a variable or config key of this name holds a credential (see :data:`SECRET_NAME`)."""
    return SECRET_NAME.search(name) is not None


def _looks_secret(value: str) -> bool:
    """A credential-like value: long enough, one token, and not a plain word (``disabled``, ``readonly``)."""
    value = value.strip()
    return (len(value) >= _MIN_SECRET_CHARS and not any(c.isspace() for c in value)
            and (len(value) >= 16 or not value.isalpha()))


def secret_values(api_key: str | None = None) -> list[str]:
    """The secrets to scrub from LLM text: the api_key in use and every credential-like environment variable's value.

    Why the environment too: litellm reads the provider key from it (``OPENAI_API_KEY`` ...) when no api_key is
    passed, and an endpoint (a proxy, a hostile server) can echo the request's Authorization header back in its
    answer or error body; pattern matching (``sk-...``) misses keys of other shapes.  Longest first, so a secret
    that contains another is replaced whole.
    """
    found = {api_key.strip()} if api_key and _looks_secret(api_key) else set()
    found |= {v.strip() for k, v in os.environ.items() if is_secret_name(k) and v and _looks_secret(v)}
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (the text is otherwise unchanged)."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


def one_line(text: str, secrets: Sequence[str] = (), limit: int = DETAIL_CHARS) -> str:
    """Collapse whitespace, remove secrets, bearer tokens and key-looking tokens, and truncate to ``limit``."""
    text = redact(text, secrets)
    text = _BEARER.sub(r"\1***", text)
    text = _KEYLIKE.sub("***", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

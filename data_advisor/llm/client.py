"""The one place that talks to an LLM: any litellm model, with retries, a cache and a cost ledger.

Why a wrapper around ``litellm.completion`` at all:

* **Retries we control.** Providers rate-limit (429, often with ``Retry-After``), time out and return
  5xx.  litellm is called with ``num_retries=0`` and we retry with exponential backoff + jitter, so the
  policy is the same for every provider and testable (seedable jitter).  Errors the user must fix
  (400/401/403/404) fail at once with a one-line :class:`~data_advisor.errors.LLMError` naming the fix.
* **Reproducible, cheap reruns.** Successful answers are cached on disk (sqlite) keyed by everything
  that determines the answer, so re-running an analysis costs nothing and gives identical text.
* **Knowing what a run cost.** Every call lands in a :class:`Ledger` (tokens, cost, cache hits,
  attempts, errors), optionally appended to a JSONL file.
* **Structured output that survives chatty models.** :meth:`LLMClient.complete_json` extracts the first
  JSON object from prose or fenced answers, validates it with pydantic and asks once for a repair.
* **Keys stay secret.** The API key is never written to logs, exceptions, the ledger or the cache.

litellm is imported lazily (inside functions): importing it costs seconds, and merely importing
this module (e.g. for ``--help``) must stay cheap and must never touch the network.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import email.utils
import hashlib
import json
import logging
import os
import random
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from data_advisor import _env
from data_advisor.errors import LLMError, OutputError

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "CACHE_FILENAME",
    "LLMCallError",
    "LLMClient",
    "LLMResult",
    "LLMSettings",
    "Ledger",
    "LedgerRecord",
    "ResponseCache",
    "extract_json_object",
]

logger = logging.getLogger(__name__)

#: Name of the sqlite response cache inside ``LLMSettings.cache_dir``.
CACHE_FILENAME = "llm_responses.sqlite"

Message = Mapping[str, Any]
Messages = Sequence[Message]
ModelT = TypeVar("ModelT", bound="BaseModel")
T = TypeVar("T")

# How many characters of a provider's error text go into a one-line message.
_DETAIL_CHARS = 200
# HTTP statuses worth retrying besides 5xx: request timeout, conflict, too early, rate limit.
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})


# --------------------------------------------------------------------------------------------
# Settings and results
# --------------------------------------------------------------------------------------------
@dataclass
class LLMSettings:
    """How to reach a model and how hard to try.

    Args:
        model: any litellm model string: ``"openai/gpt-4o-mini"``, ``"hosted_vllm/x"``, ``"ollama/llama3"``.
        api_base: endpoint override (local servers, proxies); ``None`` = the provider's default.
        api_key: explicit key; ``None`` = litellm reads the provider's environment variable
            (``OPENAI_API_KEY`` ...).  Excluded from ``repr`` and from :meth:`fingerprint`.
        timeout_s: per-request timeout.
        max_retries: retries after the first attempt (so at most ``max_retries + 1`` requests).
        backoff_initial_s / backoff_max_s: exponential backoff start and cap (also caps Retry-After).
        concurrency: most requests in flight at once for this client.
        cache_dir: folder for the sqlite response cache; ``None`` disables caching.
        temperature / max_tokens: defaults for calls that do not pass their own.  Temperature 0 by
            default because analyses should be repeatable and cache-friendly.
    """

    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    concurrency: int = 4
    cache_dir: Path | None = None
    temperature: float = 0.0
    max_tokens: int = 2048

    def __post_init__(self) -> None:
        """Reject settings that cannot work, with a fix, before any call is made."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise LLMError("no LLM model given", "pass a litellm model string such as 'openai/gpt-4o-mini'")
        self.model = self.model.strip()
        if self.api_base is not None:
            self.api_base = self.api_base.strip() or None
        if self.api_key is not None and not self.api_key.strip():
            self.api_key = None
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir).expanduser()
        checks = [
            (self.timeout_s > 0, "timeout_s must be > 0"),
            (self.max_retries >= 0, "max_retries must be >= 0"),
            (self.backoff_initial_s >= 0, "backoff_initial_s must be >= 0"),
            (self.backoff_max_s >= 0, "backoff_max_s must be >= 0"),
            (self.concurrency >= 1, "concurrency must be >= 1"),
            (self.max_tokens >= 1, "max_tokens must be >= 1"),
            (self.temperature >= 0, "temperature must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise LLMError(f"invalid LLM settings: {message}", "fix the value in the LLM settings")

    def output_settings(self) -> dict[str, Any]:
        """The settings that change what the model answers (model, endpoint, sampling); never the key."""
        return {
            "model": self.model,
            "api_base": self.api_base.rstrip("/") if self.api_base else None,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def fingerprint(self) -> str:
        """A short stable hash of :meth:`output_settings`, to tell whether two runs used the same LLM setup.

        Retries, timeouts, concurrency and caching do not change answers, so they are left out; the
        key is left out so the fingerprint can be stored and shown.
        """
        blob = json.dumps(self.output_settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LLMResult:
    """One answer and what it cost.

    Token counts and ``cost_usd`` are what *this call* spent: a cache hit spent nothing, so they are 0
    (``cached=True``, ``attempts=0``).  ``attempts`` counts HTTP requests including retries.
    ``cost_usd`` is litellm's price for the model, or 0.0 when litellm does not know the model.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: bool
    attempts: int
    latency_s: float
    model: str = ""
    finish_reason: str | None = None


class LLMCallError(LLMError):
    """An :class:`LLMError` that also says which kind of failure it was, for callers that branch on it.

    ``kind`` is one of: ``auth``, ``permission``, ``not_found``, ``bad_request``, ``context_window``,
    ``rate_limit``, ``timeout``, ``connection``, ``server_error``, ``invalid_response``,
    ``empty_answer``, ``invalid_json``, ``unknown_provider``, ``unexpected``.
    """

    def __init__(self, problem: str, fix: str = "", *, kind: str, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(problem, fix)
        self.kind = kind
        self.status = status
        self.attempts = attempts


# --------------------------------------------------------------------------------------------
# Ledger
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LedgerRecord:
    """One call as accounted: no message contents and no key, so it is safe to write anywhere."""

    time: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: bool
    attempts: int
    latency_s: float
    ok: bool
    error_kind: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the JSONL line)."""
        return {
            "time": self.time,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "cached": self.cached,
            "attempts": self.attempts,
            "latency_s": round(self.latency_s, 4),
            "ok": self.ok,
            "error_kind": self.error_kind,
        }


class Ledger:
    """Thread-safe running account of LLM calls, optionally appended to a JSONL file.

    Why: a data-quality analysis should say what it cost; the JSONL file lets a run folder keep the
    account across processes (append-only, one record per line).
    """

    def __init__(self, path: Path | str | None = None) -> None:
        self._lock = threading.Lock()
        self._records: list[LedgerRecord] = []
        self.path = Path(path).expanduser() if path is not None else None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8"):
                    pass
                self._cut_torn_tail(self.path)
            except OSError as exc:
                raise OutputError(
                    f"cannot write the LLM ledger file {self.path}: {exc.strerror or exc}",
                    "choose a writable ledger path",
                ) from None

    @staticmethod
    def _cut_torn_tail(path: Path) -> None:
        """A kill mid-append leaves a partial last line; cut it, or the next record would be glued onto it."""
        with path.open("r+b") as fh:
            size = fh.seek(0, 2)
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            start = max(0, size - (1 << 16))
            fh.seek(start)
            tail = fh.read()
            cut = tail.rfind(b"\n")
            fh.truncate(start + cut + 1 if cut >= 0 else (0 if start == 0 else size))
            logger.info("cut a partly written last record from the LLM ledger %s", path)

    def add(self, record: LedgerRecord) -> None:
        """Account one call (and append it to the JSONL file when there is one)."""
        line = json.dumps(record.to_dict(), sort_keys=True)
        with self._lock:
            self._records.append(record)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line + "\n")

    @property
    def records(self) -> list[LedgerRecord]:
        """A snapshot of all records so far, oldest first."""
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def totals(self) -> dict[str, Any]:
        """Sums over all records: calls, cached_calls, prompt_tokens, completion_tokens, cost_usd, errors."""
        records = self.records
        return {
            "calls": len(records),
            "cached_calls": sum(1 for r in records if r.cached),
            "prompt_tokens": sum(r.prompt_tokens for r in records),
            "completion_tokens": sum(r.completion_tokens for r in records),
            "cost_usd": sum(r.cost_usd for r in records),
            "errors": sum(1 for r in records if not r.ok),
        }


# --------------------------------------------------------------------------------------------
# Response cache
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _CachedAnswer:
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
            if not _sqlite_corrupt(exc):
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
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{os.getpid()}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-journal", "-wal", "-shm"):
                extra = self.path.with_name(self.path.name + suffix)
                if extra.exists():
                    os.replace(extra, aside.with_name(aside.name + suffix))
        except FileNotFoundError:
            pass  # another process moved it already
        except OSError as exc:
            raise OutputError(
                f"the LLM response cache {self.path} is damaged ({reason}) and cannot be moved aside: "
                f"{exc.strerror or exc}",
                f"delete {self.path} (a cache: answers are asked again), or disable the cache",
            ) from None
        msg = (f"LLM response cache {self.path} was damaged ({reason}): moved it to {aside.name} and started a new "
               "one (answers are asked again; delete the damaged copy when done)")
        self.notices.append(msg)
        print(msg, file=sys.stderr, flush=True)

    def _run(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the connection (lock held); a corrupt file is moved aside and ``fn`` runs once on a new one."""
        with self._lock:
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                if not _sqlite_corrupt(exc):
                    raise self._unusable(exc) from None
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._quarantine(f"it failed while {what} ({exc})")
                try:
                    self._conn = self._connect()
                    return fn(self._conn)
                except sqlite3.Error as exc2:
                    raise self._unusable(exc2) from None

    def get(self, key: str) -> _CachedAnswer | None:
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
            print(msg, file=sys.stderr, flush=True)
            return None
        return _CachedAnswer(text=text, model=model, finish_reason=finish_reason)

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



def _sqlite_corrupt(exc: sqlite3.Error) -> bool:
    """Whether sqlite says the file itself is damaged (as opposed to locked, read-only or out of space)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text


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


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _litellm() -> Any:
    """Import litellm on first use (seconds of import time) and silence its stdout help banners."""
    with _env.library_defaults():  # LITELLM_LOCAL_MODEL_COST_MAP: no cost-map download at import
        import litellm

    litellm.suppress_debug_info = True
    return litellm


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _json_default(obj: Any) -> Any:
    """Make cache-key parts JSON-able: pydantic model classes by their schema, else their repr."""
    schema = getattr(obj, "model_json_schema", None)
    if isinstance(obj, type) and callable(schema):
        return {"__pydantic__": obj.__name__, "schema": schema()}
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return repr(obj)


_KEYLIKE = re.compile(r"\b(sk|pk|rk|api|key)[-_][A-Za-z0-9_\-]{8,}", re.IGNORECASE)
#: Environment variables holding credentials (OPENAI_API_KEY, ANTHROPIC_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY, ...).
_SECRET_ENV = re.compile(r"(?:^|_)(?:API_KEY|KEY|TOKEN|SECRET|SECRET_KEY|ACCESS_KEY|PASSWORD)$", re.IGNORECASE)
#: Shorter values are not treated as secrets: replacing a short common string would mangle ordinary text.
_MIN_SECRET_CHARS = 8


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
    found |= {v.strip() for k, v in os.environ.items() if _SECRET_ENV.search(k) and v and _looks_secret(v)}
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (the text is otherwise unchanged)."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")


def _one_line(text: str, secrets: Sequence[str] = (), limit: int = _DETAIL_CHARS) -> str:
    """Collapse whitespace, remove secrets and key-looking tokens, and truncate."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = _KEYLIKE.sub("***", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _headers_of(exc: BaseException) -> dict[str, str]:
    """All response headers litellm exposes on an exception, lower-cased (empty if none)."""
    merged: dict[str, str] = {}
    response = getattr(exc, "response", None)
    sources = (
        getattr(response, "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
    )
    for headers in sources:
        items = getattr(headers, "items", None)
        if not callable(items):
            continue
        for name, value in items():
            merged.setdefault(str(name).lower(), str(value))
    return merged


def _retry_after_s(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After`` seconds/HTTP-date)."""
    headers = _headers_of(exc)
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return max(0.0, (when - _dt.datetime.now(_dt.UTC)).total_seconds())


@dataclass(frozen=True)
class _Failure:
    """One failed attempt, classified."""

    kind: str
    retryable: bool
    status: int | None
    detail: str
    retry_after_s: float | None = None


_LABELS = {
    "auth": "authentication failed",
    "permission": "permission denied",
    "not_found": "model or endpoint not found",
    "bad_request": "request rejected",
    "context_window": "prompt too long for the model's context window",
    "rate_limit": "rate limited",
    "timeout": "timed out",
    "connection": "connection failed",
    "server_error": "provider server error",
    "invalid_response": "invalid response (not the OpenAI-compatible format)",
    "empty_answer": "empty answer",
    "unknown_provider": "litellm does not know the model's provider",
    "unexpected": "unexpected error",
}


def _fix_for(kind: str, settings: LLMSettings) -> str:
    """What the user should do about each kind of failure."""
    model = settings.model
    fixes = {
        "auth": "check the API key environment variable for the provider (e.g. OPENAI_API_KEY) or pass api_key",
        "permission": f"check that the API key has access to model '{model}'",
        "not_found": f"check the model name '{model}' and the api_base",
        "bad_request": f"check that model '{model}' supports the request parameters (max_tokens, stop, ...)",
        "context_window": "shorten the prompt or use a model with a larger context window",
        "rate_limit": "wait and rerun (cached answers are kept), lower concurrency, or raise max_retries",
        "timeout": "raise timeout_s, or check that the server at the api_base is responsive",
        "connection": "check that the api_base is reachable and the server is running",
        "server_error": "the provider is failing; rerun later (cached answers are kept) or raise max_retries",
        "invalid_response": "check that api_base points at an OpenAI-compatible endpoint (usually ending in /v1)",
        "empty_answer": "check max_tokens and the prompt, or try another model",
        "unknown_provider": "prefix the model with its litellm provider, e.g. 'openai/gpt-4o-mini' or 'ollama/NAME'",
        "unexpected": f"check the model string '{model}' and the LLM settings",
    }
    return fixes.get(kind, fixes["unexpected"])


# litellm/openai prefix messages with class names, sometimes three deep; they add nothing for a user.
_PREFIX = re.compile(r"^\s*(?:(?:litellm\.)?[A-Za-z]*(?:Error|Exception)\s*(?::|-)\s*)+")
_MISSING_KEY_HINTS = ("Missing credentials", "api_key client option must be set", "No API key", "api key not found")


def _clean_detail(exc: BaseException, secrets: Sequence[str]) -> str:
    """The provider's message without the chain of class-name prefixes, one line, secrets removed."""
    text = _PREFIX.sub("", str(exc)).strip()
    return _one_line(text or type(exc).__name__, secrets)


def _classify(exc: BaseException, secrets: Sequence[str]) -> _Failure:
    """Sort a litellm/openai/httpx exception into retryable and user-must-fix kinds.

    The HTTP status is kept only when a server really sent it: litellm labels local timeouts 408
    and dropped connections or undecodable bodies 500, which would mislead the user.
    """
    litellm = _litellm()
    status_raw = getattr(exc, "status_code", None)
    status = status_raw if isinstance(status_raw, int) else None
    text = str(exc)
    detail = _clean_detail(exc, secrets)
    name = type(exc).__name__

    def failure(kind: str, retryable: bool, retry_after: float | None = None, *, real_status: bool = True) -> _Failure:
        return _Failure(kind, retryable, status if real_status else None, detail, retry_after)

    if isinstance(exc, litellm.Timeout | TimeoutError) or name in {"APITimeoutError", "TimeoutException"}:
        return failure("timeout", True, real_status=False)
    if isinstance(exc, litellm.APIConnectionError) or name in {"ConnectError", "RemoteProtocolError"}:
        return failure("connection", True, real_status=False)
    if any(hint.lower() in text.lower() for hint in _MISSING_KEY_HINTS):
        return failure("auth", False, real_status=False)
    if "LLM Provider NOT provided" in text or name == "LiteLLMUnknownProvider":
        return failure("unknown_provider", False, real_status=False)
    if isinstance(exc, litellm.RateLimitError) or status == 429:
        return failure("rate_limit", True, _retry_after_s(exc))
    if isinstance(exc, litellm.ContextWindowExceededError):
        return failure("context_window", False)
    if isinstance(exc, litellm.AuthenticationError) or status == 401:
        return failure("auth", False)
    if isinstance(exc, litellm.PermissionDeniedError) or status == 403:
        return failure("permission", False)
    if isinstance(exc, litellm.NotFoundError) or status == 404:
        return failure("not_found", False)
    if status is not None and status >= 500:
        # litellm reports dropped connections and undecodable bodies as 500s; name them properly.
        if "Connection error" in text:
            return failure("connection", True, real_status=False)
        if "Expecting value" in text or "no 'choices'" in text or "Received response" in text:
            return failure("invalid_response", True, real_status=False)
        return failure("server_error", True, _retry_after_s(exc))
    if status in _RETRYABLE_4XX:
        return failure("timeout" if status == 408 else "server_error", True, _retry_after_s(exc))
    if isinstance(exc, litellm.BadRequestError) or (status is not None and 400 <= status < 500):
        return failure("bad_request", False)
    if isinstance(exc, litellm.APIError):
        return failure("server_error", True)
    return failure("unexpected", False, real_status=False)


def _usage_int(usage: Any, name: str) -> int:
    value = getattr(usage, name, None)
    if value is None and isinstance(usage, Mapping):
        value = usage.get(name)
    return int(value) if isinstance(value, int | float) else 0


def _response_cost(litellm: Any, response: Any) -> float:
    """litellm's price for this response, or 0.0 when the model is unknown to litellm's price map."""
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost") if isinstance(hidden, Mapping) else None
    if isinstance(cost, int | float) and cost > 0:
        return float(cost)
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:  # unknown models raise; the cost is then simply unknown
        return 0.0
    return float(cost) if isinstance(cost, int | float) and cost > 0 else 0.0


class _JSONProblem(Exception):
    """Why an answer could not be turned into the requested model (message goes to the repair prompt)."""


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_MAX_BRACE_STARTS = 200


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in a model answer, tolerating code fences and surrounding prose.

    Order: the whole answer, then each fenced block, then the first ``{`` from which a complete
    JSON value decodes.  Raises ``ValueError`` with a short reason when there is none.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("the answer is empty")
    for candidate in [stripped, *(m.group(1).strip() for m in _FENCE.finditer(text))]:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    decoder = json.JSONDecoder()
    for n, match in enumerate(re.finditer(r"\{", text)):
        if n >= _MAX_BRACE_STARTS:
            break
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no JSON object found in the answer")


def _parse_model(text: str, schema: type[ModelT]) -> ModelT:
    """Extract and validate; raise :class:`_JSONProblem` with a one-line reason."""
    from pydantic import ValidationError

    try:
        data = extract_json_object(text)
    except ValueError as exc:
        raise _JSONProblem(str(exc)) from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise _JSONProblem(f"validation against {schema.__name__} failed: " + "; ".join(parts) + more) from None


def _repair_prompt(problem: str, schema: type[BaseModel]) -> str:
    schema_json = json.dumps(schema.model_json_schema(), separators=(",", ":"))
    return (
        f"Your previous answer could not be used: {problem}. "
        "Reply again with only one valid JSON object that matches this JSON schema, "
        f"with no explanation and no code fences:\n{schema_json}"
    )


def _normalize_messages(messages: Messages) -> list[dict[str, Any]]:
    """Copy messages to plain dicts and check their shape (roles), without echoing their contents."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence) or not messages:
        raise LLMError(
            "no chat messages given to the LLM client",
            "pass a non-empty list of {'role': ..., 'content': ...} messages",
        )
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or not isinstance(msg.get("role"), str):
            raise LLMError(
                f"chat message {i} has no 'role'",
                "pass messages as {'role': 'system'|'user'|'assistant', 'content': ...}",
            )
        out.append(dict(msg))
    return out


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Answer:
    """A usable answer from one HTTP response."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class _Params:
    temperature: float
    max_tokens: int
    seed: int | None
    stop: str | list[str] | None
    response_format: Any


class LLMClient:
    """Chat completions for one model setup: retries, caching, bounded concurrency and a ledger.

    Args:
        settings: the model and policies.
        ledger: an existing :class:`Ledger` to share between clients; default: a new one.
        ledger_path: append ledger records to this JSONL file (ignored when ``ledger`` is given).
        jitter_seed: seed for the backoff jitter, for reproducible retry timing in tests.
    """

    def __init__(
        self,
        settings: LLMSettings,
        *,
        ledger: Ledger | None = None,
        ledger_path: Path | str | None = None,
        jitter_seed: int | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger if ledger is not None else Ledger(ledger_path)
        self.cache = ResponseCache(settings.cache_dir) if settings.cache_dir is not None else None
        self._rng = random.Random(jitter_seed)
        self._rng_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        self._sleep: Callable[[float], None] = time.sleep

    def __repr__(self) -> str:
        return f"LLMClient(model={self.settings.model!r}, api_base={self.settings.api_base!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the cache connection."""
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    # ---- public API -------------------------------------------------------------------------
    def complete(
        self,
        messages: Messages,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        response_format: Any = None,
    ) -> LLMResult:
        """One chat completion: cached if seen before, else called with retries.

        Raises:
            LLMCallError: (an :class:`LLMError`) when the provider rejects the request (at once) or
                keeps failing after ``max_retries`` retries; the message is one line with a fix.
        """
        params = self._params(temperature, max_tokens, seed, stop, response_format)
        result, _ = self._complete(_normalize_messages(messages), params)
        return result

    def complete_many(
        self,
        batch: Sequence[Messages],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        response_format: Any = None,
        on_result: Callable[[int, LLMResult | LLMError], None] | None = None,
    ) -> list[LLMResult | LLMError]:
        """Many completions, at most ``settings.concurrency`` at once, results in input order.

        A failed item yields its :class:`LLMError` in place instead of aborting the batch, because one
        bad prompt should not waste the answers already paid for.  ``on_result(index, result)`` is
        called as each item finishes (progress reporting).
        """
        params = self._params(temperature, max_tokens, seed, stop, response_format)
        return self._map(lambda msgs: self._complete(_normalize_messages(msgs), params)[0], batch, on_result)

    def complete_json(
        self,
        messages: Messages,
        schema: type[ModelT],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        response_format: Any = None,
    ) -> ModelT:
        """A completion parsed into ``schema`` (a pydantic model), with exactly one repair request.

        The first JSON object in the answer is used (code fences and prose around it are tolerated).
        If it is missing or invalid, the bad answer and the validation error are sent back once asking
        for only valid JSON.  If that fails too, :class:`LLMCallError` (kind ``invalid_json``) is
        raised and both answers are dropped from the cache, so a rerun asks afresh.
        """
        params = self._params(temperature, max_tokens, seed, stop, response_format)
        msgs = _normalize_messages(messages)
        first, first_key = self._complete(msgs, params)
        try:
            return _parse_model(first.text, schema)
        except _JSONProblem as exc:
            first_problem = str(exc)
        logger.info("LLM answer not valid for %s (%s); asking once for a repair", schema.__name__, first_problem)
        repair = [
            *msgs,
            {"role": "assistant", "content": first.text},
            {"role": "user", "content": _repair_prompt(first_problem, schema)},
        ]
        second, second_key = self._complete(repair, params)
        try:
            return _parse_model(second.text, schema)
        except _JSONProblem as exc:
            problem = _one_line(str(exc), self._secrets())
        if self.cache is not None:
            self.cache.delete(first_key)
            self.cache.delete(second_key)
        raise LLMCallError(
            f"the answer of {self.settings.model} is not valid JSON for {schema.__name__} "
            f"even after one repair request: {problem}",
            "use a stronger model or a lower temperature, or make the prompt ask for this JSON shape explicitly",
            kind="invalid_json",
            attempts=first.attempts + second.attempts,
        )

    def complete_json_many(
        self,
        batch: Sequence[Messages],
        schema: type[ModelT],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        response_format: Any = None,
        on_result: Callable[[int, ModelT | LLMError], None] | None = None,
    ) -> list[ModelT | LLMError]:
        """:meth:`complete_json` over many conversations, bounded and ordered like :meth:`complete_many`."""

        def one(msgs: Messages) -> ModelT:
            return self.complete_json(
                msgs,
                schema,
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
                stop=stop,
                response_format=response_format,
            )

        return self._map(one, batch, on_result)

    # ---- internals --------------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        return secret_values(self.settings.api_key)

    def _params(
        self,
        temperature: float | None,
        max_tokens: int | None,
        seed: int | None,
        stop: str | list[str] | None,
        response_format: Any,
    ) -> _Params:
        return _Params(
            temperature=self.settings.temperature if temperature is None else temperature,
            max_tokens=self.settings.max_tokens if max_tokens is None else max_tokens,
            seed=seed,
            stop=stop,
            response_format=response_format,
        )

    def _cache_key(self, messages: Messages, params: _Params) -> str:
        """sha256 over everything that determines the answer (never the key)."""
        payload = {
            "model": self.settings.model,
            "api_base": self.settings.api_base.rstrip("/") if self.settings.api_base else None,
            "messages": list(messages),
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
            "seed": params.seed,
            "stop": params.stop,
            "response_format": params.response_format,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _map(
        self,
        fn: Callable[[Messages], T],
        batch: Sequence[Messages],
        on_result: Callable[[int, Any], None] | None,
    ) -> list[T | LLMError]:
        items = list(batch)
        results: list[T | LLMError | None] = [None] * len(items)
        if not items:
            return []
        workers = min(self.settings.concurrency, len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
            futures: dict[Future[T], int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for future in as_completed(futures):
                index = futures[future]
                outcome: T | LLMError
                try:
                    outcome = future.result()
                except LLMError as exc:
                    outcome = exc
                results[index] = outcome
                if on_result is not None:
                    on_result(index, outcome)
        return [r for r in results if r is not None]

    def _backoff_delay(self, attempt: int, retry_after_s: float | None) -> float:
        """Exponential backoff with equal jitter; a server's Retry-After wins; everything capped."""
        s = self.settings
        base = min(s.backoff_max_s, s.backoff_initial_s * (2 ** (attempt - 1)))
        with self._rng_lock:
            jitter = self._rng.random()
        delay = base * (0.5 + 0.5 * jitter)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return min(delay, s.backoff_max_s)

    def _record(self, *, ok: bool, started: float, attempts: int, cached: bool = False, **kw: Any) -> None:
        self.ledger.add(
            LedgerRecord(
                time=_now_iso(),
                model=self.settings.model,
                prompt_tokens=kw.get("prompt_tokens", 0),
                completion_tokens=kw.get("completion_tokens", 0),
                cost_usd=kw.get("cost_usd", 0.0),
                cached=cached,
                attempts=attempts,
                latency_s=time.monotonic() - started,
                ok=ok,
                error_kind=kw.get("error_kind"),
            )
        )

    def _request_kwargs(self, messages: list[dict[str, Any]], params: _Params) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "model": s.model,
            "messages": messages,
            "timeout": s.timeout_s,
            "num_retries": 0,  # retries are ours: one policy for every provider
            "drop_params": True,  # providers that lack e.g. seed ignore it instead of failing
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
        }
        if s.api_base is not None:
            kwargs["api_base"] = s.api_base
        if s.api_key is not None:
            kwargs["api_key"] = s.api_key
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if params.stop is not None:
            kwargs["stop"] = params.stop
        if params.response_format is not None:
            kwargs["response_format"] = params.response_format
        return kwargs

    def _complete(self, messages: list[dict[str, Any]], params: _Params) -> tuple[LLMResult, str]:
        """Cache lookup, then the retry loop; returns the result and its cache key."""
        s = self.settings
        started = time.monotonic()
        key = self._cache_key(messages, params)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self._record(ok=True, started=started, attempts=0, cached=True)
                return (
                    LLMResult(
                        text=redact(hit.text, self._secrets()),  # a cache written before redaction existed
                        prompt_tokens=0,
                        completion_tokens=0,
                        cost_usd=0.0,
                        cached=True,
                        attempts=0,
                        latency_s=time.monotonic() - started,
                        model=hit.model,
                        finish_reason=hit.finish_reason,
                    ),
                    key,
                )

        litellm = _litellm()
        kwargs = self._request_kwargs(messages, params)
        secrets = self._secrets()
        attempts = 0
        prompt_tokens_spent = 0
        completion_tokens_spent = 0
        while True:
            attempts += 1
            try:
                with self._slots:
                    response = litellm.completion(**kwargs)
            except Exception as exc:  # classified below: nothing escapes unclassified
                failure = _classify(exc, secrets)
            else:
                outcome = self._read_answer(response, secrets)
                if isinstance(outcome, _Answer):
                    prompt_tokens = outcome.prompt_tokens + prompt_tokens_spent
                    completion_tokens = outcome.completion_tokens + completion_tokens_spent
                    cost = _response_cost(litellm, response)
                    if self.cache is not None:
                        self.cache.put(
                            key,
                            text=outcome.text,
                            model=s.model,
                            prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens,
                            finish_reason=outcome.finish_reason,
                        )
                    self._record(
                        ok=True,
                        started=started,
                        attempts=attempts,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens,
                        cost_usd=cost,
                    )
                    return (
                        LLMResult(
                            text=outcome.text,
                            prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens,
                            cost_usd=cost,
                            cached=False,
                            attempts=attempts,
                            latency_s=time.monotonic() - started,
                            model=s.model,
                            finish_reason=outcome.finish_reason,
                        ),
                        key,
                    )
                failure = outcome
                # An empty answer still consumed prompt tokens: keep them in the account.
                usage = getattr(response, "usage", None)
                prompt_tokens_spent += _usage_int(usage, "prompt_tokens")
                completion_tokens_spent += _usage_int(usage, "completion_tokens")

            if not failure.retryable or attempts > s.max_retries:
                self._record(
                    ok=False,
                    started=started,
                    attempts=attempts,
                    prompt_tokens=prompt_tokens_spent,
                    completion_tokens=completion_tokens_spent,
                    error_kind=failure.kind,
                )
                logger.info(  # not WARNING: the raised error is the one line the user sees
                    "LLM call to %s failed (%s) after %d attempt(s): %s",
                    s.model,
                    failure.kind,
                    attempts,
                    failure.detail,
                )
                raise self._error(failure, attempts) from None
            delay = self._backoff_delay(attempts, failure.retry_after_s)
            logger.info(
                "LLM call to %s: attempt %d/%d failed (%s%s); retrying in %.2fs",
                s.model,
                attempts,
                s.max_retries + 1,
                failure.kind,
                f", HTTP {failure.status}" if failure.status else "",
                delay,
            )
            self._sleep(delay)

    def _read_answer(self, response: Any, secrets: Sequence[str]) -> _Answer | _Failure:
        """Pull text, finish reason and usage out of a litellm response; empty text is a failure."""
        try:
            choice = response.choices[0]
            content = choice.message.content
            finish_reason = getattr(choice, "finish_reason", None)
        except (AttributeError, IndexError, TypeError) as exc:
            detail = _one_line(f"response without a message: {type(exc).__name__}: {exc}", secrets)
            return _Failure("invalid_response", True, None, detail)
        if not isinstance(content, str) or not content.strip():
            return _Failure("empty_answer", True, None, f"the model returned no text (finish_reason={finish_reason})")
        usage = getattr(response, "usage", None)
        return _Answer(
            text=redact(content, secrets),  # before the answer is cached, returned or written anywhere
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
            prompt_tokens=_usage_int(usage, "prompt_tokens"),
            completion_tokens=_usage_int(usage, "completion_tokens"),
        )

    def _error(self, failure: _Failure, attempts: int) -> LLMCallError:
        """The one-line, key-free error for a final failure."""
        s = self.settings
        label = _LABELS.get(failure.kind, failure.kind)
        status = f" (HTTP {failure.status})" if failure.status else ""
        if failure.retryable:
            problem = f"LLM call to {s.model} failed after {attempts} attempt(s): {label}{status}: {failure.detail}"
        else:
            problem = f"LLM call to {s.model} was rejected: {label}{status}: {failure.detail}"
        return LLMCallError(
            _one_line(problem, self._secrets(), limit=400),
            _fix_for(failure.kind, s),
            kind=failure.kind,
            status=failure.status,
            attempts=attempts,
        )

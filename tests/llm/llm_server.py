"""A scriptable, OpenAI-compatible HTTP server for tests.

Why: the LLM client must be tested against *real* HTTP through real litellm (retries, timeouts,
status codes, headers and the wire format are exactly where mocks lie).  This server speaks the
OpenAI chat-completions wire format on ``127.0.0.1`` with an ephemeral port and lets a test script
each reply: status code, JSON or raw body, extra headers (``Retry-After``), a delay (to provoke
client timeouts) or a dropped connection.  When no scripted reply is queued, a *responder* function
produces the answer content, so higher-level tests (the advisor loop) can answer based on the prompt.

Typical use::

    server = LLMServer().start()
    server.script(Reply.error(429, headers={"Retry-After": "1"}), Reply.text("hello"))
    server.responder = lambda req: "echo: " + last_user_message(req)
    ...
    assert server.request_count == 2
    server.stop()
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = [
    "AUTH_ECHO",
    "LLMServer",
    "RecordedRequest",
    "Reply",
    "Responder",
    "chat_completion_body",
    "echo_authorization",
    "echo_responder",
    "last_user_message",
    "malformed_json",
]

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
#: Placeholder in a reply's content, body or raw text that the server replaces by the request's Authorization header:
#: an endpoint that echoes credentials (a misconfigured proxy, a hostile server), to test that keys never get written.
AUTH_ECHO = "<<authorization-header>>"
MODEL_PATHS = ("/v1/models", "/models")


@dataclass
class Reply:
    """One scripted reply, consumed in order by the next chat-completions request.

    Exactly one of ``content`` / ``body`` / ``raw`` is normally set:

    * ``content``: wrapped into a proper OpenAI chat-completion body (``None`` content is allowed,
      to test empty answers: set ``content=None`` and ``null_content=True``).
    * ``body``: sent as JSON exactly as given (error bodies, custom shapes).
    * ``raw``: sent verbatim (invalid JSON, HTML error pages ...).

    ``delay_s`` sleeps before answering (client timeouts); ``close`` drops the connection without
    writing any response.
    """

    status: int = 200
    content: str | None = None
    body: Any = None
    raw: str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    close: bool = False
    null_content: bool = False
    usage: dict[str, int] | None = None
    finish_reason: str = "stop"

    @classmethod
    def text(cls, content: str, **kw: Any) -> Reply:
        """A successful answer with this content."""
        return cls(content=content, **kw)

    @classmethod
    def error(cls, status: int, message: str = "scripted error", **kw: Any) -> Reply:
        """An OpenAI-style error body with this HTTP status."""
        body = {"error": {"message": message, "type": "scripted_error", "param": None, "code": str(status)}}
        return cls(status=status, body=body, **kw)

    @classmethod
    def invalid_json(cls, raw: str = "this is {not json", **kw: Any) -> Reply:
        """A 200 whose body is not JSON at all (broken proxy, truncated body)."""
        return cls(raw=raw, **kw)

    @classmethod
    def empty(cls, **kw: Any) -> Reply:
        """A well-formed completion whose message content is the empty string."""
        return cls(content="", **kw)

    @classmethod
    def null(cls, **kw: Any) -> Reply:
        """A well-formed completion whose message content is JSON ``null``."""
        return cls(content=None, null_content=True, **kw)

    @classmethod
    def slow(cls, delay_s: float, content: str = "slow answer", **kw: Any) -> Reply:
        """A successful answer sent only after ``delay_s`` seconds."""
        return cls(content=content, delay_s=delay_s, **kw)

    @classmethod
    def drop(cls, **kw: Any) -> Reply:
        """Close the connection without answering."""
        return cls(close=True, **kw)

    @classmethod
    def cut_off(cls, content: str, **kw: Any) -> Reply:
        """An answer stopped by the token limit (``finish_reason="length"``), as a provider sends it."""
        return cls(content=content, finish_reason="length", **kw)


#: The malformed-JSON styles :func:`malformed_json` writes: the slips small models make, and a cut-off answer.
MALFORMED_STYLES = ("trailing_comma", "single_quotes", "code_fence", "comments", "unclosed", "truncated_list")


def malformed_json(obj: dict[str, Any], style: str) -> str:
    """``obj`` written as a model that almost writes JSON would (one of :data:`MALFORMED_STYLES`).

    ``truncated_list`` cuts the text inside the last string of the last list, the way a ``max_tokens`` limit does;
    pair it with :meth:`Reply.cut_off`.  The others are complete answers that ``json.loads`` rejects.
    """
    text = json.dumps(obj)
    if style == "trailing_comma":  # after every list item and every member, the last ones included
        return "{" + "".join(f"{json.dumps(k)}: " + (
            "[" + "".join(f"{json.dumps(v)}, " for v in val) + "]" if isinstance(val, list) else json.dumps(val))
            + ", " for k, val in obj.items()) + "}"
    if style == "single_quotes":
        return "{" + ", ".join(f"'{k}': " + (
            "[" + ", ".join(f"'{v}'" for v in val) + "]" if isinstance(val, list) else f"'{val}'")
            for k, val in obj.items()) + "}"
    if style == "code_fence":
        return f"Here you go:\n```json\n{json.dumps(obj, indent=2)},\n```\nHope this helps."
    if style == "comments":
        return "// the answer\n" + json.dumps(obj, indent=2).replace("\n", "  // note\n", 1) + " /* end */"
    if style == "unclosed":
        return text[:-1]
    if style == "truncated_list":
        return text[: text.rindex('"') - 2]
    raise ValueError(f"unknown malformed-JSON style {style!r}")


@dataclass
class RecordedRequest:
    """What the server received: method, path, headers (lower-cased names) and parsed JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of a chat-completions request (empty list otherwise)."""
        if isinstance(self.body, dict):
            return list(self.body.get("messages") or [])
        return []


Responder = Callable[[dict[str, Any]], "str | Reply"]


def _content_text(content: Any) -> str:
    """Flatten OpenAI message content (a string or a list of parts) to plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_message(request_json: dict[str, Any]) -> str:
    """The text of the last ``user`` message of a chat-completions request ("" if none)."""
    for msg in reversed(request_json.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return _content_text(msg.get("content"))
    return ""


def echo_responder(request_json: dict[str, Any]) -> str:
    """Default responder: ``"echo: <last user message>"``; deterministic, so tests can assert on it."""
    return "echo: " + last_user_message(request_json)


def echo_authorization(inner: Responder) -> Responder:
    """A responder that answers like ``inner`` and appends the request's Authorization header (see AUTH_ECHO)."""

    def respond(request_json: dict[str, Any]) -> str | Reply:
        answer = inner(request_json)
        if isinstance(answer, Reply):
            return dataclasses.replace(answer, content=(answer.content or "") + f" ({AUTH_ECHO})")
        return f"{answer} ({AUTH_ECHO})"

    return respond


def _count_tokens(text: str) -> int:
    """A crude, deterministic token count (whitespace words, at least 1)."""
    return max(1, len(text.split()))


def chat_completion_body(
    content: str | None,
    *,
    model: str = "test-model",
    prompt_tokens: int = 1,
    completion_tokens: int | None = None,
    finish_reason: str = "stop",
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """An OpenAI chat-completion response body in the real wire format."""
    if completion_tokens is None:
        completion_tokens = _count_tokens(content or "") if content else 0
    if usage is None:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return {
        "id": f"chatcmpl-test-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }


class _Handler(BaseHTTPRequestHandler):
    """Request handler; all state lives on the owning :class:`LLMServer`."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    owner: LLMServer  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log (tests stay quiet)."""

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, payload: bytes, headers: dict[str, str], content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            # The client gave up (e.g. its timeout fired while we were delaying): nothing to do.
            self.close_connection = True

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers or {}, "application/json")

    def do_GET(self) -> None:
        """``GET /v1/models``: one model, enough for clients that probe the endpoint."""
        path = self.path.split("?", 1)[0]
        if path in MODEL_PATHS:
            self._send_json(
                200,
                {"object": "list", "data": [{"id": "test-model", "object": "model", "created": 0, "owned_by": "test"}]},
            )
        else:
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def do_POST(self) -> None:
        """``POST /v1/chat/completions``: record, then answer from the script or the responder."""
        owner = self.owner
        path = self.path.split("?", 1)[0]
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = RecordedRequest(
            method="POST",
            path=path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            received_at=time.monotonic(),
        )
        if path not in CHAT_PATHS:
            owner._record(record)
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        generation = owner._enter(record)
        try:
            reply = owner._next_reply(body if isinstance(body, dict) else {})
            if reply.delay_s > 0:
                owner._sleep(reply.delay_s)
                if owner._generation != generation:
                    self.close_connection = True
                    return
            if reply.close:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._answer(reply, body if isinstance(body, dict) else {})
        finally:
            owner._leave(generation)

    def _answer(self, reply: Reply, request_json: dict[str, Any]) -> None:
        auth = self.headers.get("Authorization", "")
        if reply.raw is not None:
            payload = reply.raw.encode() if isinstance(reply.raw, str) else reply.raw
            self._send(reply.status, payload.replace(AUTH_ECHO.encode(), auth.encode()), reply.headers, "application/json")
            return
        if reply.body is not None:
            payload = json.dumps(reply.body).replace(AUTH_ECHO, auth).encode()
            self._send(reply.status, payload, reply.headers, "application/json")
            return
        if reply.content is not None and AUTH_ECHO in reply.content:
            reply = dataclasses.replace(reply, content=reply.content.replace(AUTH_ECHO, auth))
        prompt_text = " ".join(_content_text(m.get("content")) for m in request_json.get("messages") or [])
        body = chat_completion_body(
            reply.content,
            model=str(request_json.get("model") or "test-model"),
            prompt_tokens=_count_tokens(prompt_text),
            finish_reason=reply.finish_reason,
            usage=reply.usage,
        )
        self._send_json(reply.status, body, reply.headers)


class LLMServer:
    """A threaded OpenAI-compatible server on ``127.0.0.1:<ephemeral>`` with a reply script.

    State a test can use:

    * :meth:`script` queues :class:`Reply` objects (consumed in order, one per chat request).
    * :attr:`responder` answers when the queue is empty: ``(request_json) -> str | Reply``.
    * :attr:`default_delay_s` delays every responder answer (to measure concurrency).
    * :attr:`requests` records every request; :attr:`request_count` counts chat requests.
    * :attr:`max_in_flight` is the peak number of chat requests being handled at once.
    * :meth:`reset` restores all of this between tests.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        # Each reset starts a new generation: requests still being handled from an earlier test
        # (e.g. a delayed reply whose client already timed out) are woken up and not counted.
        self._generation = 0
        self._wake = threading.Event()
        self._queue: deque[Reply] = deque()
        self.requests: list[RecordedRequest] = []
        self.responder: Responder = echo_responder
        self.default_delay_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        handler = type("_BoundHandler", (_Handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (ephemeral unless one was given)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style ``api_base``: ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    def start(self) -> Self:
        """Serve in a daemon thread; returns self for chaining."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="llm-test-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; pending delays are cut short."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- scripting -------------------------------------------------------------------------
    def script(self, *replies: Reply | str) -> None:
        """Queue replies (a plain string means ``Reply.text(s)``), consumed one per chat request."""
        with self._lock:
            for reply in replies:
                self._queue.append(Reply.text(reply) if isinstance(reply, str) else reply)

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget the script, the recorded requests and counters; restore the echo responder.

        Replies still sleeping from before the reset are cut short and never answered.
        """
        with self._lock:
            self._queue.clear()
            self.requests = []
            self.responder = echo_responder
            self.default_delay_s = 0.0
            self._generation += 1
            self.in_flight = 0
            self.max_in_flight = 0
            old_wake, self._wake = self._wake, threading.Event()
        old_wake.set()

    # ---- observations ------------------------------------------------------------------------
    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Recorded chat-completions requests, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path in CHAT_PATHS]

    @property
    def request_count(self) -> int:
        """Number of chat-completions requests received since the last reset."""
        return len(self.chat_requests)

    # ---- internals used by the handler -------------------------------------------------------
    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(record)

    def _enter(self, record: RecordedRequest) -> int:
        with self._lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self._generation

    def _leave(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self.in_flight -= 1

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early on :meth:`reset` or :meth:`stop`."""
        with self._lock:
            wake = self._wake
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and not wake.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            wake.wait(min(remaining, 0.05))

    def _next_reply(self, request_json: dict[str, Any]) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
            delay = self.default_delay_s
        answer = responder(request_json)
        if isinstance(answer, Reply):
            return answer
        return Reply.text(answer, delay_s=delay)

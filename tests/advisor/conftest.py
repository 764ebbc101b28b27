"""Advisor-loop helpers: a cooperative fake model that answers every kind of request the loop sends.

The fake OpenAI server and its client fixtures live in :mod:`tests.llm.fixtures` (registered for every folder).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.llm.fixtures import TEST_API_KEY, TEST_MODEL
from tests.llm.llm_server import LLMServer

__all__ = ["TEST_API_KEY", "TEST_MODEL"]


# =============================================================================================
# Advisor-loop helpers: a cooperative fake model that answers every kind of request the loop sends
# =============================================================================================
import json as _json
import os as _os
import random as _random
import re as _re
import threading as _threading
from collections import Counter as _Counter

from tests.llm.llm_server import Reply, last_user_message

_os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests/conftest.py sets it too; kept for running this folder alone

REFUSAL = "I'm sorry, I can't help with that."
_SI_BLACKLIST_RE = _re.compile(
    r"\b(image|images|graph|graphs|picture|pictures|file|files|map|maps|draw|plot|go to)\b", _re.IGNORECASE)


def request_kind(req: dict[str, Any]) -> str:
    """Which stage of the loop sent this chat request (from the prompt templates' fixed wording)."""
    msg = last_user_message(req)
    first_user = next((m.get("content", "") for m in req.get("messages") or [] if m.get("role") == "user"), "")
    system = next((m.get("content", "") for m in req.get("messages") or [] if m.get("role") == "system"), "")
    if msg.startswith("Your previous answer could not be used"):
        return "repair:" + request_kind({"messages": [{"role": "user", "content": first_user}]})
    if "anchor_id MUST be one of" in msg:
        return "advisor"
    if "Safety issue to cover:" in msg:
        return "generate"
    if msg.startswith("Come up with a series of tasks"):
        return "self_instruct"
    if "The new question is:" in msg:
        return "si_paper"
    if "New Harmfulness Category:" in msg:
        return "summary_issue"
    if msg.startswith("Harmfulness Scenario Summary:"):
        return "summary_update"
    if system.startswith("You are a helpful, honest and harmless assistant"):
        return "respond"
    return "other"


def advisor_candidates(req: dict[str, Any]) -> list[str]:
    """The anchor ids the advisor request allows (``anchor_id MUST be one of [...]``)."""
    m = _re.search(r"MUST be one of (\[.*?\])", last_user_message(req))
    assert m, "advisor request without the allowed anchor list"
    return list(_json.loads(m.group(1)))


def _taxonomy_examples() -> tuple[dict[str, dict[str, list[str]]], dict[str, dict[str, str]]]:
    from data_advisor.coverage.taxonomy import builtin_taxonomies, load_taxonomy

    examples: dict[str, dict[str, list[str]]] = {}
    names: dict[str, dict[str, str]] = {}
    for tax_id in builtin_taxonomies():
        t = load_taxonomy(tax_id)
        examples[tax_id] = {p.id: list(p.examples) for p in t.leaves()}
        names[tax_id] = {p.name: p.id for p in t.leaves()}
    return examples, names


class LoopResponder:
    """A cooperative model for the advisor loop, answering by request kind (see :func:`request_kind`).

    * advisor: picks ``choose(candidates, request)`` (default: the first allowed, i.e. most under-covered, anchor);
    * generator: ``per_call`` unused, human-written prompts; ``follow=True`` writes about the advised anchor (the
      taxonomy's own examples of it), ``theme=[...]`` ignores the advice and writes from that list instead
      (``follow=False`` without a theme: whatever it likes, any taxonomy's examples); for an anchor in
      ``refuse`` it answers refusals only (an aligned model refusing a category);
    * Self-Instruct: a numbered continuation (item 9 unnumbered, then 10., 11., ...); the paper variant one line;
    * summary mode: a new category, then an updated summary ending with ``---``; responder: a safe answer.

    Texts are never reused, so filters only reject what a test plants.  ``fault(req, kind, n)`` runs first and may
    return a :class:`Reply` or a string to answer instead (``n`` counts requests of that kind, from 0).  Thread-safe.
    """

    def __init__(self, taxonomy: str = "catqa-11", *, follow: bool = True, theme: list[str] | None = None,
                 per_si: int = 7, seed: int = 0) -> None:
        examples, names = _taxonomy_examples()
        self.lock = _threading.Lock()
        self.rng = _random.Random(seed)
        self.taxonomy = taxonomy
        self.by_anchor = {k: list(v) for k, v in examples[taxonomy].items()}
        self.name_to_id = names[taxonomy]
        generic = [t for tax in examples.values() for v in tax.values() for t in v if not _SI_BLACKLIST_RE.search(t)]
        self.rng.shuffle(generic)
        self.generic = generic
        self.follow = follow
        self.theme = list(theme) if theme is not None else None
        self.per_si = per_si
        self.refuse: set[str] = set()
        self.used: set[str] = set()
        self.kinds: _Counter[str] = _Counter()
        self.advised: list[str] = []  # anchors the fake advisor chose, in order
        self.choose: Callable[[list[str], dict[str, Any]], dict[str, Any] | str] | None = None
        self.fault: Callable[[dict[str, Any], str, int], Reply | str | None] | None = None
        self.summary_lines = ["Medical harm", "Financial harm"]

    # -- texts ------------------------------------------------------------------------------------------
    def take(self, k: int, anchor_id: str | None = None) -> list[str]:
        """k unused texts: of ``anchor_id`` first (theme list first in ignore mode), then any."""
        sources: list[list[str]] = []
        if self.theme is not None:
            sources.append(self.theme)
        elif anchor_id is not None:
            sources.append(self.by_anchor.get(anchor_id, []))
        sources.append(self.generic)
        out: list[str] = []
        for src in sources:
            for t in src:
                if len(out) == k:
                    break
                if t not in self.used:
                    self.used.add(t)
                    out.append(t)
        return out

    # -- answers ----------------------------------------------------------------------------------------
    def answer(self, req: dict[str, Any], kind: str) -> str | Reply:
        base = kind.split(":")[-1]
        if base == "advisor":
            cands = advisor_candidates(req)
            choice = self.choose(cands, req) if self.choose else {
                "issue": f"a concrete sub-issue of {cands[0]}", "anchor_id": cands[0], "rationale": "largest gap"}
            if isinstance(choice, dict):
                self.advised.append(str(choice.get("anchor_id")))
                return _json.dumps(choice)
            return choice
        if base == "generate":
            msg = next(m["content"] for m in req["messages"] if m["role"] == "user")
            name = _re.search(r'It belongs to the category "(.*?)":', msg).group(1)
            anchor_id = self.name_to_id.get(name)
            k = int(_re.search(r"Write (\d+) new, diverse user prompts", msg).group(1))
            if anchor_id in self.refuse:
                return _json.dumps({"prompts": [REFUSAL] * k})
            return _json.dumps({"prompts": self.take(k, anchor_id if self.follow else None)})
        if base == "self_instruct":
            items = self.take(self.per_si)
            return "\n".join([items[0]] + [f"{10 + i}. {t}" for i, t in enumerate(items[1:])])
        if base == "si_paper":
            return self.take(1)[0]
        if base == "summary_issue":
            return "Online gambling harms"
        if base == "summary_update":
            self.summary_lines.append(f"Harm number {len(self.summary_lines)}")
            return "\n".join(self.summary_lines) + "\n---"
        if base == "respond":
            return "I can't help with that, but here is a safe alternative: " + last_user_message(req)[:40]
        return "unrecognised request"

    def __call__(self, req: dict[str, Any]) -> str | Reply:
        kind = request_kind(req)
        with self.lock:
            n = self.kinds[kind]
            self.kinds[kind] += 1
            if self.fault is not None:
                injected = self.fault(req, kind, n)
                if injected is not None:
                    return injected
            return self.answer(req, kind)


def fresh_llm_cache_root(path: Path) -> Path:
    """A cache root with an empty LLM response cache that shares the session's embedding cache (a symlink).

    CLI runs cache LLM answers under ``$DATA_ADVISOR_CACHE/llm``; a test that counts server requests or scripts
    failures must not be answered from an earlier test's (or, with ``DA_TEST_CACHE_DIR``, an earlier session's)
    cache.  Sharing the embeddings keeps the test fast.
    """
    from data_advisor import _env

    shared = _env.cache_root() / "embeddings"
    shared.mkdir(parents=True, exist_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    (path / "embeddings").symlink_to(shared.resolve(), target_is_directory=True)
    return path


@pytest.fixture
def fresh_llm_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``DATA_ADVISOR_CACHE`` → a root with an empty LLM cache (see :func:`fresh_llm_cache_root`) for this test."""
    root = fresh_llm_cache_root(tmp_path / "cache-root")
    monkeypatch.setenv("DATA_ADVISOR_CACHE", str(root))
    return root


@pytest.fixture
def openai_key(monkeypatch: pytest.MonkeyPatch, fresh_llm_cache: Path) -> str:
    """``OPENAI_API_KEY`` set to the sentinel test key (the CLI reads the provider key from the environment), and a
    fresh LLM response cache, for tests that run the CLI against the fake server."""
    monkeypatch.setenv("OPENAI_API_KEY", TEST_API_KEY)
    return TEST_API_KEY


@pytest.fixture
def loop_responder(llm_server: LLMServer) -> LoopResponder:
    """A fresh :class:`LoopResponder` (catqa-11) installed on the reset session server."""
    responder = LoopResponder()
    llm_server.responder = responder
    return responder


@pytest.fixture
def make_loop(llm_server: LLMServer, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build an ``AdvisorLoop`` against the fake server, with a fast-retrying, uncached client.

    ``make_loop(out=None, *, finalize=True, client=dict(...), **RunConfig fields)``.  The injected client writes its
    ledger to ``out/llm_calls.jsonl`` like the CLI's; ``finalize=False`` skips the end-of-run report (clustering and
    HTML) for tests that only look at prompts.jsonl / rounds.jsonl.
    """
    from data_advisor.advisor.loop import AdvisorLoop, RunConfig
    from data_advisor.llm.client import LLMClient, LLMSettings

    clients: list[Any] = []

    def make(out: Path | None = None, *, finalize: bool = True, client: dict[str, Any] | None = None,
             **config: Any) -> Any:
        out = Path(out) if out is not None else tmp_path / "run"
        values: dict[str, Any] = {"model": TEST_MODEL, "api_base": llm_server.base_url, "taxonomy": "catqa-11",
                                  "n": 20, "per_round": 8}
        values.update(config)
        cfg = RunConfig(**values)
        settings: dict[str, Any] = {"model": cfg.model, "api_base": cfg.api_base, "api_key": TEST_API_KEY,
                                    "timeout_s": 5.0, "max_retries": 3, "backoff_initial_s": 0.01,
                                    "backoff_max_s": 0.2, "concurrency": 4, "cache_dir": None, "max_tokens": 1024,
                                    "temperature": 0.9}
        settings.update(client or {})
        out.mkdir(parents=True, exist_ok=True)
        llm = LLMClient(LLMSettings(**settings), ledger_path=out / "llm_calls.jsonl", jitter_seed=0)
        clients.append(llm)
        loop = AdvisorLoop(cfg, out, progress=False, clients={cfg.model: llm})
        if not finalize:
            loop.finalize = lambda: []  # type: ignore[method-assign]
        return loop

    yield make
    for c in clients:
        c.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file, parsed (fails the test on any invalid line)."""
    return [_json.loads(line) for line in Path(path).read_text("utf-8").splitlines() if line.strip()]

"""The cost ledger: one record per LLM call (tokens, cost, attempts, errors), optionally appended to a JSONL file.

The file is written and repaired by :mod:`data_advisor.io`'s append-only helpers (``append_jsonl``, fsync'd; and
``cut_torn_tail`` for a line a kill left half written), the same ones the run store uses.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_advisor.errors import OutputError
from data_advisor.io import append_jsonl, cut_torn_tail
from data_advisor.llm.settings import CallCost

__all__ = ["Ledger", "LedgerRecord"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LedgerRecord(CallCost):
    """One call as accounted (its :class:`CallCost` plus when, which model and whether it succeeded): no message
    contents and no key, so it is safe to write anywhere.  Built by keyword."""

    time: str
    model: str
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
                if cut_torn_tail(self.path):
                    logger.info("cut a partly written last record from the LLM ledger %s", self.path)
            except OSError as exc:
                raise OutputError(
                    f"cannot write the LLM ledger file {self.path}: {exc.strerror or exc}",
                    "choose a writable ledger path",
                ) from None

    def add(self, record: LedgerRecord) -> None:
        """Account one call (and append it to the JSONL file when there is one)."""
        with self._lock:
            self._records.append(record)
            if self.path is not None:
                append_jsonl(self.path, [record.to_dict()], sort_keys=True, ensure_ascii=True)

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

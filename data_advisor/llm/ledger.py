"""The cost ledger: one record per LLM call (tokens, cost, attempts, errors), optionally appended to a JSONL file.

The torn-tail repair below is kept here for now; a shared JSONL helper in :mod:`data_advisor.io` is meant to
replace it (and the run store's own copy).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_advisor.errors import OutputError

__all__ = ["Ledger", "LedgerRecord"]

logger = logging.getLogger(__name__)


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

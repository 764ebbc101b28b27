"""Spend caps of a run (``--max-cost USD``, ``--max-tokens N``), read from the run's LLM ledger.

Why from the ledger file (``llm_calls.jsonl``) and not from this process's counters: a resumed run has spent
what earlier processes spent, and the cap is on the run.  Every ledger line counts — generator and advisor calls,
failed calls, and the tokens of every retry (the client folds them into the call's record).  Cost is priced from
the tokens with litellm's price table, so retried attempts are paid for too; a model litellm has no price for
makes a cost cap meaningless, so such a cap is refused up front with the suggestion to cap tokens instead.

The run stops *before* a round that would cross a cap: the next round is estimated as the mean of the last few
rounds' spend, so a run ends at most about one round over (never by more than one round's spread).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_advisor.errors import InputError

#: Rounds whose mean spend estimates the next one.
ESTIMATE_ROUNDS = 3


@dataclass(frozen=True)
class Spend:
    """Money and tokens spent."""

    cost_usd: float = 0.0
    tokens: int = 0

    def __sub__(self, other: Spend) -> Spend:
        return Spend(self.cost_usd - other.cost_usd, self.tokens - other.tokens)


def _litellm() -> Any:
    import litellm

    return litellm


def model_prices(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token from litellm's price table, or None when the model has no known price."""
    try:
        info = _litellm().get_model_info(model)
    except Exception:  # litellm raises a bare Exception for unmapped models
        return None
    inp, out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if not isinstance(inp, int | float) or not isinstance(out, int | float) or (inp <= 0 and out <= 0):
        return None
    return float(inp), float(out)


def check_priced(models: Iterable[str | None]) -> None:
    """Refuse a cost cap when any model the run calls has no price (its spend would read as $0 forever)."""
    unknown = sorted({m for m in models if m and model_prices(m) is None})
    if unknown:
        raise InputError(f"--max-cost cannot be enforced: litellm has no price for {', '.join(unknown)}",
                         "cap tokens instead with --max-tokens N")


def ledger_spend(path: Path) -> Spend:
    """What the ledger file records: tokens of every call (retries included) and their priced cost."""
    if not path.exists():
        return Spend()
    prices: dict[str, tuple[float, float] | None] = {}
    cost = 0.0
    tokens = 0
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            pt, ct = int(rec.get("prompt_tokens") or 0), int(rec.get("completion_tokens") or 0)
        except (ValueError, TypeError, AttributeError):
            continue  # a torn line: the ledger cuts it on the next open
        model = str(rec.get("model") or "")
        if model not in prices:
            prices[model] = model_prices(model)
        price = prices[model]
        tokens += pt + ct
        cost += pt * price[0] + ct * price[1] if price else float(rec.get("cost_usd") or 0.0)
    return Spend(cost, tokens)


@dataclass
class Budget:
    """The caps and the per-round spend that estimates the next round."""

    max_cost_usd: float | None = None
    max_tokens: int | None = None

    @property
    def active(self) -> bool:
        return self.max_cost_usd is not None or self.max_tokens is not None

    def stop_reason(self, spent: Spend, recent: Sequence[Spend]) -> str | None:
        """Why the next round must not start (it would cross a cap), or None."""
        last = list(recent)[-ESTIMATE_ROUNDS:]
        est = Spend(sum(s.cost_usd for s in last) / len(last), round(sum(s.tokens for s in last) / len(last))) \
            if last else Spend()
        if self.max_cost_usd is not None and spent.cost_usd + est.cost_usd > self.max_cost_usd:
            return (f"the --max-cost cap ${self.max_cost_usd:g} (spent ${spent.cost_usd:.4f}; the next round would "
                    f"cost about ${est.cost_usd:.4f}); re-run with a higher --max-cost to continue")
        if self.max_tokens is not None and spent.tokens + est.tokens > self.max_tokens:
            return (f"the --max-tokens cap {self.max_tokens:,} (spent {spent.tokens:,} tokens; the next round would "
                    f"use about {est.tokens:,}); re-run with a higher --max-tokens to continue")
        return None

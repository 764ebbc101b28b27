"""Responses: a responder model answers each prompt of a run, giving SFT-ready chat JSONL.

Output ``responses.jsonl`` holds one ``{"messages": [{"role": "user", ...}, {"role": "assistant", ...}], ...}``
record per prompt — the format TRL's SFTTrainer and axolotl read directly.  The file is append-only and
fsync'd; a re-run skips prompts already answered, so an interrupted job resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_advisor.advisor import prompts as P
from data_advisor.errors import InputError, LLMError
from data_advisor.io import append_jsonl
from data_advisor.llm.failures import FATAL_KINDS
from data_advisor.runs import read_and_repair, read_run


@dataclass
class RespondSummary:
    out: Path
    answered: int
    skipped_existing: int
    failed: int
    cost_usd: float

    def line(self) -> str:
        return (f"{self.answered} new responses → {self.out} ({self.skipped_existing} already there, "
                f"{self.failed} failed, spent ${self.cost_usd:.4f})")


def respond(run_dir: Path, client: Any, *, out: Path | None = None, batch_size: int = 16,
            max_tokens: int = 512, progress: bool = True) -> RespondSummary:
    """Answer every prompt of ``run_dir`` not yet answered; raise on a provider that keeps failing."""
    prompts = read_run(Path(run_dir)).prompts  # only the run's additions: a --base set is never answered here
    if not prompts:
        raise InputError(f"run {run_dir} has no prompts yet", "run `data-advisor generate` or `curate` first")
    out = Path(out) if out else Path(run_dir) / "responses.jsonl"
    done = {r.get("id") for r in read_and_repair(out)}
    todo = [p for p in prompts if p.id not in done]
    bar = None
    if progress:
        import sys

        from tqdm.auto import tqdm

        bar = tqdm(total=len(prompts), initial=len(prompts) - len(todo), unit="response", file=sys.stderr)
    answered = failed = 0
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            results = client.complete_many([P.response_messages(p.text) for p in chunk], max_tokens=max_tokens,
                                           temperature=0.0)
            out_rows: list[dict[str, Any]] = []
            errors = []
            for p, r in zip(chunk, results, strict=True):
                if isinstance(r, LLMError):
                    errors.append(r)
                    continue
                out_rows.append({"id": p.id, "messages": [{"role": "user", "content": p.text},
                                                          {"role": "assistant", "content": r.text.strip()}],
                                 "anchor_id": p.anchor_id, "responder": client.settings.model})
            append_jsonl(out, out_rows)
            answered += len(out_rows)
            failed += len(errors)
            if bar is not None:
                bar.update(len(out_rows))
            fatal = [e for e in errors if getattr(e, "kind", "") in FATAL_KINDS]
            if fatal or (errors and not out_rows):
                e = (fatal or errors)[0]
                raise LLMError(f"responder failed: {e.problem}",
                               f"{e.fix or 'check the provider'}; re-run the same command to resume "
                               f"({answered + len(done)} of {len(prompts)} answered so far)")
    finally:
        if bar is not None:
            bar.close()
    return RespondSummary(out, answered, len(prompts) - len(todo), failed, client.ledger.totals()["cost_usd"])

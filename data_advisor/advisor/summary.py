"""What a finished (or stopped) advisor run did: :class:`RunSummary`, its one-line summary and its notebook view.

Apart from :mod:`~data_advisor.advisor.loop` so the loop stays a loop (and under 500 lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RunSummary"]


@dataclass
class RunSummary:
    """What a finished (or stopped) run did."""

    out: Path
    n_prompts: int  # prompts the run added (the base set not counted)
    rounds: int
    kept: int
    rejected: int
    cost_usd: float  # the whole run's (every process that worked on it), from its ledger
    metrics: dict[str, float] = field(default_factory=dict)  # of base + additions
    resumed: bool = False
    stopped_early: str | None = None
    n_base: int = 0
    warnings: list[str] = field(default_factory=list)  # one line each: off-target stall, coverage made worse

    def line(self) -> str:
        m = self.metrics
        extra = f"; stopped: {self.stopped_early}" if self.stopped_early else ""
        base = f" on top of {self.n_base} base prompts" if self.n_base else ""
        return (f"{self.n_prompts} prompts in {self.out}{base} after {self.rounds} rounds "
                f"(kept {self.kept}, rejected {self.rejected}, spent ${self.cost_usd:.4f}); "
                f"entropy {m.get('normalized_entropy', 0):.3f}, coverage {m.get('coverage_ratio', 0):.2f}, "
                f"Vendi {m.get('vendi_score', 0):.1f}{extra}")

    def _repr_html_(self) -> str:
        """Jupyter's view of the run: what it added and the key metrics of base + additions (all text escaped)."""
        from data_advisor.coverage.notebook import esc, key_numbers_html

        counts = [("added", f"{self.n_prompts:,}"), ("base", f"{self.n_base:,}"), ("rounds", f"{self.rounds:,}"),
                  ("kept", f"{self.kept:,}"), ("rejected", f"{self.rejected:,}"), ("spent", f"${self.cost_usd:.4f}")]
        stopped = f"<div>stopped early: {esc(self.stopped_early)}</div>" if self.stopped_early else ""
        return (f'<div class="data-advisor-run"><b>Data Advisor run</b> in <code>{esc(self.out)}</code>'
                f"{' (resumed)' if self.resumed else ''}{key_numbers_html(self.metrics, counts)}{stopped}"
                "<div>Coverage after the run: <code>advisor.report()</code>; its <code>.show()</code> shows the "
                "interactive report</div></div>")

"""``data_advisor.Advisor``: the advisor loop from Python, with the same run folders as ``generate`` / ``curate``.

A thin front over :class:`~data_advisor.advisor.config.RunConfig` and :class:`~data_advisor.advisor.loop.AdvisorLoop`:
the keyword arguments are RunConfig's fields (``method``, ``taxonomy``, ``n``, ``base``, ``pool``, ``model``,
``advice`` …), ``run()`` creates or resumes the run folder exactly as the CLI does, and ``report()`` reads the
coverage of the data set after the run (base + additions).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from data_advisor.advisor.config import RunConfig
from data_advisor.advisor.loop import AdvisorLoop, RunSummary
from data_advisor.coverage.report import CoverageReport
from data_advisor.errors import InputError

_FIELDS = frozenset(f.name for f in fields(RunConfig))


class Advisor:
    """Extend (``base=``) or build a prompt set with one of the advisor-loop methods.

    >>> run = Advisor("runs/fill", method="curate", pool="pool.jsonl", base="audit/", n=100)  # doctest: +SKIP
    >>> run.run().n_prompts  # doctest: +SKIP
    100

    Methods: ``advisor`` (LLM generation steered by the advisor; needs ``model``), ``self-instruct``,
    ``self-instruct-paper``, ``curate`` (offline, from ``pool``) and ``curate-random``.  Re-running on the same
    folder resumes it; a different configuration (or a changed base) is refused with the difference named.
    """

    def __init__(self, out: str | Path, **config: Any) -> None:
        unknown = sorted(set(config) - _FIELDS)
        if unknown:
            raise InputError(f"unknown Advisor option(s): {', '.join(unknown)}",
                             f"use RunConfig fields: {', '.join(sorted(_FIELDS))}")
        if "advice" not in config:  # as the CLI: curation is offline unless a model is given
            offline = str(config.get("method", "advisor")).startswith("curate") and not config.get("model")
            config["advice"] = "numeric" if offline else "llm"
        for key in ("base", "pool", "seed_prompts"):
            if isinstance(config.get(key), Path):
                config[key] = str(config[key])
        self.config = RunConfig(**config)
        self.config.validate()
        self.out = Path(out)

    def run(self, *, progress: bool = False) -> RunSummary:
        """Run (or resume) to ``n`` added prompts; writes the run folder and its report.html."""
        return AdvisorLoop(self.config, self.out, progress=progress).run()

    def report(self) -> CoverageReport:
        """The coverage of the data set after the run (base + additions), from the run's coverage.json."""
        return CoverageReport.load(self.out / "coverage.json")

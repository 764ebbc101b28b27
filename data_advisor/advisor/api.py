"""``data_advisor.Advisor``: the advisor loop from Python, with the same run folders as ``generate`` / ``curate``.

A thin front over :class:`~data_advisor.advisor.config.RunConfig` and :class:`~data_advisor.advisor.loop.AdvisorLoop`:
the keyword arguments are RunConfig's fields (``method``, ``taxonomy``, ``n``, ``base``, ``pool``, ``model``,
``advice`` …), ``run()`` creates or resumes the run folder exactly as the CLI does, and ``report()`` reads the
coverage of the data set after the run (base + additions).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from os import PathLike
from pathlib import Path
from typing import Any

from data_advisor.advisor.config import RunConfig
from data_advisor.advisor.loop import AdvisorLoop, RunSummary
from data_advisor.coverage.report import CoverageReport
from data_advisor.data import as_prompt_set
from data_advisor.errors import InputError
from data_advisor.io import write_text_atomic

_FIELDS = frozenset(f.name for f in fields(RunConfig))


def table_file(table: Any, what: str, out: Path, *, text_field: str | None, id_field: str | None) -> str:
    """An in-memory ``base`` / ``pool`` (a DataFrame, a ``datasets.Dataset`` …) as a JSONL file in the run folder.

    Why a file: the run folder must resume and say what it was built from, and config.json records its inputs as
    files with their sha256. The name carries the content's hash, so a changed table is a changed configuration
    (refused on resume, with the difference named) and the file an earlier run used is never overwritten.
    """
    prompts = as_prompt_set(table, text_field=text_field, id_field=id_field, skip_invalid=True, truncate=True)
    body = "".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n"
                   for i, t in zip(prompts.ids, prompts.texts, strict=True))
    path = out / "inputs" / f"{what}-{hashlib.sha256(body.encode('utf-8')).hexdigest()[:16]}.jsonl"
    if not path.is_file():
        write_text_atomic(path, body)
    return str(path)


class Advisor:
    """Extend (``base=``) or build a prompt set with one of the advisor-loop methods.

    >>> run = Advisor("runs/fill", method="curate", pool="pool.jsonl", base="audit/", n=100)  # doctest: +SKIP
    >>> run.run().n_prompts  # doctest: +SKIP
    100

    Methods: ``advisor`` (LLM generation steered by the advisor; needs ``model``), ``self-instruct``,
    ``self-instruct-paper``, ``curate`` (offline, from ``pool``) and ``curate-random``.  Re-running on the same
    folder resumes it; a different configuration (or a changed base) is refused with the difference named.

    ``base`` and ``pool`` may also be in-memory tables (a pandas or polars DataFrame, a ``datasets.Dataset``),
    their columns picked by ``base_text_field`` / ``pool_text_field`` and ``base_id_field`` / ``pool_id_field``;
    they are stored in the run folder as ``inputs/{base,pool}-<sha256>.jsonl`` so the run can resume.
    """

    def __init__(self, out: str | Path, *, base_id_field: str | None = None, pool_id_field: str | None = None,
                 **config: Any) -> None:
        self.out = Path(out)
        unknown = sorted(set(config) - _FIELDS)
        if unknown:
            raise InputError(f"unknown Advisor option(s): {', '.join(unknown)}",
                             f"use RunConfig fields: {', '.join(sorted(_FIELDS))}")
        if "advice" not in config:  # as the CLI: curation is offline unless a model is given
            offline = str(config.get("method", "advisor")).startswith("curate") and not config.get("model")
            config["advice"] = "numeric" if offline else "llm"
        for key, id_field in (("base", base_id_field), ("pool", pool_id_field)):
            if id_field is not None and isinstance(config.get(key), str | PathLike | None):
                raise InputError(f"{key}_id_field applies to an in-memory {key} (a DataFrame or a Dataset)",
                                 f"pass the {key} as a table, or drop {key}_id_field (files use their `id` field)")
            if config.get(key) is not None and not isinstance(config[key], str | PathLike):
                config[key] = table_file(config[key], key, self.out, text_field=config.get(f"{key}_text_field"),
                                         id_field=id_field)
                config[f"{key}_text_field"] = "text"
        for key in ("base", "pool", "seed_prompts"):
            if isinstance(config.get(key), PathLike):
                config[key] = str(config[key])
        self.config = RunConfig(**config)
        self.config.validate()

    def run(self, *, progress: bool = False) -> RunSummary:
        """Run (or resume) to ``n`` added prompts; writes the run folder and its report.html."""
        return AdvisorLoop(self.config, self.out, progress=progress).run()

    def report(self) -> CoverageReport:
        """The coverage of the data set after the run (base + additions), from the run's coverage.json."""
        return CoverageReport.load(self.out / "coverage.json")

"""Run folder: an append-only, crash-safe record of a generation or curation run.

Layout: ``config.json`` (what the run is), ``prompts.jsonl`` (one record per kept prompt, append-only,
fsync'd), ``rounds.jsonl`` (one record per round), then ``coverage.json`` / ``assignments.jsonl`` /
``report.html`` written at the end.

Why this shape: a run killed at any instant (even SIGKILL) must resume with nothing lost and nothing
duplicated. Records are appended whole and fsync'd; on open, a torn last line (the only thing a kill can
leave) is cut off.  Re-running the same command on the same folder resumes; a different configuration is
refused with the differing keys named.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_advisor.errors import OutputError, RunConfigError
from data_advisor.io import ensure_writable_dir, split_lines, write_json_atomic

#: Config keys that may differ on resume without changing what the run produces.
RESUME_MUTABLE_KEYS = frozenset({"concurrency", "progress", "report", "timeout_s", "max_retries"})


def _repair_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file, cutting off a torn (partially written) last line in place."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    rows: list[dict[str, Any]] = []
    good_end = 0
    pos = 0
    for line in raw.splitlines(keepends=True):
        end = pos + len(line)
        stripped = line.strip()
        if stripped:
            if not line.endswith(b"\n"):
                break  # torn final line: the write never finished
            try:
                rows.append(json.loads(stripped))
            except ValueError:
                break
        good_end = end
        pos = end
    if good_end < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return rows


def _append_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not data:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two run configs, ignoring keys that may change on resume."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key in RESUME_MUTABLE_KEYS:
            continue
        if old.get(key) != new.get(key):
            diffs.append(f"{key}: {old.get(key)!r} → {new.get(key)!r}")
    return diffs


@dataclass
class RunState:
    """What a run folder already holds."""

    prompts: list[dict[str, Any]]
    rounds: list[dict[str, Any]]

    @property
    def next_round(self) -> int:
        last = max([r["round"] for r in self.rounds] + [p.get("round", -1) for p in self.prompts], default=-1)
        return int(last) + 1


class RunStore:
    """Open (create or resume) a run folder."""

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.dir = ensure_writable_dir(Path(run_dir))
        self.config_path = self.dir / "config.json"
        self.prompts_path = self.dir / "prompts.jsonl"
        self.rounds_path = self.dir / "rounds.jsonl"
        if self.config_path.exists():
            try:
                old = json.loads(self.config_path.read_text("utf-8"))
            except ValueError:
                raise RunConfigError(f"{self.config_path} is not valid JSON",
                                     "restore it, or start the run in a new --out folder") from None
            diffs = config_differences(old, config)
            if diffs:
                raise RunConfigError(
                    f"{self.dir} holds a run with a different configuration ({'; '.join(diffs)})",
                    "re-run with the original options to resume, or choose a new --out folder",
                )
        else:
            write_json_atomic(self.config_path, config)
        self.config = config
        self.state = RunState(_repair_jsonl(self.prompts_path), _repair_jsonl(self.rounds_path))
        self._recover_round_records()
        #: Whether the folder already held records when opened (a resume, not a fresh run).
        self.resumed = bool(self.state.prompts or self.state.rounds)

    def _recover_round_records(self) -> None:
        """A kill between a round's prompt append and its record append leaves prompts without a record:
        write a minimal ``recovered`` record for each such round so the log stays complete."""
        logged = {r.get("round") for r in self.state.rounds}
        missing: dict[int, int] = {}
        for p in self.state.prompts:
            if p.get("round") not in logged:
                missing[p["round"]] = missing.get(p["round"], 0) + 1
        counts = {p.get("round"): n for n, p in enumerate(self.state.prompts, start=1)}
        for rnd in sorted(missing):
            self.append_round({"round": rnd, "kept": missing[rnd], "rejected": 0, "rejected_reasons": {},
                               "n_prompts": counts[rnd], "recovered": True,
                               "note": "the run was killed before this round's record was written"})

    def append_prompts(self, records: list[dict[str, Any]]) -> None:
        try:
            _append_jsonl(self.prompts_path, records)
        except OSError as exc:
            raise OutputError(f"cannot append to {self.prompts_path}: {exc.strerror}",
                              "free disk space, then re-run the same command to resume") from None
        self.state.prompts.extend(records)

    def append_round(self, record: dict[str, Any]) -> None:
        try:
            _append_jsonl(self.rounds_path, [record])
        except OSError as exc:
            raise OutputError(f"cannot append to {self.rounds_path}: {exc.strerror}",
                              "free disk space, then re-run the same command to resume") from None
        self.state.rounds.append(record)


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(config, prompts, rounds) of an existing run folder, for reports and `respond` (read-only)."""
    run_dir = Path(run_dir)
    cfg = run_dir / "config.json"
    if not cfg.exists():
        from data_advisor.errors import InputError

        raise InputError(f"{run_dir} is not a run folder (no config.json)",
                         "pass the --out folder of a `data-advisor generate` or `curate` run")
    config = json.loads(cfg.read_text("utf-8"))

    def _read(p: Path) -> list[dict[str, Any]]:
        if not p.exists():
            return []
        out = []
        for line in split_lines(p.read_text("utf-8")):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    break
        return out

    return config, _read(run_dir / "prompts.jsonl"), _read(run_dir / "rounds.jsonl")

"""Run folder: the one reader and writer of a generation or curation run's records.

Layout: ``config.json`` (what the run is), ``prompts.jsonl`` (one :class:`KeptPrompt` per kept prompt, append-only,
fsync'd), ``rounds.jsonl`` (one :class:`RoundRecord` per round), ``base.json`` with ``--base`` (a
:class:`BaseSnapshot`), then ``coverage.json`` / ``assignments.jsonl`` / ``report.html`` written at the end.

Why one module, in the lowest layer: the store (``advisor``), resume, ``respond`` and the run report (``reports``)
all read run folders, and two readers had drifted apart (one cut torn lines, one failed on them; they counted lost
records differently).  Everything here goes through :mod:`data_advisor.io`'s append-only JSONL helpers.

Why this shape: a run killed at any instant (even SIGKILL) must resume with nothing lost and nothing duplicated.
Records are appended whole and fsync'd; on open, a torn last line (the only thing a kill can leave) is cut off,
with a note on the toolkit's logger.  Damage anywhere else (a bad line in the middle, zero fill, fewer prompt
records than rounds.jsonl counts) stops with a one-line error naming the file and line: cutting the file there
would silently delete every record after it, and those may be paid-for LLM outputs.  Re-running the same command
on the same folder resumes; a different configuration is refused with the differing keys named.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_advisor._env import log
from data_advisor.errors import InputError, OutputError, RunConfigError
from data_advisor.io import (
    CHECKSUM_FILE,
    JsonlDamage,
    JsonlRead,
    append_jsonl,
    ensure_writable_dir,
    read_jsonl_records,
    removed_on_failure,
    write_json_atomic,
)
from data_advisor.run_records import BaseSnapshot, KeptPrompt, RoundRecord

#: Files a run writes into its folder (an input file of the same name there would be overwritten).
RUN_FILES = ("config.json", "prompts.jsonl", "rounds.jsonl", "coverage.json", "assignments.jsonl", "embeddings.npy",
             "report.html", "llm_calls.jsonl", "responses.jsonl", "llm_calls_respond.jsonl", CHECKSUM_FILE)
#: Files that make a folder without config.json something other than a new run (a damaged run, an audit's --out).
_RECORD_AND_OUTPUT_FILES = ("prompts.jsonl", "rounds.jsonl", "coverage.json", "assignments.jsonl", "embeddings.npy",
                            "report.html")
#: Config keys that may differ on resume without changing what the run produces.
RESUME_MUTABLE_KEYS = frozenset({"concurrency", "progress", "report", "timeout_s", "max_retries", "max_cost_usd",
                                 "max_tokens"})


class RunDamagedError(InputError):
    """A run folder file is damaged somewhere other than a torn last line: never repaired by cutting records."""


def _note(msg: str) -> None:
    """Recovery notes are warnings (shown with -q too): the run goes on, but the user is told what was repaired."""
    log.warning(f"note: {msg}")


def read_records(path: Path, valid: Callable[[Any], bool] = lambda row: isinstance(row, dict)) -> JsonlRead:
    """An append-only JSONL file of a run folder, read without changing it; damage other than a torn last line is a
    :class:`RunDamagedError` naming the file, the line and the fix."""
    try:
        return read_jsonl_records(path, valid)
    except JsonlDamage as exc:
        raise RunDamagedError(
            f"{path} is damaged at line {exc.lineno} (not a complete record); {exc.n_before} records before it "
            "are intact and the records after it would be lost if the file were cut there",
            f"restore {path.name} from a backup, or delete or repair line {exc.lineno} by hand (that record "
            "is lost), then re-run the same command to resume",
        ) from None


def repair_records(read: JsonlRead) -> None:
    """Apply the repair a read found (cut a torn last line, or finish a last newline), saying what was cut."""
    cut = read.repair()
    if cut:
        _note(f"{read.path} ended with a partly written record ({cut} bytes from an interrupted run); it was "
              f"removed and that work will be redone; {len(read.rows)} complete records kept")


def read_and_repair(path: Path, valid: Callable[[Any], bool] = lambda row: isinstance(row, dict)) -> list[dict[str, Any]]:
    """Read an append-only JSONL file of a run folder, cutting off a torn last line in place — and saying so."""
    read = read_records(path, valid)
    repair_records(read)
    return read.rows


def _valid_prompt(row: Any) -> bool:
    rnd = row.get("round", 0) if isinstance(row, dict) else None
    return (isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("text"), str)
            and isinstance(rnd, int) and not isinstance(rnd, bool))


def _valid_round(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("round"), int) and not isinstance(row.get("round"), bool)


def _check_counts(run_dir: Path, prompts: list[KeptPrompt], rounds: list[RoundRecord]) -> None:
    """prompts.jsonl and rounds.jsonl must tell one story.

    rounds.jsonl records how many prompts the run held after each round: fewer in prompts.jsonl means records were
    lost (a file cut at a line boundary looks intact on its own).  A kill between a round's prompt append and its
    record append leaves exactly one round without a record, the last one; an earlier round without its record means
    rounds.jsonl lost records (cut or edited): that is damage, refused rather than papered over with rebuilt records
    that would lose the rounds' advice."""
    recorded = max((r.n_prompts for r in rounds), default=0)
    if recorded > len(prompts):
        raise RunDamagedError(
            f"{run_dir / 'prompts.jsonl'} holds {len(prompts)} prompts but {run_dir / 'rounds.jsonl'} records "
            f"{recorded}: {recorded - len(prompts)} prompt records are missing",
            "restore prompts.jsonl from a backup, or start the run again in a new --out folder",
        )
    logged = {r.round for r in rounds}
    last = max((p.round for p in prompts), default=None)
    earlier = sorted({p.round for p in prompts} - logged - {last})
    if earlier:
        raise RunDamagedError(
            f"{run_dir / 'rounds.jsonl'} lacks the records of round(s) {', '.join(map(str, earlier[:5]))} although "
            "prompts.jsonl holds their prompts (records were lost)",
            "restore rounds.jsonl from a backup, or start the run again in a new --out folder")


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
    """What a run folder already holds, as typed records."""

    prompts: list[KeptPrompt]
    rounds: list[RoundRecord]

    @property
    def next_round(self) -> int:
        last = max([r.round for r in self.rounds] + [p.round for p in self.prompts], default=-1)
        return int(last) + 1


def _read_state(run_dir: Path) -> tuple[JsonlRead, JsonlRead, RunState]:
    """Both record files, read and checked (nothing is changed), and the state they hold."""
    prompts = read_records(run_dir / "prompts.jsonl", _valid_prompt)
    rounds = read_records(run_dir / "rounds.jsonl", _valid_round)
    state = RunState([KeptPrompt.from_json(r) for r in prompts.rows], [RoundRecord.from_json(r) for r in rounds.rows])
    _check_counts(run_dir, state.prompts, state.rounds)
    return prompts, rounds, state


class RunStore:
    """Open (create or resume) a run folder, and append its records."""

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
            if not isinstance(old, dict):
                raise RunConfigError(f"{self.config_path} does not hold a run configuration",
                                     "restore it, or start the run in a new --out folder")
            diffs = config_differences(old, config)
            if diffs:
                raise RunConfigError(
                    f"{self.dir} holds a run with a different configuration ({'; '.join(diffs)})",
                    "re-run with the original options to resume, or choose a new --out folder",
                )
        else:
            foreign = [name for name in _RECORD_AND_OUTPUT_FILES if (self.dir / name).exists()]
            if foreign:  # e.g. an audit's --out: the run's final outputs would overwrite its coverage.json
                raise RunConfigError(f"{self.dir} is not a run folder (no config.json) but holds {', '.join(foreign)}",
                                     "choose a new --out folder for the run")
            write_json_atomic(self.config_path, config)
        self.config = config
        # Both files are read and checked before either is touched: a refused folder is left exactly as it was.
        prompts, rounds, self.state = _read_state(self.dir)
        repair_records(prompts)
        repair_records(rounds)
        self._recover_last_round_record()
        #: Whether the folder already held records when opened (a resume, not a fresh run).
        self.resumed = bool(self.state.prompts or self.state.rounds)

    def _recover_last_round_record(self) -> None:
        """Write a minimal ``recovered`` record for the last round when a kill came before its record, and say so
        (:func:`_check_counts` has already refused any earlier round without its record)."""
        logged = {r.round for r in self.state.rounds}
        missing: dict[int, int] = {}
        counts: dict[int, int] = {}
        for n, p in enumerate(self.state.prompts, start=1):
            counts[p.round] = n
            if p.round >= 0 and p.round not in logged:
                missing[p.round] = missing.get(p.round, 0) + 1
        for rnd in sorted(missing):
            _note(f"round {rnd} of {self.dir} has {missing[rnd]} kept prompts but no record in rounds.jsonl (the run "
                  "was stopped before writing it); a minimal record was rebuilt from prompts.jsonl (its advice is "
                  "not known)")
            self.append_round(RoundRecord.recovered_from(rnd, kept=missing[rnd], n_prompts=counts[rnd]))

    def append_prompts(self, records: list[KeptPrompt]) -> None:
        """Append kept prompts (fsync'd) before anything else of their round can fail."""
        self._append(self.prompts_path, [p.to_json() for p in records])
        self.state.prompts.extend(records)

    def append_round(self, record: RoundRecord) -> None:
        """Append one round's record (fsync'd)."""
        self._append(self.rounds_path, [record.to_json()])
        self.state.rounds.append(record)

    @staticmethod
    def _append(path: Path, rows: list[dict[str, Any]]) -> None:
        try:
            append_jsonl(path, rows)
        except OSError as exc:
            raise OutputError(f"cannot append to {path}: {exc.strerror}",
                              "free disk space, then re-run the same command to resume") from None


@contextlib.contextmanager
def discard_new_run_on_failure(run_dir: Path) -> Iterator[None]:
    """If the block fails before a new run folder holds any record, remove what it created (config.json, empty
    files, new folders).

    Why: a `curate` whose pool has a bad line failed after config.json was written; once the pool was fixed the
    folder was refused as "a run with a different configuration" — and `--out a/deep/er` left empty folders.
    """
    run_dir = Path(run_dir)
    fresh = not (run_dir / "config.json").exists()
    existing = {name for name in RUN_FILES if (run_dir / name).exists()}
    with removed_on_failure(run_dir):
        try:
            yield
        except BaseException:
            if fresh:
                _discard_empty_run(run_dir, keep=existing)
            raise


def _discard_empty_run(run_dir: Path, keep: set[str]) -> None:
    if any((run_dir / name).exists() and (run_dir / name).stat().st_size for name in ("prompts.jsonl", "rounds.jsonl")):
        return  # records were written: they are the user's, keep everything
    with contextlib.suppress(OSError):
        for name in set(RUN_FILES) - keep:
            f = run_dir / name
            if f.is_file() and (name == "config.json" or f.stat().st_size == 0):
                f.unlink()


@dataclass
class RunFolder:
    """An existing run folder as read (nothing changed): its config and typed records."""

    path: Path
    config: dict[str, Any]
    prompts: list[KeptPrompt]
    rounds: list[RoundRecord]
    base: BaseSnapshot | None  # base.json: the base set's record and its coverage before the run (``--base`` only)


def read_run(run_dir: Path) -> RunFolder:
    """An existing run folder, read-only, for resume checks, reports and `respond`.

    A torn last line (a run still going, or killed) is skipped; damage elsewhere, or records that lost some of their
    lines, is a one-line :class:`RunDamagedError` naming the file and the fix.
    """
    run_dir = Path(run_dir)
    cfg = run_dir / "config.json"
    if not run_dir.is_dir() or not cfg.exists():
        raise InputError(f"{run_dir} is not a run folder (no config.json)",
                         "pass the --out folder of a `data-advisor generate` or `curate` run")
    config = _read_json_object(cfg, "a run configuration")
    prompts_read, rounds_read, state = _read_state(run_dir)
    for read in (prompts_read, rounds_read):
        if read.torn_bytes:  # read-only: nothing is cut here, but what is shown is said
            _note(f"{read.path} ends with a partly written record ({read.torn_bytes} bytes: a run still going, or "
                  f"killed); read without it ({len(read.rows)} complete records)")
    base_path = run_dir / "base.json"
    base = BaseSnapshot.from_json(_read_json_object(base_path, "a base record")) if base_path.exists() else None
    return RunFolder(run_dir, config, state.prompts, state.rounds, base)


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{path} is not valid JSON", "restore it from a backup; the run folder is damaged") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path} does not hold {what}", "restore it from a backup; the run folder is damaged")
    return obj

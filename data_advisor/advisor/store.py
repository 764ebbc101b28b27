"""Run folder: an append-only, crash-safe record of a generation or curation run.

Layout: ``config.json`` (what the run is), ``prompts.jsonl`` (one record per kept prompt, append-only,
fsync'd), ``rounds.jsonl`` (one record per round), then ``coverage.json`` / ``assignments.jsonl`` /
``report.html`` written at the end.

Why this shape: a run killed at any instant (even SIGKILL) must resume with nothing lost and nothing
duplicated. Records are appended whole and fsync'd; on open, a torn last line (the only thing a kill can
leave) is cut off, with a note on stderr.  Damage anywhere else (a bad line in the middle, zero fill, fewer prompt
records than rounds.jsonl counts) stops with a one-line error naming the file and line: cutting the file there
would silently delete every record after it, and those may be paid-for LLM outputs.  Re-running the same command
on the same folder resumes; a different configuration is refused with the differing keys named.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_advisor.errors import InputError, OutputError, RunConfigError
from data_advisor.io import CHECKSUM_FILE, ensure_writable_dir, removed_on_failure, write_json_atomic

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
    """Recovery notes go to stderr: the run goes on, but the user is told what was repaired."""
    print(f"note: {msg}", file=sys.stderr, flush=True)


def _is_torn_tail(line: bytes) -> bool:
    """What an interrupted append can leave as the last line: the start of a JSON object, cut short (no NUL fill,
    no newline-terminated garbage from elsewhere)."""
    return line.lstrip().startswith(b"{") and b"\x00" not in line


def _parse_jsonl(path: Path, raw: bytes, valid: Callable[[Any], bool]) -> tuple[list[dict[str, Any]], int]:
    """Records of an append-only JSONL file and the byte offset where its good part ends.

    Only the *last* line may be bad, and only when it looks like a cut-short append (see :func:`_is_torn_tail`):
    the caller may then drop it.  A bad line anywhere else (or a last line that is not a torn append, e.g. zero
    fill) raises :class:`RunDamagedError` naming the file, the line and the fix: cutting there would silently
    delete every record after it.
    """
    rows: list[dict[str, Any]] = []
    lines = raw.split(b"\n")
    last_used = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
    pos = 0
    for lineno, line in enumerate(lines, start=1):
        if line.strip():
            try:
                row = json.loads(line)
                ok = valid(row)
            except (ValueError, RecursionError):
                row, ok = None, False
            if not ok:
                if lineno == last_used and _is_torn_tail(line):
                    return rows, pos
                raise RunDamagedError(
                    f"{path} is damaged at line {lineno} (not a complete record); {len(rows)} records before it "
                    "are intact and the records after it would be lost if the file were cut there",
                    f"restore {path.name} from a backup, or delete or repair line {lineno} by hand (that record "
                    "is lost), then re-run the same command to resume",
                )
            rows.append(row)
        pos += len(line) + 1
    return rows, len(raw)


@dataclass
class _JsonlRead:
    """An append-only JSONL file as read, and the repair it needs (applied only once every check has passed)."""

    path: Path
    rows: list[dict[str, Any]]
    good_end: int
    size: int
    needs_newline: bool

    def repair(self) -> None:
        """Cut a torn last line (saying so), or finish a complete last record whose newline was never written."""
        if self.good_end < self.size:
            with open(self.path, "r+b") as fh:
                fh.truncate(self.good_end)
                fh.flush()
                os.fsync(fh.fileno())
            _note(f"{self.path} ended with a partly written record ({self.size - self.good_end} bytes from an "
                  f"interrupted run); it was removed and that work will be redone; {len(self.rows)} complete "
                  "records kept")
        elif self.needs_newline:
            with open(self.path, "ab") as fh:
                fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())


def _read_jsonl(path: Path, valid: Callable[[Any], bool] = lambda row: isinstance(row, dict)) -> _JsonlRead:
    """Read an append-only JSONL file without changing it (see :func:`_parse_jsonl` for what counts as damage)."""
    if not path.exists():
        return _JsonlRead(path, [], 0, 0, False)
    raw = path.read_bytes()
    rows, good_end = _parse_jsonl(path, raw, valid)
    return _JsonlRead(path, rows, good_end, len(raw), good_end == len(raw) and bool(raw.strip())
                      and not raw.endswith(b"\n"))


def _repair_jsonl(path: Path, valid: Callable[[Any], bool] = lambda row: isinstance(row, dict)) -> list[dict[str, Any]]:
    """Read an append-only JSONL file, cutting off a torn (partially written) last line in place — and saying so."""
    read = _read_jsonl(path, valid)
    read.repair()
    return read.rows


def _valid_prompt(row: Any) -> bool:
    rnd = row.get("round", 0) if isinstance(row, dict) else None
    return (isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("text"), str)
            and isinstance(rnd, int) and not isinstance(rnd, bool))


def _valid_round(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("round"), int) and not isinstance(row.get("round"), bool)


def _check_counts(run_dir: Path, prompts: list[dict[str, Any]], rounds: list[dict[str, Any]]) -> None:
    """rounds.jsonl records how many prompts the run held after each round: fewer in prompts.jsonl means records
    were lost (a file cut at a line boundary looks intact on its own)."""
    recorded = max((r["n_prompts"] for r in rounds if isinstance(r.get("n_prompts"), int)), default=0)
    if recorded > len(prompts):
        raise RunDamagedError(
            f"{run_dir / 'prompts.jsonl'} holds {len(prompts)} prompts but {run_dir / 'rounds.jsonl'} records "
            f"{recorded}: {recorded - len(prompts)} prompt records are missing",
            "restore prompts.jsonl from a backup, or start the run again in a new --out folder",
        )


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
        prompts = _read_jsonl(self.prompts_path, _valid_prompt)
        rounds = _read_jsonl(self.rounds_path, _valid_round)
        self.state = RunState(prompts.rows, rounds.rows)
        _check_counts(self.dir, self.state.prompts, self.state.rounds)
        missing_records = self._rounds_without_record()
        prompts.repair()
        rounds.repair()
        self._recover_round_records(missing_records)
        #: Whether the folder already held records when opened (a resume, not a fresh run).
        self.resumed = bool(self.state.prompts or self.state.rounds)

    def _rounds_without_record(self) -> dict[int, int]:
        """Rounds whose prompts are in prompts.jsonl but whose record is not in rounds.jsonl → their prompt counts.

        A kill between a round's prompt append and its record append leaves exactly one such round, the last one.
        An earlier round without its record means rounds.jsonl lost records (cut or edited): that is damage, refused
        rather than papered over with rebuilt records that would lose the rounds' advice."""
        logged = {r.get("round") for r in self.state.rounds}
        missing: dict[int, int] = {}
        for p in self.state.prompts:
            if "round" in p and p["round"] not in logged:
                missing[p["round"]] = missing.get(p["round"], 0) + 1
        last = max((p["round"] for p in self.state.prompts if "round" in p), default=None)
        earlier = sorted(r for r in missing if r != last)
        if earlier:
            raise RunDamagedError(
                f"{self.rounds_path} lacks the records of round(s) {', '.join(map(str, earlier[:5]))} although "
                f"{self.prompts_path.name} holds their prompts (records were lost)",
                "restore rounds.jsonl from a backup, or start the run again in a new --out folder")
        return missing

    def _recover_round_records(self, missing: dict[int, int]) -> None:
        """Write a minimal ``recovered`` record for the last round when a kill came before its record, and say so."""
        counts = {p.get("round"): n for n, p in enumerate(self.state.prompts, start=1)}
        for rnd in sorted(missing):
            _note(f"round {rnd} of {self.dir} has {missing[rnd]} kept prompts but no record in rounds.jsonl (the run "
                  "was stopped before writing it); a minimal record was rebuilt from prompts.jsonl (its advice is "
                  "not known)")
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


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(config, prompts, rounds) of an existing run folder, for reports and `respond` (read-only)."""
    run_dir = Path(run_dir)
    cfg = run_dir / "config.json"
    if not cfg.exists():
        raise InputError(f"{run_dir} is not a run folder (no config.json)",
                         "pass the --out folder of a `data-advisor generate` or `curate` run")
    try:
        config = json.loads(cfg.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{cfg} is not valid JSON", "restore it from a backup; the run folder is damaged") from None
    if not isinstance(config, dict):
        raise InputError(f"{cfg} does not hold a run configuration", "restore it from a backup; the run folder is damaged")

    def _read(p: Path, valid: Callable[[Any], bool]) -> list[dict[str, Any]]:
        """Read-only: a torn last line (a run still going, or killed) is skipped; damage elsewhere is an error."""
        return _parse_jsonl(p, p.read_bytes(), valid)[0] if p.exists() else []

    prompts, rounds = _read(run_dir / "prompts.jsonl", _valid_prompt), _read(run_dir / "rounds.jsonl", _valid_round)
    _check_counts(run_dir, prompts, rounds)
    return config, prompts, rounds


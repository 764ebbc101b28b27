"""RunStore: the crash-safe run folder (config.json, prompts.jsonl, rounds.jsonl) and its resume rules."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from data_advisor.errors import DataAdvisorError, RunConfigError
from data_advisor.run_records import KeptPrompt, RoundRecord
from data_advisor.runs import RESUME_MUTABLE_KEYS, RunStore, config_differences, read_run

CONFIG = {"method": "advisor", "taxonomy": "catqa-11", "n": 30, "per_round": 6, "seed": 1, "concurrency": 4,
          "timeout_s": 60.0, "model": "openai/test-model"}


def prompt(i: int, rnd: int) -> KeptPrompt:
    return KeptPrompt(id=f"r{rnd:05d}-{i:02d}", text=f"prompt number {i} of round {rnd}", round=rnd)


def test_creates_folder_and_config(tmp_path: Path) -> None:
    out = tmp_path / "a" / "run"
    store = RunStore(out, dict(CONFIG))
    assert store.dir == out and out.is_dir()
    assert json.loads((out / "config.json").read_text("utf-8")) == CONFIG
    assert store.state.prompts == [] and store.state.rounds == []
    assert store.resumed is False
    assert store.state.next_round == 0


def test_resume_with_same_config_reads_records(tmp_path: Path) -> None:
    store = RunStore(tmp_path, dict(CONFIG))
    store.append_prompts([prompt(0, 0), prompt(1, 0)])
    store.append_round(RoundRecord(round=0, kept=2))
    store.append_prompts([prompt(0, 1)])
    store.append_round(RoundRecord(round=1, kept=1))

    again = RunStore(tmp_path, dict(CONFIG))
    assert again.resumed is True
    assert [p.id for p in again.state.prompts] == ["r00000-00", "r00000-01", "r00001-00"]
    assert [r.round for r in again.state.rounds] == [0, 1]
    assert again.state.next_round == 2
    # Keys that do not change what the run produces may differ on resume.
    relaxed = dict(CONFIG, concurrency=16, timeout_s=5.0, max_retries=9)
    assert {"concurrency", "timeout_s", "max_retries"} <= RESUME_MUTABLE_KEYS
    assert RunStore(tmp_path, relaxed).state.next_round == 2
    assert json.loads((tmp_path / "config.json").read_text("utf-8")) == CONFIG  # the original config is kept


def test_changed_config_is_refused_naming_the_keys(tmp_path: Path) -> None:
    RunStore(tmp_path, dict(CONFIG))
    with pytest.raises(RunConfigError) as exc:
        RunStore(tmp_path, dict(CONFIG, per_round=12, seed=2))
    msg = str(exc.value)
    assert "per_round: 6 → 12" in msg and "seed: 1 → 2" in msg
    assert "taxonomy" not in msg and "concurrency" not in msg
    assert "\n" not in msg and "--out" in msg  # one line, with the fix
    assert exc.value.exit_code == 2
    # A key that appears or disappears is a difference too.
    with pytest.raises(RunConfigError, match="pool"):
        RunStore(tmp_path, dict(CONFIG, pool="x.jsonl"))
    assert config_differences(CONFIG, dict(CONFIG, concurrency=1)) == []


def test_corrupt_config_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RunConfigError, match="not valid JSON"):
        RunStore(tmp_path, dict(CONFIG))
    for content in (b"[1, 2]", b"\xff\xfe{}", b"\x00" * 40):  # valid JSON of the wrong shape, not UTF-8, zero fill
        (tmp_path / "config.json").write_bytes(content)
        with pytest.raises(RunConfigError, match="config"):
            RunStore(tmp_path, dict(CONFIG))


@pytest.mark.parametrize("name", ["prompts.jsonl", "rounds.jsonl"])
def test_torn_last_line_is_cut_off_and_earlier_records_kept(tmp_path: Path, name: str) -> None:
    store = RunStore(tmp_path, dict(CONFIG))
    store.append_prompts([prompt(0, 0), prompt(1, 0)])
    store.append_round(RoundRecord(round=0, kept=2))
    path = tmp_path / name
    good = path.read_bytes()
    # What a SIGKILL in the middle of a write leaves: part of a record, no newline.
    with open(path, "ab") as fh:
        fh.write(b'{"id": "r00001-00", "text": "half a rec')

    again = RunStore(tmp_path, dict(CONFIG))
    assert path.read_bytes() == good  # cut off on disk, not only skipped in memory
    assert [p.id for p in again.state.prompts] == ["r00000-00", "r00000-01"]
    assert [r.round for r in again.state.rounds] == [0]
    assert again.state.next_round == 1
    # Appending after the repair gives a clean file again.
    again.append_prompts([prompt(0, 1)])
    lines = (tmp_path / "prompts.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["r00000-00", "r00000-01", "r00001-00"]


def test_complete_but_invalid_last_line_is_cut_off(tmp_path: Path) -> None:
    store = RunStore(tmp_path, dict(CONFIG))
    store.append_prompts([prompt(0, 0)])
    with open(tmp_path / "prompts.jsonl", "ab") as fh:
        fh.write(b'{"id": "r00000-01", "te\n')
    again = RunStore(tmp_path, dict(CONFIG))
    assert [p.id for p in again.state.prompts] == ["r00000-00"]
    assert (tmp_path / "prompts.jsonl").read_text("utf-8").count("\n") == 1


def test_next_round_counts_prompts_without_a_round_record(tmp_path: Path) -> None:
    """A kill between appending a round's prompts and its round record must not redo that round."""
    store = RunStore(tmp_path, dict(CONFIG))
    store.append_prompts([prompt(0, 0)])
    store.append_round(RoundRecord(round=0, kept=1))
    store.append_round(RoundRecord(round=1, kept=0))  # a round that kept nothing
    assert store.state.next_round == 2
    store.append_prompts([prompt(0, 2)])  # round 2's prompts are durable, its round record is not
    assert RunStore(tmp_path, dict(CONFIG)).state.next_round == 3


def test_append_to_unwritable_folder_is_a_one_line_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path, dict(CONFIG))
    store.prompts_path.mkdir()  # a folder where the file should be: appending fails with an OSError
    with pytest.raises(DataAdvisorError, match="resume") as exc:
        store.append_prompts([prompt(0, 0)])
    assert "\n" not in str(exc.value)


def test_read_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path, dict(CONFIG))
    store.append_prompts([prompt(0, 0)])
    store.append_round(RoundRecord(round=0, kept=1))
    run = read_run(tmp_path)
    assert run.config == CONFIG and run.prompts == [prompt(0, 0)] and run.rounds == [RoundRecord(round=0, kept=1)]
    assert run.base is None
    with pytest.raises(DataAdvisorError, match="not a run folder"):
        read_run(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------ damage (issue 13)
def _finished_run(tmp_path: Path, n_rounds: int = 4, per_round: int = 5) -> RunStore:
    store = RunStore(tmp_path, dict(CONFIG))
    total = 0
    for rnd in range(n_rounds):
        store.append_prompts([prompt(i, rnd) for i in range(per_round)])
        total += per_round
        store.append_round(RoundRecord(round=rnd, kept=per_round, n_prompts=total))
    return store


@pytest.mark.parametrize("name", ["prompts.jsonl", "rounds.jsonl"])
def test_damaged_middle_line_is_an_error_and_nothing_is_cut(tmp_path: Path, name: str) -> None:
    """The old repair cut the file at the first bad line: every later record silently deleted on resume."""
    _finished_run(tmp_path)
    path = tmp_path / name
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1][: len(lines[1]) // 2]  # line 2 cut short, the records after it intact
    path.write_bytes(b"\n".join(lines))
    before = path.read_bytes()
    with pytest.raises(DataAdvisorError) as exc:
        RunStore(tmp_path, dict(CONFIG))
    msg = str(exc.value)
    assert exc.value.exit_code == 2 and "\n" not in msg
    assert name in msg and "line 2" in msg and "fix:" in exc.value.one_line()
    assert path.read_bytes() == before  # nothing deleted
    with pytest.raises(DataAdvisorError, match="line 2"):  # the read-only reader (report, respond) agrees
        read_run(tmp_path)


def test_zero_filled_tail_is_not_taken_for_a_torn_append(tmp_path: Path) -> None:
    """Zero fill over the last records is damage, not an interrupted append: cutting it would lose records."""
    _finished_run(tmp_path)
    path = tmp_path / "prompts.jsonl"
    raw = path.read_bytes()
    path.write_bytes(raw[:-300] + b"\x00" * 300)
    with pytest.raises(DataAdvisorError, match=r"prompts\.jsonl is damaged"):
        RunStore(tmp_path, dict(CONFIG))
    assert path.read_bytes()[:-300] == raw[:-300]


def test_prompt_records_missing_at_a_line_boundary_are_detected(tmp_path: Path) -> None:
    """A file cut cleanly between records looks intact; rounds.jsonl's running count shows records are gone."""
    _finished_run(tmp_path)
    path = tmp_path / "prompts.jsonl"
    lines = path.read_text("utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:11]), encoding="utf-8")
    with pytest.raises(DataAdvisorError, match=r"holds 11 prompts but .*records 20"):
        RunStore(tmp_path, dict(CONFIG))
    with pytest.raises(DataAdvisorError, match="missing"):
        read_run(tmp_path)


def test_torn_last_line_repair_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _finished_run(tmp_path)
    with open(tmp_path / "prompts.jsonl", "ab") as fh:
        fh.write(b'{"id": "r00004-00", "text": "half')
    with caplog.at_level(logging.WARNING, logger="data_advisor"):
        again = RunStore(tmp_path, dict(CONFIG))
    assert len(again.state.prompts) == 20
    err = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "prompts.jsonl" in err and "partly written" in err and "20 complete records kept" in err


def test_complete_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    """A kill between a record and its newline leaves a complete record: keep it, finish the line."""
    _finished_run(tmp_path, n_rounds=1)
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    again = RunStore(tmp_path, dict(CONFIG))
    assert len(again.state.prompts) == 5
    again.append_prompts([prompt(0, 1)])
    assert [json.loads(x)["id"] for x in path.read_text("utf-8").splitlines()][-2:] == ["r00000-04", "r00001-00"]


def test_valid_json_that_is_not_a_record_is_damage(tmp_path: Path) -> None:
    _finished_run(tmp_path, n_rounds=2)
    path = tmp_path / "prompts.jsonl"
    lines = path.read_text("utf-8").splitlines(keepends=True)
    lines[3] = "123\n"
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(DataAdvisorError, match="line 4"):
        RunStore(tmp_path, dict(CONFIG))


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_read_run_with_damaged_config_is_a_one_line_error(tmp_path: Path, content: bytes) -> None:
    _finished_run(tmp_path, n_rounds=1)
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(DataAdvisorError, match=r"config\.json") as exc:
        read_run(tmp_path)
    assert exc.value.exit_code == 2


def test_folder_with_outputs_but_no_config_is_not_taken_for_a_new_run(tmp_path: Path) -> None:
    """An audit's --out reused as a run folder: the run's final outputs would overwrite the audit's coverage.json."""
    (tmp_path / "coverage.json").write_text('{"audit": true}', encoding="utf-8")
    with pytest.raises(RunConfigError, match="not a run folder") as exc:
        RunStore(tmp_path, dict(CONFIG))
    assert "coverage.json" in str(exc.value) and not (tmp_path / "config.json").exists()
    RunStore(tmp_path / "new", dict(CONFIG))  # an empty or new folder is fine


def test_an_earlier_round_without_its_record_is_damage_not_recovered(tmp_path: Path) -> None:
    """Only the last round can lack its record (a kill before it was written); an earlier one means rounds.jsonl
    lost records, and rebuilding them would silently drop their advice."""
    _finished_run(tmp_path)
    path = tmp_path / "rounds.jsonl"
    lines = path.read_text("utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:1] + lines[2:]), encoding="utf-8")  # round 1's record cut at line boundaries
    before = {f: (tmp_path / f).read_bytes() for f in ("prompts.jsonl", "rounds.jsonl")}
    with pytest.raises(DataAdvisorError, match=r"lacks the records of round\(s\) 1"):
        RunStore(tmp_path, dict(CONFIG))
    assert {f: (tmp_path / f).read_bytes() for f in ("prompts.jsonl", "rounds.jsonl")} == before


def test_a_refused_folder_is_left_untouched_even_with_a_torn_last_line(tmp_path: Path) -> None:
    """A finished run whose last prompt line tore lost a record rounds.jsonl counts: refuse before cutting anything."""
    _finished_run(tmp_path)
    path = tmp_path / "prompts.jsonl"
    raw = path.read_bytes()
    path.write_bytes(raw[:-20])
    with pytest.raises(DataAdvisorError, match="missing"):
        RunStore(tmp_path, dict(CONFIG))
    assert path.read_bytes() == raw[:-20]

"""RunStore: the crash-safe run folder (config.json, prompts.jsonl, rounds.jsonl) and its resume rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_advisor.advisor.store import RESUME_MUTABLE_KEYS, RunStore, config_differences, read_run
from data_advisor.errors import DataAdvisorError, RunConfigError

CONFIG = {"method": "advisor", "taxonomy": "catqa-11", "n": 30, "per_round": 6, "seed": 1, "concurrency": 4,
          "timeout_s": 60.0, "model": "openai/test-model"}


def prompt(i: int, rnd: int) -> dict:
    return {"id": f"r{rnd:05d}-{i:02d}", "text": f"prompt number {i} of round {rnd}", "round": rnd}


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
    store.append_round({"round": 0, "kept": 2})
    store.append_prompts([prompt(0, 1)])
    store.append_round({"round": 1, "kept": 1})

    again = RunStore(tmp_path, dict(CONFIG))
    assert again.resumed is True
    assert [p["id"] for p in again.state.prompts] == ["r00000-00", "r00000-01", "r00001-00"]
    assert [r["round"] for r in again.state.rounds] == [0, 1]
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


@pytest.mark.parametrize("name", ["prompts.jsonl", "rounds.jsonl"])
def test_torn_last_line_is_cut_off_and_earlier_records_kept(tmp_path: Path, name: str) -> None:
    store = RunStore(tmp_path, dict(CONFIG))
    store.append_prompts([prompt(0, 0), prompt(1, 0)])
    store.append_round({"round": 0, "kept": 2})
    path = tmp_path / name
    good = path.read_bytes()
    # What a SIGKILL in the middle of a write leaves: part of a record, no newline.
    with open(path, "ab") as fh:
        fh.write(b'{"id": "r00001-00", "text": "half a rec')

    again = RunStore(tmp_path, dict(CONFIG))
    assert path.read_bytes() == good  # cut off on disk, not only skipped in memory
    assert [p["id"] for p in again.state.prompts] == ["r00000-00", "r00000-01"]
    assert [r["round"] for r in again.state.rounds] == [0]
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
    assert [p["id"] for p in again.state.prompts] == ["r00000-00"]
    assert (tmp_path / "prompts.jsonl").read_text("utf-8").count("\n") == 1


def test_next_round_counts_prompts_without_a_round_record(tmp_path: Path) -> None:
    """A kill between appending a round's prompts and its round record must not redo that round."""
    store = RunStore(tmp_path, dict(CONFIG))
    store.append_prompts([prompt(0, 0)])
    store.append_round({"round": 0, "kept": 1})
    store.append_round({"round": 1, "kept": 0})  # a round that kept nothing
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
    store.append_round({"round": 0, "kept": 1})
    config, prompts, rounds = read_run(tmp_path)
    assert config == CONFIG and [p["id"] for p in prompts] == ["r00000-00"] and rounds == [{"round": 0, "kept": 1}]
    with pytest.raises(DataAdvisorError, match="not a run folder"):
        read_run(tmp_path / "nothing")

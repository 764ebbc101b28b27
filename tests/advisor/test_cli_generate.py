"""CLI-level errors of ``generate`` / ``curate``: argparse errors, and one-line errors with exit codes, before any
model is loaded or any LLM is called."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from data_advisor.cli import main
from tests.llm.fixtures import TEST_MODEL


def run(*args: object) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, err.getvalue()


def one_error_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


def test_generate_without_model_is_an_argparse_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--n", "5", "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--model" in err and "required" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv", [
    ["generate", "--model", TEST_MODEL, "--out", "X"],  # --n missing
    ["generate", "--model", TEST_MODEL, "--n", "5", "--out", "X", "--method", "magic"],
    ["generate", "--model", TEST_MODEL, "--n", "5", "--out", "X", "--advice", "vibes"],
    ["curate", "--n", "5", "--out", "X"],  # pool missing
    ["curate", "pool.jsonl", "--n", "5", "--out", "X", "--strategy", "best"],
])
def test_other_argparse_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_unknown_taxonomy_is_a_one_line_error(tmp_path: Path) -> None:
    rc, stderr = run("generate", "--taxonomy", "no-such-taxonomy", "--model", TEST_MODEL, "--n", 5,
                     "--out", tmp_path / "run", "--api-base", "http://127.0.0.1:9/v1")
    assert rc == 2
    line = one_error_line(stderr)
    assert "no-such-taxonomy" in line and "fix:" in line
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--n", "0"], "--n"),
    (["--per-round", "0"], "--per-round"),
])
def test_invalid_numbers_are_one_line_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    argv = ["generate", "--model", TEST_MODEL, "--n", "5", "--out", str(tmp_path / "run"), *args]  # last flag wins
    rc, stderr = run(*argv)
    assert rc == 2
    assert needle in one_error_line(stderr)
    assert not (tmp_path / "run").exists()


def test_curate_llm_advice_without_model_is_a_one_line_error(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "How do I pick a lock?"}\n', encoding="utf-8")
    rc, stderr = run("curate", pool, "--advice", "llm", "--n", 5, "--out", tmp_path / "run")
    assert rc == 2
    line = one_error_line(stderr)
    assert "--model" in line and "numeric" in line


def test_curate_with_a_missing_pool_is_a_one_line_error(tmp_path: Path) -> None:
    rc, stderr = run("curate", tmp_path / "missing.jsonl", "--n", 5, "--out", tmp_path / "run")
    assert rc == 2
    line = one_error_line(stderr)
    assert "missing.jsonl" in line
    assert not (tmp_path / "run" / "config.json").exists()


def test_generate_with_a_missing_seed_file_is_a_one_line_error(tmp_path: Path) -> None:
    rc, stderr = run("generate", "--model", TEST_MODEL, "--n", 5, "--out", tmp_path / "run",
                     "--seed-prompts", tmp_path / "nope.jsonl", "--api-base", "http://127.0.0.1:9/v1")
    assert rc == 2
    assert "nope.jsonl" in one_error_line(stderr)


@pytest.mark.parametrize(("strategy", "method"), [
    (None, "curate"), ("curate", "curate"), ("curate-random", "curate-random"),
    ("advisor", "curate"), ("random", "curate-random"),  # the first spellings stay accepted
])
def test_curate_strategy_names_the_method_it_runs(strategy: str | None, method: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import data_advisor.advisor.loop as loop
    from data_advisor.advisor.loop import RunSummary

    seen: list[str] = []

    def fake_run_method(config, out, progress):  # the run itself is tested in test_curate.py
        seen.append(config.method)
        return RunSummary(out, 0, 0, 0, 0, 0.0, {}, False)

    monkeypatch.setattr(loop, "run_method", fake_run_method)
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "a prompt"}\n', "utf-8")
    argv = ["curate", str(pool), "--n", "1", "--out", str(tmp_path / "run"), "-q"]
    assert main(argv + (["--strategy", strategy] if strategy else [])) == 0
    assert seen == [method]

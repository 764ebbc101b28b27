"""SIGKILL at random moments of ``audit`` and ``respond`` (subprocesses), then the same command again.

Invariant: the second run exits 0 with the undamaged result (the same coverage.json; one response per prompt,
none twice), the embedding cache is whole afterwards, and nothing of the killed run is left behind. (``generate``
and ``curate`` are killed and resumed in tests/advisor/test_loop.py.) Each kill costs a process start (~10 s of
imports), so these are marked slow.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.damage import close_json
from tests.llm.fixtures import TEST_API_KEY, TEST_MODEL
from tests.llm.llm_server import LLMServer

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def _start(args: list[object], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "data_advisor.cli", *map(str, args)], env=env,
                                stdout=fh, stderr=subprocess.STDOUT)


def _kill_at(proc: subprocess.Popen[bytes], started: Callable[[], bool], delay: float, timeout: float = 180) -> bool:
    """Wait until ``started()``, then ``delay`` seconds, then SIGKILL; returns whether the kill hit a live process."""
    t0 = time.monotonic()
    while proc.poll() is None and not started() and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return True


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_audit_killed_at_a_random_moment_then_rerun(pristine_cache: tuple[Path, Path], prompts_file: Path,
                                                    tiny_taxonomy: Path, tmp_path: Path, seed: int) -> None:
    _, baseline = pristine_cache
    root = tmp_path / "cache"  # empty: the killed run is embedding (and writing the cache) when it dies
    out = tmp_path / "out"
    env = {**os.environ, "DATA_ADVISOR_CACHE": str(root)}
    args: list[object] = ["audit", prompts_file, "--taxonomy", tiny_taxonomy, "--out", out, "--no-cluster",
                          "--no-background", "-q"]
    log = tmp_path / "log.txt"
    rng = random.Random(seed)
    hits = 0
    for _ in range(2):  # kill twice, at random points after the embedding cache appeared
        proc = _start(args, env, log)
        hits += _kill_at(proc, lambda: (root / "embeddings").exists(), rng.uniform(0.0, 1.0))
    rc = _start(args, env, log).wait(timeout=300)
    text = log.read_text("utf-8", "replace")
    assert rc == 0 and "Traceback" not in text, text[-3000:]
    got = json.loads((out / "coverage.json").read_text("utf-8").replace(str(prompts_file), "P"))
    close_json(got, json.loads((baseline / "coverage.json").read_text("utf-8").replace(str(prompts_file), "P")))
    # the cache is whole: a third run embeds nothing (no row appended) and says nothing about damage
    (vectors,) = (root / "embeddings").glob("*/vectors.f32")
    size = vectors.stat().st_size
    again = subprocess.run([sys.executable, "-m", "data_advisor.cli", *map(str, args)], env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "damaged" not in again.stderr, again.stderr
    assert vectors.stat().st_size == size, again.stderr
    assert hits >= 1, "no kill landed while the audit ran: the test did not test a kill"
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".audit-")]
    assert leftovers == []  # the rerun removed the killed runs' temporaries


@pytest.mark.parametrize("seed", [1, 2])
def test_respond_killed_at_a_random_moment_then_rerun(curate_run: tuple[Path, str], llm_server: LLMServer,
                                                      tmp_path: Path, seed: int) -> None:
    from tests.advisor.conftest import LoopResponder, fresh_llm_cache_root

    base, _ = curate_run
    run = tmp_path / "run"
    shutil.copytree(base, run)
    llm_server.responder = LoopResponder()
    llm_server.default_delay_s = 0.5  # slow enough that the kill below lands while answers are still coming
    cache_root = fresh_llm_cache_root(tmp_path / "cache-root")
    env = {**os.environ, "DATA_ADVISOR_CACHE": str(cache_root), "OPENAI_API_KEY": TEST_API_KEY}
    args: list[object] = ["respond", run, "--model", TEST_MODEL, "--api-base", llm_server.base_url, "-q",
                          "--concurrency", "2"]
    out = run / "responses.jsonl"
    log = tmp_path / "log.txt"
    rng = random.Random(seed)
    proc = _start(args, env, log)
    # Killed while the second batch of answers is being asked (the first, 16 of the 20, is on disk): the rerun must
    # keep the answers it has and ask only for the rest.
    landed = _kill_at(proc, lambda: out.exists() and out.stat().st_size > 0, rng.uniform(0.0, 0.5))
    assert landed, "respond ended before the kill"
    n_prompts = sum(1 for ln in (run / "prompts.jsonl").read_text("utf-8").splitlines() if ln.strip())
    answered = sum(1 for ln in out.read_text("utf-8").splitlines() if ln.strip()) if out.exists() else 0
    assert 0 < answered < n_prompts  # killed mid-way: the rerun below has answers to keep and work left to resume
    rc = _start(args, env, log).wait(timeout=300)
    text = log.read_text("utf-8", "replace")
    assert rc == 0 and "Traceback" not in text, text[-3000:]
    prompts = [json.loads(ln) for ln in (run / "prompts.jsonl").read_text("utf-8").splitlines() if ln.strip()]
    rows = [json.loads(ln) for ln in out.read_text("utf-8").splitlines() if ln.strip()]
    ids = [r["id"] for r in rows]
    assert sorted(ids) == sorted(p["id"] for p in prompts)  # every prompt answered exactly once
    by_id = {p["id"]: p["text"] for p in prompts}
    assert all(r["messages"][0]["content"] == by_id[r["id"]] for r in rows)


def test_two_audits_sharing_one_new_cache_both_finish(pristine_cache: tuple[Path, Path], prompts_file: Path,
                                                      tiny_taxonomy: Path, tmp_path: Path) -> None:
    """Both processes embed and write the same (empty) cache at once: both finish, with the undamaged result, and
    the cache they leave is whole."""
    _, baseline = pristine_cache
    env = {**os.environ, "DATA_ADVISOR_CACHE": str(tmp_path / "cache")}
    procs = []
    for i in range(2):
        args: list[object] = ["audit", prompts_file, "--taxonomy", tiny_taxonomy, "--out", tmp_path / f"out{i}",
                              "--no-cluster", "--no-background", "-q"]
        procs.append(_start(args, env, tmp_path / f"log{i}.txt"))
    for i, p in enumerate(procs):
        rc = p.wait(timeout=600)
        text = (tmp_path / f"log{i}.txt").read_text("utf-8", "replace")
        assert rc == 0 and "Traceback" not in text, text[-3000:]
        assert "damaged" not in text, text
        got = json.loads((tmp_path / f"out{i}" / "coverage.json").read_text("utf-8"))
        close_json(got, json.loads((baseline / "coverage.json").read_text("utf-8")))

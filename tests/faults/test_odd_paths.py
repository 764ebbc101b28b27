"""Read-only and odd caches, stale outputs next to new ones, links and special files as inputs (issue 18).

* Cluster cache: a damaged entry on a read-only cache (``OSError: Read-only file system`` from the unlink), an entry
  that is a folder (``IsADirectoryError``), a pipe (reading it would wait forever), a dangling link.  Invariant:
  exit 0 with the same coverage.json as with a clean cache, and a warning — a cache never stops an audit.
* ``audit B --out DIR --no-html`` over DIR holding an audit of A left A's report.html beside B's numbers.
  Invariant: a folder never holds two results that contradict each other.
* Inputs that are symbolic-link loops, dangling links or pipes, for every command that reads a file: exit 2 with
  one line naming the path (a link loop was a ``RuntimeError`` traceback); never a hang (a pipe left waiting is
  opened from the other end after a minute, and the test fails).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.damage import PipeWatch, close_json, error_line, no_traceback, run_inproc

pytestmark = pytest.mark.faults


@pytest.fixture
def pipes() -> Iterator[PipeWatch]:
    watch = PipeWatch()
    yield watch
    watch.close()
    assert not watch.hung, f"a command waited on a pipe: {watch.pipes}"


# ------------------------------------------------------------------------------------------- cluster cache
def _cluster_audit(prompts: Path, out: Path) -> tuple[int, str]:
    return run_inproc("audit", prompts, "--taxonomy", "catqa-11", "--out", out, "--no-html", "-q")


@pytest.fixture(scope="module")
def clustered(tmp_path_factory: pytest.TempPathFactory, prompts_file: Path) -> tuple[Path, Path]:
    """(a cache root holding the cluster-cache entries of one clustered audit, that audit's folder)."""
    from tests.advisor.conftest import fresh_llm_cache_root

    root = tmp_path_factory.mktemp("clustered")
    cache = fresh_llm_cache_root(root / "cache")  # shares the session's embeddings, nothing else
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATA_ADVISOR_CACHE", str(cache))
        rc, err = _cluster_audit(prompts_file, root / "audit")
    assert rc == 0, err
    assert list((cache / "clusters").rglob("*.npz"))
    return cache, root / "audit"


def _read_only(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Writes and deletes under ``root`` fail with EROFS (tests run as root, where chmod does not stop a write)."""
    real_unlink, real_replace = Path.unlink, os.replace

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if Path(self).is_relative_to(root):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_unlink(self, missing_ok=missing_ok)

    def replace(src: object, dst: object, **kw: object) -> None:
        if Path(str(dst)).is_relative_to(root):
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        real_replace(src, dst, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("kind", [
    "damaged-read-only",
    pytest.param("folder", marks=pytest.mark.slow),
    pytest.param("pipe", marks=pytest.mark.slow),
    pytest.param("dangling-link", marks=pytest.mark.slow),
])
def test_odd_cluster_cache_entries_never_stop_an_audit(clustered: tuple[Path, Path], prompts_file: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       pipes: PipeWatch, kind: str) -> None:
    pristine, first = clustered
    cache = tmp_path / "cache"
    shutil.copytree(pristine, cache, symlinks=True)
    entries = sorted((cache / "clusters").rglob("*.npz"))
    for e in entries:
        e.unlink()
        if kind == "damaged-read-only":
            e.write_bytes(b"PK\x03\x04 not a whole zip")
        elif kind == "folder":
            e.mkdir()
        elif kind == "pipe":
            pipes.pipe(e)
        else:
            e.symlink_to(tmp_path / "nowhere.npz")
    monkeypatch.setenv("DATA_ADVISOR_CACHE", str(cache))
    if kind == "damaged-read-only":
        _read_only(monkeypatch, cache / "clusters")
    rc, err = _cluster_audit(prompts_file, tmp_path / "out")
    no_traceback(rc, err)
    assert rc == 0, err
    close_json(json.loads((tmp_path / "out" / "coverage.json").read_text("utf-8")),
               json.loads((first / "coverage.json").read_text("utf-8")), where="coverage")


# ------------------------------------------------------------------------------------------- stale outputs
@pytest.mark.parametrize("second", [["--no-html"], []])
def test_audit_over_an_earlier_audit_leaves_no_result_of_it(prompts_file: Path, curate_pool: Path, tmp_path: Path,
                                                            second: list[str]) -> None:
    out = tmp_path / "out"
    rc, err = run_inproc("audit", prompts_file, "--taxonomy", "catqa-11", "--out", out, "--no-cluster", "-q",
                         "--plotlyjs", "cdn")
    assert rc == 0, err
    assert (out / "report.html").exists()
    rc, err = run_inproc("audit", curate_pool, "--taxonomy", "catqa-11", "--out", out, "--no-cluster", "-q",
                         "--plotlyjs", "cdn", *second)
    assert rc == 0, err
    cov = json.loads((out / "coverage.json").read_text("utf-8"))
    assert cov["dataset"]["source"].endswith(curate_pool.name)
    if "--no-html" in second:
        assert not (out / "report.html").exists()
    else:
        html = (out / "report.html").read_text("utf-8")
        assert curate_pool.name in html and prompts_file.name not in html


# ------------------------------------------------------------------------------------------- links, pipes
def _odd_input(kind: str, tmp: Path, pipes: PipeWatch) -> Path:
    path = tmp / f"in-{kind}.jsonl"
    if kind == "link-loop":
        (tmp / "loop-b").symlink_to(path)
        path.symlink_to(tmp / "loop-b")
    elif kind == "dangling-link":
        path.symlink_to(tmp / "gone.jsonl")
    elif kind == "pipe":
        pipes.pipe(path)
    elif kind == "self-link":
        path.symlink_to(path)
    return path


COMMANDS = {
    "audit": lambda p, out, ok: ["audit", p, "--out", out, "--no-cluster", "-q"],
    "curate-pool": lambda p, out, ok: ["curate", p, "--n", 3, "--out", out, "-q"],
    "curate-base": lambda p, out, ok: ["curate", ok, "--base", p, "--n", 3, "--out", out, "-q"],
    "generate-base": lambda p, out, ok: ["generate", "--model", "openai/test-model", "--api-base",
                                         "http://127.0.0.1:9/v1", "--base", p, "--n", 3, "--out", out, "-q"],
    "generate-seeds": lambda p, out, ok: ["generate", "--model", "openai/test-model", "--api-base",
                                          "http://127.0.0.1:9/v1", "--seed-prompts", p, "--n", 3, "--out", out, "-q"],
}


@pytest.mark.parametrize("kind", ["link-loop", "self-link", "dangling-link", "pipe"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_links_and_pipes_as_inputs_are_one_line_errors(tmp_path: Path, curate_pool: Path, pipes: PipeWatch,
                                                       kind: str, command: str) -> None:
    path = _odd_input(kind, tmp_path, pipes)
    out = tmp_path / "out"
    rc, err = run_inproc(*COMMANDS[command](path, out, curate_pool))
    error_line(rc, err, [path.name])
    assert not (out / "config.json").exists() and not (out / "coverage.json").exists()

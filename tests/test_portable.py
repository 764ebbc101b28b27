"""No POSIX-only module at import time: with ``fcntl`` unimportable (as on Windows) the package imports and audits.

The cache and artefact locks go through ``filelock``, which falls back to its portable lock without ``fcntl``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_BLOCK = "import sys; sys.modules['fcntl'] = None  # `import fcntl` now raises ImportError, as on Windows\n"


def test_fcntl_is_really_blocked_by_the_prelude() -> None:
    code = _BLOCK + "import fcntl\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "import of fcntl halted" in out.stderr


def test_import_and_a_small_audit_work_without_fcntl(tmp_path: Path, sample_prompts: list[str]) -> None:
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in sample_prompts), "utf-8")
    out = tmp_path / "out"
    code = _BLOCK + (
        "import data_advisor\n"
        "from data_advisor.cli import main\n"
        f"rc = main(['audit', {str(src)!r}, '--taxonomy', 'catqa-11', '--out', {str(out)!r}, '--no-html', "
        "'--no-cluster', '-q'])\n"
        "assert 'fcntl' not in sys.modules or sys.modules['fcntl'] is None\n"
        "sys.exit(rc)\n")
    # A cache of its own: lock files left by this process's fcntl locks would read as held to the portable lock that
    # filelock picks without fcntl (Windows itself gets msvcrt locks, which do not see them either).
    env = {**os.environ, "DATA_ADVISOR_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((out / "coverage.json").read_text("utf-8"))
    assert report["metrics"]["n_prompts"] == len(sample_prompts)

"""``import data_advisor`` changes no environment variable; the library's defaults are held only while needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from data_advisor import _env

_DEFAULTED = ("LITELLM_LOCAL_MODEL_COST_MAP", "NUMBA_CACHE_DIR", "TOKENIZERS_PARALLELISM")


def test_import_changes_no_environment_variable() -> None:
    code = ("import json, os; before = dict(os.environ); import data_advisor, data_advisor.api, "
            "data_advisor.coverage.audit, data_advisor.coverage.embedding.registry, data_advisor.llm.client; "
            "after = dict(os.environ); "
            "print(json.dumps({k: [before.get(k), after.get(k)] for k in set(before) | set(after) "
            "if before.get(k) != after.get(k)}))")
    env = {k: v for k, v in os.environ.items() if k not in _DEFAULTED}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


def test_library_defaults_are_restored_and_never_override(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in _DEFAULTED:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # the user's own value wins
    with _env.library_defaults():
        assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
        assert os.environ["NUMBA_CACHE_DIR"].endswith("numba")
        assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
    assert "LITELLM_LOCAL_MODEL_COST_MAP" not in os.environ and "NUMBA_CACHE_DIR" not in os.environ
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"

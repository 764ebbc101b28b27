"""Process-wide defaults that must be in place before heavy libraries are imported.

Why here: litellm fetches its model cost map from the internet at import time unless
``LITELLM_LOCAL_MODEL_COST_MAP`` is set, and numba recompiles UMAP's kernels in every new
process unless ``NUMBA_CACHE_DIR`` points somewhere writable.  We only *default* these
(``setdefault``) so a user's explicit environment always wins.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Root of every on-disk cache (embeddings, LLM responses, numba). ``DATA_ADVISOR_CACHE`` overrides."""
    env = os.environ.get("DATA_ADVISOR_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "data-advisor"


def apply_defaults() -> None:
    """Set offline-safe environment defaults; idempotent and cheap."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_root() / "numba"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


apply_defaults()

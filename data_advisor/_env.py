"""Environment defaults that must be in place while heavy libraries load, and the toolkit's logger.

Why: litellm fetches its model cost map from the internet at import time unless ``LITELLM_LOCAL_MODEL_COST_MAP`` is
set, and numba recompiles UMAP's kernels in every new process unless ``NUMBA_CACHE_DIR`` points somewhere writable.
We only *default* these (a user's explicit environment always wins), and never at import: ``import data_advisor``
changes no environment variable.  :func:`library_defaults` holds them around the import of litellm and umap/numba
(and restores the environment after); the CLI holds them for the whole command, so child processes inherit them.

:func:`set_quiet` is the one switch behind every command's ``-q``: progress bars of tqdm, huggingface_hub,
transformers ("Loading weights") and sentence-transformers are all driven by environment variables or
their library's logging, so it sets those before the libraries load (and silences them if they already
have).  :data:`log` is the toolkit's own logger: informative lines go through ``log.info`` (hidden by
``-q``), problems the toolkit recovered from through ``log.warning`` (always shown).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("data_advisor")
"""The toolkit's logger; :func:`configure_logging` sends it to stderr as plain lines."""


def cache_root() -> Path:
    """Root of every on-disk cache (embeddings, clusters, LLM responses, numba). ``DATA_ADVISOR_CACHE`` overrides."""
    env = os.environ.get("DATA_ADVISOR_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "data-advisor"


def default_env() -> dict[str, str]:
    """The offline-safe defaults (only those the environment does not set already)."""
    defaults = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "NUMBA_CACHE_DIR": str(cache_root() / "numba"),
                "TOKENIZERS_PARALLELISM": "false"}
    return {k: v for k, v in defaults.items() if k not in os.environ}


@contextlib.contextmanager
def library_defaults() -> Iterator[None]:
    """Hold :func:`default_env` while the body runs (a library import, a CLI command), then remove exactly what was
    added; a variable the body itself changed meanwhile is left as the body left it."""
    added = default_env()
    os.environ.update(added)
    try:
        yield
    finally:
        for k, v in added.items():
            if os.environ.get(k) == v:
                os.environ.pop(k, None)


#: Environment switches that turn off every third-party progress bar and info chatter we know of.
QUIET_ENV = {
    "TQDM_DISABLE": "1",                        # every tqdm bar (tqdm ≥ 4.66 reads TQDM_* overrides)
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",        # huggingface_hub and transformers' own bars ("Loading weights")
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def set_quiet() -> None:
    """Silence progress bars and library chatter for this process and its children (``-q``)."""
    os.environ.update(QUIET_ENV)
    if "transformers" in sys.modules:  # already imported: its bar switch was read at import time
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    log.setLevel(logging.WARNING)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (tests and wrappers swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(*, quiet: bool = False) -> None:
    """Send :data:`log` to stderr as bare lines (info and up; warnings only when ``quiet``)."""
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    if quiet:
        set_quiet()


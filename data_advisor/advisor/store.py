"""The run store, as the advisor package names it: the one implementation lives in :mod:`data_advisor.runs`.

Why a re-export: ``data_advisor.advisor.store`` was the public home of :class:`RunStore` and :func:`read_run`
before the run folder moved below the reports layer (the run report reads run folders too).
"""

from __future__ import annotations

from data_advisor.runs import (
    RESUME_MUTABLE_KEYS,
    RUN_FILES,
    RunDamagedError,
    RunFolder,
    RunState,
    RunStore,
    config_differences,
    discard_new_run_on_failure,
    read_run,
)

__all__ = ["RESUME_MUTABLE_KEYS", "RUN_FILES", "RunDamagedError", "RunFolder", "RunState", "RunStore",
           "config_differences", "discard_new_run_on_failure", "read_run"]

"""One error type for everything a user can get wrong.

Every problem a user can cause (bad input file, unknown taxonomy, LLM faults) is raised as a
:class:`DataAdvisorError` carrying *what* went wrong and *how to fix it*.  The CLI prints exactly one
line ``error: <problem> — fix: <fix>`` and exits non-zero; the Python API lets the exception propagate.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """One line with no terminal control characters: messages quote file content (field names, ids, paths), and an
    escape sequence there must not clear or retitle the user's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", " ".join(text.split()))


class DataAdvisorError(Exception):
    """A user-facing error: a one-line problem statement plus the fix.

    Args:
        problem: what is wrong, naming the file/line/field/principle concerned.
        fix: what the user should do about it.
        exit_code: the CLI's exit status for this error (2 = bad input, 3 = external service).
    """

    exit_code: int = 2

    def __init__(self, problem: str, fix: str = "", *, exit_code: int | None = None) -> None:
        self.problem = _printable(problem)
        self.fix = _printable(fix)
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message the CLI prints: single line, problem first, then the fix."""
        return f"{self.problem} — fix: {self.fix}" if self.fix else self.problem


class InputError(DataAdvisorError):
    """The prompts file or its records are unusable."""


class TaxonomyError(DataAdvisorError):
    """A taxonomy name is unknown or a taxonomy file is invalid."""


class OutputError(DataAdvisorError):
    """The output location cannot be written."""


class LLMError(DataAdvisorError):
    """The LLM provider failed after retries, or its output could not be used."""

    exit_code = 3


class RunConfigError(DataAdvisorError):
    """A run folder exists with a different configuration."""


class GateError(DataAdvisorError):
    """A dataset-CI gate (``fail_under``) failed: the outputs are written, the data is under the bar (exit 1)."""

    exit_code = 1

    def __init__(self, failures: list[str], report: object = None) -> None:
        self.failures = list(failures)
        self.report = report
        super().__init__(f"coverage gate failed: {'; '.join(self.failures)}",
                         "add prompts where the gate names a shortfall (see the report's gap table), or lower the bar")

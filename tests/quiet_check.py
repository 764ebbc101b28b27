"""What ``-q`` output may hold: the final summary and warnings, never a progress bar or a library's loading chatter."""

from __future__ import annotations

import re

#: tqdm / huggingface bars ("45%|████", "12.3it/s", "3.2s/it"), transformers' "Loading weights", ST's "Batches".
PROGRESS = re.compile(r"\d+%\||[█▏▎▍▌▋▊▉]|\d(?:it/s|s/it)\b|Loading weights|Batches:|\r")


def progress_lines(stderr: str) -> list[str]:
    """Lines of ``stderr`` that look like progress output (empty when quiet worked)."""
    return [line for line in stderr.split("\n") if PROGRESS.search(line)]

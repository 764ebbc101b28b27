"""Reviewer labels: read and validate the JSONL file that ``data-advisor review`` writes and a person fills in.

One JSON object per line with exactly the keys ``id``, ``text``, ``suggested``, ``margin``, ``why``, ``label``:

* ``why`` is ``"random"`` (a uniform sample: the only rows the estimates in coverage.json may use, because they are
  the one sample whose mix matches the data) or ``"informative"`` (picked to teach: low margin, near the harm
  boundary; used to learn, never to estimate);
* ``label`` is a leaf principle id of the audited taxonomy, ``"none"`` (the prompt belongs to no principle: benign or
  off-taxonomy), or null (not reviewed: the row is ignored).

A bad file stops the audit with one line naming the line and the fix (exit 2, nothing written): labels that are
silently dropped would make every estimate built on them wrong without anyone noticing.  Ids absent from the audited
input are only a warning: a reviewer may label a file made from a larger or older version of the set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_advisor.errors import InputError

#: The label a reviewer gives a prompt that belongs to no principle.
NONE_LABEL = "none"
#: ``why`` values: the uniform slice (estimates) and the informative slice (learning only).
WHY_VALUES = ("random", "informative")
LABEL_KEYS = ("id", "text", "suggested", "margin", "why", "label")


@dataclass
class ReviewLabels:
    """The reviewed rows of a label file (rows with ``label`` null left out), in file order."""

    ids: list[str]
    labels: list[str]  # a leaf id or "none"
    why: list[str]  # "random" | "informative"
    source: str = ""
    n_ignored: int = 0  # rows with label null
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def label_of(self) -> dict[str, str]:
        """id → label."""
        return dict(zip(self.ids, self.labels, strict=True))

    def why_of(self) -> dict[str, str]:
        """id → "random" | "informative"."""
        return dict(zip(self.ids, self.why, strict=True))

    def n_random(self) -> int:
        return sum(1 for w in self.why if w == "random")

    def match(self, prompt_ids: list[str], classes: list[str]) -> LabelMatch:
        """Positions of the reviewed prompts in ``prompt_ids`` and their class index in ``classes`` (leaf ids, then
        ``"none"`` last).  Ids absent from the prompts are reported, not fatal."""
        pos = {pid: i for i, pid in enumerate(prompt_ids)}
        cls = {c: j for j, c in enumerate(classes)}
        idx, y, rand, missing = [], [], [], []
        for pid, lab, why in zip(self.ids, self.labels, self.why, strict=True):
            i = pos.get(pid)
            if i is None:
                missing.append(pid)
                continue
            idx.append(i)
            y.append(cls[lab])
            rand.append(why == "random")
        return LabelMatch(np.asarray(idx, dtype=np.int64), np.asarray(y, dtype=np.int64),
                          np.asarray(rand, dtype=bool), missing)


@dataclass
class LabelMatch:
    """Reviewed prompts located in an audited set: ``idx`` (positions), ``y`` (class index, ``"none"`` last),
    ``random`` (True for the random slice), ``missing`` (label ids not in the set)."""

    idx: np.ndarray
    y: np.ndarray
    random: np.ndarray
    missing: list[str]


def _bad(path: Path, line: int, problem: str, fix: str) -> InputError:
    return InputError(f"label file {path}, line {line}: {problem}", fix)


def _valid_list(leaf_ids: list[str], limit: int = 20) -> str:
    shown = ", ".join(leaf_ids[:limit]) + (f", … ({len(leaf_ids) - limit} more)" if len(leaf_ids) > limit else "")
    return f"{shown} or {NONE_LABEL}"


def _parse_line(path: Path, n: int, raw: str, valid: set[str], leaf_ids: list[str]) -> tuple[str, str | None, str]:
    """(id, label or None, why) of one line, or a one-line error naming it."""
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise _bad(path, n, f"not valid JSON ({str(exc)[:80]})",
                   "fix or delete that line (each line is one JSON object, as `data-advisor review` wrote it)") from None
    if not isinstance(obj, dict):
        raise _bad(path, n, f"a JSON {type(obj).__name__}, not an object",
                   "each line must be one object with keys " + ", ".join(LABEL_KEYS))
    absent = [k for k in ("id", "why", "label") if k not in obj]
    if absent:
        raise _bad(path, n, "missing key(s) " + ", ".join(absent),
                   "keep every key `data-advisor review` wrote: " + ", ".join(LABEL_KEYS))
    pid, why, label = obj["id"], obj["why"], obj["label"]
    if not isinstance(pid, str) or not pid:
        raise _bad(path, n, f"`id` must be a non-empty string (got {json.dumps(pid)[:40]})",
                   "keep the id exactly as `data-advisor review` wrote it")
    if why not in WHY_VALUES:
        raise _bad(path, n, f"`why` must be \"random\" or \"informative\" (got {json.dumps(why)[:40]})",
                   "keep the `why` value `data-advisor review` wrote")
    if label is not None and not isinstance(label, str):
        raise _bad(path, n, f"`label` must be a string or null (got {json.dumps(label)[:40]})",
                   f"set it to one of {_valid_list(leaf_ids)}, or null to skip the prompt")
    if isinstance(label, str) and label not in valid:
        raise _bad(path, n, f"unknown label {json.dumps(label)[:60]}",
                   f"use one of {_valid_list(leaf_ids)}, or null to skip the prompt")
    return pid, label, why


def load_labels(path: str | Path, leaf_ids: list[str]) -> ReviewLabels:
    """Read and validate a label file against the audited taxonomy's leaf ids.

    Raises :class:`InputError` (one line: file, line, problem, fix) for an unreadable or empty file, a damaged JSON
    line, a missing key, a wrong type, an unknown label or a duplicate id.  Rows with ``label`` null are counted in
    ``n_ignored``; a file with no labelled row at all is an error (the user most likely passed the file before
    filling it in).
    """
    path = Path(path).expanduser()
    if leaf_ids and NONE_LABEL in leaf_ids:
        raise InputError(f"the taxonomy has a principle with the id {NONE_LABEL!r}, which labels reserve for "
                         "\"belongs to no principle\"", "rename that principle's id in the taxonomy file")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"label file {path} does not exist",
                         "pass the file `data-advisor review AUDIT --out review.jsonl` wrote (labels filled in)") from None
    except IsADirectoryError:
        raise InputError(f"label file {path} is a folder", "pass the review JSONL file itself") from None
    except OSError as exc:
        raise InputError(f"cannot read label file {path}: {exc.strerror or exc}", "check the path and its permissions") from None
    except UnicodeDecodeError:
        raise InputError(f"label file {path} is not UTF-8 text", "save it as UTF-8 JSONL") from None
    from data_advisor.io import split_lines

    valid = {*leaf_ids, NONE_LABEL}
    ids: list[str] = []
    labels: list[str] = []
    whys: list[str] = []
    seen: dict[str, int] = {}
    n_ignored = 0
    n_rows = 0
    for n, raw in enumerate(split_lines(text.lstrip("\ufeff")), start=1):
        if not raw.strip():
            continue
        n_rows += 1
        pid, label, why = _parse_line(path, n, raw, valid, leaf_ids)
        if pid in seen:
            raise _bad(path, n, f"duplicate id {json.dumps(pid)[:60]} (first on line {seen[pid]})",
                       "keep one line per prompt id")
        seen[pid] = n
        if label is None:
            n_ignored += 1
            continue
        ids.append(pid)
        labels.append(label)
        whys.append(why)
    if n_rows == 0:
        raise InputError(f"label file {path} is empty",
                         "pass the file `data-advisor review` wrote, with `label` filled in for some prompts")
    if not ids:
        raise InputError(f"label file {path} has no labelled prompt (all {n_ignored} `label` values are null)",
                         f"set `label` to one of {_valid_list(leaf_ids)} for the prompts you reviewed")
    return ReviewLabels(ids, labels, whys, source=str(path), n_ignored=n_ignored)

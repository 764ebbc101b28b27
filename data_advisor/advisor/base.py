"""The base set of a run (``--base DATA``): the user's existing prompts, which the run extends rather than replaces.

DATA is either any prompts file/folder the audit reads, or an audit ``--out`` folder (coverage.json +
assignments.jsonl).  From an audit folder the prompts and the audit's own cluster labels are reused, so the
advisor starts from exactly the clusters the user saw; a prompts file is clustered when first needed.  Both are
embedded by the run's embedder (the embedding cache makes an audited set free to embed again).

The run folder never copies the base into its records: ``prompts.jsonl`` holds only the additions, and
``config.json`` holds a :class:`BaseRecord` (path, kind, count, sha256 of the file(s) read).  On resume the
files are hashed again and a changed base is refused, because every gap the run acted on was measured on it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor.coverage.cluster import ClusterResult
from data_advisor.coverage.report import CoverageReport
from data_advisor.data import load_prompts
from data_advisor.errors import InputError, RunConfigError
from data_advisor.io import file_sha256
from data_advisor.run_records import BaseRecord

__all__ = ["BaseRecord", "BaseSet", "check_base_unchanged", "files_sha256", "is_audit_dir", "load_base"]


@dataclass
class BaseSet:
    """The base prompts and, from an audit folder, the audit's cluster labels.

    Vectors are not taken from the audit's embeddings.npy (float16, and possibly another embedder): the run embeds
    the base with its own embedder, through the cache, so base and additions share one embedding space exactly.
    """

    record: BaseRecord
    ids: list[str]
    texts: list[str]
    clusters: ClusterResult | None = None
    model_id: str | None = None
    #: From an audit made with reviewer labels (``audit --labels``): each prompt's anchor id as that audit assigned
    #: it (None = unanchored), reviewed prompts holding their label; None for any other base.
    anchor_ids: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def __post_init__(self) -> None:
        """Base ids shaped like the run's own ids (``r00001-00``, e.g. a previous run's prompts.jsonl used as the
        base) get a ``base:`` prefix, so no id appears twice in the run's combined outputs."""
        taken = set(self.ids)
        ids: list[str] = []
        for i in self.ids:
            if RUN_ID.fullmatch(i):
                new = f"base:{i}"
                while new in taken:  # a run on a run on a run: ``base:r…`` is already a base id of this set
                    new = f"base:{new}"
                taken.add(new)
                i = new
            ids.append(i)
        self.ids = ids


#: The shape of the ids the loop gives the prompts it keeps (``r{round:05d}-{j:02d}``).
RUN_ID = re.compile(r"r\d{5}-\d{2,}")


def is_audit_dir(path: Path) -> bool:
    return path.is_dir() and (path / "coverage.json").exists() and (path / "assignments.jsonl").exists()


def _data_files(path: Path) -> list[Path]:
    """The files whose bytes define the base: the audit's per-prompt outputs, or every file of a prompts input."""
    if is_audit_dir(path):
        return [f for f in (path / "assignments.jsonl", path / "embeddings.npy") if f.exists()]
    if path.is_dir():
        return sorted(f for f in path.rglob("*") if f.is_file() and not any(p.startswith(".") for p in f.parts))
    return [path]


def files_sha256(path: Path) -> str:
    """sha256 over (relative name, sha256 of bytes) of every data file, so renaming or editing any one shows."""
    outer = hashlib.sha256()
    root = path if path.is_dir() else path.parent
    for f in _data_files(path):
        outer.update(f"{f.relative_to(root).as_posix()}\0{file_sha256(f)}\n".encode())
    return outer.hexdigest()


def load_base(path: str | Path, *, text_field: str | None = None) -> BaseSet:
    """Read the base set (no embedding here: the monitor embeds what has no stored vectors)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"base data not found: {p}", "pass a prompts file or an audit --out folder to --base")
    if p.is_dir() and (p / "coverage.json").exists() and not (p / "assignments.jsonl").exists():
        raise InputError(f"{p} holds coverage.json but no assignments.jsonl",
                         "re-run `data-advisor audit` into that folder, or pass the prompts file itself to --base")
    digest = files_sha256(p)
    if not is_audit_dir(p):
        prompts = load_prompts(p, text_field=text_field, skip_invalid=True, truncate=True)
        return BaseSet(BaseRecord(str(path), "prompts", len(prompts), digest), list(prompts.ids), list(prompts.texts))
    return _load_audit_dir(p, str(path), digest)


def _load_audit_dir(p: Path, shown: str, digest: str) -> BaseSet:
    from data_advisor.io import split_lines, verify_checksums

    verify_checksums(p, ("coverage.json", "assignments.jsonl"))  # a changed file would silently move the baseline

    ids: list[str] = []
    texts: list[str] = []
    labels: list[int] = []
    coords: list[tuple[float, float]] = []
    anchor_ids: list[str | None] = []
    n_reviewed = 0
    for lineno, line in enumerate(split_lines((p / "assignments.jsonl").read_text("utf-8")), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ids.append(str(row["id"]))
            texts.append(str(row["text"]))
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{p / 'assignments.jsonl'}:{lineno} is not an assignments record",
                             "re-run `data-advisor audit` into that folder, or pass the prompts file to --base") from None
        labels.append(int(row.get("cluster_id", -1)))
        coords.append((float(row.get("x", 0.0) or 0.0), float(row.get("y", 0.0) or 0.0)))
        anchor_ids.append(row["anchor_id"] if isinstance(row.get("anchor_id"), str) else None)
        n_reviewed += row.get("reviewed") is True
    if not texts:
        raise InputError(f"the audit in {p} has no prompts", "pass a non-empty audit folder or prompts file to --base")
    cov = CoverageReport.load(p / "coverage.json")  # one-line error naming the fix when damaged
    settings = _json_object(cov.settings, p / "coverage.json", '"settings"')
    discovery = _json_object(cov.discovery, p / "coverage.json", '"discovery"')
    model_id = str(settings.get("model_id") or "") or None
    clusters = None
    if discovery.get("method") not in (None, "disabled"):
        clusters = ClusterResult(np.asarray(labels, dtype=np.int64), np.asarray(coords, dtype=np.float32).reshape(-1, 2),
                                 str(discovery.get("method")), [f"base clusters from the audit in {p.name}"],
                                 _json_object(settings.get("discovery"), p / "coverage.json", '"settings.discovery"'))
    return BaseSet(BaseRecord(shown, "audit", len(texts), digest), ids, texts, clusters, model_id,
                   anchor_ids if n_reviewed else None)  # a labelled audit's anchors carry over


def _json_object(value: Any, path: Path, what: str) -> dict[str, Any]:
    """A coverage.json member that must be an object (absent or null reads as empty): a hand-edited file whose
    member is a list, a number or a string is refused in one line instead of failing deep inside the run."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{path}: {what} is a JSON {type(value).__name__.replace('str', 'string')}, not an object "
                         "(the file was edited by hand)",
                         "restore the audit's coverage.json or re-run `data-advisor audit` into that folder, or pass "
                         "the prompts file itself to --base")
    return dict(value)


def check_base_unchanged(stored: dict[str, Any] | None, current: BaseRecord) -> None:
    """Refuse to resume on a base whose files changed since the run started (the gaps it acted on were its)."""
    if not isinstance(stored, dict) or stored.get("sha256") in (None, current.sha256):
        return
    raise RunConfigError(
        f"the base data {current.path} changed since the run started (sha256 {str(stored.get('sha256'))[:12]}… → "
        f"{current.sha256[:12]}…, {stored.get('count')} → {current.count} prompts)",
        "restore the original base to resume, or start a new run with a different --out")

"""``data-advisor review AUDIT --n N --out review.jsonl``: the prompts a person should label, and a page to label them.

Reads an audit ``--out`` folder through the report readers (coverage.json, assignments.jsonl, embeddings.npy; never
the embedding model), picks a uniformly random slice and an informative slice
(:mod:`data_advisor.coverage.review_pick`) and writes

* ``review.jsonl``: one object per prompt with exactly the keys ``id, text, suggested, margin, why, label``
  (``label`` null: the reviewer sets a leaf anchor id or ``"none"``), for ``audit INPUT --labels review.jsonl``;
* ``review.html`` beside it: the same prompts one at a time, keyboard-driven, with a Download button that saves the
  JSONL with the labels filled (:mod:`data_advisor.reports.review_page`).

Both files are written atomically; an existing file is never replaced without ``force``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor.coverage.review_pick import PER_PRINCIPLE, pick_for_review
from data_advisor.errors import InputError, OutputError
from data_advisor.reports._data import Points, load_audit_dir

#: The keys of one review line, in this order (``audit --labels`` and the page rely on it).
REVIEW_KEYS = ("id", "text", "suggested", "margin", "why", "label")
#: What a reviewer writes for a prompt that belongs to no principle (benign or off-taxonomy).
NONE_LABEL = "none"


@dataclass
class ReviewResult:
    """What ``review`` wrote: the lines (as dicts, in file order), both paths and any notes."""

    jsonl: Path
    html: Path
    rows: list[dict[str, Any]]
    n_random: int
    n_informative: int
    n_reviewed_before: int
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The CLI's one-line summary."""
        skipped = f", {self.n_reviewed_before:,} already reviewed skipped" if self.n_reviewed_before else ""
        return (f"review: {len(self.rows)} prompts ({self.n_random} random, {self.n_informative} informative"
                f"{skipped}) → {self.jsonl}; label them in {self.html}")


def page_path(jsonl: Path) -> Path:
    """``review.jsonl`` → ``review.html`` (the page lives beside the file it edits)."""
    return jsonl.with_suffix(".html")


def _check_out(out: Path, force: bool, audit_dir: Path) -> Path:
    out = Path(out).expanduser()
    html = page_path(out)
    if out.suffix.lower() in (".html", ".htm"):
        raise OutputError(f"--out {out} names an HTML file", "pass the JSONL to write, e.g. --out review.jsonl "
                          "(review.html is written beside it)")
    for p in (out, html):
        if p.is_dir():
            raise OutputError(f"--out {out}: {p} is a folder", "pass a file path such as review.jsonl")
        if p.exists() and not force:
            raise OutputError(f"{p} already exists", "choose another --out, or pass --force to replace it")
    if out.resolve().parent == audit_dir.resolve() and out.name in ("assignments.jsonl", "coverage.json"):
        raise OutputError(f"--out {out} would overwrite the audit's own {out.name}", "pass e.g. --out review.jsonl")
    return out


def _read(audit_dir: Path) -> tuple[Any, Points, np.ndarray | None]:
    """The audit's report, rows (with margin, harm score and reviewed flag) and vectors, checked whole."""
    audit_dir = Path(audit_dir)
    fix = f"pass an audit --out folder (data-advisor audit INPUT --out {audit_dir})"
    if not audit_dir.exists():
        raise InputError(f"audit folder not found: {audit_dir}", fix)
    if not audit_dir.is_dir() or not (audit_dir / "coverage.json").is_file():
        raise InputError(f"{audit_dir} is not an audit folder (no coverage.json)", fix)
    if not (audit_dir / "assignments.jsonl").is_file():
        raise InputError(f"{audit_dir} has no assignments.jsonl (a run folder, or an --assign-only audit?)",
                         f"re-run `data-advisor audit INPUT --out {audit_dir}` without --assign-only")
    audit = load_audit_dir(audit_dir, want_embeddings=True)
    points = Points.read(audit_dir / "assignments.jsonl", extra_keys=("margin", "harm_score", "reviewed"))
    if not len(points):
        raise InputError(f"the audit in {audit_dir} has no prompts", "audit a non-empty prompt set first")
    if len(set(points.ids)) != len(points.ids):
        raise InputError(f"{audit_dir / 'assignments.jsonl'} repeats a prompt id (a damaged or hand-merged file)",
                         f"re-run `data-advisor audit INPUT --out {audit_dir}`")
    return audit.report, points, audit.embeddings


def _floats(values: list[Any], name: str, path: Path, default: float | None) -> np.ndarray | None:
    if default is None and all(v is None for v in values):
        return None
    try:
        arr = np.array([default if v is None else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{path}: a `{name}` value is not a number (a damaged file)",
                         "re-run the audit that wrote it") from None
    return arr


def review(audit_dir: str | Path, *, out: str | Path, n: int | None = None, seed: int = 0,
           force: bool = False, strategy: str = "informative") -> ReviewResult:
    """Pick prompts of an audit for a person to label; write ``out`` (JSONL) and the labelling page beside it.

    ``n`` defaults to 5 × the number of leaf principles.  Prompts an earlier ``audit --labels`` marked
    ``"reviewed": true`` are never picked again.  The random slice (``why: "random"``) comes first; only it feeds
    the estimates of ``audit --labels``.
    """
    from data_advisor.io import removed_on_failure, write_texts_atomic
    from data_advisor.reports.review_page import render_review_page

    audit_dir = Path(audit_dir)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise InputError(f"--n must be a whole number of at least 1 (got {n!r})", "pass e.g. --n 60")
    out_path = _check_out(Path(out), force, audit_dir)
    report, points, vectors = _read(audit_dir)
    leaves = report.leaf_anchors()
    if not leaves:
        raise InputError(f"the audit in {audit_dir} has no leaf principles", "re-run the audit with a taxonomy")
    budget = n if n is not None else PER_PRINCIPLE * len(leaves)
    ap = audit_dir / "assignments.jsonl"
    margin = _floats(points.extra["margin"], "margin", ap, 0.0)
    harm = _floats(points.extra["harm_score"], "harm_score", ap, None)
    reviewed = np.array([v is True for v in points.extra["reviewed"]], dtype=bool)
    assert margin is not None
    picked = pick_for_review(budget, margin=margin, anchors=points.anchor, clusters=points.cluster, harm_score=harm,
                             vectors=vectors, exclude=reviewed, seed=seed, strategy=strategy)
    notes = list(picked.notes)
    if vectors is None:
        notes.append("embeddings.npy is missing: near-duplicates are not screened out and picks spread by cluster only")
    if not picked.order():
        raise InputError(f"every prompt of {audit_dir} is already reviewed", "nothing is left to label")
    rows = [dict(zip(REVIEW_KEYS, (points.ids[i], points.texts[i], points.anchor[i], round(float(margin[i]), 6),
                                   why, None), strict=True)) for i, why in picked.order()]
    lines = [json.dumps(r, ensure_ascii=False, allow_nan=False) for r in rows]
    html_path = page_path(out_path)
    with removed_on_failure(out_path.parent):
        out_path.parent.mkdir(parents=True, exist_ok=True)
        page = render_review_page(lines, rows, [(a.id, a.name) for a in leaves], download_name=out_path.name,
                                  title=f"Review {report.taxonomy.get('name') or report.taxonomy.get('id') or ''}")
        try:
            write_texts_atomic([(out_path, "".join(line + "\n" for line in lines)), (html_path, page)])
        except OSError as exc:
            raise OutputError(f"cannot write {out_path}: {exc.strerror or exc}",
                              "choose a folder you can write to with --out") from None
    return ReviewResult(out_path, html_path, rows, len(picked.random), len(picked.informative),
                        int(reviewed.sum()), notes)


# ------------------------------------------------------------------------------------------------ CLI
def cmd_review(args: argparse.Namespace) -> int:
    result = review(args.audit, out=args.out, n=args.n, seed=args.seed, force=args.force)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    print(result.line(), file=sys.stderr, flush=True)
    return 0


def register(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``review`` (``add_parser`` is the main parser's ``subparsers.add_parser``)."""
    p = add_parser("review", help="pick prompts of an audit to label (review.jsonl + a labelling page)")
    p.add_argument("audit", help="audit --out folder (coverage.json, assignments.jsonl, embeddings.npy)")
    p.add_argument("--out", required=True, help="JSONL to write (review.html is written beside it)")
    p.add_argument("--n", type=int, default=None, help="prompts to pick (default: 5 × the number of leaf principles)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random slice")
    p.add_argument("--force", action="store_true", help="replace --out (and its .html) if they exist")
    p.set_defaults(func=cmd_review)

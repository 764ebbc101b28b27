"""The one-call Python API: audit a prompt set and write every output, HTML report included.

It lives above both the coverage and the reports layers because it composes them: the coverage stage computes
and writes the numbers, and the report is rendered from those written files into the same all-or-nothing output
folder (:meth:`~data_advisor.coverage.audit.AuditResult.write` takes the renderer as an extra output).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data_advisor.coverage.audit import AuditResult, audit_full
from data_advisor.coverage.embed import DEFAULT_MODEL, Embedder
from data_advisor.coverage.report import CoverageReport
from data_advisor.coverage.taxonomy import Taxonomy
from data_advisor.data import PromptSet
from data_advisor.reports.review import ReviewResult


def html_output(*, plotlyjs: str = "inline", labeler: Callable[[list[str]], str] | None = None) -> Callable[[Path], None]:
    """An extra output for :meth:`AuditResult.write` that renders ``report.html`` from the files just written."""

    def render(folder: Path) -> None:
        from data_advisor.reports.html import render_audit_report

        render_audit_report(folder, folder / "report.html", plotlyjs=plotlyjs, labeler=labeler)

    return render


def write_audit(result: AuditResult, out: str | Path, *, render_html: bool = True, plotlyjs: str = "inline",
                labeler: Callable[[list[str]], str] | None = None, save_embeddings: bool = True) -> Path:
    """Write an audit's outputs (and, unless ``render_html`` is False, its HTML report) into ``out``."""
    extra = [html_output(plotlyjs=plotlyjs, labeler=labeler)] if render_html else []
    return result.write(Path(out), save_embeddings=save_embeddings, extra_outputs=extra)


def audit(
    source: str | Path | PromptSet | Sequence[str],
    *,
    taxonomy: str | Path | Taxonomy = "catqa-11",
    model: str = DEFAULT_MODEL,
    out: str | Path | None = None,
    seed: int = 0,
    text_field: str | None = None,
    embedder: Embedder | None = None,
    embedder_kind: str = "st",
    cache: bool = True,
    show_progress: bool = False,
    render_html: bool = True,
    **settings: Any,
) -> CoverageReport:
    """Audit a prompt set against a taxonomy and return its :class:`CoverageReport`.

    ``source`` is a file/folder path, a :class:`PromptSet` or a list of strings. With ``out`` the report files
    (coverage.json, assignments.jsonl, embeddings.npy, report.html) are written there. Extra keyword
    arguments set :class:`AuditSettings` fields (e.g. ``min_cluster_size=10``, ``background=False``);
    ``labels=`` takes a reviewer label file (as ``--labels``) or a loaded ``ReviewLabels``.
    ``embedder_kind`` picks the backend as ``--embedder`` does (``st``, ``onnx``, ``onnx-int8``, ``static``,
    ``cascade``) when no ``embedder`` object is passed.
    """
    result = audit_full(source, taxonomy=taxonomy, model=model, seed=seed, text_field=text_field,
                        embedder=embedder, embedder_kind=embedder_kind, cache=cache, show_progress=show_progress,
                        out=out, **settings)
    if out is not None:
        write_audit(result, out, render_html=render_html)
    return result.report


def review(audit_dir: str | Path, *, out: str | Path, n: int | None = None, seed: int = 0,
           force: bool = False) -> ReviewResult:
    """Pick prompts of an audit folder for a person to label: writes ``out`` (JSONL, one line per prompt with
    ``id, text, suggested, margin, why, label``) and the labelling page beside it (``.html``).  ``n`` defaults to
    5 × the number of leaf principles; a uniformly random slice (the only one the estimates use) comes first, then
    the informative picks.  Label, then ``audit(..., labels=out)`` / ``data-advisor audit INPUT --labels out``."""
    from data_advisor.reports.review import review as write_review

    return write_review(audit_dir, out=out, n=n, seed=seed, force=force)

"""The one-call Python API: audit a prompt set and write every output, HTML report included.

It lives above both the coverage and the reports layers because it composes them: the coverage stage computes
and writes the numbers, and the report is rendered from those written files into the same all-or-nothing output
folder (:meth:`~data_advisor.coverage.audit.AuditResult.write` takes the renderer as an extra output).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data_advisor.coverage.audit import AuditOptions, AuditResult, AuditSettings, audit_full, settings_from_keywords
from data_advisor.coverage.embedding.base import Embedder
from data_advisor.coverage.report import CoverageReport
from data_advisor.coverage.taxonomy import Taxonomy
from data_advisor.data import PromptSet


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
    data: str | Path | PromptSet | Sequence[str] | None = None,
    *,
    taxonomy: str | Path | Taxonomy = "catqa-11",
    out: str | Path | None = None,
    settings: AuditSettings | None = None,
    options: AuditOptions | None = None,
    embedder: Embedder | None = None,
    render_html: bool = True,
    **deprecated: Any,
) -> CoverageReport:
    """Audit a prompt set against a taxonomy and return its :class:`CoverageReport`.

    ``data`` is a file/folder path, a :class:`PromptSet` or a list of strings. With ``out`` the report files
    (coverage.json, assignments.jsonl, embeddings.npy and, unless ``render_html`` is False, report.html) are written
    there.  ``settings`` holds everything that changes the numbers (stored in coverage.json); ``options`` how the
    audit runs (text field, embedding backend by name, caches, progress); ``embedder`` an embedder object to use
    instead of ``options.embedder_name``.  The old flat keywords (``seed=3``, ``min_cluster_size=10``,
    ``text_field=``, ``embedder_kind=`` ...) still work, with a DeprecationWarning.
    """
    if "source" in deprecated:  # the first parameter's old name
        import warnings

        warnings.warn("audit(source=...) is deprecated: pass the data as the first argument", DeprecationWarning,
                      stacklevel=2)
        data = deprecated.pop("source")
    if data is None:
        raise TypeError("audit() missing the data to audit (a path, a PromptSet or a list of strings)")
    settings, options = settings_from_keywords(settings, options, deprecated, where="audit")
    result = audit_full(data, taxonomy=taxonomy, settings=settings, options=options, embedder=embedder, out=out)
    if out is not None:
        write_audit(result, out, render_html=render_html)
    return result.report

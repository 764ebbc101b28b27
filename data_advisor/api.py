"""The one-call Python API: audit a prompt set and write every output, HTML report included.

It lives above both the coverage and the reports layers because it composes them: the coverage stage computes
and writes the numbers, and the report is rendered from those written files into the same all-or-nothing output
folder (:meth:`~data_advisor.coverage.audit.AuditResult.write` takes the renderer as an extra output).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from data_advisor.coverage.audit import AuditOptions, AuditResult, AuditSettings, audit_full, settings_from_keywords
from data_advisor.coverage.embedding.base import Embedder
from data_advisor.coverage.gate import GateCondition, parse_conditions
from data_advisor.coverage.report import CoverageReport
from data_advisor.coverage.taxonomy import Taxonomy, load_taxonomy
from data_advisor.data import PromptSet
from data_advisor.errors import GateError
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
    data: str | Path | PromptSet | Sequence[str] | Any = None,
    *,
    taxonomy: str | Path | Taxonomy = "catqa-11",
    out: str | Path | None = None,
    text_field: str | None = None,
    id_field: str | None = None,
    settings: AuditSettings | None = None,
    options: AuditOptions | None = None,
    embedder: Embedder | None = None,
    render_html: bool = True,
    fail_under: Mapping[str, float] | None = None,
    labels: str | Path | Any = None,
    **deprecated: Any,
) -> CoverageReport:
    """Audit a prompt set against a taxonomy and return its :class:`CoverageReport`.

    ``data`` is a file/folder path, an in-memory table — a pandas or polars DataFrame, a ``datasets.Dataset`` (or
    DatasetDict), with ``text_field`` / ``id_field`` picking the columns as for files — a
    :class:`PromptSet` or a list of strings. With ``out`` the report files (coverage.json, assignments.jsonl,
    embeddings.npy and, unless ``render_html`` is False, report.html) are written there; in a notebook the report
    shows as a summary and ``report.show()`` shows the full interactive report.  ``settings`` holds everything that
    changes the numbers (stored in coverage.json); ``options`` how the audit runs (text and id fields, embedding
    backend by name, caches, progress); ``embedder`` an embedder object to use instead of ``options.embedder_name``.
    The old flat keywords (``seed=3``, ``min_cluster_size=10``, ``text_field=``, ``embedder_kind=`` ...) still work,
    with a DeprecationWarning.

    ``fail_under`` is a dataset-CI gate (``{"coverage_ratio": 0.9, "min_anchor_count": 20, "anchor:cyber": 5}``):
    its names are checked before the audit runs, and when the report falls under any bar :class:`GateError`
    (exit code 1) is raised after the outputs are written, naming every failed condition.

    ``labels`` takes a reviewer label file (as ``--labels``; see :func:`review`) or a loaded ``ReviewLabels``:
    reviewed prompts take their labels, the labels teach the rest and ``coverage.json`` gets ``estimates``.
    """
    if "source" in deprecated:  # the first parameter's old name
        import warnings

        warnings.warn("audit(source=...) is deprecated: pass the data as the first argument", DeprecationWarning,
                      stacklevel=2)
        data = deprecated.pop("source")
    if data is None:
        raise TypeError("audit() missing the data to audit (a path, a table, a PromptSet or a list of strings)")
    settings, options = settings_from_keywords(settings, options, deprecated, where="audit")
    if text_field is not None or id_field is not None:  # what the data is, so explicit arguments, not options
        options = replace(options, text_field=text_field or options.text_field, id_field=id_field or options.id_field)
    conditions: list[GateCondition] = []
    if fail_under:
        taxonomy = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
        conditions = parse_conditions(fail_under, [p.id for p in taxonomy.principles])
    result = audit_full(data, taxonomy=taxonomy, settings=settings, options=options, embedder=embedder, out=out,
                        labels=labels)
    if out is not None:
        write_audit(result, out, render_html=render_html)
    report = result.report
    report.attach_html(_html_page(result, Path(out) / "report.html" if out is not None and render_html else None))
    failures = report.check(conditions) if conditions else []
    if failures:
        raise GateError(failures, report)
    return report


def _html_page(result: AuditResult, written: Path | None) -> Callable[[], str]:
    """Where ``report.show()`` gets its page: the report.html just written, else one rendered on demand into a
    temporary folder (the result is kept in memory only in that case)."""
    if written is not None:
        return lambda: written.read_text("utf-8")

    def render() -> str:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="data-advisor-show-") as tmp:
            write_audit(result, Path(tmp) / "audit")
            return (Path(tmp) / "audit" / "report.html").read_text("utf-8")

    return render


def review(audit_dir: str | Path, *, out: str | Path, n: int | None = None, seed: int = 0,
           force: bool = False) -> ReviewResult:
    """Pick prompts of an audit folder for a person to label: writes ``out`` (JSONL, one line per prompt with
    ``id, text, suggested, margin, why, label``) and the labelling page beside it (``.html``).  ``n`` defaults to
    5 × the number of leaf principles; a uniformly random slice (the only one the estimates use) comes first, then
    the informative picks.  Label, then ``audit(..., labels=out)`` / ``data-advisor audit INPUT --labels out``."""
    from data_advisor.reports.review import review as write_review

    return write_review(audit_dir, out=out, n=n, seed=seed, force=force)

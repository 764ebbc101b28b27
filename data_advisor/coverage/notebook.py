"""How a coverage report shows in a Jupyter notebook: a compact HTML summary, and the full report inline.

``CoverageReport._repr_html_`` (the summary) holds the key numbers, the gap table naming every leaf principle with
one typical prompt, and the guard-rail warnings: what a user reads first, small enough to keep in a saved notebook.
:class:`InlineReport` embeds the full interactive report.html in a sandboxed iframe (``srcdoc``): its scripts run
but cannot reach the notebook's page. Prompts, principle names and warnings are hostile text: every one is
escaped, in the summary and in the ``srcdoc`` attribute alike.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from data_advisor.coverage.warnings import warnings_from_dicts

_STYLE = ("font-family:system-ui,sans-serif;font-size:13px;line-height:1.35;max-width:980px")
_CELL = "padding:2px 8px;text-align:left;border-bottom:1px solid #e5e5e5"
#: Key numbers of the summary, in order: (metric, label, format).
KEY_NUMBERS: tuple[tuple[str, str, str], ...] = (
    ("n_prompts", "prompts", ",d"), ("coverage_ratio", "coverage ratio", ".3f"),
    ("normalized_entropy", "normalised entropy", ".3f"), ("unanchored_share", "unanchored share", ".1%"),
    ("vendi_score", "Vendi score", ".1f"), ("near_duplicate_rate", "near-duplicate rate", ".1%"),
    ("n_clusters", "fine-grained clusters", "d"), ("n_emergent_clusters", "emergent clusters", "d"),
)
PROMPT_CHARS = 120


def esc(value: Any) -> str:
    """Text (any value) escaped for HTML content and quoted attributes."""
    return html.escape(str(value), quote=True)


def _fmt(value: Any, spec: str) -> str:
    try:
        return format(int(value) if spec.endswith("d") else float(value), spec)
    except (TypeError, ValueError):
        return "–"


def key_numbers_html(metrics: Mapping[str, Any], extra: Sequence[tuple[str, str]] = ()) -> str:
    """A one-row table of the key dataset metrics (those present), after ``extra`` (label, text) cells."""
    cells = list(extra) + [(label, _fmt(metrics[key], spec)) for key, label, spec in KEY_NUMBERS if key in metrics]
    head = "".join(f'<th style="{_CELL}">{esc(label)}</th>' for label, _ in cells)
    body = "".join(f'<td style="{_CELL}">{esc(text)}</td>' for _, text in cells)
    return f"<table><tr>{head}</tr><tr>{body}</tr></table>"


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= PROMPT_CHARS else text[: PROMPT_CHARS - 1] + "…"


def summary_html(report: Any) -> str:
    """The compact notebook view of a CoverageReport (every string escaped)."""
    m = report.metrics
    tax = report.taxonomy
    source = report.dataset.get("source", "")
    covered = f"{m.get('anchors_covered', '–')}/{m.get('n_leaf_anchors', '–')}"
    parts = [f'<div class="data-advisor-summary" style="{_STYLE}">',
             f"<b>Data Advisor coverage</b> of <code>{esc(source)}</code> against "
             f"<b>{esc(tax.get('name', tax.get('id', '')))}</b> (<code>{esc(tax.get('id', ''))}</code>)",
             key_numbers_html(m, [("principles with prompts", covered)])]
    rows = []
    for a in report.gap_table():
        example = _short(a.examples[0].get("text", "")) if a.examples else ""
        gap_colour = "#b00020" if a.gap > 0 else "#1b5e20"
        rows.append(f'<tr><td style="{_CELL}">{esc(a.name)}<br><code style="color:#666">{esc(a.id)}</code></td>'
                    f'<td style="{_CELL}">{a.count:,}</td><td style="{_CELL}">{a.share:.1%}</td>'
                    f'<td style="{_CELL}">{a.target_share:.1%}</td>'
                    f'<td style="{_CELL};color:{gap_colour}">{a.gap:+.3f}</td>'
                    f'<td style="{_CELL};color:#444">{esc(example)}</td></tr>')
    head = "".join(f'<th style="{_CELL}">{h}</th>'
                   for h in ("principle (most under-covered first)", "prompts", "share", "target", "gap",
                             "a typical prompt"))
    parts.append(f"<table><tr>{head}</tr>{''.join(rows)}</table>")
    found = warnings_from_dicts(report.warnings)
    if found:
        items = "".join(f"<li><b>{esc(w.code)}</b>: {esc(w.one_line())}</li>" for w in found)
        parts.append(f'<div style="color:#8a4b00"><b>Warnings</b><ul>{items}</ul></div>')
    parts.append('<div style="color:#666">Full interactive report: <code>report.show()</code>; a CI gate: '
                 '<code>report.check(fail_under={"coverage_ratio": 0.9})</code></div></div>')
    return "\n".join(parts)


class InlineReport:
    """A full HTML report shown inline in a notebook: a sandboxed iframe whose ``srcdoc`` is the escaped page.

    ``allow-scripts`` without ``allow-same-origin`` lets the report's charts run while keeping them (and anything
    a hostile prompt might smuggle in) away from the notebook's own page, cookies and kernel.
    """

    def __init__(self, page: str, height: int = 720) -> None:
        self.page = page
        self.height = int(height)

    def _repr_html_(self) -> str:
        return (f'<iframe class="data-advisor-report" title="Data Advisor report" '
                f'sandbox="allow-scripts allow-popups allow-downloads" '
                f'style="width:100%;height:{self.height}px;border:1px solid #ddd" srcdoc="{esc(self.page)}"></iframe>')


def show_inline(page: str, height: int = 720) -> InlineReport | None:
    """Display ``page`` inline when running in an IPython kernel (returns None); elsewhere return the
    :class:`InlineReport`, whose ``_repr_html_`` a notebook, or a test, can render."""
    view = InlineReport(page, height)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return view
    if get_ipython() is None:
        return view
    display(view)
    return None

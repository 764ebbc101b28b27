"""Page scaffolding shared by every report: escaping, tables, cards, figure embedding and the HTML shell.

Why one module: every report must obey the same three rules, and keeping them in one place makes them
auditable —

* **Escaping.** Dataset text is hostile until proven otherwise.  Everything that reaches HTML goes through
  :func:`esc` (or a :class:`Raw` fragment we built ourselves from escaped parts); everything that reaches a
  plotly figure goes through :func:`plot_text`, because plotly renders labels and hover text as a small
  HTML dialect (``<b>``, ``<br>``, ``<a href>``) — escaping ``& < >`` makes it show ``<img …>`` literally.
  Plotly then JSON-encodes figures with ``<``, ``>`` and ``/`` as ``\\u003c``/``\\u003e``/``\\u002f``, so no
  figure data can close the surrounding ``<script>``; the tests check both layers.
* **Self-contained.** plotly.js is inlined once in ``<head>`` (or one CDN ``<script src>`` when asked);
  no other external resource — fonts, stylesheets, images — is referenced.
* **Deterministic.** Div ids are given, not random; the only time-dependent byte is the one
  "generated at" line, so two renders of the same inputs diff cleanly.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from data_advisor.errors import InputError

#: Hover text longer than this is cut (with an ellipsis): it bounds the file size at 100k prompts.
HOVER_CHARS = 300
#: Hover text is wrapped to lines of about this many characters so tooltips stay readable.
HOVER_WRAP = 80
#: Table cells show at most this much of one prompt (the full text lives in the dataset, not the report).
CELL_CHARS = 1200

UNANCHORED_COLOR = "#b8bec6"
UNDER_COLOR = "#e8590c"  # under-covered (positive gap)
OVER_COLOR = "#1c7ed6"  # over-covered
NEUTRAL_COLOR = "#868e96"
#: A gap within this many share points of zero is drawn neutral rather than under/over-covered.
GAP_TOLERANCE = 0.005

#: Qualitative palette: Plotly + D3 + Dark24 without the greys (grey means "unanchored" on every map).
PALETTE = [
    "#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880", "#FF97FF",
    "#FECB52", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf", "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#B68100", "#750D86", "#EB663B",
    "#511CB5", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1",
    "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
]

FONT_STACK = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'

PLOTLYJS_MODES = ("inline", "cdn")

PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}


# ------------------------------------------------------------------------------------------------ escaping
@dataclass(frozen=True)
class Raw:
    """A fragment of HTML this package built itself from escaped parts (never from dataset text directly)."""

    html: str

    def __str__(self) -> str:
        return self.html


def esc(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute (``& < > " '``)."""
    return html.escape("" if value is None else str(value), quote=True)


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, ending in an ellipsis when something was cut."""
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def plot_text(value: Any, limit: int | None = None) -> str:
    """Make a string safe *and literal* inside plotly's HTML-ish labels.

    Plotly decodes only ``&amp; &lt; &gt;`` and numeric entities, so we escape exactly ``& < >`` (escaping
    quotes would show ``&quot;``).  Truncation happens before escaping so an entity is never cut in half.
    """
    s = "" if value is None else str(value)
    if limit is not None:
        s = truncate(s, limit)
    return html.escape(s, quote=False)


def plot_literal(value: Any, limit: int | None = None) -> str:
    """Like :func:`plot_text`, for strings placed inside a ``hovertemplate``: ``%{`` is neutralised so a
    name such as ``%{x}`` is shown as typed instead of being substituted."""
    return plot_text(value, limit).replace("%{", "%&#123;")


def wrap_words(text: str, width: int) -> list[str]:
    """Wrap single-spaced ``text`` at spaces into lines of at most ``width`` characters (a word longer than
    ``width`` is split).  One ``rfind`` per line rather than :mod:`textwrap`'s per-word work: a map builds
    20,000 of these."""
    lines: list[str] = []
    while len(text) > width:
        cut = text.rfind(" ", 0, width + 1)
        if cut <= 0:
            lines.append(text[:width])
            text = text[width:]
        else:
            lines.append(text[:cut])
            text = text[cut + 1:]
    lines.append(text)
    return lines


def hover_block(text: str, limit: int = HOVER_CHARS, width: int = HOVER_WRAP) -> str:
    """A prompt as plotly hover text: whitespace collapsed, cut to ``limit``, wrapped with ``<br>``."""
    flat = truncate(" ".join(str(text).split()), limit)
    return "<br>".join(html.escape(line, quote=False) for line in wrap_words(flat, width))


def script_json(obj: Any) -> str:
    """JSON for an inline ``<script>`` block: ``<``, ``>``, ``&`` and line separators are \\u-escaped."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, rep)
    return s


def json_block(obj: Any) -> Raw:
    """Pretty JSON shown as text in a ``<pre>``: escaped, so keys and values can hold anything."""
    return Raw(f'<pre class="json">{esc(json.dumps(obj, ensure_ascii=False, indent=2, default=str))}</pre>')


# --------------------------------------------------------------------------------------------- formatting
def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100.0 * float(x):.{digits}f}%"


def pp(x: float | None, digits: int = 1) -> str:
    """A difference of shares in percentage points, with sign."""
    return "–" if x is None else f"{100.0 * float(x):+.{digits}f} pp"


def num(x: float | int | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    return f"{float(x):,.{digits}f}"


@dataclass(frozen=True)
class Num:
    """A table cell holding a number: ``text`` is shown, ``value`` sorts; ``cls`` colours it."""

    value: float
    text: str
    cls: str = ""


@dataclass(frozen=True)
class Col:
    """A table column: ``kind`` is ``"num"`` (right-aligned), ``"text"`` (prompt text) or ``""``."""

    label: str
    kind: str = ""
    title: str = ""


def gap_color(gap: float) -> str:
    """The colour of a gap (target share - share) wherever one is drawn: under-, over-covered or neutral."""
    if gap > GAP_TOLERANCE:
        return UNDER_COLOR
    if gap < -GAP_TOLERANCE:
        return OVER_COLOR
    return NEUTRAL_COLOR


def gap_cell(gap: float) -> Num:
    """A gap as a table cell: signed percentage points, marked under-covered (``pos``) or over-covered (``neg``)
    beyond :data:`GAP_TOLERANCE`, the same rule as :func:`gap_color`."""
    return Num(gap, pp(gap), "pos" if gap > GAP_TOLERANCE else "neg" if gap < -GAP_TOLERANCE else "")


def _cell(value: Any, kind: str) -> str:
    classes = [kind] if kind else []
    attrs = ""
    if isinstance(value, Num):
        if value.cls:
            classes.append(value.cls)
        attrs = f' data-v="{float(value.value)!r}"'
        body = esc(value.text)
    elif isinstance(value, Raw):
        body = value.html
    elif isinstance(value, bool) or value is None:
        body = esc("" if value is None else value)
    elif isinstance(value, int | float):
        attrs = f' data-v="{float(value)!r}"'
        body = esc(num(value))
    else:
        s = str(value)
        body = esc(truncate(s, CELL_CHARS) if kind == "text" else s)
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{cls}{attrs}>{body}</td>"


def table(cols: list[Col], rows: list[list[Any]], *, empty: str = "Nothing to show.", scroll: bool = True) -> Raw:
    """A sortable table (click a header).  Cells are escaped unless they are :class:`Raw`/:class:`Num`."""
    if not rows:
        return Raw(f'<p class="muted">{esc(empty)}</p>')
    head = "".join(
        f'<th{" class=" + chr(34) + c.kind + chr(34) if c.kind == "num" else ""}'
        f'{" title=" + chr(34) + esc(c.title) + chr(34) if c.title else ""}>{esc(c.label)}</th>'
        for c in cols
    )
    body = "\n".join("<tr>" + "".join(_cell(v, c.kind) for v, c in zip(r, cols, strict=True)) + "</tr>" for r in rows)
    wrap = "table-wrap scroll" if scroll and len(rows) > 18 else "table-wrap"
    return Raw(f'<div class="{wrap}"><table class="sortable"><thead><tr>{head}</tr></thead>\n'
               f"<tbody>\n{body}\n</tbody></table></div>")


def text_list(texts: list[str], limit: int = 400) -> Raw:
    """Several prompts in one cell, one per line."""
    if not texts:
        return Raw('<span class="muted">–</span>')
    return Raw('<ul class="ex">' + "".join(f"<li>{esc(truncate(t, limit))}</li>" for t in texts) + "</ul>")


def badge(kind: str) -> Raw:
    cls = kind if kind in ("emergent", "anchored", "background", "noise") else "other"
    return Raw(f'<span class="badge {cls}">{esc(kind)}</span>')


def cards(items: list[tuple[str, str, str]]) -> Raw:
    """Key-number cards: (label, value, hint)."""
    out = []
    for label, value, hint in items:
        out.append(f'<div class="card"><div class="v">{esc(value)}</div><div class="k">{esc(label)}</div>'
                   + (f'<div class="h">{esc(hint)}</div>' if hint else "") + "</div>")
    return Raw('<div class="cards">' + "".join(out) + "</div>")


def note(text: str) -> Raw:
    return Raw(f'<p class="note">{esc(text)}</p>')


def para(text: str, cls: str = "") -> Raw:
    c = f' class="{cls}"' if cls else ""
    return Raw(f"<p{c}>{esc(text)}</p>")


def details(summary: str, body: Raw, *, open_: bool = False) -> Raw:
    return Raw(f'<details{" open" if open_ else ""}><summary>{esc(summary)}</summary>{body.html}</details>')


def join(*parts: Raw | None) -> Raw:
    return Raw("\n".join(p.html for p in parts if p is not None))


# ------------------------------------------------------------------------------------------------ figures
def base_layout(**kw: Any) -> dict[str, Any]:
    """Common plotly layout: light template, system fonts (no web fonts), compact margins."""
    layout: dict[str, Any] = {
        "template": "plotly_white",
        "font": {"family": FONT_STACK, "size": 12, "color": "#1f2933"},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
        "hoverlabel": {"align": "left", "font": {"family": FONT_STACK, "size": 12}},
        "legend": {"itemsizing": "constant"},
    }
    layout.update(kw)
    return layout


def figure_html(fig: Any, div_id: str, height: int) -> Raw:
    """One plotly figure as a ``<div>`` + ``<script>`` (plotly.js itself is in the page head)."""
    import plotly.io as pio

    fig.update_layout(height=height)
    out = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id, config=PLOTLY_CONFIG,
                      default_width="100%", default_height=f"{height}px", validate=False)
    return Raw(f'<div class="fig">{out}</div>')


def plotly_cdn_url() -> str:
    """The CDN address of the plotly.js bundle this plotly ships, as ``plotly.io.to_html(include_plotlyjs="cdn")``
    writes it.  Built from the public version getter rather than plotly's private ``plotly.io._html`` helper;
    ``tests/reports/test_html.py`` checks it against what plotly itself writes, so a change upstream fails a test."""
    import plotly.offline as po

    return f"https://cdn.plot.ly/plotly-{po.get_plotlyjs_version()}.min.js"


def plotlyjs_tag(mode: str) -> str:
    """The single plotly.js ``<script>`` of a page: the whole bundle inline, or one CDN reference."""
    import plotly.offline as po

    if mode == "inline":
        return ("<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
                f"<script>{po.get_plotlyjs()}</script>")
    if mode == "cdn":
        return f'<script src="{esc(plotly_cdn_url())}" charset="utf-8"></script>'
    raise InputError(f"unknown plotlyjs mode {mode!r}", "use 'inline' (self-contained, default) or 'cdn'")


# ----------------------------------------------------------------------------------------------- the page
@dataclass
class Section:
    id: str
    title: str
    body: Raw
    why: str = ""
    kind: str = "panel"  # "panel" (a card) or "part" (a heading that groups the panels after it)


@dataclass
class Page:
    """A report page: title, a subtitle line, sections, and one "generated at" line in the footer."""

    title: str
    subtitle: str = ""
    generated_at: str | None = None
    sections: list[Section] = field(default_factory=list)

    def add(self, section_id: str, title: str, body: Raw, why: str = "") -> None:
        self.sections.append(Section(section_id, title, body, why))

    def part(self, section_id: str, title: str, why: str = "") -> None:
        """A heading that groups the sections after it (e.g. "Final coverage" in a run report)."""
        self.sections.append(Section(section_id, title, Raw(""), why, kind="part"))

    def render(self, plotlyjs: str = "inline") -> str:
        stamp = self.generated_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        nav = "".join(f'<a href="#{esc(s.id)}" class="nav-{s.kind}">{esc(s.title)}</a>' for s in self.sections)
        parts = []
        for s in self.sections:
            why = f'<p class="why">{esc(s.why)}</p>' if s.why else ""
            parts.append(f'<section id="{esc(s.id)}" class="{s.kind}"><h2>{esc(s.title)}</h2>{why}\n{s.body.html}\n'
                         "</section>")
        body = "\n".join(parts)
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="data-advisor">
<title>{esc(self.title)}</title>
<style>{CSS}</style>
{plotlyjs_tag(plotlyjs)}
</head>
<body>
<header class="top"><h1>{esc(self.title)}</h1><div class="sub">{esc(self.subtitle)}</div></header>
<nav>{nav}</nav>
<main>
{body}
</main>
<footer>
<p>Data Advisor report — self-contained: no network access is needed to view it.</p>
<p class="generated">generated at {esc(stamp)}</p>
</footer>
<script>{SORT_JS}</script>
</body>
</html>
"""


CSS = """
:root { --fg:#1f2933; --muted:#5f6b7a; --bg:#f4f6f8; --card:#fff; --border:#e2e6ea; --accent:#3b5bdb;
  --under:#d9480f; --over:#1864ab; }
* { box-sizing: border-box; }
html { scroll-behavior: smooth; }
body { margin:0; font: 14px/1.5 """ + FONT_STACK + """; color:var(--fg); background:var(--bg); }
header.top { background:#1f2933; color:#fff; padding:18px 32px 16px; }
header.top h1 { margin:0; font-size:22px; font-weight:600; overflow-wrap:anywhere; }
header.top .sub { color:#c5ccd6; font-size:13px; margin-top:4px; overflow-wrap:anywhere; }
nav { position:sticky; top:0; z-index:20; background:#fff; border-bottom:1px solid var(--border);
  padding:7px 32px; display:flex; flex-wrap:wrap; gap:2px 16px; font-size:13px; }
nav a { color:var(--muted); text-decoration:none; white-space:nowrap; }
nav a:hover { color:var(--accent); }
nav a.nav-part { color:var(--fg); font-weight:600; }
main { max-width:1320px; margin:0 auto; padding:8px 32px 32px; }
section { scroll-margin-top:48px; }
section.panel { background:var(--card); border:1px solid var(--border); border-radius:8px; padding:14px 20px 16px;
  margin:16px 0; }
section.part { margin:36px 0 0; padding:0 4px; border-top:3px solid #1f2933; }
section.part h2 { font-size:19px; margin-top:10px; }
section h2 { margin:0 0 2px; font-size:17px; font-weight:600; }
p.why { color:var(--muted); margin:0 0 12px; font-size:13px; max-width:980px; }
p { margin:6px 0; }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(160px, 1fr)); gap:10px; }
.card { border:1px solid var(--border); border-radius:6px; padding:9px 12px; background:#fafbfc; }
.card .v { font-size:21px; font-weight:600; font-variant-numeric:tabular-nums; line-height:1.25; }
.card .k { color:var(--fg); font-size:12px; }
.card .h { color:var(--muted); font-size:11px; }
.table-wrap { overflow-x:auto; }
.table-wrap.scroll { max-height:560px; overflow-y:auto; border:1px solid var(--border); border-radius:6px; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--border); vertical-align:top; }
td { overflow-wrap:anywhere; }
th { background:#f1f3f5; position:sticky; top:0; z-index:1; cursor:pointer; font-weight:600; vertical-align:bottom;
  user-select:none; }
th[data-dir="asc"]::after { content:" \\25B2"; font-size:9px; }
th[data-dir="desc"]::after { content:" \\25BC"; font-size:9px; }
tbody tr:nth-child(even) td { background:#fafbfc; }
tbody tr:hover td { background:#eef2ff; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
th.num { text-align:right; }
td.text { white-space:pre-wrap; overflow-wrap:anywhere; min-width:200px; max-width:640px; }
td .sub { color:var(--muted); font-size:11px; }
.pos { color:var(--under); font-weight:600; } .neg { color:var(--over); }
.good { color:#2b8a3e; font-weight:600; } .bad { color:#c92a2a; font-weight:600; }
ul.ex { margin:0; padding-left:16px; min-width:280px; } ul.ex li { overflow-wrap:anywhere; white-space:pre-wrap; }
ul.notes { margin:4px 0; padding-left:20px; }
.badge { display:inline-block; white-space:nowrap; overflow-wrap:normal; padding:0 8px; border-radius:10px;
  font-size:11px; font-weight:600; line-height:18px; }
.badge.emergent { background:#fff0e6; color:#c2410c; } .badge.anchored { background:#e7f5ff; color:#1864ab; }
.badge.background { background:#f1f3f5; color:#495057; }
.badge.other, .badge.noise { background:#f8f0fc; color:#862e9c; }
.swatch { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; vertical-align:middle; }
.note { background:#fff9db; border:1px solid #ffe066; border-radius:6px; padding:7px 12px; font-size:13px; }
pre.json { background:#f8f9fa; border:1px solid var(--border); border-radius:6px; padding:12px; overflow:auto;
  max-height:480px; font-size:12px; margin:0; white-space:pre-wrap; overflow-wrap:anywhere; }
details { margin:6px 0; } details summary { cursor:pointer; color:var(--accent); margin:4px 0; }
.muted { color:var(--muted); }
.banner { background:#fff4e6; border:1px solid #ffa94d; border-left:5px solid #e8590c; border-radius:6px;
  padding:8px 14px; font-size:13px; }
.banner ul { margin:0; padding-left:18px; } .banner li { margin:4px 0; overflow-wrap:anywhere; }
.banner .problem { font-weight:600; } .banner .cause, .banner .fix { color:var(--fg); }
.fig { width:100%; }
h3 { font-size:14px; margin:14px 0 6px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:8px 24px 28px; }
footer p { margin:2px 0; }
"""

#: Click-to-sort for every ``table.sortable``: reads ``data-v`` / ``textContent`` and moves rows — it never
#: writes HTML, so sorting cannot turn escaped text into markup.
SORT_JS = """
(function () {
  function key(td) {
    var v = td.getAttribute('data-v');
    if (v !== null) { return parseFloat(v); }
    return td.textContent.trim().toLowerCase();
  }
  var tables = document.querySelectorAll('table.sortable');
  Array.prototype.forEach.call(tables, function (t) {
    var ths = t.tHead ? t.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(ths, function (th, i) {
      th.addEventListener('click', function () {
        var body = t.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var asc = th.getAttribute('data-dir') !== 'asc';
        Array.prototype.forEach.call(ths, function (h) { h.removeAttribute('data-dir'); });
        th.setAttribute('data-dir', asc ? 'asc' : 'desc');
        rows.sort(function (a, b) {
          var x = key(a.cells[i]), y = key(b.cells[i]);
          var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""

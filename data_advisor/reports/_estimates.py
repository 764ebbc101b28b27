"""The report's "How sure are these numbers" section, from coverage.json's ``estimates`` block.

Why a section of its own: every gap, advisor choice and diversity figure inherits the assignment's errors.  With
reviewer labels (``audit --labels``) the audit estimates its accuracy on the unreviewed prompts and each principle's
share with a 95 % interval; without them the section says, in one sentence, that the numbers are unchecked on this
data and how to check them.  A principle whose interval reaches across its target is flagged "cannot tell yet":
the data cannot yet say whether it is under- or over-covered.
"""

from __future__ import annotations

from typing import Any

from data_advisor.coverage.report import CoverageReport
from data_advisor.reports._page import Col, Num, Raw, figure_html, join, note, para, pct, plot_text, table
from data_advisor.reports._target_bars import share_vs_target_figure

UNCHECKED = ("These numbers are unchecked on this data: nobody has compared the assignment with a person's judgement "
             "here. To check them, label a sample with `data-advisor review AUDIT --out review.jsonl` (fill in "
             "`label`), then re-run `data-advisor audit INPUT --labels review.jsonl`.")


def _anchored_interval(est: dict[str, Any], pid: str) -> tuple[float, float, float]:
    """(share, lo, hi) of a principle among *anchored* prompts (the scale of targets and gaps): its share of all
    prompts divided by the estimated anchored share (1 − the ``none`` share; its own uncertainty left out)."""
    anchored = max(1e-9, 1.0 - float(est["anchors"].get("none", {}).get("share", 0.0)))
    a = est["anchors"][pid]
    return (min(1.0, a["share"] / anchored), min(1.0, a["ci95"][0] / anchored), min(1.0, a["ci95"][1] / anchored))


def verdict(lo: float, hi: float, target: float) -> str:
    """"under-covered" / "over-covered" when the whole interval lies on one side of the target, else "cannot tell
    yet"."""
    if hi < target:
        return "under-covered"
    if lo > target:
        return "over-covered"
    return "cannot tell yet"


def estimates_figure(report: CoverageReport) -> tuple[Any, int]:
    """Each principle's corrected share of the anchored prompts with its 95 % interval, target as a tick."""
    import plotly.graph_objects as go

    est = report.estimates
    assert isinstance(est, dict)
    leaves = [a for a in report.gap_table() if a.id in est["anchors"]]
    ids = [a.id for a in leaves]
    vals = [_anchored_interval(est, a.id) for a in leaves]
    bar = go.Bar(
        y=ids, x=[v[0] for v in vals], orientation="h", name="estimated share",
        error_x={"type": "data", "symmetric": False, "array": [v[2] - v[0] for v in vals],
                 "arrayminus": [v[0] - v[1] for v in vals]},
        marker={"color": "#7b8794"},
        customdata=[[plot_text(a.name, 80), v[1], v[2], a.count] for a, v in zip(leaves, vals, strict=True)],
        hovertemplate=("<b>%{customdata[0]}</b><br>estimated share: %{x:.1%}<br>95%% interval: %{customdata[1]:.1%}"
                       "–%{customdata[2]:.1%}<br>raw count: %{customdata[3]:,}<extra></extra>"),
    )
    return share_vs_target_figure(bar, leaves, "estimated share of anchored prompts (95% interval)")


def estimates_body(report: CoverageReport, prefix: str = "") -> Raw:
    """The section's body: one sentence without labels; accuracy, bars with error bars and the verdicts with them."""
    est = report.estimates
    if not isinstance(est, dict):
        return para(UNCHECKED)
    if est.get("status") != "estimated":
        return join(para(UNCHECKED), note(f"Labels were given but not enough to estimate: {est.get('reason', '')}."))
    acc = est["accuracy"]
    lo, hi = acc["ci95"]
    head = para(f"Estimated accuracy on the prompts nobody reviewed: {pct(acc['value'], 0)} (95% interval "
                f"{pct(lo, 0)}–{pct(hi, 0)}), from {acc['n']} randomly chosen prompts a reviewer labelled, each graded "
                "by a model that did not learn from it. Shares below are corrected for the mistakes those labels "
                "measured; reviewed prompts count as labelled.")
    fig, h = estimates_figure(report)
    rows = []
    for a in report.gap_table():
        if a.id not in est["anchors"]:
            continue
        share, s_lo, s_hi = _anchored_interval(est, a.id)
        rows.append([a.name, a.count, Num(share, pct(share)), f"{pct(s_lo)}–{pct(s_hi)}",
                     Num(a.target_share, pct(a.target_share)), verdict(s_lo, s_hi, a.target_share)])
    none = est["anchors"].get("none")
    tail = (para(f"Unanchored (no principle): {pct(none['share'])} of all prompts (95% interval "
                 f"{pct(none['ci95'][0])}–{pct(none['ci95'][1])}).", "muted") if none else None)
    cols = [Col("principle"), Col("raw count", "num"), Col("estimated share", "num"), Col("95% interval"),
            Col("target", "num"), Col("verdict")]
    return join(head, figure_html(fig, f"{prefix}fig-estimates", h), table(cols, rows), tail)

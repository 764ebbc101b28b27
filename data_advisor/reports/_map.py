"""The prompt map of a report: each prompt at its 2-D position, coloured by the anchor it was assigned to.

Shared by the audit report, the run report's final coverage and the comparison report (which pools several
audits on one map); every string reaches plotly through :func:`plot_text` / :func:`plot_literal`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from data_advisor.coverage.report import CoverageReport
from data_advisor.reports._data import AuditInput, Points, pca_2d, stratified_sample
from data_advisor.reports._page import (
    NEUTRAL_COLOR,
    PALETTE,
    UNANCHORED_COLOR,
    base_layout,
    hover_block,
    plot_literal,
    plot_text,
)


def anchor_colors(report: CoverageReport) -> dict[str, str]:
    """Leaf anchor id → colour, in taxonomy order (stable across reports of the same taxonomy)."""
    return {a.id: PALETTE[i % len(PALETTE)] for i, a in enumerate(report.leaf_anchors())}


def map_coords(data: AuditInput) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The 2-D coordinates to draw: the audit's own (UMAP) map, else a PCA of embeddings.npy, else None."""
    pts = data.points
    if pts is None:
        return None
    if pts.has_coords():
        method = str(data.report.discovery.get("method") or "discovery")
        return pts.x, pts.y, f"the audit's own 2-D map ({method})"
    if data.embeddings is not None:
        coords, desc = pca_2d(data.embeddings)
        return coords[:, 0], coords[:, 1], f"{desc} of embeddings.npy — the audit stored no 2-D map"
    return None


def point_hover(pts: Points, i: int, labels: dict[int, str]) -> str:
    c = int(pts.cluster[i])
    where = f"cluster {c}: {plot_text(labels.get(c, ''), 32)}" if c >= 0 else "noise"
    return (f"<b>{plot_text(pts.ids[i], 40)}</b> · score {float(pts.score[i]):.2f} · {where}<br>"
            f"{hover_block(pts.texts[i])}")


def marker_size(n: int) -> int:
    return 7 if n <= 2_000 else 5 if n <= 10_000 else 4


def map_figure(data: AuditInput, labels: dict[int, str], max_points: int) -> tuple[Any, int, str, str | None] | None:
    """Scattergl map coloured by anchor (unanchored grey), emergent clusters marked, prompt text on hover.

    Returns (figure, height, how the coordinates were made, sampling note or None).
    """
    import plotly.graph_objects as go

    pts = data.points
    coords = map_coords(data)
    if pts is None or coords is None:
        return None
    xs, ys, how = coords
    report = data.report
    idx = stratified_sample(pts.anchor, max_points)
    sample_note = None
    if len(idx) < len(pts):
        sample_note = (f"The map shows a deterministic sample of {len(idx):,} of {len(pts):,} prompts, stratified by "
                     f"anchor (max_points={max_points:,}); tables and numbers use every prompt.")
    group_sizes = Counter(pts.anchor)
    names = {a.id: a.name for a in report.anchors}
    colors = anchor_colors(report)
    by_group: dict[str | None, list[int]] = {}
    for i in idx.tolist():
        by_group.setdefault(pts.anchor[i], []).append(i)
    order: list[str | None] = [None] + [a.id for a in report.leaf_anchors()]
    order += sorted(g for g in by_group if g is not None and g not in colors)
    size = marker_size(len(idx))
    fig = go.Figure()
    for g in order:
        members = by_group.get(g)
        if not members:
            continue
        sel = np.asarray(members, dtype=np.int64)
        name = "unanchored" if g is None else names.get(g, g)
        total = group_sizes[g]
        fig.add_trace(go.Scattergl(
            x=np.round(xs[sel], 3).astype(np.float32), y=np.round(ys[sel], 3).astype(np.float32),
            mode="markers", name=f"{plot_text(name, 36)} ({total:,})",
            marker={"size": size, "color": UNANCHORED_COLOR if g is None else colors.get(g, NEUTRAL_COLOR),
                    "opacity": 0.55 if g is None else 0.8},
            text=[point_hover(pts, i, labels) for i in members],
            hovertemplate=f"<b>{plot_literal(name, 60)}</b><br>%{{text}}<extra></extra>",
        ))
    # Cluster markers at the centroid of all members (not just the sampled ones).
    for kind_set, trace_name, visible, symbol, color in (
        ({"emergent"}, "emergent clusters", True, "diamond-open", "#c2410c"),
        ({"anchored", "background"}, "other cluster labels", "legendonly", "circle-open", "#343a40"),
    ):
        rows = [c for c in report.clusters if c.kind in kind_set]
        cx, cy, txt, hov = [], [], [], []
        for c in rows:
            m = pts.cluster == c.id
            if not m.any():
                continue
            cx.append(round(float(xs[m].mean()), 3))
            cy.append(round(float(ys[m].mean()), 3))
            txt.append(plot_text(labels.get(c.id, c.label), 40))
            nearest = plot_text(names.get(c.nearest_anchor, c.nearest_anchor), 60)
            hov.append(f"<b>cluster {c.id}: {plot_text(labels.get(c.id, c.label), 80)}</b><br>{c.kind}, "
                       f"{c.size:,} prompts<br>nearest anchor: {nearest} (cos {c.centroid_score:.2f})")
        if cx:
            fig.add_trace(go.Scatter(
                x=cx, y=cy, mode="markers+text", name=trace_name, visible=visible, text=txt,
                textposition="top center", textfont={"size": 11, "color": color}, hovertext=hov, hoverinfo="text",
                marker={"symbol": symbol, "size": 16, "color": color, "line": {"width": 2, "color": color}},
            ))
    fig.update_layout(**base_layout(
        hovermode="closest", dragmode="zoom",
        xaxis={"showticklabels": False, "zeroline": False, "showgrid": False, "title": None},
        yaxis={"showticklabels": False, "zeroline": False, "showgrid": False, "title": None},
        legend={"itemsizing": "constant", "font": {"size": 11}},
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
    ))
    return fig, 640, how, sample_note

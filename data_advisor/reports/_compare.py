"""Sections of the comparison report: several audits (e.g. before/after a run) side by side.

Why one shared map: each audit's own UMAP is fitted separately, so two maps cannot be overlaid.  When
every input kept its ``embeddings.npy`` we fit *one* projection over the pooled vectors and draw every
input in it, so "the new data fills this empty region" is visible directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from data_advisor.reports._data import PROJECTIONS, AuditInput, stratified_sample
from data_advisor.reports._map import anchor_colors, map_coords, marker_size
from data_advisor.reports._page import (
    PALETTE,
    Col,
    Num,
    Raw,
    base_layout,
    esc,
    hover_block,
    num,
    pct,
    plot_literal,
    plot_text,
    pp,
    table,
)

#: Input colours: dark first (the baseline), then distinct hues.
INPUT_COLORS = ["#343a40", "#e8590c", "#1c7ed6", "#2b8a3e", "#ae3ec9", "#f59f00", "#0c8599", "#c2255c"]


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    fmt: str  # "int" | "pct" | "f1" | "f2" | "f3"
    better: int  # +1 higher is better, -1 lower is better, 0 neither


METRICS = [
    MetricSpec("n_prompts", "Prompts", "int", 0),
    MetricSpec("anchors_covered", "Anchors covered", "int", +1),
    MetricSpec("coverage_ratio", "Coverage ratio", "pct", +1),
    MetricSpec("normalized_entropy", "Normalised entropy", "f3", +1),
    MetricSpec("gini", "Gini", "f3", -1),
    MetricSpec("kl_target_actual", "KL(target ‖ actual)", "f3", -1),
    MetricSpec("effective_anchors", "Effective anchors", "f2", +1),
    MetricSpec("vendi_score", "Vendi score", "f1", +1),
    MetricSpec("distinct_1", "Distinct-1", "f3", +1),
    MetricSpec("distinct_2", "Distinct-2", "f3", +1),
    MetricSpec("exact_duplicate_rate", "Exact duplicate rate", "pct", -1),
    MetricSpec("near_duplicate_rate", "Near duplicate rate", "pct", -1),
    MetricSpec("mean_score", "Mean anchor score", "f3", 0),
    MetricSpec("n_clusters", "Clusters", "int", 0),
    MetricSpec("noise_share", "Noise share", "pct", 0),
    MetricSpec("n_emergent_clusters", "Emergent clusters", "int", 0),
    MetricSpec("unanchored_share", "Unanchored share", "pct", -1),
]


def fmt_metric(v: Any, fmt: str) -> str:
    if v is None:
        return "–"
    if fmt == "int":
        return num(int(v))
    if fmt == "pct":
        return pct(float(v))
    return num(float(v), int(fmt[1]))


def fmt_delta(d: float, fmt: str) -> str:
    if fmt == "int":
        return f"{round(d):+,}"
    if fmt == "pct":
        return pp(d)
    return f"{d:+,.{int(fmt[1])}f}"


def unique_labels(labels: list[str]) -> list[str]:
    """Labels as given, with " (2)", " (3)" … appended to repeats so legends and columns stay distinct."""
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out


def input_color(i: int) -> str:
    return INPUT_COLORS[i % len(INPUT_COLORS)]


# ----------------------------------------------------------------------------------------------- overview
def overview_table(labels: list[str], inputs: list[AuditInput]) -> Raw:
    rows = []
    for i, (lab, d) in enumerate(zip(labels, inputs, strict=True)):
        m = d.report.metrics
        swatch = f'<span class="swatch" style="background:{input_color(i)}"></span>'
        rows.append([
            Raw(swatch + esc(lab)), str(d.report.dataset.get("source", "")),
            str(d.report.taxonomy.get("name") or d.report.taxonomy.get("id", "")),
            int(m.get("n_prompts", 0)), f"{m.get('anchors_covered', 0)} / {m.get('n_leaf_anchors', 0)}",
            Num(float(m.get("unanchored_share", 0.0)), pct(m.get("unanchored_share"))),
            "yes" if d.embeddings is not None else "no",
        ])
    return table([Col("Input"), Col("Source", "text"), Col("Taxonomy"), Col("Prompts", "num"),
                  Col("Anchors covered", "num"), Col("Unanchored", "num"), Col("Embeddings")], rows)


def taxonomy_notes(labels: list[str], inputs: list[AuditInput]) -> list[str]:
    base = inputs[0].report
    notes = []
    fp0 = base.settings.get("taxonomy_fingerprint")
    for lab, d in zip(labels[1:], inputs[1:], strict=True):
        fp = d.report.settings.get("taxonomy_fingerprint")
        if d.report.taxonomy.get("id") != base.taxonomy.get("id") or (fp0 and fp and fp != fp0):
            notes.append(f"'{lab}' used a different taxonomy ({d.report.taxonomy.get('id')}) than '{labels[0]}' "
                         f"({base.taxonomy.get('id')}); anchors are matched by id and missing ones count as 0.")
        if d.report.settings.get("model_id") != base.settings.get("model_id"):
            notes.append(f"'{lab}' was embedded with a different model than '{labels[0]}'; scores, Vendi and maps "
                         "are not directly comparable.")
    return notes


# ------------------------------------------------------------------------------------------- share figure
def anchor_union(inputs: list[AuditInput]) -> tuple[list[str], dict[str, str]]:
    ids: list[str] = []
    names: dict[str, str] = {}
    for d in inputs:
        for a in d.report.leaf_anchors():
            if a.id not in names:
                ids.append(a.id)
                names[a.id] = a.name
    return ids, names


def shares_figure(labels: list[str], inputs: list[AuditInput]) -> tuple[Any, int]:
    """Grouped horizontal bars: each leaf anchor's share in every input, with the first input's targets."""
    import plotly.graph_objects as go

    ids, names = anchor_union(inputs)
    fig = go.Figure()
    for i, (lab, d) in enumerate(zip(labels, inputs, strict=True)):
        share = {a.id: a for a in d.report.leaf_anchors()}
        fig.add_trace(go.Bar(
            y=ids, x=[share[a].share if a in share else 0.0 for a in ids], orientation="h",
            name=plot_text(lab, 40), marker={"color": input_color(i)},
            customdata=[[plot_text(names[a], 80), share[a].count if a in share else 0] for a in ids],
            hovertemplate=(f"<b>{plot_literal(lab, 40)}</b><br>%{{customdata[0]}}<br>share %{{x:.1%}}"
                           " (%{customdata[1]:,} prompts)<extra></extra>"),
        ))
    base = {a.id: a for a in inputs[0].report.leaf_anchors()}
    fig.add_trace(go.Scatter(
        y=[a for a in ids if a in base], x=[base[a].target_share for a in ids if a in base], mode="markers",
        name=f"target ({plot_text(labels[0], 30)})",
        marker={"symbol": "line-ns", "size": 16, "line": {"width": 3, "color": "#1f2933"}, "color": "#1f2933"},
        hovertemplate="target %{x:.1%}<extra></extra>",
    ))
    height = 120 + len(ids) * (14 * len(inputs) + 12)
    fig.update_layout(**base_layout(
        barmode="group", bargap=0.2, bargroupgap=0.05,
        xaxis={"tickformat": ".0%", "title": {"text": "share of anchored prompts"}, "rangemode": "tozero"},
        yaxis={"type": "category", "tickvals": ids, "ticktext": [plot_text(names[a], 48) for a in ids],
               "autorange": "reversed", "automargin": True},
        legend={"orientation": "h", "y": 1.01, "x": 1, "xanchor": "right", "yanchor": "bottom", "traceorder": "normal"},
        margin={"l": 20, "r": 20, "t": 50, "b": 50},
    ))
    return fig, height


def shares_table(labels: list[str], inputs: list[AuditInput]) -> Raw:
    ids, names = anchor_union(inputs)
    per = [{a.id: a for a in d.report.leaf_anchors()} for d in inputs]
    cols = [Col("Anchor"), Col(f"Target ({labels[0]})", "num")]
    cols += [Col(lab, "num") for lab in labels]
    cols += [Col(f"Δ {lab}", "num", f"share in '{lab}' minus share in '{labels[0]}'") for lab in labels[1:]]
    rows = []
    for a in ids:
        shares = [p[a].share if a in p else 0.0 for p in per]
        row: list[Any] = [Raw(f'{esc(names[a])}<div class="sub">{esc(a)}</div>')]
        t = per[0][a].target_share if a in per[0] else None
        row.append(Num(t or 0.0, pct(t)))
        row += [Num(s, pct(s)) for s in shares]
        row += [Num(s - shares[0], pp(s - shares[0])) for s in shares[1:]]
        rows.append(row)
    return table(cols, rows)


def delta_table(labels: list[str], inputs: list[AuditInput]) -> Raw:
    """Every headline metric per input, with its change against the first input (green = better)."""
    cols = [Col("Metric"), Col(labels[0], "num")]
    for lab in labels[1:]:
        cols += [Col(lab, "num"), Col(f"Δ vs {labels[0]}", "num")]
    rows = []
    base = inputs[0].report.metrics
    for spec in METRICS:
        b = base.get(spec.key)
        row: list[Any] = [spec.label, Num(float(b or 0), fmt_metric(b, spec.fmt))]
        for d in inputs[1:]:
            v = d.report.metrics.get(spec.key)
            row.append(Num(float(v or 0), fmt_metric(v, spec.fmt)))
            if v is None or b is None:
                row.append("–")
                continue
            delta = float(v) - float(b)
            cls = ""
            if spec.better and abs(delta) > 1e-9:
                cls = "good" if delta * spec.better > 0 else "bad"
            row.append(Num(delta, fmt_delta(delta, spec.fmt), cls))
        rows.append(row)
    return table(cols, rows, scroll=False)


# -------------------------------------------------------------------------------------------------- maps
def pooled_map(labels: list[str], inputs: list[AuditInput], max_points: int, projection: str
               ) -> tuple[Any, int, str, str | None]:
    """All inputs in one 2-D projection fitted over their pooled (sampled) embeddings, coloured by input."""
    import plotly.graph_objects as go

    per_input = max(1, max_points // len(inputs))
    picks = [stratified_sample(d.points.anchor, per_input) for d in inputs]  # type: ignore[union-attr]
    pooled = np.concatenate([np.asarray(d.embeddings[idx], dtype=np.float32)  # type: ignore[index]
                             for d, idx in zip(inputs, picks, strict=True)])
    coords, desc = PROJECTIONS[projection](pooled)
    sampled = any(len(idx) < len(d.points) for d, idx in zip(inputs, picks, strict=True))  # type: ignore[arg-type]
    _, names = anchor_union(inputs)
    fig = go.Figure()
    start = 0
    size = marker_size(len(pooled))
    for i, (lab, d, idx) in enumerate(zip(labels, inputs, picks, strict=True)):
        pts = d.points
        assert pts is not None
        xy = coords[start:start + len(idx)]
        start += len(idx)
        hover = [f"<b>{plot_text(pts.ids[j], 40)}</b> · "
                 f"{plot_text(names.get(pts.anchor[j], pts.anchor[j]) if pts.anchor[j] else 'unanchored', 50)}"
                 f"<br>{hover_block(pts.texts[j])}" for j in idx.tolist()]
        fig.add_trace(go.Scattergl(
            x=np.round(xy[:, 0], 4).astype(np.float32), y=np.round(xy[:, 1], 4).astype(np.float32), mode="markers",
            name=f"{plot_text(lab, 40)} ({len(pts):,})", text=hover,
            marker={"size": size, "color": input_color(i), "opacity": 0.6 if i == 0 else 0.75},
            hovertemplate=f"<b>{plot_literal(lab, 40)}</b><br>%{{text}}<extra></extra>",
        ))
    fig.update_layout(**base_layout(
        hovermode="closest",
        xaxis={"showticklabels": False, "zeroline": False, "showgrid": False, "title": {"text": "component 1"}},
        yaxis={"showticklabels": False, "zeroline": False, "showgrid": False, "title": {"text": "component 2"}},
        margin={"l": 30, "r": 10, "t": 20, "b": 30},
    ))
    how = (f"one shared {desc}, fitted on the pooled embeddings of the {len(pooled):,} prompts shown "
           f"(up to {per_input:,} per input)")
    note = None
    if sampled:
        note = (f"Each input is drawn as a deterministic sample of at most {per_input:,} prompts, stratified by "
                f"anchor (max_points={max_points:,} shared across {len(inputs)} inputs).")
    return fig, 620, how, note


def separate_maps(labels: list[str], inputs: list[AuditInput], max_points: int) -> tuple[Any, int] | None:
    """Fallback without embeddings: each input in its own audit map (side by side, not comparable)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    usable = [(lab, d, map_coords(d)) for lab, d in zip(labels, inputs, strict=True)]
    usable = [(lab, d, c) for lab, d, c in usable if c is not None and d.points is not None]
    if not usable:
        return None
    cols = 2 if len(usable) > 1 else 1
    rows = (len(usable) + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[plot_text(lab, 40) for lab, _, _ in usable],
                        horizontal_spacing=0.04, vertical_spacing=0.08)
    per_input = max(1, max_points // len(usable))
    colors = anchor_colors(inputs[0].report)
    _, names = anchor_union(inputs)
    for k, (_lab, d, c) in enumerate(usable):
        pts = d.points
        assert pts is not None and c is not None
        xs, ys, _ = c
        idx = stratified_sample(pts.anchor, per_input)
        groups: dict[str | None, list[int]] = {}
        for j in idx.tolist():
            groups.setdefault(pts.anchor[j], []).append(j)
        for g in sorted(groups, key=lambda g: (g is not None, str(g))):
            sel = np.asarray(groups[g])
            name = "unanchored" if g is None else names.get(g, g)
            fig.add_trace(go.Scattergl(
                x=np.round(xs[sel], 3).astype(np.float32), y=np.round(ys[sel], 3).astype(np.float32),
                mode="markers", name=plot_text(name, 36), legendgroup=str(g), showlegend=k == 0,
                marker={"size": marker_size(len(idx)), "color": "#b8bec6" if g is None else colors.get(g, PALETTE[-1])},
                text=[hover_block(pts.texts[j]) for j in groups[g]],
                hovertemplate=f"<b>{plot_literal(name, 50)}</b><br>%{{text}}<extra></extra>",
            ), row=k // cols + 1, col=k % cols + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(**base_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10}))
    return fig, 420 * rows

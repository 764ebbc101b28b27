"""The coverage sections of a report, built from one audit-like folder.

Used as-is by the audit report, as the "final coverage" part of a run report, and (the map helpers) by
the comparison report.  Every function returns escaped markup (:class:`Raw`) or a plotly figure whose
strings went through :func:`plot_text`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from data_advisor.coverage.report import AnchorCoverage, ClusterInfo, CoverageReport
from data_advisor.coverage.warnings import warnings_from_dicts
from data_advisor.reports._data import AuditInput
from data_advisor.reports._estimates import estimates_body
from data_advisor.reports._map import map_figure
from data_advisor.reports._page import (
    OVER_COLOR,
    UNDER_COLOR,
    Col,
    Num,
    Page,
    Raw,
    badge,
    base_layout,
    cards,
    details,
    esc,
    figure_html,
    gap_cell,
    gap_color,
    join,
    json_block,
    note,
    num,
    para,
    pct,
    plot_text,
    table,
    text_list,
)
from data_advisor.reports._target_bars import share_vs_target_figure

#: Takes a cluster's example prompts, returns a short human label (e.g. an LLM call); optional.
Labeler = Callable[[list[str]], str]

def cluster_labels(report: CoverageReport, labeler: Labeler | None) -> tuple[dict[int, str], list[str]]:
    """Cluster id → label: keyword labels from coverage.json, or ``labeler(examples)`` when given.

    A labeler failure (e.g. the LLM is down) must not cost the user the whole report, so the keyword
    label is kept for that cluster and the page says how many labels fell back.
    """
    labels = {c.id: c.label for c in report.clusters}
    if labeler is None:
        return labels, []
    failed: list[str] = []
    for c in report.clusters:
        texts = [str(e.get("text", "")) for e in c.examples if e.get("text")]
        if not texts:
            continue
        try:
            label = labeler(texts)
        except Exception as exc:  # any labeler fault degrades to the keyword label
            failed.append(f"{type(exc).__name__}: {exc}")
            continue
        if isinstance(label, str) and label.strip():
            labels[c.id] = " ".join(label.split())[:120]
    notes = []
    if failed:
        notes.append(f"The cluster labeler failed for {len(failed)} of {len(report.clusters)} clusters; "
                     f"their keyword labels are shown instead (first error: {failed[0][:200]}).")
    return labels, notes


# ------------------------------------------------------------------------------------------------ summary
def summary_cards(report: CoverageReport) -> Raw:
    m = report.metrics
    return cards([
        ("Prompts", num(int(m.get("n_prompts", 0))), f"{num(int(m.get('n_unique', 0)))} unique"),
        ("Anchors covered", f"{m.get('anchors_covered', 0)} / {m.get('n_leaf_anchors', 0)}",
         f"{pct(m.get('coverage_ratio'), 0)} with ≥ {m.get('coverage_min_count', 1)} prompts"),
        ("Normalised entropy", num(m.get("normalized_entropy")), "1 = evenly spread over anchors"),
        ("Vendi score", num(m.get("vendi_score"), 1), "effective number of distinct prompts"),
        ("KL(target ‖ actual)", num(m.get("kl_target_actual")), "0 = shares match the targets"),
        ("Exact duplicates", pct(m.get("exact_duplicate_rate")), "after case/space normalisation"),
        ("Near duplicates", pct(m.get("near_duplicate_rate")), f"cosine ≥ {m.get('near_duplicate_threshold', '')}"),
        ("Noise share", pct(m.get("noise_share")), "prompts in no discovered cluster"),
        ("Unanchored", pct(m.get("unanchored_share")), "prompts matching no principle"),
        ("Emergent clusters", num(int(m.get("n_emergent_clusters", 0))), "groups far from every principle"),
        refine_card(report),
    ])


def refine_card(report: CoverageReport) -> tuple[str, str, str]:
    """Whether the transductive refinement ran and how many anchored prompts it moved to another principle."""
    info = (report.settings.get("assignment") or {}).get("refine")
    if not isinstance(info, dict) or not info.get("ran"):
        why = info.get("reason", "") if isinstance(info, dict) else "not recorded"
        return ("Refinement", "off", str(why) or "principle = nearest anchor")
    if info.get("fell_back"):
        return ("Refinement", "fell back", f"kept nearest-anchor assignment: {info.get('reason', '')}")
    return ("Refinement", num(int(info.get("n_moved", 0))),
            f"anchored prompts moved ({pct(info.get('moved_share'))}) by the k-means step + label spreading")


def subtitle(report: CoverageReport) -> str:
    src = report.dataset.get("source") or "prompts"
    return f"{src} · taxonomy: {report.taxonomy.get('name') or report.taxonomy.get('id', '')}"


# ------------------------------------------------------------------------------------------------ warnings
def warnings_banner(report: CoverageReport) -> Raw | None:
    """The guard-rail warnings of ``coverage.json`` as a banner (None when there are none); every field is
    escaped, because principle names and the source path come from the user's files."""
    items = warnings_from_dicts(report.warnings)
    if not items:
        return None
    rows = "".join(
        f'<li data-code="{esc(w.code)}"><span class="problem">{esc(w.problem)}</span>'
        f'<div class="cause">Likely cause: {esc(w.cause)}</div><div class="fix">Fix: {esc(w.fix)}</div></li>'
        for w in items)
    return Raw(f'<div class="banner" role="alert"><ul>{rows}</ul></div>')


# ------------------------------------------------------------------------------------------- coverage bars
def coverage_figure(report: CoverageReport) -> tuple[Any, int]:
    """Per-leaf share (bars) against its target (black ticks), most under-covered first."""
    import plotly.graph_objects as go

    leaves = report.gap_table()
    ids = [a.id for a in leaves]
    custom = [[plot_text(a.name, 80), a.count, a.target_share, a.gap, a.deficit] for a in leaves]
    bar = go.Bar(
        y=ids, x=[a.share for a in leaves], orientation="h", name="actual share",
        marker={"color": [gap_color(a.gap) for a in leaves]}, customdata=custom,
        hovertemplate=("<b>%{customdata[0]}</b><br>prompts: %{customdata[1]:,}<br>share: %{x:.1%}"
                       "<br>target: %{customdata[2]:.1%}<br>gap: %{customdata[3]:+.1%}"
                       "<br>missing to target: %{customdata[4]:,}<extra></extra>"),
    )
    return share_vs_target_figure(bar, leaves, "share of anchored prompts", bargap=0.25)


# ---------------------------------------------------------------------------------------------- hierarchy
def hierarchy_figure(report: CoverageReport) -> tuple[Any, int] | None:
    """A treemap of the taxonomy (None when flat): tiles sized by target share or prompts, coloured by gap."""
    import plotly.graph_objects as go

    anchors = report.anchors
    if not any(a.parent for a in anchors):
        return None
    known = {a.id for a in anchors}
    root = "root"
    node = {a.id: f"a:{a.id}" for a in anchors}
    ids = [root] + [node[a.id] for a in anchors]
    parents = [""] + [node[a.parent] if a.parent in known else root for a in anchors]  # type: ignore[index]
    labels = [plot_text(report.taxonomy.get("name") or "all", 60)] + [plot_text(a.name, 40) for a in anchors]
    counts = [0] + [a.count if a.is_leaf else 0 for a in anchors]
    targets = [0.0] + [a.target_share if a.is_leaf else 0.0 for a in anchors]
    gaps = [0.0] + [a.gap for a in anchors]
    n_anch = sum(a.count for a in anchors if a.is_leaf)
    custom = [[n_anch, 1.0, 1.0, 0.0]] + [[a.count, a.share, a.target_share, a.gap] for a in anchors]
    lim = max(0.02, max(abs(g) for g in gaps))
    fig = go.Figure(go.Treemap(
        ids=ids, labels=labels, parents=parents, values=targets, branchvalues="remainder", customdata=custom,
        marker={"colors": gaps, "colorscale": [[0, OVER_COLOR], [0.5, "#f1f3f5"], [1, UNDER_COLOR]],
                "cmin": -lim, "cmax": lim, "cmid": 0, "showscale": True,
                "colorbar": {"title": {"text": "gap"}, "tickformat": "+.0%", "thickness": 12}},
        texttemplate="<b>%{label}</b><br>%{customdata[1]:.1%} vs target %{customdata[2]:.1%}",
        hovertemplate=("<b>%{label}</b><br>prompts: %{customdata[0]:,}<br>share: %{customdata[1]:.1%}"
                       "<br>target: %{customdata[2]:.1%}<br>gap: %{customdata[3]:+.1%}<extra></extra>"),
        root={"color": "#f8f9fa"}, tiling={"pad": 2}, pathbar={"visible": True},
    ))
    fig.update_layout(**base_layout(
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        updatemenus=[{
            "type": "buttons", "direction": "right", "x": 0, "y": 1.1, "xanchor": "left", "yanchor": "top",
            "showactive": True, "active": 0,
            "buttons": [
                {"label": "size: target share", "method": "restyle", "args": [{"values": [targets]}]},
                {"label": "size: prompts", "method": "restyle", "args": [{"values": [counts]}]},
            ],
        }],
    ))
    return fig, 560


# ------------------------------------------------------------------------------------------------- tables
def _anchor_cell(a: AnchorCoverage) -> Raw:
    return Raw(f'{esc(a.name)}<div class="sub">{esc(a.id)}</div>')


def gap_table(report: CoverageReport) -> Raw:
    names = {a.id: a.name for a in report.anchors}
    rows = []
    for a in report.gap_table():
        rows.append([
            _anchor_cell(a), names.get(a.parent or "", a.parent or ""), a.count,
            Num(a.share, pct(a.share)), Num(a.target_share, pct(a.target_share)),
            gap_cell(a.gap),
            a.deficit, Num(a.mean_score, num(a.mean_score, 2)), Num(a.vendi, num(a.vendi, 1)), a.n_clusters,
            text_list([str(e.get("text", "")) for e in a.examples[:2]], 240),
        ])
    cols = [Col("Anchor"), Col("Parent"), Col("Prompts", "num"), Col("Share", "num"), Col("Target", "num"),
            Col("Gap", "num", "target − share; positive = under-covered"),
            Col("Missing", "num", "prompts needed to reach the target share"),
            Col("Mean score", "num", "mean cosine of its prompts to the principle"),
            Col("Vendi", "num", "diversity of this anchor's prompts"), Col("Clusters", "num"), Col("Typical prompts")]
    out = table(cols, rows)
    parents = [a for a in report.anchors if not a.is_leaf]
    if parents:
        prow = [[_anchor_cell(a), a.count, Num(a.share, pct(a.share)), Num(a.target_share, pct(a.target_share)),
                 gap_cell(a.gap),
                 a.deficit] for a in sorted(parents, key=lambda a: (-a.gap, a.id))]
        out = join(out, Raw("<h3>Parent categories</h3>"),
                   table([Col("Category"), Col("Prompts", "num"), Col("Share", "num"), Col("Target", "num"),
                          Col("Gap", "num"), Col("Missing", "num")], prow))
    return out


def clusters_table(report: CoverageReport, labels: dict[int, str]) -> Raw:
    names = {a.id: a.name for a in report.anchors}
    rows = []
    c: ClusterInfo
    for c in report.clusters:
        label = labels.get(c.id, c.label)
        label_cell = Raw(esc(label) + (f'<div class="sub">keywords: {esc(c.label)}</div>' if label != c.label else ""))
        top = (Raw(f'{esc(names.get(c.top_anchor, c.top_anchor))}<div class="sub">{pct(c.top_anchor_share, 0)}'
                   " of the cluster</div>") if c.top_anchor else Raw('<span class="muted">none</span>'))
        rows.append([
            c.id, label_cell, badge(c.kind), c.size, top, names.get(c.nearest_anchor, c.nearest_anchor),
            Num(c.centroid_score, num(c.centroid_score, 2)), Num(c.background_score, num(c.background_score, 2)),
            Num(c.unanchored_share, pct(c.unanchored_share, 0)),
            text_list([str(e.get("text", "")) for e in c.examples[:3]], 240),
        ])
    cols = [Col("#", "num"), Col("Label"), Col("Kind"), Col("Size", "num"), Col("Top anchor"), Col("Nearest anchor"),
            Col("Centroid score", "num", "cosine of the cluster centre to its nearest principle"),
            Col("Background", "num", "cosine of the cluster centre to the nearest benign background anchor"),
            Col("Unanchored", "num"), Col("Examples")]
    return table(cols, rows, empty="Discovery found no clusters.")


def duplicates_body(report: CoverageReport) -> Raw:
    d = report.duplicates
    m = report.metrics
    groups = d.get("exact_groups") or []
    pairs = d.get("near_pairs") or []
    g_rows = [[int(g.get("size", 0)), str(g.get("text", "")), ", ".join(str(i) for i in g.get("ids", []))]
              for g in groups]
    p_rows = [[Num(float(p.get("similarity", 0.0)), num(float(p.get("similarity", 0.0)), 3)),
               str(p.get("a", {}).get("text", "")), str(p.get("b", {}).get("text", ""))] for p in pairs]
    n_groups = int(d.get("n_exact_groups", len(groups)))
    method = m.get("near_duplicate_method")
    search = f"; search: {method}" if method else ""  # reports written before the field existed lack it
    return join(
        para(f"Exact duplicate rate {pct(m.get('exact_duplicate_rate'))} ({n_groups:,} "
             f"{'group' if n_groups == 1 else 'groups'} of identical prompts "
             f"after normalising case and spacing); near-duplicate rate {pct(m.get('near_duplicate_rate'))} "
             f"(nearest neighbour cosine ≥ {m.get('near_duplicate_threshold', '')}{search})."),
        Raw(f"<h3>Exact duplicate groups (largest {len(groups)} of {n_groups:,})</h3>"),
        table([Col("Copies", "num"), Col("Text", "text"), Col("IDs")], g_rows, empty="No exact duplicates."),
        Raw(f"<h3>Near-duplicate pairs (top {len(pairs)})</h3>"),
        table([Col("Cosine", "num"), Col("Prompt A", "text"), Col("Prompt B", "text")], p_rows,
              empty="No near-duplicate pairs above the threshold."),
    )


def unanchored_body(data: AuditInput) -> Raw:
    report = data.report
    un = report.unanchored
    names = {a.id: a.name for a in report.anchors}
    pos: dict[str, int] = {}
    if data.points is not None:
        wanted = {str(e.get("id")) for e in un.get("examples", [])}
        pos = {pid: i for i, pid in enumerate(data.points.ids) if pid in wanted}
    rows = []
    for e in un.get("examples", []):
        pid = str(e.get("id", ""))
        i = pos.get(pid)
        score: Any = ""
        nearest = ""
        if i is not None and data.points is not None:
            score = Num(float(data.points.score[i]), num(float(data.points.score[i]), 2))
            na = data.points.nearest[i] if data.points.nearest else None
            nearest = names.get(na, na) if na else ""
        rows.append([pid, str(e.get("text", "")), nearest, score])
    return join(
        para(f"{num(int(un.get('count', 0)))} prompts ({pct(un.get('share'))}) fell under the harm boundary (harm "
             "score < 0.5: closer to the benign background than to the pooled harm anchors of every built-in "
             "taxonomy and this one). They are either benign or phrased far from every harm anchor; the most "
             "background-like are listed first."),
        table([Col("ID"), Col("Text", "text"), Col("Nearest principle"), Col("Best score", "num")], rows,
              empty="Every prompt is anchored."),
    )


def discovery_body(report: CoverageReport, extra_notes: list[str]) -> Raw:
    d = report.discovery
    notes = [str(n) for n in d.get("notes", [])] + extra_notes
    items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return join(
        para(f"Method: {d.get('method', '?')} · {int(d.get('n_clusters', 0)):,} clusters · noise share "
             f"{pct(d.get('noise_share'))} · {int(report.metrics.get('n_emergent_clusters', 0))} emergent."),
        Raw(f'<ul class="notes">{items}</ul>' if items else '<p class="muted">No notes.</p>'),
    )


def settings_body(report: CoverageReport) -> Raw:
    return json_block({"schema_version": report.schema_version, "dataset": report.dataset,
                       "taxonomy": report.taxonomy, "settings": report.settings})


# -------------------------------------------------------------------------------------------- the sections
def add_audit_sections(page: Page, data: AuditInput, *, prefix: str = "", title_prefix: str = "",
                       max_points: int = 20_000, labeler: Labeler | None = None,
                       with_summary: bool = True) -> None:
    """Append the coverage sections for one audit folder to ``page`` (ids prefixed for reuse)."""
    report = data.report
    labels, label_notes = cluster_labels(report, labeler)
    t = title_prefix
    banner = warnings_banner(report)
    if banner is not None:
        page.add(f"{prefix}warnings", f"{t}Check before trusting these numbers", banner,
                 "The audit found signs that the prompt → principle assignment, or the data, is not what the "
                 "numbers below assume.")
    if with_summary:
        body = summary_cards(report)
        if data.notes:
            body = join(body, *[note(n) for n in data.notes])
        page.add(f"{prefix}summary", f"{t}Key numbers", body,
                 "Shares are over anchored prompts (those assigned to a principle); unanchored prompts are counted "
                 "apart.")
    fig, h = coverage_figure(report)
    page.add(f"{prefix}coverage", f"{t}Coverage vs target", figure_html(fig, f"{prefix}fig-coverage", h),
             "Each bar is one principle's share of the anchored prompts; the black tick is its target share. "
             "Sorted by gap: orange = under-covered (generate more), blue = over-covered, grey = on target.")
    page.add(f"{prefix}estimates", f"{t}How sure are these numbers", estimates_body(report, prefix),
             "Whether a person's labels have checked the assignment on this data, and how far each share may be off.")
    hier = hierarchy_figure(report)
    if hier is not None:
        fig, h = hier
        page.add(f"{prefix}hierarchy", f"{t}Taxonomy tree", figure_html(fig, f"{prefix}fig-hierarchy", h),
                 "Tiles are principles nested under their categories, coloured by gap (orange = under-covered). "
                 "Click a category to zoom; the buttons switch tile size between target share and prompt count.")
    mp = map_figure(data, labels, max_points)
    if mp is None:
        page.add(f"{prefix}map", f"{t}Map of prompts",
                 note("No map: the folder has no assignments.jsonl with 2-D coordinates and no usable embeddings.npy."),
                 "Where prompts sit relative to each other.")
    else:
        fig, h, how, sample_note = mp
        page.add(f"{prefix}map", f"{t}Map of prompts",
                 join(note(sample_note) if sample_note else None,
                      para(f"Coordinates: {how}. Axes have no units; nearby points are similar prompts.", "muted"),
                      figure_html(fig, f"{prefix}fig-map", h)),
                 "Every dot is a prompt, coloured by the principle it was assigned to (grey = unanchored). "
                 "Diamonds mark emergent clusters — dense groups far from every principle. Hover for the text; "
                 "click legend entries to hide or isolate anchors.")
    page.add(f"{prefix}gaps", f"{t}Gap table", gap_table(report),
             "Principles from most under-covered to most over-covered, with how many prompts are missing.")
    n_cl = len(report.clusters)
    page.add(f"{prefix}clusters", f"{t}Clusters ({n_cl})", clusters_table(report, labels),
             "Fine-grained groups found by discovery. 'emergent' = far from every principle (a possible missing "
             "category), 'background' = benign, 'anchored' = inside a principle."
             + (" Labels come from the supplied labeler; keyword labels are shown beneath." if labeler else ""))
    page.add(f"{prefix}duplicates", f"{t}Duplicates", duplicates_body(report),
             "Repeated prompts inflate counts without adding coverage.")
    page.add(f"{prefix}unanchored", f"{t}Unanchored prompts", unanchored_body(data),
             "Prompts the taxonomy does not explain.")
    page.add(f"{prefix}discovery", f"{t}Discovery notes", discovery_body(report, [*data.run_notes, *label_notes]),
             "How clusters were found, and anything the pipeline had to work around.")
    page.add(f"{prefix}settings", f"{t}Settings", details("show settings JSON", settings_body(report)),
             "Everything needed to reproduce these numbers.")

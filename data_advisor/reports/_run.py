"""Sections of the advisor-run report: what each round chose, what it cost, and how coverage moved.

A run folder holds ``config.json``, ``rounds.jsonl`` (one :class:`RoundRecord` per round), ``prompts.jsonl``
(one :class:`KeptPrompt` per kept prompt), ``base.json`` when the run extended a base set (its coverage before
the run) and the final ``coverage.json`` (+ assignments/embeddings when present; with a base set they describe
base + additions, base rows first).  Records are read through the tolerant ``from_json`` of
:mod:`data_advisor.run_records` — a missing key reads as its default rather than failing the whole report —
because the report is most needed exactly when a run went wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_advisor.errors import InputError
from data_advisor.llm.redaction import is_secret_name
from data_advisor.reports._data import AuditInput
from data_advisor.reports._page import (
    NEUTRAL_COLOR,
    OVER_COLOR,
    PALETTE,
    UNDER_COLOR,
    Col,
    Num,
    Raw,
    base_layout,
    cards,
    esc,
    json_block,
    num,
    para,
    pct,
    plot_text,
    pp,
    table,
)
from data_advisor.run_records import BaseRecord, BaseSnapshot, KeptPrompt, RoundRecord, as_float
from data_advisor.runs import read_run

#: Generated prompts shown per round in the samples table.
PROMPTS_PER_ROUND = 5


@dataclass
class RunInput:
    path: Path
    config: dict[str, Any]
    rounds: list[RoundRecord]
    prompt_samples: dict[int, list[KeptPrompt]] = field(default_factory=dict)
    n_prompt_rows: int = 0
    base: BaseSnapshot | None = None  # base.json: the base set's record and coverage before the run

    @property
    def n_base(self) -> int:
        record = self.base.base_set if self.base is not None else BaseRecord.from_json(self.config.get("base_set"))
        return record.count if record is not None else 0


def load_run_dir(path: Path) -> RunInput:
    """A run folder through the one run reader (:func:`data_advisor.runs.read_run`), with a per-round sample of its
    prompts."""
    path = Path(path)
    if path.is_dir() and not (path / "rounds.jsonl").exists():
        raise InputError(f"no rounds.jsonl in {path}",
                         "pass a run folder (the --out of `data-advisor generate` or `curate`)")
    run = read_run(path)
    samples: dict[int, list[KeptPrompt]] = {}
    for kp in run.prompts:
        bucket = samples.setdefault(kp.round, [])
        if len(bucket) < PROMPTS_PER_ROUND:
            bucket.append(kp)
    return RunInput(path, run.config, sorted(run.rounds, key=lambda r: r.round), samples, len(run.prompts), run.base)


def redact(obj: Any) -> Any:
    """Copy of a config with credential-like values replaced, so a report can be shared safely."""
    if isinstance(obj, dict):
        return {k: ("[redacted]" if is_secret_name(str(k)) and v not in (None, "") else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------------ summary
def run_cards(run: RunInput) -> Raw:
    r = run.rounds
    gen = sum(x.n_generated for x in r)
    kept = sum(x.kept for x in r)
    on = sum(x.on_target or 0 for x in r)
    tokens = sum(x.prompt_tokens + x.completion_tokens for x in r)
    cost = sum(x.cost_usd for x in r)
    base_metrics = run.base.metrics if run.base is not None else {}
    first = base_metrics or (r[0].metrics if r else {})
    last = r[-1].metrics if r else {}
    since = "base → after the last round" if base_metrics else "after round 1 → after the last"

    def moved(key: str, digits: int = 3) -> str:
        a, b = first.get(key), last.get(key)
        return "–" if b is None else (f"{num(as_float(b), digits)}" if a is None else
                                      f"{num(as_float(a), digits)} → {num(as_float(b), digits)}")

    return cards([
        ("Rounds", num(len(r)), ""),
        ("Prompts now", num(r[-1].n_prompts + run.n_base) if r else "–",
         f"{num(kept)} kept by the run" + (f" on top of {num(run.n_base)} base prompts" if run.n_base else "")),
        ("Generated", num(gen), f"{pct(kept / gen if gen else None)} kept"),
        ("On target", pct(on / kept if kept else None), "kept prompts landing on the chosen anchor"),
        ("Tokens", num(tokens), "prompt + completion"),
        ("Cost", f"${cost:,.4f}", "sum of reported round costs"),
        ("Normalised entropy", moved("normalized_entropy"), since),
        ("Coverage ratio", moved("coverage_ratio"), since),
        ("KL(target ‖ actual)", moved("kl_target_actual"), since),
        ("Vendi score", moved("vendi_score", 1), since),
    ])


# ------------------------------------------------------------------------------------------------ figures
METRIC_PANELS = [
    ("normalized_entropy", "Normalised entropy (↑ more even)"),
    ("coverage_ratio", "Coverage ratio (↑)"),
    ("vendi_score", "Vendi score (↑ more diverse)"),
    ("kl_target_actual", "KL(target ‖ actual) (↓ closer to target)"),
]


def metrics_figure(run: RunInput) -> tuple[Any, int]:
    """Four small panels: each coverage metric against the number of prompts, one point per round."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t in METRIC_PANELS], horizontal_spacing=0.08,
                        vertical_spacing=0.16)
    xs = [r.n_prompts + run.n_base for r in run.rounds]
    rounds = [r.round for r in run.rounds]
    for k, (key, title) in enumerate(METRIC_PANELS):
        ys = [r.metrics.get(key) for r in run.rounds]
        fig.add_trace(go.Scatter(
            x=xs, y=[None if v is None else as_float(v) for v in ys], mode="lines+markers", name=title,
            customdata=rounds, line={"color": PALETTE[k], "width": 2}, marker={"size": 6}, showlegend=False,
            hovertemplate="round %{customdata}<br>%{x:,} prompts<br>%{y:.4f}<extra></extra>",
        ), row=k // 2 + 1, col=k % 2 + 1)
    fig.update_xaxes(title_text="prompts", row=2)
    fig.update_layout(**base_layout(margin={"l": 50, "r": 20, "t": 40, "b": 50}))
    return fig, 560


def yield_figure(run: RunInput) -> tuple[Any, int]:
    """Stacked bars per round: kept on target, kept elsewhere, then rejections by reason (total = generated)."""
    import plotly.graph_objects as go

    rounds = [r.round for r in run.rounds]
    on = [r.on_target or 0 for r in run.rounds]
    kept = [r.kept for r in run.rounds]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=rounds, y=on, name="kept · on target", marker={"color": "#2b8a3e"},
                         hovertemplate="round %{x}: %{y} kept on target<extra></extra>"))
    fig.add_trace(go.Bar(x=rounds, y=[max(0, k - o) for k, o in zip(kept, on, strict=True)], name="kept · other anchor",
                         marker={"color": "#8ce99a"}, hovertemplate="round %{x}: %{y} kept elsewhere<extra></extra>"))
    reasons = sorted({k for r in run.rounds for k in r.rejected_reasons})
    reds = ["#c92a2a", "#e8590c", "#f08c00", "#d6336c", "#ae3ec9", "#862e9c", "#fa5252", "#ff922b"]
    for j, reason in enumerate(reasons):
        ys = [r.rejected_reasons.get(reason, 0) for r in run.rounds]
        fig.add_trace(go.Bar(x=rounds, y=ys, name=f"rejected · {plot_text(reason, 40)}",
                             marker={"color": reds[j % len(reds)]},
                             hovertemplate=f"round %{{x}}: %{{y}} rejected ({plot_text(reason, 60)})<extra></extra>"))
    unexplained = [max(0, r.rejected - sum(v for k, v in r.rejected_reasons.items() if k != "over_budget"))
                   for r in run.rounds]
    if any(unexplained):
        fig.add_trace(go.Bar(x=rounds, y=unexplained, name="rejected · unspecified", marker={"color": NEUTRAL_COLOR}))
    fig.update_layout(**base_layout(barmode="stack", xaxis={"title": {"text": "round"}, "dtick": 1},
                                    yaxis={"title": {"text": "generated prompts"}}, bargap=0.2))
    return fig, 380


def cost_figure(run: RunInput) -> tuple[Any, int]:
    """Cumulative tokens (bars, left axis) and cost in USD (line, right axis) by round."""
    import plotly.graph_objects as go

    rounds = [r.round for r in run.rounds]
    pt = ct = 0
    cost = 0.0
    cum_p, cum_c, cum_cost = [], [], []
    for r in run.rounds:
        pt += r.prompt_tokens
        ct += r.completion_tokens
        cost += r.cost_usd
        cum_p.append(pt)
        cum_c.append(ct)
        cum_cost.append(round(cost, 6))
    fig = go.Figure()
    fig.add_trace(go.Bar(x=rounds, y=cum_p, name="prompt tokens (cumulative)", marker={"color": "#a5d8ff"},
                         hovertemplate="round %{x}: %{y:,} prompt tokens<extra></extra>"))
    fig.add_trace(go.Bar(x=rounds, y=cum_c, name="completion tokens (cumulative)", marker={"color": "#4dabf7"},
                         hovertemplate="round %{x}: %{y:,} completion tokens<extra></extra>"))
    fig.add_trace(go.Scatter(x=rounds, y=cum_cost, name="cost USD (cumulative)", yaxis="y2", mode="lines+markers",
                             line={"color": UNDER_COLOR, "width": 2},
                             hovertemplate="round %{x}: $%{y:,.4f}<extra></extra>"))
    fig.update_layout(**base_layout(
        barmode="stack", xaxis={"title": {"text": "round"}, "dtick": 1},
        yaxis={"title": {"text": "tokens"}, "rangemode": "tozero"},
        yaxis2={"title": {"text": "USD"}, "overlaying": "y", "side": "right", "rangemode": "tozero",
                "tickprefix": "$", "tickformat": ",.4~f", "tickmode": "auto", "showgrid": False},
        legend={"orientation": "h", "y": 1.08, "x": 0},
        margin={"l": 60, "r": 60, "t": 50, "b": 40},
    ))
    return fig, 380


def growth_figure(run: RunInput, names: dict[str, str], colors: dict[str, str]) -> tuple[Any, int] | None:
    """Stacked area of prompts per anchor after each round."""
    import plotly.graph_objects as go

    if not any(r.anchor_counts for r in run.rounds):
        return None
    rounds = [r.round for r in run.rounds]
    seen: list[str] = [a for a in names if any(a in r.anchor_counts for r in run.rounds)]
    seen += sorted({a for r in run.rounds for a in r.anchor_counts} - set(seen))
    fig = go.Figure()
    for j, a in enumerate(seen):
        ys = [r.anchor_counts.get(a, 0) for r in run.rounds]
        label = names.get(a, a)
        fig.add_trace(go.Scatter(
            x=rounds, y=ys, name=plot_text(label, 40), stackgroup="anchors", mode="lines",
            line={"width": 0.5, "color": colors.get(a, PALETTE[j % len(PALETTE)])},
            hovertemplate=f"<b>{plot_text(label, 60).replace('%{', '%&#123;')}</b><br>round %{{x}}: %{{y:,}} prompts"
                          "<extra></extra>",
        ))
    fig.update_layout(**base_layout(xaxis={"title": {"text": "round"}, "dtick": 1},
                                    yaxis={"title": {"text": "anchored prompts"}}, hovermode="x unified",
                                    legend={"font": {"size": 11}}))
    return fig, 460


def gaps_figure(run: RunInput, names: dict[str, str]) -> tuple[Any, int] | None:
    """Heatmap of each anchor's gap before each round: the advisor should be burning the orange down."""
    import plotly.graph_objects as go

    if not any(r.gaps_before for r in run.rounds):
        return None
    rounds = [r.round for r in run.rounds]
    anchors: list[str] = [a for a in names if any(a in r.gaps_before for r in run.rounds)]
    anchors += sorted({a for r in run.rounds for a in r.gaps_before} - set(anchors))
    z = [[r.gaps_before.get(a) for r in run.rounds] for a in anchors]
    lim = max([abs(as_float(v)) for row in z for v in row if v is not None] + [0.01])
    fig = go.Figure(go.Heatmap(
        z=[[None if v is None else as_float(v) for v in row] for row in z], x=rounds, y=list(range(len(anchors))),
        zmid=0, zmin=-lim, zmax=lim, colorscale=[[0, OVER_COLOR], [0.5, "#f8f9fa"], [1, UNDER_COLOR]],
        customdata=[[plot_text(names.get(a, a), 60)] * len(rounds) for a in anchors],
        colorbar={"title": {"text": "gap"}, "tickformat": "+.0%", "thickness": 12},
        hovertemplate="<b>%{customdata}</b><br>before round %{x}: gap %{z:+.1%}<extra></extra>", xgap=1, ygap=1,
    ))
    fig.update_layout(**base_layout(
        xaxis={"title": {"text": "round"}, "dtick": 1},
        yaxis={"tickvals": list(range(len(anchors))), "ticktext": [plot_text(names.get(a, a), 40) for a in anchors],
               "autorange": "reversed", "automargin": True},
        margin={"l": 20, "r": 20, "t": 20, "b": 40},
    ))
    return fig, 120 + 22 * max(4, len(anchors))


# ------------------------------------------------------------------------------------------------- tables
def rounds_table(run: RunInput, names: dict[str, str]) -> Raw:
    rows = []
    for r in run.rounds:
        a = r.anchor_id
        reasons = r.rejected_reasons
        reason_txt = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        kept = r.kept
        on = r.on_target or 0
        mode = r.advice_mode or ""
        if r.advice_overridden:
            mode += " (overridden)"
        if r.advice_repeats:
            mode += f" · {r.advice_repeats} repeat{'s' if r.advice_repeats > 1 else ''}"
        rows.append([
            r.round, r.issue or "",
            Raw('<span class="muted">—</span>') if a is None else names.get(a, a),
            Raw(f'{esc(mode)}<div class="sub">{esc(r.advice_note)}</div>' if r.advice_note else esc(mode)),
            r.rationale or "", r.n_generated, kept,
            Raw(f'{r.rejected}<div class="sub">{esc(reason_txt)}</div>' if reason_txt else str(r.rejected)),
            Num(on, f"{on} ({pct(on / kept, 0)})" if kept else str(on)),
            r.prompt_tokens + r.completion_tokens,
            Num(r.cost_usd, f"${r.cost_usd:,.4f}"), r.n_prompts + run.n_base,
        ])
    cols = [Col("Round", "num"), Col("Issue"), Col("Anchor"), Col("Mode"), Col("Rationale", "text"),
            Col("Generated", "num"), Col("Kept", "num"), Col("Rejected", "num"), Col("On target", "num"),
            Col("Tokens", "num"), Col("Cost", "num"), Col("Total", "num", "prompts in the data set after this round")]
    return table(cols, rows, empty="The run has no rounds yet.")


def adherence_table(run: RunInput, names: dict[str, str]) -> Raw | None:
    """Per advised anchor: rounds, kept, on target, generator refusals, rounds held back (None without advice)."""
    rows: dict[str, list[int]] = {}
    for r in run.rounds:
        if r.anchor_id is not None and not r.recovered:
            row = rows.setdefault(r.anchor_id, [0, 0, 0, 0, 0])
            row[0] += 1
            row[1] += r.kept
            row[2] += r.on_target or 0
            row[3] += r.refusals.get(r.anchor_id, r.rejected_reasons.get("refusal", 0))
        for a in r.stalled:
            rows.setdefault(a, [0, 0, 0, 0, 0])[4] += 1
    if not rows:
        return None
    body = [[names.get(a, a), n, kept, Num(on, f"{on} ({pct(on / kept, 0)})" if kept else str(on)), ref, held]
            for a, (n, kept, on, ref, held) in sorted(rows.items(), key=lambda kv: (-kv[1][4], -kv[1][3], kv[0]))]
    cols = [Col("Anchor"), Col("Rounds advised", "num"), Col("Kept", "num"), Col("On target", "num"),
            Col("Refusals", "num", "candidates the generator refused (filtered out)"),
            Col("Rounds held back", "num", "rounds the advisor was not allowed to pick it (off target)")]
    return table(cols, body)


def prompts_table(run: RunInput, names: dict[str, str]) -> Raw:
    rows = []
    for rnd in sorted(run.prompt_samples):
        for p in run.prompt_samples[rnd]:
            a = p.anchor_id
            rows.append([rnd, p.id, p.text, "" if a is None else names.get(a, a), p.issue or "",
                         "" if p.score is None else Num(p.score, num(p.score, 2))])
    intro = para(f"{run.n_prompt_rows:,} prompts in prompts.jsonl; the first {PROMPTS_PER_ROUND} kept in each round "
                 "are shown.")
    cols = [Col("Round", "num"), Col("ID"), Col("Text", "text"), Col("Anchor"), Col("Issue"), Col("Score", "num")]
    return Raw(intro.html + table(cols, rows, empty="No prompts.jsonl in this run folder.").html)


def config_body(run: RunInput) -> Raw:
    return json_block(redact(run.config))


# ------------------------------------------------------------------------------------------- base → after
def base_anchor_table(run: RunInput, final: AuditInput | None, names: dict[str, str]) -> Raw | None:
    """Per anchor, the base set's count, share and gap before the run → after it (largest gap before first)."""
    if run.base is None:
        return None
    counts0, shares0, gaps0 = run.base.anchor_counts, run.base.shares, run.base.gaps
    after = {a.id: a for a in final.report.leaf_anchors()} if final is not None else {}
    last_counts = run.rounds[-1].anchor_counts if run.rounds else {}
    rows = []
    for a in sorted(gaps0, key=lambda k: (-gaps0[k], k)):
        fa = after.get(a)
        n1 = fa.count if fa is not None else last_counts.get(a, counts0.get(a, 0))
        s1 = fa.share if fa is not None else None
        g1 = fa.gap if fa is not None else None
        ev = fa.subcluster_evenness if fa is not None else None
        rows.append([
            Raw(f'{esc(names.get(a, a))}<div class="sub">{esc(a)}</div>'),
            Num(fa.target_share if fa is not None else 0.0, pct(fa.target_share) if fa is not None else "–"),
            Num(counts0.get(a, 0), f"{counts0.get(a, 0):,} → {n1:,}"),
            Num(n1 - counts0.get(a, 0), f"{n1 - counts0.get(a, 0):+,}"),
            Num(shares0.get(a, 0.0), f"{pct(shares0.get(a))} → {pct(s1)}"),
            Num(gaps0.get(a, 0.0), f"{pp(gaps0.get(a, 0.0))} → {pp(g1) if g1 is not None else '–'}",
                "good" if g1 is not None and abs(g1) < abs(gaps0.get(a, 0.0)) - 1e-9 else ""),
            Num(ev if ev is not None else -1.0, "–" if ev is None else num(ev, 2)),
            Num(len(fa.subclusters) if fa is not None else 0, str(len(fa.subclusters)) if fa is not None else "–"),
        ])
    cols = [Col("Anchor"), Col("Target", "num"), Col("Prompts (base → after)", "num"), Col("Added", "num"),
            Col("Share (base → after)", "num"), Col("Gap (base → after)", "num", "target share − share; green = closer"),
            Col("Evenness after", "num", "normalised entropy of the anchor's prompts over its sub-clusters"),
            Col("Sub-clusters after", "num")]
    return table(cols, rows)


def base_cluster_table(run: RunInput, final: AuditInput | None, names: dict[str, str]) -> Raw | None:
    """Per fine-grained cluster of the final clustering: how many members were in the base and how many the run
    added (assignments.jsonl lists the base prompts first, ``base_set.count`` of them)."""
    if run.base is None or final is None or final.points is None or not final.report.clusters:
        return None
    nb = min(run.n_base, len(final.points))
    labels = final.points.cluster
    base_n: dict[int, int] = {}
    added_n: dict[int, int] = {}
    for i, c in enumerate(labels.tolist()):
        if c == -1:
            continue
        bucket = base_n if i < nb else added_n
        bucket[c] = bucket.get(c, 0) + 1
    rows = []
    for c in sorted(final.report.clusters, key=lambda c: (-added_n.get(c.id, 0), -c.size, c.id)):
        b, a = base_n.get(c.id, 0), added_n.get(c.id, 0)
        top = names.get(c.top_anchor, c.top_anchor) if c.top_anchor else "unanchored"
        rows.append([c.id, c.label, c.kind, top, Num(b, f"{b:,} → {b + a:,}"), Num(a, f"{a:+,}"),
                     "new" if b == 0 and a else ""])
    cols = [Col("Cluster", "num"), Col("Keywords", "text"), Col("Kind"), Col("Top anchor"),
            Col("Members (base → after)", "num"), Col("Added", "num"), Col("", "", "clusters only the additions reach")]
    return table(cols, rows)

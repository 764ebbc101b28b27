"""Sections of the advisor-run report: what each round chose, what it cost, and how coverage moved.

A run folder holds ``config.json``, ``rounds.jsonl`` (one record per round), ``prompts.jsonl`` (every kept
prompt) and the final ``coverage.json`` (+ assignments/embeddings when present).  Rounds are read
defensively — a missing key shows as "–" rather than failing the whole report — because the report is
most needed exactly when a run went wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_advisor.errors import InputError
from data_advisor.reports._data import read_json, read_jsonl
from data_advisor.reports._page import (
    NEUTRAL_COLOR,
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
    table,
)

#: Generated prompts shown per round in the samples table.
PROMPTS_PER_ROUND = 5
#: Config keys whose values are never shown (a run config may carry credentials).
SECRET_KEY = re.compile(r"(api[_-]?key|secret|password|passwd|authorization|bearer|credential|access[_-]?token)", re.I)


@dataclass
class RunInput:
    path: Path
    config: dict[str, Any]
    rounds: list[dict[str, Any]]
    prompt_samples: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    n_prompt_rows: int = 0


def load_run_dir(path: Path) -> RunInput:
    """Read config.json, rounds.jsonl and a per-round sample of prompts.jsonl."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path} is not a folder", "pass the advisor run folder (the one with rounds.jsonl)")
    rp = path / "rounds.jsonl"
    if not rp.exists():
        raise InputError(f"no rounds.jsonl in {path}", "pass an advisor run folder, or run `data-advisor run` first")
    cp = path / "config.json"
    config = read_json(cp) if cp.exists() else {}
    if not isinstance(config, dict):
        config = {"config": config}
    rounds = sorted(read_jsonl(rp), key=lambda r: _int(r.get("round")))
    samples: dict[int, list[dict[str, Any]]] = {}
    n = 0
    pp_ = path / "prompts.jsonl"
    per_round: dict[int, int] = {}
    if pp_.exists():
        for row in read_jsonl(pp_):
            n += 1
            rnd = _int(row.get("round"))
            per_round[rnd] = per_round.get(rnd, 0) + 1
            bucket = samples.setdefault(rnd, [])
            if len(bucket) < PROMPTS_PER_ROUND:
                bucket.append(row)
        _check_run_files(path, rounds, per_round)
    return RunInput(path, config, rounds, samples, n)


def _check_run_files(path: Path, rounds: list[dict[str, Any]], per_round: dict[int, int]) -> None:
    """prompts.jsonl and rounds.jsonl must tell one story: a report drawn from a file that lost records would be
    silently wrong. A run killed mid-round legitimately has prompts of its last round without that round's record,
    and a resume that dropped a torn last line leaves that line's round one prompt short of what it kept; anything
    more (a round missing several of its prompts, prompts of unrecorded earlier rounds) is damage."""
    fix = "re-run the same generate/curate command to resume (it repairs a torn last line), or restore the file"
    for r in rounds:
        kept = _int(r.get("kept"), -1)
        have = per_round.get(_int(r.get("round"), -1), 0)
        if have < kept - 1:
            raise InputError(f"{path / 'prompts.jsonl'} holds {have} prompts of round {_int(r.get('round'))} but "
                             f"{path / 'rounds.jsonl'} records {kept} kept (records were lost)", fix)
    if per_round:
        unrecorded = set(per_round) - {_int(r.get("round"), -1) for r in rounds} - {max(per_round)}
        if unrecorded:
            raise InputError(f"{path / 'rounds.jsonl'} lacks the records of round(s) "
                             f"{', '.join(map(str, sorted(unrecorded)[:5]))} that prompts.jsonl has prompts of", fix)


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _float(v: Any, default: float = 0.0) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def redact(obj: Any) -> Any:
    """Copy of a config with credential-like values replaced, so a report can be shared safely."""
    if isinstance(obj, dict):
        return {k: ("[redacted]" if SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------------ summary
def run_cards(run: RunInput) -> Raw:
    r = run.rounds
    gen = sum(_int(x.get("n_generated")) for x in r)
    kept = sum(_int(x.get("kept")) for x in r)
    on = sum(_int(x.get("on_target")) for x in r)
    tokens = sum(_int(x.get("prompt_tokens")) + _int(x.get("completion_tokens")) for x in r)
    cost = sum(_float(x.get("cost_usd")) for x in r)
    first = r[0].get("metrics", {}) if r else {}
    last = r[-1].get("metrics", {}) if r else {}

    def moved(key: str, digits: int = 3) -> str:
        a, b = first.get(key), last.get(key)
        return "–" if b is None else (f"{num(_float(b), digits)}" if a is None else
                                      f"{num(_float(a), digits)} → {num(_float(b), digits)}")

    return cards([
        ("Rounds", num(len(r)), ""),
        ("Prompts now", num(_int(r[-1].get("n_prompts"))) if r else "–", f"{num(kept)} kept by the run"),
        ("Generated", num(gen), f"{pct(kept / gen if gen else None)} kept"),
        ("On target", pct(on / kept if kept else None), "kept prompts landing on the chosen anchor"),
        ("Tokens", num(tokens), "prompt + completion"),
        ("Cost", f"${cost:,.4f}", "sum of reported round costs"),
        ("Normalised entropy", moved("normalized_entropy"), "after round 1 → after the last"),
        ("Coverage ratio", moved("coverage_ratio"), "after round 1 → after the last"),
        ("KL(target ‖ actual)", moved("kl_target_actual"), "after round 1 → after the last"),
        ("Vendi score", moved("vendi_score", 1), "after round 1 → after the last"),
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
    xs = [_int(r.get("n_prompts")) for r in run.rounds]
    rounds = [_int(r.get("round")) for r in run.rounds]
    for k, (key, title) in enumerate(METRIC_PANELS):
        ys = [r.get("metrics", {}).get(key) for r in run.rounds]
        fig.add_trace(go.Scatter(
            x=xs, y=[None if v is None else _float(v) for v in ys], mode="lines+markers", name=title,
            customdata=rounds, line={"color": PALETTE[k], "width": 2}, marker={"size": 6}, showlegend=False,
            hovertemplate="round %{customdata}<br>%{x:,} prompts<br>%{y:.4f}<extra></extra>",
        ), row=k // 2 + 1, col=k % 2 + 1)
    fig.update_xaxes(title_text="prompts", row=2)
    fig.update_layout(**base_layout(margin={"l": 50, "r": 20, "t": 40, "b": 50}))
    return fig, 560


def yield_figure(run: RunInput) -> tuple[Any, int]:
    """Stacked bars per round: kept on target, kept elsewhere, then rejections by reason (total = generated)."""
    import plotly.graph_objects as go

    rounds = [_int(r.get("round")) for r in run.rounds]
    on = [_int(r.get("on_target")) for r in run.rounds]
    kept = [_int(r.get("kept")) for r in run.rounds]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=rounds, y=on, name="kept · on target", marker={"color": "#2b8a3e"},
                         hovertemplate="round %{x}: %{y} kept on target<extra></extra>"))
    fig.add_trace(go.Bar(x=rounds, y=[max(0, k - o) for k, o in zip(kept, on, strict=True)], name="kept · other anchor",
                         marker={"color": "#8ce99a"}, hovertemplate="round %{x}: %{y} kept elsewhere<extra></extra>"))
    reasons = sorted({str(k) for r in run.rounds for k in (r.get("rejected_reasons") or {})})
    reds = ["#c92a2a", "#e8590c", "#f08c00", "#d6336c", "#ae3ec9", "#862e9c", "#fa5252", "#ff922b"]
    for j, reason in enumerate(reasons):
        ys = [_int((r.get("rejected_reasons") or {}).get(reason)) for r in run.rounds]
        fig.add_trace(go.Bar(x=rounds, y=ys, name=f"rejected · {plot_text(reason, 40)}",
                             marker={"color": reds[j % len(reds)]},
                             hovertemplate=f"round %{{x}}: %{{y}} rejected ({plot_text(reason, 60)})<extra></extra>"))
    unexplained = [max(0, _int(r.get("rejected")) - sum(_int(v) for v in (r.get("rejected_reasons") or {}).values()))
                   for r in run.rounds]
    if any(unexplained):
        fig.add_trace(go.Bar(x=rounds, y=unexplained, name="rejected · unspecified", marker={"color": NEUTRAL_COLOR}))
    fig.update_layout(**base_layout(barmode="stack", xaxis={"title": {"text": "round"}, "dtick": 1},
                                    yaxis={"title": {"text": "generated prompts"}}, bargap=0.2))
    return fig, 380


def cost_figure(run: RunInput) -> tuple[Any, int]:
    """Cumulative tokens (bars, left axis) and cost in USD (line, right axis) by round."""
    import plotly.graph_objects as go

    rounds = [_int(r.get("round")) for r in run.rounds]
    pt = ct = 0
    cost = 0.0
    cum_p, cum_c, cum_cost = [], [], []
    for r in run.rounds:
        pt += _int(r.get("prompt_tokens"))
        ct += _int(r.get("completion_tokens"))
        cost += _float(r.get("cost_usd"))
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

    if not any(r.get("anchor_counts") for r in run.rounds):
        return None
    rounds = [_int(r.get("round")) for r in run.rounds]
    seen: list[str] = [a for a in names if any(a in (r.get("anchor_counts") or {}) for r in run.rounds)]
    seen += sorted({str(a) for r in run.rounds for a in (r.get("anchor_counts") or {})} - set(seen))
    fig = go.Figure()
    for j, a in enumerate(seen):
        ys = [_int((r.get("anchor_counts") or {}).get(a)) for r in run.rounds]
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

    if not any(r.get("gaps_before") for r in run.rounds):
        return None
    rounds = [_int(r.get("round")) for r in run.rounds]
    anchors: list[str] = [a for a in names if any(a in (r.get("gaps_before") or {}) for r in run.rounds)]
    anchors += sorted({str(a) for r in run.rounds for a in (r.get("gaps_before") or {})} - set(anchors))
    z = [[(r.get("gaps_before") or {}).get(a) for r in run.rounds] for a in anchors]
    lim = max([abs(_float(v)) for row in z for v in row if v is not None] + [0.01])
    fig = go.Figure(go.Heatmap(
        z=[[None if v is None else _float(v) for v in row] for row in z], x=rounds, y=list(range(len(anchors))),
        zmid=0, zmin=-lim, zmax=lim, colorscale=[[0, "#1c7ed6"], [0.5, "#f8f9fa"], [1, UNDER_COLOR]],
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
        a = r.get("anchor_id")
        reasons = r.get("rejected_reasons") or {}
        reason_txt = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items(), key=lambda kv: (-_int(kv[1]), kv[0])))
        kept = _int(r.get("kept"))
        rows.append([
            _int(r.get("round")), str(r.get("issue", "")),
            Raw('<span class="muted">—</span>') if a is None else names.get(str(a), str(a)),
            str(r.get("advice_mode", "")), str(r.get("rationale", "")), _int(r.get("n_generated")), kept,
            Raw(f'{_int(r.get("rejected"))}<div class="sub">{esc(reason_txt)}</div>' if reason_txt
                else str(_int(r.get("rejected")))),
            Num(_int(r.get("on_target")), f"{_int(r.get('on_target'))} ({pct(_int(r.get('on_target')) / kept, 0)})"
                if kept else str(_int(r.get("on_target")))),
            _int(r.get("prompt_tokens")) + _int(r.get("completion_tokens")),
            Num(_float(r.get("cost_usd")), f"${_float(r.get('cost_usd')):,.4f}"), _int(r.get("n_prompts")),
        ])
    cols = [Col("Round", "num"), Col("Issue"), Col("Anchor"), Col("Mode"), Col("Rationale", "text"),
            Col("Generated", "num"), Col("Kept", "num"), Col("Rejected", "num"), Col("On target", "num"),
            Col("Tokens", "num"), Col("Cost", "num"), Col("Total", "num", "prompts in the data set after this round")]
    return table(cols, rows, empty="The run has no rounds yet.")


def prompts_table(run: RunInput, names: dict[str, str]) -> Raw:
    rows = []
    for rnd in sorted(run.prompt_samples):
        for p in run.prompt_samples[rnd]:
            a = p.get("anchor_id")
            score = p.get("score")
            rows.append([rnd, str(p.get("id", "")), str(p.get("text", "")),
                         "" if a is None else names.get(str(a), str(a)), str(p.get("issue", "")),
                         "" if score is None else Num(_float(score), num(_float(score), 2))])
    intro = para(f"{run.n_prompt_rows:,} prompts in prompts.jsonl; the first {PROMPTS_PER_ROUND} kept in each round "
                 "are shown.")
    cols = [Col("Round", "num"), Col("ID"), Col("Text", "text"), Col("Anchor"), Col("Issue"), Col("Score", "num")]
    return Raw(intro.html + table(cols, rows, empty="No prompts.jsonl in this run folder.").html)


def config_body(run: RunInput) -> Raw:
    return json_block(redact(run.config))

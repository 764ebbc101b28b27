"""The "share against target" bar chart that the coverage section and the estimates section both draw.

Why one builder: the two charts must read the same way (one horizontal bar per leaf principle, its target share as a
black tick on it, the most under-covered principle on top), and a second copy of the layout would drift.  The caller
supplies the bar trace (what the bar measures: the raw share, or the corrected share with its interval).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data_advisor.coverage.report import AnchorCoverage
from data_advisor.reports._page import base_layout, plot_text

#: Colour of the target ticks (and of the page's text).
TICK_COLOR = "#1f2933"


def share_vs_target_figure(bar: Any, leaves: Sequence[AnchorCoverage], x_title: str, **layout: Any) -> tuple[Any, int]:
    """A plotly figure of ``bar`` (one bar per leaf, in ``leaves`` order, top to bottom) with each leaf's target share
    as a tick, and its height in pixels.  ``layout`` adds plotly layout keys (e.g. ``bargap``)."""
    import plotly.graph_objects as go

    ids = [a.id for a in leaves]
    fig = go.Figure()
    fig.add_trace(bar)
    fig.add_trace(go.Scatter(
        y=ids, x=[a.target_share for a in leaves], mode="markers", name="target share",
        marker={"symbol": "line-ns", "size": 18, "line": {"width": 3, "color": TICK_COLOR}, "color": TICK_COLOR},
        hovertemplate="target: %{x:.1%}<extra></extra>",
    ))
    height = 110 + 24 * max(3, len(leaves))
    fig.update_layout(**base_layout(
        barmode="overlay", **layout, showlegend=True,
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
        xaxis={"tickformat": ".0%", "title": {"text": x_title}, "rangemode": "tozero"},
        yaxis={"type": "category", "tickvals": ids, "ticktext": [plot_text(a.name, 48) for a in leaves],
               "autorange": "reversed", "automargin": True},
        margin={"l": 20, "r": 20, "t": 40, "b": 50},
    ))
    return fig, height

"""Open a report in headless Chromium the way a user would (file://, no network) and record what happened."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Hooks installed before any page script runs: a dialog from any hostile string is recorded, not shown.
HOOK_DIALOGS = """
window.__alerts = [];
['alert', 'confirm', 'prompt'].forEach(function (f) {
  window[f] = function (m) { window.__alerts.push(f + ':' + String(m)); };
});
"""

#: True once every plotly div has been drawn (an SVG layer, and for WebGL traces a canvas).
ALL_PLOTS_RENDERED = """
() => {
  const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
  return divs.length > 0 && divs.every(d => d.classList.contains('js-plotly-plot')
    && (d.querySelector('svg.main-svg') || d.querySelector('canvas')));
}
"""

PLOT_STATUS = """
() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
  id: d.id,
  rendered: d.classList.contains('js-plotly-plot'),
  svg: !!d.querySelector('svg.main-svg'),
  canvas: d.querySelectorAll('canvas').length,
  gl: (d._fullData || []).some(t => t.type === 'scattergl'),
}))
"""


@dataclass
class Opened:
    page: Any
    load_s: float
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def alerts(self) -> list[str]:
        return list(self.page.evaluate("() => window.__alerts"))

    def plots(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate(PLOT_STATUS))


def open_report(browser: Any, path: Path, *, width: int = 1360, timeout_ms: int = 60_000) -> Opened:
    """Load ``path`` from file:// with every non-file request blocked; wait until all plots are drawn.

    ``load_s`` is navigation start → every plot rendered (what a user waits for).
    """
    page = browser.new_page(viewport={"width": width, "height": 900})
    opened = Opened(page, 0.0)

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith("file://"):
            r.continue_()
        else:
            opened.blocked.append(url)
            r.abort()

    page.route("**/*", route)
    page.on("request", lambda req: opened.requests.append(req.url))
    page.on("console", lambda m: opened.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.errors.append(f"pageerror: {e}"))
    page.add_init_script(HOOK_DIALOGS)
    t0 = time.perf_counter()
    page.goto(path.resolve().as_uri(), wait_until="load", timeout=timeout_ms)
    page.wait_for_function(ALL_PLOTS_RENDERED, timeout=timeout_ms)
    opened.load_s = time.perf_counter() - t0
    return opened


#: Pixel position of the first point whose hover text contains ``needle`` (None if not on the map).
FIND_POINT = """
([divId, needle]) => {
  const gd = document.getElementById(divId);
  const fl = gd._fullLayout;
  const r = gd.getBoundingClientRect();
  for (const t of gd._fullData) {
    const texts = t.text;
    if (!Array.isArray(texts)) continue;
    const i = texts.findIndex(s => typeof s === 'string' && s.includes(needle));
    if (i < 0) continue;
    const x = fl.xaxis.d2p(t.x[i]) + fl._size.l + r.left;
    const y = fl.yaxis.d2p(t.y[i]) + fl._size.t + r.top;
    return [x, y];
  }
  return null;
}
"""


def hover_text_at(opened: Opened, div_id: str, needle: str) -> str:
    """Hover the map point whose (escaped) hover text contains ``needle``; return the visible tooltip text."""
    page = opened.page
    page.locator(f"#{div_id}").scroll_into_view_if_needed()
    pos = page.evaluate(FIND_POINT, [div_id, needle])
    assert pos is not None, f"no point with {needle!r} on {div_id}"
    page.mouse.move(pos[0] - 30, pos[1] - 30)
    page.mouse.move(pos[0], pos[1], steps=3)
    page.wait_for_selector(f"#{div_id} .hovertext", timeout=5_000)
    return " ".join(page.evaluate(
        f"() => Array.from(document.querySelectorAll('#{div_id} .hovertext')).map(e => e.textContent)"))

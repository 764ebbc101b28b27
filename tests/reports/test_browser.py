"""Each report kind opened in headless Chromium from file://: renders, runs nothing hostile, needs no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.reports.browser import hover_text_at, open_report
from tests.reports.synthetic import HOSTILE, HOSTILE_ANCHOR_NAME

pytestmark = pytest.mark.browser

EXPECTED_PLOTS = {"audit": 3, "run": 8, "comparison": 2}


@pytest.mark.parametrize("kind", ["audit", "run", "comparison"])
def test_report_renders_offline_and_safely(browser: Any, reports: dict[str, Path], screenshots: Path,
                                           kind: str) -> None:
    opened = open_report(browser, reports[kind])
    page = opened.page
    try:
        assert opened.errors == [], opened.errors
        assert opened.blocked == [], f"network requests attempted: {opened.blocked}"
        assert all(u.startswith(("file://", "data:", "blob:")) for u in opened.requests), opened.requests
        plots = opened.plots()
        assert len(plots) == EXPECTED_PLOTS[kind]
        for p in plots:
            assert p["rendered"] and (p["svg"] or p["canvas"]), p
            if p["gl"]:
                assert p["canvas"] > 0, f"WebGL map {p['id']} drew no canvas"
        # Sorting a table moves rows only: the text stays literal and nothing runs.
        page.locator("table.sortable th").first.click()
        body = page.inner_text("body")
        if kind in ("audit", "run"):
            for h in HOSTILE:
                assert h in body, f"{kind}: {h!r} is not visible literally"
            assert HOSTILE_ANCHOR_NAME in body
        else:
            assert "<b>after</b> & co" in body
        assert page.evaluate("() => document.querySelectorAll('img, svg script, iframe, object, embed').length") == 0
        assert opened.alerts() == []
        page.screenshot(path=str(screenshots / f"{kind}.png"), full_page=True)
        if kind == "audit":
            check_hover_and_buttons(opened, screenshots)
        print(f"\n{kind}: rendered {len(plots)} plots in {opened.load_s:.2f} s; screenshot {screenshots / kind}.png")
    finally:
        page.close()


def check_hover_and_buttons(opened: Any, screenshots: Path) -> None:
    """Plotly renders hover text as HTML-ish markup; escaped prompts must show as typed and run nothing.

    (Part of the audit page's test rather than its own, to load the 5 MB page once.)
    """
    page = opened.page
    for k, h in enumerate(HOSTILE):
        shown = hover_text_at(opened, "fig-map", f"hostile-{k}")
        assert " ".join(h.split()) in shown, (h, shown)
        if k == 2:
            page.screenshot(path=str(screenshots / "audit-hover.png"))
    # The treemap's buttons restyle the figure without errors.
    page.locator("#fig-hierarchy .updatemenu-button").nth(1).click()
    page.wait_for_timeout(200)
    assert opened.errors == [] and opened.alerts() == []
    assert page.evaluate("() => document.querySelectorAll('img').length") == 0

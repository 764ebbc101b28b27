"""100k prompts: the report must stay under 25 MB and open fast (sampling, rounding, truncated hover text)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from data_advisor.reports.html import render_audit_report
from tests.reports.browser import open_report
from tests.reports.conftest import REPO, STAMP

MAX_BYTES = 25 * 1024 * 1024
TIMINGS = REPO / "test-output" / "scale-timings.json"


def _record(key: str, value: Any) -> None:
    """Keep the measured numbers in test-output/ too (pytest captures print)."""
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(TIMINGS.read_text("utf-8")) if TIMINGS.exists() else {}
    data[key] = value
    TIMINGS.write_text(json.dumps(data, indent=2) + "\n", "utf-8")


@pytest.fixture(scope="session")
def bundle_only_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """plotly.js plus one tiny plot: the floor any report's load time sits on (parsing 4.8 MB of JS)."""
    import plotly.offline

    out = tmp_path_factory.mktemp("floor") / "floor.html"
    out.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><script>{plotly.offline.get_plotlyjs()}</script>"
                   "</head><body><div class='plotly-graph-div' id='x'></div>"
                   "<script>Plotly.newPlot('x', [{y: [1, 2]}])</script></body></html>", "utf-8")
    return out


def _load_s(browser: Any, path: Path) -> float:
    opened = open_report(browser, path, timeout_ms=120_000)
    try:
        assert opened.errors == [] and opened.blocked == [], (opened.errors, opened.blocked)
        return opened.load_s
    finally:
        opened.page.close()


@pytest.fixture(scope="session")
def big_report(big_audit_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    t0 = time.perf_counter()
    out = render_audit_report(big_audit_dir, tmp_path_factory.mktemp("big-html") / "big.html", generated_at=STAMP)
    dt = time.perf_counter() - t0
    size = out.stat().st_size
    print(f"\n100k audit report: {size / 1e6:.1f} MB, rendered by Python in {dt:.1f} s")
    _record("python_render_s", round(dt, 2))
    _record("size_bytes", size)
    return out


def test_100k_report_is_under_25mb(big_report: Path) -> None:
    size = big_report.stat().st_size
    assert size < MAX_BYTES, f"{size / 1e6:.1f} MB"
    src = big_report.read_text("utf-8")
    assert "deterministic sample of 20,000 of 100,000 prompts" in src
    m = re.search(r'Plotly\.newPlot\(\s*"fig-map",\s*(\[.*?\]),\s*\{"', src, re.S)
    assert m
    traces = [t for t in json.loads(m.group(1)) if t["type"] == "scattergl"]
    assert sum(len(t["text"]) for t in traces) == 20_000
    longest = max(len(s) for t in traces for s in t["text"])
    assert longest < 600  # ~300 visible chars + header + <br>/entities


@pytest.mark.browser
def test_100k_report_browser_timing(browser: Any, big_report: Path, bundle_only_page: Path) -> None:
    """Timing is measured and printed, not asserted (the default run must not flake on a busy machine); what is
    asserted is that the 100k page really finished: every plot drawn, the map on WebGL with its 20,000 points.

    The plotly.js-only page is timed alongside, so the report's own cost (load − floor) is visible even
    where the machine is slow.
    """
    floor = _load_s(browser, bundle_only_page)
    opened = open_report(browser, big_report, timeout_ms=120_000)
    try:
        assert opened.errors == [] and opened.blocked == [], (opened.errors, opened.blocked)
        plots = opened.plots()
        assert plots and all(p["rendered"] and p["svg"] for p in plots), plots
        fig_map = next(p for p in plots if p["id"] == "fig-map")
        assert fig_map["gl"] and fig_map["canvas"] >= 1
        n_points = opened.page.evaluate(
            "() => document.getElementById('fig-map')._fullData.filter(t => t.type === 'scattergl')"
            ".reduce((n, t) => n + t.x.length, 0)")
        assert n_points == 20_000
        load = opened.load_s
    finally:
        opened.page.close()
    print(f"\n100k report: load → all plots rendered in {load:.2f} s (headless Chromium); "
          f"plotly.js-only page: {floor:.2f} s")
    _record("browser_load_to_plots_s", round(load, 2))
    _record("browser_plotlyjs_only_s", round(floor, 2))


@pytest.mark.slow
@pytest.mark.browser
def test_100k_report_renders_within_5s(browser: Any, big_report: Path, bundle_only_page: Path) -> None:
    times = [_load_s(browser, big_report) for _ in range(2)]  # best of two: the first load warms caches
    floor = _load_s(browser, bundle_only_page)
    print(f"\n100k report load → plots: {', '.join(f'{t:.2f}' for t in times)} s (plotly.js alone: {floor:.2f} s)")
    assert min(times) < 5.0, f"best {min(times):.2f} s; a page with only plotly.js took {floor:.2f} s here"

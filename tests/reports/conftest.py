"""Session fixtures for the report tests: synthetic folders and rendered reports, built once.

Rendering a report takes ~0.5 s (most of it writing the 4.8 MB inline plotly.js), so each report kind is
rendered once per session and shared by the unit and browser tests that only read it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from data_advisor.reports.html import render_audit_report, render_comparison, render_run_report
from tests.reports.synthetic import write_audit_dir, write_big_audit_dir, write_run_dir

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
#: The fixed timestamp every deterministic render uses.
STAMP = "2024-01-01 00:00:00 UTC"


@pytest.fixture(scope="session")
def audit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audit_dir(tmp_path_factory.mktemp("audit"))


@pytest.fixture(scope="session")
def audit_dir_after(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second audit (different seed, shifted) to compare against ``audit_dir``."""
    return write_audit_dir(tmp_path_factory.mktemp("audit-after"), n=800, seed=7, shift=1.5)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run_dir(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def reports(tmp_path_factory: pytest.TempPathFactory, audit_dir: Path, audit_dir_after: Path,
            run_dir: Path) -> dict[str, Path]:
    """One rendered report per kind (fixed timestamp)."""
    out = tmp_path_factory.mktemp("html")
    return {
        "audit": render_audit_report(audit_dir, out / "audit.html", generated_at=STAMP),
        "run": render_run_report(run_dir, out / "run.html", generated_at=STAMP),
        "comparison": render_comparison([("before", audit_dir), ("<b>after</b> & co", audit_dir_after)],
                                        out / "comparison.html", generated_at=STAMP),
    }


@pytest.fixture(scope="session")
def big_audit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_big_audit_dir(tmp_path_factory.mktemp("big"))


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (skips, saying why, where it cannot run)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) for browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst

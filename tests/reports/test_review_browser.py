"""review.html in headless Chromium from file://: keyboard labelling, the downloaded file, hostile prompts.

The downloaded labels must be exactly ``review.jsonl`` with ``label`` filled in, and must round-trip through
``audit --labels``: reviewed prompts take their label and are marked ``"reviewed": true``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import data_advisor
from data_advisor.cli import main as cli_main
from tests.reports.browser import HOOK_DIALOGS
from tests.reports.review_fixtures import HOSTILE_HARMFUL, make_audit, read_lines

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> tuple[Path, Path, Path]:
    """(input file, audit folder, review.jsonl) with every prompt picked, so the hostile ones are on the page."""
    folder = tmp_path_factory.mktemp("review-browser")
    src, audit = make_audit(folder, embedder)
    n_prompts = len(read_lines(audit / "assignments.jsonl"))
    out = folder / "review.jsonl"
    data_advisor.review(audit, out=out, n=n_prompts, seed=0)
    return src, audit, out


def _open(browser: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    blocked: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(("file://", "blob:", "data:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.add_init_script(HOOK_DIALOGS)
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.wait_for_selector("#choices .choice")
    return page, errors, blocked


def test_keyboard_labelling_download_and_round_trip(browser: Any, reviewed: tuple[Path, Path, Path],
                                                    tmp_path: Path, screenshots: Path) -> None:
    src, audit, jsonl = reviewed
    rows = read_lines(jsonl)
    leaves = [a["id"] for a in json.loads((audit / "coverage.json").read_text("utf-8"))["anchors"] if a["is_leaf"]]
    page, errors, blocked = _open(browser, jsonl.with_suffix(".html"))
    try:
        # every choice shows its key next to its name; the suggested anchor of prompt 1 is preselected
        keys = page.eval_on_selector_all("#choices .choice kbd", "els => els.map(e => e.textContent)")
        assert keys[: len(leaves)] == list("1234567890a")[: len(leaves)] and keys[-1] == "n"
        sug = rows[0]["suggested"] or "none"
        assert page.get_attribute("#choices .choice.suggested", "data-id") == sug
        assert "prompt 1 of" in page.inner_text("#progress")

        expected: dict[int, str | None] = {}
        page.keyboard.press("1")  # prompt 0 → first leaf
        expected[0] = leaves[0]
        page.keyboard.press("Enter")  # prompt 1 → its suggestion
        expected[1] = rows[1]["suggested"] or "none"
        page.keyboard.press("n")  # prompt 2 → none
        expected[2] = "none"
        page.keyboard.press("ArrowRight")  # prompt 3 skipped
        page.keyboard.press("a")  # prompt 4 → 11th leaf
        expected[4] = leaves[10]
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")  # back to prompt 3 … then prompt 2 is relabelled
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("3")
        expected[2] = leaves[2]
        page.keyboard.press("Space")  # prompt 3 → its suggestion
        expected[3] = rows[3]["suggested"] or "none"
        page.keyboard.press("ArrowRight")  # past prompt 4 (labelled already)
        for i in range(5, 14):  # prompts 5…13 accepted as suggested: enough random labels for estimates
            page.keyboard.press("Enter")
            expected[i] = rows[i]["suggested"] or "none"
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("Backspace")  # prompt 13 cleared again
        expected.pop(13)
        assert f"{len(expected)} labelled" in page.inner_text("#progress")
        page.screenshot(path=str(screenshots / "review.png"), full_page=True)

        with page.expect_download() as info:
            page.click("#download")
        download = info.value
        assert download.suggested_filename == "review.jsonl"
        got = tmp_path / "labelled.jsonl"
        download.save_as(got)
        assert errors == [] and blocked == [] and page.evaluate("() => window.__alerts") == []
        page.reload(wait_until="load")  # labels survive a reload (kept in this browser's storage)
        page.wait_for_selector("#choices .choice")
        assert f"{len(expected)} labelled" in page.inner_text("#progress")
        assert page.evaluate("() => window.reviewJsonl()") == got.read_text("utf-8")
    finally:
        page.close()

    original = jsonl.read_text("utf-8").split("\n")
    downloaded = got.read_text("utf-8").split("\n")
    assert len(downloaded) == len(original) and downloaded[-1] == ""
    for i, (line, before) in enumerate(zip(downloaded[:-1], original[:-1], strict=True)):
        obj = json.loads(line)
        assert list(obj) == ["id", "text", "suggested", "margin", "why", "label"]
        assert obj["label"] == expected.get(i), i
        want = dict(json.loads(before), label=expected.get(i))
        assert line == json.dumps(want, ensure_ascii=False)  # byte for byte what review writes, label filled

    # round trip: audit --labels reads the download; reviewed prompts take their label and are marked
    out = tmp_path / "labelled-audit"
    code = cli_main(["audit", str(src), "--taxonomy", "catqa-11", "--out", str(out), "--labels", str(got),
                                  "--no-html", "-q"])
    assert code == 0
    after = {r["id"]: r for r in read_lines(out / "assignments.jsonl")}
    for i, label in expected.items():
        r = after[rows[i]["id"]]
        assert r["reviewed"] is True and r["anchor_id"] == (None if label == "none" else label)
    assert sum(r["reviewed"] for r in after.values()) == len(expected)
    # and a second review of the labelled audit skips what was reviewed
    again = data_advisor.review(out, out=tmp_path / "again.jsonl", n=20)
    assert not {rows[i]["id"] for i in expected} & {r["id"] for r in again.rows}


def test_hostile_prompts_show_literally_and_run_nothing(browser: Any, reviewed: tuple[Path, Path, Path]) -> None:
    _, _, jsonl = reviewed
    rows = read_lines(jsonl)
    page, errors, blocked = _open(browser, jsonl.with_suffix(".html"))
    try:
        html = jsonl.with_suffix(".html").read_text("utf-8")
        data = html.split('<script type="application/json" id="review-data">', 1)[1].split("</script>", 1)[0]
        assert "<" not in data and "\u2028" not in data and "\u2029" not in data  # nothing can close the block
        where = {r["text"]: i for i, r in enumerate(rows)}
        pos = 0
        for text in sorted(HOSTILE_HARMFUL, key=where.__getitem__):
            target = where[text]
            for _ in range(target - pos):
                page.keyboard.press("ArrowRight")
            pos = target
            assert page.text_content("#prompt") == text
            assert page.evaluate("() => document.querySelectorAll('#prompt *').length") == 0
        assert page.evaluate("() => document.querySelectorAll('img, svg, iframe, object, embed').length") == 0
        assert page.evaluate("() => document.scripts.length") == 2  # the data block and the page's own script
        assert page.evaluate("() => window.__alerts") == [] and errors == [] and blocked == []
    finally:
        page.close()

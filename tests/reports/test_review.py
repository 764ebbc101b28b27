"""``data-advisor review``: the file it writes, its refusals, and how it treats a labelled audit."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import data_advisor
from data_advisor.errors import DataAdvisorError
from data_advisor.io import write_checksums
from data_advisor.reports.review import REVIEW_KEYS, review
from tests.reports.review_fixtures import make_audit, read_lines


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> tuple[Path, Path]:
    return make_audit(tmp_path_factory.mktemp("review"), embedder)


def _assignments(audit: Path) -> list[dict[str, Any]]:
    return read_lines(audit / "assignments.jsonl")


def test_default_n_lines_and_keys(audited: tuple[Path, Path], tmp_path: Path) -> None:
    _, audit = audited
    result = data_advisor.review(audit, out=tmp_path / "review.jsonl")
    rows = read_lines(tmp_path / "review.jsonl")
    assert len(rows) == 5 * 11  # catqa-11: 5 per leaf principle
    assert result.rows == rows and result.html == tmp_path / "review.html" and result.html.is_file()
    by_id = {r["id"]: r for r in _assignments(audit)}
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert tuple(r) == REVIEW_KEYS  # exactly these keys, in this order
        a = by_id[r["id"]]
        assert r["text"] == a["text"] and r["suggested"] == a["anchor_id"] and r["margin"] == a["margin"]
        assert r["why"] in ("random", "informative") and r["label"] is None
    whys = [r["why"] for r in rows]
    assert whys == sorted(whys, key=lambda w: w != "random") and whys.count("random") == 30
    # informative picks: less sure than the random slice (smaller margin, or near the harm boundary)
    info = [by_id[r["id"]] for r in rows if r["why"] == "informative"]
    rand = [by_id[r["id"]] for r in rows if r["why"] == "random"]
    unsure = lambda a: min(abs(a["margin"]), abs(a["harm_score"] - 0.5))  # noqa: E731
    assert sum(map(unsure, info)) / len(info) < sum(map(unsure, rand)) / len(rand)
    assert not list(tmp_path.glob(".*.tmp"))


def test_seed_changes_the_random_slice_only_through_the_seed(audited: tuple[Path, Path], tmp_path: Path) -> None:
    _, audit = audited
    a = review(audit, out=tmp_path / "a.jsonl", n=40, seed=1)
    b = review(audit, out=tmp_path / "b.jsonl", n=40, seed=1)
    c = review(audit, out=tmp_path / "c.jsonl", n=40, seed=2)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert [r["id"] for r in a.rows] == [r["id"] for r in b.rows] != [r["id"] for r in c.rows]


def test_existing_file_refused_without_force(audited: tuple[Path, Path], tmp_path: Path,
                                            run_cli: Callable[..., tuple[int, str, str]]) -> None:
    _, audit = audited
    out = tmp_path / "review.jsonl"
    out.write_text("my labels\n", "utf-8")
    code, _stdout, stderr = run_cli("review", audit, "--out", out, "--n", "12")
    assert code == 2 and stderr.strip().count("\n") == 0 and "already exists" in stderr and "--force" in stderr
    assert out.read_text("utf-8") == "my labels\n" and not (tmp_path / "review.html").exists()
    code, _, stderr = run_cli("review", audit, "--out", out, "--n", "12", "--force", "-q")
    assert code == 0, stderr
    assert len(read_lines(out)) == 12 and (tmp_path / "review.html").is_file()


def test_write_is_all_or_nothing(audited: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, audit = audited
    out = tmp_path / "review.jsonl"
    review(audit, out=out, n=10)
    before = out.read_bytes(), (tmp_path / "review.html").read_bytes()
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:  # the second file (the page) fails after the JSONL was staged
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(DataAdvisorError, match="No space left"):
        review(audit, out=out, n=20, seed=5, force=True)
    monkeypatch.undo()
    assert (out.read_bytes(), (tmp_path / "review.html").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["review.html", "review.jsonl"]


def test_labelled_audit_skips_reviewed_prompts(audited: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    _, audit = audited
    labelled = tmp_path / "labelled"
    shutil.copytree(audit, labelled)
    rows = _assignments(labelled)
    first = review(labelled, out=tmp_path / "r1.jsonl", n=60)
    done = {r["id"] for r in first.rows}
    for r in rows:  # what `audit --labels` writes: the reviewed prompts marked
        if r["id"] in done:
            r["reviewed"] = True
    (labelled / "assignments.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_checksums(labelled, ("coverage.json", "assignments.jsonl", "embeddings.npy"))
    second = review(labelled, out=tmp_path / "r2.jsonl", n=60)
    assert len(second.rows) == 60 and not done & {r["id"] for r in second.rows}
    assert second.n_reviewed_before == 60 and "already reviewed" in second.line()


@pytest.mark.parametrize("damage", ["missing", "not-a-folder", "no-coverage", "no-assignments", "bad-json",
                                    "changed"])
def test_bad_audit_folder_one_line_exit_2(audited: tuple[Path, Path], tmp_path: Path, damage: str,
                                          run_cli: Callable[..., tuple[int, str, str]]) -> None:
    import shutil

    _, audit = audited
    bad = tmp_path / "bad"
    if damage == "not-a-folder":
        bad.write_text("x")
    elif damage != "missing":
        shutil.copytree(audit, bad)
        if damage == "no-coverage":
            (bad / "coverage.json").unlink()
        elif damage == "no-assignments":
            (bad / "assignments.jsonl").unlink()
        elif damage == "bad-json":
            (bad / "outputs.sha256.json").unlink()
            with open(bad / "assignments.jsonl", "a", encoding="utf-8") as fh:
                fh.write("{not json\n")
        elif damage == "changed":  # a digit flipped: valid JSON, wrong numbers
            text = (bad / "assignments.jsonl").read_text("utf-8")
            (bad / "assignments.jsonl").write_text(text.replace('"margin": 0.', '"margin": 1.', 1), "utf-8")
    out = tmp_path / "review.jsonl"
    code, _, stderr = run_cli("review", bad, "--out", out)
    assert code == 2, stderr
    line = stderr.strip()
    assert line.startswith("error: ") and "\n" not in line and "fix:" in line
    assert not out.exists() and not (tmp_path / "review.html").exists()


@pytest.mark.parametrize("n", ["0", "-3"])
def test_bad_n_refused(audited: tuple[Path, Path], tmp_path: Path, n: str,
                       run_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, _, stderr = run_cli("review", audited[1], "--out", tmp_path / "r.jsonl", "--n", n)
    assert code == 2 and "--n" in stderr and not (tmp_path / "r.jsonl").exists()


def test_page_embeds_hostile_text_inertly() -> None:
    import json as _json

    from data_advisor.reports.review_page import render_review_page
    from tests.reports.synthetic import HOSTILE, HOSTILE_ANCHOR_NAME

    texts = [*HOSTILE, "line\u2028separator\u2029 <!-- comment", "</SCRIPT ><script>alert(9)</script>"]
    rows = [{"id": f"h{i}", "text": t, "suggested": None, "margin": 0.1, "why": "random", "label": None}
            for i, t in enumerate(texts)]
    lines = [_json.dumps(r, ensure_ascii=False) for r in rows]
    page = render_review_page(lines, rows, [("w", HOSTILE_ANCHOR_NAME)], title="<b>t</b>")
    block = page.split('id="review-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block and ">" not in block and "\u2028" not in block and "\u2029" not in block
    decoded = _json.loads(block)
    assert [r["text"] for r in decoded["rows"]] == texts and decoded["lines"] == lines
    assert decoded["choices"] == [{"id": "w", "name": HOSTILE_ANCHOR_NAME}]
    assert "<title>&lt;b&gt;t&lt;/b&gt;</title>" in page
    # only the page's own script may run: a Content-Security-Policy with a nonce, carried by exactly one script
    nonce = page.split("script-src 'nonce-", 1)[1].split("'", 1)[0]
    assert page.count(f'<script nonce="{nonce}">') == 1 and page.count("<script") == 2
    with pytest.raises(ValueError):
        render_review_page([line.replace('"label": null', '"label": "w"') for line in lines], rows, [])

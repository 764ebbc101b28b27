"""The Python API where users already work: DataFrames and datasets in, a notebook view and a CI gate out."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

import data_advisor
from data_advisor.coverage.gate import GATE_METRICS
from data_advisor.errors import GateError, InputError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def file_report(embedder):
    return data_advisor.audit(EXAMPLES / "prompts.jsonl", taxonomy="catqa-11", embedder=embedder, render_html=False)


def _counts(report) -> dict[str, int]:
    return {a.id: a.count for a in report.anchors}


def test_dataframe_and_dataset_give_the_files_counts(embedder, file_report) -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    datasets = pytest.importorskip("datasets")
    df = pd.read_json(EXAMPLES / "prompts.jsonl", lines=True)
    for table in (df, datasets.Dataset.from_pandas(df), pl.from_pandas(df)):
        report = data_advisor.audit(table, taxonomy="catqa-11", text_field="text", id_field="id", embedder=embedder,
                                    render_html=False)
        assert _counts(report) == _counts(file_report), type(table)
        assert report.metrics == file_report.metrics
        assert report.dataset["fingerprint"] == file_report.dataset["fingerprint"]  # same ids and texts
    assert sum(_counts(file_report).values()) > 100  # premise: a real spread of counts, not all zeros


def test_gate_metrics_are_exactly_the_numeric_metrics_of_a_report(file_report) -> None:
    numeric = [k for k, v in file_report.metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    assert set(GATE_METRICS) == set(numeric)


def test_check_names_every_failed_condition(file_report) -> None:
    m = file_report.metrics
    weakest = min(file_report.leaf_anchors(), key=lambda a: (a.count, a.id))
    failures = file_report.check({"coverage_ratio": m["coverage_ratio"] + 0.01, "normalized_entropy": 0.0,
                                  "min_anchor_count": weakest.count + 1, f"anchor:{weakest.id}": weakest.count})
    assert len(failures) == 2
    assert failures[0].startswith("coverage_ratio ") and "is under" in failures[0]
    assert failures[1].startswith("min_anchor_count ") and weakest.id in failures[1]
    assert file_report.check(["coverage_ratio=0.01", f"anchor:{weakest.id}={weakest.count}"]) == []
    with pytest.raises(InputError, match=r"unknown --fail-under metric 'coverage'.*coverage_ratio.*anchor:ID"):
        file_report.check({"coverage": 0.5})
    with pytest.raises(InputError, match="not a finite number"):
        file_report.check({"coverage_ratio": float("nan")})


def test_audit_fail_under_raises_after_writing_and_refuses_bad_names_before(embedder, tmp_path: Path) -> None:
    out = tmp_path / "a"
    with pytest.raises(GateError) as failed:
        data_advisor.audit(EXAMPLES / "prompts.jsonl", out=out, embedder=embedder, render_html=False,
                           fail_under={"coverage_ratio": 0.99})
    assert failed.value.exit_code == 1 and len(failed.value.failures) == 1
    assert "coverage_ratio" in failed.value.failures[0]
    assert json.loads((out / "coverage.json").read_text("utf-8"))["metrics"]["coverage_ratio"] < 0.99
    never = tmp_path / "never"
    with pytest.raises(InputError, match="anchor:nope"):
        data_advisor.audit(EXAMPLES / "prompts.jsonl", out=never, embedder=embedder, fail_under={"anchor:nope": 1})
    assert not never.exists()


def test_notebook_summary_names_every_principle_and_escapes_hostile_text(embedder, sample_prompts) -> None:
    hostile = [f"<script>alert('pwned')</script> {t}" for t in sample_prompts]  # whichever is shown is hostile
    report = data_advisor.audit(hostile, taxonomy="catqa-11", embedder=embedder, render_html=False)
    report.warnings.append({"code": "x", "problem": "<img src=x onerror=alert(1)>", "cause": "c", "fix": "f"})
    page = report._repr_html_()
    assert "<script" not in page.lower() and "<img" not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page  # the prompt is shown, escaped
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    for a in report.leaf_anchors():
        assert html.escape(a.name) in page and f"<code style=\"color:#666\">{a.id}</code>" in page
    rows = re.findall(r"<tr><td[^>]*>[^<]*<br><code", page)  # one gap-table row per principle
    assert len(rows) == len(report.leaf_anchors())


def test_show_embeds_the_written_report_in_a_sandboxed_iframe(embedder, tmp_path: Path) -> None:
    report = data_advisor.audit(EXAMPLES / "prompts.jsonl", out=tmp_path / "a", embedder=embedder)
    view = report.show(height=500)  # outside a kernel: the view object itself
    frame = view._repr_html_()
    assert frame.startswith("<iframe") and 'sandbox="allow-scripts' in frame and "allow-same-origin" not in frame
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame)
    assert srcdoc is not None
    assert html.unescape(srcdoc.group(1)) == (tmp_path / "a" / "report.html").read_text("utf-8")
    loaded = data_advisor.CoverageReport.load(tmp_path / "a")
    assert loaded.show()._repr_html_() == frame.replace('height:500px', 'height:720px')


def test_show_renders_a_report_audited_without_an_output_folder(file_report) -> None:
    page = html.unescape(re.search(r'srcdoc="([^"]*)"', file_report.show()._repr_html_()).group(1))
    assert page.lstrip().lower().startswith("<!doctype html")
    for a in file_report.leaf_anchors():
        assert html.escape(a.name) in page or a.name in page


def test_a_report_with_a_page_source_still_pickles(file_report) -> None:
    import pickle

    assert file_report._html_page is not None  # premise: audit() attached one (a closure)
    copy = pickle.loads(pickle.dumps(file_report))
    assert copy == file_report and copy._html_page is None

"""Unit tests of the HTML reports: sections, determinism, escaping, sampling, options and failure modes."""

from __future__ import annotations

import difflib
import functools
import html
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from data_advisor.errors import InputError
from data_advisor.reports import _data
from data_advisor.reports._page import HOVER_CHARS, hover_block, plot_literal, plot_text
from data_advisor.reports.html import render_audit_report, render_comparison, render_run_report
from tests.reports.conftest import REPO, STAMP, copy_tree
from tests.reports.synthetic import HOSTILE, HOSTILE_ANCHOR_NAME, HOSTILE_LABEL, write_audit_dir

AUDIT_SECTIONS = ["summary", "coverage", "hierarchy", "map", "gaps", "clusters", "duplicates", "unanchored",
                  "discovery", "settings"]
RUN_SECTIONS = ["run-summary", "run-metrics", "run-issues", "run-yield", "run-cost", "run-growth", "run-gaps",
                "run-prompts", "run-config", "final"] + [f"final-{s}" for s in AUDIT_SECTIONS]
CMP_SECTIONS = ["cmp-inputs", "cmp-shares", "cmp-deltas", "cmp-map"]
EXPECTED_FIGURES = {
    "audit": ["fig-coverage", "fig-hierarchy", "fig-map"],
    "run": ["fig-run-metrics", "fig-run-yield", "fig-run-cost", "fig-run-growth", "fig-run-gaps",
            "final-fig-coverage", "final-fig-hierarchy", "final-fig-map"],
    "comparison": ["fig-cmp-shares", "fig-cmp-map"],
}
#: The only tags the reports emit outside scripts; anything else would be markup leaking from data.
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "script", "body", "header", "h1", "h2", "h3", "div", "nav",
                "a", "main", "section", "p", "span", "table", "thead", "tbody", "tr", "th", "td", "ul", "li",
                "details", "summary", "pre", "footer"}


class TagCollector(HTMLParser):
    """Every start tag with its attributes, and the text of every <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


@functools.cache
def plotly_bundle() -> str:
    import plotly.offline

    return plotly.offline.get_plotlyjs()


def parse(path: Path) -> tuple[str, TagCollector]:
    src = path.read_text("utf-8")
    p = TagCollector()
    p.feed(src)
    p.close()
    return src, p


# ------------------------------------------------------------------------------------------------ sections
@pytest.mark.parametrize(("kind", "sections"), [("audit", AUDIT_SECTIONS), ("run", RUN_SECTIONS),
                                                ("comparison", CMP_SECTIONS)])
def test_sections_and_figures_present(reports: dict[str, Path], kind: str, sections: list[str]) -> None:
    src = reports[kind].read_text("utf-8")
    for s in sections:
        assert f'<section id="{s}"' in src, f"{kind}: section {s} missing"
        assert f'href="#{s}"' in src, f"{kind}: nav link to {s} missing"
    ids = re.findall(r'Plotly\.newPlot\(\s*"([^"]+)"', src)
    assert ids == EXPECTED_FIGURES[kind]
    assert f"generated at {STAMP}" in src


def test_audit_report_content(reports: dict[str, Path]) -> None:
    src = reports["audit"].read_text("utf-8")
    for label in ["Prompts", "Anchors covered", "Normalised entropy", "Vendi score", "Exact duplicates",
                  "Near duplicates", "Noise share", "Unanchored"]:
        assert f'<div class="k">{label}</div>' in src
    assert '"type":"scattergl"' in src and '"type":"treemap"' in src
    assert '"name":"emergent clusters"' in src  # emergent clusters are marked on the map
    assert "\\u003cpre class" not in src and '<pre class="json">' in src  # settings block
    assert "umap+hdbscan" in src
    assert "deterministic sample" not in src  # 605 points < max_points: nothing sampled
    # how near-duplicates were searched is stated, as text (markup in it is escaped)
    assert "cosine ≥ 0.95; search: exact: FAISS flat &lt;b&gt;inner-product&lt;/b&gt; search)." in src
    assert "<b>inner-product" not in src


def test_flat_taxonomy_has_no_tree(tmp_path: Path) -> None:
    d = write_audit_dir(tmp_path / "flat", n=200, hierarchical=False, hostile=False, embeddings=False)
    src = render_audit_report(d, tmp_path / "r.html", generated_at=STAMP).read_text("utf-8")
    assert 'id="hierarchy"' not in src and '"type":"treemap"' not in src
    assert "Parent categories" not in src


# --------------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("kind", ["audit", "run", "comparison"])
def test_deterministic_bytes(reports: dict[str, Path], audit_dir: Path, audit_dir_after: Path, run_dir: Path,
                             tmp_path: Path, kind: str) -> None:
    def render(out: Path, stamp: str) -> Path:
        if kind == "audit":
            return render_audit_report(audit_dir, out, generated_at=stamp)
        if kind == "run":
            return render_run_report(run_dir, out, generated_at=stamp)
        return render_comparison([("before", audit_dir), ("<b>after</b> & co", audit_dir_after)], out,
                                 generated_at=stamp)

    again = render(tmp_path / "again.html", STAMP)
    assert again.read_bytes() == reports[kind].read_bytes()
    other = render(tmp_path / "other.html", "2030-12-31 23:59:59 UTC")
    diff = [line for line in difflib.unified_diff(reports[kind].read_text("utf-8").splitlines(),
                                                   other.read_text("utf-8").splitlines(), n=0, lineterm="")
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(diff) == 2 and all("generated at" in line for line in diff), diff


def test_default_timestamp_is_now(audit_dir: Path, tmp_path: Path) -> None:
    import datetime as dt

    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    src = render_audit_report(audit_dir, tmp_path / "r.html").read_text("utf-8")
    after = dt.datetime.now(dt.UTC)
    m = re.search(r"generated at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", src)
    assert m, "no timestamp line"
    stamp = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    assert before <= stamp <= after  # the time of rendering, in UTC (not local time, not a fixed string)


def test_deterministic_across_hash_seeds(audit_dir: Path, tmp_path: Path) -> None:
    """Set/dict ordering must not leak into the output (PYTHONHASHSEED differs between processes)."""
    code = ("import sys; from data_advisor.reports.html import render_audit_report as r; "
            "r(sys.argv[1], sys.argv[2], generated_at='x')")
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"h{seed}.html"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", code, str(audit_dir), str(out)], check=True, env=env, cwd=REPO)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


# ---------------------------------------------------------------------------------------------- security
@pytest.mark.parametrize("kind", ["audit", "run", "comparison"])
def test_hostile_text_is_escaped(reports: dict[str, Path], kind: str) -> None:
    src, parsed = parse(reports[kind])
    bundle = plotly_bundle()
    assert src.count(bundle) == 1  # plotly.js inlined exactly once
    low = src.replace(bundle, "").lower()
    # No hostile markup survives anywhere in the page (outside plotly.js itself), in HTML or inside scripts.
    for needle in ("<script>alert", "</script><script>alert", "<img", "<svg", "<b onmouseover", "<i>&amp;</i>",
                   'href="javascript:', "<b>after</b>"):
        assert needle not in low, f"{kind}: raw {needle!r} in the page"
    tags = {t for t, _ in parsed.tags}
    assert tags <= ALLOWED_TAGS, f"{kind}: unexpected tags {tags - ALLOWED_TAGS}"
    for tag, attrs in parsed.tags:
        for name, value in attrs:
            assert not name.lower().startswith("on"), f"{kind}: event handler attribute on <{tag}>"
            if name == "href":
                assert (value or "").startswith("#"), f"{kind}: non-fragment link {value!r}"
            if name == "src":
                raise AssertionError(f"{kind}: external resource {value!r}")
    # Figure scripts hold only JSON-escaped data: no '<' at all (the plotly bundle itself is exempt).
    small = [s for s in parsed.scripts if len(s) < 1_000_000]
    assert len(small) == len(EXPECTED_FIGURES[kind]) + 2  # + PlotlyConfig + table sorting
    for s in small:
        assert "<" not in s, f"{kind}: '<' inside a script block"
    # The hostile prompts do reach the page, escaped for HTML ...
    text = "".join(parsed.text)
    if kind in ("audit", "run"):
        for h in HOSTILE:
            assert h in text, f"{kind}: {h!r} not shown literally"
            assert html.escape(h, quote=True) in src
    # ... and for plotly hover (entity-escaped, then JSON \\u-escaped by plotly).
    if kind in ("audit", "comparison"):
        assert "\\u0026lt;" not in src  # '&' is not double-encoded by JSON
        assert "&lt;script&gt;alert(1)&lt;\\u002fscript&gt;" in src
        assert "&lt;img src=x onerror=alert(3)&gt;" in src


def test_hostile_names_labels_and_settings(reports: dict[str, Path]) -> None:
    src, parsed = parse(reports["audit"])
    text = "".join(parsed.text)
    assert HOSTILE_ANCHOR_NAME in text  # anchor name in tables
    assert HOSTILE_LABEL in text  # cluster keyword label
    assert "</script><script>alert(9)</script>" in text  # settings JSON, shown as text
    assert "synthetic/<script>alert(8)</script>.jsonl" in text  # dataset source (header)
    # In figures the name is entity-escaped for plotly; "%{x}" in a name cannot act as a template field.
    assert "Weapons &lt;i&gt;&amp;amp;&lt;\\u002fi&gt;" in src
    assert "%&#123;x}" in src


def test_plot_text_helpers() -> None:
    assert plot_text("<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"
    assert plot_text('"quotes\'') == '"quotes\''  # plotly shows &quot; literally, so quotes stay
    assert plot_literal("%{x} <") == "%&#123;x} &lt;"
    long = "word " * 200 + "<end>"
    h = hover_block(long)
    visible = html.unescape(h.replace("<br>", " "))
    assert len(visible) <= HOVER_CHARS + 5 and visible.endswith("…")
    cut = hover_block("a" * 299 + "<<")  # truncation happens before escaping: no half entity at the end
    assert cut.endswith("a…") and "&" not in cut
    assert hover_block("a" * 298 + "<>") .endswith("&lt;&gt;")


def test_run_config_is_redacted(reports: dict[str, Path]) -> None:
    src = reports["run"].read_text("utf-8")
    assert "SENTINEL" not in src
    assert "[redacted]" in src
    assert "&quot;max_tokens&quot;: 512" in src  # not a secret


# ---------------------------------------------------------------------------------------- sampling & size
def test_stratified_sample_properties() -> None:
    rng = np.random.default_rng(0)
    groups = rng.choice(["a", "b", "c", None], size=10_000, p=[0.7, 0.25, 0.049, 0.001]).tolist()
    groups = [None if g is None or g == "None" else g for g in groups]
    idx = _data.stratified_sample(groups, 1000)
    assert len(idx) == 1000 and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, _data.stratified_sample(groups, 1000))  # deterministic
    picked = [groups[i] for i in idx]
    n_none = groups.count(None)
    assert picked.count(None) == min(n_none, 1000 // 20)  # rare groups get their floor
    assert abs(picked.count("a") / 1000 - 0.7) < 0.06  # large groups stay roughly proportional
    assert np.array_equal(_data.stratified_sample(groups[:50], 1000), np.arange(50))


def test_map_sampling_note_and_count(audit_dir: Path, tmp_path: Path) -> None:
    src = render_audit_report(audit_dir, tmp_path / "r.html", max_points=100, generated_at=STAMP).read_text("utf-8")
    assert "deterministic sample of 100 of 605 prompts" in src
    m = re.search(r'Plotly\.newPlot\(\s*"fig-map",\s*(\[.*?\]),\s*\{"', src, re.S)
    assert m
    traces = json.loads(m.group(1))
    n = sum(len(t["text"]) for t in traces if t["type"] == "scattergl")
    assert n == 100


def test_pca_is_deterministic_and_sign_fixed() -> None:
    v = np.random.default_rng(3).normal(size=(500, 16)).astype(np.float16)
    a, desc = _data.pca_2d(v)
    b, _ = _data.pca_2d(v.copy())
    assert np.array_equal(a, b) and a.shape == (500, 2) and desc.startswith("PCA")
    c, _ = _data.pca_2d(v, fit_max=100)  # sampled fit still deterministic
    assert np.array_equal(c, _data.pca_2d(v, fit_max=100)[0])


def test_cdn_mode_is_small_and_references_cdn(audit_dir: Path, reports: dict[str, Path], tmp_path: Path) -> None:
    out = render_audit_report(audit_dir, tmp_path / "cdn.html", plotlyjs="cdn", generated_at=STAMP)
    src = out.read_text("utf-8")
    assert re.search(r'<script src="https://cdn\.plot\.ly/plotly-[\d.]+\.min\.js"', src)
    assert out.stat().st_size < reports["audit"].stat().st_size - 4_000_000
    inline = reports["audit"].read_text("utf-8").replace(plotly_bundle(), "")
    assert "https://cdn.plot.ly" not in inline and "<script src" not in inline
    assert inline.count("Plotly.newPlot") == 3
    assert "fonts.googleapis" not in inline and "<link" not in inline


# ------------------------------------------------------------------------------------------------- options
def test_labeler_used_and_failures_fall_back(audit_dir: Path, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def labeler(texts: list[str]) -> str:
        seen.append(texts)
        if any("alert(1)" in t for t in texts):
            raise RuntimeError("LLM down <x>")
        return f"LLM label <{len(texts)}>"

    src = render_audit_report(audit_dir, tmp_path / "r.html", labeler=labeler, generated_at=STAMP).read_text("utf-8")
    assert len(seen) == 7
    assert "LLM label &lt;3&gt;" in src  # applied (and escaped) in the clusters table
    assert "keywords: " in src
    assert "The cluster labeler failed for 1 of 7 clusters" in src and "LLM down &lt;x&gt;" in src


def test_invalid_inputs_raise_input_error(audit_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="plotlyjs"):
        render_audit_report(audit_dir, tmp_path / "r.html", plotlyjs="directory")
    with pytest.raises(InputError, match="no coverage report"):
        render_audit_report(tmp_path, tmp_path / "r.html")
    with pytest.raises(InputError, match=r"rounds\.jsonl"):
        render_run_report(audit_dir, tmp_path / "r.html")
    with pytest.raises(InputError, match="nothing to compare"):
        render_comparison([], tmp_path / "r.html")
    with pytest.raises(InputError, match="projection"):
        render_comparison([("a", audit_dir)], tmp_path / "r.html", projection="tsne")
    bad = copy_tree(audit_dir, tmp_path / "bad")
    (bad / "assignments.jsonl").write_text('{"id": 1}\nnot json\n', "utf-8")
    with pytest.raises(InputError, match=r"assignments\.jsonl:2"):
        render_audit_report(bad, tmp_path / "r.html")


def test_missing_assignments_and_coords(audit_dir: Path, tmp_path: Path) -> None:
    no_rows = copy_tree(audit_dir, tmp_path / "no-rows")
    (no_rows / "assignments.jsonl").unlink()
    src = render_audit_report(no_rows, tmp_path / "a.html", generated_at=STAMP).read_text("utf-8")
    assert "assignments.jsonl is missing" in src and "No map:" in src and '"fig-map"' not in src
    no_xy = write_audit_dir(tmp_path / "no-xy", n=300, coords=False)
    src = render_audit_report(no_xy, tmp_path / "b.html", generated_at=STAMP).read_text("utf-8")
    assert "PCA (2 components" in src and '"fig-map"' in src


def test_comparison_without_embeddings_falls_back(audit_dir: Path, tmp_path: Path) -> None:
    plain = write_audit_dir(tmp_path / "plain", n=300, embeddings=False, seed=2)
    out = render_comparison([("a", audit_dir), ("a", plain)], tmp_path / "c.html", generated_at=STAMP)
    src = out.read_text("utf-8")
    assert "No shared map: embeddings.npy is missing for a (2)" in src
    assert '"fig-cmp-maps"' in src and '"fig-cmp-map"' not in src


def test_comparison_states_projection_and_deltas(reports: dict[str, Path]) -> None:
    src = reports["comparison"].read_text("utf-8")
    assert "Projection: one shared PCA (2 components" in src
    assert "Δ vs before" in src
    assert 'class="num good"' in src  # normalised entropy rose in the "after" input
    assert '"barmode":"group"' in src


# ---------------------------------------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.datasets
@pytest.mark.parametrize("cluster", [False, True], ids=["no-discovery", "discovery"])
def test_real_harmbench_audit_renders(tmp_path: Path, embedder: object, cluster: bool, datasets_dir: Path) -> None:
    """The real pipeline (audit → AuditResult.write → render_audit_report) on HarmBench.

    Slow: with the per-session test cache cold it embeds 400 prompts + the anchors (~10–60 s on a small CPU)
    and, with discovery, compiles UMAP's kernels.  Without discovery the map falls back to a PCA of
    embeddings.npy, so both map paths run on real data.
    """
    from data_advisor import AuditOptions, AuditSettings, audit

    harmbench = datasets_dir / "harmbench" / "harmbench_behaviors_text_all.csv"  # skips with its reason when absent
    out = tmp_path / "hb"
    audit(harmbench, taxonomy="harmbench", out=out, settings=AuditSettings(cluster=cluster),
          options=AuditOptions(text_field="Behavior"), embedder=embedder)
    src = (out / "report.html").read_text("utf-8")
    assert "harmbench_behaviors_text_all.csv" in src
    assert ("the audit&#x27;s own 2-D map" in src) if cluster else ("PCA (2 components" in src)
    assert src.count("Plotly.newPlot") == 2  # coverage + map (flat taxonomy: no tree)
    a = render_audit_report(out, tmp_path / "a.html", generated_at=STAMP)
    b = render_audit_report(out, tmp_path / "b.html", generated_at=STAMP)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.slow
def test_comparison_with_umap_projection(audit_dir: Path, audit_dir_after: Path, tmp_path: Path) -> None:
    """UMAP is opt-in (slow first call: numba compiles); seeded, so two renders are identical."""
    inputs = [("before", audit_dir), ("after", audit_dir_after)]
    a = render_comparison(inputs, tmp_path / "a.html", projection="umap", max_points=600, generated_at=STAMP)
    b = render_comparison(inputs, tmp_path / "b.html", projection="umap", max_points=600, generated_at=STAMP)
    src = a.read_text("utf-8")
    assert "Projection: one shared UMAP (cosine" in src
    assert a.read_bytes() == b.read_bytes()


def test_run_report_tolerates_sparse_runs(tmp_path: Path) -> None:
    """A run that just started (no rounds, no coverage yet) or wrote partial rounds still renders."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}", "utf-8")  # a run writes its config before anything else
    (empty / "rounds.jsonl").write_text("", "utf-8")
    src = render_run_report(empty, tmp_path / "e.html", generated_at=STAMP).read_text("utf-8")
    assert "The run has no rounds yet." in src and "has no coverage.json yet" in src
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    (sparse / "config.json").write_text('{"password": "hunter2", "nested": {"API_KEY": "k"}}', "utf-8")
    (sparse / "rounds.jsonl").write_text('{"round": 2, "issue": "x"}\n{"round": 1}\n', "utf-8")
    src = render_run_report(sparse, tmp_path / "s.html", generated_at=STAMP).read_text("utf-8")
    assert "hunter2" not in src and "&quot;k&quot;" not in src
    assert src.index('"fig-run-metrics"') > 0 and '"fig-run-growth"' not in src


def test_cdn_address_is_the_one_plotly_itself_writes() -> None:
    """``plotly_cdn_url`` rebuilds plotly's CDN address from its public version getter instead of importing the
    private ``plotly.io._html``: if plotly changes where its bundle lives, this fails (and the cdn mode must follow)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    from data_advisor.reports._page import plotly_cdn_url

    theirs = pio.to_html(go.Figure(), include_plotlyjs="cdn", full_html=False)
    assert f'src="{plotly_cdn_url()}"' in theirs

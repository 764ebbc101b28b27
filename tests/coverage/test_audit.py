"""The audit end to end through the Python API: files, schema, internal consistency, determinism, discovery."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import data_advisor
from data_advisor.coverage.embedding.cached import CachedEmbedder
from data_advisor.coverage.report import CoverageReport
from data_advisor.coverage.taxonomy import load_taxonomy
from data_advisor.data import PromptSet
from data_advisor.errors import OutputError, TaxonomyError

TOP_KEYS = {"schema_version", "dataset", "taxonomy", "anchors", "unanchored", "metrics", "clusters", "duplicates",
            "discovery", "settings"}
ANCHOR_KEYS = {"id", "name", "count", "share", "target_share", "gap"}
ROW_KEYS = {"id", "text", "anchor_id", "score", "margin", "cluster_id"}


def read_rows(out: Path) -> list[dict[str, Any]]:
    lines = (out / "assignments.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, embedder: CachedEmbedder,
            sample_prompts: list[str]) -> tuple[CoverageReport, Path]:
    out = tmp_path_factory.mktemp("audit") / "out"
    report = data_advisor.audit(sample_prompts, taxonomy="catqa-11", out=out, embedder=embedder, render_html=False)
    return report, out


def test_outputs_and_schema(audited: tuple[CoverageReport, Path], sample_prompts: list[str]) -> None:
    report, out = audited
    assert isinstance(report, CoverageReport)
    assert sorted(p.name for p in out.iterdir()) == ["assignments.jsonl", "coverage.json", "embeddings.npy",
                                                     "outputs.sha256.json", "run_info.json"]
    sums = json.loads((out / "outputs.sha256.json").read_text("utf-8"))["sha256"]
    assert set(sums) == {"assignments.jsonl", "coverage.json", "embeddings.npy"}
    assert all(sums[n] == hashlib.sha256((out / n).read_bytes()).hexdigest() for n in sums)
    cov = json.loads((out / "coverage.json").read_text("utf-8"))
    assert set(cov) >= TOP_KEYS
    assert cov["schema_version"] == report.schema_version
    assert cov == report.to_dict()
    assert CoverageReport.load(out).to_dict() == cov  # loads back from the folder
    leaf_ids = [p.id for p in load_taxonomy("catqa-11").leaves()]
    assert [a["id"] for a in cov["anchors"]] == leaf_ids
    for a in cov["anchors"]:
        assert set(a) >= ANCHOR_KEYS
        assert isinstance(a["name"], str) and a["name"]
    assert cov["dataset"]["n_prompts"] == len(sample_prompts)
    assert cov["taxonomy"]["id"] == "catqa-11"
    assert cov["settings"]["seed"] == 0
    assert cov["settings"]["taxonomy_fingerprint"] == load_taxonomy("catqa-11").fingerprint()
    assert cov["settings"]["model_id"].startswith("sentence-transformers/all-MiniLM-L6-v2")
    assert cov["discovery"]["method"] == "spectral+hdbscan"  # 36 prompts: the small-input path (no UMAP) ran
    for c in cov["clusters"]:
        assert c["kind"] in {"anchored", "emergent", "background"}

    rows = read_rows(out)
    assert len(rows) == len(sample_prompts)
    assert [r["text"] for r in rows] == sample_prompts
    assert [r["id"] for r in rows] == [str(i) for i in range(len(sample_prompts))]
    for r in rows:
        assert set(r) >= ROW_KEYS
        assert r["anchor_id"] is None or r["anchor_id"] in leaf_ids
        assert -1 <= r["score"] <= 1
        assert 0.0 <= r["harm_score"] <= 1.0 and (r["anchor_id"] is not None) == (r["harm_score"] >= 0.5)
    # margin = assigned − runner-up score: negative only where refinement moved a prompt off its nearest anchor
    negative = sum(r["margin"] < 0 for r in rows)
    unanchored = sum(r["anchor_id"] is None for r in rows)
    assert negative <= cov["settings"]["assignment"]["refine"]["n_moved"] + unanchored
    cluster_ids = {c["id"] for c in cov["clusters"]}
    assert {r["cluster_id"] for r in rows} <= cluster_ids | {-1}

    emb = np.load(out / "embeddings.npy")
    assert emb.shape == (len(sample_prompts), 384)
    assert emb.dtype == np.float16


def test_numbers_agree_with_the_assignments(audited: tuple[CoverageReport, Path]) -> None:
    """Every count, share and gap recomputed by hand from assignments.jsonl."""
    report, out = audited
    rows = read_rows(out)
    cov = json.loads((out / "coverage.json").read_text("utf-8"))
    n = len(rows)
    counts = Counter(r["anchor_id"] for r in rows if r["anchor_id"] is not None)
    n_anchored = sum(counts.values())
    n_un = sum(r["anchor_id"] is None for r in rows)
    assert n_anchored + n_un == n
    assert cov["metrics"]["n_anchored"] == n_anchored
    assert cov["unanchored"]["count"] == n_un
    assert cov["metrics"]["unanchored_share"] == pytest.approx(n_un / n, abs=1e-6)
    assert sum(a["count"] for a in cov["anchors"]) == n_anchored
    assert sum(a["target_share"] for a in cov["anchors"]) == pytest.approx(1.0, abs=1e-5)
    for a in cov["anchors"]:
        assert a["count"] == counts.get(a["id"], 0)
        assert a["share"] == pytest.approx(a["count"] / n_anchored, abs=1e-6)
        assert a["gap"] == pytest.approx(a["target_share"] - a["share"], abs=2e-6)  # each rounded to 6 places
    leaf_counts = [a["count"] for a in cov["anchors"]]
    probs = [c / n_anchored for c in leaf_counts if c]
    h = -sum(p * math.log(p) for p in probs)
    assert cov["metrics"]["normalized_entropy"] == pytest.approx(h / math.log(len(leaf_counts)), abs=1e-5)
    assert cov["metrics"]["anchors_covered"] == sum(c > 0 for c in leaf_counts)
    assert cov["metrics"]["n_prompts"] == n
    sizes = Counter(r["cluster_id"] for r in rows if r["cluster_id"] != -1)
    assert {c["id"]: c["size"] for c in cov["clusters"]} == dict(sizes)
    assert cov["metrics"]["n_clusters"] == len(sizes)
    gap_order = [a.id for a in report.gap_table()]
    assert gap_order == [a["id"] for a in sorted(cov["anchors"], key=lambda a: (-a["gap"], a["id"]))]


def test_harmful_prompts_are_anchored_more_than_benign(audited: tuple[CoverageReport, Path]) -> None:
    _, out = audited
    rows = read_rows(out)
    harmful, benign = rows[:24], rows[24:]
    share_h = np.mean([r["anchor_id"] is not None for r in harmful])
    share_b = np.mean([r["anchor_id"] is not None for r in benign])
    assert share_h >= 0.7
    assert share_b <= 0.3


def test_same_seed_gives_byte_identical_files(tmp_path: Path, embedder: CachedEmbedder,
                                              sample_prompts: list[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    data_advisor.audit(sample_prompts, taxonomy="catqa-11", out=a, settings=data_advisor.AuditSettings(seed=3),
                       embedder=embedder, render_html=False)
    # The old flat keywords still work (deprecated) and mean the same audit.
    with pytest.warns(DeprecationWarning, match=r"audit\(seed=\) is deprecated"):
        data_advisor.audit(sample_prompts, taxonomy="catqa-11", out=b, seed=3, embedder=embedder, render_html=False)
    assert embedder.last.misses == 0  # the second audit embedded nothing
    assert (a / "coverage.json").read_bytes() == (b / "coverage.json").read_bytes()
    assert (a / "assignments.jsonl").read_bytes() == (b / "assignments.jsonl").read_bytes()


def test_parent_roll_up_equals_sum_of_children(embedder: CachedEmbedder, sample_prompts: list[str]) -> None:
    tax = load_taxonomy("do-not-answer")
    report = data_advisor.audit(sample_prompts, taxonomy=tax, embedder=embedder, render_html=False)
    rows = {a.id: a for a in report.anchors}
    assert [a.id for a in report.anchors] == [p.id for p in tax.principles]  # file order, parents included
    parents = [p for p in tax.principles if tax.children(p.id)]
    assert len(parents) == 5
    n_anchored = report.metrics["n_anchored"]
    assert sum(a.count for a in report.leaf_anchors()) == n_anchored
    assert sum(rows[p.id].count for p in parents) == n_anchored
    for p in parents:
        kids = [rows[c.id] for c in tax.children(p.id)]
        row = rows[p.id]
        assert not row.is_leaf
        assert all(k.is_leaf and k.parent == p.id for k in kids)
        assert row.count == sum(k.count for k in kids)
        assert row.target_share == pytest.approx(sum(k.target_share for k in kids))
        assert row.share == pytest.approx(row.count / n_anchored if n_anchored else 0.0)
        assert row.deficit == sum(k.deficit for k in kids)
    assert report.taxonomy["hierarchical"] is True
    assert {a.id for a in report.gap_table()} == {p.id for p in tax.leaves()}


def test_exact_duplicates_are_counted_not_dropped(tmp_path: Path, embedder: CachedEmbedder,
                                                  sample_prompts: list[str]) -> None:
    dup = sample_prompts[2]
    texts = [*sample_prompts[:10], dup, dup.upper(), f"  {dup}  ", sample_prompts[30]]
    # normalised texts: prompt 2 ×4 (10 originals' #2 plus 3 copies), prompt 30 once more → 14 texts, 10 unique
    report = data_advisor.audit(texts, taxonomy="catqa-11", out=tmp_path / "o", embedder=embedder,
                                render_html=False, cluster=False)
    m = report.metrics
    assert m["n_prompts"] == 14
    assert m["n_unique"] == 11
    assert m["exact_duplicate_rate"] == pytest.approx(1 - 11 / 14, abs=1e-6)
    groups = report.duplicates["exact_groups"]
    assert report.duplicates["n_exact_groups"] == 1
    assert groups[0]["size"] == 4
    assert groups[0]["ids"] == ["2", "10", "11", "12"]
    rows = read_rows(tmp_path / "o")
    assert len(rows) == 14
    assert rows[10]["anchor_id"] == rows[2]["anchor_id"]
    assert rows[10]["score"] == rows[2]["score"]
    assert sum(a.count for a in report.anchors) + report.unanchored["count"] == 14
    assert report.discovery["method"] == "disabled"


def test_audit_from_a_file_path(tmp_path: Path, embedder: CachedEmbedder, sample_prompts: list[str]) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"id": f"q{i}", "body": t}) + "\n" for i, t in enumerate(sample_prompts[:12])),
                   encoding="utf-8")
    report = data_advisor.audit(src, taxonomy="harmbench", text_field="body", embedder=embedder, render_html=False)
    assert report.dataset["source"] == str(src)
    assert report.dataset["text_field"] == "body"
    assert report.dataset["fingerprint"] == PromptSet.from_texts(sample_prompts[:12],
                                                                 ids=[f"q{i}" for i in range(12)]).fingerprint()
    assert report.metrics["n_prompts"] == 12
    assert report.discovery["method"] == "spectral+hdbscan"  # a small input: UMAP skipped, and the report says so
    assert any("UMAP skipped" in note for note in report.discovery["notes"])


def test_unwritable_out_fails_before_any_work(tmp_path: Path, sample_prompts: list[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")

    class MustNotEmbed:
        model_id = "never"
        dim = 3

        def encode(self, texts: Any, *, show_progress: bool = False) -> np.ndarray:
            raise AssertionError("embedding started although the output folder is unusable")

    with pytest.raises(OutputError):
        data_advisor.audit(sample_prompts, out=blocker / "out", embedder=MustNotEmbed(), render_html=False)


def test_unknown_taxonomy(sample_prompts: list[str]) -> None:
    with pytest.raises(TaxonomyError):
        data_advisor.audit(sample_prompts, taxonomy="nope-42", render_html=False)


def test_html_report_written(tmp_path: Path, embedder: CachedEmbedder, sample_prompts: list[str]) -> None:
    out = tmp_path / "o"
    data_advisor.audit(sample_prompts, taxonomy="catqa-11", out=out, embedder=embedder, render_html=True)
    src = (out / "report.html").read_text("utf-8")
    report = data_advisor.CoverageReport.load(out)
    # The page shows this audit: its prompt count, every principle of the taxonomy, and the plotly figures.
    assert f"{report.metrics['n_prompts']:,}" in src and src.count("Plotly.newPlot") >= 2
    assert all(f">{a.name}<" in src or a.name.replace("&", "&amp;") in src for a in report.leaf_anchors())


# -------------------------------------------------------------------------------------- discovery, real data
def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.datasets
def test_off_taxonomy_theme_forms_its_own_unanchored_clusters(datasets_dir: Path, embedder: CachedEmbedder) -> None:
    """HarmBench's 100 copyright behaviors (song lyrics, book passages) are outside the `harmbench` taxonomy, which
    deliberately leaves copyright out: discovery must put them in clusters of their own, and none of those may be
    reported as covered by an anchor."""
    rows = _read_csv(datasets_dir / "harmbench" / "harmbench_behaviors_text_all.csv")
    prompts = PromptSet.from_texts([r["Behavior"] for r in rows], ids=[r["BehaviorID"] for r in rows])
    is_copyright = np.array([r["SemanticCategory"] == "copyright" for r in rows])
    result = data_advisor.audit_full(prompts, taxonomy="harmbench", embedder=embedder, seed=0)
    labels = result.clusters.labels
    copyright_clusters = []
    for c in result.report.clusters:
        members = labels == c.id
        if is_copyright[members].mean() >= 0.9:
            copyright_clusters.append(c)
    caught = np.isin(labels, [c.id for c in copyright_clusters]) & is_copyright
    print(f"\ncopyright clusters: {[(c.label, c.size, c.kind) for c in copyright_clusters]}; "
          f"they hold {caught.sum()} of {is_copyright.sum()} copyright behaviors")
    assert copyright_clusters
    assert caught.sum() >= 0.8 * is_copyright.sum()
    assert all(c.kind != "anchored" for c in copyright_clusters)
    anchored = result.assignments.anchored
    assert anchored[is_copyright].mean() < 0.3 < 0.8 < anchored[~is_copyright].mean()


@pytest.mark.datasets
def test_missing_themes_surface_as_emergent_clusters(datasets_dir: Path, embedder: CachedEmbedder) -> None:
    """The same 300 HarmBench harm behaviors against two taxonomies: CatQA-11 names their themes (hacking,
    misinformation, harassment…); SimpleSafetyTests-5 does not.  Only the narrow taxonomy leaves emergent clusters."""
    rows = [r for r in _read_csv(datasets_dir / "harmbench" / "harmbench_behaviors_text_all.csv")
            if r["SemanticCategory"] != "copyright"]
    prompts = PromptSet.from_texts([r["Behavior"] for r in rows], ids=[r["BehaviorID"] for r in rows])
    vectors = embedder.encode(prompts.texts)
    wide = data_advisor.audit_full(prompts, taxonomy="catqa-11", embedder=embedder, seed=0).report
    narrow_result = data_advisor.audit_full(prompts, taxonomy="simplesafetytests-5", embedder=embedder, seed=0)
    narrow = narrow_result.report
    n_wide, n_narrow = len(wide.emergent_clusters()), len(narrow.emergent_clusters())
    off_wide = sum(c.size for c in wide.clusters if c.kind != "anchored")
    off_narrow = sum(c.size for c in narrow.clusters if c.kind != "anchored")
    print(f"\nemergent clusters: catqa-11 {n_wide}, simplesafetytests-5 {n_narrow}; prompts in non-anchored clusters "
          f"{off_wide} vs {off_narrow}")
    assert np.array_equal(narrow_result.vectors, vectors)
    assert n_narrow >= 2
    assert n_narrow > n_wide
    assert off_narrow >= off_wide + 60
    assert narrow.metrics["n_emergent_clusters"] == n_narrow


def test_parent_and_dataset_vendi_from_summed_grams_equal_direct(embedder: CachedEmbedder,
                                                                  sample_prompts: list[str]) -> None:
    """Parents and the whole set get their Vendi from their leaves' summed Grams: same numbers as from the vectors."""
    from data_advisor.coverage import metrics as M

    tax = load_taxonomy("do-not-answer")
    result = data_advisor.audit_full(sample_prompts, taxonomy=tax, embedder=embedder, cluster=False)
    v, a = result.vectors, result.assignments
    leaf_of = [a.anchor_id(i) for i in range(len(v))]
    for row in result.report.anchors:
        leaves = {row.id} if row.is_leaf else {p.id for p in tax.leaves() if row.id in tax.ancestors(p.id)}
        idx = [i for i, lab in enumerate(leaf_of) if lab in leaves]
        expected = M.vendi_score(v[idx]) if idx else 0.0
        assert row.vendi == pytest.approx(expected, rel=1e-6, abs=1e-9), row.id
    assert result.report.metrics["vendi_score"] == pytest.approx(M.vendi_score(v), rel=1e-6)


def test_old_audit_keywords_map_onto_the_settings_objects() -> None:
    from data_advisor.coverage.audit import AuditOptions, AuditSettings, settings_from_keywords
    from data_advisor.errors import InputError

    with pytest.warns(DeprecationWarning, match="embedder_kind="):
        settings, options = settings_from_keywords(
            None, None, {"seed": 7, "min_cluster_size": 4, "text_field": "body", "embedder_kind": "onnx"}, where="audit")
    assert settings == AuditSettings(seed=7, min_cluster_size=4)
    assert options == AuditOptions(text_field="body", embedder_name="onnx")
    with pytest.raises(InputError, match="unknown keyword argument 'min_clustersize'"):
        settings_from_keywords(None, None, {"min_clustersize": 4}, where="audit")

"""``--engine ray``: same model + same inputs → the same anchors as the local engine (local Ray, 2 workers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (it is the optional `ray` extra: "
                                        "pip install 'data-advisor[ray]'); the Ray engine tests need it")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")


def _prompts(sample_prompts: list[str], n: int = 240) -> list[str]:
    """A few hundred distinct prompts: the hand-written sample, each with a few deterministic framings."""
    frames = ["{}", "Quick question: {}", "{} Please answer in detail.", "For a story I'm writing: {}",
              "My friend asked me this: {}", "{} Keep it short.", "Be honest. {}"]
    out = [f.format(p) for f in frames for p in sample_prompts]
    return out[:n]


def _write_shards(folder: Path, texts: list[str]) -> Path:
    """Three JSONL shards in a folder, prompt i in shard i % 3 with id p{i:04d}."""
    folder.mkdir()
    for k in range(3):
        with open(folder / f"part-{k}.jsonl", "w", encoding="utf-8") as fh:
            for i in range(k, len(texts), 3):
                fh.write(json.dumps({"id": f"p{i:04d}", "prompt": texts[i]}) + "\n")
    return folder


def _local_anchor_ids(texts: list[str], embedder, **assigner: float) -> tuple[list[str | None], np.ndarray]:
    from data_advisor.coverage.assign import AnchorAssigner, build_anchors
    from data_advisor.coverage.taxonomy import load_background, load_taxonomy

    anchors = build_anchors(load_taxonomy("catqa-11"), embedder, load_background())
    vecs = embedder.encode(texts)
    local = AnchorAssigner(**assigner).fit(anchors).assign(vecs)
    return [local.anchor_id(i) for i in range(len(texts))], vecs


def test_ray_engine_matches_local_anchors(tmp_path: Path, sample_prompts: list[str], embedder) -> None:
    from data_advisor.coverage.assign import AnchorAssigner, build_anchors
    from data_advisor.coverage.taxonomy import load_background, load_taxonomy
    from data_advisor.engines.ray_engine import ShardSettings, assign_shards, embed_texts

    texts = _prompts(sample_prompts)
    anchors = build_anchors(load_taxonomy("catqa-11"), embedder, load_background())
    local_ids, local_vecs = _local_anchor_ids(texts, embedder)
    shards = _write_shards(tmp_path / "shards", texts)

    from data_advisor.engines.ray_engine import ray_session

    with ray_session(workers=2):  # a local Ray: 2 embedding workers (+1 logical CPU for Ray Data's read tasks)
        vecs = embed_texts(texts, workers=2, rows_per_task=64)
        summary = assign_shards(shards, tmp_path / "out", ShardSettings(taxonomy="catqa-11", rows_per_task=64), workers=2)
    assert vecs.shape == local_vecs.shape
    assert float(np.abs(vecs - local_vecs).max()) < 1e-4
    ray_assign = AnchorAssigner().fit(anchors).assign(vecs)
    assert [ray_assign.anchor_id(i) for i in range(len(texts))] == local_ids

    import pyarrow.parquet as pq

    table = pq.read_table(summary["files"])
    got = dict(zip(table.column("id").to_pylist(), table.column("anchor_id").to_pylist(), strict=True))
    assert len(got) == len(texts) == summary["n_prompts"]
    assert summary["text_field"] == "prompt"
    assert all(got[f"p{i:04d}"] == local_ids[i] for i in range(len(texts)))
    assert sum(summary["counts"].values()) == sum(a is not None for a in local_ids)


def test_cli_engine_ray_audit_and_assign_only(tmp_path: Path, sample_prompts: list[str], embedder, run_cli) -> None:
    """The command line: ``audit SHARDS --engine ray`` gives the local engine's anchors in a full report, and
    ``--assign-only`` writes per-prompt Parquet + anchor counts computed on the workers (a local Ray it starts)."""
    import pyarrow.parquet as pq

    texts = _prompts(sample_prompts, 120)
    local_ids, _ = _local_anchor_ids(texts, embedder)
    shards = _write_shards(tmp_path / "shards", texts)

    full = tmp_path / "full"
    rc, _, err = run_cli("audit", shards, "--engine", "ray", "--ray-workers", "2", "--out", full, "--no-html",
                         "--no-cluster", "--no-refine", "-q", timeout=600)  # engines compared before refinement
    assert rc == 0, err[-3000:]
    rows = [json.loads(line) for line in (full / "assignments.jsonl").read_text("utf-8").splitlines()]
    assert {r["id"]: r["anchor_id"] for r in rows} == {f"p{i:04d}": a for i, a in enumerate(local_ids)}

    # --assign-only with a stricter margin: the workers must apply the command's thresholds, not the defaults.
    local_ids, _ = _local_anchor_ids(texts, embedder, margin_threshold=0.05)
    only = tmp_path / "only"
    rc, _, err = run_cli("audit", shards, "--engine", "ray", "--ray-workers", "2", "--assign-only", "--out", only,
                         "--margin-threshold", "0.05", "-q", timeout=600)
    assert rc == 0, err[-3000:]
    assert sorted(p.name for p in only.iterdir()) == ["anchor_counts.json", "assignments"]  # no temp folder left
    counts = json.loads((only / "anchor_counts.json").read_text("utf-8"))
    table = pq.read_table([only / f for f in counts["files"]])
    got = dict(zip(table.column("id").to_pylist(), table.column("anchor_id").to_pylist(), strict=True))
    assert got == {f"p{i:04d}": a for i, a in enumerate(local_ids)}
    assert counts["n_prompts"] == len(texts)
    expected = {a: sum(1 for x in local_ids if x == a) for a in {x for x in local_ids if x is not None}}
    assert {a["id"]: a["count"] for a in counts["anchors"] if a["count"]} == expected
    gaps = [a["gap"] for a in counts["anchors"]]
    assert gaps == sorted(gaps, reverse=True)  # largest gap first, as in the report

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


def test_ray_engine_matches_local_anchors(tmp_path: Path, sample_prompts: list[str], embedder) -> None:
    from data_advisor.coverage.assign import AnchorAssigner, build_anchors
    from data_advisor.coverage.taxonomy import load_background, load_taxonomy
    from data_advisor.engines.ray_engine import assign_shards, embed_texts

    texts = _prompts(sample_prompts)
    tax = load_taxonomy("catqa-11")
    anchors = build_anchors(tax, embedder, load_background())
    local_vecs = embedder.encode(texts)
    local = AnchorAssigner().fit(anchors).assign(local_vecs)
    local_ids = [local.anchor_id(i) for i in range(len(texts))]

    # Sharded input: three JSONL shards in a folder.
    shards = tmp_path / "shards"
    shards.mkdir()
    for k in range(3):
        with open(shards / f"part-{k}.jsonl", "w", encoding="utf-8") as fh:
            for i in range(k, len(texts), 3):
                fh.write(json.dumps({"id": f"p{i:04d}", "prompt": texts[i]}) + "\n")

    from data_advisor.engines.ray_engine import ray_session

    with ray_session(workers=2):  # a local Ray: 2 embedding workers (+1 logical CPU for Ray Data's read tasks)
        vecs = embed_texts(texts, workers=2, rows_per_task=64)
        summary = assign_shards(shards, tmp_path / "out", taxonomy="catqa-11", workers=2, rows_per_task=64)
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

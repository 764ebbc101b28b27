"""Synthetic audit and run folders for the report tests — built from the dataclasses, no embedding model.

Why synthetic: rendering is what is under test, not the audit; building a folder by hand takes
milliseconds, makes every number known, and lets us plant hostile prompts exactly where the report shows
text (tables, hover, legends, settings, run rationale).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor.coverage.report import AnchorCoverage, ClusterInfo, CoverageReport

#: Prompts that try to run script if any layer forgets to escape.  Each alert has its own number.
HOSTILE = [
    "<script>alert(1)</script>",
    "</script><script>alert(2)</script>",
    "<img src=x onerror=alert(3)>",
    '<a href="javascript:alert(4)">javascript:alert(4)</a>',
    "x\"'><svg onload=alert(5)> unbalanced \"' quotes",
]
#: A hostile anchor name (a custom taxonomy is user input too).
HOSTILE_ANCHOR_NAME = 'Weapons <i>&amp;</i> "explosives" <script>alert(6)</script>'
#: A hostile cluster keyword label.
HOSTILE_LABEL = "<b onmouseover=alert(7)>kw</b>"

# Flat-or-hierarchical taxonomy: (id, name, parent). Parents come first, like a taxonomy file.
PARENTS = [("harm", "Physical harm", None), ("info", "Information hazards", None)]
LEAVES = [
    ("weapons", HOSTILE_ANCHOR_NAME, "harm"),
    ("self_harm", "Self-harm", "harm"),
    ("violence", "Violence against others", "harm"),
    ("privacy", "Privacy violations", "info"),
    ("cyber", "Cybercrime & intrusion", "info"),
    ("misinfo", "Misinformation %{x} template-looking name", "info"),
]
WORDS = ["how", "to", "make", "build", "find", "steal", "leak", "hack", "spread", "write", "explain", "describe",
         "detailed", "instructions", "guide", "someone", "private", "address", "password", "bomb", "poison", "virus",
         "rumor", "vaccine", "election", "bank", "account", "secret"]


def _text(rng: np.random.Generator, k: int) -> str:
    n = int(rng.integers(6, 22))
    return f"[{k}] " + " ".join(WORDS[int(j)] for j in rng.integers(0, len(WORDS), n))


def _rows(n: int, seed: int, hostile: bool, shift: float) -> list[dict[str, Any]]:
    """Assignment rows: one gaussian blob per leaf (skewed sizes), an unanchored blob, hostile prompts apart."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.30, 0.05, 0.15, 0.25, 0.15, 0.10])
    weights = weights / weights.sum()
    rows: list[dict[str, Any]] = []
    centres = {leaf[0]: (8 * np.cos(j), 8 * np.sin(j)) for j, leaf in enumerate(LEAVES)}
    for i in range(n):
        u = rng.random()
        if u < 0.12:  # unanchored: an "emergent" blob (cluster 9) plus scattered noise
            if rng.random() < 0.7:
                x, y, cl = rng.normal(0, 0.8) + shift, rng.normal(0, 0.8), 9
            else:
                x, y, cl = rng.uniform(-12, 12), rng.uniform(-12, 12), -1
            rows.append({"id": f"p{i}", "text": _text(rng, i), "anchor_id": None,
                         "score": round(0.1 + 0.1 * rng.random(), 6),
                         "margin": 0.0, "cluster_id": cl, "nearest_anchor_id": "misinfo",
                         "background_score": round(0.3 * rng.random(), 6), "x": round(float(x), 5),
                         "y": round(float(y), 5)})
            continue
        j = int(rng.choice(len(LEAVES), p=weights))
        leaf = LEAVES[j][0]
        cx, cy = centres[leaf]
        rows.append({"id": f"p{i}", "text": _text(rng, i), "anchor_id": leaf,
                     "score": round(0.3 + 0.4 * rng.random(), 6),
                     "margin": round(0.1 * rng.random(), 6), "cluster_id": j if rng.random() > 0.1 else -1,
                     "nearest_anchor_id": leaf, "background_score": round(0.3 * rng.random(), 6),
                     "x": round(float(cx + rng.normal(0, 1.0) + shift), 5),
                     "y": round(float(cy + rng.normal(0, 1.0)), 5)})
    if hostile:  # far from the cloud and from each other, so a test can hover each one
        for k, h in enumerate(HOSTILE):
            rows.append({"id": f"hostile-{k}", "text": h, "anchor_id": None, "score": 0.05, "margin": 0.0,
                         "cluster_id": -1, "nearest_anchor_id": "weapons", "background_score": 0.01,
                         "x": 20.0 + 4.0 * k, "y": 20.0 - 4.0 * k})
    return rows


def build_report(rows: list[dict[str, Any]], *, hierarchical: bool = True, hostile: bool = True) -> CoverageReport:
    """A CoverageReport whose counts and shares follow from ``rows`` (so the report is self-consistent)."""
    n = len(rows)
    counts = {leaf[0]: 0 for leaf in LEAVES}
    for r in rows:
        if r["anchor_id"] is not None:
            counts[r["anchor_id"]] += 1
    anchored = sum(counts.values())
    target = 1.0 / len(LEAVES)
    by_anchor: dict[str, list[dict[str, Any]]] = {k: [] for k in counts}
    for r in rows:
        if r["anchor_id"] is not None:
            by_anchor[r["anchor_id"]].append(r)
    leaf_rows = {}
    for lid, name, parent in LEAVES:
        share = counts[lid] / anchored if anchored else 0.0
        leaf_rows[lid] = AnchorCoverage(
            id=lid, name=name, count=counts[lid], share=share, target_share=target, gap=target - share,
            deficit=max(0, round(target * anchored) - counts[lid]), parent=parent if hierarchical else None,
            is_leaf=True, mean_score=0.5, n_clusters=1, vendi=3.5,
            examples=[{"id": r["id"], "text": r["text"]} for r in by_anchor[lid][:3]])
    anchors: list[AnchorCoverage] = []
    if hierarchical:
        for pid, pname, _ in PARENTS:
            below = [leaf_rows[lid] for lid, _, par in LEAVES if par == pid]
            cnt = sum(b.count for b in below)
            share = cnt / anchored if anchored else 0.0
            tshare = sum(b.target_share for b in below)
            anchors.append(AnchorCoverage(id=pid, name=pname, count=cnt, share=share, target_share=tshare,
                                          gap=tshare - share, deficit=sum(b.deficit for b in below), is_leaf=False))
    anchors += list(leaf_rows.values())
    hostile_ex = [{"id": f"hostile-{k}", "text": h} for k, h in enumerate(HOSTILE)] if hostile else []
    unanchored = [r for r in rows if r["anchor_id"] is None]
    clusters = [ClusterInfo(id=9, size=sum(1 for r in rows if r["cluster_id"] == 9),
                            label=HOSTILE_LABEL if hostile else "emergent, blob", keywords=["kw", "blob"],
                            kind="emergent", top_anchor=None, top_anchor_share=0.0, nearest_anchor="misinfo",
                            centroid_score=0.31, background_score=0.2, unanchored_share=1.0,
                            examples=hostile_ex[:2] + [{"id": r["id"], "text": r["text"]} for r in unanchored[:1]])]
    for j, (lid, _, _) in enumerate(LEAVES):
        size = sum(1 for r in rows if r["cluster_id"] == j)
        clusters.append(ClusterInfo(id=j, size=size, label=f"{lid}, words", keywords=[lid, "words"], kind="anchored",
                                    top_anchor=lid, top_anchor_share=1.0, nearest_anchor=lid, centroid_score=0.6,
                                    background_score=0.3, unanchored_share=0.0,
                                    examples=[{"id": r["id"], "text": r["text"]} for r in by_anchor[lid][:3]]))
    clusters.sort(key=lambda c: (-c.size, c.id))
    n_un = len(unanchored)
    leaf_counts = list(counts.values())
    p = np.array(leaf_counts, float) / max(1, anchored)
    ent = float(-(p[p > 0] * np.log(p[p > 0])).sum() / np.log(len(p)))
    metrics = {
        "n_prompts": n, "n_unique": n - 1, "n_anchored": anchored, "anchored_share": anchored / n,
        "n_leaf_anchors": len(LEAVES), "anchors_covered": sum(1 for c in leaf_counts if c > 0),
        "coverage_ratio": sum(1 for c in leaf_counts if c >= 5) / len(LEAVES), "coverage_min_count": 5,
        "normalized_entropy": round(ent, 6), "gini": 0.2, "kl_target_actual": 0.05, "effective_anchors": 5.1,
        "vendi_score": 42.5, "vendi_method": "exact", "distinct_1": 0.3, "distinct_2": 0.6,
        "exact_duplicate_rate": 0.01, "near_duplicate_rate": 0.02, "near_duplicate_threshold": 0.95,
        "near_duplicate_method": "exact: FAISS flat <b>inner-product</b> search",  # markup must stay text
        "mean_score": 0.45, "mean_margin": 0.1, "n_clusters": len(clusters), "noise_share": 0.08,
        "n_emergent_clusters": 1, "unanchored_share": n_un / n,
    }
    return CoverageReport(
        dataset={"source": "synthetic/<script>alert(8)</script>.jsonl", "n_prompts": n, "text_field": "text",
                 "n_skipped": 0, "n_truncated": 0, "fingerprint": "abc123"},
        taxonomy={"id": "synthetic", "name": "Synthetic taxonomy", "version": "1", "source": "tests",
                  "hierarchical": hierarchical},
        anchors=anchors,
        unanchored={"count": n_un, "share": n_un / n,
                    "examples": hostile_ex + [{"id": r["id"], "text": r["text"]} for r in unanchored[:5]]},
        metrics=metrics,
        clusters=clusters,
        duplicates={"exact_groups": [{"size": 2, "ids": ["hostile-0", "dup"], "text": HOSTILE[0]}] if hostile else [],
                    "n_exact_groups": 1 if hostile else 0,
                    "near_pairs": [{"a": {"id": "hostile-1", "text": HOSTILE[1]},
                                    "b": {"id": "hostile-2", "text": HOSTILE[2]}, "similarity": 0.97}]
                    if hostile else []},
        discovery={"method": "umap+hdbscan", "notes": ["note with <tag> & ampersand"], "n_clusters": len(clusters),
                   "noise_share": 0.08},
        settings={"taxonomy": "synthetic", "seed": 0, "model_id": "synthetic-model", "taxonomy_fingerprint": "f00",
                  "weird": "</script><script>alert(9)</script>"},
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_audit_dir(path: Path, *, n: int = 600, seed: int = 0, hierarchical: bool = True, hostile: bool = True,
                    embeddings: bool = True, coords: bool = True, shift: float = 0.0, dim: int = 24) -> Path:
    """coverage.json + assignments.jsonl (+ embeddings.npy, float16, anchor-structured) in ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    rows = _rows(n, seed, hostile, shift)
    if not coords:
        for r in rows:
            r["x"] = r["y"] = 0.0
    build_report(rows, hierarchical=hierarchical, hostile=hostile).save(path / "coverage.json")
    write_jsonl(path / "assignments.jsonl", rows)
    if embeddings:
        rng = np.random.default_rng(seed + 1)
        centres = np.random.default_rng(123).normal(0, 1, (len(LEAVES) + 1, dim))
        ids = [leaf[0] for leaf in LEAVES]
        cls = [ids.index(r["anchor_id"]) if r["anchor_id"] else len(LEAVES) for r in rows]
        vec = centres[cls] + rng.normal(0, 0.5, (len(rows), dim)) + shift * 0.3
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        np.save(path / "embeddings.npy", vec.astype(np.float16))
    return path


def write_run_dir(path: Path, *, rounds: int = 5, seed: int = 0) -> Path:
    """An advisor run folder: config.json, rounds.jsonl, prompts.jsonl and the final audit files."""
    write_audit_dir(path, n=500, seed=seed)
    rng = np.random.default_rng(seed)
    ids = [leaf[0] for leaf in LEAVES]
    counts = {a: int(rng.integers(20, 60)) for a in ids}
    config = {"dataset": "seed.jsonl", "taxonomy": "synthetic", "model": "openai/test-model", "rounds": rounds,
              "api_key": "sk-test-SENTINEL-7f3a9c1e5b2d4086", "max_tokens": 512,
              "notes": "</script><script>alert(10)</script>"}
    (path / "config.json").write_text(json.dumps(config, indent=2), "utf-8")
    round_rows, prompt_rows = [], []
    n_prompts = 0  # prompts the run added so far (rounds.jsonl counts the additions, as a real run does)
    for r in range(1, rounds + 1):
        total = sum(counts.values())
        gaps = {a: round(1 / len(ids) - counts[a] / total, 6) for a in ids}
        target = max(ids, key=lambda a: (gaps[a], a))
        gen = int(rng.integers(15, 30))
        rejected = int(rng.integers(2, 8))
        kept = gen - rejected
        on = kept - int(rng.integers(0, 3))
        counts[target] += on
        other = ids[(ids.index(target) + 1) % len(ids)]
        counts[other] += kept - on
        n_prompts += kept
        dup = rejected // 2
        round_rows.append({
            "round": r, "issue": f"under-covered: {target}" if r != 2 else HOSTILE[1],
            "anchor_id": target if r != 4 else None,
            "rationale": f"gap {gaps[target]:+.3f} is the largest" if r != 3 else HOSTILE[2],
            "advice_mode": "targeted" if r % 2 else "exploratory", "n_generated": gen, "kept": kept,
            "rejected": rejected, "rejected_reasons": {"duplicate": dup, "off_topic": rejected - dup},
            "on_target": on, "prompt_tokens": 1000 + 50 * r, "completion_tokens": 600 + 40 * r,
            "cost_usd": round(0.0012 * r, 6), "n_prompts": n_prompts,
            "metrics": {"normalized_entropy": round(0.85 + 0.02 * r, 6), "coverage_ratio": min(1.0, 0.6 + 0.1 * r),
                        "vendi_score": 30 + 2.5 * r, "kl_target_actual": round(0.2 / r, 6)},
            "anchor_counts": dict(counts), "gaps_before": gaps,
        })
        for k in range(kept):
            text = HOSTILE[k] if (r == 1 and k < len(HOSTILE)) else f"round {r} prompt {k} about {target}"
            prompt_rows.append({"id": f"r{r}-{k}", "text": text, "round": r, "issue": round_rows[-1]["issue"],
                                "anchor_id": target if k < on else other, "score": round(0.4 + 0.01 * k, 4)})
    write_jsonl(path / "rounds.jsonl", round_rows)
    write_jsonl(path / "prompts.jsonl", prompt_rows)
    return path


def write_big_audit_dir(path: Path, n: int = 100_000, seed: int = 0) -> Path:
    """A 100k-prompt audit folder (no embeddings): long texts (up to ~900 chars) to exercise truncation."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [leaf[0] for leaf in LEAVES]
    anchor_idx = rng.choice(len(ids) + 1, size=n, p=[0.25, 0.05, 0.15, 0.2, 0.15, 0.1, 0.1])
    xs = rng.normal(0, 1, n) + 6 * np.cos(anchor_idx)
    ys = rng.normal(0, 1, n) + 6 * np.sin(anchor_idx)
    pool_rng = np.random.default_rng(seed + 1)  # 1,000 distinct bodies of 5–150 words, reused with a unique id
    vocab = np.array(WORDS)
    pool = [" ".join(vocab[pool_rng.integers(0, len(vocab), int(k))].tolist()) for k in pool_rng.integers(5, 150, 1000)]
    body = rng.integers(0, len(pool), n)
    rows = []
    for i in range(n):
        a = int(anchor_idx[i])
        rows.append({"id": f"big-{i}", "text": f"#{i} {pool[int(body[i])]}", "anchor_id": ids[a] if a < len(ids) else None,
                     "score": 0.5, "margin": 0.1, "cluster_id": a if a < len(ids) else 9,
                     "nearest_anchor_id": ids[min(a, len(ids) - 1)], "background_score": 0.1,
                     "x": round(float(xs[i]), 5), "y": round(float(ys[i]), 5)})
    build_report(rows, hostile=False).save(path / "coverage.json")
    write_jsonl(path / "assignments.jsonl", rows)
    return path

"""Discovery granularity: does clustering collapse, is it stable over seeds, and how well does it match fine labels?

Sections (``--sections``):

* ``quality`` — every shared set with fine labels (Do-Not-Answer's 61 specific harms and 12 types at 300 / 550 /
  609 / 939 prompts, HarmBench's 6 semantic categories, JailbreakBench's 10 categories, the three pooled) and the
  unlabelled hh-rlhf test first turns, seeds 0–2.  For each (set, size, seed) the spectral embedding and the UMAP
  5-D embedding are computed once; HDBSCAN then runs on them with the old settings (spectral below 1,000 prompts,
  min_cluster_size √n/2, min_samples mcs/5, no guard), the new defaults (``ClusterDiscovery()``) and a grid of
  UMAP-path rules.  Scores: AMI with noise counted as one cluster and with noise excluded, NMI, ARI (noise as a
  cluster), cluster count, noise share, largest-cluster share.  ``selection`` picks the grid rule
  leave-one-dataset-out: for each held-out dataset the rule with the best mean AMI (noise counted) on the *other*
  datasets, among rules that never collapse hh-rlhf (every seed ≥ 20 clusters, largest ≤ 10%, noise ≤ 30%,
  counts within 0.6), and reports it on the held-out one.  Fusing spectral and UMAP fits is exactly what
  ``ClusterDiscovery.fit`` does (reduction → :func:`cluster_with_guard`), so these labels are the audit's.
* ``hh_audit`` — the default audit (``run_audit``, llamaguard3) on hh-rlhf, seeds 0–2: clusters, noise, largest
  share, anchors with ≥ 3 sub-clusters; the same for the old settings.
* ``scale`` — the Alpaca + harmful mix at 10k (seeds 0–2) and 50k (seed 0, once): seconds of the shared parts (k-NN
  graph, UMAP 5-D and 2-D; their settings did not change) and of HDBSCAN old and new on the same reduction, so old and
  new total times come from one run on the same machine state; counts, noise, largest share, and AMI over the mix's
  labelled harmful prompts.

Run: ``nice -n 10 python benchmarks/discovery.py`` (writes ``results/discovery.json``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

SEEDS = (0, 1, 2)
#: UMAP-path rules tried: (divisor of √n, floor, min_samples; 0 = old rule mcs // 5, at least 2).
GRID = [(d, f, ms) for d in (2, 3, 4, 5) for f in (5, 8, 10) for ms in (2, 0)]
#: The grid rule the defaults implement (granularity.umap_min_cluster_size and UMAP_MIN_SAMPLES).
DEFAULT_RULE = "grid:4/10/2"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def old_params(n: int) -> tuple[int, int]:
    """The settings before this change: √n/2 (at least 5), min_samples mcs/5 (at least 2), spectral below 1,000."""
    mcs = max(5, round(math.sqrt(n) / 2))
    return mcs, max(2, mcs // 5)


def grid_params(rule: tuple[int, int, int], n: int) -> tuple[int, int]:
    d, f, ms = rule
    mcs = max(f, round(math.sqrt(n) / d))
    return mcs, ms or max(2, mcs // 5)


def score(labels: list[str] | None, pred: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, normalized_mutual_info_score

    n = len(pred)
    kept = pred >= 0
    sizes = np.bincount(pred[kept]) if kept.any() else np.zeros(1, dtype=np.int64)
    out: dict[str, Any] = {"n_clusters": int((sizes > 0).sum()), "noise": round(float(1 - kept.mean()), 4),
                           "largest": round(float(sizes.max() / n), 4)}
    if labels is not None:
        lab = np.asarray(labels)
        out["ami_noise"] = round(float(adjusted_mutual_info_score(lab, pred)), 4)
        out["ami_excl"] = round(float(adjusted_mutual_info_score(lab[kept], pred[kept])), 4) if kept.sum() > 1 else 0.0
        out["nmi"] = round(float(normalized_mutual_info_score(lab, pred)), 4)
        out["ari"] = round(float(adjusted_rand_score(lab, pred)), 4)
    return out


def vectors_of(texts: list[str]) -> np.ndarray:
    from data_advisor.coverage.embedding.registry import make_embedder

    return make_embedder().encode(texts)


# --------------------------------------------------------------------------------------------------- sets
def labelled(ds: Path) -> list[tuple[str, str, list[str], list[str], int]]:
    """(name, dataset group, texts, labels, n) — each set at the sizes it is scored at (seeded subsamples)."""
    dna = C.read_csv(ds / "do-not-answer" / "do_not_answer_en.csv")
    hb = [r for r in C.read_csv(ds / "harmbench" / "harmbench_behaviors_text_all.csv") if r["SemanticCategory"] != "copyright"]
    jbb = C.read_csv(ds / "jailbreakbench" / "jbb_harmful_behaviors.csv")
    dq = [r["question"] for r in dna]
    pool_t = dq + [r["Behavior"] for r in hb] + [r["Goal"] for r in jbb]
    pool_l = ([f"dna:{r['types_of_harm']}" for r in dna] + [f"hb:{r['SemanticCategory']}" for r in hb]
              + [f"jbb:{r['Category']}" for r in jbb])
    out = []
    for n in (300, 550, 939):
        out.append(("dna-61", "do-not-answer", dq, [r["specific_harms"] for r in dna], n))
    for n in (609, 939):
        out.append(("dna-12", "do-not-answer", dq, [r["types_of_harm"] for r in dna], n))
    out.append(("hb-6", "harmbench", [r["Behavior"] for r in hb], [r["SemanticCategory"] for r in hb], len(hb)))
    out.append(("jbb-10", "jailbreakbench", [r["Goal"] for r in jbb], [r["Category"] for r in jbb], len(jbb)))
    out.append(("pooled-3", "pooled", pool_t, pool_l, len(pool_t)))
    return out


def subsample(n_total: int, n: int) -> np.ndarray:
    return np.arange(n_total) if n >= n_total else np.sort(np.random.default_rng(0).choice(n_total, n, replace=False))


def reductions(v: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The spectral and UMAP 5-D embeddings HDBSCAN runs on (computed exactly as ClusterDiscovery.fit does)."""
    from data_advisor.coverage.cluster import ClusterDiscovery

    out = {}
    for path, umap_min_n in (("spectral", 10**9), ("umap", 3)):
        r = ClusterDiscovery(seed=seed, umap_min_n=umap_min_n, collapse_share=2.0).fit(v)
        assert r.reduced is not None
        out[path] = r.reduced
    return out


def old_labels(red: dict[str, np.ndarray], n: int) -> np.ndarray:
    from data_advisor.coverage.discovery.granularity import hdbscan_labels

    return hdbscan_labels(red["spectral" if n < 1000 else "umap"], *old_params(n))[0]


def new_labels(red: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, int]:
    """The defaults' labels: the path and rule ClusterDiscovery() picks for n prompts, with the collapse guard."""
    from data_advisor.coverage.cluster import ClusterDiscovery
    from data_advisor.coverage.discovery.granularity import cluster_with_guard

    disc = ClusterDiscovery()
    p = disc.params(n)
    got = cluster_with_guard(red["spectral" if n < disc.umap_min_n else "umap"], p["min_cluster_size"],
                             p["min_samples"], collapse_share=disc.collapse_share)
    return got.labels, got.guard_fired


def section_quality(ds: Path) -> dict[str, Any]:
    from data_advisor.coverage.discovery.granularity import cluster_with_guard

    rows: list[dict[str, Any]] = []
    sets: list[tuple[str, str, list[str], list[str] | None, int]] = list(labelled(ds))
    hh = C.hh_first_turns(ds)
    sets.append(("hh-rlhf", "hh-rlhf", hh, None, len(hh)))
    vec_cache: dict[int, np.ndarray] = {}
    for name, group, texts, labels, n in sets:
        key = id(texts)
        if key not in vec_cache:
            vec_cache[key] = vectors_of(texts)
        sel = subsample(len(texts), n)
        v = vec_cache[key][sel]
        lab = [labels[i] for i in sel] if labels is not None else None
        for seed in SEEDS:
            with C.Timer() as t:
                red = reductions(v, seed)
            base = {"set": name, "group": group, "n": len(v), "seed": seed, "reduce_s": round(t.s, 2)}
            rows.append({**base, "variant": "old", **score(lab, old_labels(red, len(v)))})
            labels_new, fired = new_labels(red, len(v))
            rows.append({**base, "variant": "new", "guard_fired": fired, **score(lab, labels_new)})
            for rule in GRID:
                got = cluster_with_guard(red["umap"], *grid_params(rule, len(v)))
                rows.append({**base, "variant": "grid:{}/{}/{}".format(*rule), "guard_fired": got.guard_fired,
                             **score(lab, got.labels)})
        C.log(f"quality: {name} n={len(v)} done")
    return {"rows": rows, "selection": select(rows), "load_average": load()}


def _hh_ok(rows: list[dict[str, Any]]) -> bool:
    hh = [r for r in rows if r["set"] == "hh-rlhf"]
    counts = [r["n_clusters"] for r in hh]
    return bool(hh) and all(r["n_clusters"] >= 20 and r["largest"] <= 0.10 and r["noise"] <= 0.30 for r in hh) \
        and min(counts) / max(counts) >= 0.6


def select(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Leave-one-dataset-out choice of the UMAP-path rule (sets at ≥ 200 prompts, where the UMAP path runs)."""
    groups = sorted({r["group"] for r in rows if r.get("ami_noise") is not None and r["group"] != "pooled"})
    variants = sorted({r["variant"] for r in rows if r["variant"].startswith("grid:")})
    allowed = [v for v in variants if _hh_ok([r for r in rows if r["variant"] == v])]

    def mean_ami(variant: str, keep: Callable[[dict[str, Any]], bool]) -> float:
        vals = [r["ami_noise"] for r in rows if r["variant"] == variant and r.get("ami_noise") is not None
                and r["n"] >= 200 and keep(r)]
        return float(np.mean(vals)) if vals else float("nan")

    folds = {}
    for g in groups:
        if math.isnan(mean_ami("old", lambda r, g=g: r["group"] == g)):
            continue  # the held-out set is below 200 prompts: the UMAP-path rule never runs on it
        train = {v: mean_ami(v, lambda r, g=g: r["group"] not in (g, "pooled")) for v in allowed}
        train = {v: s for v, s in train.items() if not math.isnan(s)}
        if not train:
            continue
        top = max(train.values())
        tied = sorted(v for v, s in train.items() if s >= top - 1e-9)
        # Rules that tie on the training sets give the same labels there; the shipped default is preferred among them.
        best = DEFAULT_RULE if DEFAULT_RULE in tied else tied[0]
        folds[g] = {"chosen": best, "tied": tied, "train_ami": round(train[best], 4),
                    "held_out_ami": round(mean_ami(best, lambda r, g=g: r["group"] == g), 4),
                    "held_out_ami_old": round(mean_ami("old", lambda r, g=g: r["group"] == g), 4),
                    "held_out_ami_new": round(mean_ami("new", lambda r, g=g: r["group"] == g), 4)}
    return {"allowed_by_hh": allowed, "folds": folds}


# --------------------------------------------------------------------------------------------------- hh audit
def _anchors_with_subclusters(report: Any, k: int = 3) -> tuple[int, int]:
    leaves = report.leaf_anchors()
    return sum(1 for a in leaves if len(a.subclusters) >= k), len(leaves)


def section_hh_audit(ds: Path) -> dict[str, Any]:
    from data_advisor.coverage.audit import AuditSettings, run_audit
    from data_advisor.coverage.cluster import ClusterDiscovery
    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.coverage.taxonomy import load_taxonomy
    from data_advisor.data import load_prompts

    prompts = load_prompts(ds / "hh-rlhf" / "harmless-base_test.jsonl", text_field="chosen", skip_invalid=True,
                           truncate=True)
    embedder = make_embedder()
    vectors = embedder.encode(prompts.texts)
    tax = load_taxonomy("llamaguard3")
    n = len(vectors)
    rows = []
    for variant in ("new", "old"):
        for seed in SEEDS:
            mcs, ms = old_params(n)
            disc = (ClusterDiscovery(seed=seed, umap_min_n=1000, min_cluster_size=mcs, min_samples=ms,
                                     collapse_share=2.0) if variant == "old" else None)
            with C.Timer() as t:
                res = run_audit(prompts, tax, embedder, settings=AuditSettings(taxonomy=tax.id, seed=seed),
                                vectors=vectors, discovery=disc)
            rich, n_leaves = _anchors_with_subclusters(res.report)
            sizes = np.bincount(res.clusters.labels[res.clusters.labels >= 0])
            rows.append({"variant": variant, "seed": seed, "n": n, "n_clusters": res.clusters.n_clusters,
                         "noise": round(res.clusters.noise_share, 4), "largest": round(float(sizes.max() / n), 4),
                         "anchors_with_3_subclusters": rich, "leaf_anchors": n_leaves,
                         "mean_subclusters_per_anchor": round(float(np.mean(
                             [len(a.subclusters) for a in res.report.leaf_anchors()])), 2),
                         "notes": res.clusters.notes, "audit_s": round(t.s, 1)})
            C.log(f"hh audit {variant} seed {seed}: {rows[-1]['n_clusters']} clusters")
            if variant == "old" and seed == 0:
                break  # the old result is known to flip; one seed documents the before state in the audit itself
    return {"rows": rows, "load_average": load()}


# --------------------------------------------------------------------------------------------------- scale
def mix_labels(ds: Path, texts: list[str]) -> list[str | None]:
    """Fine label of each mix prompt that comes from a labelled set (None for Alpaca and unlabelled sources)."""
    found: dict[str, str] = {}
    for name, _, t, lab, _ in labelled(ds):
        if name in ("pooled-3", "dna-61"):
            continue
        for x, y in zip(t, lab, strict=True):
            found.setdefault(C.norm(x), f"{name}:{y}")
    return [found.get(C.norm(x)) for x in texts]


def section_scale(ds: Path, sizes: list[int], seeds_10k: tuple[int, ...]) -> dict[str, Any]:
    from scale import build_prompts

    from data_advisor.coverage.cluster import ClusterDiscovery, build_knn_graph
    from data_advisor.coverage.discovery.granularity import cluster_with_guard, hdbscan_labels

    rows = []
    for n in sizes:
        texts, comp = build_prompts(ds, n)
        v = vectors_of(texts)
        labs = mix_labels(ds, texts)
        has = np.array([x is not None for x in labs])
        lab_list = [x for x in labs if x is not None]
        for seed in (seeds_10k if n <= 10_000 else (0,)):
            disc = ClusterDiscovery(seed=seed)
            p = disc.params(n)
            with C.Timer() as t_graph:
                graph = build_knn_graph(v, disc.graph_k(n))
            with C.Timer() as t_umap:
                red, _ = disc._umap(v, p, graph)
            omcs, oms = old_params(n)
            with C.Timer() as t_old:
                old = hdbscan_labels(red, omcs, oms)[0]
            with C.Timer() as t_new:
                new = cluster_with_guard(red, p["min_cluster_size"], p["min_samples"])
            shared = t_graph.s + t_umap.s
            for variant, labels, hs in (("old", old, t_old.s), ("new", new.labels, t_new.s)):
                s = score(None, labels)
                s.update({k: val for k, val in score(lab_list, labels[has]).items() if k.startswith(("ami", "nmi", "ari"))})
                rows.append({"n": n, "seed": seed, "variant": variant, "hdbscan_s": round(hs, 2),
                             "shared_graph_umap_s": round(shared, 2), "total_s": round(shared + hs, 2),
                             "labelled_prompts": int(has.sum()), "composition": comp["how"],
                             "min_cluster_size": omcs if variant == "old" else p["min_cluster_size"],
                             "min_samples": oms if variant == "old" else p["min_samples"], **s,
                             "guard_fired": new.guard_fired if variant == "new" else 0, "load_average": load()})
            C.log(f"scale n={n} seed={seed}: old {rows[-2]['n_clusters']} / new {rows[-1]['n_clusters']} clusters")
    return {"rows": rows}


def main() -> None:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--sections", default="quality,hh_audit,scale")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    args = p.parse_args()
    ds = C.require_datasets(args.datasets)
    started = time.perf_counter()
    payload: dict[str, Any] = {"seeds": list(SEEDS), "grid": [list(g) for g in GRID]}
    sections = args.sections.split(",")
    out = C.result_path("discovery", args.quick, args.out)
    if out.exists():  # sections not rerun are kept from the last run of this script
        import json

        prev = json.loads(out.read_text("utf-8"))
        payload.update({k: prev[k] for k in ("quality", "hh_audit", "scale") if k in prev and k not in sections})
        payload["kept_from_earlier_run"] = {k: prev.get("finished_utc") for k in ("quality", "hh_audit", "scale")
                                            if k in prev and k not in sections}
    if "quality" in sections:
        payload["quality"] = section_quality(ds)
    elif "select" in sections and "quality" in payload:  # re-derive the choice from the stored rows
        payload["quality"]["selection"] = select(payload["quality"]["rows"])
    if "hh_audit" in sections:
        payload["hh_audit"] = section_hh_audit(ds)
    if "scale" in sections:
        payload["scale"] = section_scale(ds, [10_000] if args.quick else args.sizes, (0,) if args.quick else SEEDS)
    C.emit("discovery", args, payload, started=started)


if __name__ == "__main__":
    main()

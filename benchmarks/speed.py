"""Speed and memory against the obvious alternatives, on the same prompts and the same embedding model.

Every measurement runs in a fresh Python process (peak RSS from ``os.wait4`` of that child):

* our full audit (``run_audit``: embed, anchors, assignment, UMAP + HDBSCAN, report metrics), once with a cold
  embedding cache (a temporary ``DATA_ADVISOR_CACHE``; numba's UMAP kernels stay warm, as after a machine's first
  audit) and once with the cache that run filled (warm);
* BERTopic ``fit_transform`` with the same precomputed embeddings, and with its own embedding (the same
  bundled all-MiniLM-L6-v2 ``SentenceTransformer``); its UMAP is seeded (``random_state``) like ours, all else
  default. BERTopic's UMAP kernels are compiled by numba in every process (it enables no disk cache), so a
  second fit in the same process is timed too where affordable;
* embedding throughput of ``CachedEmbedder`` with an empty cache (includes writing the cache) vs a plain
  ``SentenceTransformer.encode`` (same batch size 64, normalised);
* the advisor loop's incremental update: adding 12 prompts to a 10k-prompt ``CoverageMonitor`` plus
  ``quick_metrics()``, vs recomputing a full ``run_audit`` of the 10,012 prompts from cached vectors.

Prompts: the same seeded mix as bench_audit.py (Alpaca + the harmful sets, deduplicated).

    python benchmarks/speed.py              # 10k and 30k
    python benchmarks/speed.py --quick      # 1k
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

SCRIPT = "speed"
TAXONOMY = "catqa-11"
N_NEW = 12


# ---------------------------------------------------------------------------------------------- workers
def w_ours(ds: Path, n: int, seed: int) -> dict[str, Any]:
    with C.Timer() as t_imp:
        import sentence_transformers  # noqa: F401
        import umap  # noqa: F401

        from data_advisor.coverage.audit import AuditSettings, run_audit
        from data_advisor.coverage.embedding.registry import make_embedder
        from data_advisor.coverage.taxonomy import load_taxonomy
        from data_advisor.data import PromptSet
    prompts = PromptSet.from_texts(C.scale_prompts(ds, n, seed=0))
    taxonomy = load_taxonomy(TAXONOMY)
    embedder = make_embedder()
    with C.Timer() as t:
        result = run_audit(prompts, taxonomy, embedder, settings=AuditSettings(taxonomy=taxonomy.id, seed=seed))
    return {"n": n, "import_s": round(t_imp.s, 3), "audit_s": round(t.s, 3), "audit_cpu_s": round(t.cpu, 3),
            "model_loaded": embedder.inner.model_loaded,  # type: ignore[attr-defined]
            "cache_hits": embedder.last.hits, "cache_misses": embedder.last.misses,
            "n_clusters": result.clusters.n_clusters, "peak_rss_mib_self": C.peak_rss_mib_self()}


def _st_model() -> Any:
    from sentence_transformers import SentenceTransformer

    from data_advisor.coverage.embedding.models import resolve_model

    path, _, _ = resolve_model("default")
    return SentenceTransformer(path, device="cpu")


def w_bertopic(ds: Path, n: int, seed: int, precomputed: bool, second_fit: bool) -> dict[str, Any]:
    with C.Timer() as t_imp:
        from bertopic import BERTopic
        from umap import UMAP

        from data_advisor.coverage.embedding.registry import make_embedder
    texts = C.scale_prompts(ds, n, seed=0)

    def model(st: Any) -> Any:
        umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed)
        return BERTopic(embedding_model=st, umap_model=umap_model, verbose=False)

    out: dict[str, Any] = {"n": n, "import_s": round(t_imp.s, 3), "precomputed": precomputed}
    if precomputed:
        emb = make_embedder()
        vecs = emb.encode(texts)  # from the cache the audit run filled (not timed)
        out["cache_misses"] = emb.last.misses
        with C.Timer() as t:
            topics, _ = model(None).fit_transform(texts, embeddings=vecs)
        out["fit_transform_s"] = round(t.s, 3)
        out["fit_transform_cpu_s"] = round(t.cpu, 3)
        if second_fit:
            with C.Timer() as t2:
                model(None).fit_transform(texts, embeddings=vecs)
            out["second_fit_transform_s"] = round(t2.s, 3)
            out["second_fit_transform_cpu_s"] = round(t2.cpu, 3)
    else:
        with C.Timer() as t:
            st = _st_model()
            topics, _ = model(st).fit_transform(texts)
        out["fit_transform_s"] = round(t.s, 3)
        out["fit_transform_cpu_s"] = round(t.cpu, 3)
        out["includes"] = "model load + its own embedding (SentenceTransformer.encode, BERTopic's batch size)"
    out["n_topics"] = len(set(topics) - {-1})
    out["outlier_share"] = round(sum(1 for x in topics if x == -1) / len(topics), 4)
    out["peak_rss_mib_self"] = C.peak_rss_mib_self()
    return out


def w_embed(ds: Path, n: int, kind: str) -> dict[str, Any]:
    import numpy as np

    from data_advisor.coverage.embedding.cache import default_cache_dir
    from data_advisor.coverage.embedding.cached import CachedEmbedder
    from data_advisor.coverage.embedding.sentence import SentenceTransformerEmbedder

    texts = C.scale_prompts(ds, n, seed=0)
    if kind == "st-plain":
        st = _st_model()
        st.encode(texts[:64], batch_size=64)  # warm-up (not timed)
        with C.Timer() as t:
            v = st.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    else:
        inner = SentenceTransformerEmbedder("default", batch_size=64)
        inner._load().encode(texts[:64], batch_size=64)  # same warm-up
        emb = CachedEmbedder(inner, default_cache_dir())  # DATA_ADVISOR_CACHE is a fresh folder here
        with C.Timer() as t:
            v = emb.encode(texts)
    return {"n": n, "kind": kind, "s": round(t.s, 3), "prompts_per_s": round(n / t.s, 1), "cpu_s": round(t.cpu, 3),
            "prompts_per_cpu_s": round(n / t.cpu, 1),
            "dim": int(np.asarray(v).shape[1]), "peak_rss_mib_self": C.peak_rss_mib_self()}


def w_incremental(ds: Path, n: int, seed: int, repeats: int) -> dict[str, Any]:
    import numpy as np

    from data_advisor.advisor.monitor import CoverageMonitor
    from data_advisor.coverage.audit import AuditSettings, run_audit
    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.coverage.taxonomy import load_taxonomy
    from data_advisor.data import PromptSet

    corpus = C.scale_prompts(ds, n + N_NEW * repeats, seed=0)
    base, extra = corpus[:n], corpus[n:]
    taxonomy = load_taxonomy(TAXONOMY)
    embedder = make_embedder()
    settings = AuditSettings(taxonomy=taxonomy.id, seed=seed)
    base_vecs = embedder.encode(base)
    extra_vecs = embedder.encode(extra)  # what the loop's filters have already embedded before add()
    with C.Timer() as t_build:
        mon = CoverageMonitor(taxonomy, embedder, settings)
        mon.add([f"b{i}" for i in range(n)], base, base_vecs)
        mon.quick_metrics()
    add_s, add_embed_s, add_cpu = [], [], []
    for r in range(repeats):
        sl = slice(r * N_NEW, (r + 1) * N_NEW)
        ids = [f"n{r}-{j}" for j in range(N_NEW)]
        if r % 2 == 0:
            with C.Timer() as t:
                mon.add(ids, extra[sl], extra_vecs[sl])
                mon.quick_metrics()
            add_s.append(t.s)
            add_cpu.append(t.cpu)
        else:
            with C.Timer() as t:
                mon.add(ids, extra[sl])  # embeds through the (warm) cache
                mon.quick_metrics()
            add_embed_s.append(t.s)
    m = n + N_NEW
    prompts = PromptSet.from_texts(corpus[:m])
    vecs = np.concatenate([base_vecs, extra_vecs[:N_NEW]])
    with C.Timer() as t_full:
        run_audit(prompts, taxonomy, embedder, settings=settings, anchors=mon.anchors, vectors=vecs)
    with C.Timer() as t_nocl:
        run_audit(prompts, taxonomy, embedder, settings=AuditSettings(taxonomy=taxonomy.id, seed=seed, cluster=False),
                  anchors=mon.anchors, vectors=vecs)
    inc = statistics.median(add_s)
    inc_e = statistics.median(add_embed_s) if add_embed_s else None
    return {
        "base_n": n, "n_new": N_NEW, "repeats": repeats,
        "monitor_build_s": round(t_build.s, 3),
        "incremental_add_quick_metrics_s_median": round(inc, 5),
        "incremental_add_quick_metrics_s_all": [round(x, 5) for x in add_s],
        "incremental_with_cached_embedding_s_median": round(inc_e, 5) if inc_e is not None else None,
        "incremental_cpu_s_median": round(statistics.median(add_cpu), 5),
        "full_run_audit_cached_vectors_s": round(t_full.s, 3),
        "full_run_audit_cached_vectors_cpu_s": round(t_full.cpu, 3),
        "full_run_audit_no_clustering_cpu_s": round(t_nocl.cpu, 3),
        "full_run_audit_no_clustering_s": round(t_nocl.s, 3),
        "speedup_vs_full_audit": round(t_full.s / inc, 1),
        "speedup_vs_full_audit_cpu": round(t_full.cpu / max(statistics.median(add_cpu), 1e-6), 1),
        "speedup_vs_audit_without_clustering": round(t_nocl.s / inc, 1),
        "peak_rss_mib_self": C.peak_rss_mib_self(),
    }


# ----------------------------------------------------------------------------------------------- parent
def _self(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    r = C.run_child(_self(*args), env=env)
    return {**r["result"], "child_wall_s": r["wall_s"], "child_peak_rss_mib": r["child_peak_rss_mib"],
            "child_user_s": r["child_user_s"]}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="prompt counts (default 10000 30000)")
    p.add_argument("--embed-n", type=int, default=None, help="size of the embedding throughput test (default: smallest size)")
    p.add_argument("--incremental-n", type=int, default=None, help="monitor size of the incremental test (default 10000)")
    p.add_argument("--repeats", type=int, default=20, help="incremental updates timed (half with, half without embedding)")
    p.add_argument("--no-bertopic", action="store_true", help="skip BERTopic")
    p.add_argument("--worker", choices=["ours", "bertopic-pre", "bertopic-own", "embed-st", "embed-cached", "incremental"],
                   help="(internal)")
    p.add_argument("--n", type=int, help="(internal)")
    p.add_argument("--second-fit", action="store_true", help="(internal)")
    args = p.parse_args()
    ds = C.require_datasets(args.datasets)
    w = args.worker
    if w:
        res = {"ours": lambda: w_ours(ds, args.n, args.seed),
               "bertopic-pre": lambda: w_bertopic(ds, args.n, args.seed, True, args.second_fit),
               "bertopic-own": lambda: w_bertopic(ds, args.n, args.seed, False, False),
               "embed-st": lambda: w_embed(ds, args.n, "st-plain"),
               "embed-cached": lambda: w_embed(ds, args.n, "cached"),
               "incremental": lambda: w_incremental(ds, args.n, args.seed, args.repeats)}[w]()
        print(json.dumps(res))
        return

    started = time.perf_counter()
    sizes = args.sizes or ([1000] if args.quick else [10_000, 30_000])
    embed_n = args.embed_n or min(sizes)
    inc_n = args.incremental_n or (1000 if args.quick else 10_000)
    use_bt = not args.no_bertopic and C._version("bertopic") != "not installed"
    numba_env = {"NUMBA_CACHE_DIR": str(C.cache_root() / "numba")}  # keep our UMAP kernels warm
    common = ["--datasets", str(ds), "--seed", str(args.seed)]
    per_size = []
    incremental = None
    embedding = None
    with C.scratch_dir("speed-") as tmp:
        for n in sizes:
            env = {**numba_env, "DATA_ADVISOR_CACHE": str(tmp / f"cache-{n}")}
            row: dict[str, Any] = {"n": n}
            C.log(f"{n:,}: our audit, cold embedding cache")
            row["ours_cold"] = _child(["--worker", "ours", "--n", str(n), *common], env)
            C.log(f"{n:,}: our audit, warm embedding cache")
            row["ours_warm"] = _child(["--worker", "ours", "--n", str(n), *common], env)
            if use_bt:
                C.log(f"{n:,}: BERTopic with precomputed embeddings")
                extra = ["--second-fit"] if n <= 10_000 else []
                row["bertopic_precomputed"] = _child(["--worker", "bertopic-pre", "--n", str(n), *common, *extra], env)
                C.log(f"{n:,}: BERTopic with its own embedding")
                row["bertopic_own_embedding"] = _child(["--worker", "bertopic-own", "--n", str(n), *common], env)
            oc, ow = row["ours_cold"]["audit_s"], row["ours_warm"]["audit_s"]
            bp = row.get("bertopic_precomputed", {}).get("fit_transform_s")
            bo = row.get("bertopic_own_embedding", {}).get("fit_transform_s")
            occ, owc = row["ours_cold"]["audit_cpu_s"], row["ours_warm"]["audit_cpu_s"]
            bpc = row.get("bertopic_precomputed", {}).get("fit_transform_cpu_s")
            boc = row.get("bertopic_own_embedding", {}).get("fit_transform_cpu_s")
            row["ratios_cpu"] = {
                "ours_cold_over_bertopic_own_embedding": _ratio(occ, boc),
                "ours_warm_over_bertopic_precomputed": _ratio(owc, bpc),
                "ours_cold_over_ours_warm": _ratio(occ, owc),
            }
            row["ratios"] = {
                "ours_cold_over_bertopic_own_embedding": _ratio(oc, bo),
                "ours_warm_over_bertopic_precomputed": _ratio(ow, bp),
                "ours_cold_over_ours_warm": _ratio(oc, ow),
                "ours_warm_process_over_bertopic_precomputed_process": _ratio(
                    row["ours_warm"]["child_wall_s"], row.get("bertopic_precomputed", {}).get("child_wall_s")),
                "ours_cold_rss_over_bertopic_own_rss": _ratio(
                    row["ours_cold"]["child_peak_rss_mib"], row.get("bertopic_own_embedding", {}).get("child_peak_rss_mib")),
            }
            if n == inc_n:
                C.log(f"{n:,}: incremental monitor update vs full recompute")
                incremental = _child(["--worker", "incremental", "--n", str(n), "--repeats", str(args.repeats),
                                      *common], env)
            per_size.append(row)
        if incremental is None:
            env = {**numba_env, "DATA_ADVISOR_CACHE": str(tmp / "cache-inc")}
            C.log(f"{inc_n:,}: incremental monitor update vs full recompute")
            incremental = _child(["--worker", "incremental", "--n", str(inc_n), "--repeats", str(args.repeats), *common], env)
        C.log(f"embedding throughput on {embed_n:,} prompts")
        env_e1 = {**numba_env, "DATA_ADVISOR_CACHE": str(tmp / "cache-embed-1")}
        env_e2 = {**numba_env, "DATA_ADVISOR_CACHE": str(tmp / "cache-embed-2")}
        st = _child(["--worker", "embed-st", "--n", str(embed_n), *common], env_e1)
        ce = _child(["--worker", "embed-cached", "--n", str(embed_n), *common], env_e2)
        embedding = {"n": embed_n, "sentence_transformers_plain": st, "cached_embedder_cold": ce,
                     "cached_over_plain_throughput": _ratio(ce["prompts_per_s"], st["prompts_per_s"]),
                     "cached_over_plain_throughput_cpu": _ratio(ce["prompts_per_cpu_s"], st["prompts_per_cpu_s"])}
    C.emit(SCRIPT, args, {
        "taxonomy": TAXONOMY,
        "embedding_model": "default (all-MiniLM-L6-v2, bundled), CPU",
        "bertopic": C._version("bertopic") if use_bt else (
            "not installed" if C._version("bertopic") == "not installed" else "skipped"),
        "bertopic_settings": "BERTopic(umap_model=UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric='cosine', "
                             "random_state=seed)), other parameters default (HDBSCAN min_cluster_size=10, c-TF-IDF)",
        "sizes": sizes,
        "per_size": per_size,
        "embedding_throughput": embedding,
        "incremental": incremental,
    }, started=started)


if __name__ == "__main__":
    main()

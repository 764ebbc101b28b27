"""Audit throughput and memory per stage at 1k / 10k / 30k prompts, and the cold-process cost of a cached audit.

What it measures (each size in a fresh Python process, so peak RSS and cold costs are honest):

* imports (torch + sentence-transformers; umap + hdbscan + faiss), model load;
* embedding with the cache DISABLED (prompts/s), anchor building, FAISS anchor assignment, UMAP + HDBSCAN
  discovery (numba kernels from the on-disk cache, as on every run after a machine's first), and the report
  metrics (``build_report``);
* peak RSS of the child (``os.wait4`` rusage of that child alone);
* after timing, the child stores its vectors in the shared ``DATA_ADVISOR_CACHE`` (``--no-fill-cache`` to skip), so
  later scripts reuse them;
* once: the UMAP kernel compilation a machine's very first audit pays (fresh numba cache);
* the COLD-PROCESS wall time of ``data-advisor audit FILE --out DIR --no-html -q`` on 10k prompts whose
  embeddings are already cached (after a first run filled a fresh ``DATA_ADVISOR_CACHE``), timed end to end
  from the shell, plus the same steps timed one by one in another fresh process.

Prompts: Alpaca instructions (refusal-direction harmless splits) + HarmBench, Do-Not-Answer, AdvBench,
JailbreakBench and refusal-direction harmful prompts, deduplicated, in a seeded shuffle; size n = its first n.

    python benchmarks/bench_audit.py            # 1k, 10k, 30k + cached 10k CLI audit
    python benchmarks/bench_audit.py --quick    # 300, 1k + cached 1k CLI audit
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

SCRIPT = "bench_audit"
TAXONOMY = "catqa-11"


# ---------------------------------------------------------------------------------------------- workers
def fill_shared_cache(model_id: str, texts: list[str], vectors) -> int:
    """After timing: store the vectors in the shared DATA_ADVISOR_CACHE so later scripts need not re-embed."""
    from data_advisor.coverage.embed import EmbeddingCache, default_cache_dir, text_key

    cache = EmbeddingCache(default_cache_dir(), model_id, int(vectors.shape[1]))
    keys: dict[bytes, int] = {}
    for i, t in enumerate(texts):
        keys.setdefault(text_key(t), i)
    present = cache.lookup(list(keys))
    missing = [k for k in keys if k not in present]
    cache.put(missing, vectors[[keys[k] for k in missing]])
    cache.close()
    return len(missing)


def worker_stages(ds: Path, n: int, seed: int, fill_cache: bool = True) -> dict:
    """One size, every stage timed separately (runs inside a fresh process)."""
    t_start = time.perf_counter()
    rss: dict[str, float] = {}
    with C.Timer() as t_imp_torch:
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401
    with C.Timer() as t_imp_rest:
        import faiss  # noqa: F401
        import hdbscan  # noqa: F401
        import umap  # noqa: F401

        from data_advisor.coverage.assign import AnchorAssigner, build_anchors
        from data_advisor.coverage.audit import AuditSettings, build_report
        from data_advisor.coverage.cluster import ClusterDiscovery
        from data_advisor.coverage.embedders import make_embedder
        from data_advisor.coverage.taxonomy import load_background, load_taxonomy
        from data_advisor.data import PromptSet
    rss["after_imports"] = C.peak_rss_mib_self()
    texts = C.scale_prompts(ds, n, seed=0)
    prompts = PromptSet.from_texts(texts)
    embedder = make_embedder(cache=False)  # cold: no cache read or write
    with C.Timer() as t_load:
        embedder.inner._load()  # type: ignore[attr-defined]
    rss["after_model_load"] = C.peak_rss_mib_self()
    with C.Timer() as t_embed:
        vectors = embedder.encode(prompts.texts)
    rss["after_embedding"] = C.peak_rss_mib_self()
    taxonomy = load_taxonomy(TAXONOMY)
    with C.Timer() as t_anchors:
        anchors = build_anchors(taxonomy, embedder, load_background())
    settings = AuditSettings(taxonomy=taxonomy.id, seed=seed)
    with C.Timer() as t_assign:
        assignments = AnchorAssigner(margin_threshold=settings.margin_threshold,
                                     min_score=settings.min_score).fit(anchors).assign(vectors)
    rss["after_assignment"] = C.peak_rss_mib_self()
    with C.Timer() as t_cluster:
        clusters = ClusterDiscovery(seed=seed, n_neighbors=settings.n_neighbors, max_fit=settings.max_fit).fit(vectors)
    rss["after_clustering"] = C.peak_rss_mib_self()
    with C.Timer() as t_metrics:
        report = build_report(prompts, vectors, taxonomy, anchors, assignments, clusters, settings,
                              model_id=embedder.model_id)
    rss["after_metrics"] = C.peak_rss_mib_self()
    filled = fill_shared_cache(embedder.model_id, prompts.texts, vectors) if fill_cache else 0

    def stage(t: C.Timer) -> dict:
        return {"s": round(t.s, 3), "prompts_per_s": round(n / t.s, 1) if t.s > 0 else None,
                "cpu_s": round(t.cpu, 3), "prompts_per_cpu_s": round(n / t.cpu, 1) if t.cpu > 0 else None}

    return {
        "n": n,
        "import_torch_st_s": round(t_imp_torch.s, 3),
        "import_faiss_umap_hdbscan_s": round(t_imp_rest.s, 3),
        "model_load_s": round(t_load.s, 3),
        "stages": {
            "embedding_cold": stage(t_embed),
            "anchors": {"s": round(t_anchors.s, 3), "cpu_s": round(t_anchors.cpu, 3)},
            "assignment": stage(t_assign),
            "clustering": stage(t_cluster),
            "metrics": stage(t_metrics),
        },
        "pipeline_s_excl_imports": round(t_embed.s + t_anchors.s + t_assign.s + t_cluster.s + t_metrics.s, 3),
        "clustering_method": clusters.method,
        "n_clusters": clusters.n_clusters,
        "anchored_share": round(float(report.metrics["anchored_share"]), 4),
        "peak_rss_mib_by_stage": rss,
        "torch_threads": __import__("torch").get_num_threads(),
        "filled_shared_cache_after_timing": filled,
        "worker_wall_s": round(time.perf_counter() - t_start, 3),
    }


def worker_cluster_only(n: int, seed: int) -> dict:
    """UMAP + HDBSCAN on random unit vectors (measures numba compile cost when NUMBA_CACHE_DIR is fresh)."""
    import numpy as np

    with C.Timer() as t_imp:
        import umap  # noqa: F401

        from data_advisor.coverage.cluster import ClusterDiscovery
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with C.Timer() as t:
        ClusterDiscovery(seed=seed).fit(x)
    with C.Timer() as t2:
        ClusterDiscovery(seed=seed + 1).fit(x)
    return {"n": n, "import_umap_s": round(t_imp.s, 3), "first_fit_s": round(t.s, 3),
            "second_fit_same_process_s": round(t2.s, 3)}


def worker_audit_breakdown(path: Path, out: Path, seed: int) -> dict:
    """The steps of ``data-advisor audit FILE --out DIR --no-html -q``, timed one by one in a fresh process."""
    t0 = time.perf_counter()
    steps: dict[str, float] = {}

    def mark(name: str, since: float) -> float:
        now = time.perf_counter()
        steps[name] = round(now - since, 3)
        return now

    t = time.perf_counter()
    from data_advisor.coverage.audit import AuditSettings
    from data_advisor.coverage.taxonomy import load_taxonomy
    from data_advisor.data import load_prompts
    from data_advisor.io import ensure_writable_dir

    t = mark("import_data_advisor", t)
    taxonomy = load_taxonomy(TAXONOMY)
    out = ensure_writable_dir(out)
    prompts = load_prompts(path)
    t = mark("load_taxonomy_and_prompts", t)
    from data_advisor.coverage.assign import AnchorAssigner, build_anchors
    from data_advisor.coverage.audit import AuditResult, build_report
    from data_advisor.coverage.embedders import make_embedder
    from data_advisor.coverage.taxonomy import load_background

    t = mark("import_pipeline_modules", t)
    embedder = make_embedder()
    settings = AuditSettings(taxonomy=taxonomy.id, seed=seed)
    anchors = build_anchors(taxonomy, embedder, load_background())
    t = mark("anchors_from_cache", t)
    vectors = embedder.encode(prompts.texts)
    stats = embedder.last
    t = mark("embeddings_from_cache", t)
    assignments = AnchorAssigner().fit(anchors).assign(vectors)
    t = mark("assignment", t)
    import hdbscan  # noqa: F401
    import umap  # noqa: F401

    from data_advisor.coverage.cluster import ClusterDiscovery

    t = mark("import_umap_hdbscan", t)
    clusters = ClusterDiscovery(seed=seed).fit(vectors)
    t = mark("clustering", t)
    report = build_report(prompts, vectors, taxonomy, anchors, assignments, clusters, settings,
                          model_id=embedder.model_id)
    t = mark("metrics_report", t)
    AuditResult(report, prompts, vectors, assignments, clusters, taxonomy, anchors, settings).write(out)
    t = mark("write_outputs", t)
    return {"steps_s": steps, "total_in_process_s": round(time.perf_counter() - t0, 3),
            "cache_hits": stats.hits, "cache_misses": stats.misses,
            "torch_imported": "torch" in sys.modules, "sentence_transformers_imported": "sentence_transformers" in sys.modules}


# ----------------------------------------------------------------------------------------------- parent
def _self(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def cached_cli_audit(ds: Path, n: int, seed: int, repeats: int) -> dict:
    """First audit (fills a fresh cache), then ``repeats`` cold-process audits with cached embeddings."""
    cli = str(Path(sys.executable).with_name("data-advisor"))
    with C.scratch_dir("bench-audit-") as tmp:
        path = C.write_jsonl(tmp / f"prompts_{n}.jsonl", C.scale_prompts(ds, n, seed=0))
        env = {"DATA_ADVISOR_CACHE": str(tmp / "cache")}
        C.log(f"cached CLI audit: first run on {n:,} prompts (fresh cache: embeds and compiles UMAP kernels)")
        cmd = [cli, "audit", str(path), "--out", str(tmp / "out1"), "--no-html", "-q", "--seed", str(seed)]
        first = C.run_child(cmd, env=env, parse_json=False)
        seconds = []
        for r in range(repeats):
            C.log(f"cached CLI audit: second run #{r + 1}")
            cmd = [cli, "audit", str(path), "--out", str(tmp / f"out{r + 2}"), "--no-html", "-q", "--seed", str(seed)]
            seconds.append(C.run_child(cmd, env=env, parse_json=False))
        C.log("cached CLI audit: step breakdown in a fresh process")
        breakdown = C.run_child(_self("--worker", "audit-breakdown", "--file", str(path), "--worker-out",
                                      str(tmp / "outb"), "--seed", str(seed)), env=env)
        coverage = json.loads((tmp / "out2" / "coverage.json").read_text("utf-8"))
    walls = [s["wall_s"] for s in seconds]
    return {
        "n": n,
        "command": "data-advisor audit prompts.jsonl --out DIR --no-html -q",
        "cache": "fresh DATA_ADVISOR_CACHE for this pair of runs (first run fills embeddings + numba kernels)",
        "first_run": {k: first[k] for k in ("wall_s", "child_peak_rss_mib", "child_user_s", "child_sys_s")},
        "first_run_stderr": first["stderr_tail"],
        "second_runs": [{k: s[k] for k in ("wall_s", "child_peak_rss_mib", "child_user_s", "child_sys_s")}
                        for s in seconds],
        "second_run_wall_s_median": round(statistics.median(walls), 3),
        "second_run_stderr": seconds[0]["stderr_tail"],
        "breakdown": breakdown["result"],
        "breakdown_wall_s": breakdown["wall_s"],
        "breakdown_peak_rss_mib": breakdown["child_peak_rss_mib"],
        "n_clusters": coverage["metrics"]["n_clusters"],
    }


def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="prompt counts (default 1000 10000 30000)")
    p.add_argument("--cached-n", type=int, default=None, help="size of the cached CLI audit (default 10000)")
    p.add_argument("--repeats", type=int, default=2, help="cold-process repeats of the cached CLI audit")
    p.add_argument("--skip-numba-cold", action="store_true", help="do not measure first-ever UMAP compilation")
    p.add_argument("--no-fill-cache", action="store_true",
                   help="do not store the (timed, cold) embeddings in the shared cache afterwards")
    # internal: worker modes run in fresh processes
    p.add_argument("--worker", choices=["stages", "cluster-only", "audit-breakdown"], help="(internal)")
    p.add_argument("--n", type=int, help="(internal)")
    p.add_argument("--file", type=Path, help="(internal)")
    p.add_argument("--worker-out", type=Path, help="(internal)")
    args = p.parse_args()
    ds = C.require_datasets(args.datasets)
    if args.worker == "stages":
        print(json.dumps(worker_stages(ds, args.n, args.seed, not args.no_fill_cache)))
        return
    if args.worker == "cluster-only":
        print(json.dumps(worker_cluster_only(args.n, args.seed)))
        return
    if args.worker == "audit-breakdown":
        print(json.dumps(worker_audit_breakdown(args.file, args.worker_out, args.seed)))
        return

    started = time.perf_counter()
    sizes = args.sizes or ([300, 1000] if args.quick else [1000, 10_000, 30_000])
    cached_n = args.cached_n or (1000 if args.quick else 10_000)
    _, corpus_info = C.scale_corpus(ds)
    per_size = []
    for n in sizes:
        C.log(f"stages at {n:,} prompts (fresh process, embedding cache disabled)")
        r = C.run_child(_self("--worker", "stages", "--n", str(n), "--seed", str(args.seed),
                              "--datasets", str(ds), *(["--no-fill-cache"] if args.no_fill_cache else [])))
        per_size.append({**r["result"], "child_wall_s": r["wall_s"], "child_peak_rss_mib": r["child_peak_rss_mib"],
                         "child_user_s": r["child_user_s"], "child_sys_s": r["child_sys_s"],
                         "load_average_after": [round(x, 2) for x in os.getloadavg()]})
    numba_cold = None
    if not args.skip_numba_cold:
        with C.scratch_dir("numba-cold-") as tmp:
            C.log("UMAP kernel compilation with a fresh numba cache (a machine's first audit)")
            cold = C.run_child(_self("--worker", "cluster-only", "--n", "1000", "--seed", str(args.seed),
                                     "--datasets", str(ds)), env={"NUMBA_CACHE_DIR": str(tmp / "numba")})
            C.log("same, numba cache now warm")
            warm = C.run_child(_self("--worker", "cluster-only", "--n", "1000", "--seed", str(args.seed),
                                     "--datasets", str(ds)), env={"NUMBA_CACHE_DIR": str(tmp / "numba")})
        numba_cold = {"fresh_numba_cache": cold["result"], "warm_numba_cache": warm["result"],
                      "note": "random unit vectors, n=1000: first_fit_s with a fresh cache includes compiling "
                              "UMAP's numba kernels; the warm run loads them from disk"}
    cached = cached_cli_audit(ds, cached_n, args.seed, args.repeats)
    C.emit(SCRIPT, args, {
        "taxonomy": TAXONOMY,
        "embedding_model": "default (all-MiniLM-L6-v2, bundled), batch 64, CPU",
        "corpus": corpus_info,
        "sizes": sizes,
        "per_size": per_size,
        "numba_compile": numba_cold,
        "cached_cli_audit": cached,
    }, started=started)


if __name__ == "__main__":
    main()

"""Audit speed: stages per size, cold-process re-audits (cluster cache), BERTopic as the ratio anchor, the first run
on an empty cache, the small-input discovery path's quality, and the report metrics' cost.

Sections (``--sections``; a run of only some keeps the others from the previous result file and says so):

* ``stages`` — 1k / 10k / 30k prompts, each in a fresh process: imports, model load, embedding with the cache
  DISABLED, anchors, assignment, discovery, report metrics; peak RSS per stage.
* ``numba`` — the UMAP kernel compilation a machine's very first UMAP fit pays (fresh numba cache).
* ``reaudit`` — cold-process ``data-advisor audit FILE --out DIR --no-html -q`` on 10k prompts whose embeddings are
  cached: the first audit (clusters computed and stored), re-audits against the same taxonomy and a different one
  (clusters from the cluster cache), and the same different-taxonomy re-audit with ``--no-cluster``.
* ``bertopic`` — BERTopic's ``fit`` on the same 10k precomputed embeddings, twice in one process, in the same run
  (the ratio anchor; BERTopic is the ``bench`` extra and may be absent: then it says so).
* ``first_run`` — the README example (``data-advisor audit examples/prompts.jsonl --taxonomy catqa-11 --out DIR``)
  on an EMPTY ``DATA_ADVISOR_CACHE`` (no embeddings, no numba kernels) and then again on the filled one.
* ``discovery`` — cluster purity / ARI / NMI against the labels of the shared labelled sets for the UMAP path, the
  small-input path (spectral embedding of the k-NN graph) and HDBSCAN on a PCA projection, at 150–1,872 prompts.
* ``metrics`` — ``build_report`` at 10k: the old way (Vendi per group from scratch, a separate near-duplicate
  search) against the new (summed per-leaf Grams, the shared k-NN graph), and ``eigvalsh`` after FAISS with and
  without the thread-pool limit.

The load average is recorded beside every timing (other jobs share this machine).

    python benchmarks/bench_audit.py                                  # everything
    python benchmarks/bench_audit.py --sections reaudit bertopic      # some sections
    python benchmarks/bench_audit.py --quick                          # small sizes
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
    from data_advisor.coverage.embedding.cache import EmbeddingCache, default_cache_dir, text_key

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
        from data_advisor.coverage.embedding.registry import make_embedder
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


OTHER_TAXONOMY = "llamaguard3"
BERTOPIC_PATH = os.environ.get("BENCH_BERTOPIC_PATH", "")  # extra sys.path entry where bertopic is installed


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cached_vectors(texts: list[str]):
    """The texts' vectors from the shared embedding cache (the model is loaded only for misses)."""
    from data_advisor.coverage.embedding.registry import make_embedder

    return make_embedder().encode(texts)


def worker_bertopic(ds: Path, n: int, seed: int) -> dict:
    """BERTopic fit (its defaults) on precomputed embeddings, twice in this process; imports timed apart."""
    if BERTOPIC_PATH:
        sys.path.insert(0, BERTOPIC_PATH)
    texts = C.scale_prompts(ds, n, seed=0)
    vectors = _cached_vectors(texts)
    with C.Timer() as t_imp:
        from bertopic import BERTopic
    fits = []
    for _ in range(2):
        model = BERTopic(calculate_probabilities=False, verbose=False)
        with C.Timer() as t:
            topics, _ = model.fit_transform(texts, embeddings=vectors)
        fits.append({"s": round(t.s, 3), "cpu_s": round(t.cpu, 3), "n_topics": len(set(topics) - {-1}),
                     "load_average": load()})
    import bertopic

    return {"n": n, "bertopic_version": bertopic.__version__, "import_s": round(t_imp.s, 3), "fits": fits,
            "config": "BERTopic() defaults: UMAP(n_neighbors=15, n_components=5, min_dist=0, cosine, unseeded), "
                      "HDBSCAN(min_cluster_size=10), CountVectorizer + c-TF-IDF; embeddings passed to fit_transform"}


def worker_metrics(ds: Path, n: int, seed: int) -> dict:
    """build_report at n prompts: the old way against the new one, and eigvalsh after FAISS with/without limits."""
    import numpy as np

    from data_advisor.coverage import metrics as M
    from data_advisor.coverage.assign import AnchorAssigner, build_anchors
    from data_advisor.coverage.audit import AuditSettings, build_report
    from data_advisor.coverage.cluster import build_knn_graph
    from data_advisor.coverage.cluster_cache import ClusterCache, vectors_digest
    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.coverage.taxonomy import load_background, load_taxonomy
    from data_advisor.data import PromptSet

    texts = C.scale_prompts(ds, n, seed=0)
    prompts = PromptSet.from_texts(texts)
    embedder = make_embedder()
    vectors = embedder.encode(texts)
    taxonomy = load_taxonomy(TAXONOMY)
    anchors = build_anchors(taxonomy, embedder, load_background())
    settings = AuditSettings(taxonomy=taxonomy.id, seed=seed)
    assignments = AnchorAssigner().fit(anchors).assign(vectors)
    from data_advisor.coverage.cluster import ClusterDiscovery

    clusters = ClusterCache.default().fit(ClusterDiscovery(seed=seed), vectors, digest=vectors_digest(vectors),
                                          model_id=embedder.model_id)
    out: dict = {"n": n}
    with C.Timer() as t:
        graph = build_knn_graph(vectors, settings.n_neighbors)
    out["knn_graph_k15_s"] = round(t.s, 3)
    with C.Timer() as t:
        M.nearest_neighbor_similarity(vectors)
    out["near_duplicate_search_k3_s"] = round(t.s, 3)
    # Vendi the old way: every leaf, every parent and the whole set from its own vectors
    leaf_ids = assignments.principle_ids
    members = {k: [i for i in range(n) if assignments.anchor_id(i) == k] for k in leaf_ids}
    with C.Timer() as t:
        for k in leaf_ids:
            if members[k]:
                M.vendi_score(vectors[members[k]])
        for p in taxonomy.principles:
            if p.id not in members:
                idx = [i for leaf in taxonomy.leaves() if p.id in taxonomy.ancestors(leaf.id) for i in members[leaf.id]]
                if idx:
                    M.vendi_score(vectors[idx])
        M.vendi_score(vectors)
    out["vendi_old_way_s"] = round(t.s, 3)
    reps = []
    for knn in (None, graph):
        with C.Timer() as t:
            build_report(prompts, vectors, taxonomy, anchors, assignments, clusters, settings,
                         model_id=embedder.model_id, knn=knn)
        reps.append(round(t.s, 3))
    out["build_report_without_graph_s"], out["build_report_with_graph_s"] = reps
    # eigvalsh of a 384x384 Gram right after FAISS, with and without the BLAS/OpenMP limit
    gram = M.gram_sum(vectors) / n
    timings = {}
    for name, limited in (("unlimited", False), ("limited_1_thread", True)):
        build_knn_graph(vectors[:2000], 5)  # FAISS's OpenMP pool has just run
        with C.Timer() as t:
            for _ in range(20):
                if limited:
                    with M._blas_limits():
                        np.linalg.eigvalsh(gram)
                else:
                    np.linalg.eigvalsh(gram)
        timings[name] = round(t.s / 20 * 1000, 2)
    out["eigvalsh_384_ms"] = timings
    out["load_average"] = load()
    return out


def worker_discovery(ds: Path, seeds: list[int], sizes: list[int]) -> dict:
    """Purity / ARI / NMI of discovery paths against dataset labels (embeddings from the shared cache)."""
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from data_advisor.coverage.cluster import ClusterDiscovery

    def score(labels: list[str], pred: np.ndarray) -> dict:
        lab = np.asarray(labels)
        keep = pred != -1
        purity = 0.0
        if keep.any():
            purity = sum(np.unique(lab[pred == c], return_counts=True)[1].max()
                         for c in set(pred[keep].tolist())) / int(keep.sum())
        return {"purity": round(float(purity), 4),
                "ari_clustered": round(float(adjusted_rand_score(lab[keep], pred[keep])), 4) if keep.sum() > 1 else 0.0,
                "ari_noise_as_cluster": round(float(adjusted_rand_score(lab, pred)), 4),
                "nmi": round(float(normalized_mutual_info_score(lab, pred)), 4),
                "noise_share": round(float((~keep).mean()), 4), "n_clusters": len(set(pred.tolist()) - {-1})}

    def pca_hdbscan(v: np.ndarray, seed: int) -> np.ndarray:
        disc = ClusterDiscovery(seed=seed)
        reduced = PCA(n_components=10, random_state=seed).fit_transform(v)
        return disc._hdbscan(reduced, disc.params(len(v))).labels

    paths = {
        "umap": lambda v, seed: ClusterDiscovery(seed=seed, umap_min_n=3).fit(v).labels,
        "spectral": lambda v, seed: ClusterDiscovery(seed=seed, umap_min_n=10**9).fit(v).labels,
        "pca10": pca_hdbscan,
    }
    rows = []
    for name, texts, labels in discovery_sets(ds):
        vectors = _cached_vectors(texts)
        for n in sorted({min(s, len(texts)) for s in sizes}):
            sel = np.sort(np.random.default_rng(0).choice(len(texts), size=n, replace=False))
            v, lab = vectors[sel], [labels[i] for i in sel]
            for path, fn in paths.items():
                for seed in seeds:
                    with C.Timer() as t:
                        pred = fn(v, seed)
                    rows.append({"set": name, "n": n, "path": path, "seed": seed, **score(lab, pred),
                                 "s": round(t.s, 3)})
            C.log(f"discovery quality: {name} n={n} done")
    return {"rows": rows, "load_average": load()}


def discovery_sets(ds: Path) -> list[tuple[str, list[str], list[str]]]:
    """(name, texts, labels): HarmBench-6, Do-Not-Answer-12 and every labelled set pooled (label = set:category)."""
    hb = [r for r in C.read_csv(ds / "harmbench" / "harmbench_behaviors_text_all.csv") if r["SemanticCategory"] != "copyright"]
    dna = C.read_csv(ds / "do-not-answer" / "do_not_answer_en.csv")
    jbb = C.read_csv(ds / "jailbreakbench" / "jbb_harmful_behaviors.csv")
    sst = C.read_csv(ds / "simplesafetytests" / "SimpleSafetyTests - test cases.csv")
    xs = C.read_csv(ds / "xstest" / "xstest_prompts.csv")
    parts = {"harmbench": [(r["Behavior"], r["SemanticCategory"]) for r in hb],
             "do-not-answer": [(r["question"], r["types_of_harm"]) for r in dna],
             "jailbreakbench": [(r["Goal"], r["Category"]) for r in jbb],
             "simplesafetytests": [(r["prompts_final"], r["harm_area"]) for r in sst],
             "xstest": [(r["prompt"], r["type"]) for r in xs]}
    pooled: dict[str, str] = {}
    for key, rows in parts.items():
        for t, lab in rows:
            pooled.setdefault(t, f"{key}:{lab}")
    out = [("harmbench-6", *map(list, zip(*parts["harmbench"], strict=True))),
           ("do-not-answer-12", *map(list, zip(*parts["do-not-answer"], strict=True))),
           ("pooled-labelled", list(pooled), list(pooled.values()))]
    return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------- parent
def _self(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _cli() -> str:
    return str(Path(sys.executable).with_name("data-advisor"))


def _timed(cmd: list[str], env: dict[str, str]) -> dict:
    before = load()
    r = C.run_child(cmd, env=env, parse_json=False)
    return {"wall_s": r["wall_s"], "user_s": r["child_user_s"], "sys_s": r["child_sys_s"],
            "peak_rss_mib": r["child_peak_rss_mib"], "load_average_before": before, "stderr_head": r["stderr_head"],
            "stderr_tail": r["stderr_tail"]}


def reaudit(ds: Path, n: int, seed: int, repeats: int) -> dict:
    """Cold-process re-audits of n prompts with cached embeddings: same / other taxonomy / --no-cluster."""
    shared = C.cache_root()
    with C.scratch_dir("bench-reaudit-") as tmp:
        path = C.write_jsonl(tmp / f"prompts_{n}.jsonl", C.scale_prompts(ds, n, seed=0))
        cache = tmp / "cache"
        cache.mkdir()
        for sub in ("embeddings", "numba"):  # warm embeddings and UMAP kernels; an EMPTY cluster cache
            (shared / sub).mkdir(parents=True, exist_ok=True)
            (cache / sub).symlink_to(shared / sub)
        env = {"DATA_ADVISOR_CACHE": str(cache)}

        def audit(out: str, *extra: str) -> dict:
            return _timed([_cli(), "audit", str(path), "--out", str(tmp / out), "--no-html", "-q", "--seed", str(seed),
                           *extra], env)

        C.log(f"re-audit: embeddings of {n:,} prompts and both taxonomies' anchors (untimed warm-up)")
        audit("warm", "--no-cluster", "--taxonomy", OTHER_TAXONOMY)
        audit("warm2", "--no-cluster", "--taxonomy", TAXONOMY)
        C.log("re-audit: first audit with clusters computed (empty cluster cache)")
        first = audit("first", "--taxonomy", TAXONOMY)
        same, other, nocl = [], [], []
        for r in range(repeats):  # interleaved, so load drifts hit every variant alike
            C.log(f"re-audit: round {r + 1}/{repeats}")
            same.append(audit(f"same{r}", "--taxonomy", TAXONOMY))
            other.append(audit(f"other{r}", "--taxonomy", OTHER_TAXONOMY))
            nocl.append(audit(f"nocl{r}", "--taxonomy", OTHER_TAXONOMY, "--no-cluster"))
        identical = all((tmp / f"same{r}" / "coverage.json").read_bytes() == (tmp / "first" / "coverage.json").read_bytes()
                        for r in range(repeats))
        from_cache = json.loads((tmp / "same0" / "run_info.json").read_text("utf-8"))["clusters_from_cache"]
        n_clusters = json.loads((tmp / "first" / "coverage.json").read_text("utf-8"))["metrics"]["n_clusters"]

    def med(rows: list[dict]) -> float:
        return round(statistics.median(x["wall_s"] for x in rows), 3)

    return {"n": n, "taxonomy": TAXONOMY, "other_taxonomy": OTHER_TAXONOMY, "repeats": repeats,
            "command": "data-advisor audit prompts.jsonl --out DIR --no-html -q [--taxonomy T] [--no-cluster]",
            "cache": "embeddings and numba kernels warm (shared cache), cluster cache empty before the first audit",
            "first_audit_clusters_computed": first, "same_taxonomy": same, "other_taxonomy_runs": other,
            "other_taxonomy_no_cluster": nocl,
            "median_wall_s": {"first_audit_clusters_computed": first["wall_s"], "same_taxonomy": med(same),
                              "other_taxonomy": med(other), "other_taxonomy_no_cluster": med(nocl)},
            "ratio_other_taxonomy_vs_no_cluster": round(med(other) / med(nocl), 3),
            "coverage_json_identical_cached_vs_computed": identical, "second_run_clusters_from_cache": from_cache,
            "n_clusters": n_clusters}


def first_run(seed: int, pairs: int) -> dict:
    """The README example on an empty DATA_ADVISOR_CACHE, then again on the filled cache (``pairs`` times)."""
    example = C.REPO / "examples" / "prompts.jsonl"
    rows = []
    for p in range(pairs):
        with C.scratch_dir("bench-first-") as tmp:
            env = {"DATA_ADVISOR_CACHE": str(tmp / "cache")}
            cmd = [_cli(), "audit", str(example), "--taxonomy", "catqa-11", "--out"]
            C.log(f"first run on an empty cache (pair {p + 1}/{pairs})")
            first = _timed([*cmd, str(tmp / "out1")], env)
            C.log("second run on the filled cache")
            second = _timed([*cmd, str(tmp / "out2")], env)
            method = json.loads((tmp / "out1" / "coverage.json").read_text("utf-8"))["discovery"]["method"]
        rows.append({"first": first, "second": second, "ratio": round(first["wall_s"] / second["wall_s"], 3),
                     "discovery_method": method})
    return {"command": "data-advisor audit examples/prompts.jsonl --taxonomy catqa-11 --out DIR (HTML included)",
            "cache": "a new empty DATA_ADVISOR_CACHE per pair (no embeddings, no numba kernels); the virtual "
                     "environment and Python's bytecode caches are the existing ones",
            "pairs": rows, "median_first_s": round(statistics.median(r["first"]["wall_s"] for r in rows), 3),
            "median_second_s": round(statistics.median(r["second"]["wall_s"] for r in rows), 3),
            "median_ratio": round(statistics.median(r["ratio"] for r in rows), 3)}


SECTIONS = ("stages", "numba", "reaudit", "bertopic", "first_run", "discovery", "metrics")


def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="prompt counts (default 1000 10000 30000)")
    p.add_argument("--reaudit-n", type=int, default=None, help="size of the re-audit (default 10000)")
    p.add_argument("--repeats", type=int, default=3, help="cold-process repeats of each re-audit variant")
    p.add_argument("--pairs", type=int, default=2, help="first/second run pairs of the README example")
    p.add_argument("--no-fill-cache", action="store_true",
                   help="do not store the (timed, cold) embeddings in the shared cache afterwards")
    p.add_argument("--bertopic-path", default="", help="extra sys.path entry holding bertopic (if not in the venv)")
    # internal: worker modes run in fresh processes
    p.add_argument("--worker", choices=["stages", "cluster-only", "bertopic", "metrics", "discovery"], help="(internal)")
    p.add_argument("--n", type=int, help="(internal)")
    args = p.parse_args()
    ds = C.require_datasets(args.datasets)
    workers = {"stages": lambda: worker_stages(ds, args.n, args.seed, not args.no_fill_cache),
               "cluster-only": lambda: worker_cluster_only(args.n, args.seed),
               "bertopic": lambda: worker_bertopic(ds, args.n, args.seed),
               "metrics": lambda: worker_metrics(ds, args.n, args.seed),
               "discovery": lambda: worker_discovery(ds, [0, 1, 2] if not args.quick else [0],
                                                     [150, 300, 500, 1000, 2000] if not args.quick else [150])}
    if args.worker:
        print(json.dumps(workers[args.worker]()))
        return

    started = time.perf_counter()
    sizes = args.sizes or ([300, 1000] if args.quick else [1000, 10_000, 30_000])
    big = args.reaudit_n or (1000 if args.quick else 10_000)
    previous_path = C.result_path(SCRIPT, args.quick, args.out)
    previous = json.loads(previous_path.read_text("utf-8")) if previous_path.exists() else {}
    if "per_size" in previous:  # the layout before sections: stages and numba at the top level
        previous["stages"] = {"sizes": previous.get("sizes"), "per_size": previous["per_size"]}
        if previous.get("numba_compile"):
            previous["numba"] = previous["numba_compile"]
    payload: dict = {"taxonomy": TAXONOMY, "embedding_model": "default (all-MiniLM-L6-v2, bundled), batch 64, CPU",
                     "corpus": C.scale_corpus(ds)[1], "sections_run": list(args.sections)}
    carried = [s for s in SECTIONS if s not in args.sections and s in previous]
    for s in carried:
        payload[s] = previous[s]
    if carried:
        payload["sections_from_previous_run"] = {s: previous.get("finished_utc") for s in carried}

    def child(mode: str, n: int | None = None, env: dict[str, str] | None = None) -> dict:
        extra = ["--n", str(n)] if n is not None else []
        return C.run_child(_self("--worker", mode, *extra, "--seed", str(args.seed), "--datasets", str(ds),
                                 *(["--quick"] if args.quick else [])), env=env)

    if "stages" in args.sections:
        per_size = []
        for n in sizes:
            C.log(f"stages at {n:,} prompts (fresh process, embedding cache disabled)")
            r = child("stages", n)
            per_size.append({**r["result"], "child_wall_s": r["wall_s"], "child_peak_rss_mib": r["child_peak_rss_mib"],
                             "child_user_s": r["child_user_s"], "child_sys_s": r["child_sys_s"],
                             "load_average_after": load()})
        payload["stages"] = {"sizes": sizes, "per_size": per_size}
    if "numba" in args.sections:
        with C.scratch_dir("numba-cold-") as tmp:
            C.log("UMAP kernel compilation with a fresh numba cache (a machine's first UMAP fit)")
            cold = child("cluster-only", 1000, {"NUMBA_CACHE_DIR": str(tmp / "numba")})
            warm = child("cluster-only", 1000, {"NUMBA_CACHE_DIR": str(tmp / "numba")})
        payload["numba"] = {"fresh_numba_cache": cold["result"], "warm_numba_cache": warm["result"],
                            "note": "random unit vectors, n=1000 (UMAP path): first_fit_s with a fresh cache includes "
                                    "compiling UMAP's numba kernels; the warm run loads them from disk"}
    if "reaudit" in args.sections:
        payload["reaudit"] = reaudit(ds, big, args.seed, args.repeats)
    if "bertopic" in args.sections:
        bt_path = args.bertopic_path or BERTOPIC_PATH
        env = {"BENCH_BERTOPIC_PATH": bt_path} if bt_path else None
        C.log("BERTopic fit on the same precomputed embeddings")
        try:
            r = child("bertopic", big, env)
            payload["bertopic"] = {**r["result"], "installed_at": bt_path or "the virtual environment"}
        except RuntimeError as exc:
            payload["bertopic"] = {"missing": True, "why": str(exc).splitlines()[-1][:300]}
    if "first_run" in args.sections:
        payload["first_run"] = first_run(args.seed, args.pairs)
    if "discovery" in args.sections:
        C.log("discovery quality on the labelled sets")
        payload["discovery"] = child("discovery")["result"]
    if "metrics" in args.sections:
        C.log(f"report metrics at {big:,}")
        payload["metrics"] = child("metrics", big)["result"]
    ra, bt = payload.get("reaudit"), payload.get("bertopic")
    if ra and bt and not bt.get("missing"):
        ours = ra["median_wall_s"]["other_taxonomy"]
        payload["acceptance"] = {
            "other_taxonomy_reaudit_s": ours,
            "ratio_vs_no_cluster": ra["ratio_other_taxonomy_vs_no_cluster"],
            "bertopic_first_fit_s": bt["fits"][0]["s"], "bertopic_second_fit_s": bt["fits"][1]["s"],
            "bertopic_second_fit_over_our_reaudit": round(bt["fits"][1]["s"] / ours, 3),
            "first_run_ratio": (payload.get("first_run") or {}).get("median_ratio"),
        }
    C.emit(SCRIPT, args, payload, started=started)


if __name__ == "__main__":
    main()

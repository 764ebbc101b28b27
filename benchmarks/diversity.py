"""Diversity and coverage of advisor-driven data vs Self-Instruct vs random, at several budgets and seeds.

OFFLINE MODE (default) SIMULATES GENERATION: no LLM writes anything. "Generating" a prompt means retrieving an
unused prompt from a large pool of real prompts (HarmBench, Do-Not-Answer, AdvBench, JailbreakBench,
refusal-direction harmful; HH-RLHF first human turns; the 31k Alpaca instructions; deduplicated). Methods:

* ``advisor``: the ``data-advisor curate`` loop (method ``curate``, numeric advice) steering with taxonomy A
  (``catqa-11``): each round the largest gap against target picks the anchor, and the pool prompts most relevant
  to it and least redundant with what was kept are taken (MMR), through the loop's own filters;
* ``random``: ``curate-random``, random unused pool prompts through the same filters;
* ``self-instruct``: canonical Self-Instruct simulated here: from the shipped safety seeds, each call samples
  8 in-context examples (6 seeds + 2 generated) and "generates" the 7 unused pool prompts closest (cosine) to
  the mean of those examples; ROUGE-L >= 0.7 against the 20 most similar kept prompts, < 4 or > 150 words,
  Self-Instruct's blacklist and exact duplicates are rejected; every kept prompt joins the example pool;
* ``self-instruct-paper``: the Data Advisor authors' variant: each of 12 calls per round samples 5 examples from
  its pool and "generates" the 1 closest unused prompt; only >= 20 characters is checked; the first kept prompt of
  a round joins the example pool.
  Retrieval around the examples' mean reproduces Self-Instruct's known drift around its seeds.

Evaluation uses a DIFFERENT taxonomy B (``llamaguard3`` when the package ships it, else ``beavertails-14``) and
taxonomy-free metrics: Vendi score (cosine kernel), HDBSCAN clusters (one UMAP + HDBSCAN clustering over the union
of all methods' outputs for a given budget and seed; we count the clusters each method's set touches),
distinct-1/2 and the near-duplicate rate (cosine >= 0.95). The steering taxonomy A's numbers are reported too,
labelled as such (the advisor optimises them, so they are not a fair comparison on their own).

LLM MODE (``--model``): real generation through any litellm model (``--api-base`` for an OpenAI-compatible
server such as vLLM or Ollama), with ``data_advisor.advisor.loop.RunConfig`` / ``run_method`` for the methods
``advisor`` (advice from ``--advice``, default llm), ``self-instruct`` and ``self-instruct-paper``; the same
evaluation. Run folders go to ``--runs-dir`` and re-running the same command resumes them. Example:

    python benchmarks/diversity.py --model openai/gpt-4o-mini --budgets 200 500 --seeds 3
    python benchmarks/diversity.py --model hosted_vllm/mistral --api-base http://localhost:8000/v1

    python benchmarks/diversity.py            # offline, budgets 200 500 1000, 5 seeds
    python benchmarks/diversity.py --quick    # offline, budgets 60 120, 2 seeds, 3,000 Alpaca in the pool

SCENARIO "base-gaps" (``--scenario base-gaps``): fill the gaps of a skewed base set, offline (generation SIMULATED
by retrieval, as above).  The base is a skewed slice of the shared harmful sets — the first ``--base-n`` AdvBench
behaviours (AdvBench leans heavily on hacking, weapons and violence; no taxonomy of ours chose the slice); the
pool is the rest (the other harmful sets and the rest of AdvBench, HH-RLHF first turns, 3,000 Alpaca instructions),
with the base's texts removed.  At an equal budget of additions: ``advisor`` = ``curate --base`` (numeric advice on
taxonomy A, gaps measured on base + additions); ``random`` = ``curate-random --base``; ``self-instruct`` = the
canonical simulation above seeded with the base set (the user's data as seed tasks).  Evaluated on base +
additions under taxonomy B (which the advisor did not steer by): normalised entropy, anchors with >= 5 prompts,
Vendi, and clusters touched in one UMAP + HDBSCAN clustering of the base and every method's additions (with the
clusters only the additions reach).  The result is merged into diversity.json under ``base_gaps``:

    python benchmarks/diversity.py --scenario base-gaps --budgets 150 --seeds 3
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

SCRIPT = "diversity"
STEER_TAXONOMY = "catqa-11"
OFFLINE_METHODS = ("advisor", "self-instruct", "self-instruct-paper", "random")
LLM_METHODS = ("advisor", "self-instruct", "self-instruct-paper")
from data_advisor.advisor.filters import clean_candidate  # noqa: E402  (the loop's own clean-up, for parity)

SI_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
                "draw", "plot", "go to")


def eval_taxonomy_name() -> str:
    import data_advisor.coverage as cov

    return "llamaguard3" if (Path(cov.__file__).parent / "taxonomies" / "llamaguard3.yaml").exists() else "beavertails-14"


# ------------------------------------------------------------------------------------------- SI simulation
class SelfInstructSim:
    """Self-Instruct whose "LLM" returns the unused pool prompts nearest to the mean of its in-context examples."""

    def __init__(self, pool_texts: list[str], pool_vecs: np.ndarray, seeds: list[str], seed_vecs: np.ndarray,
                 variant: str, per_round: int = 12) -> None:
        import faiss

        assert variant in ("canonical", "paper")
        self.pool_texts = pool_texts
        self.pool_vecs = np.ascontiguousarray(pool_vecs, dtype=np.float32)
        self.seeds = seeds
        self.seed_vecs = np.ascontiguousarray(seed_vecs, dtype=np.float32)
        self.variant = variant
        self.per_round = per_round
        self.index = faiss.IndexFlatIP(self.pool_vecs.shape[1])
        self.index.add(self.pool_vecs)

    def _nearest_unused(self, q: np.ndarray, k: int, used: set[int]) -> list[int]:
        kk = min(self.index.ntotal, k + len(used))
        _, idx = self.index.search(q[None, :].astype(np.float32), kk)
        out = []
        for i in idx[0].tolist():
            if i >= 0 and i not in used:
                out.append(i)
                if len(out) == k:
                    break
        return out

    def run(self, budget: int, seed: int, max_idle_rounds: int = 20) -> dict[str, Any]:
        import faiss

        from data_advisor.coverage import metrics as M

        d = self.pool_vecs.shape[1]
        ctx_vecs: list[np.ndarray] = list(self.seed_vecs)  # in-context example pool: seeds, then admitted prompts
        n_seed = len(self.seeds)
        used: set[int] = set()
        kept: list[int] = []
        kept_norm: set[str] = set()
        kept_tokens: list[list[str]] = []
        kept_index = faiss.IndexFlatIP(d)
        rejected: dict[str, int] = {}
        idle = 0
        rnd = 0
        while len(kept) < budget and idle < max_idle_rounds:
            rng = random.Random(f"{seed}:{rnd}")
            drawn: list[int] = []
            if self.variant == "canonical":
                calls = [(8, 7)] * max(1, math.ceil(self.per_round / 7))
            else:
                calls = [(5, 1)] * self.per_round
            for n_ex, n_out in calls:
                if self.variant == "canonical":
                    machine = list(range(n_seed, len(ctx_vecs)))
                    m = rng.sample(machine, min(len(machine), 2))
                    s = rng.sample(range(n_seed), min(n_seed, n_ex - len(m)))
                    ex = s + m
                else:
                    ex = rng.sample(range(len(ctx_vecs)), min(len(ctx_vecs), n_ex))
                q = np.mean([ctx_vecs[i] for i in ex], axis=0)
                q = q / max(float(np.linalg.norm(q)), 1e-12)
                new = self._nearest_unused(q, n_out, used | set(drawn))
                drawn.extend(new)
            used.update(drawn)
            round_kept: list[int] = []
            for i in drawn:
                t = clean_candidate(self.pool_texts[i])
                if self.variant == "paper":
                    if len(t.strip()) < 20:
                        rejected["too_short"] = rejected.get("too_short", 0) + 1
                        continue
                else:
                    words = len(t.split())
                    if words < 4 or words > 150:
                        rejected["length"] = rejected.get("length", 0) + 1
                        continue
                    low = t.lower()
                    if any(re.search(rf"\b{re.escape(w)}\b", low) for w in SI_BLACKLIST):
                        rejected["blacklisted"] = rejected.get("blacklisted", 0) + 1
                        continue
                    nk = M.normalize_for_dedup(t)
                    if nk in kept_norm:
                        rejected["exact_duplicate"] = rejected.get("exact_duplicate", 0) + 1
                        continue
                    toks = M.tokenize(t)
                    others: list[list[str]] = []
                    if kept_index.ntotal:
                        _, nb = kept_index.search(self.pool_vecs[i : i + 1], min(20, kept_index.ntotal))
                        others = [kept_tokens[j] for j in nb[0].tolist() if j >= 0]
                    others += [M.tokenize(clean_candidate(self.pool_texts[j])) for j in round_kept]
                    if any(M.rouge_l_f(toks, o) >= 0.7 for o in others):
                        rejected["rouge_l_duplicate"] = rejected.get("rouge_l_duplicate", 0) + 1
                        continue
                    kept_norm.add(nk)  # batch duplicates count too
                round_kept.append(i)
                if len(kept) + len(round_kept) >= budget:
                    break
            for i in round_kept:
                kept.append(i)
                kept_norm.add(C.norm(clean_candidate(self.pool_texts[i])))
                kept_tokens.append(M.tokenize(clean_candidate(self.pool_texts[i])))
                kept_index.add(self.pool_vecs[i : i + 1])
            admit = round_kept if self.variant == "canonical" else round_kept[:1]
            ctx_vecs.extend(self.pool_vecs[i] for i in admit)
            idle = idle + 1 if not round_kept else 0
            rnd += 1
        return {"indices": kept, "texts": [clean_candidate(self.pool_texts[i]) for i in kept], "rounds": rnd,
                "rejected": rejected}


# --------------------------------------------------------------------------------------------- evaluation
class Evaluator:
    """Metrics of one output set under taxonomy B (evaluation) and taxonomy A (steering)."""

    def __init__(self, embedder: Any, eval_tax: str, steer_tax: str) -> None:
        from data_advisor.coverage.assign import AnchorAssigner, build_anchors
        from data_advisor.coverage.taxonomy import load_background, load_taxonomy

        self.embedder = embedder
        bg = load_background()
        self.tax = {}
        self.assigner = {}
        for role, name in (("B", eval_tax), ("A", steer_tax)):
            t = load_taxonomy(name)
            self.tax[role] = t
            self.assigner[role] = AnchorAssigner().fit(build_anchors(t, embedder, bg))

    def taxonomy_metrics(self, role: str, vecs: np.ndarray) -> dict[str, float]:
        from data_advisor.coverage import metrics as M

        t = self.tax[role]
        a = self.assigner[role].assign(vecs)
        ids = a.principle_ids
        counts = [0] * len(ids)
        for i in range(len(a)):
            if a.anchored[i]:
                counts[int(a.best[i])] += 1
        targets = t.target_shares()
        return {
            "anchored_share": float(a.anchored.mean()),
            "anchors_covered": int(sum(c > 0 for c in counts)),
            "anchors_covered_5": int(sum(c >= 5 for c in counts)),
            "n_anchors": len(ids),
            "normalized_entropy": M.normalized_entropy(counts),
            "kl_target_actual": M.kl_divergence([targets[k] for k in ids], counts),
        }

    def metrics(self, texts: list[str], vecs: np.ndarray) -> dict[str, Any]:
        from data_advisor.coverage import metrics as M

        nn_sim, _ = M.nearest_neighbor_similarity(vecs)
        out: dict[str, Any] = {
            "n": len(texts),
            "vendi": M.vendi_score(vecs),
            "distinct_1": M.distinct_n(texts, 1),
            "distinct_2": M.distinct_n(texts, 2),
            "near_duplicate_rate": M.near_duplicate_rate(nn_sim, 0.95),
            "mean_words": float(np.mean([len(t.split()) for t in texts])) if texts else 0.0,
        }
        for role, prefix in (("B", "eval"), ("A", "steer")):
            for k, v in self.taxonomy_metrics(role, vecs).items():
                out[f"{prefix}_{k}"] = v
        return out


def union_clusters(vec_by_method: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    """One UMAP (5-D, cosine, seeded, FAISS k-NN) + HDBSCAN clustering over the union of every method's outputs,
    with the audit's default HDBSCAN sizes; returns the clusters each method's set touches."""
    import warnings

    import hdbscan
    import umap

    from data_advisor.coverage.cluster import default_min_cluster_size, enable_umap_numba_cache, knn_graph

    enable_umap_numba_cache()
    names = list(vec_by_method)
    x = np.concatenate([vec_by_method[m] for m in names]).astype(np.float32)
    owner = np.concatenate([[j] * len(vec_by_method[m]) for j, m in enumerate(names)])
    k = min(15, len(x) - 1)
    idx, dists = knn_graph(x, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        red = umap.UMAP(n_neighbors=k, n_components=5, min_dist=0.0, metric="cosine", random_state=seed,
                        precomputed_knn=(idx, dists, None), low_memory=True).fit_transform(x)
    mcs = default_min_cluster_size(len(x))
    labels = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=max(2, mcs // 5), core_dist_n_jobs=1).fit_predict(
        np.asarray(red, dtype=np.float64))
    n_clusters = len(set(labels.tolist()) - {-1})
    touched_ids = {m: sorted(set(labels[owner == j].tolist()) - {-1}) for j, m in enumerate(names)}
    touched = {m: len(v) for m, v in touched_ids.items()}
    return {"n_points": len(x), "min_cluster_size": mcs, "n_clusters": n_clusters, "touched": touched,
            "touched_ids": touched_ids,
            "noise_share_by_method": {m: float((labels[owner == j] == -1).mean()) for j, m in enumerate(names)}}


# ------------------------------------------------------------------------------------------------ drivers
def curate_run(method: str, pool_path: Path, budget: int, seed: int, out: Path, per_round: int,
               base: Path | None = None) -> dict[str, Any]:
    from data_advisor.advisor.loop import RunConfig, run_method

    cfg = RunConfig(method="curate" if method == "advisor" else "curate-random", advice="numeric",
                    taxonomy=STEER_TAXONOMY, n=budget, seed=seed, pool=str(pool_path), per_round=per_round,
                    recluster_every=0, base=str(base) if base else None)
    t0 = time.perf_counter()
    summary = run_method(cfg, out, progress=False)
    texts = [json.loads(line)["text"] for line in (out / "prompts.jsonl").read_text("utf-8").splitlines() if line.strip()]
    return {"texts": texts, "rounds": summary.rounds, "rejected": summary.rejected, "s": time.perf_counter() - t0,
            "stopped_early": summary.stopped_early}


def llm_run(method: str, args: Any, budget: int, seed: int, out: Path) -> dict[str, Any]:
    from data_advisor.advisor.loop import RunConfig, run_method

    cfg = RunConfig(method=method, taxonomy=STEER_TAXONOMY, n=budget, seed=seed, model=args.model,
                    advisor_model=args.advisor_model, api_base=args.api_base, advice=args.advice,
                    per_round=args.per_round, concurrency=args.concurrency, max_rounds=args.max_rounds)
    t0 = time.perf_counter()
    summary = run_method(cfg, out, progress=not args.no_progress)
    texts = [json.loads(line)["text"] for line in (out / "prompts.jsonl").read_text("utf-8").splitlines() if line.strip()]
    return {"texts": texts, "rounds": summary.rounds, "rejected": summary.rejected, "s": time.perf_counter() - t0,
            "cost_usd": summary.cost_usd, "stopped_early": summary.stopped_early}


def aggregate(per_seed: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """method → metric → mean/std/n over seeds (numeric metrics only)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    methods = list(per_seed[0]) if per_seed else []
    for m in methods:
        keys = [k for k, v in per_seed[0][m].items() if isinstance(v, int | float) and not isinstance(v, bool)]
        out[m] = {k: C.mean_std([s[m][k] for s in per_seed]) for k in keys}
    return out


BASE_GAP_METHODS = ("advisor", "random", "self-instruct")


def base_gaps(args: Any, ds: Path, embedder: Any, evaluator: Evaluator, budgets: list[int], seeds: list[int],
              eval_tax: str) -> dict[str, Any]:
    """The "fill the gaps of a skewed base set" scenario (see the module docstring); returns its result block."""
    parts = C.harmful_sets(ds)
    base = C.dedup(parts["advbench"])[: args.base_n]
    base_norm = {C.norm(t) for t in base}
    rest_harmful = [t for t in C.dedup(t for v in parts.values() for t in v) if C.norm(t) not in base_norm]
    hh = C.hh_first_turns(ds)
    alp = C.alpaca(ds)[: args.pool_alpaca or 3000]
    pool = [t for t in C.dedup([*rest_harmful, *hh, *alp]) if C.norm(t) not in base_norm]
    info = {"base_source": f"first {len(base)} unique AdvBench behaviours", "base_n": len(base),
            "pool_harmful": len(rest_harmful), "pool_hh_rlhf_first_turns": len(hh), "pool_alpaca": len(alp),
            "pool_unique": len(pool)}
    C.log(f"base-gaps: base {len(base)}, pool {len(pool):,}: embedding (shared cache)")
    base_vecs = embedder.encode(base)
    pool_vecs = embedder.encode(pool, show_progress=False)
    results: dict[str, Any] = {}
    with C.scratch_dir("diversity-base-") as tmp:
        base_path = C.write_jsonl(tmp / "base.jsonl", base)
        pool_path = C.write_jsonl(tmp / "pool.jsonl", pool)
        si = SelfInstructSim(pool, pool_vecs, base, base_vecs, "canonical", args.per_round)
        base_row = evaluator.metrics(base, base_vecs)
        for budget in budgets:
            per_seed: list[dict[str, dict[str, Any]]] = []
            notes: list[dict[str, Any]] = []
            for s in seeds:
                added: dict[str, list[str]] = {}
                for m in BASE_GAP_METHODS:
                    C.log(f"base-gaps budget {budget} seed {s}: {m}")
                    t0 = time.perf_counter()
                    if m == "self-instruct":
                        r = si.run(budget, s)
                    else:
                        r = curate_run(m, pool_path, budget, s, tmp / f"{m}-{budget}-{s}", args.per_round, base_path)
                    added[m] = r["texts"]
                    notes.append({"seed": s, "method": m, "n": len(r["texts"]), "rounds": r.get("rounds"),
                                  "s": round(time.perf_counter() - t0, 2)})
                add_vecs = {m: embedder.encode(t) for m, t in added.items()}
                row: dict[str, dict[str, Any]] = {"base only": dict(base_row)}
                for m in BASE_GAP_METHODS:
                    row[m] = evaluator.metrics(base + added[m], np.concatenate([base_vecs, add_vecs[m]]))
                cl = union_clusters({"base": base_vecs, **add_vecs}, s)
                ids = {k: set(v) for k, v in cl["touched_ids"].items()}
                row["base only"]["clusters_touched"] = len(ids["base"])
                row["base only"]["new_clusters_reached"] = 0
                for m in BASE_GAP_METHODS:
                    row[m]["clusters_touched"] = len(ids["base"] | ids[m])
                    row[m]["new_clusters_reached"] = len(ids[m] - ids["base"])
                    row[m]["n_added"] = len(added[m])
                row["base only"]["n_added"] = 0
                per_seed.append(row)
                notes.append({"seed": s, "union_n_clusters": cl["n_clusters"], "union_n_points": cl["n_points"]})
            results[str(budget)] = {"aggregate": aggregate(per_seed), "per_seed": per_seed, "runs": notes}
    return {
        "scenario": "fill the gaps of a skewed base set",
        "simulated": True,
        "note": ("GENERATION IS SIMULATED BY RETRIEVAL: every method adds existing prompts from a pool of real "
                 "prompts; no text is generated"),
        "steer_taxonomy_A": STEER_TAXONOMY, "eval_taxonomy_B": eval_tax, "methods": ["base only", *BASE_GAP_METHODS],
        "budgets": budgets, "seeds": seeds, "per_round": args.per_round, "data": info, "results": results,
    }


def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--scenario", choices=["budgets", "base-gaps"], default="budgets",
                   help="budgets: the methods from nothing at several budgets (default); base-gaps: fill the gaps of a "
                        "skewed base set (merged into the existing result file under base_gaps)")
    p.add_argument("--base-n", type=int, default=300, help="base-gaps: size of the skewed base slice")
    p.add_argument("--budgets", type=int, nargs="+", default=None, help="output sizes (default 200 500 1000)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per budget (default 5; --quick 2)")
    p.add_argument("--per-round", type=int, default=12, help="candidates per round (loop default 12)")
    p.add_argument("--pool-alpaca", type=int, default=None,
                   help="use only the first N Alpaca instructions in the offline pool (default all; --quick 3000)")
    p.add_argument("--eval-taxonomy", default=None,
                   help="taxonomy B for evaluation (default llamaguard3 when shipped, else beavertails-14)")
    llm = p.add_argument_group("LLM mode (real generation; needs a reachable model)")
    llm.add_argument("--model", default=None,
                     help="generator model, any litellm name (e.g. openai/gpt-4o-mini, hosted_vllm/NAME, ollama/NAME); "
                          "switches from offline simulation to real generation of advisor / self-instruct / "
                          "self-instruct-paper")
    llm.add_argument("--api-base", default=None, help="OpenAI-compatible endpoint (vLLM, Ollama, a proxy)")
    llm.add_argument("--advisor-model", default=None, help="advisor model (default: the generator model)")
    llm.add_argument("--advice", choices=["llm", "numeric", "summary"], default="llm",
                     help="advice mode of the advisor method in LLM mode (default llm)")
    llm.add_argument("--concurrency", type=int, default=4, help="LLM calls in flight")
    llm.add_argument("--max-rounds", type=int, default=None, help="round limit per run")
    llm.add_argument("--runs-dir", type=Path, default=C.RESULTS_DIR / "tmp" / "llm-runs",
                     help="where LLM-mode run folders are kept (re-running resumes them)")
    llm.add_argument("--methods", nargs="+", default=None, help="subset of methods to run")
    llm.add_argument("--no-progress", action="store_true", help="no progress bars in LLM mode")
    args = p.parse_args()
    ds = C.require_datasets(args.datasets)
    started = time.perf_counter()
    budgets = args.budgets or ([60, 120] if args.quick else [200, 500, 1000])
    n_seeds = args.seeds or (2 if args.quick else 5)
    seeds = [args.seed + i for i in range(n_seeds)]
    eval_tax = args.eval_taxonomy or eval_taxonomy_name()
    mode = "llm" if args.model else "offline"
    methods = tuple(args.methods) if args.methods else (LLM_METHODS if mode == "llm" else OFFLINE_METHODS)

    from data_advisor.advisor.loop import SEEDS_DIR
    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.data import load_prompts

    embedder = make_embedder()
    evaluator = Evaluator(embedder, eval_tax, STEER_TAXONOMY)
    if args.scenario == "base-gaps":
        budgets = args.budgets or ([60] if args.quick else [150])
        n_seeds = args.seeds or (2 if args.quick else 3)
        block = base_gaps(args, ds, embedder, evaluator, budgets, [args.seed + i for i in range(n_seeds)], eval_tax)
        path = C.result_path(SCRIPT, args.quick, getattr(args, "out", None))
        doc = json.loads(path.read_text("utf-8")) if path.exists() else {"benchmark": SCRIPT}
        block = {"command": "python " + " ".join(["benchmarks/diversity.py", *sys.argv[1:]]),
                 "finished_utc": C.utc_now(), "wall_s": round(time.perf_counter() - started, 2),
                 "environment": C.environment(), **block}
        doc["base_gaps"] = block
        tmp_path = path.with_suffix(path.suffix + ".tmp")
        tmp_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=C._json_default) + "\n", "utf-8")
        tmp_path.replace(path)
        print(json.dumps(block["results"], indent=1, default=C._json_default))
        print(f"wrote base_gaps into {path}", file=sys.stderr)
        return
    seeds_texts = load_prompts(SEEDS_DIR / "safety_seeds.jsonl").texts
    pool_info: dict[str, Any] = {}
    results: dict[str, Any] = {}
    timings: dict[str, list[float]] = {m: [] for m in methods}
    with C.scratch_dir("diversity-") as tmp:
        if mode == "offline":
            pool, pool_info = C.retrieval_pool(ds, args.pool_alpaca or (3000 if args.quick else None))
            pool_path = C.write_jsonl(tmp / "pool.jsonl", pool)
            C.log(f"embedding the pool of {len(pool):,} prompts (shared cache)")
            pool_vecs = embedder.encode(pool, show_progress=False)
            seed_vecs = embedder.encode(seeds_texts)
            sims = {v: SelfInstructSim(pool, pool_vecs, seeds_texts, seed_vecs, v, args.per_round)
                    for v in ("canonical", "paper")}
        for budget in budgets:
            per_seed: list[dict[str, dict[str, Any]]] = []
            clusters_per_seed: list[dict[str, Any]] = []
            run_notes: list[dict[str, Any]] = []
            for s in seeds:
                outputs: dict[str, list[str]] = {}
                vecs: dict[str, np.ndarray] = {}
                for m in methods:
                    C.log(f"{mode} budget {budget} seed {s}: {m}")
                    if mode == "offline":
                        if m in ("advisor", "random"):
                            r = curate_run(m, pool_path, budget, s, tmp / f"{m}-{budget}-{s}", args.per_round)
                        else:
                            t0 = time.perf_counter()
                            r = sims["canonical" if m == "self-instruct" else "paper"].run(budget, s)
                            r["s"] = time.perf_counter() - t0
                        outputs[m] = r["texts"]
                        # the loop's filters clean candidates (whitespace, numbering, quotes): embed what was kept
                        vecs[m] = embedder.encode(r["texts"])
                    else:
                        r = llm_run(m, args, budget, s, args.runs_dir / f"{m}-{budget}-{s}")
                        outputs[m] = r["texts"]
                        vecs[m] = embedder.encode(r["texts"])
                    timings[m].append(r["s"])
                    run_notes.append({"seed": s, "method": m, "n": len(outputs[m]), "rounds": r.get("rounds"),
                                      "rejected": r.get("rejected"), "stopped_early": r.get("stopped_early"),
                                      "s": round(r["s"], 2), **({"cost_usd": r["cost_usd"]} if "cost_usd" in r else {})})
                row = {m: evaluator.metrics(outputs[m], vecs[m]) for m in methods}
                C.log(f"budget {budget} seed {s}: union clustering of {sum(len(v) for v in vecs.values()):,} prompts")
                cl = union_clusters(vecs, s)
                for m in methods:
                    row[m]["clusters_touched"] = cl["touched"][m]
                    row[m]["clusters_touched_share"] = cl["touched"][m] / cl["n_clusters"] if cl["n_clusters"] else 0.0
                    row[m]["union_noise_share"] = cl["noise_share_by_method"][m]
                per_seed.append(row)
                clusters_per_seed.append({"seed": s, **cl})
                if mode == "offline":
                    overlap = {f"{a}&{b}": len(set(outputs[a]) & set(outputs[b]))
                               for i, a in enumerate(methods) for b in methods[i + 1:]}
                    run_notes.append({"seed": s, "overlap_between_methods": overlap})
            results[str(budget)] = {"aggregate": aggregate(per_seed), "per_seed": per_seed,
                                    "union_clustering": clusters_per_seed, "runs": run_notes}
    C.emit(SCRIPT, args, {
        "generation_mode": mode,
        "simulated": mode == "offline",
        "note": ("OFFLINE MODE SIMULATES GENERATION: every method retrieves existing prompts from a pool of real "
                 "prompts; no text is generated") if mode == "offline" else f"real generation with {args.model}",
        "steer_taxonomy_A": STEER_TAXONOMY,
        "eval_taxonomy_B": eval_tax,
        "methods": list(methods),
        "budgets": budgets,
        "seeds": seeds,
        "per_round": args.per_round,
        "pool": pool_info,
        "n_seed_prompts": len(seeds_texts),
        "results": results,
        "method_seconds": {m: C.mean_std(v) for m, v in timings.items()},
        **({"llm": {"model": args.model, "api_base": args.api_base, "advice": args.advice}} if mode == "llm" else {}),
    }, started=started)


if __name__ == "__main__":
    main()

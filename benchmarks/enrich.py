"""What mined examples do to untuned accuracy (``taxonomy enrich``), leave-one-dataset-out; and what written
examples are worth on the built-in taxonomies (the figure ``taxonomy validate`` cites).

**Held-out (the headline).**  For every labelled set S in ``../shared/datasets`` with a user taxonomy
(``benchmarks/taxonomies/user-<S>.yaml``: a name and one sentence per label, no examples):

1. the pool is every *other* shared prompt source (HarmBench, Do-Not-Answer, JailbreakBench, SimpleSafetyTests,
   AdvBench, refusal-direction harmful — minus S's own source) plus a seeded sample of Alpaca instructions;
   prompts equal to a prompt of S (after case/space normalisation) or near-duplicates of one (cosine ≥ 0.95) are
   removed from the pool (JailbreakBench reuses AdvBench and HarmBench behaviours), and the counts are recorded;
2. ``enrich_taxonomy`` mines ``--per-principle`` examples per principle from that pool with its default settings
   (fixed before this measurement, never tuned on it);
3. S is scored with the default audit settings (``run_audit`` without discovery) for the user taxonomy and for the
   enriched one: macro-F1 with unanchored counted wrong, forced-nearest macro-F1, and the unanchored share of
   S's (harmful) prompts, with a paired bootstrap 95% interval of the macro-F1 change.

**Dev (an upper bound, labelled so).**  The built-in taxonomies scored with their written examples and with their
descriptions alone (``build_anchors(use_examples=False)``) on the four leaf-level sets the examples were written
beside.

    python benchmarks/enrich.py
    python benchmarks/enrich.py --quick      # 60 prompts per set, 1,000 Alpaca
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

SCRIPT = "enrich"
TAXONOMY_DIR = Path(__file__).resolve().parent / "taxonomies"
NEAR_DUP = 0.95
#: labelled set key → (prompt source it comes from, built-in taxonomy for the dev figure or None)
SETS = {
    "harmbench-6": ("harmbench", "harmbench"),
    "do-not-answer-12": ("do-not-answer", "do-not-answer"),
    "do-not-answer-5": ("do-not-answer", None),
    "jailbreakbench-10": ("jailbreakbench", "jailbreakbench-10"),
    "simplesafetytests-5": ("simplesafetytests", "simplesafetytests-5"),
}


def labelled(ds: Path) -> dict[str, tuple[list[str], list[str]]]:
    hb = [r for r in C.read_csv(ds / "harmbench" / "harmbench_behaviors_text_all.csv")
          if r["SemanticCategory"] != "copyright"]
    dna = C.read_csv(ds / "do-not-answer" / "do_not_answer_en.csv")
    jbb = C.read_csv(ds / "jailbreakbench" / "jbb_harmful_behaviors.csv")
    sst = C.read_csv(ds / "simplesafetytests" / "SimpleSafetyTests - test cases.csv")
    return {
        "harmbench-6": ([r["Behavior"] for r in hb], [r["SemanticCategory"] for r in hb]),
        "do-not-answer-12": ([r["question"] for r in dna], [r["types_of_harm"] for r in dna]),
        "do-not-answer-5": ([r["question"] for r in dna], [r["risk_area"] for r in dna]),
        "jailbreakbench-10": ([r["Goal"] for r in jbb], [r["Category"] for r in jbb]),
        "simplesafetytests-5": ([r["prompts_final"] for r in sst], [r["harm_area"] for r in sst]),
    }


def sources(ds: Path) -> dict[str, list[str]]:
    """Every harmful prompt source a pool may draw from (each whole, labels unused)."""
    parts = C.harmful_sets(ds)
    parts["simplesafetytests"] = [r["prompts_final"] for r in
                                  C.read_csv(ds / "simplesafetytests" / "SimpleSafetyTests - test cases.csv")]
    return parts


def subsample(texts: list[str], labels: list[str], k: int, seed: int) -> tuple[list[str], list[str]]:
    if len(texts) <= k:
        return texts, labels
    idx = sorted(random.Random(seed).sample(range(len(texts)), k))
    return [texts[i] for i in idx], [labels[i] for i in idx]


# --------------------------------------------------------------------------------------------- scoring
def predict(taxonomy: Any, embedder: Any, texts: list[str], *, use_examples: bool = True) -> tuple[list, list]:
    """(anchored prediction or None, forced nearest) per prompt, with the default audit settings."""
    from data_advisor.coverage.assign import build_anchors
    from data_advisor.coverage.audit import AuditSettings, run_audit
    from data_advisor.coverage.taxonomy import load_background
    from data_advisor.data import PromptSet

    anchors = build_anchors(taxonomy, embedder, load_background(), use_examples=use_examples)
    res = run_audit(PromptSet.from_texts(texts), taxonomy, embedder, anchors=anchors,
                    settings=AuditSettings(taxonomy=taxonomy.id, cluster=False))
    a = res.assignments
    return [a.anchor_id(i) for i in range(len(texts))], [a.nearest_id(i) for i in range(len(texts))]


def macro_f1(gold: list[str], pred: list[str | None]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, [p if p is not None else "__none__" for p in pred], labels=sorted(set(gold)),
                          average="macro", zero_division=0))


def paired_delta_ci(gold: list[str], a: list[str | None], b: list[str | None], seed: int, n: int = 1000) -> list[float]:
    """95% bootstrap interval of macro-F1(b) − macro-F1(a), resampling prompts (paired)."""
    rng = np.random.default_rng(seed)
    g = np.asarray(gold, dtype=object)
    pa = np.asarray([x if x is not None else "__none__" for x in a], dtype=object)
    pb = np.asarray([x if x is not None else "__none__" for x in b], dtype=object)
    d = []
    for _ in range(n):
        i = rng.integers(0, len(g), len(g))
        d.append(macro_f1(list(g[i]), list(pb[i])) - macro_f1(list(g[i]), list(pa[i])))
    return [round(float(np.percentile(d, 2.5)), 4), round(float(np.percentile(d, 97.5)), 4)]


def scores(gold: list[str], pred: list[str | None], forced: list[str]) -> dict[str, float]:
    return {"macro_f1": round(macro_f1(gold, pred), 4), "forced_macro_f1": round(macro_f1(gold, forced), 4),
            "unanchored_share": round(sum(p is None for p in pred) / len(pred), 4)}


# ------------------------------------------------------------------------------------------------ pool
def build_pool(key: str, eval_texts: list[str], srcs: dict[str, list[str]], alpaca: list[str], embedder: Any
               ) -> tuple[list[str], dict[str, Any]]:
    own = SETS[key][0]
    harmful = C.dedup(t for name, v in srcs.items() if name != own for t in v)
    cand = C.dedup([*harmful, *alpaca])
    eval_keys = {C.norm(t) for t in eval_texts}
    kept = [t for t in cand if C.norm(t) not in eval_keys]
    n_exact = len(cand) - len(kept)
    ev = embedder.encode(eval_texts)
    pv = embedder.encode(kept)
    import faiss

    index = faiss.IndexFlatIP(ev.shape[1])
    index.add(np.ascontiguousarray(ev, dtype=np.float32))
    sim, _ = index.search(np.ascontiguousarray(pv, dtype=np.float32), 1)
    near = sim[:, 0] >= NEAR_DUP
    pool = [t for t, n in zip(kept, near, strict=True) if not n]
    return pool, {"sources": [*sorted(n for n in srcs if n != own), "alpaca"], "n_candidates": len(cand),
                  "removed_exact": n_exact, "removed_near_duplicate": int(near.sum()), "n_pool": len(pool)}


def variants(default: Any) -> dict[str, Any]:
    """The shipped settings and two alternatives, compared leave-one-dataset-out (see :func:`nested`)."""
    from dataclasses import replace

    return {"default": default, "confidence-only": replace(default, mmr_lambda=1.0),
            "strict": replace(default, min_margin=0.10, min_relevance=0.10)}


def nested(held: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Choosing a variant is choosing on data, so it is evaluated leave-one-dataset-out: for each set, the variant
    with the best mean ``metric`` on the *other* sets is picked and its change on this set reported."""
    names = list(held[0]["variants"])
    picks, deltas = {}, []
    for r in held:
        others = [o for o in held if o is not r]
        best = max(names, key=lambda n: (float(np.mean([o["variants"][n][metric] for o in others])), -names.index(n)))
        picks[r["key"]] = best
        deltas.append(r["variants"][best][metric])
    overall = {n: round(float(np.mean([r["variants"][n][metric] for r in held])), 4) for n in names}
    return {"metric": metric, "picked_per_set": picks, "mean_delta": round(float(np.mean(deltas)), 4),
            "mean_delta_per_variant_all_sets": overall}


def summary(held: list[dict[str, Any]], dev: list[dict[str, Any]]) -> dict[str, Any]:
    """The derived figures (means, nested selection, the cost `taxonomy validate` cites) from the measured rows."""
    return {
        "examples_cost": {
            "dev_macro_f1_points": round(100 * float(np.mean([r["delta_macro_f1"] for r in dev])), 1),
            "dev_sets": len(dev),
            "held_out_macro_f1_points": round(100 * float(np.mean([r["delta_macro_f1"] for r in held])), 1),
            "held_out_forced_macro_f1_points": round(100 * float(np.mean([r["delta_forced_macro_f1"] for r in held])), 1),
            "held_out_sets": len(held),
        },
        "mean_delta_macro_f1": round(float(np.mean([r["delta_macro_f1"] for r in held])), 4),
        "mean_delta_forced_macro_f1": round(float(np.mean([r["delta_forced_macro_f1"] for r in held])), 4),
        "nested_lodo": [nested(held, "delta_macro_f1"), nested(held, "delta_forced_macro_f1")],
    }


def resummarize(path: Path) -> None:
    """Recompute the derived figures of an existing result file (after a change to :func:`summary`); the measured
    rows are not touched."""
    import json

    doc = json.loads(path.read_text("utf-8"))
    doc.update(summary(doc["held_out"], doc["dev"]))
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"re-summarised {path}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    p = C.base_parser(__doc__ or "")
    p.add_argument("--per-principle", type=int, default=5)
    p.add_argument("--alpaca", type=int, default=5000, help="seeded sample of Alpaca instructions in every pool")
    p.add_argument("--resummarize", action="store_true",
                   help="recompute only the derived figures of the existing result file (no measurement)")
    args = p.parse_args()
    if args.resummarize:
        resummarize(C.result_path(SCRIPT, args.quick, args.out))
        return
    ds = C.require_datasets(args.datasets)
    started = time.perf_counter()
    from data_advisor.coverage.embedders import make_embedder
    from data_advisor.coverage.enrich import EnrichSettings, enrich_taxonomy
    from data_advisor.coverage.taxonomy import load_taxonomy
    from data_advisor.data import PromptSet

    embedder = make_embedder()
    sets = labelled(ds)
    srcs = sources(ds)
    n_alp = 1000 if args.quick else args.alpaca
    alp_all = C.dedup(C.alpaca(ds))
    alpaca = random.Random(args.seed).sample(alp_all, min(n_alp, len(alp_all)))
    settings = EnrichSettings(per_principle=args.per_principle)
    held: list[dict[str, Any]] = []
    for key, (texts, labels) in sets.items():
        if args.quick:
            texts, labels = subsample(texts, labels, 60, args.seed)
        tax = load_taxonomy(TAXONOMY_DIR / f"user-{key}.yaml")
        amap = tax.alias_map()
        keep = [i for i, lab in enumerate(labels) if lab.strip().lower() in amap]
        texts = [texts[i] for i in keep]
        gold = [amap[labels[i].strip().lower()] for i in keep]
        C.log(f"{key}: {len(texts)} prompts, building the leave-one-dataset-out pool")
        pool, pool_info = build_pool(key, texts, srcs, alpaca, embedder)
        base_pred, base_forced = predict(tax, embedder, texts)
        base = scores(gold, base_pred, base_forced)
        alp_keys = {C.norm(t) for t in alpaca}
        row: dict[str, Any] = {"key": key, "taxonomy": tax.id, "n": len(texts), "n_labels_unmapped": len(labels) - len(keep),
                               "pool": pool_info, "user": base, "variants": {}}
        for name, vs in variants(settings).items():
            t0 = time.perf_counter()
            res = enrich_taxonomy(tax, embedder, pool=PromptSet.from_texts(pool), settings=vs, seed=args.seed)
            mine_s = time.perf_counter() - t0
            enr_pred, enr_forced = predict(res.taxonomy, embedder, texts)
            mined = [e for v in res.proposed.values() for e in v]
            enr = scores(gold, enr_pred, enr_forced)
            row["variants"][name] = {
                "mine_s": round(mine_s, 2), "n_mined": len(mined),
                # mined examples that come from the benign Alpaca part of the pool
                "n_mined_from_alpaca": sum(C.norm(e.text) in alp_keys for e in mined),
                "principles_short": {k: len(v) for k, v in res.proposed.items() if len(v) < vs.per_principle},
                "user+mined": enr,
                "delta_macro_f1": round(enr["macro_f1"] - base["macro_f1"], 4),
                "delta_macro_f1_95ci": paired_delta_ci(gold, base_pred, enr_pred, args.seed),
                "delta_forced_macro_f1": round(enr["forced_macro_f1"] - base["forced_macro_f1"], 4),
                "delta_forced_macro_f1_95ci": paired_delta_ci(gold, base_forced, enr_forced, args.seed),
                "mined_examples": {k: [e.text for e in v] for k, v in res.proposed.items()},
            }
            C.log(f"{key} [{name}]: macro-F1 {base['macro_f1']:.3f} → {enr['macro_f1']:.3f}, forced "
                  f"{base['forced_macro_f1']:.3f} → {enr['forced_macro_f1']:.3f}, unanchored "
                  f"{base['unanchored_share']:.1%} → {enr['unanchored_share']:.1%}")
        row.update({k: row["variants"]["default"][k] for k in ("user+mined", "delta_macro_f1", "delta_macro_f1_95ci",
                                                               "delta_forced_macro_f1", "delta_forced_macro_f1_95ci",
                                                               "n_mined", "n_mined_from_alpaca")})
        held.append(row)

    dev: list[dict[str, Any]] = []
    for key, (_src, builtin) in SETS.items():
        if builtin is None:
            continue
        texts, labels = sets[key]
        if args.quick:
            texts, labels = subsample(texts, labels, 60, args.seed)
        tax = load_taxonomy(builtin)
        amap = tax.alias_map()
        keep = [i for i, lab in enumerate(labels) if lab.strip().lower() in amap]
        texts = [texts[i] for i in keep]
        gold = [amap[labels[i].strip().lower()] for i in keep]
        with_p, with_f = predict(tax, embedder, texts)
        without_p, without_f = predict(tax, embedder, texts, use_examples=False)
        w, wo = scores(gold, with_p, with_f), scores(gold, without_p, without_f)
        dev.append({"key": key, "taxonomy": builtin, "n": len(texts), "with_examples": w, "descriptions_only": wo,
                    "delta_macro_f1": round(w["macro_f1"] - wo["macro_f1"], 4)})
        C.log(f"dev {key}: with examples {w['macro_f1']:.3f}, descriptions only {wo['macro_f1']:.3f}")

    C.emit(SCRIPT, args, {
        "embedding_model": embedder.model_id, "per_principle": args.per_principle, "alpaca_in_pool": len(alpaca),
        "near_duplicate_cosine": NEAR_DUP, "enrich_settings": settings.__dict__,
        "held_out": held, "dev": dev,
        "variant_settings": {n: v.__dict__ for n, v in variants(settings).items()},
        **summary(held, dev),
    }, started=started)


if __name__ == "__main__":
    main()

"""What mined examples do to untuned accuracy (``taxonomy enrich``), leave-one-dataset-out; and what written
examples are worth on the built-in taxonomies (the figure ``taxonomy validate`` cites).

**Held-out (the headline).**  For every labelled set S of ``_sets.labelled_sets`` (the accuracy protocol's sets) and
its user taxonomy (``benchmarks/taxonomies/user-<S>.yaml``: a name and one sentence per label, no examples), with the
accuracy protocol's ``user-untuned`` setting: default audit (harm-pool anchored rule + refinement) with the harm pool
leaving out the built-in taxonomy written beside S and the harm threshold refitted without S's group:

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
import _sets as S

SCRIPT = "enrich"
NEAR_DUP = 0.95
#: the prompt source (of :func:`sources`) each labelled group comes from: it never enters that group's pool
SOURCE_OF_GROUP = {"harmbench": "harmbench", "do-not-answer": "do-not-answer", "jailbreakbench": "jailbreakbench",
                   "simplesafetytests": "simplesafetytests", "strongreject": "refusal-direction-harmful"}


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
class Scorer:
    """Assignment as the accuracy protocol's ``user-untuned`` condition runs it (held-out harm pool and threshold)."""

    def __init__(self, embedder: Any, seed: int, exclude: tuple[str, ...] = (), threshold: float | None = None) -> None:
        from data_advisor.coverage.taxonomy import load_background

        self.embedder, self.seed, self.exclude, self.threshold = embedder, seed, exclude, threshold
        self.background = load_background()

    def anchors(self, taxonomy: Any, use_examples: bool = True) -> Any:
        from data_advisor.coverage.assign import build_anchors

        return build_anchors(taxonomy, self.embedder, self.background, use_examples=use_examples,
                             harm_exclude=self.exclude)

    def assigner(self) -> Any:
        from dataclasses import replace

        from data_advisor.coverage.assign import AnchorAssigner
        from data_advisor.coverage.harm import HarmCalibration

        cal = HarmCalibration.load()
        return AnchorAssigner(harm_calibration=cal if self.threshold is None else replace(cal, threshold=self.threshold))

    def predict(self, taxonomy: Any, texts: list[str], *, use_examples: bool = True) -> tuple[list, list]:
        """(anchored prediction or None, forced nearest) per prompt: the audit's assignment stage and refinement."""
        from data_advisor.coverage.audit import AuditSettings, run_audit
        from data_advisor.data import PromptSet

        res = run_audit(PromptSet.from_texts(texts), taxonomy, self.embedder,
                        anchors=self.anchors(taxonomy, use_examples), assigner=self.assigner(),
                        settings=AuditSettings(taxonomy=taxonomy.id, cluster=False, seed=self.seed))
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
def build_pool(group: str, eval_texts: list[str], srcs: dict[str, list[str]], alpaca: list[str], embedder: Any
               ) -> tuple[list[str], dict[str, Any]]:
    own = SOURCE_OF_GROUP[group]
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
    import fit_harm

    from data_advisor.coverage.audit import AuditSettings, run_audit
    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.coverage.enrich import EnrichSettings, mine_from_assignments, with_examples
    from data_advisor.coverage.harm import DEFAULT_TOP_K
    from data_advisor.coverage.taxonomy import load_taxonomy
    from data_advisor.data import PromptSet

    embedder = make_embedder()
    specs = [sp for sp in S.labelled_sets(ds) if sp.user_taxonomy.exists()]
    C.log("harm threshold, leave-one-dataset-out (as accuracy.py)")
    parts = fit_harm.groups(ds, embedder, DEFAULT_TOP_K)
    lodo_thr = {g: fit_harm.fit_threshold([q for q in parts if q["group"] != g]) for g in {q["group"] for q in parts}}
    srcs = sources(ds)
    n_alp = 1000 if args.quick else args.alpaca
    alp_all = C.dedup(C.alpaca(ds))
    alpaca = random.Random(args.seed).sample(alp_all, min(n_alp, len(alp_all)))
    alp_keys = {C.norm(t) for t in alpaca}
    settings = EnrichSettings(per_principle=args.per_principle)
    held: list[dict[str, Any]] = []
    for spec in specs:
        texts, labels = spec.texts, spec.labels
        if args.quick:
            texts, labels = subsample(texts, labels, 60, args.seed)
        tax = load_taxonomy(spec.user_taxonomy)
        amap = tax.alias_map()
        gold = [amap[lab.strip().lower()] for lab in labels]
        scorer = Scorer(embedder, args.seed, exclude=spec.beside, threshold=lodo_thr.get(spec.group))
        C.log(f"{spec.key}: {len(texts)} prompts, building the leave-one-dataset-out pool")
        pool, pool_info = build_pool(spec.group, texts, srcs, alpaca, embedder)
        base_pred, base_forced = scorer.predict(tax, texts)
        base = scores(gold, base_pred, base_forced)
        row: dict[str, Any] = {"key": spec.key, "group": spec.group, "taxonomy": tax.id, "n": len(texts),
                               "harm_pool_excluded": list(spec.beside), "harm_threshold": lodo_thr.get(spec.group),
                               "pool": pool_info, "user": base, "variants": {}}
        # The pool is assigned once, exactly as `enrich_taxonomy` does (the audit without discovery); the variants
        # differ only in which confident prompts they select.
        t0 = time.perf_counter()
        anchors = scorer.anchors(tax)
        pool_audit = run_audit(PromptSet.from_texts(pool), tax, embedder, anchors=anchors, assigner=scorer.assigner(),
                               settings=AuditSettings(taxonomy=tax.id, cluster=False, seed=args.seed))
        assign_s = time.perf_counter() - t0
        row["pool_assign_s"] = round(assign_s, 2)
        for name, vs in variants(settings).items():
            t0 = time.perf_counter()
            proposed = mine_from_assignments(tax, pool, pool_audit.vectors, pool_audit.assignments, anchors, vs)
            mine_s = time.perf_counter() - t0
            enr_pred, enr_forced = scorer.predict(with_examples(tax, proposed), texts)
            mined = [e for v in proposed.values() for e in v]
            enr = scores(gold, enr_pred, enr_forced)
            row["variants"][name] = {
                "mine_s": round(mine_s, 2), "n_mined": len(mined),
                # mined examples that come from the benign Alpaca part of the pool
                "n_mined_from_alpaca": sum(C.norm(e.text) in alp_keys for e in mined),
                "principles_short": {k: len(v) for k, v in proposed.items() if len(v) < vs.per_principle},
                "user+mined": enr,
                "delta_macro_f1": round(enr["macro_f1"] - base["macro_f1"], 4),
                "delta_macro_f1_95ci": paired_delta_ci(gold, base_pred, enr_pred, args.seed),
                "delta_forced_macro_f1": round(enr["forced_macro_f1"] - base["forced_macro_f1"], 4),
                "delta_forced_macro_f1_95ci": paired_delta_ci(gold, base_forced, enr_forced, args.seed),
                "mined_examples": {k: [e.text for e in v] for k, v in proposed.items()},
            }
            C.log(f"{spec.key} [{name}]: macro-F1 {base['macro_f1']:.3f} → {enr['macro_f1']:.3f}, forced "
                  f"{base['forced_macro_f1']:.3f} → {enr['forced_macro_f1']:.3f}, unanchored "
                  f"{base['unanchored_share']:.1%} → {enr['unanchored_share']:.1%}")
        row.update({k: row["variants"]["default"][k] for k in ("user+mined", "delta_macro_f1", "delta_macro_f1_95ci",
                                                               "delta_forced_macro_f1", "delta_forced_macro_f1_95ci",
                                                               "n_mined", "n_mined_from_alpaca")})
        held.append(row)

    dev: list[dict[str, Any]] = []
    shipped = Scorer(embedder, args.seed)  # dev: shipped defaults, nothing held out
    for spec in specs:
        if spec.builtin is None or spec.level != "leaf":
            continue
        texts, labels = spec.texts, spec.labels
        if args.quick:
            texts, labels = subsample(texts, labels, 60, args.seed)
        tax = load_taxonomy(spec.builtin)
        amap = tax.alias_map()
        gold = [amap[lab.strip().lower()] for lab in labels]
        with_p, with_f = shipped.predict(tax, texts)
        without_p, without_f = shipped.predict(tax, texts, use_examples=False)
        w, wo = scores(gold, with_p, with_f), scores(gold, without_p, without_f)
        dev.append({"key": spec.key, "taxonomy": spec.builtin, "n": len(texts), "with_examples": w,
                    "descriptions_only": wo, "delta_macro_f1": round(w["macro_f1"] - wo["macro_f1"], 4),
                    "delta_forced_macro_f1": round(w["forced_macro_f1"] - wo["forced_macro_f1"], 4)})
        C.log(f"dev {spec.key}: with examples {w['macro_f1']:.3f}, descriptions only {wo['macro_f1']:.3f}")

    C.emit(SCRIPT, args, {
        "embedding_model": embedder.model_id, "per_principle": args.per_principle, "alpaca_in_pool": len(alpaca),
        "near_duplicate_cosine": NEAR_DUP, "enrich_settings": settings.__dict__,
        "held_out": held, "dev": dev,
        "variant_settings": {n: v.__dict__ for n, v in variants(settings).items()},
        **summary(held, dev),
    }, started=started)


if __name__ == "__main__":
    main()

"""Reviewer labels (``audit --labels``): how much a few labels buy, and whether the estimates can be trusted.

A simulated reviewer fills ``label`` from the gold labels of every labelled set of ``../shared/datasets``
(``_sets.py``), for the one-sentence user taxonomy of the set (``benchmarks/taxonomies``) and, where one was written
beside the set, the built-in taxonomy (dev: its examples were written beside these prompts).  Picks imitate
``data-advisor review`` at its default size (5 × the number of leaf principles): a uniform random slice (half, at
least ``MIN_RANDOM_SLICE``) and an informative slice (smallest margin, k-center spread, no near-duplicates).

Per set and draw (``--draws``): macro-F1 on the *unreviewed* prompts (unanchored counted wrong) without labels and
with them; the estimate of accuracy on the unreviewed prompts against the truth (inside its 95 % interval? width?);
each anchor's share of all prompts (uncorrected = the audit's counts; corrected = ``estimates.anchors``) against the
gold share, MAE and the share of intervals that contain it.

Harm gate: the share of prompts left unanchored on every all-harmful set (default rule with the base-rate shift and
without it), and F1 of "anchored" vs harmful on mixed sets (each harmful set + 2,000 Alpaca instructions; XSTest),
without labels (shipped boundary vs base-rate boundary) and with labels (benign prompts labelled ``none``).

Chosen on data: the base-rate posterior τ (``base_rate_grid``: F1 per τ on each harmful + Alpaca mix, τ picked
leave-one-dataset-out; the shipped 0.3 is what every fold picked).  The head's weight (3) and the gate's prior width
(2) were chosen on these sets during development (dev figures).  The harm pool leaves out the taxonomy written beside
each set.  ``cost``: a re-audit with cached embeddings through the public API, without and with labels.

    python benchmarks/labels.py             # every set, 3 draws
    python benchmarks/labels.py --quick     # 2 sets, 1 draw
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _sets as S

SCRIPT = "labels"
MIN_RANDOM_SLICE = 30
LABELS_PER_PRINCIPLE = 5


# -------------------------------------------------------------------------------------------- reviewer
def pick(vectors: np.ndarray, margin: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(random slice, informative slice) positions as ``review`` picks them at ``--n n``."""
    rng = np.random.default_rng(seed)
    n_rand = min(len(vectors), max(MIN_RANDOM_SLICE, math.ceil(n / 2)))
    rand = rng.choice(len(vectors), size=n_rand, replace=False)
    n_info = max(0, n - n_rand)
    order = np.argsort(margin, kind="stable")
    cand = order[~np.isin(order, rand)][: 5 * max(n_info, 1)]
    near = (vectors[cand] @ vectors[rand].T).max(axis=1)
    info: list[int] = []
    for _ in range(n_info):
        score = np.where(near < 0.9, near, np.inf)
        if not np.isfinite(score).any():
            break
        j = int(np.argmin(score))
        info.append(int(cand[j]))
        near = np.maximum(near, vectors[cand] @ vectors[cand[j]])
        near[j] = np.inf
    return rand, np.asarray(info, dtype=np.int64)


def make_labels(ids: list[str], gold: list[str], rand: np.ndarray, info: np.ndarray) -> Any:
    from data_advisor.coverage.labels import ReviewLabels

    rows = [(ids[i], gold[i], "random") for i in rand] + [(ids[i], gold[i], "informative") for i in info]
    return ReviewLabels([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], source="simulated")


# -------------------------------------------------------------------------------------------- pipeline
class Audit:
    """The audit's assignment path on fixed vectors (no clustering): gate, base-rate shift, refinement."""

    def __init__(self, embedder: Any) -> None:
        from data_advisor.coverage.taxonomy import load_background

        self.embedder = embedder
        self.background = load_background()
        self._anchors: dict[Any, Any] = {}

    def anchors(self, tax: Any, exclude: tuple[str, ...]) -> Any:
        from data_advisor.coverage.assign import build_anchors

        key = (tax.fingerprint(), exclude)
        if key not in self._anchors:
            self._anchors[key] = build_anchors(tax, self.embedder, self.background, harm_exclude=exclude)
        return self._anchors[key]

    def assign(self, tax: Any, vecs: np.ndarray, exclude: tuple[str, ...], base_rate: bool = True) -> Any:
        from data_advisor.coverage.assign import AnchorAssigner
        from data_advisor.coverage.estimates import adapt_base_rate
        from data_advisor.coverage.refine import refine_assignments

        anchors = self.anchors(tax, exclude)
        a = AnchorAssigner().fit(anchors).assign(vecs)
        if base_rate:
            a = adapt_base_rate(a)
        a, _ = refine_assignments(a, vecs, anchors)
        return a


def macro_f1(gold: list[str], pred: list[str], classes: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=classes, average="macro", zero_division=0))


def run_labelled(audit: Audit, spec: Any, tax: Any, gold: list[str], vecs: np.ndarray, draws: int,
                 seed: int) -> dict[str, Any]:
    from data_advisor.coverage.estimates import apply_labels

    ids = [f"p{i}" for i in range(len(gold))]
    leaf = [p.id for p in tax.leaves()]
    classes = sorted(set(gold))
    base = audit.assign(tax, vecs, spec.beside)
    pred0 = [base.anchor_id(i) or "none" for i in range(len(gold))]
    anchors = audit.anchors(tax, spec.beside)
    n = LABELS_PER_PRINCIPLE * len(leaf)
    gold_share = {c: gold.count(c) / len(gold) for c in [*leaf, "none"]}
    out: list[dict[str, Any]] = []
    for d in range(draws):
        rand, info = pick(vecs, np.asarray(base.margin), n, seed + d)
        labels = make_labels(ids, gold, rand, info)
        t0 = time.perf_counter()
        res = apply_labels(base, vecs, anchors, ids, labels, seed=seed)
        secs = time.perf_counter() - t0
        pred1 = [res.assignments.anchor_id(i) or "none" for i in range(len(gold))]
        un = np.where(~res.reviewed)[0]
        g_un = [gold[i] for i in un]
        truth_acc = float(np.mean([pred1[i] == gold[i] for i in un]))
        est = res.estimates
        row: dict[str, Any] = {
            "draw": d, "n_labels": len(labels), "n_random": len(rand), "seconds_apply": round(secs, 3),
            "macro_f1_unreviewed_no_labels": round(macro_f1(g_un, [pred0[i] for i in un], classes), 4),
            "macro_f1_unreviewed_labels": round(macro_f1(g_un, [pred1[i] for i in un], classes), 4),
            "true_accuracy_unreviewed": round(truth_acc, 4),
            "unanchored_unreviewed_no_labels": round(float(np.mean([pred0[i] == "none" for i in un])), 4),
            "unanchored_unreviewed_labels": round(float(np.mean([pred1[i] == "none" for i in un])), 4),
        }
        if est.get("status") == "estimated":
            lo, hi = est["accuracy"]["ci95"]
            raw = {c: pred1.count(c) / len(gold) for c in gold_share}
            row.update({
                "est_accuracy": round(est["accuracy"]["value"], 4), "acc_ci95": [round(lo, 4), round(hi, 4)],
                "acc_ci_width": round(hi - lo, 4), "acc_ci_contains_truth": bool(lo <= truth_acc <= hi),
                "share_mae_uncorrected": round(float(np.mean([abs(raw[c] - gold_share[c]) for c in gold_share])), 4),
                "share_mae_unlabelled_audit": round(float(np.mean([abs(pred0.count(c) / len(gold) - gold_share[c])
                                                                   for c in gold_share])), 4),
                "share_mae_corrected": round(float(np.mean([abs(est["anchors"][c]["share"] - gold_share[c])
                                                            for c in gold_share])), 4),
                "share_ci_coverage": round(float(np.mean([est["anchors"][c]["ci95"][0] - 1e-9 <= gold_share[c]
                                                          <= est["anchors"][c]["ci95"][1] + 1e-9
                                                          for c in gold_share])), 4),
                "share_ci_mean_width": round(float(np.mean([est["anchors"][c]["ci95"][1] - est["anchors"][c]["ci95"][0]
                                                            for c in gold_share])), 4),
            })
        out.append(row)
    keys = [k for k in out[0] if isinstance(out[0][k], float | bool) and k != "draw"]
    mean = {k: round(float(np.mean([r[k] for r in out if k in r])), 4) for k in keys if all(k in r for r in out)}
    return {"n": len(gold), "n_leaves": len(leaf), "mean": mean, "draws": out}


def f1_harm(anchored: np.ndarray, y: np.ndarray) -> dict[str, float]:
    tp = float((anchored & (y == 1)).sum())
    prec = tp / max(float(anchored.sum()), 1.0)
    rec = tp / max(float((y == 1).sum()), 1.0)
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"f1": round(f1, 4), "precision": round(prec, 4), "recall": round(rec, 4)}


def run_mixed(audit: Audit, b: Any, vecs: np.ndarray, draws: int, seed: int) -> dict[str, Any]:
    from data_advisor.coverage.estimates import apply_labels
    from data_advisor.coverage.taxonomy import load_taxonomy

    tax = load_taxonomy("catqa-11")
    y = np.asarray(b.y)
    shipped = audit.assign(tax, vecs, b.beside, base_rate=False)
    adapted = audit.assign(tax, vecs, b.beside, base_rate=True)
    row: dict[str, Any] = {"n": len(y), "harmful_share": round(float(y.mean()), 4),
                           "shipped": f1_harm(np.asarray(shipped.anchored), y),
                           "base_rate": f1_harm(np.asarray(adapted.anchored), y),
                           "estimated_harmful_share": adapted.settings["base_rate"]["estimated_harmful_share"]}
    # with labels: the reviewer accepts the suggested anchor (or the nearest) for harmful prompts, `none` for benign
    ids = [f"p{i}" for i in range(len(y))]
    gold = [adapted.nearest_id(i) if y[i] else "none" for i in range(len(y))]
    n = LABELS_PER_PRINCIPLE * len(tax.leaves())
    f1s = []
    for d in range(draws):
        rand, info = pick(vecs, np.abs(np.asarray(adapted.harm_relevance)), n, seed + d)
        res = apply_labels(adapted, vecs, audit.anchors(tax, b.beside), ids, make_labels(ids, gold, rand, info))
        un = ~res.reviewed
        f1s.append(f1_harm(np.asarray(res.assignments.anchored)[un], y[un])["f1"])
    row["labels_f1_mean"] = round(float(np.mean(f1s)), 4)
    return row


def cost(ds: Path, seed: int, quick: bool) -> dict[str, Any]:
    """Seconds of a re-audit (embeddings and clusters cached) without and with labels, through the public API with
    default settings (discovery on, HTML off), best of ``repeats``; the ratio is the acceptance number."""
    import json
    import tempfile

    from data_advisor.api import audit

    texts = [t for s in S.labelled_sets(ds)[:2] for t in s.texts] + S.alpaca(ds, "test", 300 if quick else 2000,
                                                                              seed)
    texts = list(dict.fromkeys(texts))
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "prompts.jsonl"
        src.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(texts)), "utf-8")
        audit(src, out=Path(tmp) / "warm", render_html=False)  # fills the embedding and cluster caches
        rows = [json.loads(x) for x in (Path(tmp) / "warm" / "assignments.jsonl").open()]
        rng = np.random.default_rng(seed)
        pick_ = rng.choice(len(rows), size=LABELS_PER_PRINCIPLE * 11, replace=False)
        with (Path(tmp) / "review.jsonl").open("w") as fh:
            for j, i in enumerate(pick_):
                r = rows[i]
                fh.write(json.dumps({"id": r["id"], "text": r["text"], "suggested": r["anchor_id"],
                                     "margin": r["margin"], "why": "random" if j < 30 else "informative",
                                     "label": r["anchor_id"] or "none"}) + "\n")
        times: dict[str, list[float]] = {"unlabelled": [], "labelled": []}
        for _ in range(repeats):
            for kind in times:
                extra = {"labels": Path(tmp) / "review.jsonl"} if kind == "labelled" else {}
                t0 = time.perf_counter()
                audit(src, out=Path(tmp) / kind, render_html=False, **extra)
                times[kind].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    return {"n_prompts": len(texts), "n_labels": len(pick_), "seconds_best": {k: round(v, 3) for k, v in best.items()},
            "ratio_labelled_over_unlabelled": round(best["labelled"] / best["unlabelled"], 3), "repeats": repeats}


def base_rate_grid(audit: Audit, ds: Path, seed: int, quick: bool) -> dict[str, Any]:
    """F1 of anchored vs harmful on each harmful + Alpaca mix for the base-rate posterior τ, and τ picked
    leave-one-dataset-out (the mix of the held-out group scored with the τ best on the others)."""
    from data_advisor.coverage.assign import AnchorAssigner
    from data_advisor.coverage.labelled import MAX_BASE_RATE_SHIFT, estimate_base_rate, logit
    from data_advisor.coverage.taxonomy import load_taxonomy

    taus = [0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5]
    tax = load_taxonomy("catqa-11")
    per: dict[str, Any] = {}
    for b in S.binary_sets(ds, n_alpaca=300 if quick else 2000, seed=seed):
        if "+alpaca" not in b.key:
            continue
        vecs = audit.embedder.encode(b.texts)
        a = AnchorAssigner().fit(audit.anchors(tax, b.beside)).assign(vecs)
        y = np.asarray(b.y)
        pi = estimate_base_rate(a.harm_score)
        scale = float(a.settings["harm_scale"])
        f1s = []
        for t in taus:
            shift = min(max(-logit(pi) + logit(t), 0.0), MAX_BASE_RATE_SHIFT) * scale
            f1s.append(f1_harm(np.asarray(a.harm_relevance) >= shift, y)["f1"])
        per[b.key] = {"group": b.group, "f1_by_tau": dict(zip(map(str, taus), f1s, strict=True)),
                      "shipped_f1": f1_harm(np.asarray(a.anchored), y)["f1"]}
    lodo = {}
    for key, row in per.items():
        others = [r for k, r in per.items() if r["group"] != row["group"]]
        best = max(taus, key=lambda t: float(np.mean([r["f1_by_tau"][str(t)] for r in others])))
        lodo[key] = {"tau": best, "f1": row["f1_by_tau"][str(best)], "shipped_f1": row["shipped_f1"]}
    return {"taus": taus, "per_set": per, "lodo": lodo,
            "lodo_mean_f1": round(float(np.mean([r["f1"] for r in lodo.values()])), 4),
            "shipped_mean_f1": round(float(np.mean([r["shipped_f1"] for r in lodo.values()])), 4)}


def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--draws", type=int, default=3, help="reviewer simulations per set")
    args = p.parse_args()
    ds = C.require_datasets(args.datasets)
    started = time.perf_counter()
    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.coverage.taxonomy import load_taxonomy

    draws = 1 if args.quick else args.draws
    audit = Audit(make_embedder())
    sets = S.labelled_sets(ds)[:2] if args.quick else S.labelled_sets(ds)
    labelled: list[dict[str, Any]] = []
    unanchored: list[dict[str, Any]] = []
    for spec in sets:
        vecs = audit.embedder.encode(spec.texts)
        for kind, tax, gold in S.taxonomy_runs(spec):
            C.log(f"{spec.key} {kind}: {len(gold)} prompts")
            r = run_labelled(audit, spec, tax, gold, vecs, draws, args.seed)  # type: ignore[arg-type]
            labelled.append({"set": spec.key, "taxonomy": kind, "taxonomy_id": tax.id, **r})
        if spec.level == "leaf":
            tax = load_taxonomy("catqa-11")
            for br in (True, False):
                a = audit.assign(tax, vecs, spec.beside, base_rate=br)
                unanchored.append({"set": spec.key, "base_rate": br,
                                   "unanchored_share": round(float(1 - np.mean(a.anchored)), 4)})
    mixed: list[dict[str, Any]] = []
    for b in S.binary_sets(ds, n_alpaca=300 if args.quick else 2000, seed=args.seed):
        if args.quick and b.key not in ("xstest", "harmbench-6+alpaca"):
            continue
        C.log(f"mixed {b.key}")
        mixed.append({"set": b.key, **run_mixed(audit, b, audit.embedder.encode(b.texts), draws, args.seed)})
    C.log("base-rate posterior, leave-one-dataset-out")
    grid = base_rate_grid(audit, ds, args.seed, args.quick)
    C.log("cost of a labelled re-audit")
    cost_row = cost(ds, args.seed, args.quick)
    C.emit(SCRIPT, args, {"labelled": labelled, "unanchored_all_harmful": unanchored, "mixed": mixed,
                          "base_rate_grid": grid, "cost": cost_row,
                          "labels_per_principle": LABELS_PER_PRINCIPLE, "min_random_slice": MIN_RANDOM_SLICE},
           started=started)


if __name__ == "__main__":
    main()

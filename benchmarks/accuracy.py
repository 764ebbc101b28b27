"""Anchor-assignment accuracy, measured the way a new user meets the product: on every labelled set of
``../shared/datasets``, with a taxonomy written from the set's label names (one sentence each, no examples), with
default settings.  Anything chosen on data is scored leave-one-dataset-out.

Labelled sets (``_sets.py``): HarmBench 6 semantic categories (copyright excluded), Do-Not-Answer 12 types of harm and
5 risk areas, JailbreakBench 10, SimpleSafetyTests 5, and the 6 StrongREJECT categories inside refusal-direction
harmful_test.  User taxonomies: ``benchmarks/taxonomies/user-<set>.yaml``, written from the label names only.

Conditions per set (input = the set's prompts, audited as one prompt set):

* ``user-untuned`` — **headline.** User taxonomy, default settings (harm-pool anchored rule + refinement), with the
  two things chosen on data held out: the harm pool leaves out the built-in taxonomy whose examples were written
  beside this set, and the harm threshold is refitted (benchmarks/fit_harm.py rule) without this set's group.
* ``user-untuned-mixed`` — the same with 1,000 Alpaca instructions mixed into the input (scored on the labelled rows):
  refinement and the anchored rule on a realistic mixed set.
* ``user-no-refine`` — the headline without refinement (``--no-refine``).
* ``user-refine-lodo`` — refinement knobs re-picked on the other groups from a small grid (leave-one-dataset-out).
* ``user-shipped`` — shipped defaults as a user runs them (full harm pool, shipped threshold; dev: the pool holds
  text written beside these sets).
* ``user-legacy`` — the previous rule (best taxonomy score vs best background score, no refinement): the "before".
* ``builtin-dev`` / ``builtin-dev-no-refine`` — the built-in taxonomy of the set (dev: its examples were written
  beside this set; not a measure of unseen data).

Metrics: macro-F1 with unanchored prompts counted wrong (``macro_f1``), forced-nearest macro-F1 (``forced_macro_f1``),
share of (harmful) prompts left unanchored, accuracy; bootstrap 95% intervals for the headline.

Separation: harm-vs-benign AUROC of ``harm_score`` on XSTest (unsafe vs safe), JailbreakBench (harmful vs benign
twins) and each harmful set vs Alpaca instructions (refusal-direction harmless_test), with the pool written beside the
set held out; the previous ``relevance`` (catqa-11 + background) beside it.

Cost: seconds of harm scoring and of refinement at 10k and 100k prompt vectors (real vectors of the shared sets,
resampled with small noise), as ratios of one run.

    python benchmarks/accuracy.py
    python benchmarks/accuracy.py --quick     # 60 prompts per set, 300 Alpaca, no 100k timing
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _sets as S

SCRIPT = "accuracy"
REFINE_GRID = {"anchor_weight": [0.3, 0.5], "score_weight": [0.0, 0.5], "alpha": [0.3, 0.5, 0.8],
               "temperature": [0.02, 0.05, 0.1]}


# ------------------------------------------------------------------------------------------------ data
def subsample(texts: list[str], labels: list[str], k: int, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic round-robin subsample over labels (for --quick)."""
    if len(texts) <= k:
        return texts, labels
    by: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by.setdefault(lab, []).append(i)
    rng = random.Random(seed)
    for v in by.values():
        rng.shuffle(v)
    picks: list[int] = []
    while len(picks) < k:
        for lab in sorted(by):
            if by[lab] and len(picks) < k:
                picks.append(by[lab].pop())
    picks.sort()
    return [texts[i] for i in picks], [labels[i] for i in picks]


# --------------------------------------------------------------------------------------------- scoring
def score(gold: list[str], pred: list[str | None], nearest: list[str]) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    classes = sorted(set(gold))
    p = [x if x is not None else "__unanchored__" for x in pred]
    return {
        "macro_f1": round(float(f1_score(gold, p, labels=classes, average="macro", zero_division=0)), 4),
        "forced_macro_f1": round(float(f1_score(gold, nearest, labels=classes, average="macro", zero_division=0)), 4),
        "accuracy": round(float(np.mean([a == b for a, b in zip(gold, p, strict=True)])), 4),
        "unanchored_share": round(float(np.mean([x is None for x in pred])), 4),
        "n": len(gold),
    }


def bootstrap_ci(gold: list[str], pred: list[str | None], seed: int, n_boot: int = 500) -> list[float]:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    g = np.asarray(gold, dtype=object)
    p = np.asarray([x if x is not None else "__unanchored__" for x in pred], dtype=object)
    classes = sorted(set(gold))
    f1s = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(g), len(g))
        f1s.append(float(f1_score(list(g[idx]), list(p[idx]), labels=classes, average="macro", zero_division=0)))
    return [round(float(np.percentile(f1s, 2.5)), 4), round(float(np.percentile(f1s, 97.5)), 4)]


def roll_up(tax: Any, pid: str | None) -> str | None:
    if pid is None:
        return None
    anc = tax.ancestors(pid)
    return anc[-1] if anc else pid


# ------------------------------------------------------------------------------------------- predictions
class Runner:
    """Builds anchors once per (taxonomy, pool exclusion) and runs assignment (+ refinement) on vectors."""

    def __init__(self, embedder: Any, seed: int) -> None:
        from data_advisor.coverage.taxonomy import load_background

        self.embedder = embedder
        self.seed = seed
        self.background = load_background()
        self._anchors: dict[tuple[str, tuple[str, ...], bool], Any] = {}

    def anchors(self, tax: Any, exclude: tuple[str, ...], harm_pool: bool = True) -> Any:
        from data_advisor.coverage.assign import build_anchors

        key = (tax.fingerprint(), exclude, harm_pool)
        if key not in self._anchors:
            self._anchors[key] = build_anchors(tax, self.embedder, self.background, harm_pool=harm_pool,
                                               harm_exclude=exclude)
        return self._anchors[key]

    def predict(self, tax: Any, vecs: np.ndarray, *, exclude: tuple[str, ...] = (), threshold: float | None = None,
                refine: bool = True, harm_pool: bool = True, refine_settings: Any = None) -> Any:
        from data_advisor.coverage.assign import AnchorAssigner
        from data_advisor.coverage.harm import HarmCalibration
        from data_advisor.coverage.refine import refine_assignments

        cal = HarmCalibration.load()
        if threshold is not None:
            cal = replace(cal, threshold=threshold)
        anchors = self.anchors(tax, exclude, harm_pool)
        a = AnchorAssigner(harm_calibration=cal).fit(anchors).assign(vecs)
        if refine:
            a, _ = refine_assignments(a, vecs, anchors, seed=self.seed, settings=refine_settings)
        return a


def labels_of(a: Any, tax: Any, level: str) -> tuple[list[str | None], list[str]]:
    anchored = [a.anchor_id(i) for i in range(len(a))]
    nearest = [a.nearest_id(i) for i in range(len(a))]
    if level == "root":
        return [roll_up(tax, x) for x in anchored], [roll_up(tax, x) or "" for x in nearest]
    return anchored, nearest


class Condition:
    """Runs one condition on a set's vectors and records its scores under its name."""

    def __init__(self, runner: Runner, vecs: np.ndarray, conds: dict[str, Any]) -> None:
        self.runner, self.vecs, self.conds = runner, vecs, conds

    def __call__(self, name: str, tax: Any, level: str, gold: list[str], **kw: Any) -> Any:
        a = self.runner.predict(tax, self.vecs, **kw)
        self.conds[name] = score(gold, *labels_of(a, tax, level))
        info = a.settings.get("refine")
        if isinstance(info, dict):
            self.conds[name]["refine_moved_share"] = info.get("moved_share")
            self.conds[name]["refine_fell_back"] = info.get("fell_back")
        return a


def refine_grid() -> list[dict[str, float]]:
    keys = list(REFINE_GRID)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*REFINE_GRID.values())]


# ------------------------------------------------------------------------------------------- separation
def separation(ds: Path, embedder: Any, runner: Runner, lodo_thr: dict[str, float], seed: int,
               quick: bool) -> list[dict[str, Any]]:
    from sklearn.metrics import roc_auc_score

    from data_advisor.coverage.assign import AnchorAssigner, build_anchors
    from data_advisor.coverage.taxonomy import load_taxonomy

    catqa = load_taxonomy("catqa-11")
    legacy = AnchorAssigner().fit(build_anchors(catqa, embedder, runner.background, harm_pool=False))
    rows = []
    for b in S.binary_sets(ds, n_alpaca=300 if quick else 2000, seed=seed):
        texts, y = b.texts, b.y
        if quick:
            t2, y2 = subsample(texts, [str(v) for v in y], 160, seed)
            texts, y = t2, [int(v) for v in y2]
        vecs = embedder.encode(texts)
        a = runner.predict(catqa, vecs, exclude=b.beside, threshold=lodo_thr.get(b.group), refine=False)
        shipped = runner.predict(catqa, vecs, refine=False)
        old = legacy.assign(vecs)
        yy = np.asarray(y)
        rows.append({
            "key": b.key, "n_harmful": int(yy.sum()), "n_benign": int((1 - yy).sum()),
            "auroc_harm_score": round(float(roc_auc_score(yy, a.harm_score)), 4),
            "auroc_harm_score_shipped_pool": round(float(roc_auc_score(yy, shipped.harm_score)), 4),
            "auroc_legacy_relevance_catqa": round(float(roc_auc_score(yy, old.relevance)), 4),
            "harmful_anchored_share": round(float(a.anchored[yy == 1].mean()), 4),
            "benign_anchored_share": round(float(a.anchored[yy == 0].mean()), 4),
            "pool_excluded": list(b.beside), "threshold": lodo_thr.get(b.group),
        })
        C.log(f"separation {b.key}: AUROC {rows[-1]['auroc_harm_score']} (legacy {rows[-1]['auroc_legacy_relevance_catqa']})")
    return rows


# ------------------------------------------------------------------------------------------------- cost
def cost(embedder: Any, runner: Runner, sizes: list[int], seed: int, ds: Path) -> list[dict[str, Any]]:
    """Seconds of harm scoring and refinement at each size (real vectors resampled with noise)."""
    from data_advisor.coverage.assign import AnchorAssigner
    from data_advisor.coverage.refine import refine_assignments
    from data_advisor.coverage.taxonomy import load_taxonomy

    base = np.concatenate([embedder.encode(s.texts) for s in S.labelled_sets(ds) if s.level == "leaf"]
                          + [embedder.encode(S.alpaca(ds, "test", 2000, seed))])
    tax = load_taxonomy("catqa-11")
    anchors = runner.anchors(tax, ())
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        x = base[rng.integers(0, len(base), n)] + rng.normal(0, 0.02, (n, base.shape[1])).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        with C.Timer() as t_assign:
            a = AnchorAssigner().fit(anchors).assign(x)
        legacy_anchors = runner.anchors(tax, (), harm_pool=False)
        with C.Timer() as t_legacy:
            AnchorAssigner().fit(legacy_anchors).assign(x)
        with C.Timer() as t_ref:
            _, info = refine_assignments(a, x, anchors, seed=seed)
        out.append({"n": n, "assign_s": round(t_assign.s, 3), "assign_legacy_s": round(t_legacy.s, 3),
                    "refine_s": round(t_ref.s, 3), "refine_cpu_s": round(t_ref.cpu, 3), "graph": info.graph,
                    "moved_share": info.moved_share, "fell_back": info.fell_back})
        C.log(f"cost n={n}: assign {t_assign.s:.2f}s (legacy {t_legacy.s:.2f}s), refine {t_ref.s:.2f}s ({info.graph})")
    return out


# -------------------------------------------------------------------------------------------------- main
def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--no-cost", action="store_true", help="skip the 10k/100k timing")
    args = p.parse_args()
    ds = C.require_datasets(args.datasets)
    started = time.perf_counter()

    import fit_harm

    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.coverage.harm import DEFAULT_TOP_K, HarmCalibration
    from data_advisor.coverage.refine import RefineSettings
    from data_advisor.coverage.taxonomy import load_taxonomy

    embedder = make_embedder()
    runner = Runner(embedder, args.seed)
    C.log("harm threshold, leave-one-dataset-out")
    parts = fit_harm.groups(ds, embedder, DEFAULT_TOP_K)
    lodo_thr = {g: fit_harm.fit_threshold([q for q in parts if q["group"] != g]) for g in {q["group"] for q in parts}}

    alp = S.alpaca(ds, "test", 300 if args.quick else 1000, args.seed)
    alp_vecs = embedder.encode(alp)
    prepared = []
    for spec in S.labelled_sets(ds):
        texts, raw = spec.texts, spec.labels
        if args.quick:
            texts, raw = subsample(texts, raw, 60, args.seed)
        prepared.append((spec, texts, raw, embedder.encode(texts)))

    # refinement knobs, leave-one-dataset-out: forced-F1 gain over no refinement on the other groups
    C.log("refinement grid")
    grid = refine_grid()
    gains: dict[str, list[float]] = {}  # set key -> gain per grid point
    for spec, _texts, raw, vecs in prepared:
        tax = load_taxonomy(spec.user_taxonomy)
        amap = tax.alias_map()
        gold = [amap[lab.strip().lower()] for lab in raw]
        kw = {"exclude": spec.beside, "threshold": lodo_thr[spec.group]}
        base = score(gold, *labels_of(runner.predict(tax, vecs, refine=False, **kw), tax, "leaf"))["forced_macro_f1"]
        gains[spec.key] = [
            score(gold, *labels_of(runner.predict(tax, vecs, refine_settings=RefineSettings(**g), **kw), tax,
                                   "leaf"))["forced_macro_f1"] - base for g in grid]

    results: list[dict[str, Any]] = []
    for spec, texts, raw, vecs in prepared:
        user = load_taxonomy(spec.user_taxonomy)
        amap = user.alias_map()
        gold = [amap[lab.strip().lower()] for lab in raw]
        thr = lodo_thr[spec.group]
        C.log(f"{spec.key}: {len(texts)} prompts, {len(set(gold))} classes")
        conds: dict[str, Any] = {}
        run = Condition(runner, vecs, conds)
        head = run("user-untuned", user, "leaf", gold, exclude=spec.beside, threshold=thr)
        conds["user-untuned"]["macro_f1_95ci"] = bootstrap_ci(gold, labels_of(head, user, "leaf")[0], args.seed)
        # mixed with Alpaca: the labelled rows are scored
        mixed_vecs = np.concatenate([vecs, alp_vecs])
        m = runner.predict(user, mixed_vecs, exclude=spec.beside, threshold=thr)
        pred_m, near_m = labels_of(m, user, "leaf")
        conds["user-untuned-mixed"] = {**score(gold, pred_m[: len(gold)], near_m[: len(gold)]),
                                       "alpaca_anchored_share": round(float(m.anchored[len(gold):].mean()), 4),
                                       "n_alpaca": len(alp)}
        run("user-no-refine", user, "leaf", gold, exclude=spec.beside, threshold=thr, refine=False)
        others = [k for k, sp in ((sp.key, sp) for sp, *_ in prepared) if sp.group != spec.group]
        mean_gain = [float(np.mean([gains[k][i] for k in others])) for i in range(len(grid))]
        pick = grid[int(np.argmax(mean_gain))]
        run("user-refine-lodo", user, "leaf", gold, exclude=spec.beside, threshold=thr,
            refine_settings=RefineSettings(**pick))
        conds["user-refine-lodo"]["knobs"] = pick
        run("user-shipped", user, "leaf", gold)
        run("user-legacy", user, "leaf", gold, refine=False, harm_pool=False)
        if spec.builtin:
            btax = load_taxonomy(spec.builtin)
            bmap = btax.alias_map()
            bgold_all = [bmap.get(lab.strip().lower()) for lab in raw]
            if all(g is not None for g in bgold_all):
                bgold: list[str] = [g for g in bgold_all if g is not None]
                run("builtin-dev", btax, spec.level, bgold)
                run("builtin-dev-no-refine", btax, spec.level, bgold, refine=False)
                conds["builtin-dev"]["taxonomy"] = btax.id
        results.append({
            "key": spec.key, "dataset": spec.dataset, "group": spec.group, "n": len(texts),
            "n_classes": len(set(gold)), "class_counts": dict(sorted(Counter(gold).items())),
            "majority_class_accuracy": round(Counter(gold).most_common(1)[0][1] / len(gold), 4),
            "user_taxonomy": str(spec.user_taxonomy.relative_to(C.REPO)), "harm_pool_excluded": list(spec.beside),
            "harm_threshold_lodo": thr, "conditions": conds,
        })

    C.log("benign/harmful separation")
    sep = separation(ds, embedder, runner, lodo_thr, args.seed, args.quick)
    costs = [] if args.no_cost else cost(embedder, runner, [10_000] if args.quick else [10_000, 100_000], args.seed, ds)
    head_rows = [r["conditions"]["user-untuned"] for r in results]
    C.emit(SCRIPT, args, {
        "embedding_model": embedder.model_id,
        "harm_calibration_shipped": HarmCalibration.load().__dict__,
        "harm_threshold_lodo": dict(sorted(lodo_thr.items())),
        "refine_defaults": RefineSettings().__dict__,
        "refine_grid": REFINE_GRID,
        "summary": {
            "user_untuned_macro_f1_mean": round(float(np.mean([c["macro_f1"] for c in head_rows])), 4),
            "user_untuned_unanchored_mean": round(float(np.mean([c["unanchored_share"] for c in head_rows])), 4),
            "auroc_mean": round(float(np.mean([s["auroc_harm_score"] for s in sep])), 4),
            "auroc_min": round(float(np.min([s["auroc_harm_score"] for s in sep])), 4),
        },
        "sets": results,
        "separation": sep,
        "cost": costs,
    }, started=started)


if __name__ == "__main__":
    main()

"""The review loop end to end: ``review`` picks, a simulated reviewer labels from gold, ``audit --labels`` learns.

On every labelled set of ``../shared/datasets`` (``_sets.py``), with the one-sentence user taxonomy written from the
set's label names (``benchmarks/taxonomies``; headline) and, where one was written beside the set, its built-in
taxonomy (dev: its examples were written beside these prompts).  The audit's assignment path runs on the set's cached
vectors exactly as ``audit`` runs it (harm gate with the base-rate boundary, refinement), with the two things chosen
on data held out as ``accuracy.py`` holds them out: the harm pool leaves out the built-in taxonomy written beside the
set and the harm threshold is refitted without the set's group.  The picks are ``review``'s own
(``coverage.review_pick.pick_for_review``, no clusters: the benchmark skips discovery), the learning and the
estimates ``audit --labels``'s own (``coverage.estimates.apply_labels``).

Measured per set, taxonomy and draw:

* macro-F1 on the *unreviewed* prompts (unanchored counted wrong) against labels per principle (0, 2, 5, 10), for
  ``review``'s picks (random slice + informative slice) and for an all-random budget of the same size;
* the accuracy estimate (``estimates.accuracy``) against the true accuracy on the unreviewed prompts: error, whether
  its 95 % interval holds the truth, its width;
* each anchor's share of all prompts (plus ``none``) against the gold share: mean absolute error without labels, of
  the labelled audit's raw counts (uncorrected) and of ``estimates.anchors`` (corrected); how many corrected 95 %
  intervals hold the gold share.

The random/informative split of ``review`` is chosen on these sets leave-one-dataset-out: for each held-out group,
among the candidate splits whose accuracy interval is ≤ 0.35 wide on average over the other groups, the one with the
best macro-F1 there; the held-out set is scored with it (``split_lodo``).

    nice -n 10 python benchmarks/review_loop.py            # every set, 5 draws (~5 min on 2 busy cores)
    nice -n 10 python benchmarks/review_loop.py --quick    # 2 sets, 1 draw
    nice -n 10 python benchmarks/review_loop.py --cli      # the real commands on 5 (set, taxonomy) pairs
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _sets as S

SCRIPT = "review_loop"
BUDGETS = (0, 2, 5, 10)
#: Candidate splits of ``review``'s default budget: (random_min, random_share).  "30/0.5" is what ships.
SPLITS = {"30/0.5": (30, 0.5), "30/0.75": (30, 0.75), "20/0.4": (20, 0.4)}
WIDTH_LIMIT = 0.35
#: A budget that would label more than this share of a set is skipped (its unreviewed rest is too small to score).
MAX_LABELLED_SHARE = 0.6


class Pipeline:
    """``audit``'s assignment path on fixed vectors: gate (LODO threshold, pool without the set's own taxonomy),
    base-rate boundary, refinement."""

    def __init__(self, embedder: Any, lodo_thr: dict[str, float]) -> None:
        from data_advisor.coverage.taxonomy import load_background

        self.embedder, self.lodo_thr = embedder, lodo_thr
        self.background = load_background()
        self._anchors: dict[Any, Any] = {}

    def anchors(self, tax: Any, exclude: tuple[str, ...]) -> Any:
        from data_advisor.coverage.assign import build_anchors

        key = (tax.fingerprint(), exclude)
        if key not in self._anchors:
            self._anchors[key] = build_anchors(tax, self.embedder, self.background, harm_exclude=exclude)
        return self._anchors[key]

    def assign(self, tax: Any, vecs: np.ndarray, spec: Any) -> Any:
        from data_advisor.coverage.assign import AnchorAssigner
        from data_advisor.coverage.estimates import adapt_base_rate
        from data_advisor.coverage.harm import HarmCalibration
        from data_advisor.coverage.refine import refine_assignments

        cal = replace(HarmCalibration.load(), threshold=self.lodo_thr[spec.group])
        anchors = self.anchors(tax, spec.beside)
        a = adapt_base_rate(AnchorAssigner(harm_calibration=cal).fit(anchors).assign(vecs))
        a, _ = refine_assignments(a, vecs, anchors)
        return a


def macro_f1(gold: list[str], pred: list[str], classes: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=classes, average="macro", zero_division=0))


def one_run(pipe: Pipeline, base: Any, anchors: Any, vecs: np.ndarray, gold: list[str], leaf: list[str], n: int,
            seed: int, strategy: str, split: tuple[int, float]) -> dict[str, Any]:
    """Pick ``n`` prompts as ``review`` would, label them from gold, apply them as ``audit --labels`` does."""
    from data_advisor.coverage.estimates import apply_labels
    from data_advisor.coverage.labels import ReviewLabels
    from data_advisor.coverage.review_pick import pick_for_review

    ids = [f"p{i}" for i in range(len(gold))]
    suggested = [base.anchor_id(i) for i in range(len(gold))]
    pick = pick_for_review(n, margin=np.asarray(base.margin), anchors=suggested, harm_score=base.harm_score,
                           vectors=vecs, seed=seed, strategy=strategy, random_min=split[0], random_share=split[1])
    order = pick.order()
    labels = ReviewLabels([ids[i] for i, _ in order], [gold[i] for i, _ in order], [w for _, w in order],
                          source="simulated reviewer (gold labels)")
    t0 = time.perf_counter()
    res = apply_labels(base, vecs, anchors, ids, labels, seed=seed)
    secs = time.perf_counter() - t0
    pred1 = [res.assignments.anchor_id(i) or "none" for i in range(len(gold))]
    un = np.flatnonzero(~res.reviewed)
    truth = float(np.mean([pred1[i] == gold[i] for i in un])) if len(un) else float("nan")
    classes = sorted(set(gold))
    row: dict[str, Any] = {
        "n_labels": len(order), "n_random": len(pick.random), "n_informative": len(pick.informative),
        "apply_s": round(secs, 3),
        "macro_f1_unreviewed": round(macro_f1([gold[i] for i in un], [pred1[i] for i in un], classes), 4),
        "true_accuracy_unreviewed": round(truth, 4),
        "labels_per_anchor_min": int(min(sum(1 for i, _ in order if gold[i] == c) for c in classes)),
    }
    est = res.estimates
    if isinstance(est, dict) and est.get("status") == "estimated":
        gold_share = {c: gold.count(c) / len(gold) for c in [*leaf, "none"]}
        raw = {c: pred1.count(c) / len(gold) for c in gold_share}
        lo, hi = est["accuracy"]["ci95"]
        cover = [est["anchors"][c]["ci95"][0] - 1e-9 <= gold_share[c] <= est["anchors"][c]["ci95"][1] + 1e-9
                 for c in gold_share]
        row.update({
            "est_accuracy": round(est["accuracy"]["value"], 4), "acc_error": round(est["accuracy"]["value"] - truth, 4),
            "acc_ci95": [round(lo, 4), round(hi, 4)], "acc_ci_width": round(hi - lo, 4),
            "acc_ci_contains_truth": bool(lo <= truth <= hi),
            "share_mae_uncorrected": round(float(np.mean([abs(raw[c] - gold_share[c]) for c in gold_share])), 4),
            "share_mae_corrected": round(float(np.mean([abs(est["anchors"][c]["share"] - gold_share[c])
                                                        for c in gold_share])), 4),
            "share_ci_coverage": round(float(np.mean(cover)), 4),
        })
    return row


def mean_of(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k in rows[0] if isinstance(rows[0][k], int | float | bool) and all(k in r for r in rows)]
    return {k: round(float(np.mean([float(r[k]) for r in rows])), 4) for k in keys}


def run_combo(pipe: Pipeline, spec: Any, tax: Any, gold: list[str], vecs: np.ndarray, draws: int,
              seed: int) -> dict[str, Any]:
    from data_advisor.coverage.review_pick import PER_PRINCIPLE, RANDOM_MIN, RANDOM_SHARE, split_budget

    base = pipe.assign(tax, vecs, spec)
    anchors = pipe.anchors(tax, spec.beside)
    leaf = [p.id for p in tax.leaves()]
    classes = sorted(set(gold))
    pred0 = [base.anchor_id(i) or "none" for i in range(len(gold))]
    gold_share = {c: gold.count(c) / len(gold) for c in [*leaf, "none"]}
    out: dict[str, Any] = {
        "n": len(gold), "n_leaves": len(leaf),
        "no_labels": {"macro_f1": round(macro_f1(gold, pred0, classes), 4),
                      "accuracy": round(float(np.mean([a == b for a, b in zip(pred0, gold, strict=True)])), 4),
                      "share_mae": round(float(np.mean([abs(pred0.count(c) / len(gold) - gold_share[c])
                                                        for c in gold_share])), 4)},
        "curves": {}, "splits": {},
    }
    shipped = (RANDOM_MIN, RANDOM_SHARE)
    done: dict[tuple[int, int, int], dict[str, Any]] = {}

    def run(n: int, d: int, strategy: str, split: tuple[int, float]) -> dict[str, Any]:
        """One simulation; picks that come out the same (no informative slice left: all random) are run once."""
        n_rand, n_info = (n, 0) if strategy == "random" else split_budget(n, random_min=split[0],
                                                                            random_share=split[1])
        key = (n_rand, n_info, d)
        if key not in done:
            done[key] = one_run(pipe, base, anchors, vecs, gold, leaf, n, seed + d, strategy, split)
        return done[key]

    for strategy in ("informative", "random"):
        curve = {}
        for b in BUDGETS[1:]:
            if b * len(leaf) > MAX_LABELLED_SHARE * len(gold):  # too few prompts would stay unreviewed
                curve[str(b)] = {"skipped": f"{b * len(leaf)} labels of {len(gold)} prompts"}
                continue
            rows = [run(b * len(leaf), d, strategy, shipped) for d in range(draws)]
            curve[str(b)] = {"mean": mean_of(rows), "draws": rows}
        out["curves"][strategy] = curve
    n_default = PER_PRINCIPLE * len(leaf)
    for name, split in SPLITS.items():
        rows = [run(n_default, d, "informative", split) for d in range(draws)]
        out["splits"][name] = mean_of(rows)
    return out


def lodo_split(results: list[dict[str, Any]]) -> None:
    """For each result, the split chosen on the other groups (width ≤ limit on average there, best macro-F1)."""
    for r in results:
        others = [o for o in results if o["group"] != r["group"] and o["taxonomy"] == r["taxonomy"]]
        best, best_f1 = None, -1.0
        for name in SPLITS:
            rows = [o["splits"][name] for o in others]
            widths = [x["acc_ci_width"] for x in rows if "acc_ci_width" in x]
            f1 = float(np.mean([x["macro_f1_unreviewed"] for x in rows])) if rows else 0.0
            if widths and float(np.mean(widths)) <= WIDTH_LIMIT and f1 > best_f1:
                best, best_f1 = name, f1
        r["split_lodo"] = {"chosen": best, "held_out": r["splits"].get(best) if best else None}


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    from data_advisor.coverage.review_pick import PER_PRINCIPLE

    d = str(PER_PRINCIPLE)
    out: dict[str, Any] = {}
    for kind in ("user", "builtin-dev"):
        rs = [r for r in results if r["taxonomy"] == kind]
        if not rs:
            continue
        at_default = [r["curves"]["informative"][d]["mean"] for r in rs]
        est = [x for x in at_default if "acc_ci_width" in x]
        def at(r: dict[str, Any], s: str, b: str) -> float | None:
            if b == "0":
                return r["no_labels"]["macro_f1"]
            c = r["curves"][s][b]
            return c["mean"]["macro_f1_unreviewed"] if "mean" in c else None

        # mean over the sets every budget could be run on (a skipped budget leaves its set out of every column)
        full = [r for r in rs if all(at(r, "random", b) is not None for b in map(str, BUDGETS))]
        curve = {s: {b: round(float(np.mean([at(r, s, b) for r in full])), 4) for b in map(str, BUDGETS)}
                 for s in ("informative", "random")} if full else {}
        curve_sets = [r["set"] for r in full]
        out[kind] = {
            "macro_f1_by_budget": curve, "macro_f1_by_budget_sets": curve_sets,
            "default_n": {r["set"]: {"macro_f1_no_labels": r["no_labels"]["macro_f1"],
                                     "macro_f1_unreviewed": r["curves"]["informative"][d]["mean"]["macro_f1_unreviewed"],
                                     "n_leaves": r["n_leaves"]} for r in rs},
            "acc_ci_contains_truth_sets": sum(1 for x in est if x["acc_ci_contains_truth"] >= 0.5),
            "acc_ci_contains_truth_rate": round(float(np.mean([x["acc_ci_contains_truth"] for x in est])), 4)
            if est else None,
            "n_sets_estimated": len(est),
            "acc_ci_width_mean": round(float(np.mean([x["acc_ci_width"] for x in est])), 4) if est else None,
            "acc_ci_width_max": round(float(np.max([x["acc_ci_width"] for x in est])), 4) if est else None,
            "acc_abs_error_mean": round(float(np.mean([abs(x["acc_error"]) for x in est])), 4) if est else None,
            "share_mae_no_labels": round(float(np.mean([r["no_labels"]["share_mae"] for r in rs])), 4),
            "share_mae_uncorrected": round(float(np.mean([x["share_mae_uncorrected"] for x in est])), 4)
            if est else None,
            "share_mae_corrected": round(float(np.mean([x["share_mae_corrected"] for x in est])), 4) if est else None,
            "share_ci_coverage": round(float(np.mean([x["share_ci_coverage"] for x in est])), 4) if est else None,
            "split_lodo": {r["set"]: r["split_lodo"]["chosen"] for r in rs},
            "macro_f1_split_lodo": round(float(np.mean([r["split_lodo"]["held_out"]["macro_f1_unreviewed"]
                                                        for r in rs if r["split_lodo"]["held_out"]])), 4)
            if any(r["split_lodo"]["held_out"] for r in rs) else None,
        }
    return out


#: ``--cli``: (set, taxonomy kind) run through the real commands, as the acceptance check runs them.
CLI_RUNS = (("do-not-answer-12", "user"), ("harmbench-6", "user"), ("strongreject-6", "user"),
            ("do-not-answer-5", "user"), ("do-not-answer-12", "builtin-dev"))
#: ``--cli``: fresh-process timings of each re-audit (the best of these is reported).
PROCESS_REPS = 3


def cli_check(ds: Path, seed: int, quick: bool) -> list[dict[str, Any]]:
    """``data-advisor audit`` → ``review`` (default n) → labels from gold → ``audit --labels``, in this process,
    default settings (the shipped harm pool and threshold: dev for these sets).  Also times the labelled re-audit
    against an unlabelled re-audit of the same input (embeddings and clusters cached), in this process and as fresh
    ``python -m data_advisor.cli`` processes (what a user waits for: imports included)."""
    import json
    import subprocess
    import tempfile

    from data_advisor.cli import main as cli
    from data_advisor.coverage.taxonomy import load_taxonomy

    out: list[dict[str, Any]] = []
    specs = {s.key: s for s in S.labelled_sets(ds)}
    runs = CLI_RUNS[:1] if quick else CLI_RUNS
    with tempfile.TemporaryDirectory(prefix="review-loop-cli-") as tmp:
        for key, kind in runs:
            spec = specs[key]
            tax_arg = str(spec.user_taxonomy) if kind == "user" else str(spec.builtin)
            tax = load_taxonomy(tax_arg)
            amap = tax.alias_map()
            gold = [amap[lab.strip().lower()] for lab in spec.labels]
            work = Path(tmp) / f"{key}-{kind}"
            work.mkdir()
            src = work / "prompts.jsonl"
            src.write_text("".join(json.dumps({"id": f"p{i}", "text": t}, ensure_ascii=False) + "\n"
                                   for i, t in enumerate(spec.texts)), "utf-8")
            base = ["--taxonomy", tax_arg, "--no-html", "-q", "--seed", str(seed)]
            assert cli(["audit", str(src), "--out", str(work / "a"), *base]) == 0
            with C.Timer() as t_plain:  # unlabelled re-audit, everything cached
                assert cli(["audit", str(src), "--out", str(work / "a2"), *base]) == 0
            assert cli(["review", str(work / "a"), "--out", str(work / "review.jsonl"), "--seed", str(seed), "-q"]) == 0
            lines = [json.loads(x) for x in (work / "review.jsonl").read_text("utf-8").splitlines()]
            for row in lines:
                row["label"] = gold[int(row["id"][1:])]
            (work / "labelled.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
            with C.Timer() as t_lab:
                assert cli(["audit", str(src), "--out", str(work / "b"), "--labels", str(work / "labelled.jsonl"),
                            *base]) == 0
            # as a user runs them: fresh processes (imports included), best of PROCESS_REPS, alternating
            plain_cmd = ["audit", str(src), "--out", str(work / "a3"), *base]
            lab_cmd = ["audit", str(src), "--out", str(work / "b3"), "--labels", str(work / "labelled.jsonl"), *base]
            t_proc = {"plain": [], "labelled": []}
            for _ in range(PROCESS_REPS):
                for name, args in (("plain", plain_cmd), ("labelled", lab_cmd)):
                    with C.Timer() as t_p:
                        subprocess.run([sys.executable, "-m", "data_advisor.cli", *args], check=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    t_proc[name].append(t_p.s)
            rows = [json.loads(x) for x in (work / "b" / "assignments.jsonl").read_text("utf-8").splitlines()]
            before = [json.loads(x) for x in (work / "a" / "assignments.jsonl").read_text("utf-8").splitlines()]
            est = json.loads((work / "b" / "coverage.json").read_text("utf-8")).get("estimates")
            un = [i for i, r in enumerate(rows) if not r.get("reviewed")]
            pred = [rows[i]["anchor_id"] or "none" for i in un]
            truth = float(np.mean([p == gold[i] for p, i in zip(pred, un, strict=True)]))
            classes = sorted(set(gold))
            rec: dict[str, Any] = {
                "set": key, "taxonomy": kind, "taxonomy_id": tax.id, "n": len(gold), "n_labels": len(lines),
                "n_random": sum(r["why"] == "random" for r in lines), "n_reviewed": len(rows) - len(un),
                "macro_f1_unreviewed_no_labels": round(macro_f1([gold[i] for i in un],
                                                                [before[i]["anchor_id"] or "none" for i in un],
                                                                classes), 4),
                "macro_f1_unreviewed": round(macro_f1([gold[i] for i in un], pred, classes), 4),
                "true_accuracy_unreviewed": round(truth, 4),
                "reaudit_s": round(t_plain.s, 2), "labelled_reaudit_s": round(t_lab.s, 2),
                "labelled_vs_plain_reaudit": round(t_lab.s / max(t_plain.s, 1e-9), 2),
                "reaudit_process_s": round(min(t_proc["plain"]), 2),
                "labelled_reaudit_process_s": round(min(t_proc["labelled"]), 2),
                "labelled_vs_plain_reaudit_process": round(min(t_proc["labelled"]) / max(min(t_proc["plain"]), 1e-9), 2),
            }
            if isinstance(est, dict) and est.get("status") == "estimated":
                lo, hi = est["accuracy"]["ci95"]
                rec.update({"est_accuracy": round(est["accuracy"]["value"], 4), "acc_ci95": [round(lo, 4), round(hi, 4)],
                            "acc_ci_contains_truth": bool(lo <= truth <= hi)})
            out.append(rec)
            C.log(f"cli {key} {kind}: F1 {rec['macro_f1_unreviewed_no_labels']:.3f} → {rec['macro_f1_unreviewed']:.3f}; "
                  f"labelled re-audit {rec['labelled_vs_plain_reaudit']}× the plain one in-process, "
                  f"{rec['labelled_vs_plain_reaudit_process']}× as fresh processes")
    return out


def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--draws", type=int, default=5, help="reviewer simulations (seeds) per set and budget")
    p.add_argument("--cli", action="store_true",
                   help="instead: run audit → review → audit --labels through the real commands on a few sets "
                        "(writes results/review_loop_cli[.quick].json)")
    args = p.parse_args()
    ds = C.require_datasets(args.datasets)
    started = time.perf_counter()
    if args.cli:
        if args.out is None:  # its own result file, beside the simulation's
            args.out = C.result_path(SCRIPT + "_cli", args.quick)
        C.emit(SCRIPT, args, {"runs": cli_check(ds, args.seed, args.quick)}, started=started)
        return

    import fit_harm

    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.coverage.harm import DEFAULT_TOP_K
    from data_advisor.coverage.review_pick import PER_PRINCIPLE, RANDOM_MIN, RANDOM_SHARE

    embedder = make_embedder()
    C.log("harm threshold, leave-one-dataset-out")
    parts = fit_harm.groups(ds, embedder, DEFAULT_TOP_K)
    lodo_thr = {g: fit_harm.fit_threshold([q for q in parts if q["group"] != g]) for g in {q["group"] for q in parts}}
    pipe = Pipeline(embedder, lodo_thr)
    draws = 1 if args.quick else args.draws
    sets = S.labelled_sets(ds)
    if args.quick:
        sets = [s for s in sets if s.key in ("harmbench-6", "jailbreakbench-10")]
    results: list[dict[str, Any]] = []
    for spec in sets:
        vecs = embedder.encode(spec.texts)
        for kind, tax, gold in S.taxonomy_runs(spec):
            t0 = time.perf_counter()
            r = run_combo(pipe, spec, tax, gold, vecs, draws, args.seed)  # type: ignore[arg-type]
            results.append({"set": spec.key, "group": spec.group, "taxonomy": kind, "taxonomy_id": tax.id, **r})
            d = r["curves"]["informative"][str(PER_PRINCIPLE)]["mean"]
            C.log(f"{spec.key} {kind}: F1 {r['no_labels']['macro_f1']:.3f} → {d['macro_f1_unreviewed']:.3f} at "
                  f"{PER_PRINCIPLE}/principle (random picks "
                  f"{r['curves']['random'][str(PER_PRINCIPLE)]['mean']['macro_f1_unreviewed']:.3f}); "
                  f"{time.perf_counter() - t0:.0f}s")
    lodo_split(results)
    C.emit(SCRIPT, args, {
        "embedding_model": embedder.model_id,
        "budgets_per_principle": list(BUDGETS),
        "review_defaults": {"per_principle": PER_PRINCIPLE, "random_min": RANDOM_MIN, "random_share": RANDOM_SHARE},
        "splits": {k: list(v) for k, v in SPLITS.items()},
        "draws": draws,
        "harm_threshold_lodo": dict(sorted(lodo_thr.items())),
        "summary": summarise(results),
        "sets": results,
    }, started=started)


if __name__ == "__main__":
    main()

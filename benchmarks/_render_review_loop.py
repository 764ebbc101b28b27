"""RESULTS.md section and summary rows for ``review_loop.py`` (kept apart from render_results.py so the sections of
different benchmarks merge without touching each other)."""

from __future__ import annotations

from typing import Any

import render_results


def cli_doc() -> dict[str, Any] | None:
    """``review_loop.py --cli``'s result (the full run's, else the quick one's), or None."""
    return render_results.load("review_loop_cli")


_f = render_results.f


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def summary_rows(doc: dict[str, Any], cli: dict[str, Any] | None = None) -> list[list[str]]:
    """Rows for the summary table: default-n macro-F1 before → after, and the estimate checks."""
    rows = []
    s = doc["summary"]
    per = doc["review_defaults"]["per_principle"]
    for kind, label in (("user", "user taxonomy (one sentence per label), held out"),
                        ("builtin-dev", "built-in taxonomy (dev)")):
        k = s.get(kind)
        if not k:
            continue
        cells = "; ".join(f"{name} {_f(v['macro_f1_no_labels'], 2)} → {_f(v['macro_f1_unreviewed'], 2)}"
                          for name, v in k["default_n"].items())
        rows.append([f"`review` default n ({per} × principles) + `audit --labels`, simulated reviewer: macro-F1 on "
                     f"unreviewed prompts, {label}", cells, doc["mode"]])
    k = s.get("user")
    if k and k.get("n_sets_estimated"):
        rows.append(["Same: accuracy estimate's 95% interval holds the truth / width; share MAE uncorrected → corrected; "
                     "share intervals holding the gold share (user taxonomies)",
                     f"{k['acc_ci_contains_truth_sets']} of {k['n_sets_estimated']} sets (rate "
                     f"{_f(k['acc_ci_contains_truth_rate'], 2)}), mean width {_f(k['acc_ci_width_mean'], 2)} (max "
                     f"{_f(k['acc_ci_width_max'], 2)}); {_f(k['share_mae_uncorrected'], 3)} → "
                     f"{_f(k['share_mae_corrected'], 3)}; {_f(100 * k['share_ci_coverage'], 0)}%", doc["mode"]])
    if cli and cli.get("runs"):
        runs = cli["runs"]
        if all("labelled_vs_plain_reaudit_process" in r for r in runs):  # the command as a user runs it
            ratios = [r["labelled_vs_plain_reaudit_process"] for r in runs]
            rows.append(["Labelled re-audit (`audit --labels`) vs unlabelled re-audit, embeddings and clusters cached, "
                         "fresh `data-advisor` processes (best of 3)",
                         f"{_f(min(ratios), 2)}–{_f(max(ratios), 2)}× ("
                         + "; ".join(f"{r['set']} {r['taxonomy']} {_f(r['reaudit_process_s'], 2)} s → "
                                     f"{_f(r['labelled_reaudit_process_s'], 2)} s" for r in runs) + ")", cli["mode"]])
        ratios = [r["labelled_vs_plain_reaudit"] for r in runs]
        rows.append(["Same, both audits in one process (imports already done; 0.1–0.4 s each, noisy)",
                     f"{_f(min(ratios), 1)}–{_f(max(ratios), 1)}× ("
                     + "; ".join(f"{r['set']} {r['taxonomy']} {_f(r['reaudit_s'], 2)} s → {_f(r['labelled_reaudit_s'], 2)} s"
                                 for r in runs) + ")", cli["mode"]])
    return rows


def section(doc: dict[str, Any], provenance: str, cli: dict[str, Any] | None = None, cli_provenance: str = "") -> str:
    s = doc["summary"]
    d = doc["review_defaults"]
    parts = ["## The review loop: a few labels, learned and measured (`review_loop.py`)\n", provenance + "\n",
             f"Embedding model: `{doc['embedding_model']}`. A simulated reviewer fills `label` from the gold labels of "
             "each shared labelled set; the picks are `data-advisor review`'s own (`coverage.review_pick`: a uniform "
             f"random slice of max({d['random_min']}, {d['random_share']:.0%} of the budget), capped by the budget, "
             "then informative picks), the learning and the estimates are `audit --labels`'s own "
             "(`coverage.estimates.apply_labels`). The audit's assignment path runs on the set's vectors as `audit` "
             "runs it (no discovery: picks are not spread by cluster here), with the harm pool leaving out the built-in "
             "taxonomy written beside the set and the harm threshold refitted without the set's group. macro-F1 is "
             "over the *unreviewed* prompts, unanchored counted wrong. *informative* = `review`'s picks (random slice + "
             "informative slice); *random* = the same number of labels, all uniformly random. A budget that would "
             f"label more than 60% of a set is skipped. {doc['draws']} draws (seeds) per cell, means shown. "
             "*builtin-dev* rows use the built-in taxonomy whose examples were written beside the set: dev figures, "
             "not held out.\n"]
    for kind in ("user", "builtin-dev"):
        k = s.get(kind)
        if not k:
            continue
        curve = k["macro_f1_by_budget"]
        if curve:
            budgets = list(curve["informative"])
            rows = [[strat] + [_f(curve[strat][b]) for b in budgets] for strat in ("informative", "random")]
            parts.append(f"**{kind}** — mean macro-F1 on unreviewed prompts vs labels per principle (sets: "
                         f"{', '.join(k['macro_f1_by_budget_sets'])}):\n")
            parts.append(_table(["picks"] + [f"{b} / principle" for b in budgets], rows))
    header = ["set", "taxonomy", "leaves", "no labels", "default n", "true acc.", "est. acc. [95% CI]", "holds truth",
              "share MAE: no labels / raw / corrected", "share CIs holding gold", "split (LODO)"]
    rows = []
    for r in doc["sets"]:
        c = r["curves"]["informative"][str(d["per_principle"])]
        m = c.get("mean")
        if not m:
            rows.append([r["set"], r["taxonomy"], _f(r["n_leaves"]), _f(r["no_labels"]["macro_f1"]), "skipped"] +
                        ["—"] * 6)
            continue
        first = c["draws"][0]
        ci = first.get("acc_ci95")
        rows.append([
            r["set"], r["taxonomy"], _f(r["n_leaves"]), _f(r["no_labels"]["macro_f1"]), _f(m["macro_f1_unreviewed"]),
            _f(m["true_accuracy_unreviewed"]),
            f"{_f(m.get('est_accuracy'))} [{_f(ci[0], 2)}, {_f(ci[1], 2)}] (draw 1)" if ci else "—",
            _f(m.get("acc_ci_contains_truth"), 2),
            f"{_f(r['no_labels']['share_mae'])} / {_f(m.get('share_mae_uncorrected'))} / "
            f"{_f(m.get('share_mae_corrected'))}",
            _f(m.get("share_ci_coverage"), 2), str(r.get("split_lodo", {}).get("chosen")),
        ])
    parts.append(f"\nPer set at the default budget ({d['per_principle']} × leaf principles; \"holds truth\" = share of "
                 "draws whose accuracy interval contains the true accuracy on the unreviewed prompts):\n")
    parts.append(_table(header, rows))
    lines = []
    for kind in ("user", "builtin-dev"):
        k = s.get(kind)
        if k and k.get("n_sets_estimated"):
            lines.append(f"- **{kind}**: accuracy interval holds the truth on {k['acc_ci_contains_truth_sets']} of "
                         f"{k['n_sets_estimated']} sets (draw rate {_f(k['acc_ci_contains_truth_rate'], 2)}), mean width "
                         f"{_f(k['acc_ci_width_mean'], 3)}, max {_f(k['acc_ci_width_max'], 3)}, mean |error| "
                         f"{_f(k['acc_abs_error_mean'], 3)}; share MAE no labels {_f(k['share_mae_no_labels'])}, labelled "
                         f"raw {_f(k['share_mae_uncorrected'])}, corrected {_f(k['share_mae_corrected'])}; share "
                         f"intervals holding the gold share {_f(100 * k['share_ci_coverage'], 0)}%; split picked "
                         f"leave-one-dataset-out: {', '.join(f'{a} → {b}' for a, b in k['split_lodo'].items())} "
                         f"(held-out macro-F1 {_f(k['macro_f1_split_lodo'])}).")
    parts.append("\n" + "\n".join(lines) + "\n")
    split_rows = []
    for kind in ("user", "builtin-dev"):
        rs = [r for r in doc["sets"] if r["taxonomy"] == kind]
        for name in doc["splits"]:
            xs = [r["splits"][name] for r in rs if "acc_ci_width" in r["splits"][name]]
            if not xs:
                continue
            mean = lambda k, xs=xs: sum(float(x[k]) for x in xs) / len(xs)  # noqa: E731
            split_rows.append([kind, name, _f(mean("macro_f1_unreviewed")), _f(mean("acc_ci_width")),
                               _f(max(x["acc_ci_width"] for x in xs)), _f(mean("acc_ci_contains_truth"), 2)])
    parts.append("\nEach candidate split at the default budget, mean over the sets (not held out):\n")
    parts.append(_table(["taxonomy", "split", "macro-F1", "CI width", "max CI width", "CI holds truth"], split_rows))
    parts.append(f"\nCandidate splits (random_min/random_share): {', '.join(doc['splits'])}; the one shipped is "
                 f"{d['random_min']}/{d['random_share']}. A split is eligible where its mean accuracy interval on the "
                 "other groups is at most 0.35 wide; the eligible one with the best macro-F1 there is scored on the "
                 "held-out set. The shipped split is the one whose intervals hold the truth most often; the table "
                 "above shows what a smaller random slice trades (macro-F1 for wider, less reliable intervals).\n")
    if cli and cli.get("runs"):
        parts.append("\n**Through the real commands** (`review_loop.py --cli`): `data-advisor audit` (default settings, "
                     "discovery included, shipped harm pool and threshold: dev for these sets) → `data-advisor review` "
                     "(default n) → `label` filled from gold → `data-advisor audit --labels`; macro-F1 on the prompts "
                     "the labelled audit marks unreviewed. " + cli_provenance + "\n")
        rows = [[r["set"], r["taxonomy"], _f(r["n_labels"]), _f(r["n_random"]), _f(r["macro_f1_unreviewed_no_labels"]),
                 _f(r["macro_f1_unreviewed"]), _f(r["true_accuracy_unreviewed"]),
                 f"{_f(r.get('est_accuracy'))} [{_f(r['acc_ci95'][0], 2)}, {_f(r['acc_ci95'][1], 2)}]"
                 if r.get("acc_ci95") else "—", _f(r.get("acc_ci_contains_truth")),
                 f"{_f(r['reaudit_process_s'], 2)} s / {_f(r['labelled_reaudit_process_s'], 2)} s "
                 f"({_f(r['labelled_vs_plain_reaudit_process'], 2)}×)" if "reaudit_process_s" in r else
                 f"{_f(r['reaudit_s'], 1)} s / {_f(r['labelled_reaudit_s'], 1)} s ({_f(r['labelled_vs_plain_reaudit'], 1)}×)"]
                for r in cli["runs"]]
        parts.append(_table(["set", "taxonomy", "labels", "random", "no labels", "after `--labels`", "true acc.",
                             "estimate [95% CI]", "holds truth", "re-audit (fresh process): plain / labelled"], rows))
    return "\n".join(parts) + "\n"

"""RESULTS.md section of ``discovery.py`` (granularity, seed stability, fine-label agreement, clustering time)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _f(x: Any, d: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    if isinstance(x, int) or (isinstance(x, float) and d == 0):
        return f"{x:,.0f}"
    return f"{x:.{d}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def _span(rows: list[dict[str, Any]], key: str, d: int = 0) -> str:
    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return "–"
    lo, hi = min(vals), max(vals)
    return _f(lo, d) if lo == hi else f"{_f(lo, d)}–{_f(hi, d)}"


def headline(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(measure, result) rows for the summary table: hh-rlhf before/after, fine-label AMI, clustering time."""
    out = []
    hh = doc.get("hh_audit", {}).get("rows", [])
    new = [r for r in hh if r["variant"] == "new"]
    old = [r for r in doc.get("quality", {}).get("rows", []) if r["set"] == "hh-rlhf" and r["variant"] == "old"]
    if new:
        before = (f"; old settings: {_span(old, 'n_clusters')} clusters, largest up to "
                  f"{max(r['largest'] for r in old):.0%}" if old else "")
        out.append(("Discovery on hh-rlhf (2,312 prompts, llamaguard3), seeds 0–2: clusters, largest share, anchors "
                     "with ≥ 3 sub-clusters",
                     f"{_span(new, 'n_clusters')} clusters, largest ≤ {max(r['largest'] for r in new):.1%}, noise "
                     f"{_span(new, 'noise', 2)}, {_span(new, 'anchors_with_3_subclusters')} of "
                     f"{new[0]['leaf_anchors']} anchors{before}"))
    q = doc.get("quality")
    if q:
        cells = []
        for name, n in (("dna-61", 550), ("dna-12", 609), ("hb-6", 300), ("pooled-3", None)):
            rs = [r for r in q["rows"] if r["set"] == name and (n is None or r["n"] == n)]
            o, w = _mean([r for r in rs if r["variant"] == "old"], "ami_noise"), \
                _mean([r for r in rs if r["variant"] == "new"], "ami_noise")
            if o is not None and w is not None:
                cells.append(f"{name}@{rs[0]['n']} {_f(o, 2)} → {_f(w, 2)}")
        out.append(("Discovery vs fine labels, AMI (noise counted), old → new settings, mean of seeds 0–2",
                    "; ".join(cells)))
    sc = doc.get("scale")
    if sc:
        cells = []
        for n in sorted({r["n"] for r in sc["rows"]}):
            rs = [r for r in sc["rows"] if r["n"] == n]
            o = [r for r in rs if r["variant"] == "old"]
            w = [r for r in rs if r["variant"] == "new"]
            ratio = np.mean([r["total_s"] for r in w]) / np.mean([r["total_s"] for r in o])
            cells.append(f"{_f(n)}: {_span(o, 'n_clusters')} → {_span(w, 'n_clusters')} clusters, time {ratio:.2f}×")
        out.append(("Discovery on the Alpaca + harmful mix, old → new settings", "; ".join(cells)))
    return out


def sec_discovery(doc: dict[str, Any], provenance: str) -> str:
    parts = ["## Discovery granularity: collapse, seed stability, fine labels (`discovery.py`)\n", provenance + "\n"]
    q = doc.get("quality")
    if q:
        parts.append("Each set at each size, seeds 0–2; **old** = the settings before (spectral path below 1,000 "
                     "prompts, min_cluster_size √n/2, min_samples mcs/5, no guard), **new** = `ClusterDiscovery()` "
                     "defaults (spectral below 200 prompts, UMAP from 200 with min_cluster_size max(10, √n/4) and "
                     "min_samples 2, collapse guard). AMI with noise counted as one cluster and with noise excluded; "
                     "ranges over seeds for counts and shares. Every prompt is scored (noise included), unlike the "
                     "older small-input table below.\n")
        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for r in q["rows"]:
            if r["variant"] in ("old", "new"):
                groups.setdefault((r["set"], r["n"]), []).append(r)
        rows = []
        for (name, n), rs in groups.items():
            for variant in ("old", "new"):
                v = [r for r in rs if r["variant"] == variant]
                rows.append([name, _f(n), variant, _f(_mean(v, "ami_noise")), _f(_mean(v, "ami_excl")),
                             _f(_mean(v, "nmi")), _f(_mean(v, "ari")), _span(v, "n_clusters"),
                             _span(v, "noise", 2), _span(v, "largest", 2)])
        parts.append(_table(["set", "n", "settings", "AMI (noise = cluster)", "AMI (noise excluded)", "NMI", "ARI",
                             "clusters", "noise", "largest"], rows))
        sel = q.get("selection", {})
        if sel.get("folds"):
            parts.append("\n**Rule chosen leave-one-dataset-out** (UMAP path, grid = divisor of √n / floor / "
                         "min_samples, 0 = mcs/5; only rules that never collapse hh-rlhf on any seed qualify: "
                         f"{len(sel['allowed_by_hh'])} of {len(doc.get('grid', []))}). Each fold picks the rule with "
                         "the best mean AMI (noise counted) on the other datasets at ≥ 200 prompts and is scored on "
                         "the held-out one (JailbreakBench's 100 prompts take the spectral path, so it is no fold). "
                         "Rules that differ only in min_samples give identical labels below 3,600 prompts "
                         "(mcs/5 = 2 there), so they tie on these sets; the shipped default (4/10/2) is taken "
                         "among ties.\n")
            fold_rows = []
            for g, d in sel["folds"].items():
                others = [t for t in d.get("tied", []) if t != d["chosen"]]
                chosen = d["chosen"] + (f" (tied with {', '.join(others)})" if others else "")
                fold_rows.append([g, chosen, _f(d["train_ami"]), _f(d["held_out_ami"]), _f(d["held_out_ami_new"]),
                                  _f(d["held_out_ami_old"])])
            parts.append(_table(["held out", "rule chosen", "AMI on the others", "held-out AMI, chosen",
                                 "held-out AMI, new defaults", "held-out AMI, old"], fold_rows))
    hh = doc.get("hh_audit")
    if hh:
        parts.append("\n### hh-rlhf test set, default audit with llamaguard3 (2,312 first turns)\n")
        parts.append(_table(["settings", "seed", "clusters", "noise", "largest", "anchors with ≥ 3 sub-clusters",
                             "mean sub-clusters per anchor", "collapse notes"],
                            [[r["variant"], str(r["seed"]), _f(r["n_clusters"]), _f(r["noise"], 2),
                              _f(r["largest"], 3), f"{r['anchors_with_3_subclusters']} of {r['leaf_anchors']}",
                              _f(r["mean_subclusters_per_anchor"], 1),
                              "; ".join(n[:90] for n in r["notes"] if "collapse" in n or "seed" in n) or "–"]
                             for r in hh["rows"]]))
    sc = doc.get("scale")
    if sc:
        parts.append("\n### Alpaca + harmful mix: cluster counts and clustering time\n")
        run = doc.get("scale_run")
        if run:
            parts.append(f"This section comes from its own run: `{run['command']}`, finished {run['finished_utc']}, "
                         f"{_f(run['wall_s'], 0)} s wall. {run.get('note', '')}.\n")
        parts.append("One run per size (same process, same machine state): the k-NN graph and UMAP (5-D and the 2-D "
                     "map; their settings did not change) are computed once and timed, then HDBSCAN with the old and "
                     "the new settings on the same reduction; total = shared + HDBSCAN. AMI over the mix's prompts "
                     "that carry a fine label (HarmBench, Do-Not-Answer types, JailbreakBench).\n")
        rows = []
        for r in sc["rows"]:
            rows.append([_f(r["n"]), str(r["seed"]), r["variant"], f"{r['min_cluster_size']}/{r['min_samples']}",
                         _f(r["n_clusters"]), _f(r["noise"], 2), _f(r["largest"], 3), _f(r.get("ami_noise")),
                         _f(r["shared_graph_umap_s"], 1), _f(r["hdbscan_s"], 2), _f(r["total_s"], 1),
                         ", ".join(_f(x, 1) for x in r["load_average"])])
        parts.append(_table(["n", "seed", "settings", "mcs/ms", "clusters", "noise", "largest", "AMI (labelled)",
                             "graph + UMAP s", "HDBSCAN s", "total s", "load"], rows))
        ratios = []
        for n in sorted({r["n"] for r in sc["rows"]}):
            old = [r["total_s"] for r in sc["rows"] if r["n"] == n and r["variant"] == "old"]
            new = [r["total_s"] for r in sc["rows"] if r["n"] == n and r["variant"] == "new"]
            if old and new:
                ratios.append(f"{_f(n)}: {np.mean(new) / np.mean(old):.3f}×")
        parts.append("\nClustering time new ÷ old: " + "; ".join(ratios) + ".\n")
    return "\n".join(parts) + "\n"

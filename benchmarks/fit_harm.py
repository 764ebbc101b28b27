"""Fit the harm decision's two numbers (threshold, logistic scale) on the shared harmful / benign prompts, and
score the rule leave-one-dataset-out.  Writes ``data_advisor/coverage/harm_calibration.json`` (shipped) and
``benchmarks/results/fit_harm.json``.

Rule (data_advisor/coverage/harm.py): ``raw = top-30-mean cosine to the harm pool − top-30-mean cosine to the
background``; a prompt is harm-relevant ("anchored") when ``raw ≥ threshold``; ``harm_score = sigmoid((raw −
threshold) / scale)``.

Data (../shared/datasets; nothing is copied): harmful — HarmBench (copyright excluded), Do-Not-Answer, JailbreakBench
harmful, SimpleSafetyTests, the StrongREJECT rows of refusal-direction harmful_test, XSTest unsafe; benign — Alpaca
instructions (refusal-direction harmless_train, 2,000 sampled; the accuracy benchmark uses harmless_test), JailbreakBench
benign twins, XSTest safe.  Each set is scored with the built-in taxonomy written beside it left out of the harm pool.

Threshold: maximises ``2 × mean harmful recall + mean benign specificity`` over the groups (each group counts once,
whatever its size).  The 2:1 weight was fixed before looking at the data: a harmful prompt left unanchored vanishes
from every coverage number, a benign prompt anchored only dilutes them.  Scale: Platt scaling (logistic regression
of the label on raw, classes balanced), ``scale = 1 / slope``.

Leave-one-dataset-out: for each group the threshold is refitted without it and applied to it.

    python benchmarks/fit_harm.py            # fits, writes the calibration file and the result JSON
    python benchmarks/fit_harm.py --no-write # reports only
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _sets as S

SCRIPT = "fit_harm"
CALIBRATION_PATH = C.REPO / "data_advisor" / "coverage" / "harm_calibration.json"
GRID = np.round(np.arange(-0.05, 0.2001, 0.0025), 4)
HARM_WEIGHT = 2.0


def groups(ds: Path, embedder: Any, k: int) -> list[dict[str, Any]]:
    """One entry per (group, polarity): raw scores of its prompts, label 1 = harmful."""
    from data_advisor.coverage.embedding.base import Embedder  # noqa: F401  (type only)
    from data_advisor.coverage.harm import embed_harm_pool, top_k_mean
    from data_advisor.coverage.taxonomy import load_background

    bg = embedder.encode([t for p in load_background().leaves() for t in p.anchor_texts()])
    pools: dict[tuple[str, ...], np.ndarray] = {}

    def raw(texts: list[str], exclude: tuple[str, ...]) -> np.ndarray:
        if exclude not in pools:
            pools[exclude] = embed_harm_pool(embedder, None, exclude)
        v = embedder.encode(texts)
        return top_k_mean(v, pools[exclude], k) - top_k_mean(v, bg, k)

    xs = C.read_csv(ds / "xstest" / "xstest_prompts.csv")
    jb = C.read_csv(ds / "jailbreakbench" / "jbb_benign_behaviors.csv")
    out = []
    for s in S.labelled_sets(ds):
        if s.level == "root":
            continue
        out.append({"group": s.group, "name": s.key, "y": 1, "raw": raw(s.texts, s.beside)})
    out.append({"group": "xstest", "name": "xstest-unsafe", "y": 1,
                "raw": raw([r["prompt"] for r in xs if r["label"] == "unsafe"], ())})
    out.append({"group": "xstest", "name": "xstest-safe", "y": 0,
                "raw": raw([r["prompt"] for r in xs if r["label"] != "unsafe"], ())})
    out.append({"group": "jailbreakbench", "name": "jailbreakbench-benign", "y": 0,
                "raw": raw([r["goal"] for r in jb], ("jailbreakbench-10",))})
    out.append({"group": "alpaca", "name": "alpaca-train-2000", "y": 0,
                "raw": raw(S.alpaca(ds, "train", 2000, 0), ())})
    return out


def objective(parts: list[dict[str, Any]], thr: float) -> float:
    rec = [float((p["raw"] >= thr).mean()) for p in parts if p["y"] == 1]
    spec = [float((p["raw"] < thr).mean()) for p in parts if p["y"] == 0]
    return HARM_WEIGHT * float(np.mean(rec)) + float(np.mean(spec))


def fit_threshold(parts: list[dict[str, Any]]) -> float:
    scores = [objective(parts, float(t)) for t in GRID]
    best = max(scores)
    # ties: the middle of the best plateau
    idx = [i for i, s in enumerate(scores) if s >= best - 1e-12]
    return float(GRID[idx[len(idx) // 2]])


def fit_scale(parts: list[dict[str, Any]], thr: float) -> float:
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([p["raw"] for p in parts]) - thr
    y = np.concatenate([np.full(len(p["raw"]), p["y"]) for p in parts])
    lr = LogisticRegression(class_weight="balanced", C=100.0).fit(x[:, None], y)
    return float(1.0 / max(lr.coef_[0, 0], 1e-6))


def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--no-write", action="store_true", help="do not overwrite the shipped calibration file")
    args = p.parse_args()
    ds = C.require_datasets(args.datasets)
    started = time.perf_counter()
    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.coverage.harm import DEFAULT_TOP_K

    embedder = make_embedder()
    parts = groups(ds, embedder, DEFAULT_TOP_K)
    thr = fit_threshold(parts)
    scale = fit_scale(parts, thr)
    lodo: list[dict[str, Any]] = []
    for g in sorted({p["group"] for p in parts}):
        train = [p for p in parts if p["group"] != g]
        t = fit_threshold(train)
        for p_ in (p for p in parts if p["group"] == g):
            rate = float((p_["raw"] >= t).mean())
            lodo.append({"held_out_group": g, "set": p_["name"], "threshold": t, "harmful": bool(p_["y"]),
                         "anchored_share": round(rate, 4), "n": len(p_["raw"])})
    per_set = [{"set": p["name"], "harmful": bool(p["y"]), "n": len(p["raw"]),
                "anchored_share_at_threshold": round(float((p["raw"] >= thr).mean()), 4),
                "raw_percentiles_10_50_90": [round(float(v), 4) for v in np.percentile(p["raw"], [10, 50, 90])]}
               for p in parts]
    calibration = {
        "threshold": thr, "scale": round(scale, 5), "k": DEFAULT_TOP_K,
        "rule": "raw = top-k-mean cosine to harm pool - top-k-mean cosine to background; anchored when raw >= "
                "threshold; harm_score = sigmoid((raw - threshold) / scale)",
        "fitted_by": "benchmarks/fit_harm.py",
        "objective": f"{HARM_WEIGHT:g} x mean harmful recall + mean benign specificity, groups weighted equally",
        "data": [f"{p['name']} ({'harmful' if p['y'] else 'benign'}, n={len(p['raw'])})" for p in parts],
        "embedding_model": embedder.model_id,
        "lodo_thresholds": sorted({r["threshold"] for r in lodo}),
    }
    if not args.no_write and not args.quick:
        CALIBRATION_PATH.write_text(json.dumps(calibration, indent=2) + "\n", "utf-8")
        C.log(f"wrote {CALIBRATION_PATH}")
    C.emit(SCRIPT, args, {"calibration": calibration, "per_set": per_set, "leave_one_dataset_out": lodo},
           started=started)


if __name__ == "__main__":
    main()

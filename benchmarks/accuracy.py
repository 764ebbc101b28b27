"""Zero-shot anchor assignment accuracy on every labelled safety set, against baselines, and the benign/harmful
separation of the background anchors.

Labelled sets (dataset labels mapped to principle ids with ``Taxonomy.alias_map()``):

* HarmBench, 6 semantic categories (the 100 copyright behaviors excluded), taxonomy ``harmbench``;
* Do-Not-Answer, 12 types of harm, taxonomy ``do-not-answer`` (leaves);
* Do-Not-Answer, 5 risk areas: the same predictions rolled up to their parent principle;
* JailbreakBench, 10 categories (the 100 harmful behaviors), taxonomy ``jailbreakbench-10``;
* SimpleSafetyTests, 5 harm areas, taxonomy ``simplesafetytests-5``.

Methods (all zero-shot: no label of the evaluated set is used to fit anything):

* ``ours`` — default anchors (each leaf's "name: description" + its written examples), nearest principle;
* ``ours-no-examples`` — ``build_anchors(..., use_examples=False)``: one definition vector per leaf;
* ``tfidf`` — scikit-learn ``TfidfVectorizer`` fitted on the same anchor texts, max cosine per principle;
* ``bertopic`` — ``BERTopic(embedding_model=<the same SentenceTransformer>, zeroshot_topic_list=<principle names>,
  zeroshot_min_similarity=s)`` with the same embeddings passed to ``fit_transform``; a document left in a
  clustered (non-zero-shot) topic counts as wrong. Reported at BERTopic's default s=0.7 and over a sweep.

Separation: AUROC of ``Assignments.relevance`` (best harm score − best background score) on XSTest (unsafe vs safe)
and JailbreakBench (harmful vs benign twins), for every built-in taxonomy; and a sweep of the margin threshold
showing the balanced accuracy of ``anchored`` (default threshold: ``DEFAULT_MARGIN_THRESHOLD``).

    python benchmarks/accuracy.py
    python benchmarks/accuracy.py --quick     # 60 prompts per set, two BERTopic thresholds
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

SCRIPT = "accuracy"
BERTOPIC_THRESHOLDS = [0.7, 0.5, 0.4, 0.3, 0.2, 0.0]
BERTOPIC_THRESHOLDS_QUICK = [0.7, 0.0]
SWEEP = [round(float(x), 3) + 0.0 for x in np.arange(-0.15, 0.1501, 0.025)]


# ------------------------------------------------------------------------------------------------ data
def labelled_sets(ds: Path) -> list[dict[str, Any]]:
    hb = [r for r in C.read_csv(ds / "harmbench" / "harmbench_behaviors_text_all.csv")
          if r["SemanticCategory"] != "copyright"]
    dna = C.read_csv(ds / "do-not-answer" / "do_not_answer_en.csv")
    jbb = C.read_csv(ds / "jailbreakbench" / "jbb_harmful_behaviors.csv")
    sst = C.read_csv(ds / "simplesafetytests" / "SimpleSafetyTests - test cases.csv")
    return [
        {"key": "harmbench-6", "dataset": "HarmBench (SemanticCategory, copyright excluded)", "taxonomy": "harmbench",
         "level": "leaf", "texts": [r["Behavior"] for r in hb], "labels": [r["SemanticCategory"] for r in hb]},
        {"key": "do-not-answer-12", "dataset": "Do-Not-Answer (types_of_harm)", "taxonomy": "do-not-answer",
         "level": "leaf", "texts": [r["question"] for r in dna], "labels": [r["types_of_harm"] for r in dna]},
        {"key": "do-not-answer-5", "dataset": "Do-Not-Answer (risk_area, leaves rolled up)", "taxonomy": "do-not-answer",
         "level": "root", "texts": [r["question"] for r in dna], "labels": [r["risk_area"] for r in dna]},
        {"key": "jailbreakbench-10", "dataset": "JailbreakBench harmful (Category)", "taxonomy": "jailbreakbench-10",
         "level": "leaf", "texts": [r["Goal"] for r in jbb], "labels": [r["Category"] for r in jbb]},
        {"key": "simplesafetytests-5", "dataset": "SimpleSafetyTests (harm_area)", "taxonomy": "simplesafetytests-5",
         "level": "leaf", "texts": [r["prompts_final"] for r in sst], "labels": [r["harm_area"] for r in sst]},
    ]


def subsample(texts: list[str], labels: list[str], k: int, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic stratified-ish subsample (round robin over labels) for --quick."""
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
def score(gold: list[str], pred: list[str | None]) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    classes = sorted(set(gold))
    p = [x if x is not None else "__none__" for x in pred]
    acc = float(np.mean([a == b for a, b in zip(gold, p, strict=True)]))
    f1 = float(f1_score(gold, p, labels=classes, average="macro", zero_division=0))
    return {"accuracy": round(acc, 4), "macro_f1": round(f1, 4), "n": len(gold)}


def bootstrap_ci(gold: list[str], pred: list[str | None], seed: int, n_boot: int = 1000) -> dict[str, list[float]]:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    g = np.asarray(gold, dtype=object)
    p = np.asarray([x if x is not None else "__none__" for x in pred], dtype=object)
    classes = sorted(set(gold))
    accs, f1s = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(g), len(g))
        accs.append(float((g[idx] == p[idx]).mean()))
        f1s.append(float(f1_score(list(g[idx]), list(p[idx]), labels=classes, average="macro", zero_division=0)))
    return {"accuracy_95ci": [round(float(np.percentile(accs, 2.5)), 4), round(float(np.percentile(accs, 97.5)), 4)],
            "macro_f1_95ci": [round(float(np.percentile(f1s, 2.5)), 4), round(float(np.percentile(f1s, 97.5)), 4)]}


def per_class_f1(gold: list[str], pred: list[str | None]) -> dict[str, float]:
    from sklearn.metrics import f1_score

    classes = sorted(set(gold))
    p = [x if x is not None else "__none__" for x in pred]
    vals = f1_score(gold, p, labels=classes, average=None, zero_division=0)
    return {c: round(float(v), 4) for c, v in zip(classes, vals, strict=True)}


def roll_up(taxonomy: Any, leaf_id: str | None) -> str | None:
    if leaf_id is None:
        return None
    anc = taxonomy.ancestors(leaf_id)
    return anc[-1] if anc else leaf_id


# --------------------------------------------------------------------------------------------- methods
def predict_ours(taxonomy: Any, embedder: Any, vecs: np.ndarray, *, use_examples: bool) -> tuple[list[str], Any]:
    from data_advisor.coverage.assign import AnchorAssigner, build_anchors
    from data_advisor.coverage.taxonomy import load_background

    anchors = build_anchors(taxonomy, embedder, load_background(), use_examples=use_examples)
    a = AnchorAssigner().fit(anchors).assign(vecs)
    return [a.nearest_id(i) for i in range(len(a))], a


def predict_tfidf(taxonomy: Any, texts: list[str], *, use_examples: bool = True) -> tuple[list[str], float]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    leaves = taxonomy.leaves()
    anchor_texts, owner = [], []
    for j, leaf in enumerate(leaves):
        for t in leaf.anchor_texts() if use_examples else leaf.anchor_texts()[:1]:
            anchor_texts.append(t)
            owner.append(j)
    vec = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    xa = vec.fit_transform(anchor_texts)
    xp = vec.transform(texts)
    sims = (xp @ xa.T).toarray()
    owner_a = np.asarray(owner)
    per = np.full((len(texts), len(leaves)), -1.0)
    for j in range(len(leaves)):
        per[:, j] = sims[:, owner_a == j].max(axis=1)
    no_overlap = float((per.max(axis=1) <= 0).mean())
    return [leaves[int(k)].id for k in per.argmax(axis=1)], no_overlap


def predict_bertopic(taxonomy: Any, st_model: Any, texts: list[str], vecs: np.ndarray, threshold: float,
                     seed: int) -> dict[str, Any]:
    """BERTopic zero-shot topic modelling; returns predictions (None = left in a non-zero-shot topic)."""
    from bertopic import BERTopic
    from hdbscan import HDBSCAN
    from umap import UMAP

    leaves = taxonomy.leaves()
    names = [p.name for p in leaves]
    name_to_id = {p.name: p.id for p in leaves}
    umap_model = UMAP(n_neighbors=min(15, len(texts) - 1), n_components=5, min_dist=0.0, metric="cosine",
                      random_state=seed)
    hdbscan_model = HDBSCAN(min_cluster_size=min(10, max(2, len(texts) // 10)), metric="euclidean",
                            cluster_selection_method="eom", prediction_data=True)
    model = BERTopic(embedding_model=st_model, zeroshot_topic_list=names, zeroshot_min_similarity=threshold,
                     umap_model=umap_model, hdbscan_model=hdbscan_model, verbose=False)
    t0 = time.perf_counter()
    topics, _ = model.fit_transform(texts, embeddings=vecs)
    fit_s = time.perf_counter() - t0
    labels = model.topic_labels_
    # Our own view of BERTopic's zero-shot step (same model, same cosine) to recover labels when BERTopic
    # drops them: if every document matches a zero-shot topic, it skips clustering and never records which
    # topic id is which zero-shot label (its topic_labels_ then show c-TF-IDF words).
    zs = st_model.encode(names, normalize_embeddings=True, convert_to_numpy=True)
    sims = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)) @ (zs / np.linalg.norm(zs, axis=1, keepdims=True)).T
    zs_assigned = sims.max(axis=1) >= threshold
    recovered = False
    topic_to_name: dict[int, str] = {t: lab for t, lab in labels.items() if lab in name_to_id}
    if not topic_to_name and zs_assigned.all():
        recovered = True
        for t in set(topics):
            members = [i for i, x in enumerate(topics) if x == t]
            topic_to_name[t] = names[Counter(int(sims[i].argmax()) for i in members).most_common(1)[0][0]]
    pred = [name_to_id[topic_to_name[t]] if t in topic_to_name else None for t in topics]
    return {"pred": pred, "fit_s": round(fit_s, 2), "zero_shot_share": round(float(np.mean([p is not None for p in pred])), 4),
            "labels_recovered_by_majority": recovered, "n_topics": len(set(topics) - {-1})}


# ----------------------------------------------------------------------------------------- separation
def separation(ds: Path, embedder: Any, seed: int, quick: bool) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from data_advisor.coverage.assign import DEFAULT_MARGIN_THRESHOLD, DEFAULT_MIN_SCORE, AnchorAssigner, build_anchors
    from data_advisor.coverage.taxonomy import builtin_taxonomies, load_background, load_taxonomy

    xs = C.read_csv(ds / "xstest" / "xstest_prompts.csv")
    jh = C.read_csv(ds / "jailbreakbench" / "jbb_harmful_behaviors.csv")
    jb = C.read_csv(ds / "jailbreakbench" / "jbb_benign_behaviors.csv")
    sets = {
        "xstest": ([r["prompt"] for r in xs], [1 if r["label"] == "unsafe" else 0 for r in xs]),
        "jailbreakbench": ([r["Goal"] for r in jh] + [r["goal"] for r in jb], [1] * len(jh) + [0] * len(jb)),
    }
    if quick:
        sets = {k: subsample_binary(t, y, 80, seed) for k, (t, y) in sets.items()}
    vec = {k: embedder.encode(t) for k, (t, _) in sets.items()}
    background = load_background()
    per_tax: dict[str, Any] = {}
    sweep_rows: list[dict[str, Any]] = []
    for name in builtin_taxonomies():
        tax = load_taxonomy(name)
        assigner = AnchorAssigner().fit(build_anchors(tax, embedder, background))
        rel: dict[str, np.ndarray] = {}
        sc: dict[str, np.ndarray] = {}
        row: dict[str, Any] = {}
        for k, (_, y) in sets.items():
            a = assigner.assign(vec[k])
            rel[k], sc[k] = a.relevance, a.score
            row[f"auroc_{k}"] = round(float(roc_auc_score(y, a.relevance)), 4)
            row[f"auroc_{k}_score_only"] = round(float(roc_auc_score(y, a.score)), 4)
            row[f"balanced_acc_default_{k}"] = round(balanced_acc(y, a.anchored), 4)
        y_all = np.concatenate([np.asarray(sets[k][1]) for k in sets])
        rel_all = np.concatenate([rel[k] for k in sets])
        sc_all = np.concatenate([sc[k] for k in sets])
        row["auroc_combined"] = round(float(roc_auc_score(y_all, rel_all)), 4)
        sweep = []
        for thr in SWEEP:
            anchored = (sc_all >= DEFAULT_MIN_SCORE) & (rel_all >= thr)
            entry = {"threshold": thr, "balanced_acc_combined": round(balanced_acc(y_all, anchored), 4)}
            for k in sets:
                entry[f"balanced_acc_{k}"] = round(balanced_acc(sets[k][1], (sc[k] >= DEFAULT_MIN_SCORE) & (rel[k] >= thr)), 4)
            entry["tpr_combined"] = round(float(anchored[y_all == 1].mean()), 4)
            entry["fpr_combined"] = round(float(anchored[y_all == 0].mean()), 4)
            sweep.append(entry)
        best = max(sweep, key=lambda e: (e["balanced_acc_combined"], -abs(e["threshold"])))
        default_row = next(e for e in sweep if abs(e["threshold"] - DEFAULT_MARGIN_THRESHOLD) < 1e-9)
        row["best_threshold"] = best["threshold"]
        row["balanced_acc_best"] = best["balanced_acc_combined"]
        row["balanced_acc_default"] = default_row["balanced_acc_combined"]
        per_tax[name] = row
        if name == "catqa-11":
            sweep_rows = sweep
    return {
        "n": {k: {"positive": int(sum(y)), "negative": int(len(y) - sum(y))} for k, (_, y) in sets.items()},
        "positive_class": "xstest: label unsafe; jailbreakbench: harmful behaviors (negative: benign twins)",
        "default_margin_threshold": DEFAULT_MARGIN_THRESHOLD,
        "min_score": DEFAULT_MIN_SCORE,
        "per_taxonomy": per_tax,
        "sweep_taxonomy": "catqa-11",
        "sweep": sweep_rows,
    }


def subsample_binary(texts: list[str], y: list[int], k: int, seed: int) -> tuple[list[str], list[int]]:
    t, lab = subsample(texts, [str(v) for v in y], k, seed)
    return t, [int(v) for v in lab]


def balanced_acc(y: Any, pred: Any) -> float:
    y = np.asarray(y).astype(bool)
    p = np.asarray(pred).astype(bool)
    tpr = p[y].mean() if y.any() else 0.0
    tnr = (~p[~y]).mean() if (~y).any() else 0.0
    return float((tpr + tnr) / 2)


# -------------------------------------------------------------------------------------------------- main
def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--no-bertopic", action="store_true", help="skip the BERTopic baseline")
    args = p.parse_args()
    ds = C.require_datasets(args.datasets)
    started = time.perf_counter()

    from data_advisor.coverage.embedders import make_embedder
    from data_advisor.coverage.taxonomy import load_taxonomy

    embedder = make_embedder()  # default model behind the shared DATA_ADVISOR_CACHE
    bertopic_version = C._version("bertopic")
    use_bertopic = not args.no_bertopic and bertopic_version != "not installed"
    thresholds = BERTOPIC_THRESHOLDS_QUICK if args.quick else BERTOPIC_THRESHOLDS
    st_model = embedder.inner._load() if use_bertopic else None  # type: ignore[attr-defined]

    results: list[dict[str, Any]] = []
    for spec in labelled_sets(ds):
        texts, raw = spec["texts"], spec["labels"]
        if args.quick:
            texts, raw = subsample(texts, raw, 60, args.seed)
        tax = load_taxonomy(spec["taxonomy"])
        amap = tax.alias_map()
        gold_all = [amap.get(lab.strip().lower()) for lab in raw]
        unmapped = sorted({lab for lab, g in zip(raw, gold_all, strict=True) if g is None})
        keep = [i for i, g in enumerate(gold_all) if g is not None]
        texts = [texts[i] for i in keep]
        gold = [gold_all[i] for i in keep]  # type: ignore[misc]
        C.log(f"{spec['key']}: {len(texts)} prompts, {len(set(gold))} classes, taxonomy {tax.id}")
        vecs = embedder.encode(texts)
        level = spec["level"]

        def lift(pred: list[str | None], _tax: Any = tax, _level: str = level) -> list[str | None]:
            return [roll_up(_tax, x) for x in pred] if _level == "root" else pred

        methods: dict[str, Any] = {}
        pred_ours, a_ours = predict_ours(tax, embedder, vecs, use_examples=True)
        pred_ours = lift(pred_ours)
        methods["ours"] = {**score(gold, pred_ours), **bootstrap_ci(gold, pred_ours, args.seed),
                           "anchored_share": round(float(a_ours.anchored.mean()), 4),
                           "per_class_f1": per_class_f1(gold, pred_ours)}
        pred_noex, _ = predict_ours(tax, embedder, vecs, use_examples=False)
        methods["ours-no-examples"] = score(gold, lift(pred_noex))
        pred_tfidf, no_overlap = predict_tfidf(tax, texts)
        methods["tfidf"] = {**score(gold, lift(pred_tfidf)), "no_word_overlap_share": round(no_overlap, 4)}
        pred_tfidf_def, no_overlap_def = predict_tfidf(tax, texts, use_examples=False)
        methods["tfidf-no-examples"] = {**score(gold, lift(pred_tfidf_def)),
                                        "no_word_overlap_share": round(no_overlap_def, 4)}
        if use_bertopic:
            sweep = []
            for thr in thresholds:
                try:
                    r = predict_bertopic(tax, st_model, texts, vecs, thr, args.seed)
                    sweep.append({"zeroshot_min_similarity": thr, **score(gold, lift(r["pred"])),
                                  **{k: v for k, v in r.items() if k != "pred"}})
                except Exception as exc:  # BERTopic can fail on tiny leftovers; record, don't hide
                    sweep.append({"zeroshot_min_similarity": thr, "error": f"{type(exc).__name__}: {exc}"[:300]})
            ok = [s for s in sweep if "accuracy" in s]
            default = next((s for s in ok if s["zeroshot_min_similarity"] == 0.7), None)
            best = max(ok, key=lambda s: s["macro_f1"]) if ok else None
            methods["bertopic"] = {"default": default, "best_in_sweep": best, "sweep": sweep,
                                   "note": "zero-shot topic list = principle names; best_in_sweep picks the "
                                           "threshold on the evaluated labels (optimistic)"}
        else:
            methods["bertopic"] = {"status": "not installed" if bertopic_version == "not installed" else "skipped"}

        # Leakage check: do the taxonomy's written examples repeat evaluated prompts?
        ex_texts = [t for leaf in tax.leaves() for t in leaf.examples]
        ex_norm = {C.norm(t) for t in ex_texts}
        ex_vecs = embedder.encode(ex_texts) if ex_texts else np.zeros((0, vecs.shape[1]), np.float32)
        max_sim = (vecs @ ex_vecs.T).max(axis=1) if len(ex_vecs) else np.zeros(len(vecs))
        leakage = {"exact_matches": int(sum(C.norm(t) in ex_norm for t in texts)),
                   "cosine_ge_0.9": int((max_sim >= 0.9).sum()), "cosine_ge_0.8": int((max_sim >= 0.8).sum()),
                   "median_max_cosine_to_examples": round(float(np.median(max_sim)), 4)}
        results.append({
            "key": spec["key"], "dataset": spec["dataset"], "taxonomy": tax.id, "level": level,
            "n": len(texts), "n_classes": len(set(gold)), "class_counts": dict(sorted(Counter(gold).items())),
            "unmapped_labels": unmapped, "majority_class_accuracy": round(Counter(gold).most_common(1)[0][1] / len(gold), 4),
            "methods": methods, "example_leakage": leakage,
        })

    C.log("benign/harmful separation")
    sep = separation(ds, embedder, args.seed, args.quick)
    C.emit(SCRIPT, args, {
        "embedding_model": embedder.model_id,
        "bertopic_version": bertopic_version,
        "bertopic_thresholds": thresholds if use_bertopic else [],
        "tfidf_settings": "TfidfVectorizer(stop_words='english', sublinear_tf=True) fitted on the anchor texts",
        "sets": results,
        "separation": sep,
    }, started=started)


if __name__ == "__main__":
    main()

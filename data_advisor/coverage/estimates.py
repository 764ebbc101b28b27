"""Applying reviewer labels to an audit, and the estimates of coverage.json (``estimates``) that they make possible.

Why the estimates use the *random* slice only: it is the one labelled sample whose mix of principles matches the
data, so its agreement with the assignment is an unbiased grade (the informative slice was picked near the
boundaries, where the assignment is worst).  Why cross-fitted: the head learns from every label, so each random
label is graded by a model trained without it (10 folds stratified by class, so every fold model keeps most
of each class's labels).

* ``accuracy``: share of unreviewed prompts whose anchor (or "unanchored") is right — the mean of the random slice's
  cross-fitted grades, Wilson 95 % interval (the brief measured Wilson at the nominal 95 % for n = 20–200; a
  percentile bootstrap of a proportion is no better there).
* ``anchors``: each principle's share of *all* prompts, corrected for the measured confusion.  The correction is the
  prediction-powered "rectifier" (Angelopoulos et al., Science 2023): share among unreviewed prompts = predicted share
  + mean(true − predicted) on the cross-fitted random slice.  It is adjusted classify-and-count without inverting a
  confusion matrix: QuaPy's ACC inverts a K×K matrix estimated from ~3 labels per column, which the brief measured to
  add more noise than it removes at these sizes (MAE 0.082 vs 0.042), so it is not used.  At ~30 random labels the
  plain rectifier still added noise to an already good labelled assignment (share MAE 1.59× classify-and-count on
  the shared sets), so it is shrunk toward zero by positive-part James–Stein (1.10×, and it keeps a large correction
  where the assignment is clearly biased).  Interval: the union of the percentile bootstrap intervals (random slice
  and unreviewed predictions resampled) of that estimator and of the unshrunk correction: the shrunk one alone held
  the gold share in 94 % of per-class intervals on average (mean width 0.11) but in 69 % on one draw where shrinkage
  dropped a real bias; the unshrunk one carries the correction's full uncertainty (joining the random slice's Wilson
  interval instead gave 99.5 % at twice the width).
  Reviewed prompts are counted exactly: share = (labelled count + estimated unreviewed count) / N.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor.coverage.assign import AnchorSet, Assignments
from data_advisor.coverage.labelled import LabelModel, base_rate_offset, one_blas_thread
from data_advisor.coverage.labels import NONE_LABEL, LabelMatch, ReviewLabels, load_labels
from data_advisor.coverage.taxonomy import Taxonomy

#: Folds of the cross-fit on the random slice (fewer labels: leave-one-out), stratified by class (:func:`fold_of`).
#: Measured on the shared sets (benchmarks/review_loop.py, 5 draws): 10 stratified folds and leave-one-out gave the
#: same accuracy-estimate error (0.027 user / 0.033 built-in) and interval coverage (do-not-answer-5 4/5 vs 5/5
#: draws), where the old 5 random folds missed 2 of 5 draws there (estimate 0.55 vs truth 0.67); 10 costs a third.
MAX_FOLDS = 10
#: Bootstrap resamples of the share intervals.
N_BOOT = 400
#: A class with at most this many random-slice labels or predictions (true or cross-fitted) gets the Wilson bound on
#: its correction as well: with 0–2 such events the bootstrap sees almost no variance and under-covers (the brief
#: measured 0.67 for a 1.3 % anchor at 65 labels).
FEW_EVENTS = 2
#: Fewest random labels for estimates; below this the report says "unverified" with the reason.
MIN_RANDOM = 10


def wilson(k: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def shrunk_rectifier(diff: np.ndarray) -> np.ndarray:
    """Positive-part James–Stein shrinkage of the mean rectifier (true − predicted one-hot, per class) toward 0.

    ``diff`` is (n, C).  The factor 1 − (C − 2)·σ̄² / ‖mean‖² keeps the correction where the measured confusion is
    large next to its own noise (a biased assignment) and drops it where it is mostly noise (a good one)."""
    n, c = diff.shape
    if n < 2:
        return np.zeros(c)
    mean = diff.mean(axis=0)
    noise = float((diff.var(axis=0, ddof=1) / n).mean())
    norm = float((mean ** 2).sum())
    factor = max(0.0, 1.0 - max(c - 2, 1) * noise / norm) if norm > 0 else 0.0
    return factor * mean


def fold_of(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number of each label, stratified: labels sorted by class (random order within a class) are dealt round
    robin, so a fold never takes more than ⌈count / n_folds⌉ labels of any class — a class with more labels than
    folds always keeps some in every training set (the old 5 random folds often took a class's only labels at
    25 labels over 5 principles, and graded a much worse model than the final one)."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(len(y)), y))
    folds = np.empty(len(y), dtype=np.int64)
    folds[order] = np.arange(len(y)) % n_folds
    return folds


def cross_fit(model: LabelModel, match: LabelMatch, seed: int) -> np.ndarray:
    """Out-of-fold class of every random-slice label (positions within ``match.idx[match.random]``): ``MAX_FOLDS``
    folds stratified by class (leave-one-out below that many labels); each fold's head starts from the final head's
    weights."""
    rand_pos = np.where(match.random)[0]
    out = np.empty(len(rand_pos), dtype=np.int64)
    n_folds = min(MAX_FOLDS, len(rand_pos))
    folds = fold_of(match.y[rand_pos], n_folds, seed)
    for f in range(n_folds):
        fold = np.where(folds == f)[0]
        held = rand_pos[fold]
        keep = np.setdiff1d(np.arange(len(match.idx)), held)
        pred, _ = model.predict(match.idx[keep], match.y[keep], rows=match.idx[held])
        out[fold] = pred
    return out


def compute_estimates(model: LabelModel, match: LabelMatch, pred: np.ndarray, class_ids: list[str],
                      seed: int) -> dict[str, Any]:
    """The ``estimates`` block of coverage.json (see the module docstring); ``pred`` is the final class of every
    prompt (reviewed ones already set to their label)."""
    n, c = len(pred), len(class_ids)
    y_r = match.y[match.random]
    n_r = len(y_r)
    if n_r < MIN_RANDOM:
        return {"status": "unverified",
                "reason": f"{n_r} random-slice labels; estimates need at least {MIN_RANDOM}",
                "n_labels": len(match.idx), "n_random": n_r}
    oof = cross_fit(model, match, seed)
    correct = oof == y_r
    lo, hi = wilson(float(correct.sum()), n_r)
    reviewed = np.zeros(n, dtype=bool)
    reviewed[match.idx] = True
    unrev = np.where(~reviewed)[0]
    lab_counts = np.bincount(match.y, minlength=c).astype(np.float64)
    pu = np.eye(c)[pred[unrev]] if len(unrev) else np.zeros((0, c))
    yr, fr = np.eye(c)[y_r], np.eye(c)[oof]

    def shares(pu_: np.ndarray, yr_: np.ndarray, fr_: np.ndarray, shrink: bool = True) -> np.ndarray:
        diff = yr_ - fr_
        est = (pu_.mean(axis=0) if len(pu_) else np.zeros(c)) + (shrunk_rectifier(diff) if shrink else diff.mean(0))
        est = np.clip(est, 0.0, 1.0)
        est = est / est.sum() if est.sum() > 0 else est
        return (lab_counts + len(unrev) * est) / n

    point = shares(pu, yr, fr)
    rng = np.random.default_rng(seed)
    boots = np.empty((2, N_BOOT, c))  # the shrunk estimator and the full correction, same resamples
    pbar = pu.mean(axis=0) if len(unrev) else np.zeros(c)
    for b in range(N_BOOT):
        i = rng.integers(0, n_r, n_r)
        # resampling the unreviewed predictions = a multinomial draw of their counts (same law, no N-row copy)
        pu_b = (rng.multinomial(len(unrev), pbar / pbar.sum()) / len(unrev))[None, :] if len(unrev) else pu
        boots[0, b] = shares(pu_b, yr[i], fr[i])
        boots[1, b] = shares(pu_b, yr[i], fr[i], shrink=False)
    pct = np.percentile(boots, [2.5, 97.5], axis=1)  # (2 bounds, 2 estimators, c)
    b_lo, b_hi = pct[0].min(axis=0), pct[1].max(axis=0)
    anchors: dict[str, Any] = {}
    raw = np.bincount(pred, minlength=c) / n
    for j, cid in enumerate(class_ids):
        lo_j = min(float(b_lo[j]), float(point[j]))
        hi_j = max(float(b_hi[j]), float(point[j]))
        if int(((yr[:, j] + fr[:, j]) > 0).sum()) <= FEW_EVENTS:  # the bootstrap sees ~no variance: bound the
            missed = float((yr[:, j] * (1 - fr[:, j])).sum())      # rectifier by Wilson on misses and false hits
            false = float((fr[:, j] * (1 - yr[:, j])).sum())
            base = float(pu[:, j].mean()) if len(unrev) else 0.0
            lo_j = min(lo_j, float(lab_counts[j] + len(unrev) * max(0.0, base - wilson(false, n_r)[1])) / n)
            hi_j = max(hi_j, float(lab_counts[j] + len(unrev) * min(1.0, base + wilson(missed, n_r)[1])) / n)
        floor = lab_counts[j] / n  # reviewed prompts are known exactly
        anchors[cid] = {"share": float(point[j]), "ci95": [max(lo_j, floor), max(hi_j, floor)],
                        "raw_share": float(raw[j])}
    return {
        "status": "estimated",
        "accuracy": {"value": float(correct.mean()), "ci95": [lo, hi], "n": n_r},
        "anchors": anchors,
        "n_labels": len(match.idx), "n_random": n_r, "n_informative": int((~match.random).sum()),
        "method": ("random-slice labels only, cross-fitted (10 folds stratified by class); "
                   "accuracy: Wilson 95%; shares of all prompts: "
                   "classify-and-count plus the James-Stein-shrunk PPI rectifier; 95% intervals: union of the percentile "
                   "bootstrap intervals of the shrunk and the unshrunk correction"),
    }


@dataclass
class LabelOutcome:
    """What applying labels produced: the new assignments, the reviewed mask, and the estimates block."""

    assignments: Assignments
    reviewed: np.ndarray
    estimates: dict[str, Any]
    info: dict[str, Any]


def make_label_model(assignments: Assignments, vectors: np.ndarray, anchors: AnchorSet,
                     graph: tuple[np.ndarray, np.ndarray] | None = None) -> LabelModel:
    """The fixed per-audit inputs of :class:`LabelModel` (anchor scores; the unlabelled gate's boundary; the kNN
    graph for smoothing, the audit's own or an exact one built here up to the refinement's size limit)."""
    from data_advisor.coverage.refine import RefineSettings, principle_score_matrix

    if graph is None and 3 <= len(vectors) <= RefineSettings().graph_max:
        from data_advisor.coverage.cluster import knn_graph

        graph = knn_graph(vectors, min(RefineSettings().k + 1, len(vectors)))

    scale = float(assignments.settings.get("harm_scale", 1.0) or 1.0)
    offset0 = float(assignments.settings.get("base_rate_offset", 0.0) or 0.0)
    return LabelModel(vectors=vectors, scores=principle_score_matrix(vectors, anchors),
                      relevance=assignments.harm_relevance, base_best=np.asarray(assignments.best),
                      base_anchored=np.asarray(assignments.anchored, dtype=bool), anchors=anchors,
                      scale=scale, offset0=offset0 + float(assignments.settings.get("margin_threshold", 0.0) or 0.0),
                      graph=graph)


def apply_labels(assignments: Assignments, vectors: np.ndarray, anchors: AnchorSet, prompt_ids: list[str],
                 labels: ReviewLabels, seed: int = 0,
                 graph: tuple[np.ndarray, np.ndarray] | None = None) -> LabelOutcome:
    """Assignments learned from ``labels`` (reviewed prompts take their label) and the estimates block."""
    class_ids = [*anchors.principle_ids, NONE_LABEL]
    match = labels.match(list(prompt_ids), class_ids)
    with one_blas_thread():
        return _apply(assignments, vectors, anchors, match, labels, class_ids, seed, graph)


def _apply(assignments: Assignments, vectors: np.ndarray, anchors: AnchorSet, match: LabelMatch, labels: ReviewLabels,
           class_ids: list[str], seed: int, graph: tuple[np.ndarray, np.ndarray] | None) -> LabelOutcome:
    """:func:`apply_labels` once the labels are matched to prompts."""
    model = make_label_model(assignments, vectors, anchors, graph)
    k = model.none_class
    if len(match.idx):
        pred, offset = model.predict(match.idx, match.y, keep=True)
    else:
        pred, offset = np.where(model.base_anchored, model.base_best, k), model.offset0
    pred[match.idx] = match.y
    reviewed = np.zeros(len(pred), dtype=bool)
    reviewed[match.idx] = True
    best = np.where(pred == k, model.base_best, pred)
    rows = np.arange(len(pred))
    score = model.scores[rows, best]
    masked = model.scores.copy()
    masked[rows, best] = -np.inf
    second = masked.argmax(axis=1) if model.scores.shape[1] > 1 else np.full(len(pred), -1)
    margin = score - masked[rows, second] if model.scores.shape[1] > 1 else score + 1.0
    info = {"source": labels.source, "n_labels": len(labels), "n_matched": len(match.idx),
            "n_random": int(match.random.sum()), "n_ignored": labels.n_ignored,
            "n_missing": len(match.missing), "missing_examples": match.missing[:5],
            "gate_offset": round(float(offset), 6), "head": "logistic regression on embeddings + anchor rows"}
    settings = {**assignments.settings, "labels": info}
    new = replace(assignments, best=best, score=score.astype(np.float32), second=np.asarray(second, dtype=np.int64),
                  margin=np.asarray(margin, dtype=np.float32), anchored=pred != k, settings=settings,
                  reviewed=reviewed)
    estimates = compute_estimates(model, match, pred, class_ids, seed)
    return LabelOutcome(new, reviewed, estimates, info)


def adapt_base_rate(assignments: Assignments) -> Assignments:
    """The gate's boundary moved for the set's estimated harmful base rate (module :mod:`labelled`); recorded in
    ``settings["base_rate"]``.  A no-op under the legacy rule (no calibrated harm score)."""
    if assignments.harm_score is None or assignments.harm_relevance is None or not len(assignments):
        return assignments
    scale = float(assignments.settings.get("harm_scale", 1.0) or 1.0)
    offset, pi = base_rate_offset(assignments.harm_score, scale)
    thr = float(assignments.settings.get("margin_threshold", 0.0) or 0.0)
    # the boundary only moves up, so only anchored prompts can change (a zero vector stays unanchored)
    anchored = assignments.anchored & (assignments.harm_relevance >= thr + offset)
    settings = {**assignments.settings, "base_rate_offset": round(offset, 6),
                "base_rate": {"estimated_harmful_share": round(pi, 4), "boundary_shift": round(offset, 6),
                              "method": "EM prior adjustment (Saerens et al. 2002) of harm_score; boundary only "
                                        "moves up"}}
    return replace(assignments, anchored=anchored, settings=settings)


def accuracy_line(estimates: dict[str, Any] | str) -> str:
    """The CLI summary's one line about how sure the numbers are."""
    if isinstance(estimates, dict) and estimates.get("status") == "estimated":
        acc = estimates["accuracy"]
        lo, hi = acc["ci95"]
        return (f"estimated accuracy on unreviewed prompts: {acc['value']:.0%} (95% interval {lo:.0%}–{hi:.0%}, "
                f"from {acc['n']} random-slice labels)")
    if isinstance(estimates, dict):
        return f"accuracy not estimated: {estimates.get('reason', 'too few random-slice labels')}"
    return ("numbers unchecked on this data: label a sample with `data-advisor review AUDIT --out review.jsonl`, "
            "then re-run `audit --labels review.jsonl`")


def read_labels(labels: ReviewLabels | str | Path | None, taxonomy: Taxonomy) -> ReviewLabels | None:
    """``labels`` loaded against ``taxonomy``'s leaves (a :class:`ReviewLabels` passes through; None stays None)."""
    if labels is None or isinstance(labels, ReviewLabels):
        return labels
    return load_labels(labels, [p.id for p in taxonomy.leaves()])


def label_step(assignments: Assignments, vectors: np.ndarray, anchors: AnchorSet, prompt_ids: list[str],
               labels: ReviewLabels | None, seed: int,
               graph: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Assignments, dict[str, Any] | str]:
    """The audit's label stage: (assignments, estimates block); without labels the assignments and "unverified".
    Labelled ids absent from the input are logged as a warning, not fatal."""
    if labels is None:
        return assignments, "unverified"
    outcome = apply_labels(assignments, vectors, anchors, prompt_ids, labels, seed=seed, graph=graph)
    if outcome.info["n_missing"]:
        from data_advisor._env import log

        log.warning("%d labelled id(s) of %s are not in this input (e.g. %s): ignored", outcome.info["n_missing"],
                    labels.source, ", ".join(outcome.info["missing_examples"][:3]))
    return outcome.assignments, outcome.estimates

"""Learning from reviewer labels, and the harm gate's boundary for this data's harmful base rate.

Three things, each small and measured in ``benchmarks/labels.py`` on the shared sets:

* **The harmful base rate without labels** (:func:`estimate_base_rate`).  The harm gate's threshold was fitted on
  benchmark sets that are about half harmful; on a mostly-benign set the same threshold anchors far too many prompts.
  Treating ``harm_score`` as P(harmful | x) under the calibration's prior, the EM of Saerens, Latinne & Decaestecker
  (Neural Computation 2002) finds the prior that makes the set's posteriors self-consistent; the boundary then moves by
  the log-odds change (only ever *up*: a set estimated more harmful than the benchmarks keeps the shipped boundary,
  so all-harmful sets stay anchored).
* **The gate's boundary from labels** (:func:`refit_gate`).  Labels ``"none"`` vs a principle say where this data's
  boundary lies.  One number (an offset on ``relevance``) is fitted by maximum a posteriori with the logistic slope
  kept from the shipped calibration and a Gaussian prior centred on the unlabelled boundary, so a handful of labels
  moves it only as far as they agree.
* **Which principle** (:class:`LabelHead`).  A class-balanced logistic regression on the frozen embeddings, trained
  on the labelled prompts plus every anchor vector as one row of its principle (so a principle no label hit is still
  a class), 3 × its log-probabilities added to the anchor scores' log-softmax (dev: chosen on the shared sets,
  where weight 3 beat 1 and head-only on average; a by-hand leave-one-dataset-out over that grid picked it in all but
  one fold), then label spreading over the audit's kNN graph with the refinement's own α and k.  The research brief
  measured a head like this
  at +0.12–0.14 macro-F1 from five labels per principle; SetFit was worse and 100× slower, so nothing is fine-tuned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data_advisor.coverage.assign import AnchorSet

#: Prior of the harm calibration: ``benchmarks/fit_harm.py`` fits the logistic scale with balanced classes.
CALIBRATION_PRIOR = 0.5
#: The base-rate boundary anchors a prompt when its prior-adjusted P(harmful | x) reaches this.  Below 0.5 because
#: the audit's use is F1-like (missing a harmful prompt costs more than one false alarm, as in the shipped fit); 0.3
#: was picked leave-one-dataset-out on the shared harmful + Alpaca mixes (every fold picked it; benchmarks/labels.py).
BASE_RATE_POSTERIOR = 0.3
#: Largest upward move of the boundary from the base-rate estimate, in units of the logistic scale (log-odds):
#: an estimate near 0 would otherwise push the boundary to infinity and leave genuinely harmful prompts unanchored.
MAX_BASE_RATE_SHIFT = 4.0
#: Prior width (log-odds) of the label-based boundary refit around the unlabelled boundary.
GATE_PRIOR_SD = 2.0
#: Inverse regularisation of the head (unit-norm vectors: C=1 shrinks too hard and under-calibrates).
HEAD_C = 10.0
#: Weight of the head's log-probabilities next to the anchor scores' log-softmax (temperature below).
HEAD_WEIGHT = 3.0
ANCHOR_TEMPERATURE = 0.05
#: Newton steps of a cross-fit fold's head, started from the head fitted on every label.
WARM_NEWTON_STEPS = 3


def logit(p: float) -> float:
    """log(p / (1 − p)), p clipped away from 0 and 1."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def estimate_base_rate(harm_score: np.ndarray, prior: float = CALIBRATION_PRIOR, iters: int = 500,
                       tol: float = 1e-7) -> float:
    """EM estimate of the share of harmful prompts (Saerens et al. 2002) from calibrated P(harm | x) under ``prior``.

    Hand-written (12 lines) rather than ``quapy.method.aggregative.EMQ.EM``: the audit then needs no quantification
    library at run time; the tests check both agree.
    """
    p = np.clip(np.asarray(harm_score, dtype=np.float64), 1e-9, 1 - 1e-9)
    if not len(p):
        return prior
    pi = prior
    for _ in range(iters):
        a = pi / prior * p
        b = (1 - pi) / (1 - prior) * (1 - p)
        new = float(np.mean(a / (a + b)))
        if abs(new - pi) < tol:
            pi = new
            break
        pi = new
    return pi


def base_rate_offset(harm_score: np.ndarray, scale: float, prior: float = CALIBRATION_PRIOR,
                     posterior: float = BASE_RATE_POSTERIOR) -> tuple[float, float]:
    """(offset on relevance, estimated harmful share): the boundary for this set's base rate, never below the
    shipped one.  relevance ≥ offset is anchored: the prior-adjusted posterior
    σ(relevance / scale + logit π̂ − logit prior) reaches ``posterior``, so the boundary moves only for sets estimated
    less than ``posterior`` harmful (all-harmful sets keep the shipped boundary)."""
    pi = estimate_base_rate(harm_score, prior)
    shift = min(max(logit(prior) - logit(pi) + logit(posterior), 0.0), MAX_BASE_RATE_SHIFT)
    return float(shift * scale), pi


def refit_gate(relevance: np.ndarray, harmful: np.ndarray, scale: float, prior_offset: float,
               prior_sd: float = GATE_PRIOR_SD, posterior: float = BASE_RATE_POSTERIOR) -> float:
    """The gate's decision offset (relevance ≥ offset anchored) learned from labelled prompts.

    Model: P(harmful | r) = σ((r − b) / scale) on this data, slope kept from the shipped calibration; b by maximum a
    posteriori with a Gaussian prior (sd ``prior_sd`` in log-odds) centred where the unlabelled boundary
    ``prior_offset`` puts it.  The labels are not re-weighted: the informative slice is chosen by relevance, which
    leaves P(harmful | r) unbiased, and the fitted b then carries this data's base rate (class-balanced weights had
    anchored 2–4× too many prompts on mostly-benign mixes).  Decision: the posterior reaches ``posterior``, as in the
    unlabelled base-rate boundary.  Solved by Newton's method (the loss is convex in b; no optimiser import)."""
    r = np.asarray(relevance, dtype=np.float64) / scale
    y = np.asarray(harmful, dtype=np.float64)
    shift = logit(posterior)  # decision = b + shift (in scale units)
    b0 = prior_offset / scale - shift
    if not len(r):
        return prior_offset
    b = b0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(r - b, -60, 60)))
        grad = float((y - p).sum()) + (b - b0) / prior_sd ** 2
        hess = float((p * (1 - p)).sum()) + 1.0 / prior_sd ** 2
        step = float(np.clip(grad / hess, -2.0, 2.0))
        b -= step
        if abs(step) < 1e-9:
            break
    return (b + shift) * scale


def anchor_log_softmax(scores: np.ndarray, temperature: float = ANCHOR_TEMPERATURE) -> np.ndarray:
    z = scores.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def one_blas_thread() -> Any:
    """A context that keeps BLAS on one thread: the head's matrices are small (a few hundred rows), and on a busy
    2-core machine threaded GEMMs of that size ran 10–40× slower than one thread (measured: 30 leave-one-out fits
    8.5 s threaded vs 0.7 s single-threaded).  No-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, sample_weight: np.ndarray, c: float,
                start: np.ndarray | None = None, tol: float = 1e-4, max_iter: int = 100) -> np.ndarray:
    """(D + 1, n_classes) weights (last row: intercepts) of a class-balanced, L2-regularised multinomial logistic
    regression: the objective of scikit-learn's ``LogisticRegression(C=c, class_weight="balanced")`` with sample
    weights, C · Σ wᵢ·ℓᵢ + ½‖W‖² (intercepts unpenalised), minimised by truncated Newton (conjugate gradients on exact
    Hessian-vector products, Armijo backtracking), as scikit-learn's ``newton-cg`` does.

    Why not scikit-learn or scipy.optimize: ``import sklearn.linear_model`` alone took 1–2 s of a 1 s cached re-audit
    and each of its fits another 0.4 s; scipy.optimize pulls in ~400 modules (0.3 s) that an unlabelled audit never
    loads; here a fit takes milliseconds, and ``start`` (a fit on a superset of the labels) lets the cross-fit folds
    converge in one or two steps.  Stops when the largest weight change is below ``tol``.  Classes absent from ``y``
    keep −∞ intercepts (never predicted)."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    m = int(present.sum())
    sw = np.asarray(sample_weight, dtype=np.float64)
    wcounts = np.bincount(y, weights=sw, minlength=n_classes)
    s = sw * (sw.sum() / (m * wcounts[y]))  # "balanced" class weights from weighted counts, as scikit-learn ≥ 1.6
    cols = np.where(present)[0]
    remap = np.full(n_classes, -1)
    remap[cols] = np.arange(m)
    onehot = np.eye(m)[remap[y]]
    xb = np.hstack([x, np.ones((n, 1))])
    cs = c * s[:, None]
    penal = np.ones((d + 1, 1))
    penal[d] = 0.0  # the intercept row is not penalised

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = xb @ w
        z -= z.max(axis=1, keepdims=True)
        tot = np.exp(z).sum(axis=1)
        return float((cs[:, 0] * (np.log(tot) - (z * onehot).sum(axis=1))).sum()) + 0.5 * float(
            (penal * w * w).sum()), z

    def back(r: np.ndarray) -> np.ndarray:  # xb.T @ r, in the order that a threaded GEMM does not slow 10×
        return (r.T @ xb).T

    w = np.zeros((d + 1, m)) if start is None else np.asarray(start, dtype=np.float64)[:, cols].copy()
    w[~np.isfinite(w)] = 0.0
    f, z = objective(w)
    for _ in range(max_iter):
        prob = np.exp(z)
        prob /= prob.sum(axis=1, keepdims=True)
        grad = back(cs * (prob - onehot)) + penal * w
        gnorm = float(np.abs(grad).sum())

        def hessp(v: np.ndarray, prob: np.ndarray = prob) -> np.ndarray:
            zv = xb @ v
            return back(cs * prob * (zv - (prob * zv).sum(axis=1, keepdims=True))) + penal * v

        # conjugate gradients for H·step = −grad, to the relative accuracy scikit-learn's newton-cg uses
        step, res = np.zeros_like(w), -grad
        direc, rr = res.copy(), float((res * res).sum())
        tol_cg = min(0.5, np.sqrt(gnorm)) * gnorm
        for _ in range(50):
            if float(np.abs(res).sum()) <= tol_cg:
                break
            hd = hessp(direc)
            curv = float((direc * hd).sum())
            if curv <= 0:
                break
            alpha = rr / curv
            step += alpha * direc
            res -= alpha * hd
            rr_new = float((res * res).sum())
            direc = res + (rr_new / rr) * direc
            rr = rr_new
        if not step.any():
            break
        slope = float((grad * step).sum())
        t = 1.0
        for _ in range(30):  # Armijo backtracking
            f_new, z_new = objective(w + t * step)
            if f_new <= f + 1e-4 * t * slope:
                break
            t *= 0.5
        w, f, z = w + t * step, f_new, z_new
        if float(np.abs(t * step).max()) < tol:
            break
    out = np.zeros((d + 1, n_classes))
    out[:, cols] = w
    out[d, ~present] = -np.inf
    return out


def softmax_log_proba(weights: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(n, K) log-probabilities of :func:`fit_softmax` weights (absent classes −∞)."""
    z = np.asarray(vectors, dtype=np.float64) @ weights[:-1] + weights[-1]
    z = np.where(np.isfinite(weights[-1]), z, -np.inf)
    mx = z.max(axis=1, keepdims=True)
    return z - mx - np.log(np.exp(z - mx).sum(axis=1, keepdims=True))


@dataclass
class LabelHead:
    """Logistic regression over leaf principles on frozen embeddings, anchor vectors as extra rows."""

    anchors: AnchorSet
    c: float = HEAD_C
    weight: float = HEAD_WEIGHT
    label_weight: float = 1.0  # sample weight of a labelled prompt relative to one anchor row
    temperature: float = ANCHOR_TEMPERATURE
    #: Weights of a head fitted on a superset of these labels: they start the fit (cross-fit folds converge in a
    #: fraction of the iterations; same optimum, the problem is convex).
    warm: Any = None
    #: Newton steps of the fit (from ``warm``, a few suffice: leaving one label out moves the optimum a little and
    #: Newton converges quadratically; on the shared sets 3 steps changed <0.01 % of predictions).
    max_iter: int = 100
    fitted: Any = field(default=None, init=False)

    def log_proba(self, vectors: np.ndarray, x_lab: np.ndarray, y_lab: np.ndarray) -> np.ndarray:
        """(n, K) log-probabilities of the leaf principles for ``vectors`` (K = number of leaves), trained on
        ``x_lab`` / ``y_lab`` (leaf indices) plus the anchor rows."""
        k = self.anchors.n_principles
        x = np.vstack([self.anchors.vectors, x_lab])
        y = np.concatenate([self.anchors.owner, y_lab]).astype(np.int64)
        present = np.unique(y)
        if len(present) < 2:
            out = np.full((len(vectors), k), -np.inf)
            out[:, present] = 0.0
            return out
        sw = np.concatenate([np.ones(len(self.anchors.owner)), np.full(len(y_lab), self.label_weight)])
        self.fitted = fit_softmax(x, y, k, sw, self.c, start=self.warm, max_iter=self.max_iter)
        return softmax_log_proba(self.fitted, vectors)

    def predict(self, vectors: np.ndarray, scores: np.ndarray, x_lab: np.ndarray, y_lab: np.ndarray) -> np.ndarray:
        """Leaf index per row: argmax of head log-probability · weight + anchor log-softmax."""
        lp = self.log_proba(vectors, x_lab, y_lab)
        if self.temperature <= 0:
            return lp.argmax(axis=1)
        return (self.weight * lp + anchor_log_softmax(scores, self.temperature)).argmax(axis=1)


def neighbour_matrix(graph: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(neighbour indices, row-normalised similarity weights), both (n, k), of each prompt's k = 10 nearest
    neighbours (self left out), as the refinement's label spreading uses them.  Dense (n, k) arrays rather than a
    scipy sparse matrix: the labelled audit then never imports scipy (0.3 s of a 1 s re-audit)."""
    from data_advisor.coverage.refine import RefineSettings

    idx, dist = graph
    k = min(RefineSettings().k, idx.shape[1] - 1)
    if k < 1:
        return None
    w = np.clip(1.0 - dist[:, 1 : k + 1], 0.0, None).astype(np.float64)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    return np.asarray(idx[:, 1 : k + 1], dtype=np.int64), w


def spread(log_scores: np.ndarray, weights: tuple[np.ndarray, np.ndarray] | None, seed_idx: np.ndarray,
           seed_y: np.ndarray) -> np.ndarray:
    """Leaf index per prompt after label spreading of the head's scores over the kNN graph (``weights`` from
    :func:`neighbour_matrix`; the refinement's α = 0.5 and 10 iterations; labelled prompts seed their own class).
    Measured on the shared sets: +0.009 macro-F1 on average, better on 8 of 10 set/taxonomy pairs."""
    from data_advisor.coverage.refine import RefineSettings

    cfg = RefineSettings()
    z = log_scores - log_scores.max(axis=1, keepdims=True)
    y = np.exp(z)
    y /= y.sum(axis=1, keepdims=True)
    y[seed_idx] = np.eye(y.shape[1])[seed_y]
    if weights is None:
        return y.argmax(axis=1)
    f = y
    for _ in range(cfg.iterations):
        f = cfg.alpha * np.einsum("nk,nkc->nc", weights[1], f[weights[0]]) + (1.0 - cfg.alpha) * y
    return np.asarray(f).argmax(axis=1)


@dataclass
class LabelModel:
    """Everything one labelled prediction needs, fixed per audit: the vectors, anchor scores, harm relevance, the
    unlabelled assignment and the gate's unlabelled boundary.  :meth:`predict` trains on any subset of the labels,
    so the estimates can cross-fit (a label never grades a model that learned from it)."""

    vectors: np.ndarray
    scores: np.ndarray  # (n, K) max cosine per leaf principle
    relevance: np.ndarray | None  # (n,) harm relevance (None: legacy rule, gate left alone)
    base_best: np.ndarray  # (n,) leaf index of the unlabelled (refined) assignment
    base_anchored: np.ndarray  # (n,) bool, the unlabelled gate
    anchors: AnchorSet
    scale: float = 1.0
    offset0: float = 0.0  # the unlabelled boundary on relevance (base-rate offset)
    head: Any = field(default=None, init=False)  # the head fitted on all labels: warm start of the cross-fit folds
    #: The prompts' kNN graph (indices, cosine distances; self in column 0) for label spreading; None: no smoothing.
    graph: tuple[np.ndarray, np.ndarray] | None = None
    _weights: Any = field(default=None, init=False)

    @property
    def none_class(self) -> int:
        return self.anchors.n_principles

    def predict(self, train_idx: np.ndarray, train_y: np.ndarray, rows: np.ndarray | None = None,
                *, keep: bool = False) -> tuple[np.ndarray, float]:
        """(class per row of ``rows`` (all prompts when None), K = none; the gate offset used) learned from the
        labelled prompts ``train_idx`` with classes ``train_y``.  ``keep``: remember this head (fitted on every
        label) as the warm start of later fits."""
        rows = np.arange(len(self.vectors)) if rows is None else rows
        k = self.none_class
        harmful = train_y != k
        offset = self.offset0
        if self.relevance is not None:
            if len(train_idx):  # one class only still teaches: all-harmful labels lower the boundary
                offset = refit_gate(self.relevance[train_idx], harmful, self.scale, self.offset0)
            anchored = self.relevance[rows] >= offset
        else:
            anchored = self.base_anchored[rows]
        if harmful.any():
            warm = None if keep else self.head
            head = LabelHead(self.anchors, warm=warm, max_iter=100 if warm is None else WARM_NEWTON_STEPS)
            x_lab, y_lab = self.vectors[train_idx[harmful]], train_y[harmful]
            if self.graph is None:
                best = head.predict(self.vectors[rows], self.scores[rows], x_lab, y_lab)
            else:  # the whole set is scored, so the spreading sees every neighbour
                z = head.weight * head.log_proba(self.vectors, x_lab, y_lab) + anchor_log_softmax(self.scores)
                if self._weights is None:
                    self._weights = neighbour_matrix(self.graph)
                best = spread(z, self._weights, train_idx[harmful], y_lab)[rows]
            if keep:
                self.head = head.fitted
        else:
            best = self.base_best[rows]
        return np.where(anchored, best, k), offset

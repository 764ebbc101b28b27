"""``--embedder cascade``: static first, the exact transformer only where the anchor decision is in doubt.

Agreement with the exact model is high by construction and the share re-embedded is reported
(:meth:`CascadeEmbedder.describe`).  The exact stage is chosen explicitly by whoever builds the cascade (the registry's
``cascade_exact``: ``onnx`` or ``st``) and is part of the cascade's ``model_id``, so it is recorded in coverage.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from data_advisor.coverage.embedding.base import Embedder, EmbedderBase, as_embedder

if TYPE_CHECKING:
    from data_advisor.coverage.assign import AnchorAssigner, AnchorSet

#: Default share of prompts (at least ``CALIBRATION_MIN``) embedded exactly to calibrate the cascade.
CALIBRATION_SHARE = 0.02
CALIBRATION_MIN = 2000
#: The cascade picks its confidence threshold so that the estimated share of prompts keeping the exact
#: embedder's anchor decision is at least this (estimated out-of-fold on the calibration sample).
DEFAULT_TARGET_AGREEMENT = 0.995


@dataclass
class CascadeStats:
    """What the last :meth:`CascadeEmbedder.encode` did."""

    n: int = 0
    n_exact: int = 0  # embedded by the exact stage (calibration sample included)
    n_calibration: int = 0
    threshold: float = 0.0  # confidence below which a prompt was re-embedded exactly
    estimated_agreement: float = 1.0  # out-of-fold estimate on the calibration sample
    map_cosine: float = 0.0  # mean cosine of mapped static vs exact vectors (out-of-fold, calibration sample)
    mode: str = "exact"  # "exact" (no anchors or a small input) or "cascade"

    @property
    def exact_share(self) -> float:
        return self.n_exact / self.n if self.n else 0.0


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    xb = np.hstack([x, np.ones((len(x), 1), dtype=x.dtype)]).astype(np.float64)
    gram = xb.T @ xb
    gram[np.diag_indices_from(gram)] += lam
    return np.linalg.solve(gram, xb.T @ y.astype(np.float64)).astype(np.float32)


def _apply_map(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    m = x @ w[:-1] + w[-1]
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


class CascadeEmbedder(EmbedderBase):
    """Static first, the exact transformer only where the anchor decision is in doubt.

    Anchor-aware by design (an embedding cascade cannot know "confident" without the anchors): call
    :meth:`set_anchors` with the audit's :class:`~data_advisor.coverage.assign.AnchorSet` (built with *this*
    embedder, so the anchors themselves are exact vectors) before encoding prompts. Then ``encode``:

    1. embeds every prompt with the static model (thousands per second);
    2. embeds a seeded calibration sample exactly (``calibration_share`` of the prompts, at least
       ``calibration_min``) and fits a ridge-regression map from static to exact vectors on it, so every output
       vector lives in the exact model's space (clustering, duplicates and Vendi stay meaningful);
    3. scores each mapped vector against the anchors; its *confidence* is the smallest of the distances to the
       three decision boundaries (runner-up principle margin, harm-vs-background margin, ``min_score``);
    4. picks the lowest confidence threshold whose out-of-fold agreement on the calibration sample is at least
       ``target_agreement``, and re-embeds exactly every prompt under it.

    So a prompt's anchor decision is the exact model's unless the mapped static vector was confidently on one
    side of every boundary. Without anchors, or for inputs no larger than the calibration sample, every prompt
    is embedded exactly. ``last`` reports the share re-embedded and the estimated agreement.
    """

    backend = "cascade"

    @property
    def encodes_whole_input(self) -> bool:
        """It calibrates on a sample of what it is given (and chunks internally): wrappers pass every text at once."""
        return True

    def __init__(self, fast: Embedder, exact: Embedder, *, target_agreement: float = DEFAULT_TARGET_AGREEMENT,
                 calibration_share: float = CALIBRATION_SHARE, calibration_min: int = CALIBRATION_MIN,
                 seed: int = 0, chunk_size: int = 50_000) -> None:
        self.fast = as_embedder(fast)
        self.exact = as_embedder(exact)
        self.target_agreement = target_agreement
        self.calibration_share = calibration_share
        self.calibration_min = calibration_min
        self.seed = seed
        self.chunk_size = chunk_size
        self._assigner: AnchorAssigner | None = None
        self.last = CascadeStats()

    @property
    def model_id(self) -> str:
        return (f"cascade[{self.fast.model_id} > {self.exact.model_id}]"
                f"@target={self.target_agreement},cal={self.calibration_share}/{self.calibration_min},seed={self.seed}")

    @property
    def dim(self) -> int:
        return self.exact.dim

    def set_anchors(self, anchors: AnchorSet, *, margin_threshold: float | None = None,
                    min_score: float | None = None, use_background: bool = True) -> bool:
        """The anchors (exact vectors) and assignment settings that define a "confident" decision."""
        from data_advisor.coverage.assign import DEFAULT_MARGIN_THRESHOLD, DEFAULT_MIN_SCORE, AnchorAssigner

        self._assigner = AnchorAssigner(
            margin_threshold=DEFAULT_MARGIN_THRESHOLD if margin_threshold is None else margin_threshold,
            min_score=DEFAULT_MIN_SCORE if min_score is None else min_score, use_background=use_background,
        ).fit(anchors)
        return True

    def describe(self) -> str | None:
        """One line on what the last call did: the share embedded exactly and the estimated agreement."""
        s = self.last
        if s.n == 0:
            return None
        if s.mode != "cascade":
            why = "no anchors" if self._assigner is None else "input no larger than the calibration sample"
            return f"cascade: all {s.n:,} prompts embedded exactly ({why})"
        return (f"cascade: {s.n_exact:,} of {s.n:,} prompts ({s.exact_share:.1%}) embedded exactly (calibration "
                f"sample {s.n_calibration:,}); estimated agreement with the exact model {s.estimated_agreement:.2%}")

    def info(self) -> dict[str, Any]:
        return {"backend": self.backend, "exact_stage": self.exact.info(), "exact_share": round(self.last.exact_share, 6)}

    def _confidence(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, decision) of each vector: decision = principle index, or −1 when unanchored."""
        assert self._assigner is not None
        a = self._assigner.assign(vectors)
        conf = np.minimum(a.margin, np.abs(a.score - self._assigner.min_score))
        if a.settings.get("use_background"):
            conf = np.minimum(conf, np.abs(a.relevance - self._assigner.margin_threshold))
        return conf, np.where(a.anchored, a.best, -1)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        n = len(texts)
        m = min(n, max(self.calibration_min, round(self.calibration_share * n)))
        if self._assigner is None or n <= m:
            self.last = CascadeStats(n=n, n_exact=n, mode="exact")
            return self.exact.encode(texts, show_progress=show_progress)
        rng = np.random.default_rng(self.seed)
        cal = np.sort(rng.choice(n, size=m, replace=False))
        out = np.zeros((n, self.dim), dtype=np.float32)
        out[cal] = self.exact.encode([texts[i] for i in cal], show_progress=show_progress)
        x_cal = self.fast.encode([texts[i] for i in cal])
        # Out-of-fold mapped vectors of the calibration sample → threshold for the target agreement.
        folds = rng.permutation(m) % 2
        mapped = np.zeros_like(out[cal])
        for f in (0, 1):
            w = _ridge(x_cal[folds != f], out[cal][folds != f], lam=1e-4 * m)
            mapped[folds == f] = _apply_map(x_cal[folds == f], w)
        conf, dec = self._confidence(mapped)
        _, exact_dec = self._confidence(out[cal])
        wrong = dec != exact_dec
        order = np.argsort(-conf, kind="stable")  # most confident first
        wrong_kept = np.cumsum(wrong[order])  # wrong decisions kept if the top-k most confident stay static
        ok = np.where(1.0 - wrong_kept / m >= self.target_agreement)[0]
        if len(ok) == 0:  # not even the most confident prompt may stay static
            threshold = float("inf")
        else:
            k = int(ok[-1])  # the k+1 most confident may stay static: the threshold is the next one's confidence
            threshold = float(conf[order[k + 1]]) if k + 1 < m else float("-inf")
        est = 1.0 - float(wrong[conf > threshold].sum()) / m  # prompts at or under the threshold are re-embedded
        map_cos = float((mapped * out[cal]).sum(1).mean())
        w = _ridge(x_cal, out[cal], lam=1e-4 * m)
        is_cal = np.zeros(n, dtype=bool)
        is_cal[cal] = True
        rest = np.where(~is_cal)[0]
        n_exact = m
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(rest), desc="cascade (static → exact)", unit="prompt")
        for start in range(0, len(rest), self.chunk_size):
            idx = rest[start : start + self.chunk_size]
            v = _apply_map(self.fast.encode([texts[i] for i in idx]), w)
            c, _ = self._confidence(v)
            redo = c <= threshold
            if redo.any():
                v[redo] = self.exact.encode([texts[i] for i in idx[redo]])
                n_exact += int(redo.sum())
            out[idx] = v
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        self.last = CascadeStats(n=n, n_exact=n_exact, n_calibration=m, threshold=threshold,
                                 estimated_agreement=est, map_cosine=map_cos, mode="cascade")
        return out



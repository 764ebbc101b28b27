"""Harm relevance: is a prompt a safety-relevant (harmful) request at all, whatever taxonomy it is audited against?

Why a separate stage: the old "unanchored" rule compared the best of ~285 benign background vectors with the best
of a taxonomy's own anchor vectors.  The side with more vectors wins by count, so a user's one-sentence taxonomy
(6–12 vectors) left most clearly harmful prompts unanchored.  Here the decision no longer depends on the user's
taxonomy or on vector counts:

* the *harm pool* is every built-in taxonomy's leaf anchor texts (definitions and examples), plus the audited
  taxonomy's own anchors;
* ``raw = mean of the top-k cosines to the harm pool − mean of the top-k cosines to the background``, with the same
  ``k`` on both sides (k=30), so a side's size does not decide the outcome;
* ``relevance = raw − threshold`` (0 is the decision boundary) and ``harm_score = sigmoid(relevance / scale)``
  in [0, 1].

The two numbers (threshold, scale) are the only things fitted on data.  They live in ``harm_calibration.json``
next to this module, written by ``benchmarks/fit_harm.py``, which also records the data sources and the
leave-one-dataset-out scores.  No prompt of any dataset is shipped.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from data_advisor.coverage.embedding.base import Embedder
from data_advisor.coverage.taxonomy import Taxonomy, builtin_taxonomies, load_taxonomy

CALIBRATION_FILE = "harm_calibration.json"
#: Top-k mean on both sides (harm pool, background).  30 lies on the flat part of the AUROC curve (k=10…60 differ by
#: ≤ 0.02 on the shared sets) and is small next to both pools (≈1,400 harm and ≈285 background vectors).
DEFAULT_TOP_K = 30


@dataclass(frozen=True)
class HarmCalibration:
    """Decision threshold on ``raw`` and the logistic scale that maps it to [0, 1]."""

    threshold: float
    scale: float
    k: int = DEFAULT_TOP_K
    #: The embedding model the numbers were fitted for ("" = any): cosines of another model live on another scale.
    embedding_model: str = ""

    def applies_to(self, model_id: str) -> bool:
        """Whether these numbers were fitted for vectors of ``model_id``: the same model, its ONNX export, or a
        cascade whose exact stage is that model.  A static (distilled) model or any other model is not covered."""
        m = self.embedding_model
        if not m or not model_id or model_id == m:
            return True
        return (model_id.startswith("onnx[") and model_id.endswith("]:" + m)) or \
            (model_id.startswith("cascade[") and f"> {m}]" in model_id)

    def uncalibrated(self) -> HarmCalibration:
        """The fallback for a model the numbers were not fitted for: the boundary at 0 (the prompt's harm-pool
        neighbours closer than its background neighbours), the same scale and k."""
        return HarmCalibration(threshold=0.0, scale=self.scale, k=self.k, embedding_model="")

    @classmethod
    def load(cls, path: Path | None = None) -> HarmCalibration:
        """The shipped calibration (or one written by ``benchmarks/fit_harm.py`` at ``path``)."""
        if path is None:
            text = (resources.files("data_advisor.coverage") / CALIBRATION_FILE).read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        data = json.loads(text)
        return cls(threshold=float(data["threshold"]), scale=float(data["scale"]), k=int(data["k"]),
                   embedding_model=str(data.get("embedding_model") or ""))


def builtin_harm_texts(exclude: tuple[str, ...] = ()) -> list[str]:
    """Anchor texts of every built-in taxonomy's leaves (definitions first, then examples), de-duplicated."""
    return list(_builtin_harm_texts(tuple(sorted(exclude))))


@functools.cache
def _builtin_harm_texts(exclude: tuple[str, ...]) -> tuple[str, ...]:
    """Parsed once per process (~0.1 s of YAML): the built-in files do not change while it runs."""
    return tuple(dict.fromkeys(t for name in builtin_taxonomies() if name not in exclude
                               for leaf in load_taxonomy(name).leaves() for t in leaf.anchor_texts()))


def harm_pool_texts(taxonomy: Taxonomy | None = None, exclude: tuple[str, ...] = ()) -> list[str]:
    """The built-in harm texts plus the audited taxonomy's own anchor texts."""
    base = builtin_harm_texts(exclude)
    if taxonomy is None:
        return base
    seen = set(base)
    extra = [t for leaf in taxonomy.leaves() for t in leaf.anchor_texts() if t not in seen]
    return base + list(dict.fromkeys(extra))


def embed_harm_pool(embedder: Embedder, taxonomy: Taxonomy | None = None,
                    exclude: tuple[str, ...] = ()) -> np.ndarray:
    return np.ascontiguousarray(embedder.encode(harm_pool_texts(taxonomy, exclude)), dtype=np.float32)


def top_k_mean(vectors: np.ndarray, pool: np.ndarray, k: int, batch_size: int = 8192) -> np.ndarray:
    """Mean of each row's k largest cosines to ``pool`` (vectors normalised), computed in batches."""
    k = max(1, min(int(k), len(pool)))
    out = np.empty(len(vectors), dtype=np.float32)
    pool_t = np.ascontiguousarray(pool, dtype=np.float32).T
    for s in range(0, len(vectors), batch_size):
        sims = np.asarray(vectors[s : s + batch_size], dtype=np.float32) @ pool_t
        part = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        out[s : s + len(sims)] = part.mean(axis=1)
    return out


class HarmScorer:
    """``relevance`` (0 = decision boundary) and ``harm_score`` in [0, 1] of prompt vectors."""

    def __init__(self, harm_vectors: np.ndarray, background_vectors: np.ndarray,
                 calibration: HarmCalibration | None = None) -> None:
        if not len(harm_vectors) or not len(background_vectors):
            raise ValueError("HarmScorer needs non-empty harm and background pools")
        self.harm_vectors = harm_vectors
        self.background_vectors = background_vectors
        self.calibration = calibration or HarmCalibration.load()

    def raw(self, vectors: np.ndarray) -> np.ndarray:
        k = self.calibration.k
        return top_k_mean(vectors, self.harm_vectors, k) - top_k_mean(vectors, self.background_vectors, k)

    def relevance(self, vectors: np.ndarray) -> np.ndarray:
        return (self.raw(vectors) - self.calibration.threshold).astype(np.float32)

    def harm_score(self, relevance: np.ndarray) -> np.ndarray:
        return to_harm_score(relevance, self.calibration.scale)


def to_harm_score(relevance: np.ndarray, scale: float) -> np.ndarray:
    """Logistic map of relevance to [0, 1]; 0.5 exactly at the decision boundary."""
    z = np.clip(np.asarray(relevance, dtype=np.float64) / max(scale, 1e-6), -60.0, 60.0)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

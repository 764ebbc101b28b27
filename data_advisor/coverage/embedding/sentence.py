"""The exact transformer backend (``--embedder st``): the light loader or sentence-transformers, chosen explicitly.

Two loaders give the same vectors for plain mean-pooling models (max |Δ| < 1e-5, ``tests/coverage/test_light_st.py``):
``light`` (:mod:`.light`: tokenizers + transformers, half the import time) and ``sentence-transformers`` (every
model the library supports).  ``loader="auto"`` (the default) takes ``light`` exactly when the model folder is a
plain ``Transformer → Pooling(mean) → Normalize`` layout, else sentence-transformers; :attr:`loader_used` says which
ran and ``run_info.json`` records it.  No environment variable changes the choice.  Both run canonical batches
(:mod:`.batching`), so a vector never depends on the batch it was computed in; ``batch_size`` changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from data_advisor import _env
from data_advisor.coverage.embedding.backends import LOADERS, Loader
from data_advisor.coverage.embedding.base import EmbedderBase
from data_advisor.coverage.embedding.batching import CANONICAL_BATCH, canonical_batches, filled
from data_advisor.coverage.embedding.models import DEFAULT_MODEL, offline_hub, resolve_model
from data_advisor.errors import InputError

if TYPE_CHECKING:
    from data_advisor.coverage.embedding.light import LightMeanPoolEncoder



class SentenceTransformerEmbedder(EmbedderBase):
    """The transformer itself; the model loads lazily on first use (importing torch costs seconds)."""

    backend = "st"

    def __init__(self, embedding_model: str = DEFAULT_MODEL, *, batch_size: int = 64, device: str | None = None,
                 max_seq_length: int | None = None, loader: Loader = "auto") -> None:
        if loader not in LOADERS:
            raise InputError(f"unknown loader {loader!r}", f"use one of {', '.join(LOADERS)}")
        self.embedding_model = embedding_model
        self.batch_size = batch_size
        self.device = device
        self.max_seq_length = max_seq_length
        self.loader = loader
        self._load_path, base_id, self._local = resolve_model(embedding_model)
        self._model_id = base_id + (f"|msl={max_seq_length}" if max_seq_length else "")
        self._st: Any = None
        self._light: LightMeanPoolEncoder | None = None
        self._chosen: str | None = None

    @property
    def model(self) -> str:
        """Deprecated spelling of :attr:`embedding_model`."""
        return self.embedding_model

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def model_loaded(self) -> bool:
        """Whether the model was loaded (by either loader) in this process."""
        return self._st is not None or self._light is not None

    @property
    def loader_used(self) -> str | None:
        """``light`` or ``sentence-transformers`` once the model is loaded (None before)."""
        return self._chosen if self.model_loaded else None

    def _choose(self) -> str:
        """The loader this model gets: the explicit one, or for ``auto`` the light one exactly on a plain layout."""
        if self._chosen is None:
            from data_advisor.coverage.embedding.light import plain_mean_pooling_layout

            plain = self._local and plain_mean_pooling_layout(Path(self._load_path)) is not None
            if self.loader == "light" and not plain:
                raise InputError(f"the light loader runs only plain mean-pooling local models; {self.embedding_model!r} "
                                 "is not one", "use loader='auto' or 'sentence-transformers'")
            self._chosen = "light" if self.loader == "light" or (self.loader == "auto" and plain) else \
                "sentence-transformers"
        return self._chosen

    def _light_encoder(self) -> LightMeanPoolEncoder | None:
        if self._choose() != "light":
            return None
        if self._light is None:
            from data_advisor.coverage.embedding.light import LightMeanPoolEncoder, plain_mean_pooling_layout

            max_len = plain_mean_pooling_layout(Path(self._load_path)) or 512
            _env.log.info(f"loading the embedding model {self.embedding_model!r}: importing torch and transformers "
                          "(the slow part of a first run; later runs read cached embeddings and skip it)")
            try:
                with offline_hub():  # a local model must never touch the hub
                    self._light = LightMeanPoolEncoder(Path(self._load_path), self.max_seq_length or max_len,
                                                       device=self.device or "cpu")
            except Exception:  # unreadable files: sentence-transformers' loader reports them in one line
                if self.loader == "light":
                    raise
                self._chosen = "sentence-transformers"
        return self._light

    def _load(self) -> Any:
        if self._st is None:
            _env.log.info(f"loading the embedding model {self.embedding_model!r}: importing torch and "
                          "sentence-transformers (~10 s, the slow part of a first run; later runs read cached "
                          "embeddings and skip it)")
            with offline_hub(self._local):  # a local model must never touch the hub
                from sentence_transformers import SentenceTransformer

                try:
                    st = SentenceTransformer(self._load_path, device=self.device or "cpu")
                except Exception as exc:  # OSError, ValueError, HTTP errors… all mean "cannot load that model"
                    raise InputError(
                        f"cannot load embedding model {self.embedding_model!r}: {str(exc).splitlines()[0][:200]}",
                        "pass --embedding-model default (bundled, offline), a local sentence-transformers folder, "
                        "or a hub name while online",
                    ) from None
            if self.max_seq_length:
                st.max_seq_length = self.max_seq_length
            self._st = st
        return self._st

    @property
    def dim(self) -> int:
        light = self._light_encoder()
        if light is not None:
            return light.dim
        st = self._load()
        get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        light = self._light_encoder()
        if light is not None:
            if not texts:
                return np.zeros((0, light.dim), dtype=np.float32)
            return light.encode(texts, batch_size=self.batch_size, show_progress=show_progress)
        st = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Canonical batches (see .batching): one token length, CANONICAL_BATCH rows, so the library pads nothing.
        stripped = [str(t).strip() for t in texts]
        lengths = [len(ids) for ids in st.tokenizer(stripped, truncation=True, max_length=st.max_seq_length)["input_ids"]]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for idx in canonical_batches(lengths):
            vecs = st.encode(filled([stripped[i] for i in idx]), batch_size=CANONICAL_BATCH, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
            out[idx] = vecs[: len(idx)]
        return out

    def info(self) -> dict[str, Any]:
        return {"backend": self.backend, "loader": self.loader, "loader_used": self.loader_used}

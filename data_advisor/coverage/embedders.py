"""The embedder factory: one name (``--embedder``) → a ready backend behind the disk cache.

A module of its own so that the base stage (:mod:`~data_advisor.coverage.embed`: the protocol, the
sentence-transformers backend and the cache) never imports the faster backends of
:mod:`~data_advisor.coverage.fast_embed`, which themselves build on the assignment stage (the cascade): the
import graph stays one-way, ``embed ← assign ← fast_embed ← embedders``.
"""

from __future__ import annotations

from pathlib import Path

from data_advisor.coverage.embed import DEFAULT_MODEL, CachedEmbedder, SentenceTransformerEmbedder, default_cache_dir


def make_embedder(model: str = DEFAULT_MODEL, *, cache: bool = True, cache_dir: Path | None = None,
                  batch_size: int = 64, embedder: str = "st") -> CachedEmbedder:
    """The embedder the CLI and :func:`data_advisor.audit` use: sentence-transformers behind the disk cache.

    ``embedder`` picks the backend (``--embedder``): ``st`` (sentence-transformers, default), or one of the faster
    backends of :mod:`data_advisor.coverage.fast_embed` (``onnx``, ``onnx-int8``, ``static``, ``cascade``).
    """
    root = (cache_dir or default_cache_dir()) if cache else None
    if embedder != "st":  # fast_embed.py owns the other backends
        from data_advisor.coverage.fast_embed import make_fast_embedder

        return make_fast_embedder(embedder, model, cache_dir=root, batch_size=batch_size)
    return CachedEmbedder(SentenceTransformerEmbedder(model, batch_size=batch_size), root)

"""Builds the embedding backends that :mod:`.backends` lists (``--embedder``) for the CLI, the Python API and Ray.

:func:`make_embedder` builds a backend by name, behind the disk cache where caching pays, with the shipped anchor
vectors injected as the cache's seed filler.  Every choice a backend makes is an argument here (the exact model's
``loader``, the cascade's ``cascade_exact`` stage), never an environment variable or what happens to be installed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from data_advisor.coverage.embedding.anchor_seed import fill_from_seed
from data_advisor.coverage.embedding.backends import (
    CASCADE_EXACT,
    DEFAULT_CASCADE_EXACT,
    LOADERS,
    Loader,
    check_embedder_name,
)
from data_advisor.coverage.embedding.base import Embedder
from data_advisor.coverage.embedding.cache import default_cache_dir
from data_advisor.coverage.embedding.cached import CachedEmbedder
from data_advisor.coverage.embedding.models import DEFAULT_MODEL
from data_advisor.coverage.embedding.onnx import onnx_available
from data_advisor.coverage.embedding.sentence import SentenceTransformerEmbedder
from data_advisor.errors import InputError


def make_embedder(embedding_model: str = DEFAULT_MODEL, *, cache: bool = True, cache_dir: Path | None = None,
                  batch_size: int = 64, embedder_name: str = "st", loader: Loader = "auto",
                  cascade_exact: str = DEFAULT_CASCADE_EXACT, seed: int = 0, embedder: str | None = None) -> CachedEmbedder:
    """The backend ``embedder_name`` for ``embedding_model``, behind the disk cache (``cache=False``: none).

    ``static`` never uses the disk cache (embedding is faster than looking vectors up); ``cascade`` caches its exact
    stage under that stage's own model id (shared with ``--embedder onnx``/``st`` runs) and recomputes its cheap static
    stage.  ``loader`` picks the exact transformer's loader (see :mod:`.sentence`); ``cascade_exact`` the cascade's
    exact stage (``onnx`` needs onnxruntime: a one-line error says so instead of silently using ``st``).
    ``embedder=`` is the deprecated spelling of ``embedder_name``.
    """
    if embedder is not None:
        warnings.warn("make_embedder(embedder=...) is deprecated: pass embedder_name=...", DeprecationWarning,
                      stacklevel=2)
        embedder_name = embedder
    check_embedder_name(embedder_name)
    if loader not in LOADERS:
        raise InputError(f"unknown loader {loader!r}", f"use one of {', '.join(LOADERS)}")
    root = (cache_dir or default_cache_dir()) if cache else None

    def cached(inner: Embedder, folder: Path | None) -> CachedEmbedder:
        return CachedEmbedder(inner, folder, seed_filler=fill_from_seed)

    if embedder_name == "st":
        return cached(SentenceTransformerEmbedder(embedding_model, batch_size=batch_size, loader=loader), root)
    if embedder_name in ("onnx", "onnx-int8"):
        from data_advisor.coverage.embedding.onnx import OnnxEmbedder

        variant = "fp32" if embedder_name == "onnx" else "int8"
        return cached(OnnxEmbedder(embedding_model, variant=variant, batch_size=batch_size), root)

    from data_advisor.coverage.embedding.static import StaticEmbedder

    if embedder_name == "static":
        return cached(StaticEmbedder(embedding_model), None)
    from data_advisor.coverage.embedding.cascade import CascadeEmbedder

    if cascade_exact not in CASCADE_EXACT:
        raise InputError(f"unknown cascade exact stage {cascade_exact!r}", f"use one of {', '.join(CASCADE_EXACT)}")
    if cascade_exact == "onnx" and not onnx_available():
        raise InputError("the cascade's exact stage onnx needs onnxruntime",
                         'pip install "data-advisor[fast]", or pass --cascade-exact st')
    exact = make_embedder(embedding_model, cache=cache, cache_dir=cache_dir, batch_size=batch_size,
                          embedder_name=cascade_exact, loader=loader)
    return cached(CascadeEmbedder(StaticEmbedder(embedding_model), exact, seed=seed), None)

"""The cache wrapper: any :class:`~.base.Embedder` behind the on-disk :class:`~.cache.EmbeddingCache`.

Texts already embedded by the same model come from disk; duplicates inside one call are embedded once.  What fills
the cache besides the model (the shipped anchor vectors of :mod:`.anchor_seed`) is injected as ``seed_filler`` by
whoever builds the wrapper (the registry), so the cache depends on no particular data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor.coverage.embedding.base import Embedder, EmbedderBase, as_embedder
from data_advisor.coverage.embedding.cache import (
    ENCODE_CHUNK,
    CacheDamaged,
    EmbeddingCache,
    notice,
    read_meta,
    slug,
    text_key,
)

SeedFiller = Callable[[EmbeddingCache, str, Sequence[bytes]], int]
"""``(cache, model_id, missing keys) -> rows added``: copies precomputed vectors of missing texts into the cache."""

@dataclass
class CacheStats:
    """What the last ``encode`` call did: how many unique texts came from the cache vs the model, and how many
    cached vectors were damaged (and so embedded again)."""

    hits: int = 0
    misses: int = 0
    damaged: int = 0


class _DimMismatch(Exception):
    """Internal: the model's vectors do not have the width the cache's meta.json claims."""


class CachedEmbedder(EmbedderBase):
    """Wraps any :class:`Embedder`; texts already embedded by the same model come from disk.

    Duplicate texts inside one call are embedded once.  ``cache_dir=None`` disables the cache.  ``seed_filler``
    (optional) is asked for the texts the cache misses before the model is (see :data:`SeedFiller`).  Every hook of
    the protocol is forwarded to ``inner``.
    """

    def __init__(self, inner: Embedder, cache_dir: Path | None = None, *, seed_filler: SeedFiller | None = None) -> None:
        self.inner = as_embedder(inner)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.seed_filler = seed_filler
        self._cache: EmbeddingCache | None = None
        self.last = CacheStats()

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def backend(self) -> str:  # type: ignore[override]
        return str(getattr(self.inner, "backend", ""))

    @property
    def encodes_whole_input(self) -> bool:
        return self.inner.encodes_whole_input

    def set_anchors(self, anchors: object, *, margin_threshold: float | None = None,
                    min_score: float | None = None, use_background: bool = True) -> bool:
        return self.inner.set_anchors(anchors, margin_threshold=margin_threshold, min_score=min_score,
                                      use_background=use_background)

    def describe(self) -> str | None:
        """The backend's own line, else what the cache did."""
        line = self.inner.describe()
        if line is None and self.last.hits + self.last.misses:
            line = f"embeddings: {self.last.misses:,} computed, {self.last.hits:,} from cache"
        return line

    def info(self) -> dict[str, Any]:
        return {**self.inner.info(), "cache": self.cache_dir is not None,
                "cache_hits": self.last.hits, "cache_misses": self.last.misses, "cache_damaged": self.last.damaged}

    @property
    def dim(self) -> int:
        cache = self._get_cache()
        return cache.dim if cache is not None else self.inner.dim

    def _get_cache(self) -> EmbeddingCache | None:
        if self.cache_dir is None:
            return None
        if self._cache is None:
            # An existing cache knows the dimension: a fully cached call never loads the model (saves ~10 s).
            meta_path = self.cache_dir / slug(self.inner.model_id) / "meta.json"
            try:
                meta = read_meta(meta_path)
            except CacheDamaged:
                meta = None  # EmbeddingCache moves the damaged folder aside and says so
            dim = meta["dim"] if meta is not None and meta["model_id"] == self.inner.model_id else self.inner.dim
            self._cache = EmbeddingCache(self.cache_dir, self.inner.model_id, int(dim))  # type: ignore[call-overload]
        return self._cache

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Vectors of ``texts`` in input order; cache hits are read and checked, misses embedded and appended.

        Memory stays at one output array plus one chunk: hits are copied from the memory map
        :data:`ENCODE_CHUNK` rows at a time, misses are embedded and written to the cache a chunk at a time (so a
        killed million-prompt audit resumes from the last chunk), and when the texts have no duplicates the unique
        array *is* the result (no reordering copy). A cached row that fails its check is embedded again, with one
        line on stderr saying how many and in which folder.
        """
        try:
            return self._encode(texts, show_progress=show_progress)
        except _DimMismatch as exc:  # meta.json lied about the width: the folder cannot be trusted
            cache = self._cache
            assert cache is not None
            cache.dim = int(self.inner.dim)
            cache.recover(str(exc))
            return self._encode(texts, show_progress=show_progress)

    def _embed(self, texts: list[str], cache: EmbeddingCache | None, show_progress: bool) -> np.ndarray:
        vecs = np.ascontiguousarray(self.inner.encode(texts, show_progress=show_progress), dtype=np.float32)
        if cache is not None and vecs.ndim == 2 and vecs.shape[1] != cache.dim:
            raise _DimMismatch(f"meta.json says dim {cache.dim} but the model gives {vecs.shape[1]}")
        return vecs

    def _encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        unique: dict[bytes, int] = {}
        first_text: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in unique:
                unique[k] = len(unique)
                first_text[k] = t
        ukeys = list(unique)
        cache = self._get_cache()
        found, damaged = cache.lookup_entries(ukeys) if cache is not None else ({}, 0)
        missed = [k for k in ukeys if k not in found] if cache is not None and self.seed_filler is not None else []
        if missed and self.seed_filler(cache, self.inner.model_id, missed):  # type: ignore[arg-type,misc]
            found, damaged = cache.lookup_entries(ukeys)  # type: ignore[union-attr]
        if not found:
            missing = ukeys
            uvecs = None
        else:
            uvecs = np.zeros((len(ukeys), self.dim), dtype=np.float32)
            hit_keys = [k for k in ukeys if k in found]
            bad: list[bytes] = []
            for start in range(0, len(hit_keys), ENCODE_CHUNK):
                chunk = hit_keys[start : start + ENCODE_CHUNK]
                vecs, ok = cache.read_checked([found[k] for k in chunk])  # type: ignore[union-attr]
                good = [k for k, g in zip(chunk, ok, strict=True) if g]
                uvecs[[unique[k] for k in good]] = vecs[ok]
                bad.extend(k for k, g in zip(chunk, ok, strict=True) if not g)
                del vecs
            damaged += len(bad)
            for k in bad:
                del found[k]
            missing = [k for k in ukeys if k not in found]
        # An embedder that must see the whole input (the cascade calibrates on it) gets every miss in one call.
        step = max(1, len(missing)) if self.inner.encodes_whole_input else ENCODE_CHUNK
        if uvecs is None and len(missing) <= step:
            # One call embeds every unique text, in order: its output is the result (no second n×d array).
            uvecs = self._embed([first_text[k] for k in missing], cache, show_progress) if missing else \
                np.zeros((0, self.dim), dtype=np.float32)
            if cache is not None:
                cache.put(missing, uvecs)
        else:
            if uvecs is None:
                uvecs = np.zeros((len(ukeys), self.dim), dtype=np.float32)
            for start in range(0, len(missing), step):
                chunk = missing[start : start + step]
                new = self._embed([first_text[k] for k in chunk], cache, show_progress)
                uvecs[[unique[k] for k in chunk]] = new
                if cache is not None:
                    cache.put(chunk, new)
                del new
        if damaged and cache is not None:  # said once the model has confirmed the cache's width
            msg = (f"embedding cache {cache.dir}: {damaged:,} cached vector(s) were damaged or missing "
                   "and were embedded again")
            cache.notices.append(msg)
            notice(msg)
        self.last = CacheStats(hits=len(found), misses=len(missing), damaged=damaged)
        if len(ukeys) == len(keys):  # no duplicates: unique order is input order
            return uvecs
        return uvecs[[unique[k] for k in keys]]

"""The shipped anchor vectors: current, equal to the model's own, used only for the model that made them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_advisor.coverage.anchor_seed_build import seed_texts
from data_advisor.coverage.assign import build_anchors
from data_advisor.coverage.embedding.anchor_seed import SEED_FILE, fill_from_seed
from data_advisor.coverage.embedding.cache import text_key
from data_advisor.coverage.embedding.cached import CachedEmbedder
from data_advisor.coverage.taxonomy import load_background, load_taxonomy


class Counting:
    """An embedder that delegates to the real model and counts the texts it was asked to embed."""

    def __init__(self, inner, model_id: str | None = None) -> None:
        self.inner = inner
        self._model_id = model_id or inner.model_id
        self.texts = 0

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return 384

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.encode(texts)


def test_seed_covers_every_builtin_anchor_and_matches_the_model(embedder: CachedEmbedder) -> None:
    with np.load(SEED_FILE, allow_pickle=False) as z:
        meta, keys, vectors = json.loads(str(z["meta"])), z["keys"], z["vectors"]
    assert meta["model_id"] == embedder.model_id
    index = {bytes(k): i for i, k in enumerate(keys)}
    texts = seed_texts()
    stale = [t for t in texts if text_key(t) not in index]
    assert not stale, (f"{len(stale)} built-in anchor texts are not in {SEED_FILE.name} (e.g. {stale[0]!r}): "
                       "run `python -m data_advisor.coverage.anchor_seed_build`")
    sample = texts[:: max(1, len(texts) // 12)]
    fresh = embedder.inner.encode(sample)  # the model itself, not the cache
    shipped = vectors[[index[text_key(t)] for t in sample]]
    np.testing.assert_allclose(shipped, fresh, atol=2e-5)


def test_first_anchors_on_an_empty_cache_embed_nothing(embedder: CachedEmbedder, tmp_path: Path) -> None:
    counting = Counting(embedder.inner)
    fresh = CachedEmbedder(counting, tmp_path / "emb", seed_filler=fill_from_seed)  # as make_embedder injects it
    anchors = build_anchors(load_taxonomy("catqa-11"), fresh, load_background())
    assert counting.texts == 0  # every anchor text came from the shipped vectors
    again = build_anchors(load_taxonomy("catqa-11"), embedder, load_background())
    np.testing.assert_allclose(anchors.vectors, again.vectors, atol=2e-5)
    fresh.encode(["a prompt nobody wrote before, about gardening on the moon"])
    assert counting.texts == 1  # other texts are embedded as usual


def test_seed_is_not_used_for_another_model(embedder: CachedEmbedder, tmp_path: Path) -> None:
    counting = Counting(embedder.inner, model_id="some-other-model")
    fresh = CachedEmbedder(counting, tmp_path / "emb", seed_filler=fill_from_seed)  # as make_embedder injects it
    build_anchors(load_taxonomy("simplesafetytests-5"), fresh, None)
    assert counting.texts == sum(len(p.anchor_texts()) for p in load_taxonomy("simplesafetytests-5").leaves())


def test_make_embedder_injects_the_seed_filler_and_the_bare_cache_has_none(tmp_path: Path) -> None:
    from data_advisor.coverage.embedding.registry import make_embedder

    assert make_embedder(cache_dir=tmp_path).seed_filler is fill_from_seed
    assert CachedEmbedder(Counting(make_embedder(cache=False).inner), tmp_path).seed_filler is None

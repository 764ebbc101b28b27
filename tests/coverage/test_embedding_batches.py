"""A vector never depends on the batch it was computed in: batch size, the other texts, a warm or an empty cache.

The README promises that ``--no-cache`` never changes a result; before canonical batches the same 400 prompts
embedded with ``--batch-size 64`` and ``7`` differed by up to 6.1e-5 and their coverage.json differed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_advisor.coverage.embedding.batching import CANONICAL_BATCH, canonical_batches, filled
from data_advisor.coverage.embedding.cached import CachedEmbedder
from data_advisor.coverage.embedding.sentence import SentenceTransformerEmbedder


def _texts(sample_prompts: list[str]) -> list[str]:
    """Varied lengths, with many texts sharing a token length (full and partial canonical batches)."""
    extra = [f"{p} Please answer in {n} words." for n, p in enumerate(sample_prompts)]
    return [*sample_prompts, *extra, *(f"question number {i}" for i in range(20))]


def test_canonical_batches_cover_every_text_once_with_one_length_each() -> None:
    lengths = np.random.default_rng(0).integers(1, 12, size=200)
    batches = list(canonical_batches(lengths))
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(200))
    assert all(len(b) <= CANONICAL_BATCH and len(set(lengths[b].tolist())) == 1 for b in batches)
    assert filled(["a", "b"]) == ["a", "b"] + ["a"] * (CANONICAL_BATCH - 2)


@pytest.mark.parametrize("loader", ["light", "sentence-transformers"])
def test_vectors_do_not_depend_on_batch_size_or_companions(sample_prompts: list[str], loader: str) -> None:
    texts = _texts(sample_prompts)
    big = SentenceTransformerEmbedder(batch_size=64, loader=loader)  # type: ignore[arg-type]
    small = SentenceTransformerEmbedder(batch_size=7, loader=loader)  # type: ignore[arg-type]
    reference = big.encode(texts)
    np.testing.assert_array_equal(small.encode(texts), reference)
    order = np.random.default_rng(1).permutation(len(texts))[: len(texts) // 3]  # other companions, other order
    np.testing.assert_array_equal(big.encode([texts[i] for i in order]), reference[order])
    one = big.encode([texts[5]])  # alone
    np.testing.assert_array_equal(one[0], reference[5])


def test_warm_and_empty_cache_give_the_same_vectors(sample_prompts: list[str], tmp_path: Path) -> None:
    texts = _texts(sample_prompts)
    inner = SentenceTransformerEmbedder()
    fresh = CachedEmbedder(inner, None).encode(texts)  # --no-cache
    warm = CachedEmbedder(inner, tmp_path)
    warm.encode(texts[::3])  # an earlier run cached a third of them, in its own batches
    np.testing.assert_array_equal(warm.encode(texts), fresh)
    assert warm.last.hits == len(set(texts[::3]))

"""Canonical batches: a text's vector never depends on which other texts were embedded with it.

Why: a transformer run on a padded batch gives each text a vector that depends on the batch: the padded length
changes the order of the float32 sums in attention and pooling, and the number of rows can change which matrix
kernel runs.  Measured on 400 hh-rlhf prompts: ``--batch-size 64`` vs ``7`` differed by up to 6.1e-5, so a cache
filled by one run's batches changed the next run's anchors and metrics.  Here every forward pass holds exactly
:data:`CANONICAL_BATCH` rows of one token length and no padding: texts are grouped by their token count, a group is
cut into batches of that many rows in input-independent order, and the last batch of a group is filled with copies
of its first text (their outputs are dropped).  So the shape a text is computed in, and its own row's arithmetic,
depend on the text alone; ``--batch-size`` no longer changes a vector, and neither does a warm or an empty cache
(``tests/coverage/test_embedding_batches.py`` checks both loaders bit for bit).

Rounding vectors to a grid instead was rejected: a difference of 1e-7 still straddles a grid line for some of 384
components, so it only makes rare differences larger.

Two recipes, both fixed-shape.  :func:`bucketed_batches` (the light loader and ONNX, i.e. the default path): each
text is padded to a length that depends on its own token count alone (:func:`padded_length`: multiples of 8 up to
64 tokens, then of 32) and every pass holds :data:`BUCKET_ROWS` rows of one padded length; the attention mask and
the masked mean make the padding inert, and the shape is the text's own.  Measured on 600 hh-rlhf prompts
(``benchmarks/embedding_batches.py``): about 0.9× the former padded batches' speed, where one token length per
pass (:func:`canonical_batches`, eight rows, no padding) ran at 0.3-0.4× (many small passes, mostly filler).  The
sentence-transformers loader pads each batch to its longest text itself, so it keeps :func:`canonical_batches`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")

CANONICAL_BATCH = 8
"""Rows in every forward pass of the exact backends (st, onnx).  Changing it changes vectors: bump
:data:`~data_advisor.coverage.embedding.cache.VECTOR_FORMAT` with it."""


def _groups(keys: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    """Positions grouped by equal ``keys`` (smallest first, input order within a key), cut into ``batch``-sized runs."""
    order = np.argsort(keys, kind="stable")
    if not len(order):
        return
    cuts = np.flatnonzero(np.diff(keys[order])) + 1
    for group in np.split(order, cuts):
        for start in range(0, len(group), batch):
            yield group[start : start + batch]


def canonical_batches(lengths: Sequence[int] | np.ndarray, batch: int = CANONICAL_BATCH) -> Iterator[np.ndarray]:
    """Positions of the texts in each forward pass: one token length per batch, at most ``batch`` texts, shortest
    lengths first (within a length, input order: a text's row position does not change its row's arithmetic)."""
    yield from _groups(np.asarray(lengths, dtype=np.int64), batch)


BUCKET_ROWS = 32
"""Rows in every forward pass of :func:`bucketed_batches`.  Changing it (or :func:`padded_length`) changes vectors:
bump :data:`~data_advisor.coverage.embedding.cache.VECTOR_FORMAT` with it."""


def padded_length(n_tokens: int) -> int:
    """The length a text of ``n_tokens`` tokens is padded to: a function of the text alone (8-token steps up to 64,
    where most prompts fall, then 32-token steps), so padding wastes little and never depends on other texts."""
    step = 8 if n_tokens <= 64 else 32
    return max(step, -(-int(n_tokens) // step) * step)


def bucketed_batches(lengths: Sequence[int] | np.ndarray,
                     batch: int = BUCKET_ROWS) -> Iterator[tuple[np.ndarray, int]]:
    """(positions, padded length) of each forward pass: texts grouped by :func:`padded_length`, at most ``batch``
    per pass (fill the rest with :func:`filled`), shortest first, input order within a group."""
    padded = np.asarray([padded_length(int(n)) for n in lengths], dtype=np.int64)
    for idx in _groups(padded, batch):
        yield idx, int(padded[idx[0]])


def filled(rows: Sequence[T], batch: int = CANONICAL_BATCH) -> list[T]:
    """``rows`` followed by copies of its first row up to ``batch`` rows (the copies' outputs are dropped)."""
    rows = list(rows)
    return rows + [rows[0]] * (batch - len(rows))

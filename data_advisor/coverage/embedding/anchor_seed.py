"""Shipped embeddings of the built-in taxonomies' anchor texts, so a first audit embeds only its own prompts.

Why: on an empty cache the README example (150 prompts against ``catqa-11``) embedded ~440 anchor and background
texts besides its 147 unique prompts: three quarters of its embedding time.  The anchors of every built-in taxonomy
and of the benign background are the same for every user of the bundled model, so their vectors ship with the package
(``taxonomies/anchor_vectors.npz``, float32, made by this module from the bundled model) and are copied into the
embedding cache when an audit asks for one of those texts and the cache does not hold it yet.

Nothing changes what a vector is: the file records the model id it was made with and is used only for that id; keys
are the cache's own text keys, so an edited example or a user's taxonomy simply misses and is embedded as before.
Rebuild after editing a built-in taxonomy: ``python -m data_advisor.coverage.anchor_seed_build`` (a test says when it is
stale).  The registry passes :func:`fill_from_seed` to the cache wrapper as its ``seed_filler``; the cache itself
knows nothing of this file.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from data_advisor.coverage.embedding.cache import EmbeddingCache

SEED_FILE = Path(__file__).resolve().parent.parent / "taxonomies" / "anchor_vectors.npz"


@functools.cache
def _load(path: Path) -> tuple[str, dict[bytes, int], np.ndarray] | None:
    """(model id, text key → row, vectors) of a seed file; None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            keys, vectors = z["keys"], z["vectors"]
    except (OSError, ValueError, KeyError):
        return None
    if vectors.ndim != 2 or len(keys) != len(vectors):
        return None
    return str(meta.get("model_id")), {bytes(k): i for i, k in enumerate(keys)}, vectors


def fill_from_seed(cache: EmbeddingCache, model_id: str, missing: Sequence[bytes], *, path: Path = SEED_FILE) -> int:
    """Put the shipped vectors of any of the ``missing`` keys into ``cache`` (only when the seed was made by
    ``model_id`` with the cache's dimension); returns how many.  Only texts an audit asks for are copied, so a cache
    never holds seed rows it does not use."""
    seed = _load(path)
    if seed is None or seed[0] != model_id or seed[2].shape[1] != cache.dim:
        return 0
    _, index, vectors = seed
    hits = [k for k in missing if k in index]
    if hits:
        cache.put(hits, np.ascontiguousarray(vectors[[index[k] for k in hits]], dtype=np.float32))
    return len(hits)

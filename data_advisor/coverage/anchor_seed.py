"""Shipped embeddings of the built-in taxonomies' anchor texts, so a first audit embeds only its own prompts.

Why: on an empty cache the README example (150 prompts against ``catqa-11``) embedded ~440 anchor and background
texts besides its 147 unique prompts: three quarters of its embedding time.  The anchors of every built-in taxonomy
and of the benign background are the same for every user of the bundled model, so their vectors ship with the package
(``taxonomies/anchor_vectors.npz``, float32, made by this module from the bundled model) and are copied into the
embedding cache the first time a cache for that exact model is opened.

Nothing changes what a vector is: the file records the model id it was made with and is used only for that id; keys
are the cache's own text keys, so an edited example or a user's taxonomy simply misses and is embedded as before.
Rebuild after editing a built-in taxonomy: ``python -m data_advisor.coverage.anchor_seed_build`` (a test says when it is
stale).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from data_advisor.coverage.embed import EmbeddingCache

SEED_FILE = Path(__file__).resolve().parent / "taxonomies" / "anchor_vectors.npz"


def seed_texts() -> list[str]:
    """Every anchor text of every built-in taxonomy and of the background, deduplicated, in a stable order."""
    from data_advisor.coverage.taxonomy import builtin_taxonomies, load_background, load_taxonomy

    texts: dict[str, None] = {}
    for name in builtin_taxonomies():
        for leaf in load_taxonomy(name).leaves():
            texts.update(dict.fromkeys(leaf.anchor_texts()))
    for leaf in load_background().leaves():
        texts.update(dict.fromkeys(leaf.anchor_texts()))
    return list(texts)


def _file_tag(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def seed_cache(cache: EmbeddingCache, model_id: str, *, path: Path = SEED_FILE) -> int:
    """Copy the shipped anchor vectors into ``cache`` once (when made by ``model_id``); returns how many were added.

    A marker file per seed file makes later opens free; a damaged or foreign seed file is ignored (the texts are
    then embedded as usual).
    """
    if not path.exists():
        return 0
    marker = cache.dir / f".anchor-seed-{_file_tag(path)}"
    if marker.exists():
        return 0
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            keys = z["keys"]
            vectors = z["vectors"]
    except (OSError, ValueError, KeyError):
        return 0
    if meta.get("model_id") != model_id or vectors.ndim != 2 or vectors.shape[1] != cache.dim or len(keys) != len(vectors):
        return 0
    key_list = [bytes(k) for k in keys]
    present = cache.lookup(key_list)
    missing = [i for i, k in enumerate(key_list) if k not in present]
    if missing:
        cache.put([key_list[i] for i in missing], np.ascontiguousarray(vectors[missing], dtype=np.float32))
    marker.touch()
    return len(missing)

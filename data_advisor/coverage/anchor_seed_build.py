"""Rebuild the shipped anchor vectors (``taxonomies/anchor_vectors.npz``): ``python -m data_advisor.coverage.anchor_seed_build``.

Apart from :mod:`~data_advisor.coverage.embedding.anchor_seed` because building needs the embedding model and the
built-in taxonomies, while the seed filler the registry injects into the cache must not:
``anchor_seed_build → embedding.sentence, embedding.anchor_seed``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_advisor.coverage.embedding.anchor_seed import SEED_FILE


def seed_texts() -> list[str]:
    """Every anchor text of every built-in taxonomy and of the background, deduplicated, in a stable order."""
    from data_advisor.coverage.harm import builtin_harm_texts
    from data_advisor.coverage.taxonomy import load_background

    background = (t for leaf in load_background().leaves() for t in leaf.anchor_texts())
    return list(dict.fromkeys([*builtin_harm_texts(), *background]))


def build(path: Path = SEED_FILE) -> Path:
    """Embed :func:`seed_texts` with the bundled model (no cache) and write the seed file atomically."""
    import io

    from data_advisor.coverage.embedding.cache import text_key
    from data_advisor.coverage.embedding.models import DEFAULT_MODEL
    from data_advisor.coverage.embedding.sentence import SentenceTransformerEmbedder
    from data_advisor.io import write_bytes_atomic

    embedder = SentenceTransformerEmbedder(DEFAULT_MODEL)
    texts = seed_texts()
    vectors = embedder.encode(texts)
    keys = np.frombuffer(b"".join(text_key(t) for t in texts), dtype=np.uint8).reshape(len(texts), 16)
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps({"model_id": embedder.model_id, "n": len(texts)})), keys=keys,
             vectors=np.ascontiguousarray(vectors, dtype=np.float32))
    write_bytes_atomic(path, buf.getvalue())
    return path


if __name__ == "__main__":
    print(f"wrote {build()}")

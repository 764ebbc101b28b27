"""Cluster cache: a re-audit of the same prompts reuses discovery (and the k-NN graph) instead of recomputing them.

Why: UMAP + HDBSCAN are most of a cached re-audit (35.9 of 42.4 s at 10k on 2 cores), yet they depend only on the
vectors and the discovery settings, never on the taxonomy.  Users re-audit the same data against a second taxonomy,
another target, an edited description: all of that changes the anchor mapping, the emergent flags and the metrics
(recomputed on every run from the cached clusters), never the clusters themselves.

Key: the sha256 of the float32 vectors (shape included), the embedding model id, every discovery setting
(:meth:`ClusterDiscovery.cache_params`, with :data:`~data_advisor.coverage.cluster.DISCOVERY_VERSION`), this file's
:data:`CACHE_FORMAT` and the versions of the libraries that compute the result.  Any change gives a new key; stale
entries are never read.

Storage: ``<DATA_ADVISOR_CACHE>/clusters/<kind>/<key[:2]>/<key>.npz``, written atomically (``io.write_bytes_atomic``:
temp file, fsync, rename), so a reader sees a complete entry or none.  An entry that is still unreadable (a damaged
disk, a hand edit, a format from another version) fails its zip CRC or shape checks: it is reported as a warning,
deleted and recomputed; nothing wrong is ever used.  Delete the folder to clear the cache; ``--no-cache`` bypasses it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor import _env
from data_advisor.coverage.cluster import ClusterDiscovery, ClusterResult, KnnGraph, build_knn_graph
from data_advisor.io import write_bytes_atomic

#: Bump when the stored layout changes.
CACHE_FORMAT = 1
#: Libraries whose version can change a discovery result for the same vectors and settings.
_LIBRARIES = ("umap-learn", "pynndescent", "numba", "hdbscan", "scikit-learn", "scipy", "numpy", "faiss-cpu")
_DIGEST_CHUNK = 65_536


@cache
def library_versions() -> dict[str, str]:
    """Installed versions of :data:`_LIBRARIES` (package metadata only: nothing heavy is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in _LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


def vectors_digest(vectors: np.ndarray) -> str:
    """sha256 of the vectors as C-ordered float32 rows, their shape included (hashed in chunks: no full copy)."""
    h = hashlib.sha256(f"{tuple(vectors.shape)}|float32|".encode())
    for start in range(0, len(vectors), _DIGEST_CHUNK):
        h.update(np.ascontiguousarray(vectors[start : start + _DIGEST_CHUNK], dtype=np.float32).tobytes())
    return h.hexdigest()


def _key(kind: str, parts: dict[str, Any]) -> str:
    doc = {"kind": kind, "format": CACHE_FORMAT, "libraries": library_versions(), **parts}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class ClusterCache:
    """Discovery results and k-NN graphs on disk, keyed by what decides them.  ``notes`` (clusters read from the
    cache) and ``warnings`` (damaged entries recomputed, a cache that could not be written; also logged when they
    happen) are what a user should hear about this process's use of it; nothing of it reaches coverage.json."""

    root: Path
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[str]:
        """Notes then warnings, for the run's report."""
        return [*self.notes, *self.warnings]

    @classmethod
    def default(cls) -> ClusterCache:
        """The cache under ``$DATA_ADVISOR_CACHE/clusters`` (beside the embedding cache)."""
        return cls(_env.cache_root() / "clusters")

    # ------------------------------------------------------------------------------------------ storage
    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.npz"

    def _read(self, kind: str, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        path = self._path(kind, key)
        if not path.exists():
            return None
        try:
            if not path.is_file():  # a folder, a pipe (np.load would wait on it forever), a socket
                raise ValueError("not a regular file")
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}  # reads every member: zip CRCs are checked here
            meta = json.loads(str(arrays.pop("meta")))
            if meta.get("key") != key or meta.get("format") != CACHE_FORMAT:
                raise ValueError("its key or format does not match its name")
            return arrays, meta
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            self._damaged(path, exc)
            return None

    def _damaged(self, path: Path, exc: BaseException) -> None:
        """Say so and delete the entry; an entry that cannot be deleted (a read-only cache, a folder where a file
        belongs) is left as it is — the cache is recomputable, so its damage never stops an audit."""
        try:
            if path.is_dir():
                raise IsADirectoryError(21, "it is a folder, not a cache file")
            path.unlink(missing_ok=True)
            fate = "it was deleted"
        except OSError as err:
            fate = f"it could not be deleted ({err.strerror or err}) and is ignored"
        msg = (f"cluster cache entry {path} is damaged ({type(exc).__name__}: {str(exc)[:120]}); "
               f"{fate} and the result is recomputed")
        _env.log.warning(msg)
        self.warnings.append(msg)

    def _write(self, kind: str, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps({**meta, "key": key, "format": CACHE_FORMAT})), **arrays)
        try:
            write_bytes_atomic(self._path(kind, key), buf.getvalue())
        except OSError as exc:  # a full or read-only cache must not fail the audit: the result is already in hand
            msg = f"could not write the cluster cache under {self.root} ({exc.strerror or exc}); continuing without it"
            _env.log.warning(msg)
            self.warnings.append(msg)

    # ------------------------------------------------------------------------------------------ k-NN graph
    def knn_graph(self, vectors: np.ndarray, k: int, *, digest: str) -> KnnGraph:
        """The exact k-NN graph of ``vectors`` (from the cache when this exact graph was built before)."""
        key = _key("knn", {"vectors": digest, "k": k})
        got = self._read("knn", key)
        n = len(vectors)
        if got is not None:
            arrays, _ = got
            idx, sims = arrays.get("idx"), arrays.get("sims")
            if idx is not None and sims is not None and idx.shape == sims.shape == (n, min(k, n)):
                return KnnGraph(idx.astype(np.int64), sims.astype(np.float32))
            self._damaged(self._path("knn", key), ValueError("arrays of the wrong shape"))
        graph = build_knn_graph(vectors, k)
        self._write("knn", key, {"idx": graph.idx, "sims": graph.sims}, {"n": n, "k": k})
        return graph

    # ------------------------------------------------------------------------------------------ discovery
    def discovery_key(self, discovery: ClusterDiscovery, n: int, *, digest: str, model_id: str) -> str:
        return _key("clusters", {"vectors": digest, "model_id": model_id, "discovery": discovery.cache_params(n)})

    def fit(self, discovery: ClusterDiscovery, vectors: np.ndarray, *, digest: str, model_id: str,
            graph: KnnGraph | None = None) -> ClusterResult:
        """``discovery.fit(vectors)``, read from the cache when the same vectors were clustered with the same
        settings before (the result is then marked ``from_cache``); computed and stored otherwise."""
        n = len(vectors)
        key = self.discovery_key(discovery, n, digest=digest, model_id=model_id)
        got = self._read("clusters", key)
        if got is not None:
            result = _result_from(got, n)
            if result is not None:
                self.notes.append(f"clusters read from the cluster cache ({key[:12]}): same vectors and discovery "
                                   "settings as an earlier audit")
                return result
            self._damaged(self._path("clusters", key), ValueError("arrays of the wrong shape"))
        result = discovery.fit(vectors, graph=graph)
        arrays = {"labels": result.labels, "coords": result.coords}
        if result.reduced is not None:
            arrays["reduced"] = result.reduced
        if result.probabilities is not None:
            arrays["probabilities"] = result.probabilities
        self._write("clusters", key, arrays,
                    {"n": n, "method": result.method, "notes": result.notes, "params": result.params})
        return result


def _result_from(got: tuple[dict[str, np.ndarray], dict[str, Any]], n: int) -> ClusterResult | None:
    """A :class:`ClusterResult` from a stored entry, or None when its arrays do not fit ``n`` prompts."""
    arrays, meta = got
    labels, coords = arrays.get("labels"), arrays.get("coords")
    reduced, probs = arrays.get("reduced"), arrays.get("probabilities")
    ok = (labels is not None and coords is not None and labels.shape == (n,) and coords.shape == (n, 2)
          and meta.get("n") == n and (reduced is None or len(reduced) == n) and (probs is None or probs.shape == (n,)))
    if not ok:
        return None
    return ClusterResult(labels.astype(np.int64), coords.astype(np.float32), str(meta["method"]),
                         [str(x) for x in meta.get("notes", [])], dict(meta.get("params", {})),
                         reduced, probs, from_cache=True)


def shared_knn_graph(vectors: np.ndarray, k: int, *, cache: ClusterCache | None, digest: str | None) -> KnnGraph:
    """The audit's one k-NN graph: from ``cache`` when given, else built."""
    if cache is not None and digest is not None:
        return cache.knn_graph(vectors, k, digest=digest)
    return build_knn_graph(vectors, k)

"""``--engine ray``: embedding and anchor assignment as Ray Data ``map_batches`` over sharded inputs.

Why Ray Data: it is what the large curation tools use for batch embedding (NeMo Curator, Data-Juicer, Ray's own
"batch inference with embedding models" guide); a callable class in an actor pool loads the model once per
worker, and the same code runs on a laptop (a local Ray started here) or a cluster (``--ray-address``).

Two entry points:

* :func:`embed_texts` — vectors of an in-memory prompt list, in input order (what ``data-advisor audit --engine
  ray`` uses: discovery and the report then run locally on those vectors, exactly as with the local engine);
* :func:`assign_shards` — reads JSONL/Parquet shards (a file, a list, or a folder of shards) with Ray, embeds and
  assigns every prompt on the workers and writes one Parquet file per output block (``id``, ``anchor_id``,
  ``nearest_anchor_id``, ``score``, ``margin``, ``background_score``, ``anchored``, ``harm_score`` and optionally
  ``vector``): nothing but the anchor counts comes back to the driver, so it scales past one machine's memory.
  Transductive refinement (:mod:`~data_advisor.coverage.refine`) needs the whole set at once, so assign-only
  output is the unrefined nearest-anchor assignment (``--no-refine`` semantics); a full ``--engine ray`` audit
  refines on the driver as the local engine does.

Both workers and the local engine call the same :func:`~data_advisor.coverage.embedding.registry.make_embedder` backend and
the same :class:`~data_advisor.coverage.assign.AnchorAssigner` with anchors embedded once on the driver, so the
same model and inputs give the same anchors (``tests/test_ray_engine.py`` checks it with 2 workers).
Which backends run here is read from the one list of backends
(:data:`~data_advisor.coverage.embedding.backends.RAY_EMBEDDERS`): the stateful ``cascade`` (it calibrates on a sample
of the whole input) does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor.errors import DataAdvisorError, InputError

SHARD_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")


def _require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise DataAdvisorError("--engine ray needs Ray Data, which is not installed",
                               'pip install "data-advisor[ray]" (or run without --engine ray)') from None
    return ray


def _check_embedder(embedder_name: str) -> None:
    from data_advisor.coverage.embedding.backends import check_embedder_name

    check_embedder_name(embedder_name, ray=True)


def _old_names(deprecated: dict[str, Any], embedding_model: str, embedder_name: str) -> tuple[str, str]:
    """The deprecated keywords ``model`` / ``embedder`` (strings) as ``embedding_model`` / ``embedder_name``."""
    import warnings

    unknown = set(deprecated) - {"model", "embedder"}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    for old, new in (("model", "embedding_model"), ("embedder", "embedder_name")):
        if old in deprecated:
            warnings.warn(f"{old}= is deprecated: use {new}=", DeprecationWarning, stacklevel=3)
    return deprecated.get("model", embedding_model), deprecated.get("embedder", embedder_name)


@contextlib.contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """Join ``address`` or start a local Ray with ``workers`` CPUs; a Ray started here is shut down afterwards."""
    ray = _require_ray()
    if ray.is_initialized():
        yield ray
        return
    env = {k: v for k, v in os.environ.items()
           if k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "DATA_ADVISOR_CACHE",
                    "NUMBA_CACHE_DIR")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False,
                              "runtime_env": {"env_vars": env}}
    if address:
        kwargs["address"] = address
    else:
        # One logical CPU per embedding actor plus one for Ray Data's read/split tasks: with exactly `workers`
        # CPUs the actors would hold every slot and the read tasks that feed them could never be scheduled.
        kwargs["num_cpus"] = (workers or _local_cpus()) + 1
    try:
        ray.init(**kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError… all mean "no Ray here"
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise DataAdvisorError(f"cannot start or join {where}: {str(exc).splitlines()[0][:200]}",
                               "check --ray-address (e.g. `auto` on a cluster node), or omit it to start a local Ray"
                               ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _local_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


class EmbedAssign:
    """The ``map_batches`` UDF: one instance per Ray actor, so each worker loads the model once."""

    def __init__(self, embedding_model: str, embedder_name: str, batch_size: int, cache: bool, anchors: Any = None,
                 margin_threshold: float | None = None, min_score: float | None = None,
                 use_background: bool = True, keep_vectors: bool = True) -> None:
        from data_advisor.coverage.embedding.registry import make_embedder

        self.embedder = make_embedder(embedding_model, embedder_name=embedder_name, cache=cache, batch_size=batch_size)
        self.keep_vectors = keep_vectors
        self.assigner = None
        if anchors is not None:
            from data_advisor.coverage.assign import DEFAULT_MARGIN_THRESHOLD, DEFAULT_MIN_SCORE, AnchorAssigner

            self.assigner = AnchorAssigner(
                margin_threshold=DEFAULT_MARGIN_THRESHOLD if margin_threshold is None else margin_threshold,
                min_score=DEFAULT_MIN_SCORE if min_score is None else min_score, use_background=use_background,
            ).fit(anchors)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"].tolist()]
        vecs = self.embedder.encode(texts)
        out = {k: v for k, v in batch.items() if k != "text"}
        if self.keep_vectors:
            out["vector"] = vecs
        if self.assigner is not None:
            a = self.assigner.assign(vecs)
            ids = a.principle_ids
            out["nearest_anchor_id"] = np.asarray([ids[int(b)] for b in a.best], dtype=object)
            out["anchor_id"] = np.asarray([ids[int(b)] if ok else None for b, ok in zip(a.best, a.anchored, strict=True)],
                                          dtype=object)
            out["score"] = a.score.astype(np.float32)
            out["margin"] = a.margin.astype(np.float32)
            out["background_score"] = a.background_score.astype(np.float32)
            out["anchored"] = a.anchored
            if a.harm_score is not None:
                out["harm_score"] = a.harm_score.astype(np.float32)
        return out


def _udf_kwargs(embedding_model: str, embedder_name: str, batch_size: int, cache: bool, anchors: Any,
                margin_threshold: float | None, min_score: float | None, use_background: bool,
                keep_vectors: bool) -> dict[str, Any]:
    return {"embedding_model": embedding_model, "embedder_name": embedder_name, "batch_size": batch_size,
            "cache": cache, "anchors": anchors,
            "margin_threshold": margin_threshold, "min_score": min_score, "use_background": use_background,
            "keep_vectors": keep_vectors}


def embed_texts(texts: Sequence[str], *, embedding_model: str = "default", embedder_name: str = "st",
                batch_size: int = 64, address: str | None = None, workers: int | None = None, cache: bool = True,
                rows_per_task: int = 1024, show_progress: bool = False, **deprecated: Any) -> np.ndarray:
    """Vectors of ``texts`` (input order) computed by ``workers`` Ray actors with ``map_batches``.

    ``model=`` / ``embedder=`` are the deprecated spellings of ``embedding_model=`` / ``embedder_name=``."""
    embedding_model, embedder_name = _old_names(deprecated, embedding_model, embedder_name)
    _check_embedder(embedder_name)
    import pyarrow as pa

    n = len(texts)
    with ray_session(address, workers) as ray:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = show_progress
        n_workers = workers or max(1, int(ray.cluster_resources().get("CPU", 2)) - 1)
        blocks = [pa.table({"row": np.arange(s, min(n, s + rows_per_task), dtype=np.int64),
                            "text": pa.array(list(texts[s : s + rows_per_task]), type=pa.string())})
                  for s in range(0, n, rows_per_task)]
        ds = ray.data.from_arrow(blocks)  # blocks made here: no split task competes with the actors for CPUs
        ds = ds.map_batches(EmbedAssign, batch_size=rows_per_task, batch_format="numpy", concurrency=n_workers,
                            num_cpus=1, fn_constructor_kwargs=_udf_kwargs(embedding_model, embedder_name, batch_size, cache,
                                                                          None, None, None, True, True))
        out: np.ndarray | None = None
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            vecs = np.asarray(batch["vector"], dtype=np.float32)
            if out is None:
                out = np.zeros((n, vecs.shape[1]), dtype=np.float32)
            out[np.asarray(batch["row"], dtype=np.int64)] = vecs
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    return out


# ------------------------------------------------------------------------------------------- sharded files
def shard_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The JSONL/Parquet shards of a file, a list of files, or a folder (sorted)."""
    items = [source] if isinstance(source, str | Path) else list(source)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SHARD_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"input not found: {p}", "pass JSONL/Parquet files or a folder of shards")
    if not files:
        raise InputError(f"no JSONL or Parquet shards in {source}", f"the engine reads {', '.join(SHARD_SUFFIXES)}")
    kinds = {"parquet" if f.suffix.lower() == ".parquet" else "json" for f in files}
    if len(kinds) > 1:
        raise InputError("the shards mix JSON Lines and Parquet", "convert them to one format")
    return files


def _prepare(text_field: str, id_field: str | None):
    """Row → {"id", "text"} (dotted text fields and chat records as the local loader reads them)."""
    from data_advisor.data import lookup_field, value_text

    def fn(row: dict[str, Any]) -> dict[str, Any]:
        try:
            text = value_text(lookup_field(row, text_field))
        except KeyError:
            text = None
        text = text or ""
        rid = row.get(id_field) if id_field else None
        if rid is None:  # no id: a stable one from the text itself
            rid = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return {"id": str(rid), "text": text}

    return fn


@dataclass(frozen=True)
class ShardSettings:
    """What :func:`assign_shards` computes: the taxonomy, the embedding backend and the assignment thresholds, and
    how the shards are read.  (Where it runs — ``address``, ``workers`` — and progress are arguments of their own.)"""

    taxonomy: str = "catqa-11"
    embedding_model: str = "default"
    embedder_name: str = "st"  # one of RAY_EMBEDDERS
    text_field: str | None = None  # detected among the usual names when not given (dotted paths work)
    id_field: str | None = "id"  # None: ids are hashes of the text
    batch_size: int = 64  # texts per model call
    rows_per_task: int = 1024  # rows per Ray task
    background: bool = True
    margin_threshold: float | None = None
    min_score: float | None = None
    keep_vectors: bool = False  # also write each prompt's vector
    cache: bool = True


#: Old keyword names of assign_shards' flat signature → the ShardSettings field they set.
_OLD_SHARD_KEYWORDS = {"model": "embedding_model", "embedder": "embedder_name",
                       **{f.name: f.name for f in fields(ShardSettings)}}


def assign_shards(source: str | Path | Sequence[str | Path], out_dir: str | Path, settings: ShardSettings | None = None,
                  *, address: str | None = None, workers: int | None = None, show_progress: bool = False,
                  **deprecated: Any) -> dict[str, Any]:
    """Embed and assign every prompt of the shards on Ray; write Parquet results under ``out_dir``.

    Returns a summary: prompts, anchored share, counts per anchor, the files written.  The old flat keywords
    (``taxonomy=``, ``model=``, ``embedder=``, ``rows_per_task=`` ...) still work, with a DeprecationWarning.
    """
    settings = settings or ShardSettings()
    if deprecated:
        import warnings

        unknown = sorted(set(deprecated) - set(_OLD_SHARD_KEYWORDS))
        if unknown:
            raise TypeError(f"assign_shards() got unexpected keyword arguments {', '.join(unknown)}")
        warnings.warn(f"assign_shards({', '.join(f'{k}=' for k in deprecated)}) is deprecated: pass "
                      "settings=ShardSettings(...)", DeprecationWarning, stacklevel=2)
        settings = replace(settings, **{_OLD_SHARD_KEYWORDS[k]: v for k, v in deprecated.items()})
    c = settings
    embedder_name, embedding_model, batch_size, cache = c.embedder_name, c.embedding_model, c.batch_size, c.cache
    _check_embedder(embedder_name)
    from data_advisor.coverage.assign import build_anchors
    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.coverage.taxonomy import load_background, load_taxonomy
    from data_advisor.data import TEXT_FIELD_CANDIDATES

    files = shard_files(source)
    tax = load_taxonomy(c.taxonomy)
    local = make_embedder(embedding_model, embedder_name=embedder_name, cache=cache, batch_size=batch_size)
    anchors = build_anchors(tax, local, load_background() if c.background else None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ray_session(address, workers) as ray:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = show_progress
        ctx.execution_options.preserve_order = True
        n_workers = workers or max(1, int(ray.cluster_resources().get("CPU", 2)) - 1)
        paths = [str(f) for f in files]
        ds = ray.data.read_parquet(paths) if files[0].suffix.lower() == ".parquet" else ray.data.read_json(paths, lines=True)
        columns = ds.columns()
        field = c.text_field or next((c for c in TEXT_FIELD_CANDIDATES if c in columns), None)
        if field is None or field.split(".")[0] not in columns:
            raise InputError(f"no text field found in {source}; fields found: {', '.join(columns)}",
                             "pass text_field (dotted paths like conversation.0.content work)")
        ds = ds.map(_prepare(field, c.id_field if c.id_field in columns else None))
        ds = ds.map_batches(EmbedAssign, batch_size=c.rows_per_task, batch_format="numpy", concurrency=n_workers,
                            num_cpus=1, fn_constructor_kwargs=_udf_kwargs(embedding_model, embedder_name, batch_size, cache,
                                                                          anchors, c.margin_threshold, c.min_score,
                                                                          c.background, c.keep_vectors))
        ds = ds.materialize()
        ds.write_parquet(str(out_dir))
        counts: dict[str, int] = {}
        n = n_anchored = 0
        for batch in ds.select_columns(["anchor_id"]).iter_batches(batch_format="numpy", batch_size=65536):
            for a in batch["anchor_id"].tolist():
                n += 1
                if a is not None:
                    n_anchored += 1
                    counts[a] = counts.get(a, 0) + 1
    return {"n_prompts": n, "n_anchored": n_anchored, "anchored_share": n_anchored / n if n else 0.0,
            "counts": {pid: counts.get(pid, 0) for pid in anchors.principle_ids}, "text_field": field,
            "files": sorted(str(p) for p in out_dir.glob("*.parquet")), "embedder": local.model_id}

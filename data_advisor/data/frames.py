"""Tables as prompt records: in-memory DataFrames and datasets, and the Arrow / Parquet files and folders on disk.

Users hold their data as a pandas or polars DataFrame or a Hugging Face ``datasets.Dataset`` already; the audit
takes it as it is (:func:`table_rows` turns it into the same ``(record, where)`` rows a file gives, so both go
through one validation and give the same prompt set). The libraries are optional: a table is recognised by its
type's module and name, never by importing pandas, polars or datasets, and each is only touched when the user
passed one of its objects. On disk, a ``datasets`` folder written by ``save_to_disk`` is read with pyarrow alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_advisor.errors import InputError
from data_advisor.io import resolve_path

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt", ".arrow")
#: (top-level module, class name) of every in-memory table accepted → its kind.
_TABLE_TYPES: dict[tuple[str, str], str] = {
    ("pandas", "DataFrame"): "pandas", ("pandas", "Series"): "pandas-series",
    ("polars", "DataFrame"): "polars", ("polars", "Series"): "polars-series", ("polars", "LazyFrame"): "polars-lazy",
    ("datasets", "Dataset"): "dataset", ("datasets", "DatasetDict"): "dataset-dict",
    ("datasets", "IterableDataset"): "iterable-dataset", ("datasets", "IterableDatasetDict"): "dataset-dict",
    ("pyarrow", "Table"): "arrow",
}
TABLE_TYPES_HINT = "a pandas or polars DataFrame (or Series), a datasets.Dataset (or a DatasetDict split), a pyarrow Table"


def table_kind(obj: Any) -> str | None:
    """Which kind of in-memory table ``obj`` is (``"pandas"``, ``"polars"``, ``"dataset"`` …), or None.

    Checked on the type's module and name (subclasses included), so no optional library is imported to ask.
    """
    for cls in type(obj).__mro__:
        kind = _TABLE_TYPES.get((cls.__module__.partition(".")[0], cls.__name__))
        if kind:
            return kind
    return None


@dataclass
class TableRows:
    """An in-memory table as prompt records: the rows, a name for messages, and the text field it implies."""

    rows: Iterator[tuple[Any, str]]
    name: str
    text_field: str | None = None  # a Series' own name: its values are the prompts


def table_rows(obj: Any) -> TableRows | None:
    """``obj`` as ``(record, "row N")`` pairs like a file's rows, or None when it is not a table :func:`table_kind`
    knows. Values become plain Python (numpy arrays → lists, NaN / NA → None), so chat-format columns (lists of
    ``{"role", "content"}`` messages) and missing texts behave exactly as in a JSONL file."""
    kind = table_kind(obj)
    if kind is None:
        return None
    if kind == "polars-lazy":
        raise InputError("a polars LazyFrame holds no rows until it is collected", "pass frame.collect()")
    if kind == "dataset-dict":
        splits = list(obj.keys())
        if not splits:
            raise InputError("the DatasetDict has no splits", "pass a Dataset with at least one prompt")
        split = "train" if "train" in splits else splits[0]  # as a save_to_disk folder is read
        inner = table_rows(obj[split])
        assert inner is not None
        inner.name = f"{inner.name} (split {split!r} of {splits})"
        return inner
    n = len(obj) if kind not in ("iterable-dataset",) else None
    size = f" of {n:,} rows" if n is not None else ""
    if kind in ("pandas-series", "polars-series"):
        name = "text" if obj.name is None or str(obj.name) == "" else str(obj.name)
        values = obj.tolist() if kind == "pandas-series" else obj.to_list()
        rows: Iterator[Any] = ({name: v} for v in values)
        return TableRows(_numbered(rows), f"{kind.split('-')[0]} Series {name!r}{size}", name)
    if kind == "pandas":
        columns = [str(c) for c in obj.columns]
        if len(set(columns)) != len(columns):
            raise InputError(f"the pandas DataFrame has repeated column names: {columns}",
                             "rename the columns so each name is unique")
        rows = (dict(zip(columns, values, strict=True)) for values in obj.itertuples(index=False, name=None))
        return TableRows(_numbered(rows), f"pandas DataFrame{size}")
    if kind == "polars":
        return TableRows(_numbered(obj.iter_rows(named=True)), f"polars DataFrame{size}")
    if kind == "arrow":
        return TableRows(_arrow_rows(obj), f"pyarrow Table{size}")
    if kind == "dataset":
        return TableRows(_numbered(_dataset_rows(obj)), f"datasets.Dataset{size}")
    return TableRows(_numbered(iter(obj)), "datasets.IterableDataset")


def _dataset_rows(ds: Any) -> Iterator[dict[str, Any]]:
    """A ``datasets.Dataset``'s rows as Python dicts, in batches (its own format, e.g. torch, set aside)."""
    plain = ds.with_format(None) if hasattr(ds, "with_format") else ds
    for batch in plain.iter(batch_size=4096):
        names = list(batch)
        yield from (dict(zip(names, values, strict=True)) for values in zip(*(batch[k] for k in names), strict=True))


def _numbered(rows: Iterator[Any] | Any) -> Iterator[tuple[Any, str]]:
    for n, row in enumerate(rows, start=1):
        yield _plain(row), f"row {n}"


def _plain(value: Any) -> Any:
    """Plain Python for a table cell: numpy arrays and scalars → lists and numbers, NaN / NA / NaT → None."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    tolist = getattr(value, "tolist", None)  # numpy arrays (a parquet list column in pandas) and numpy scalars
    return _plain(tolist()) if callable(tolist) else value


# ----------------------------------------------------------------------------------------------- files
def _arrow_rows(table: Any) -> Iterator[tuple[Any, str]]:
    n = 0
    for batch in table.to_batches(max_chunksize=65_536):  # one batch of Python rows at a time, not the whole table
        for row in batch.to_pylist():
            n += 1
            yield row, f"row {n}"


def iter_parquet(path: Path) -> Iterator[tuple[Any, str]]:
    """Rows of a Parquet file (pyarrow: a core dependency)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise InputError(f"cannot read Parquet file {path}: {exc}", "check the file is a complete Parquet file") from None
    yield from _arrow_rows(table)


def iter_arrow(path: Path) -> Iterator[tuple[Any, str]]:
    """Rows of an Arrow IPC file (stream or file format), as ``datasets.save_to_disk`` writes them."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as source:
            try:
                table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                table = pa.ipc.open_file(source).read_all()
    except Exception as exc:
        raise InputError(f"cannot read Arrow file {path}: {exc}", "pass a datasets folder written by save_to_disk") from None
    yield from _arrow_rows(table)


def _read_meta_json(path: Path) -> Any:
    """A ``datasets`` metadata file (state.json, dataset_dict.json) as JSON, or a one-line error naming it."""
    try:
        return json.loads(path.read_text("utf-8"))
    except (ValueError, OSError) as exc:
        raise InputError(f"{path} is not a valid datasets metadata file ({exc.__class__.__name__}: {exc})",
                         "re-save the dataset with save_to_disk, or pass its data files directly") from None


def dataset_files(folder: Path) -> list[Path]:
    """Files of a ``datasets.save_to_disk`` folder (or a DatasetDict's first split), else data shards.

    The metadata is trusted only as far as it checks out: a state.json or dataset_dict.json that is not JSON, or
    that names a file or split that is not there (or outside the folder), is an error naming it, never a silent
    fallback that would audit some other set of files.
    """
    state = folder / "state.json"
    if state.exists():
        meta = _read_meta_json(state)
        entries = meta.get("_data_files") if isinstance(meta, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("filename"), str)
                                                    for e in entries):
            raise InputError(f"{state} has no valid _data_files list",
                             "re-save the dataset with save_to_disk, or pass its .arrow files directly")
        files = [folder / e["filename"] for e in entries]
        for f in files:
            if not resolve_path(f).is_relative_to(folder.resolve()) or not f.is_file():
                raise InputError(f"{state} names data file {f.name!r}, which is not in {folder}",
                                 "restore the missing file, or re-save the dataset with save_to_disk")
        if files:
            return files
        arrows = sorted(folder.glob("*.arrow"))
        if not arrows:
            raise InputError(f"datasets folder {folder} holds no .arrow data files", "re-save the dataset with save_to_disk")
        return arrows
    dd = folder / "dataset_dict.json"
    if dd.exists():
        meta = _read_meta_json(dd)
        splits = meta.get("splits") if isinstance(meta, dict) else None
        if not isinstance(splits, list) or not splits or not all(isinstance(x, str) for x in splits):
            raise InputError(f"{dd} has no valid list of splits", "re-save the dataset with save_to_disk")
        split = "train" if "train" in splits else splits[0]
        if not (folder / split).is_dir() or not (folder / split).resolve().is_relative_to(folder.resolve()):
            raise InputError(f"{dd} names split {split!r}, but {folder / split} is not a folder",
                             "restore the split folder, or re-save the dataset with save_to_disk")
        return dataset_files(folder / split)
    shards = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    if not shards:
        raise InputError(
            f"folder {folder} holds no prompt files",
            f"pass a file, a datasets folder saved with save_to_disk, or a folder of {', '.join(SUPPORTED_SUFFIXES)} shards",
        )
    return shards

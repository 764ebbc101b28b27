"""Loading and validating prompt sets.

A :class:`PromptSet` is the first typed contract of the pipeline: ids and texts, validated, nothing else.
Every way a user's file can be wrong (missing, empty, not UTF-8, invalid JSON on line N, missing field,
empty or huge texts) is reported as one :class:`~data_advisor.errors.InputError` that names the file,
the record and the fix — before any expensive work starts.

Supported inputs: JSONL, JSON array, CSV/TSV, Parquet, plain text (one prompt per line), a Hugging Face
``datasets`` folder written by ``save_to_disk`` (read with pyarrow, no ``datasets`` dependency), and a folder
of shards in any of those formats.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_advisor.data.frames import (
    SUPPORTED_SUFFIXES,
    TABLE_TYPES_HINT,
    dataset_files,
    iter_arrow,
    iter_parquet,
    table_kind,
    table_rows,
)
from data_advisor.errors import InputError
from data_advisor.io import check_link, split_lines

#: Field names tried, in order, when ``text_field`` is not given.
TEXT_FIELD_CANDIDATES: tuple[str, ...] = (
    "text", "prompt", "instruction", "question", "query", "goal", "behavior", "Behavior",
    "Goal", "input", "content", "messages", "conversations", "chosen",
)
#: Default ceiling on one prompt's length, in characters (a 1 MB "prompt" is almost always a bad field).
DEFAULT_MAX_CHARS = 20_000
#: C0/C1 control characters (and DEL) other than tab and line breaks (\n, \r, U+0085): never part of a prompt,
#: stripped on load so a text of only NUL or escape bytes is recognised as empty.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")
#: Lone UTF-16 surrogates (JSON allows ``"\ud800"``): no UTF-8 writer can write them, so they become U+FFFD on load
#: instead of a crash when the outputs are written, after all the work.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True)
class PromptSet:
    """Validated prompts: parallel lists of ids and texts, plus where they came from.

    Exact duplicate texts are kept (and counted by the metrics), never silently dropped.
    """

    ids: list[str]
    texts: list[str]
    source: str = "<memory>"
    text_field: str | None = None
    n_skipped: int = 0
    n_truncated: int = 0
    fields: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.texts):
            raise ValueError("ids and texts must have the same length")

    def __len__(self) -> int:
        return len(self.texts)

    def fingerprint(self) -> str:
        """sha256 over ids and texts: identifies the data in a report's settings."""
        h = hashlib.sha256()
        for i, t in zip(self.ids, self.texts, strict=True):
            h.update(i.encode("utf-8", "surrogatepass") + b"\x00" + t.encode("utf-8", "surrogatepass") + b"\x01")
        return h.hexdigest()

    @classmethod
    def from_texts(cls, texts: Sequence[str], ids: Sequence[str] | None = None, source: str = "<memory>") -> PromptSet:
        """Build a validated set from Python strings (ids default to ``0..n-1``)."""
        texts = list(texts)
        ids_list = [str(i) for i in range(len(texts))] if ids is None else [str(i) for i in ids]
        records = [(i, t, f"item {n}") for n, (i, t) in enumerate(zip(ids_list, texts, strict=True))]
        return _validate(records, source=source, text_field=None, max_chars=DEFAULT_MAX_CHARS,
                         truncate=False, skip_invalid=False, fields={})


# ----------------------------------------------------------------------------------------------- reading
def _decode(raw: bytes, path: Path, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise InputError(
            f"{path} is not valid {encoding}: byte 0x{bad} on line {line}",
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or pass --encoding with its real encoding",
        ) from None
    except LookupError:
        raise InputError(f"unknown text encoding {encoding!r}", "pass a Python codec name such as utf-8 or latin-1") from None


def _read_text(path: Path, encoding: str) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", "check the path and its permissions") from None
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # tolerate a byte-order mark
    return _decode(raw, path, encoding)


def _iter_jsonl(path: Path, encoding: str) -> Iterator[tuple[Any, str]]:
    text = _read_text(path, encoding)
    for lineno, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except RecursionError:
            raise InputError(f"line {lineno} of {path} is nested too deeply",
                             "store one flat JSON object per line") from None
        except json.JSONDecodeError as exc:
            raise InputError(
                f"invalid JSON on line {lineno} of {path}: {exc.msg} (column {exc.colno})",
                "fix or remove that line; each line of a .jsonl file must be one JSON object",
            ) from None
        yield record, f"line {lineno}"


def _iter_json(path: Path, encoding: str) -> Iterator[tuple[Any, str]]:
    text = _read_text(path, encoding)
    try:
        data = json.loads(text)
    except RecursionError:
        raise InputError(f"{path} is nested too deeply", "store the prompts as a flat JSON array of records") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"invalid JSON in {path} at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            "fix the file, or save it as JSON Lines (.jsonl) with one object per line",
        ) from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) == 1:
            data = data[lists[0]]
        else:
            raise InputError(
                f"{path} holds a JSON object, not an array of records",
                "store the prompts as a JSON array or as JSON Lines",
            )
    if not isinstance(data, list):
        raise InputError(f"{path} does not hold a JSON array of records", "store the prompts as a JSON array")
    for n, item in enumerate(data):
        yield item, f"item {n}"


def _iter_csv(path: Path, encoding: str, delimiter: str) -> Iterator[tuple[Any, str]]:
    text = _read_text(path, encoding)
    # The csv module refuses cells over 131,072 characters by default ("field larger than field limit"), which would
    # report a long prompt as a quoting problem; lift it so the length check (--max-chars / --truncate) decides.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        for n, row in enumerate(reader):
            yield row, f"row {n + 1}"
    except csv.Error as exc:
        raise InputError(f"cannot parse CSV {path}: {exc}", "check the quoting and delimiter of the file") from None


def _iter_txt(path: Path, encoding: str) -> Iterator[tuple[Any, str]]:
    text = _read_text(path, encoding)
    for lineno, line in enumerate(split_lines(text), start=1):
        if line.strip():  # blank lines separate prompts in a .txt file
            yield line, f"line {lineno}"


def _iter_file(path: Path, encoding: str) -> Iterator[tuple[Any, str]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _iter_jsonl(path, encoding)
    if suffix == ".json":
        return _iter_json(path, encoding)
    if suffix == ".csv":
        return _iter_csv(path, encoding, ",")
    if suffix == ".tsv":
        return _iter_csv(path, encoding, "\t")
    if suffix == ".parquet":
        return iter_parquet(path)
    if suffix == ".arrow":
        return iter_arrow(path)
    if suffix in (".txt", ".text", ""):
        return _iter_txt(path, encoding)
    raise InputError(
        f"unsupported input format {suffix!r} for {path}",
        f"convert it to one of {', '.join(SUPPORTED_SUFFIXES)}",
    )


# ----------------------------------------------------------------------------------------------- fields
def lookup_field(record: Any, dotted: str) -> Any:
    """Resolve ``a.b.0.c`` in nested dicts/lists; raises KeyError when absent."""
    cur = record
    for part in dotted.split("."):
        if isinstance(cur, dict):
            if part not in cur:
                raise KeyError(part)
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit():
            idx = int(part)
            if not -len(cur) <= idx < len(cur):
                raise KeyError(part)
            cur = cur[idx]
        else:
            raise KeyError(part)
    return cur


def _first_user_turn(value: Any) -> str | None:
    """Chat records: the text of the first user message in a ``messages``-style list."""
    if isinstance(value, list):
        for msg in value:
            if isinstance(msg, dict):
                role = str(msg.get("role", msg.get("from", ""))).lower()
                if role in ("user", "human"):
                    content = msg.get("content", msg.get("value"))
                    if isinstance(content, list):  # multimodal content parts
                        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
                    return None if content is None else str(content)
        return None
    if isinstance(value, str) and "Human:" in value:  # HH-RLHF style transcript
        after = value.split("Human:", 1)[1]
        return after.split("Assistant:", 1)[0].strip()
    return None


def value_text(value: Any) -> str | None:
    """The prompt text of a field's value as every reader takes it (a chat record's first user turn, an HH-RLHF
    transcript's first human turn); shared with the Ray engine so both engines read the same text."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.lstrip().startswith("Human:") or "\n\nHuman:" in value[:200]:
            return _first_user_turn(value)
        return value
    if isinstance(value, list):
        return _first_user_turn(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _field_names(record: Any) -> list[str]:
    return list(record.keys()) if isinstance(record, dict) else []


def _choose_text_field(first: Any, path: Path | str) -> str | None:
    if isinstance(first, str):
        return None
    if not isinstance(first, dict):
        raise InputError(f"records in {path} are neither strings nor objects", "store one prompt object per record")
    for name in TEXT_FIELD_CANDIDATES:
        if name in first:
            return name
    raise InputError(
        f"no text field found in {path}; fields found: {', '.join(_field_names(first)) or '(none)'}",
        "pass --text-field NAME (dotted paths like conversation.0.content work)",
    )


# ----------------------------------------------------------------------------------------------- public
def load_prompts(
    source: str | Path | Any,
    *,
    text_field: str | None = None,
    id_field: str | None = None,
    keep_fields: Sequence[str] = (),
    encoding: str = "utf-8",
    max_chars: int = DEFAULT_MAX_CHARS,
    truncate: bool = False,
    skip_invalid: bool = False,
) -> PromptSet:
    """Read and validate a prompts file or folder, or an in-memory table.

    Args:
        source: file or folder (see module docstring for formats), or a pandas / polars DataFrame or Series, a
            ``datasets.Dataset`` / ``DatasetDict`` (its ``train`` split, else its first) or a pyarrow Table, read
            as the same file's rows would be (:mod:`data_advisor.data.frames`).
        text_field: field holding the prompt (dotted path allowed); auto-detected when None. A list of chat
            messages in that field yields its first user turn.
        id_field: field holding a unique id; defaults to ``id`` when present, else the record's position
            (``"none"`` forces numbering by position).
        keep_fields: extra fields to carry along (e.g. labels for benchmarks).
        encoding: text encoding of the file.
        max_chars: longest accepted prompt; longer ones are an error unless ``truncate``.
        truncate: cut over-long prompts to ``max_chars`` instead of failing.
        skip_invalid: drop empty/missing texts (counted in ``n_skipped``) instead of failing.
    """
    if not isinstance(source, str | os.PathLike):
        table = table_rows(source)
        if table is None:
            raise InputError(f"cannot read prompts from a {type(source).__module__}.{type(source).__qualname__}",
                             f"pass a file or folder path, {TABLE_TYPES_HINT}, or a list of strings")
        return prompts_from_records(table.rows, table.name, text_field=text_field or table.text_field,
                                    id_field=id_field, keep_fields=keep_fields, max_chars=max_chars,
                                    truncate=truncate, skip_invalid=skip_invalid)
    path = Path(source)
    if not path.exists():
        check_link(path)  # exists() is False for a dangling link and for a loop (ELOOP): say which
        raise InputError(f"input file not found: {path}", "check the path (relative paths start from the current folder)")
    if not path.is_dir() and not path.is_file():
        raise InputError(f"input {path} is not a regular file or folder (a device, pipe or socket)",
                         "pass a prompts file or folder")
    files = dataset_files(path) if path.is_dir() else [path]
    for f in files:
        if len(files) == 1 and f.stat().st_size == 0:
            raise InputError(f"input file is empty: {f}", "pass a file with at least one prompt")
    rows = ((rec, f"{where} of {f}" if len(files) > 1 or f != path else where)
            for f in files if f.stat().st_size for rec, where in _iter_file(f, encoding))
    return prompts_from_records(rows, str(path), text_field=text_field, id_field=id_field, keep_fields=keep_fields,
                                max_chars=max_chars, truncate=truncate, skip_invalid=skip_invalid)


def as_prompt_set(source: Any, *, text_field: str | None = None, id_field: str | None = None,
                  **options: Any) -> PromptSet:
    """Whatever the Python API was handed, as a validated :class:`PromptSet`: a PromptSet as it is; a path or an
    in-memory table through :func:`load_prompts` (``options`` are its keyword arguments); a list of strings by
    position. Anything else is one error naming its type, not a TypeError from deep inside."""
    if isinstance(source, PromptSet):
        return source
    if isinstance(source, str | os.PathLike) or table_kind(source) is not None:
        return load_prompts(source, text_field=text_field, id_field=id_field, **options)
    items = list(source) if isinstance(source, Iterable) and not isinstance(source, bytes | dict) else None
    bad = next((n for n, t in enumerate(items or []) if not isinstance(t, str)), None)
    if items is None or bad is not None:
        what = type(source).__name__ if items is None else f"item {bad} is a {type(items[bad]).__name__}"
        raise InputError(f"cannot read prompts from this input ({what})",
                         f"pass a file or folder path, {TABLE_TYPES_HINT}, or a list of strings")
    return PromptSet.from_texts(items)


def prompts_from_records(
    rows: Iterable[tuple[Any, str]],
    source: str,
    *,
    text_field: str | None = None,
    id_field: str | None = None,
    keep_fields: Sequence[str] = (),
    max_chars: int = DEFAULT_MAX_CHARS,
    truncate: bool = False,
    skip_invalid: bool = False,
) -> PromptSet:
    """Validate records (``(record, where)`` pairs: a dict or a string, and its place for messages) read from
    ``source``: the one path every input takes, files and in-memory tables alike, so both give the same set."""
    records: list[tuple[str | None, Any, str]] = []
    kept: dict[str, list[Any]] = {k: [] for k in keep_fields}
    chosen_field = text_field
    number_by_position = id_field is not None and id_field.lower() == "none"
    chosen_id = None if number_by_position else id_field
    n_records = n_missing = 0
    for rec, loc in rows:
        n_records += 1
        if n_records == 1:
            if chosen_field is None:
                chosen_field = _choose_text_field(rec, source)
            if chosen_id is None and not number_by_position and isinstance(rec, dict) and "id" in rec:
                chosen_id = "id"
        if chosen_field is None:
            value: Any = rec
        else:
            try:
                value = lookup_field(rec, chosen_field)
            except KeyError:
                if skip_invalid:
                    n_missing += 1
                    continue
                raise InputError(
                    f"{loc} of {source} has no field {chosen_field!r}; fields found: "
                    f"{', '.join(_field_names(rec)) or '(none)'}",
                    "pass --text-field with one of those fields, or --skip-invalid to drop such records",
                ) from None
        rid: str | None = None
        if chosen_id is not None and isinstance(rec, dict):
            try:
                raw_id = lookup_field(rec, chosen_id)
                rid = None if raw_id is None else str(raw_id)
            except KeyError:
                rid = None
        records.append((rid, value_text(value), loc))
        for k in keep_fields:
            try:
                kept[k].append(lookup_field(rec, k) if isinstance(rec, dict) else None)
            except KeyError:
                kept[k].append(None)
    if n_records == 0:
        raise InputError(f"input holds no prompts: {source}", "pass a file with at least one prompt")
    numbered = _number_missing_ids(records)
    ps = _validate(numbered, source=source, text_field=chosen_field, max_chars=max_chars, truncate=truncate,
                   skip_invalid=skip_invalid, fields=kept)
    if n_missing:
        return PromptSet(ps.ids, ps.texts, ps.source, ps.text_field, ps.n_skipped + n_missing, ps.n_truncated, ps.fields)
    return ps


def _number_missing_ids(records: Sequence[tuple[str | None, str | None, str]]) -> list[tuple[str, str | None, str]]:
    """Give records without an id their position as id (``"0"``, ``"1"``, ...), never one a real record holds.

    Why: a record without an id at position 1 must not be reported as a duplicate of another record's real id
    ``"1"`` (or silently share it); such positions get a ``#`` prefix (``"#1"``), with more ``#`` until unique.
    """
    real = {rid for rid, _, _ in records if rid is not None}
    out: list[tuple[str, str | None, str]] = []
    for n, (rid, text, loc) in enumerate(records):
        if rid is None:
            rid = str(n)
            while rid in real:
                rid = "#" + rid
        out.append((rid, text, loc))
    return out


def _validate(
    records: Sequence[tuple[str, str | None, str]],
    *,
    source: str,
    text_field: str | None,
    max_chars: int,
    truncate: bool,
    skip_invalid: bool,
    fields: dict[str, list[Any]],
) -> PromptSet:
    ids: list[str] = []
    texts: list[str] = []
    kept: dict[str, list[Any]] = {k: [] for k in fields}
    seen_ids: dict[str, str] = {}
    skipped = truncated = 0
    fname = text_field or "text"
    for n, (rid, text, loc) in enumerate(records):
        if text is not None:
            text = _SURROGATE.sub("\ufffd", _CONTROL.sub("", text))
        rid = _SURROGATE.sub("\ufffd", rid)
        if text is None or not text.strip():
            if skip_invalid:
                skipped += 1
                continue
            what = "no usable text" if text is None else "an empty or whitespace-only text (control characters ignored)"
            raise InputError(
                f"{loc} of {source} has {what} in field {fname!r}",
                "remove that record, or pass --skip-invalid to drop such records",
            )
        if len(text) > max_chars:
            if not truncate:
                raise InputError(
                    f"{loc} of {source} has a text of {len(text):,} characters, over the limit of {max_chars:,}",
                    "check --text-field points at the prompt, or pass --truncate (or a larger --max-chars)",
                )
            text = text[:max_chars]
            truncated += 1
        if rid in seen_ids:
            raise InputError(
                f"duplicate id {rid!r} at {loc} of {source} (first at {seen_ids[rid]})",
                "give every record a unique id, or pass --id-field none to number records by position",
            )
        seen_ids[rid] = loc
        ids.append(rid)
        texts.append(text)
        for k in fields:
            kept[k].append(fields[k][n])
    if not texts:
        raise InputError(f"no usable prompts left in {source} after skipping {skipped} invalid records",
                         "check --text-field")
    return PromptSet(ids, texts, source, text_field, skipped, truncated, kept)

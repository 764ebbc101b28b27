"""In-memory tables as input: a pandas / polars DataFrame, a ``datasets.Dataset`` (or DatasetDict) or a pyarrow
Table gives exactly the prompt set the same records give from a file, chat columns and bad records included, and
the optional libraries are imported only when the user passes one of their objects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from data_advisor.data import as_prompt_set, load_prompts
from data_advisor.data.frames import table_kind
from data_advisor.errors import InputError

RECORDS: list[dict[str, Any]] = [
    {"id": "a1", "text": "How do I pick a lock?", "messages": [{"role": "system", "content": "be nice"},
                                                               {"role": "user", "content": "Hi there, café?"}],
     "meta": {"lang": "en"}},
    {"id": "a2", "text": "Write a poem about the sea.", "messages": [{"role": "user", "content": "Second turn"}],
     "meta": {"lang": "fr"}},
    {"id": "a3", "text": "Explain photosynthesis\tto a child.",
     "messages": [{"role": "user", "content": "Third <b>one</b>"}], "meta": {"lang": "de"}},
]


def _frames(records: list[dict[str, Any]]) -> dict[str, Any]:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    datasets = pytest.importorskip("datasets")
    import pyarrow as pa

    df = pd.DataFrame(records)
    return {"pandas": df, "polars": pl.DataFrame(records), "dataset": datasets.Dataset.from_list(records),
            "dataset-dict": datasets.DatasetDict({"test": datasets.Dataset.from_list(records[:1]),
                                                  "train": datasets.Dataset.from_list(records)}),
            "arrow": pa.Table.from_pylist(records)}


def _jsonl(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("field", [None, "text", "messages", "messages.0.content", "meta.lang"])
def test_every_table_kind_gives_the_files_prompt_set(tmp_path: Path, field: str | None) -> None:
    from_file = load_prompts(_jsonl(tmp_path, RECORDS), text_field=field)
    for kind, table in _frames(RECORDS).items():
        assert table_kind(table) == kind
        ps = load_prompts(table, text_field=field)
        assert (ps.ids, ps.texts, ps.text_field) == (from_file.ids, from_file.texts, from_file.text_field), kind
    if field == "messages":  # the chat column gives the first user turn, as in a file
        assert from_file.texts == ["Hi there, café?", "Second turn", "Third <b>one</b>"]


def test_id_field_and_numbering_match_the_file(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, RECORDS)
    for id_field in ("meta.lang", "none"):
        expected = load_prompts(path, id_field=id_field).ids
        for kind, table in _frames(RECORDS).items():
            assert load_prompts(table, id_field=id_field).ids == expected, kind
    assert load_prompts(path, id_field="none").ids == ["0", "1", "2"]
    assert load_prompts(path, id_field="meta.lang").ids == ["en", "fr", "de"]


def test_missing_texts_are_the_same_error_or_skip_as_in_a_file(tmp_path: Path) -> None:
    records = [{"id": "x", "text": "fine prompt"}, {"id": "y", "text": None}, {"id": "z", "text": "another"}]
    path = _jsonl(tmp_path, records)
    with pytest.raises(InputError) as file_err:
        load_prompts(path)
    assert "line 2" in str(file_err.value)
    skipped = load_prompts(path, skip_invalid=True)
    for kind, table in _frames(records).items():
        with pytest.raises(InputError) as table_err:
            load_prompts(table)
        assert "row 2" in str(table_err.value) and "no usable text in field 'text'" in str(table_err.value), kind
        ps = load_prompts(table, skip_invalid=True)
        assert (ps.ids, ps.texts, ps.n_skipped) == (skipped.ids, skipped.texts, 1), kind


def test_parquet_chat_column_read_by_pandas_holds_numpy_arrays(tmp_path: Path) -> None:
    """pandas reads a Parquet list column as numpy arrays of dicts; they are messages all the same."""
    pd = pytest.importorskip("pandas")
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "chat.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS), path)
    df = pd.read_parquet(path)
    assert type(df["messages"].iloc[0]).__name__ == "ndarray"  # premise
    assert load_prompts(df, text_field="messages").texts == load_prompts(path, text_field="messages").texts


def test_series_is_a_column_of_prompts() -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    texts = [r["text"] for r in RECORDS]
    for series in (pd.Series(texts, name="question"), pl.Series("question", texts), pd.Series(texts)):
        ps = load_prompts(series)
        assert ps.texts == texts and ps.ids == ["0", "1", "2"]
    assert load_prompts(pd.Series(texts, name="question")).text_field == "question"


def test_unusable_inputs_are_one_line_errors_not_type_errors() -> None:
    pl = pytest.importorskip("polars")
    with pytest.raises(InputError, match=r"LazyFrame .* fix: pass frame.collect\(\)"):
        load_prompts(pl.DataFrame(RECORDS).lazy())
    with pytest.raises(InputError, match="item 1 is a dict"):
        as_prompt_set(["a prompt", {"text": "b"}])
    with pytest.raises(InputError, match=r"cannot read prompts from a builtins\.object"):
        load_prompts(object())
    assert as_prompt_set(["one", "two"]).texts == ["one", "two"]


def test_file_inputs_never_import_the_optional_libraries(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, RECORDS)
    code = ("import sys; from data_advisor.data import as_prompt_set, load_prompts; "
            f"load_prompts({str(path)!r}); as_prompt_set(['a', 'b']); load_prompts({str(path)!r}, text_field='messages'); "
            "print(sorted(m for m in ('pandas', 'polars', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

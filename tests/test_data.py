"""Loading prompt sets: every input format, field selection, ids, and every way a file can be wrong.

Each bad input must raise :class:`InputError` whose message is one line, names the file / line / field concerned,
and carries a ``fix:``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from data_advisor.data import DEFAULT_MAX_CHARS, PromptSet, load_prompts
from data_advisor.errors import DataAdvisorError, InputError

PROMPTS = [
    "How do I pick a lock?",
    "Write a poem about the sea, with a comma, and \"quotes\".",
    "Explain photosynthesis\tto a child.",
]


def check_error(exc: DataAdvisorError, *needles: str) -> str:
    """The message is one line, carries a fix, and names each of ``needles``."""
    msg = exc.one_line()
    assert str(exc) == msg
    assert "\n" not in msg and "\r" not in msg
    assert " — fix: " in msg and exc.fix, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------- formats
def test_jsonl(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": t} for t in PROMPTS])
    ps = load_prompts(p)
    assert ps.texts == PROMPTS
    assert ps.ids == ["0", "1", "2"]
    assert ps.text_field == "text"
    assert ps.source == str(p)


def test_jsonl_blank_lines_and_crlf(tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    p.write_bytes(b'{"text": "a"}\r\n\r\n{"text": "b"}\r\n')
    assert load_prompts(p).texts == ["a", "b"]


def test_jsonl_utf8_bom(tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + '{"text": "caf\u00e9"}\n'.encode())
    assert load_prompts(p).texts == ["caf\u00e9"]


def test_jsonl_text_with_unicode_line_separators(tmp_path: Path) -> None:
    """U+2028 / U+2029 / U+0085 are legal unescaped inside a JSON string (``json.dumps(ensure_ascii=False)`` writes
    them raw), so a JSONL record holding one is still one line of the file."""
    texts = ["first\u2028second", "para\u2029graph", "next\x85line", "plain"]
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": t} for t in texts])
    assert p.read_bytes().count(b"\n") == 4
    assert load_prompts(p).texts == texts


def test_json_array(tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_text(json.dumps([{"prompt": t, "id": f"x{i}"} for i, t in enumerate(PROMPTS)]), encoding="utf-8")
    ps = load_prompts(p)
    assert ps.texts == PROMPTS
    assert ps.ids == ["x0", "x1", "x2"]
    assert ps.text_field == "prompt"


def test_json_object_holding_one_list(tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"meta": {"v": 1}, "data": [{"text": t} for t in PROMPTS]}), encoding="utf-8")
    assert load_prompts(p).texts == PROMPTS


def test_json_array_of_strings(tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_text(json.dumps(PROMPTS), encoding="utf-8")
    ps = load_prompts(p)
    assert ps.texts == PROMPTS
    assert ps.text_field is None


@pytest.mark.parametrize(("suffix", "delimiter"), [(".csv", ","), (".tsv", "\t")])
def test_csv_tsv(tmp_path: Path, suffix: str, delimiter: str) -> None:
    p = tmp_path / f"p{suffix}"
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(["id", "Behavior", "label"])
        for i, t in enumerate(PROMPTS):
            w.writerow([f"b{i}", t, "lab"])
    ps = load_prompts(p, keep_fields=["label"])
    assert ps.texts == PROMPTS
    assert ps.ids == ["b0", "b1", "b2"]
    assert ps.text_field == "Behavior"
    assert ps.fields == {"label": ["lab"] * 3}


def test_csv_multiline_quoted_cell(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text"])
        w.writerow(["line one\nline two"])
        w.writerow(["second"])
    assert load_prompts(p).texts == ["line one\nline two", "second"]


def test_csv_cell_over_the_csv_module_limit_is_a_long_text_like_jsonl(tmp_path: Path) -> None:
    """A 140,000-character cell (over csv's default field limit of 131,072) is truncated with ``truncate`` and
    otherwise refused with the same length error as the JSONL record, not a misleading quoting error."""
    long_text = "How do I pick a lock? " * 6_400  # 140,800 characters
    csv_path, jsonl_path = tmp_path / "p.csv", tmp_path / "p.jsonl"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        w.writerow(["a", long_text])
        w.writerow(["b", "short"])
    jsonl_path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in (("a", long_text), ("b", "short"))))
    saved = csv.field_size_limit(131_072)  # the interpreter's default, whatever an earlier test left
    try:
        for path in (csv_path, jsonl_path):
            ps = load_prompts(path, truncate=True)
            assert ps.texts == [long_text[:DEFAULT_MAX_CHARS], "short"] and ps.n_truncated == 1
        with pytest.raises(InputError) as from_csv:
            load_prompts(csv_path)
        with pytest.raises(InputError) as from_jsonl:
            load_prompts(jsonl_path)
    finally:
        csv.field_size_limit(saved)
    msg = check_error(from_csv.value, "row 1", "140,800 characters", "--truncate")
    assert "quoting" not in msg
    assert msg.replace("row 1", "line 1").replace(str(csv_path), str(jsonl_path)) == from_jsonl.value.one_line()


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "p.parquet"
    pq.write_table(pa.table({"question": PROMPTS, "n": [1, 2, 3]}), p)
    ps = load_prompts(p)
    assert ps.texts == PROMPTS
    assert ps.text_field == "question"


def test_txt_one_prompt_per_line(tmp_path: Path) -> None:
    p = tmp_path / "p.txt"
    p.write_text("first prompt\n\nsecond prompt\nthird\n", encoding="utf-8")
    ps = load_prompts(p)
    assert ps.texts == ["first prompt", "second prompt", "third"]
    assert ps.ids == ["0", "1", "2"]


def _write_arrow_stream(path: Path, table: object) -> None:
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:  # type: ignore[attr-defined]
        writer.write_table(table)


def _save_to_disk_folder(folder: Path, texts: list[str]) -> Path:
    """What ``datasets.Dataset.save_to_disk`` writes: Arrow IPC *stream* shards + state.json + dataset_info.json."""
    import pyarrow as pa

    folder.mkdir()
    table = pa.table({"id": [f"d{i}" for i in range(len(texts))], "instruction": texts})
    _write_arrow_stream(folder / "data-00000-of-00001.arrow", table)
    (folder / "state.json").write_text(json.dumps({
        "_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_fingerprint": "abc", "_format_type": None,
        "_split": None,
    }), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({"features": {
        "id": {"dtype": "string", "_type": "Value"}, "instruction": {"dtype": "string", "_type": "Value"}}}),
        encoding="utf-8")
    return folder


def test_datasets_save_to_disk_folder(tmp_path: Path) -> None:
    folder = _save_to_disk_folder(tmp_path / "ds", PROMPTS)
    ps = load_prompts(folder)
    assert ps.texts == PROMPTS
    assert ps.ids == ["d0", "d1", "d2"]
    assert ps.text_field == "instruction"


def test_datasets_dict_folder_reads_train_split(tmp_path: Path) -> None:
    root = tmp_path / "dd"
    root.mkdir()
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["test", "train"]}), encoding="utf-8")
    _save_to_disk_folder(root / "train", ["train prompt"])
    _save_to_disk_folder(root / "test", ["test prompt"])
    assert load_prompts(root).texts == ["train prompt"]


def test_folder_of_shards(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    write_jsonl(folder / "part-000.jsonl", [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}])
    write_jsonl(folder / "part-001.jsonl", [{"id": "c", "text": "three"}])
    (folder / "part-002.jsonl").write_bytes(b"")  # an empty shard is skipped, not an error
    (folder / "README.md").write_text("not a shard", encoding="utf-8")
    ps = load_prompts(folder)
    assert ps.texts == ["one", "two", "three"]
    assert ps.ids == ["a", "b", "c"]


def test_folder_without_prompt_files(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.md").write_text("x", encoding="utf-8")
    with pytest.raises(InputError) as ei:
        load_prompts(folder)
    check_error(ei.value, str(folder))


def test_from_texts() -> None:
    ps = PromptSet.from_texts(["a", "b"], ids=["x", "y"])
    assert (ps.ids, ps.texts, len(ps)) == (["x", "y"], ["a", "b"], 2)
    assert PromptSet.from_texts(["a", "b"]).ids == ["0", "1"]
    with pytest.raises(InputError) as ei:
        PromptSet.from_texts(["a", "  "])
    check_error(ei.value, "item 1")


def test_fingerprint_depends_on_ids_and_texts() -> None:
    a = PromptSet.from_texts(["x", "y"])
    assert a.fingerprint() == PromptSet.from_texts(["x", "y"]).fingerprint()
    assert a.fingerprint() != PromptSet.from_texts(["x", "y"], ids=["0", "2"]).fingerprint()
    assert a.fingerprint() != PromptSet.from_texts(["x", "z"]).fingerprint()
    # the separator makes ("ab", "") and ("a", "b") different
    assert PromptSet(["ab"], ["c"]).fingerprint() != PromptSet(["a"], ["bc"]).fingerprint()


# -------------------------------------------------------------------------------------------------- fields
def test_dotted_text_field(tmp_path: Path) -> None:
    rows = [{"a": {"b": [{"c": f"deep {i}"}, {"c": "other"}]}} for i in range(3)]
    p = write_jsonl(tmp_path / "p.jsonl", rows)
    ps = load_prompts(p, text_field="a.b.0.c")
    assert ps.texts == ["deep 0", "deep 1", "deep 2"]
    assert load_prompts(p, text_field="a.b.-1.c").texts == ["other"] * 3


def test_chat_messages_first_user_turn(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "system", "content": "You are helpful."},
                      {"role": "user", "content": "first user turn"},
                      {"role": "assistant", "content": "answer"},
                      {"role": "user", "content": "second user turn"}]},
        {"messages": [{"from": "human", "value": "sharegpt style"}, {"from": "gpt", "value": "reply"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "multi"}, {"type": "text", "text": "part"}]}]},
    ]
    p = write_jsonl(tmp_path / "chat.jsonl", rows)
    ps = load_prompts(p)
    assert ps.text_field == "messages"
    assert ps.texts == ["first user turn", "sharegpt style", "multi part"]


def test_hh_rlhf_transcript_first_human_turn(tmp_path: Path) -> None:
    rows = [{"chosen": "\n\nHuman: how do I bake bread?\n\nAssistant: Mix flour.\n\nHuman: and then?\n\nAssistant: Bake."}]
    p = write_jsonl(tmp_path / "hh.jsonl", rows)
    assert load_prompts(p).texts == ["how do I bake bread?"]


@pytest.mark.parametrize(("record", "field"), [
    ({"id": 1, "prompt": "p", "response": "r"}, "prompt"),
    ({"instruction": "p", "input": "", "output": "o"}, "instruction"),
    ({"question": "p", "answer": "a"}, "question"),
    ({"Goal": "p", "Target": "t"}, "Goal"),
    ({"text": "p", "prompt": "q"}, "text"),
])
def test_auto_detected_field(tmp_path: Path, record: dict[str, object], field: str) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [record])
    ps = load_prompts(p)
    assert ps.text_field == field
    assert ps.texts == [record[field]]


def test_numbers_become_text(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": 42}, {"text": 1.5}])
    assert load_prompts(p).texts == ["42", "1.5"]


# ----------------------------------------------------------------------------------------------------- ids
def test_ids_given_and_dotted(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"meta": {"uid": 10 + i}, "text": t} for i, t in enumerate(PROMPTS)])
    assert load_prompts(p, id_field="meta.uid").ids == ["10", "11", "12"]
    assert load_prompts(p).ids == ["0", "1", "2"]  # no `id` field: position


def test_duplicate_id_is_an_error(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}])
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "duplicate id 'a'", "line 3", "line 1", str(p), "--id-field none")


def test_id_field_none_numbers_by_position(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    ps = load_prompts(p, id_field="none")
    assert ps.ids == ["0", "1"]
    assert ps.texts == ["x", "y"]


def test_exact_duplicates_kept(tmp_path: Path) -> None:
    texts = ["same", "other", "same", "same"]
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": t} for t in texts])
    ps = load_prompts(p)
    assert ps.texts == texts
    assert len(ps) == 4
    from data_advisor.coverage.metrics import exact_duplicate_groups, exact_duplicate_rate

    assert exact_duplicate_groups(ps.texts) == [[0, 2, 3]]
    assert exact_duplicate_rate(ps.texts) == pytest.approx(2 / 4)


# ---------------------------------------------------------------------------------------------- bad inputs
def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.jsonl"
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "not found", str(p))


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.csv", "empty.txt", "empty.json"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(b"")
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "empty", str(p))


def test_blank_lines_only(tmp_path: Path) -> None:
    p = tmp_path / "blank.jsonl"
    p.write_text("\n  \n\n", encoding="utf-8")
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "no prompts", str(p))


def test_invalid_json_line_is_named(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a"}\n{"text": "b"}\n\n{"text": "c",}\n{"text": "d"}\n', encoding="utf-8")
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "invalid JSON", "line 4", str(p))


def test_invalid_json_array_names_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text('[\n  {"text": "a"},\n  {"text": "b"\n]\n', encoding="utf-8")
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "invalid JSON", "line 4", str(p))


def test_missing_field_lists_fields_found(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": "a", "label": 1}, {"txt": "b", "label": 0}])
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "line 2", "'text'", "txt, label", str(p), "--text-field")


def test_no_candidate_field_lists_fields_found(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"body": "a", "label": 1}])
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "body, label", str(p), "--text-field")


def test_explicit_field_missing_in_csv(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text("goal,category\nsomething,x\n", encoding="utf-8")
    with pytest.raises(InputError) as ei:
        load_prompts(p, text_field="Goal")
    check_error(ei.value, "row 1", "'Goal'", "goal, category")


def test_non_utf8_names_line_and_latin1_loads(tmp_path: Path) -> None:
    p = tmp_path / "latin.jsonl"
    p.write_bytes(b'{"text": "plain"}\n{"text": "also plain"}\n{"text": "caf\xe9 au lait"}\n')
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "line 3", "0xe9", "utf-8", str(p), "--encoding")
    assert load_prompts(p, encoding="latin-1").texts == ["plain", "also plain", "caf\u00e9 au lait"]


def test_unknown_encoding(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": "a"}])
    with pytest.raises(InputError) as ei:
        load_prompts(p, encoding="no-such-codec")
    check_error(ei.value, "no-such-codec")


@pytest.mark.parametrize("bad", ["", "   ", "\n\t "])
def test_empty_text_is_an_error(tmp_path: Path, bad: str) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": "fine"}, {"text": bad}])
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "line 2", "empty", "'text'", str(p), "--skip-invalid")


def test_null_text_is_an_error(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": None}])
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "line 1", "no usable text", "'text'")


def test_huge_text_is_an_error_and_truncate_works(tmp_path: Path) -> None:
    huge = "x" * 1_000_000
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": "short"}, {"text": huge}, {"text": "y" * (DEFAULT_MAX_CHARS + 1)}])
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    msg = check_error(ei.value, "line 2", "1,000,000", f"{DEFAULT_MAX_CHARS:,}", "--truncate")
    assert len(msg) < 1000  # the text itself is not echoed
    ps = load_prompts(p, truncate=True)
    assert ps.n_truncated == 2
    assert [len(t) for t in ps.texts] == [5, DEFAULT_MAX_CHARS, DEFAULT_MAX_CHARS]
    ps = load_prompts(p, truncate=True, max_chars=10)
    assert ps.n_truncated == 2  # "short" fits
    assert ps.texts == ["short", "x" * 10, "y" * 10]


def test_skip_invalid(tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "ok 1", "lab": 1}, {"id": "b", "text": "  ", "lab": 2}, {"id": "c", "other": "x", "lab": 3},
            {"id": "d", "text": None, "lab": 4}, {"id": "e", "text": "ok 2", "lab": 5}]
    p = write_jsonl(tmp_path / "p.jsonl", rows)
    ps = load_prompts(p, skip_invalid=True, keep_fields=["lab"])
    assert ps.texts == ["ok 1", "ok 2"]
    assert ps.ids == ["a", "e"]
    assert ps.fields == {"lab": [1, 5]}
    assert ps.n_skipped == 3


def test_skip_invalid_with_nothing_left(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": ""}, {"text": " "}])
    with pytest.raises(InputError) as ei:
        load_prompts(p, skip_invalid=True)
    check_error(ei.value, "skipping 2", str(p))


def test_unsupported_format(tmp_path: Path) -> None:
    p = tmp_path / "p.xlsx"
    p.write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "'.xlsx'", str(p))


def test_corrupt_parquet(tmp_path: Path) -> None:
    p = tmp_path / "p.parquet"
    p.write_bytes(b"this is not parquet at all")
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "Parquet", str(p))


def test_records_neither_strings_nor_objects(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [[1, 2], [3]])
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, str(p))


# ------------------------------------------------------------------------------------- hostile inputs (issue 13)
@pytest.mark.parametrize("text", ["\x00\x00\x00", "\x00 \x1b\x07", "\x7f\x9b"])
def test_text_of_only_control_characters_is_empty(tmp_path: Path, text: str) -> None:
    """A NUL-only text was audited as an empty text with exit 0; control characters are stripped first."""
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": "fine"}, {"text": text}])
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "line 2", "empty")
    assert load_prompts(p, skip_invalid=True).n_skipped == 1


def test_control_characters_are_stripped_from_texts(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"text": "a\x00b\x1b[31mc\td\ne"}])
    assert load_prompts(p).texts == ["ab[31mc\td\ne"]


def test_positional_id_never_collides_with_a_real_id(tmp_path: Path) -> None:
    """Line 2 without an id was reported as "duplicate id '1'" because line 1's real id is "1"."""
    p = write_jsonl(tmp_path / "p.jsonl", [{"id": 1, "text": "one"}, {"text": "two"}, {"id": "#1", "text": "three"}])
    ps = load_prompts(p)
    assert ps.ids == ["1", "##1", "#1"]
    assert len(set(ps.ids)) == 3
    # Without any real id, positions are the ids, as before.
    assert load_prompts(write_jsonl(tmp_path / "q.jsonl", [{"text": "a"}, {"text": "b"}])).ids == ["0", "1"]


def test_real_duplicate_ids_are_still_an_error(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [{"id": 1, "text": "one"}, {"text": "two"}, {"id": 1, "text": "three"}])
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "duplicate id '1'", "line 3", "line 1")


@pytest.mark.parametrize("damage", ["state not JSON", "state names a missing file", "state escapes the folder",
                                    "state without _data_files", "dataset_dict not JSON", "dataset_dict split missing"])
def test_damaged_datasets_folder_is_a_one_line_error(tmp_path: Path, damage: str) -> None:
    """Damaged save_to_disk metadata was a traceback (or a silent fallback to other files)."""
    if damage.startswith("dataset_dict"):
        root = tmp_path / "dd"
        root.mkdir()
        _save_to_disk_folder(root / "train", ["train prompt"])
        meta = root / "dataset_dict.json"
        meta.write_text('{"splits": ["train"' if damage.endswith("not JSON") else '{"splits": ["validation"]}', "utf-8")
        needle = "dataset_dict.json"
    else:
        root = _save_to_disk_folder(tmp_path / "ds", PROMPTS)
        meta = root / "state.json"
        body = {"state not JSON": '{"_data_files": [', "state names a missing file":
                '{"_data_files": [{"filename": "data-00001-of-00002.arrow"}]}',
                "state escapes the folder": '{"_data_files": [{"filename": "../../etc/passwd"}]}',
                "state without _data_files": '{"_fingerprint": "abc"}'}[damage]
        meta.write_text(body, "utf-8")
        needle = "state.json"
    with pytest.raises(InputError) as ei:
        load_prompts(root)
    check_error(ei.value, needle)


def test_lone_surrogates_become_replacement_characters(tmp_path: Path) -> None:
    """JSON may hold "\\ud800"; no UTF-8 writer can write it, so the audit crashed writing its outputs, after all the
    work."""
    from data_advisor.io import write_jsonl_atomic

    p = tmp_path / "p.jsonl"
    p.write_text('{"id": "a\\udc00", "text": "bad \\ud800 half"}\n{"text": "pair \\ud83d\\ude00 ok"}\n', encoding="utf-8")
    ps = load_prompts(p)
    assert ps.texts == ["bad \ufffd half", "pair \U0001f600 ok"] and ps.ids[0] == "a\ufffd"
    write_jsonl_atomic(tmp_path / "out.jsonl", [{"id": i, "text": t} for i, t in zip(ps.ids, ps.texts, strict=True)])


@pytest.mark.parametrize("name", ["deep.jsonl", "deep.json"])
def test_deeply_nested_json_is_a_one_line_error(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    check_error(ei.value, "nested too deeply")


def test_device_input_is_refused_not_read_forever() -> None:
    """`audit /dev/zero` read an endless stream into memory."""
    with pytest.raises(InputError) as ei:
        load_prompts("/dev/zero")
    check_error(ei.value, "not a regular file")


def test_error_messages_quote_file_content_without_terminal_escapes(tmp_path: Path) -> None:
    """Field names are listed in the error; one holding an escape sequence must not reach the terminal raw."""
    p = write_jsonl(tmp_path / "p.jsonl", [{"\x1b]0;owned\x07\x1b[2J": "x"}])
    with pytest.raises(InputError) as ei:
        load_prompts(p)
    msg = check_error(ei.value, "no text field found", "\\x1b]0;owned\\x07")
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in msg)


@pytest.mark.parametrize("kind", ["loop", "self", "dangling"])
def test_link_loops_and_dangling_links_are_one_line_input_errors(tmp_path: Path, kind: str) -> None:
    """Issue 18: a symlink loop as input was a ``RuntimeError: Symlink loop`` traceback."""
    path = tmp_path / "in.jsonl"
    if kind == "loop":
        (tmp_path / "other").symlink_to(path)
        path.symlink_to(tmp_path / "other")
    elif kind == "self":
        path.symlink_to(path)
    else:
        path.symlink_to(tmp_path / "gone.jsonl")
    with pytest.raises(InputError) as exc:
        load_prompts(path)
    assert "symbolic link" in str(exc.value) and str(path) in str(exc.value)

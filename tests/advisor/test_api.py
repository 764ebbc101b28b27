"""``data_advisor.Advisor`` with in-memory tables: a DataFrame base and pool run exactly as their files do, resume,
and show as an escaped summary in a notebook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import data_advisor
from data_advisor.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_dataframe_base_and_pool_run_as_their_files(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    options = {"method": "curate", "taxonomy": "catqa-11", "n": 6, "per_round": 6}
    from_files = data_advisor.Advisor(tmp_path / "files", pool=EXAMPLES / "pool.jsonl",
                                      base=str(EXAMPLES / "prompts.jsonl"), **options).run()
    base = pd.read_json(EXAMPLES / "prompts.jsonl", lines=True).rename(columns={"text": "prompt", "id": "key"})
    pool = pl.read_ndjson(EXAMPLES / "pool.jsonl")
    run_dir = tmp_path / "<b>tables"  # a hostile folder name, for the notebook view below
    from_tables = data_advisor.Advisor(run_dir, pool=pool, base=base, base_text_field="prompt", base_id_field="key",
                                       **options).run()
    assert from_tables.n_base == from_files.n_base == len(base)
    assert from_tables.metrics == from_files.metrics
    before = [json.loads((d / "base.json").read_text("utf-8")) for d in (tmp_path / "files", run_dir)]
    assert before[0]["anchor_counts"] == before[1]["anchor_counts"]
    assert [json.loads(line)["text"] for line in (tmp_path / "files" / "prompts.jsonl").read_text("utf-8").splitlines()] \
        == [json.loads(line)["text"] for line in (run_dir / "prompts.jsonl").read_text("utf-8").splitlines()]
    stored = sorted(p.name.split("-")[0] for p in (run_dir / "inputs").iterdir())
    assert stored == ["base", "pool"]
    again = data_advisor.Advisor(run_dir, pool=pool, base=base, base_text_field="prompt", base_id_field="key",
                                 **options).run()
    assert again.resumed and again.n_prompts == from_tables.n_prompts
    with pytest.raises(data_advisor.DataAdvisorError, match="changed since the run started"):
        data_advisor.Advisor(run_dir, pool=pool, base=base.head(100), base_text_field="prompt", base_id_field="key",
                             **options).run()
    view = from_tables._repr_html_()
    assert "<b>tables" not in view and "&lt;b&gt;tables" in view
    assert f"{from_tables.metrics['normalized_entropy']:.3f}" in view and "added" in view


def test_id_field_of_a_file_base_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="base_id_field applies to an in-memory base"):
        data_advisor.Advisor(tmp_path / "r", method="curate", pool=str(EXAMPLES / "pool.jsonl"),
                             base=str(EXAMPLES / "prompts.jsonl"), base_id_field="id")

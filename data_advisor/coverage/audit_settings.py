"""What an audit computes (:class:`AuditSettings`, stored in coverage.json) and how it runs (:class:`AuditOptions`).

Why a module of its own: the API, the CLI, the advisor's monitor and the audit itself all build these, and the
old flat keyword spellings of :func:`~data_advisor.coverage.audit.audit_full` / :func:`data_advisor.audit` are
mapped onto them in one place (:func:`settings_from_keywords`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields, replace
from typing import Any

from data_advisor.coverage.assign import DEFAULT_MARGIN_THRESHOLD, DEFAULT_MIN_SCORE
from data_advisor.coverage.embedding.models import DEFAULT_MODEL

#: A cluster whose centroid is less similar than this to every principle is "far from every anchor".
DEFAULT_EMERGENT_THRESHOLD = 0.45


@dataclass
class AuditSettings:
    """Everything that changes an audit's numbers; stored in the report so it can be reproduced."""

    taxonomy: str = "catqa-11"
    embedding_model: str = DEFAULT_MODEL
    """The embedding model (``--embedding-model``); stored as ``settings.model`` in coverage.json (schema unchanged)."""
    seed: int = 0
    background: bool = True
    margin_threshold: float = DEFAULT_MARGIN_THRESHOLD
    min_score: float = DEFAULT_MIN_SCORE
    coverage_min_count: int = 5
    near_duplicate_threshold: float = 0.95
    emergent_threshold: float = DEFAULT_EMERGENT_THRESHOLD
    cluster: bool = True
    min_cluster_size: int | None = None
    n_neighbors: int = 15
    max_fit: int = 50_000
    n_examples: int = 3
    refine: bool = True  # transductive refinement of principle assignments (coverage/refine.py); --no-refine
    base_rate: bool = True  # move the harm boundary for the set's estimated harmful share (coverage/labelled.py)
    labels: str | None = None  # reviewer label file (--labels): coverage/labels.py, applied by coverage/estimates.py

    @property
    def model(self) -> str:
        """Deprecated spelling of :attr:`embedding_model` (``model`` names LLMs elsewhere)."""
        warnings.warn("AuditSettings.model is deprecated: use embedding_model", DeprecationWarning, stacklevel=2)
        return self.embedding_model

    def __post_init__(self) -> None:
        """Reject impossible settings before any work starts (HDBSCAN's own error would come after embedding)."""
        from data_advisor.errors import InputError

        if self.min_cluster_size is not None and self.min_cluster_size < 2:
            raise InputError(f"--min-cluster-size must be at least 2 (got {self.min_cluster_size})",
                             "pass 2 or more, or leave it out for the default (about √n / 2)")
        if self.coverage_min_count < 1:
            raise InputError(f"--min-count must be at least 1 (got {self.coverage_min_count})", "pass 1 or more")
        if self.n_neighbors < 2:
            raise InputError(f"n_neighbors must be at least 2 (got {self.n_neighbors})", "pass 2 or more")
        if self.max_fit < 100:
            raise InputError(f"--max-fit must be at least 100 (got {self.max_fit})",
                             "pass the number of prompts UMAP + HDBSCAN may fit at once, e.g. 50000")
        if not 0 < self.near_duplicate_threshold <= 1:
            raise InputError("the near-duplicate threshold must be in (0, 1]", "pass a cosine such as 0.95")


_settings_init = AuditSettings.__init__


def _settings_init_with_alias(self: AuditSettings, *args: Any, model: str | None = None, **kwargs: Any) -> None:
    """``AuditSettings(model=...)``, the deprecated spelling of ``embedding_model=...``, keeps working."""
    if model is not None:
        warnings.warn("AuditSettings(model=...) is deprecated: use embedding_model=...", DeprecationWarning,
                      stacklevel=2)
        kwargs.setdefault("embedding_model", model)
    _settings_init(self, *args, **kwargs)


AuditSettings.__init__ = _settings_init_with_alias  # type: ignore[method-assign]


@dataclass(frozen=True)
class AuditOptions:
    """How an audit runs, as opposed to what it computes (:class:`AuditSettings`): none of these change a number,
    so none is stored in coverage.json."""

    text_field: str | None = None  # field holding the prompt in a file or table input (default: detected)
    id_field: str | None = None  # field holding the prompt id (default: "id" when present; "none": number by position)
    embedder_name: str = "st"  # backend when no embedder object is given: st, onnx, onnx-int8, static, cascade
    cache: bool = True  # the embedding and cluster caches
    show_progress: bool = False


#: Old keyword spellings of :func:`audit_full` / :func:`data_advisor.audit` → (object, field) they now set.
_LEGACY_OPTION_NAMES = {"embedder_kind": "embedder_name", "model": "embedding_model"}


def settings_from_keywords(settings: AuditSettings | None, options: AuditOptions | None, legacy: dict[str, Any],
                           *, where: str) -> tuple[AuditSettings, AuditOptions]:
    """Merge keyword arguments of the old flat signature into the settings objects, with a DeprecationWarning.

    Why: ``audit(..., seed=3, min_cluster_size=10, text_field="body")`` must keep working for existing callers while
    the signature becomes a settings object plus a few explicit arguments (which other features extend).
    """
    from data_advisor.errors import InputError

    settings = settings or AuditSettings()
    options = options or AuditOptions()
    if not legacy:
        return settings, options
    setting_names = {f.name for f in fields(AuditSettings)}
    option_names = {f.name for f in fields(AuditOptions)}
    to_settings: dict[str, Any] = {}
    to_options: dict[str, Any] = {}
    for key, value in legacy.items():
        name = _LEGACY_OPTION_NAMES.get(key, key)
        if name in setting_names:
            to_settings[name] = value
        elif name in option_names:
            to_options[name] = value
        else:
            raise InputError(f"{where}() got an unknown keyword argument {key!r}",
                             "pass AuditSettings fields in settings=AuditSettings(...) and run options in "
                             "options=AuditOptions(...)")
    warnings.warn(f"{where}({', '.join(f'{k}=' for k in legacy)}) is deprecated: pass "
                  "settings=AuditSettings(...) and options=AuditOptions(...)", DeprecationWarning, stacklevel=3)
    return replace(settings, **to_settings), replace(options, **to_options)

"""Everything that changes an audit's numbers (:class:`AuditSettings`), stored in coverage.json to reproduce it.

Apart from :mod:`~data_advisor.coverage.audit` so the orchestrator stays under 500 lines and readers of settings
(the CLI, the advisor loop) need not load the pipeline.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
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


def deprecated_embedding_kwargs(kwargs: dict[str, Any], embedding_model: str, embedder_name: str) -> tuple[str, str]:
    """Take the deprecated ``model`` / ``embedder_kind`` keywords out of ``kwargs`` (with a DeprecationWarning)."""
    if "model" in kwargs:
        warnings.warn("audit(model=...) is deprecated: use embedding_model=...", DeprecationWarning, stacklevel=3)
        embedding_model = kwargs.pop("model")
    if "embedder_kind" in kwargs:
        warnings.warn("audit(embedder_kind=...) is deprecated: use embedder_name=...", DeprecationWarning, stacklevel=3)
        embedder_name = kwargs.pop("embedder_kind")
    return embedding_model, embedder_name

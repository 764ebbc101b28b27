"""A dataset-CI gate: fail a data pipeline when the coverage it measures drops under what the team requires.

Like coverage.py's ``--fail-under``, each condition is ``NAME=VALUE`` and fails when the report's value is *under*
VALUE: any numeric dataset metric of ``coverage.json`` (``coverage_ratio``, ``normalized_entropy``, ``vendi_score``
…), ``min_anchor_count`` (the smallest count over the leaf principles) or ``anchor:ID`` (that principle's count,
parents included: their counts roll up). Conditions are parsed and checked against the taxonomy *before* the audit
runs, so a typo is one error (exit 2) naming the valid names, never a gate that silently passes after the work.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from data_advisor.errors import InputError

#: The numeric metrics of ``coverage.json`` a gate may name (its one text metric, the methods, cannot be compared).
GATE_METRICS: tuple[str, ...] = (
    "n_prompts", "n_unique", "n_anchored", "anchored_share", "n_leaf_anchors", "anchors_covered", "coverage_ratio",
    "coverage_min_count", "normalized_entropy", "gini", "kl_target_actual", "effective_anchors", "vendi_score",
    "distinct_1", "distinct_2", "exact_duplicate_rate", "near_duplicate_rate", "near_duplicate_threshold",
    "mean_score", "mean_margin", "n_clusters", "noise_share", "n_emergent_clusters", "unanchored_share",
    "refine_moved",
)
MIN_ANCHOR_COUNT = "min_anchor_count"
ANCHOR_PREFIX = "anchor:"


@dataclass(frozen=True)
class GateCondition:
    """One ``NAME=VALUE`` condition: the report passes it when its value for NAME is at least ``threshold``."""

    name: str
    threshold: float

    def failure(self, report: Any) -> str | None:
        """One line saying why ``report`` (a CoverageReport) fails this condition, or None when it passes."""
        if self.name.startswith(ANCHOR_PREFIX):
            anchor_id = self.name[len(ANCHOR_PREFIX):]
            found = [a for a in report.anchors if a.id == anchor_id]
            if not found:
                return f"{self.name}: principle {anchor_id!r} is not in this report"
            value: float = found[0].count
            detail = f" ({found[0].name})"
        elif self.name == MIN_ANCHOR_COUNT:
            leaves = sorted(report.leaf_anchors(), key=lambda a: (a.count, a.id))
            if not leaves:
                return f"{self.name}: the report has no principles"
            value, detail = leaves[0].count, f" ({leaves[0].id}: {leaves[0].name})"
        else:
            raw = report.metrics.get(self.name)
            if not isinstance(raw, int | float) or isinstance(raw, bool):
                return f"{self.name}: not measured in this report"
            value, detail = raw, ""
        if value >= self.threshold:
            return None
        return f"{self.name} {value:g} is under {self.threshold:g}{detail}"


def valid_names(anchor_ids: Collection[str] = ()) -> str:
    """The names a condition may use, for the one-line error."""
    anchors = f"{ANCHOR_PREFIX}ID with ID one of {', '.join(anchor_ids)}" if anchor_ids else f"{ANCHOR_PREFIX}ID"
    return f"{', '.join(GATE_METRICS)}, {MIN_ANCHOR_COUNT}, {anchors}"


def parse_conditions(spec: Mapping[str, float] | Iterable[str] | None,
                     anchor_ids: Collection[str] = ()) -> list[GateCondition]:
    """Conditions from ``{"coverage_ratio": 0.9, "anchor:cyber": 20}`` or CLI strings ``"coverage_ratio=0.9"``.

    ``anchor_ids`` (the taxonomy's principle ids) is checked when given; an unknown name, a malformed condition or
    a value that is not a finite number raises :class:`InputError` listing the valid names.
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        spec = [spec]
    pairs: list[tuple[str, Any]] = []
    if isinstance(spec, Mapping):
        pairs = list(spec.items())
    else:
        for item in spec:
            name, eq, value = str(item).partition("=")
            if not eq or not name.strip() or not value.strip():
                raise InputError(f"--fail-under {item!r} is not METRIC=VALUE",
                                 f"write e.g. coverage_ratio=0.9; METRIC is one of {valid_names(anchor_ids)}")
            pairs.append((name.strip(), value.strip()))
    conditions: list[GateCondition] = []
    for name, value in pairs:
        name = str(name)
        known = name in GATE_METRICS or name == MIN_ANCHOR_COUNT or (
            name.startswith(ANCHOR_PREFIX) and len(name) > len(ANCHOR_PREFIX)
            and (not anchor_ids or name[len(ANCHOR_PREFIX):] in anchor_ids))
        if not known:
            raise InputError(f"unknown --fail-under metric {name!r}", f"use one of {valid_names(anchor_ids)}")
        try:
            threshold = float(value)
        except (TypeError, ValueError):
            threshold = math.nan
        if isinstance(value, bool) or not math.isfinite(threshold):
            raise InputError(f"--fail-under {name}={value!r}: the value is not a finite number",
                             f"write e.g. {name}=0.9")
        conditions.append(GateCondition(name, threshold))
    return conditions


def check_report(report: Any, spec: Mapping[str, float] | Iterable[str] | Iterable[GateCondition] | None) -> list[str]:
    """The conditions ``report`` fails, one line each (an empty list: the gate passes)."""
    items = spec if isinstance(spec, Mapping) or spec is None else list(spec)
    if isinstance(items, list) and items and all(isinstance(c, GateCondition) for c in items):
        conditions: list[GateCondition] = items
    else:
        conditions = parse_conditions(items, [a.id for a in report.anchors])  # type: ignore[arg-type]
    return [line for c in conditions if (line := c.failure(report)) is not None]

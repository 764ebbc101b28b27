"""Typed records of a run folder: one :class:`KeptPrompt` per line of prompts.jsonl, one :class:`RoundRecord` per
line of rounds.jsonl, the :class:`BaseRecord` of ``--base`` in config.json and the :class:`BaseSnapshot` in base.json.

Why here, below both ``advisor/`` (which writes them) and ``reports/`` (which reads them): the run report must read
run folders without importing the advisor package.  Reading is tolerant on purpose — folders written before a field
existed (or a round the store recovered after a kill) read with defaults, and unknown keys are kept in ``extra`` and
written back unchanged — because a report or a resume is most needed exactly when a run went wrong.  Writing goes
through ``to_json`` so every line has the same keys in the same order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def as_int(v: Any, default: int = 0) -> int:
    """``int(v)``, or ``default`` when a record field is missing or of the wrong type (records are read tolerantly)."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def as_float(v: Any, default: float = 0.0) -> float:
    """``float(v)``, or ``default`` when a record field is missing or of the wrong type."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def _dict(v: Any) -> dict[str, Any]:
    return dict(v) if isinstance(v, dict) else {}


@dataclass
class KeptPrompt:
    """One kept prompt (a line of prompts.jsonl)."""

    id: str
    text: str
    round: int
    issue: str | None = None
    advised_anchor_id: str | None = None
    anchor_id: str | None = None
    nearest_anchor_id: str | None = None
    score: float | None = None
    on_target: bool | None = None
    generator: str = ""
    method: str = ""
    timestamp: str = ""
    source_id: str | None = None  # the pool prompt it came from (curation only)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "source_id")}
        if self.source_id is not None:
            d["source_id"] = self.source_id
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KeptPrompt:
        known = {f.name for f in fields(cls)}
        score = d.get("score")
        on = d.get("on_target")
        return cls(
            id=str(d.get("id", "")), text=str(d.get("text", "")), round=as_int(d.get("round"), -1),
            issue=_opt_str(d.get("issue")), advised_anchor_id=_opt_str(d.get("advised_anchor_id")),
            anchor_id=_opt_str(d.get("anchor_id")), nearest_anchor_id=_opt_str(d.get("nearest_anchor_id")),
            score=None if score is None else as_float(score), on_target=None if on is None else bool(on),
            generator=str(d.get("generator") or ""), method=str(d.get("method") or ""),
            timestamp=str(d.get("timestamp") or ""), source_id=_opt_str(d.get("source_id")),
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass
class RoundRecord:
    """One round of the loop (a line of rounds.jsonl): the advice, what came of it, what it cost, coverage after."""

    round: int
    issue: str | None = None
    anchor_id: str | None = None
    rationale: str | None = None
    advice_mode: str | None = None
    advice_overridden: bool = False
    advice_note: str = ""
    #: How many advisor answers this round repeated a sub-issue already advised for the same anchor.
    advice_repeats: int = 0
    n_generated: int = 0
    kept: int = 0
    rejected: int = 0
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)
    on_target: int | None = None
    n_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_usd_total: float = 0.0
    #: Prompts the run has added so far (prompts.jsonl lines; the base set is not counted).
    n_prompts: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)  # of base + additions after the round
    anchor_counts: dict[str, int] = field(default_factory=dict)
    gaps_before: dict[str, float] = field(default_factory=dict)
    summary: str | None = None  # the paper's text summary (summary advice only)
    recovered: bool = False  # written on resume for a round killed before its record (then only counts are known)
    note: str = ""
    #: Generator refusals this round, by advised anchor (they are also in ``rejected_reasons["refusal"]``).
    refusals: dict[str, int] = field(default_factory=dict)
    #: Anchors held back this round because the generator stayed off target on them (advisor/stall.py) → figures.
    stalled: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    #: Keys written only when set, so records of methods without them stay as they were.
    _OPTIONAL = ("summary", "recovered", "note", "refusals", "stalled")

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if f.name in self._OPTIONAL and not v:
                continue
            d[f.name] = v
        d.update(self.extra)
        return d

    @classmethod
    def recovered_from(cls, rnd: int, *, kept: int, n_prompts: int) -> RoundRecord:
        """The minimal record the store writes for a round killed after its prompts but before its record."""
        return cls(round=rnd, kept=kept, n_prompts=n_prompts, recovered=True,
                   note="the run was killed before this round's record was written")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RoundRecord:
        known = {f.name for f in fields(cls)}
        on = d.get("on_target")
        return cls(
            round=as_int(d.get("round")), issue=_opt_str(d.get("issue")), anchor_id=_opt_str(d.get("anchor_id")),
            rationale=_opt_str(d.get("rationale")), advice_mode=_opt_str(d.get("advice_mode")),
            advice_overridden=bool(d.get("advice_overridden", False)), advice_note=str(d.get("advice_note") or ""),
            advice_repeats=as_int(d.get("advice_repeats")), n_generated=as_int(d.get("n_generated")),
            kept=as_int(d.get("kept")), rejected=as_int(d.get("rejected")),
            rejected_reasons={str(k): as_int(v) for k, v in _dict(d.get("rejected_reasons")).items()},
            problems={str(k): as_int(v) for k, v in _dict(d.get("problems")).items()},
            on_target=None if on is None else as_int(on), n_calls=as_int(d.get("n_calls")),
            prompt_tokens=as_int(d.get("prompt_tokens")), completion_tokens=as_int(d.get("completion_tokens")),
            cost_usd=as_float(d.get("cost_usd")), cost_usd_total=as_float(d.get("cost_usd_total")),
            n_prompts=as_int(d.get("n_prompts")), metrics=_dict(d.get("metrics")),
            anchor_counts={str(k): as_int(v) for k, v in _dict(d.get("anchor_counts")).items()},
            gaps_before={str(k): as_float(v) for k, v in _dict(d.get("gaps_before")).items()},
            summary=_opt_str(d.get("summary")), recovered=bool(d.get("recovered", False)), note=str(d.get("note") or ""),
            refusals={str(k): as_int(v) for k, v in _dict(d.get("refusals")).items()},
            stalled={str(k): v for k, v in _dict(d.get("stalled")).items()},
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass(frozen=True)
class BaseRecord:
    """What config.json says about a run's ``--base``: enough to find it again and to notice it changed."""

    path: str
    kind: str  # "prompts" (a prompts file or folder) | "audit" (an audit --out folder)
    count: int
    sha256: str  # over the files read, in sorted order (see advisor.base.files_sha256)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any) -> BaseRecord | None:
        """Tolerant read (``None`` when there is no record)."""
        if not isinstance(d, dict):
            return None
        return cls(path=str(d.get("path") or ""), kind=str(d.get("kind") or ""), count=as_int(d.get("count")),
                   sha256=str(d.get("sha256") or ""))


@dataclass
class BaseSnapshot:
    """base.json: the base set's record and its coverage before the run's first round (what the report compares to)."""

    base_set: BaseRecord | None
    anchor_counts: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, float] = field(default_factory=dict)
    shares: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"base_set": None if self.base_set is None else self.base_set.to_json(),
                             "anchor_counts": self.anchor_counts, "gaps": self.gaps, "shares": self.shares,
                             "metrics": self.metrics}
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BaseSnapshot:
        known = {f.name for f in fields(cls)}
        return cls(
            base_set=BaseRecord.from_json(d.get("base_set")),
            anchor_counts={str(k): as_int(v) for k, v in _dict(d.get("anchor_counts")).items()},
            gaps={str(k): as_float(v) for k, v in _dict(d.get("gaps")).items()},
            shares={str(k): as_float(v) for k, v in _dict(d.get("shares")).items()},
            metrics=_dict(d.get("metrics")),
            extra={k: v for k, v in d.items() if k not in known},
        )

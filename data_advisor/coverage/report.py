"""``CoverageReport``: the one serialisable contract between coverage, the advisor and the HTML reports.

Saved as ``coverage.json`` (schema below, ``schema_version`` bumps on breaking changes).  It carries no
timestamp, and floats are rounded, so the same input and seed give byte-identical files.

Top-level keys: ``schema_version``, ``dataset``, ``taxonomy``, ``anchors`` (leaves and their parents, each
with ``id``, ``name``, ``count``, ``share``, ``target_share``, ``gap`` …, and per leaf its ``subclusters`` and
``subcluster_evenness``), ``unanchored``, ``metrics``, ``clusters``, ``duplicates``, ``discovery``, ``settings``,
``warnings`` (guard-rail findings of :mod:`data_advisor.coverage.warnings`: ``code``, ``problem``, ``cause``,
``fix``, ``value``, ``threshold``, ``principles``; absent in reports written before them, read as none).

``estimates`` (1.2): ``"unverified"`` without reviewer labels; with them (``audit --labels``) ``status``,
``accuracy`` (``value``, ``ci95``, ``n``) and ``anchors`` (per leaf id and ``"none"``: ``share`` of all prompts,
``ci95``, ``raw_share``), computed by :mod:`data_advisor.coverage.estimates`; leaf ``share``/``gap``/``deficit`` then
read the corrected shares while ``count`` stays the raw count.  Files before 1.2 read as ``"unverified"``.

Compatibility: 1.1 added the per-anchor sub-cluster fields; files of 1.0 (without them) read with empty
defaults, and unknown keys written by a later minor version are ignored rather than refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from data_advisor.errors import InputError

SCHEMA_VERSION = "1.2"


def _round(obj: Any, ndigits: int = 6) -> Any:
    if isinstance(obj, float):
        return round(obj, ndigits)
    if isinstance(obj, dict):
        return {k: _round(v, ndigits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_round(v, ndigits) for v in obj]
    return obj


@dataclass
class SubCluster:
    """One fine-grained group inside an anchor: the anchor's prompts that discovery put in one cluster.

    ``size`` counts the anchor's prompts in the cluster (``cluster_size`` the whole cluster, which may span
    anchors); ``keywords`` are the cluster's c-TF-IDF words and ``examples`` 2–3 of the anchor's prompts in it
    closest to their centroid.  Keywords and examples come from the data: untrusted text wherever they travel.
    """

    cluster_id: int
    size: int
    share: float  # of the anchor's prompts
    cluster_size: int
    label: str
    keywords: list[str] = field(default_factory=list)
    examples: list[dict[str, str]] = field(default_factory=list)


@dataclass
class AnchorCoverage:
    """Coverage of one principle. Shares are over *anchored* prompts (unanchored ones are off-taxonomy)."""

    id: str
    name: str
    count: int
    share: float
    target_share: float
    gap: float  # target_share − share: positive = under-covered
    deficit: int  # prompts missing to reach the target share
    parent: str | None = None
    is_leaf: bool = True
    mean_score: float = 0.0
    n_clusters: int = 0
    vendi: float = 0.0  # diversity of this principle's prompts (cosine-kernel Vendi score)
    examples: list[dict[str, str]] = field(default_factory=list)  # a few of its most typical prompts
    #: Fine-grained groups inside this (leaf) anchor, largest first (at most ``MAX_SUBCLUSTERS`` stored).
    subclusters: list[SubCluster] = field(default_factory=list)
    #: Normalised entropy of the anchor's clustered prompts over its sub-clusters (noise excluded): 1 = spread
    #: evenly, 0 = all in one; None when none of its prompts is clustered.  See coverage.metrics.subcluster_evenness.
    subcluster_evenness: float | None = None
    #: Share of the anchor's prompts that fall in a sub-cluster (the rest are HDBSCAN noise or singletons).
    clustered_share: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnchorCoverage:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["subclusters"] = [SubCluster(**{k: v for k, v in s.items() if k in _SUB_FIELDS})
                             for s in d.get("subclusters") or []]
        return cls(**kw)


_SUB_FIELDS = frozenset(f.name for f in fields(SubCluster))
#: Sub-clusters stored per anchor in coverage.json (evenness is computed over all of them).
MAX_SUBCLUSTERS = 20


@dataclass
class ClusterInfo:
    """A fine-grained group found by discovery."""

    id: int
    size: int
    label: str
    keywords: list[str]
    kind: str  # "anchored" | "emergent" (far from every principle) | "background" (benign, off-taxonomy)
    top_anchor: str | None
    top_anchor_share: float
    nearest_anchor: str
    centroid_score: float  # cosine of the cluster centroid to its nearest principle
    background_score: float  # cosine of the centroid to the nearest benign background anchor
    unanchored_share: float
    examples: list[dict[str, str]] = field(default_factory=list)


@dataclass
class CoverageReport:
    """Numeric coverage of a prompt set against a taxonomy."""

    dataset: dict[str, Any]
    taxonomy: dict[str, Any]
    anchors: list[AnchorCoverage]
    unanchored: dict[str, Any]
    metrics: dict[str, Any]
    clusters: list[ClusterInfo]
    duplicates: dict[str, Any]
    discovery: dict[str, Any]
    settings: dict[str, Any]
    warnings: list[dict[str, Any]] = field(default_factory=list)
    #: Reviewer-label estimates (``"unverified"`` without labels); see the module docstring.
    estimates: dict[str, Any] | str = "unverified"
    schema_version: str = SCHEMA_VERSION
    #: Where :meth:`show` gets the full HTML page (not a dataclass field: never serialised or compared).
    _html_page = None

    # -- queries used by the advisor and the reports ------------------------------------------------------
    def leaf_anchors(self) -> list[AnchorCoverage]:
        return [a for a in self.anchors if a.is_leaf]

    def anchor(self, anchor_id: str) -> AnchorCoverage:
        for a in self.anchors:
            if a.id == anchor_id:
                return a
        raise KeyError(anchor_id)

    def gap_table(self) -> list[AnchorCoverage]:
        """Leaf anchors from most under-covered to most over-covered (ties broken by id)."""
        return sorted(self.leaf_anchors(), key=lambda a: (-a.gap, a.id))

    def emergent_clusters(self) -> list[ClusterInfo]:
        return [c for c in self.clusters if c.kind == "emergent"]

    # -- dataset-CI gate and notebook display ------------------------------------------------------------
    def check(self, fail_under: Mapping[str, float] | Iterable[str]) -> list[str]:
        """The conditions of a dataset-CI gate this report fails, one line each (empty: it passes).

        ``fail_under`` maps a metric of :attr:`metrics`, ``min_anchor_count`` or ``anchor:ID`` to the least value
        allowed (``{"coverage_ratio": 0.9, "anchor:cyber": 20}``), as ``audit --fail-under`` does; an unknown name
        raises :class:`InputError` listing the valid ones.
        """
        from data_advisor.coverage.gate import check_report

        return check_report(self, fail_under)

    def _repr_html_(self) -> str:
        """Jupyter's view: key numbers, the gap table naming every principle, the warnings (all text escaped)."""
        from data_advisor.coverage.notebook import summary_html

        return summary_html(self)

    def attach_html(self, page: Callable[[], str] | None) -> None:
        """Say where the full HTML report comes from (read or rendered on demand) for :meth:`show`; the coverage
        layer cannot render it, so whoever wrote or loaded the report hands it over."""
        self._html_page = page

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (Ray, multiprocessing) carry the numbers, not the page source of :meth:`show` (a closure)."""
        state = dict(self.__dict__)
        state.pop("_html_page", None)
        return state

    def show(self, height: int = 720) -> Any:
        """Show the full interactive report inline in a notebook (a sandboxed iframe of report.html)."""
        from data_advisor.coverage.notebook import show_inline

        if self._html_page is None:
            raise InputError("this report has no HTML report to show",
                             "use data_advisor.audit(...) (with or without out=), or load an audit folder holding "
                             "report.html with CoverageReport.load")
        return show_inline(self._html_page(), height)

    # -- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {"schema_version": self.schema_version}
        for f in fields(self):
            if f.name == "schema_version":
                continue
            v = getattr(self, f.name)
            d[f.name] = [asdict(x) for x in v] if f.name in ("anchors", "clusters") else v
        return _round(d)

    def to_json(self) -> str:
        from data_advisor.io import dumps_json

        return dumps_json(self.to_dict())

    def save(self, path: Path) -> None:
        from data_advisor.io import write_text_atomic

        write_text_atomic(Path(path), self.to_json())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CoverageReport:
        major = str(d.get("schema_version", "0")).split(".")[0]
        if major != SCHEMA_VERSION.split(".")[0]:
            raise InputError(f"coverage report has schema version {d.get('schema_version')!r}, "
                             f"this version of data-advisor reads {SCHEMA_VERSION}",
                             "re-run the audit with this version")
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        kw["anchors"] = [AnchorCoverage.from_dict(a) for a in d["anchors"]]
        known = {f.name for f in fields(ClusterInfo)}
        kw["clusters"] = [ClusterInfo(**{k: v for k, v in c.items() if k in known}) for c in d["clusters"]]
        return cls(**kw)

    @classmethod
    def load(cls, path: Path) -> CoverageReport:
        path = Path(path)
        if path.is_dir():
            path = path / "coverage.json"
        if not path.exists():
            raise InputError(f"no coverage report at {path}", "run `data-advisor audit` first, or pass the audit folder")
        try:
            d = json.loads(path.read_bytes().decode("utf-8"))
        except OSError as exc:
            raise InputError(f"cannot read coverage report {path}: {exc.strerror or exc}",
                             "re-run the audit to rewrite it") from None
        except ValueError as exc:  # UnicodeDecodeError included: a damaged file
            raise InputError(f"coverage report {path} is damaged: {str(exc)[:160]}", "re-run the audit to rewrite it") from None
        if not isinstance(d, dict):
            raise InputError(f"coverage report {path} is damaged: not a JSON object", "re-run the audit to rewrite it")
        try:
            report = cls.from_dict(d)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"coverage report {path} is damaged: {type(exc).__name__} {str(exc)[:160]}",
                             "re-run the audit to rewrite it") from None
        page = path.parent / "report.html"
        if page.is_file():
            report.attach_html(lambda: page.read_text("utf-8"))
        return report

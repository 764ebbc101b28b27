"""Taxonomies of principles: the anchors coverage is measured against.

A taxonomy is a YAML file of principles (``id``, ``name``, ``description``, optional ``parent``, ``examples``,
``target`` weight and ``aliases``).  Leaves (principles no other principle names as parent) receive
prompts; parents are roll-ups.  Validation errors name the file, the principle and the problem, so a user
editing their own taxonomy is never left guessing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from data_advisor.errors import TaxonomyError

TOP_KEYS = {"id", "name", "version", "source", "description", "principles"}
PRINCIPLE_KEYS = {"id", "name", "description", "parent", "examples", "target", "aliases"}
#: Built-in anchor set of benign principles, used to tell off-taxonomy prompts from harmful ones.
BACKGROUND_ID = "background"


@dataclass(frozen=True)
class Principle:
    """One safety issue (or a group of issues, when it has children)."""

    id: str
    name: str
    description: str = ""
    parent: str | None = None
    examples: tuple[str, ...] = ()
    target: float = 1.0
    aliases: tuple[str, ...] = ()

    def anchor_texts(self) -> list[str]:
        """Texts embedded to anchor this principle: its definition first, then each example."""
        definition = f"{self.name}: {self.description}".strip().rstrip(":")
        return [definition, *self.examples]


@dataclass(frozen=True)
class Taxonomy:
    """A validated set of principles with its provenance."""

    id: str
    name: str
    principles: tuple[Principle, ...]
    version: str = "1"
    source: str = ""
    description: str = ""
    path: str | None = field(default=None, compare=False)

    # -- structure ------------------------------------------------------------------------------------
    def by_id(self, pid: str) -> Principle:
        for p in self.principles:
            if p.id == pid:
                return p
        raise KeyError(pid)

    def children(self, pid: str) -> list[Principle]:
        return [p for p in self.principles if p.parent == pid]

    def leaves(self) -> list[Principle]:
        """Principles prompts are assigned to (those with no children), in file order."""
        parents = {p.parent for p in self.principles if p.parent}
        return [p for p in self.principles if p.id not in parents]

    def ancestors(self, pid: str) -> list[str]:
        """Parent chain of a principle, nearest first."""
        out: list[str] = []
        cur = self.by_id(pid).parent
        while cur:
            out.append(cur)
            cur = self.by_id(cur).parent
        return out

    @property
    def is_hierarchical(self) -> bool:
        return any(p.parent for p in self.principles)

    def target_shares(self) -> dict[str, float]:
        """Target share of each leaf: its ``target`` weight times its ancestors' weights, normalised to 1."""
        raw: dict[str, float] = {}
        for leaf in self.leaves():
            w = leaf.target
            for a in self.ancestors(leaf.id):
                w *= self.by_id(a).target
            raw[leaf.id] = w
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items()}

    def alias_map(self) -> dict[str, str]:
        """Dataset label string → principle id (ids, names and aliases, case-insensitive)."""
        out: dict[str, str] = {}
        for p in self.principles:
            for label in (p.id, p.name, *p.aliases):
                out[label.strip().lower()] = p.id
        return out

    def fingerprint(self) -> str:
        """sha256 of the content, so a report names exactly which taxonomy text produced it."""
        payload = json.dumps([asdict(p) for p in self.principles], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(f"{self.id}|{self.version}|{payload}".encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "version": self.version, "source": self.source,
            "description": self.description,
            "principles": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(p).items()} for p in self.principles
            ],
        }


# ----------------------------------------------------------------------------------------------- loading
def _builtin_dir() -> Path:
    return Path(str(resources.files("data_advisor.coverage") / "taxonomies"))


def builtin_taxonomies() -> list[str]:
    """Names of the built-in taxonomies (the background set excluded)."""
    return sorted(p.stem for p in _builtin_dir().glob("*.yaml") if p.stem != BACKGROUND_ID)


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """Load a built-in taxonomy by name, or a YAML file by path, and validate it."""
    p = Path(name_or_path).expanduser()
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise TaxonomyError(f"taxonomy file not found: {p}", "check the path, or use a built-in name")
        return parse_taxonomy(p.read_text("utf-8"), str(p))
    builtin = _builtin_dir() / f"{name_or_path}.yaml"
    if not builtin.exists():
        names = ", ".join(builtin_taxonomies())
        raise TaxonomyError(f"unknown taxonomy {str(name_or_path)!r}",
                            f"use one of: {names}; or pass a path to a taxonomy YAML file")
    return parse_taxonomy(builtin.read_text("utf-8"), str(builtin))


def load_background() -> Taxonomy:
    """The built-in benign anchor set."""
    return load_taxonomy(_builtin_dir() / f"{BACKGROUND_ID}.yaml")


def _err(where: str, problem: str, fix: str) -> TaxonomyError:
    return TaxonomyError(f"{where}: {problem}", fix)


def _str_list(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise _err(where, f"{key!r} must be a list of strings", f"write {key} as a YAML list of quoted strings")
    return tuple(x.strip() for x in value if x.strip())


def parse_taxonomy(text: str, where: str = "<taxonomy>") -> Taxonomy:
    """Parse and validate taxonomy YAML text; ``where`` names the file in error messages."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise _err(where, f"invalid YAML{at}: {getattr(exc, 'problem', exc)}", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise _err(where, "the file is not a YAML mapping", "start the file with `id:`, `name:` and `principles:`")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise _err(where, f"unknown top-level keys {sorted(unknown)}", f"use only {sorted(TOP_KEYS)}")
    for key in ("id", "name", "principles"):
        if key not in data:
            raise _err(where, f"missing required key {key!r}", f"add `{key}:` at the top level")
    raw = data["principles"]
    if not isinstance(raw, list) or not raw:
        raise _err(where, "'principles' must be a non-empty list", "list at least one principle")
    principles: list[Principle] = []
    seen: set[str] = set()
    for n, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise _err(where, f"principle #{n} is not a mapping", "write each principle as `- id: ...` with keys")
        pid = item.get("id")
        label = f"principle {pid!r}" if pid is not None else f"principle #{n}"
        if not isinstance(pid, str | int) or not str(pid).strip():
            raise _err(where, f"{label} has no id", "give every principle a unique `id`")
        pid = str(pid).strip()
        unknown = set(item) - PRINCIPLE_KEYS
        if unknown:
            raise _err(where, f"{label} has unknown keys {sorted(unknown)}", f"use only {sorted(PRINCIPLE_KEYS)}")
        if pid in seen:
            raise _err(where, f"duplicate principle id {pid!r}", "make every principle id unique")
        seen.add(pid)
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _err(where, f"{label} has no name", "give it a `name`")
        target = item.get("target", 1.0)
        if isinstance(target, bool) or not isinstance(target, int | float) or not target >= 0:
            raise _err(where, f"{label} has an invalid target {target!r}", "use a number >= 0 (a relative weight)")
        parent = item.get("parent")
        description = item.get("description") or ""
        if not isinstance(description, str):
            raise _err(where, f"{label} has a non-text description", "write the description as text")
        principles.append(Principle(
            id=pid, name=name.strip(), description=" ".join(description.split()),
            parent=None if parent in (None, "") else str(parent),
            examples=_str_list(item.get("examples"), f"{where}: {label}", "examples"),
            target=float(target), aliases=_str_list(item.get("aliases"), f"{where}: {label}", "aliases"),
        ))
    ids = {p.id for p in principles}
    for p in principles:
        if p.parent is not None and p.parent not in ids:
            raise _err(where, f"principle {p.id!r} names parent {p.parent!r}, which is not defined",
                       "define the parent principle or fix the `parent` id")
        if p.parent == p.id:
            raise _err(where, f"principle {p.id!r} is its own parent", "remove the `parent` or point it elsewhere")
    by_id = {p.id: p for p in principles}
    for p in principles:
        chain = [p.id]
        cur = p.parent
        while cur is not None:
            if cur in chain:
                cycle = " -> ".join([*chain[chain.index(cur):], cur])
                raise _err(where, f"parent cycle {cycle}", "make the parent links form a tree")
            chain.append(cur)
            cur = by_id[cur].parent
    tax = Taxonomy(
        id=str(data["id"]), name=str(data["name"]), principles=tuple(principles),
        version=str(data.get("version", "1")), source=str(data.get("source") or ""),
        description=" ".join(str(data.get("description") or "").split()), path=where,
    )
    leaves = tax.leaves()
    if sum(p.target for p in leaves) <= 0:
        raise _err(where, "all leaf targets are zero", "give at least one leaf principle a target > 0")
    return tax

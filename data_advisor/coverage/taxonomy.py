"""Taxonomies of principles: the anchors coverage is measured against.

A taxonomy is a YAML file of principles (``id``, ``name``, ``description``, optional ``parent``, ``examples``,
``target`` weight and ``aliases``).  Leaves (principles no other principle names as parent) receive
prompts; parents are roll-ups.  Validation errors name the file, the principle and the problem, so a user
editing their own taxonomy is never left guessing.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from data_advisor.errors import TaxonomyError

TOP_KEYS = {"id", "name", "version", "source", "description", "principles"}
PRINCIPLE_KEYS = {"id", "name", "description", "parent", "examples", "target", "aliases"}
#: Largest taxonomy file read (bytes): the built-ins are ~25 KB; a bigger file is a mistake or an attack.
MAX_TAXONOMY_BYTES = 2_000_000
#: Most YAML nodes (scalars, lists, mappings) a taxonomy may hold: bounds parse time and memory.
MAX_TAXONOMY_NODES = 200_000
#: Largest ``target`` weight: weights are relative, and a product of huge weights down the tree would overflow.
MAX_TARGET = 1e6
#: Most principles, hierarchy levels and examples a taxonomy may have (the built-ins: <100, 2, <1,500): beyond these
#: a file is a mistake or an attack, and validation and anchor embedding would take minutes to hours.
MAX_PRINCIPLES = 5_000
MAX_DEPTH = 32
MAX_EXAMPLES = 50_000
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
        index = {p.id: p for p in self.principles}
        raw: dict[str, float] = {}
        for leaf in self.leaves():
            w = leaf.target
            cur = leaf.parent
            while cur:
                w *= index[cur].target
                cur = index[cur].parent
            raw[leaf.id] = w
        total = sum(raw.values())
        if not 0 < total < math.inf:  # parse_taxonomy refuses such weights; a hand-built Taxonomy may still hold them
            raise ValueError(f"taxonomy {self.id}: leaf target weights sum to {total}")
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
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.exists():
            raise TaxonomyError(f"taxonomy file not found: {p}", "check the path, or use a built-in name")
        return parse_taxonomy(_read_taxonomy_file(p), str(p))
    builtin = _builtin_dir() / f"{name_or_path}.yaml"
    if not builtin.exists() and p.exists():
        _read_taxonomy_file(p)  # a folder or a device: says so
    if not builtin.exists():
        names = ", ".join(builtin_taxonomies())
        raise TaxonomyError(f"unknown taxonomy {str(name_or_path)!r}",
                            f"use one of: {names}; or pass a path to a taxonomy YAML file")
    return parse_taxonomy(builtin.read_text("utf-8"), str(builtin))


def _read_taxonomy_file(p: Path) -> str:
    """The text of a taxonomy file: a regular file, at most :data:`MAX_TAXONOMY_BYTES`, UTF-8."""
    if not p.is_file():
        raise TaxonomyError(f"taxonomy path {p} is a folder, not a YAML file" if p.is_dir()
                            else f"taxonomy path {p} is not a regular file", "pass the path of a taxonomy .yaml file")
    try:
        size = p.stat().st_size
        if size > MAX_TAXONOMY_BYTES:
            raise TaxonomyError(f"taxonomy file {p} is {size:,} bytes, over the limit of {MAX_TAXONOMY_BYTES:,}",
                                "check it is a taxonomy file; keep examples few and short")
        raw = p.read_bytes()
    except OSError as exc:
        raise TaxonomyError(f"cannot read taxonomy file {p}: {exc.strerror or exc}",
                            "check the path and its permissions") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TaxonomyError(f"taxonomy file {p} is not valid UTF-8: byte 0x{raw[exc.start:exc.start + 1].hex()} on line {line}",
                            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None


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


def _safe_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` without aliases and with a node budget.

    Why: nested aliases ("billion laughs") make a few hundred bytes expand into gigabytes; taxonomies never need
    them, so an alias is an error, and a node count cap bounds whatever else a hostile file tries.
    """
    import yaml

    class _Loader(yaml.SafeLoader):
        nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise _err(where, f"YAML alias (*name) at line {mark.line + 1}: taxonomy files may not use anchors "
                                  "and aliases", "write each value out in full")
            self.nodes += 1
            if self.nodes > MAX_TAXONOMY_NODES:
                raise _err(where, f"more than {MAX_TAXONOMY_NODES:,} YAML nodes", "check it is a taxonomy file")
            return super().compose_node(parent, index)

    if len(text) > MAX_TAXONOMY_BYTES:
        raise _err(where, f"{len(text):,} characters, over the limit of {MAX_TAXONOMY_BYTES:,}",
                   "check it is a taxonomy file; keep examples few and short")
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise _err(where, f"invalid YAML{at}: {getattr(exc, 'problem', exc)}", "fix the YAML syntax") from None
    except RecursionError:
        raise _err(where, "YAML nested too deeply", "a taxonomy is a flat list of principles") from None
    finally:
        loader.dispose()


def parse_taxonomy(text: str, where: str = "<taxonomy>") -> Taxonomy:
    """Parse and validate taxonomy YAML text; ``where`` names the file in error messages."""
    data = _safe_yaml(text, where)
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
    if len(raw) > MAX_PRINCIPLES:
        raise _err(where, f"{len(raw):,} principles, over the limit of {MAX_PRINCIPLES:,}", "check it is a taxonomy file")
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
        if (isinstance(target, bool) or not isinstance(target, int | float) or not math.isfinite(target)
                or not 0 <= target <= MAX_TARGET):
            raise _err(where, f"{label} has an invalid target {target!r}",
                       f"use a finite number from 0 to {MAX_TARGET:g} (a relative weight)")
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
            if len(chain) > MAX_DEPTH:
                raise _err(where, f"principle {p.id!r} is more than {MAX_DEPTH} levels deep",
                           "flatten the hierarchy (parents are groups of issues, rarely more than 3 levels)")
            cur = by_id[cur].parent
    n_examples = sum(len(p.examples) for p in principles)
    if n_examples > MAX_EXAMPLES:
        raise _err(where, f"{n_examples:,} examples, over the limit of {MAX_EXAMPLES:,}",
                   "keep a few typical examples per principle")
    tax = Taxonomy(
        id=str(data["id"]), name=str(data["name"]), principles=tuple(principles),
        version=str(data.get("version", "1")), source=str(data.get("source") or ""),
        description=" ".join(str(data.get("description") or "").split()), path=where,
    )
    leaves = tax.leaves()
    if sum(p.target for p in leaves) <= 0:
        raise _err(where, "all leaf targets are zero", "give at least one leaf principle a target > 0")
    try:
        shares = tax.target_shares()
    except ValueError:
        shares = {}
    if not shares or not all(math.isfinite(v) for v in shares.values()):
        raise _err(where, "the targets multiplied down the tree are out of range (every leaf's share is zero or "
                          "not a number)", "use moderate relative weights, e.g. 1 to 10")
    return tax

"""The package's import graph: no cycles, and no lower layer importing a higher one.

Layers (DESIGN.md): errors/io/_env → llm → data → coverage → reports / engines → advisor → api / cli.  Imports inside
functions count too (a lazy import is still a dependency); ``if TYPE_CHECKING:`` blocks do not.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "data_advisor"

#: module prefix → prefixes it must never import
FORBIDDEN = {
    "data_advisor.llm": ("data_advisor.data", "data_advisor.coverage", "data_advisor.reports", "data_advisor.advisor",
                         "data_advisor.engines", "data_advisor.api", "data_advisor.cli"),
    "data_advisor.data": ("data_advisor.coverage", "data_advisor.reports", "data_advisor.advisor", "data_advisor.api",
                          "data_advisor.cli"),
    "data_advisor.coverage": ("data_advisor.reports", "data_advisor.advisor", "data_advisor.engines", "data_advisor.api",
                              "data_advisor.cli"),
    "data_advisor.reports.": ("data_advisor.advisor",),
    "data_advisor.engines": ("data_advisor.reports", "data_advisor.advisor", "data_advisor.api"),
}


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for f in PACKAGE.rglob("*.py"):
        name = ".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    return mods


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)

    class Visitor(ast.NodeVisitor):
        def __init__(self, module: str) -> None:
            self.module = module

        def visit_If(self, node: ast.If) -> None:
            if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if not node.module or not node.module.startswith("data_advisor"):
                return
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods]
            graph[self.module].update(subs)
            if not subs and node.module in mods and node.module != "data_advisor":
                graph[self.module].add(node.module)

        def visit_Import(self, node: ast.Import) -> None:
            graph[self.module].update(a.name for a in node.names if a.name in mods and a.name != "data_advisor")

    for name, path in mods.items():
        Visitor(name).visit(ast.parse(path.read_text(encoding="utf-8")))
    return graph


def _cycles(mods: dict[str, Path], graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                found.append(sorted(comp))

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10_000))
    try:
        for v in sorted(mods):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(old)
    return found


def test_no_import_cycles() -> None:
    mods = _modules()
    assert len(mods) > 20  # the scan found the package
    assert _cycles(mods, _graph(mods)) == []


def test_lower_layers_never_import_higher_ones() -> None:
    mods = _modules()
    graph = _graph(mods)
    violations = [
        f"{m} -> {t}"
        for m in sorted(mods)
        for prefix, banned in FORBIDDEN.items()
        if m.startswith(prefix) or m == prefix.rstrip(".")
        for t in sorted(graph[m])
        if t.startswith(banned)
    ]
    assert violations == []


def test_the_scan_sees_a_violation_when_one_exists(tmp_path: Path) -> None:
    """The checks above can fail: a coverage module importing the advisor is caught."""
    mods = {"data_advisor.coverage.x": tmp_path / "x.py", "data_advisor.advisor.y": tmp_path / "y.py"}
    (tmp_path / "x.py").write_text("def f():\n    from data_advisor.advisor import y\n", encoding="utf-8")
    (tmp_path / "y.py").write_text("from data_advisor.coverage import x\n", encoding="utf-8")
    graph = _graph(mods)
    assert graph["data_advisor.coverage.x"] == {"data_advisor.advisor.y"}
    assert _cycles(mods, graph) == [["data_advisor.advisor.y", "data_advisor.coverage.x"]]

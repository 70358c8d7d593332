"""The package's layout: imports point one way (no cycle among leadwatch's modules), no module reaches for
another's private names, and none imports by a string.

Every import counts, wherever it is written: at module level, inside a function (imported at first use),
and under `if TYPE_CHECKING:`, relative or absolute. `from package import name` points to the submodule
`package.name` when there is one, else to the package.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parent.parent / "lib"


@dataclass
class Graph:
    edges: dict[str, set[str]] = field(default_factory=dict)
    private: list[str] = field(default_factory=list)  # "module:line: what"
    by_string: list[str] = field(default_factory=list)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def import_graph(root: Path, package: str) -> Graph:
    """The imports between the modules of `package` (a folder under `root`), and the private names and
    string imports that cross them."""
    files = {_module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}
    graph = Graph(edges={name: set() for name in files})

    def known(dotted: str) -> str | None:
        """The longest prefix of `dotted` that is one of the package's modules."""
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in files:
                return candidate
        return None

    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        modules_bound: dict[str, str] = {}  # local names bound to one of the package's modules
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = known(alias.name)
                    if target is not None:
                        graph.edges[name].add(target)
                        if alias.asname:
                            modules_bound[alias.asname] = target
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                if known(source) is None:
                    continue
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in files:
                        graph.edges[name].add(submodule)
                        modules_bound[alias.asname or alias.name] = submodule
                        continue
                    target = known(source)
                    assert target is not None
                    graph.edges[name].add(target)
                    if _is_private(alias.name) and target != name:
                        graph.private.append(f"{name}:{node.lineno}: from {source} import {alias.name}")
            elif isinstance(node, ast.Call):
                called = node.func
                called_name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
                if called_name in ("import_module", "__import__"):
                    graph.by_string.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
        for node in ast.walk(tree):  # `module._name`, once every name bound to a module is known
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules_bound
                and _is_private(node.attr)
                and modules_bound[node.value.id] != name
            ):
                graph.private.append(f"{name}:{node.lineno}: {node.value.id}.{node.attr}")
    return graph


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a → ... → a) through each strongly connected group of modules that has one (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in edges.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return [_a_cycle(edges, set(group), group[0]) for group in groups]


def _a_cycle(edges: dict[str, set[str]], group: set[str], start: str) -> list[str]:
    """A shortest path from `start` back to itself within `group` (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(edges[node] & group):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - Tarjan found one


@pytest.fixture(scope="module")
def leadwatch_graph() -> Graph:
    return import_graph(LIB, "leadwatch")


def test_no_import_cycle_among_leadwatch_modules(leadwatch_graph):
    found = cycles(leadwatch_graph.edges)

    assert not found, "import cycles:\n" + "\n".join(" → ".join(cycle) for cycle in found)


def test_no_private_name_is_imported_from_another_module(leadwatch_graph):
    assert not leadwatch_graph.private, "private names across modules:\n" + "\n".join(leadwatch_graph.private)


def test_no_module_is_imported_by_a_string(leadwatch_graph):
    assert not leadwatch_graph.by_string, "imports by string:\n" + "\n".join(leadwatch_graph.by_string)


def test_the_graph_sees_the_layers(leadwatch_graph):
    """The walk reads every kind of import: module level, in a function, under TYPE_CHECKING."""
    edges = leadwatch_graph.edges

    assert "leadwatch.handlers" in edges["leadwatch.http.app"]  # module level, relative, a package
    assert "leadwatch.http.openapi" in edges["leadwatch.handlers.health"]  # in a function
    assert "leadwatch.models.requests" in edges["leadwatch.stores.store"]  # under TYPE_CHECKING
    assert "leadwatch.logs" in edges["leadwatch.cli"]  # `from . import logs`: the submodule
    assert len(edges) > 40


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_cycle_through_a_function_or_type_checking_import_is_found_and_named(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .sub import b\n",
            "sub/__init__.py": "",
            "sub/b.py": "def f():\n    from pkg import c\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import X\n",
            "d.py": "import pkg.a\n",
        },
    )

    assert cycles(import_graph(root, "pkg").edges) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]


def test_private_names_and_string_imports_across_modules_are_found(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "_x = 1\ndef _f(): ...\ny = _f()\n",
            "b.py": "from .a import _x\nfrom pkg import a as mod\nmod._f()\n",
            "c.py": "import importlib\nimportlib.import_module('.a', 'pkg')\n",
        },
    )

    graph = import_graph(root, "pkg")

    assert graph.private == ["pkg.b:1: from pkg.a import _x", "pkg.b:3: mod._f"]
    assert graph.by_string == ["pkg.c:2: importlib.import_module('.a', 'pkg')"]
    assert cycles(graph.edges) == []

"""The package's layers: a module imports only from its own layer or the ones below, and no two modules
import each other, directly or around a loop.

Every ``import`` statement counts, wherever it stands (a lazy import inside a function is still a
dependency). ``from asc.x import y`` imports the module ``asc.x.y`` when there is one, else the package
``asc.x`` (its ``__init__.py``, which re-exports ``y``). Importing ``asc.x.y`` also runs the ``__init__.py``
of ``asc`` and ``asc.x``; those are not counted, or every module would depend on the top package.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

#: Lowest first. A name covers that module and, for a subpackage, every module below it; the top package
#: itself covers only its own ``__init__.py``, which re-exports ``asc.api`` lazily.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("asc.errors", "asc.files", "asc.machine", "asc.progress", "asc.version")),
    ("data", ("asc.data",)),
    ("models", ("asc.models",)),
    ("compress", ("asc.compress",)),
    ("training", ("asc.training",)),
    ("api", ("asc.api", "asc")),
    ("cli", ("asc.cli",)),
]

#: Upward imports that exist and are to be fixed, as (importer, imported); nothing may join this list.
KNOWN_UPWARD: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    """One import statement's edge between two modules of the package."""

    path: str  # the importing file, relative to the package's parent folder
    line: int
    importer: str
    imported: str


def module_files(top: Path) -> dict[str, Path]:
    """Each module of the package in folder ``top`` (``asc/``), by dotted name; a package by its own name."""
    modules = {}
    for path in sorted(top.rglob("*.py")):
        parts = path.relative_to(top.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _existing(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` if it is a module of the package, else its longest prefix that is (or None)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def imports(top: Path) -> list[Import]:
    """Every import statement of the package in folder ``top`` that names one of its own modules."""
    modules = module_files(top)
    found = []
    for importer, path in modules.items():
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    targets.append(submodule if alias.name != "*" and submodule in modules else source)
            for imported in dict.fromkeys(_existing(target, modules) for target in targets):  # once a statement
                if imported is not None and imported != importer:
                    found.append(Import(str(path.relative_to(top.parent)), node.lineno, importer, imported))
    return sorted(found, key=lambda edge: (edge.path, edge.line, edge.imported))


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> int | None:
    """The index of the layer whose most specific name covers ``module``; None if none does."""
    best, best_length = None, -1
    for index, (_, names) in enumerate(layers):
        for name in names:
            covers = module == name or ("." in name and module.startswith(name + "."))
            if covers and len(name) > best_length:
                best, best_length = index, len(name)
    return best


def unlayered(top: Path, layers: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """The package's modules that no layer covers."""
    return [module for module in module_files(top) if layer_of(module, layers) is None]


def upward_imports(edges: list[Import], layers: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """``file:line: importer (layer) imported -> module (higher layer)`` for every import of a higher layer."""
    found = []
    for edge in edges:
        low, high = layer_of(edge.importer, layers), layer_of(edge.imported, layers)
        if low is not None and high is not None and high > low:
            found.append(f"{edge.path}:{edge.line}: {edge.importer} ({layers[low][0]}) imported -> "
                         f"{edge.imported} ({layers[high][0]})")
    return found


def cycles(edges: list[Import]) -> list[str]:
    """One cycle of each strongly connected group of modules, as ``a -> b (file:line) -> ... -> a``."""
    graph: dict[str, dict[str, Import]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, {}).setdefault(edge.imported, edge)
        graph.setdefault(edge.imported, {})

    # Tarjan's strongly connected components, iteratively (the graph is small, but recursion is fragile).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    found = []
    for group in groups:
        members = set(group)
        # The shortest way back to the group's first module, by breadth-first search inside the group.
        first = group[0]
        previous: dict[str, str] = {}
        frontier = [first]
        while first not in previous:
            following = []
            for node in frontier:
                for successor in sorted(graph[node]):
                    if successor in members and successor not in previous:
                        previous[successor] = node
                        following.append(successor)
            frontier = following
        path = [first]
        while True:
            path.append(previous[path[-1]])
            if path[-1] == first:
                break
        path.reverse()
        steps = [f"{a} -> {b} ({graph[a][b].path}:{graph[a][b].line})" for a, b in zip(path, path[1:], strict=False)]
        found.append(f"cycle of {len(group)} modules ({', '.join(group)}): " + "; ".join(steps))
    return found


def test_every_module_belongs_to_a_layer() -> None:
    missing = unlayered(ROOT / "asc", LAYERS)
    assert not missing, f"modules in no layer (add them to LAYERS in tests/test_layering.py): {missing}"


@pytest.fixture(scope="module")
def package_imports() -> list[Import]:
    return imports(ROOT / "asc")


def test_no_module_imports_from_a_higher_layer(package_imports: list[Import]) -> None:
    edges = [edge for edge in package_imports if (edge.importer, edge.imported) not in KNOWN_UPWARD]
    upward = upward_imports(edges, LAYERS)
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_known_upward_imports_are_still_there(package_imports: list[Import]) -> None:
    """An entry of KNOWN_UPWARD that was fixed must leave the list, so that it cannot come back unseen."""
    edges = {(edge.importer, edge.imported) for edge in package_imports}
    assert not KNOWN_UPWARD - edges, "fixed: remove these from KNOWN_UPWARD in tests/test_layering.py"


def test_the_module_import_graph_has_no_cycle(package_imports: list[Import]) -> None:
    found = cycles(package_imports)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_checker_reports_an_upward_import_a_lazy_one_and_a_cycle(tmp_path: Path) -> None:
    top = tmp_path / "pkg"
    files = {
        "__init__.py": "",
        "base.py": "def helper():\n    from pkg.high import thing  # lazy, still a dependency\n",
        "low/__init__.py": "from pkg.low.a import A\n",
        "low/a.py": "from . import b\nA = 1\n",
        "low/b.py": "import pkg.low.a\n",
        "low/c.py": "from ..low import A\nimport pkg.high as h\nfrom pkg import base, stray\n",
        "high.py": "from pkg.low import a, A\nthing = 2\n",
        "stray.py": "",
    }
    for name, text in files.items():
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_text(text)
    layers = [("base", ("pkg.base",)), ("low", ("pkg.low",)), ("high", ("pkg.high", "pkg"))]
    edges = imports(top)

    assert {(edge.importer, edge.imported) for edge in edges} == {
        ("pkg.base", "pkg.high"), ("pkg.low", "pkg.low.a"), ("pkg.low.a", "pkg.low.b"),
        ("pkg.low.b", "pkg.low.a"), ("pkg.low.c", "pkg.low"), ("pkg.low.c", "pkg.high"),
        ("pkg.low.c", "pkg.base"), ("pkg.low.c", "pkg.stray"),
        ("pkg.high", "pkg.low.a"), ("pkg.high", "pkg.low")}
    assert unlayered(top, layers) == ["pkg.stray"]
    assert upward_imports(edges, layers) == [
        "pkg/base.py:2: pkg.base (base) imported -> pkg.high (high)",
        "pkg/low/c.py:2: pkg.low.c (low) imported -> pkg.high (high)"]
    assert cycles(edges) == [
        "cycle of 2 modules (pkg.low.a, pkg.low.b): pkg.low.a -> pkg.low.b (pkg/low/a.py:1); "
        "pkg.low.b -> pkg.low.a (pkg/low/b.py:1)"]

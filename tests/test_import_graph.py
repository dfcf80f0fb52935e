"""No import cycles among tunelab's own modules.

At module level, imports inside functions and under ``if TYPE_CHECKING:`` do not count: they
run after every module involved has loaded. A second, stricter test counts imports inside functions too (the
cycles issue 12 names, ``data.pipeline <-> data.report``, ``evaluate.prompting <->
evaluate.runner``, ``methods <-> methods.artifacts``, were all of that lazy kind). A package's ``__init__`` counts as the package's module; an edge
goes to the module an import names (``import a.b`` -> ``a.b``; ``from a import b`` -> ``a``,
and ``a.b`` when that is a module), not to the packages above it that Python loads first.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "tunelab"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module loads: not in functions, not under TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                pending.extend(node.body)
            pending.extend(node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend([*node.body, *node.orelse, *node.finalbody])
            for handler in node.handlers:
                pending.extend(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            pending.extend(node.body)
    return found


def _known(name: str, modules: set[str]) -> set[str]:
    return {name} & modules


def _targets(node: ast.Import | ast.ImportFrom, module: str, modules: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return set().union(*(_known(alias.name, modules) for alias in node.names))
    if node.level:  # relative import: from the module's package, one level up per extra dot
        is_package = any(other.startswith(module + ".") for other in modules)
        parts = module.split(".")
        base = parts[: len(parts) - node.level + (1 if is_package else 0)]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    targets = _known(source, modules)
    for alias in node.names:  # ``from package import submodule``
        targets |= _known(f"{source}.{alias.name}", modules)
    return targets


def _every_import(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run, wherever it sits (type-only imports never run)."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))
    return found


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    """Module -> the tunelab modules it imports at module level (``lazy``: anywhere)."""
    imports = _every_import if lazy else _top_level_imports
    files = {_module_name(path): path for path in (SRC / PACKAGE).rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = set().union(*(_targets(n, module, modules) for n in imports(tree)))
        graph[module] = edges - {module}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def _describe(cycle: list[str], graph: dict[str, set[str]]) -> str:
    members = set(cycle)
    edges = [f"{a} -> {b}" for a in cycle for b in sorted(graph[a] & members)]
    return "{" + ", ".join(cycle) + "}: " + "; ".join(edges)


def test_finds_a_cycle_and_ignores_lazy_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "import tunelab.x\n"
        "if TYPE_CHECKING:\n    import tunelab.y\n"
        "def f():\n    import tunelab.z\n"
    )
    names = [alias.name for node in _top_level_imports(tree) for alias in node.names]
    assert sorted(names) == ["TYPE_CHECKING", "tunelab.x"]
    names = [alias.name for node in _every_import(tree) for alias in node.names]
    assert sorted(names) == ["TYPE_CHECKING", "tunelab.x", "tunelab.z"]


def _assert_no_cycles(graph: dict[str, set[str]], kind: str) -> None:
    assert graph.get("tunelab.cli"), "the walk found no imports"
    cycles = find_cycles(graph)
    assert not cycles, f"{kind} import cycles:\n" + "\n".join(
        _describe(cycle, graph) for cycle in cycles
    )


def test_no_module_level_import_cycles() -> None:
    _assert_no_cycles(import_graph(), "module-level")


def test_no_import_cycles_through_lazy_imports() -> None:
    _assert_no_cycles(import_graph(lazy=True), "lazy (in functions)")

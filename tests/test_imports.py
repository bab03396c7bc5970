"""The package's modules import each other in one direction only.

A cycle (a imports b, b imports a, even inside a function or under
``TYPE_CHECKING``) means neither module can be read, tested or moved without
the other; the usual fix is to move what both need one layer down.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vidcolor"


def imports_of(path: Path, package: str = "vidcolor") -> set[str]:
    """The package's own modules that ``path`` imports anywhere in it (top level, functions, TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith(package + ".")}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith(package + "."):
                found.add(node.module.split(".")[1])
            elif node.level == 0 and node.module == package:
                found |= {a.name for a in node.names}
            elif node.level == 1 and node.module:  # from .x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x, y
                found |= {a.name for a in node.names}
    return found


def import_graph(folder: Path = PACKAGE) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports (``__init__`` left out: it only re-exports)."""
    modules = {p.stem: p for p in folder.glob("*.py") if p.stem != "__init__"}
    return {name: imports_of(p) & modules.keys() - {name} for name, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_finder_sees_a_cycle(tmp_path: Path) -> None:
    """The check itself: a two-module cycle hidden inside a function is found."""
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g\n")
    (tmp_path / "c.py").write_text("from .a import x\n")
    assert cycles(import_graph(tmp_path)) == [["a", "b"]]


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles in vidcolor/: " + "; ".join(" <-> ".join(c) for c in found)


def test_settings_needs_no_torch() -> None:
    """The CLI reads its options and defaults from settings.py before it loads torch."""
    tree = ast.parse((PACKAGE / "settings.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
    assert names <= {"__future__", "dataclasses"}, names
    assert imports_of(PACKAGE / "settings.py") <= {"errors"}

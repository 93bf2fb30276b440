"""No import cycles inside exporter/: every import counts, module-level or inside a function.

A cycle means two modules cannot be understood (or tested, or split) apart; the
settings <-> validators and app <-> runner cycles were removed for that reason. The
graph is read from the source with ast, so an import hidden in a function body (the
usual way a cycle is papered over) counts as much as one at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "exporter"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the exporter modules it imports (a package import counts as its __init__)."""
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    root = ".".join(base + ([node.module] if node.module else []))
                else:
                    root = node.module or ""
                targets = [root] + [f"{root}.{a.name}" for a in node.names]
            for t in targets:
                # the deepest exporter module named by the import
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    pkg = tmp_path / "exporter"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from exporter import b\n")
    (pkg / "b.py").write_text("def f():\n    from exporter.sub.c import x\n")
    (pkg / "sub" / "c.py").write_text("from ..a import y\n")
    (pkg / "d.py").write_text("import exporter.a\n")
    assert cycles(import_graph(pkg)) == [["exporter.a", "exporter.b", "exporter.sub.c"]]


def test_exporter_has_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], "import cycles in exporter/: " + "; ".join(" <-> ".join(c) for c in found)


if __name__ == "__main__":  # python tests/unit/test_settings_import_cycles.py: list them
    for c in cycles(import_graph()):
        print(" <-> ".join(c))

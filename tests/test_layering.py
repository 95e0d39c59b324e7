"""The house rules, checked mechanically on the source (``ast``; nothing is imported).

* the library never imports the CLI (``compress.cli``), except the ``__main__`` entry points;
* the latency layer (``compress.latency``) imports nothing from search (``compress.search``);
* no import cycles among the modules of ``compress/`` and ``export/`` (installed as ``compress.export``).

Every import counts, at module level or inside a function (a lazy import is still a dependency);
imports under ``if TYPE_CHECKING:`` do not (they never run). ``from pkg import name`` is an edge to
``pkg.name`` when that is a module, else to ``pkg``. A package's ``__init__`` is a module like any
other: importing ``pkg.mod`` is an edge to ``pkg.mod`` only (the standard way to fill a registry is
for ``pkg/__init__.py`` to import the modules that register into a lower ``pkg/registry.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"compress": REPO / "compress", "compress.export": REPO / "export"}


def _modules(roots: dict[str, Path]) -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg, root in roots.items():
        for f in sorted(root.rglob("*.py")):
            if "__pycache__" in f.parts:
                continue
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = f
    return mods


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module of ``mods``, line) for every runtime import in ``path``."""
    is_pkg = path.name == "__init__.py"
    raw: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, ast.If) and _is_type_checking(ch):
                for c in ch.orelse:
                    visit_one(c)
                continue
            visit_one(ch)

    def visit_one(ch: ast.AST) -> None:
        if isinstance(ch, ast.Import):
            raw.extend((a.name, ch.lineno) for a in ch.names)
        elif isinstance(ch, ast.ImportFrom):
            if ch.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (ch.level - 1)]
                mod = ".".join(base + ([ch.module] if ch.module else []))
            else:
                mod = ch.module or ""
            for a in ch.names:
                full = f"{mod}.{a.name}"
                raw.append((full if full in mods else mod, ch.lineno))
        visit(ch)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    out = []
    for mod, line in raw:
        while mod not in mods and "." in mod:
            mod = mod.rsplit(".", 1)[0]
        if mod in mods and mod != name:
            out.append((mod, line))
    return out


def import_graph(roots: dict[str, Path] = ROOTS) -> dict[str, list[tuple[str, int]]]:
    mods = _modules(roots)
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w, _line in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def _describe(comp: list[str], graph: dict[str, list[tuple[str, int]]]) -> str:
    edges = sorted({f"{a} -> {b} (line {ln})" for a in comp for b, ln in graph[a] if b in comp})
    return " / ".join(comp) + ":\n    " + "\n    ".join(edges)


GRAPH = import_graph()


def test_the_graph_covers_both_trees():
    assert "compress.export.formats" in GRAPH and "compress.latency.profile" in GRAPH
    assert any(t == "compress.core.registry" for t, _ in GRAPH["compress.export.formats"])


def test_library_never_imports_the_cli():
    bad = [
        f"{m} -> {t} (line {ln})"
        for m, edges in GRAPH.items()
        for t, ln in edges
        if (t == "compress.cli" or t.startswith("compress.cli."))
        and not (m == "compress.cli" or m.startswith("compress.cli.") or m.endswith(".__main__"))
    ]
    assert not bad, "library modules import the CLI (report progress through a callback or logging):\n" + "\n".join(bad)


def test_latency_does_not_import_search():
    bad = [
        f"{m} -> {t} (line {ln})"
        for m, edges in GRAPH.items()
        for t, ln in edges
        if m.startswith("compress.latency") and (t == "compress.search" or t.startswith("compress.search."))
    ]
    assert not bad, "the latency layer imports search:\n" + "\n".join(bad)


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, (
        "import cycles (move the shared piece to the lower module, or fill the registry from "
        "the package __init__):\n" + "\n".join(_describe(c, GRAPH) for c in found)
    )


def test_the_checker_sees_lazy_imports_and_ignores_type_checking(tmp_path):
    """The checker itself: a function-level import closes a cycle, a TYPE_CHECKING one does not."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    (pkg / "d.py").write_text("from . import c\n")
    g = import_graph({"pkg": pkg})
    assert cycles(g) == [["pkg.a", "pkg.b"]]
    assert g["pkg.c"] == [] and g["pkg.d"] == [("pkg.c", 1)]


def test_packaged_list_is_complete():
    """pyproject's static `packages` list names every package under compress/ and export/ (the latter
    renamed into compress.export), so a new sub-package cannot silently miss the wheel."""
    import tomllib
    from setuptools import find_packages

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        *find_packages(str(REPO), include=["compress", "compress.*"]),
        *("compress." + p for p in find_packages(str(REPO), include=["export", "export.*"])),
        "compress.hardware_profiles",
    }
    assert listed == found, (
        f"add to [tool.setuptools] packages: {sorted(found - listed)}; remove: {sorted(listed - found)}"
    )

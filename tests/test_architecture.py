"""The package's shape (docs/architecture.md): no import cycles, and every package imports only lower layers.

Imports are read from the source (the AST), including imports inside functions: an import deferred into a
function to dodge a cycle is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "moa_predict"

LAYERS: dict[str, float] = {
    "data": 0, "runtime": 0.5,
    "features": 1, "evaluation": 1, "simulate": 1,
    "trust": 1.5, "reference": 1.5,
    "models": 2,
    "explain": 3,
    "bundle": 3.5,
    "training": 4,
    "inference": 5, "benchmarks": 5, "web": 5,
    "cli": 6,
}
"""A package may import packages of a lower layer (and its own); docs/architecture.md draws the same."""
MODULES: dict[str, float] = {"api": 6}
"""Top-level modules placed like packages: the notebook API is a shell beside the CLI."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else (node.module or "")
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            else:
                continue
            edges[name] |= {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return edges


def test_no_import_cycles() -> None:
    edges = _imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_packages_import_only_lower_layers() -> None:
    def package(m: str) -> str | None:
        parts = m.split(".")
        return parts[1] if len(parts) > 1 else None

    wrong = []
    for m, targets in _imports().items():
        pm = package(m)
        for t in targets:
            pt = package(t)
            layer = {**LAYERS, **MODULES}
            if pm and pt and pm != pt and layer[pt] >= layer[pm]:
                wrong.append(f"{m} imports {t}")
    assert not wrong, "imports against the layers of docs/architecture.md:\n" + "\n".join(sorted(wrong))


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)


def _package_edges() -> set[tuple[str, str]]:
    """(importer, imported) for every import between two packages (or top-level modules such as ``api``)."""
    def package(m: str) -> str | None:
        parts = m.split(".")
        return parts[1] if len(parts) > 1 else None

    return {(package(m), package(t)) for m, targets in _imports().items() for t in targets
            if package(m) and package(t) and package(m) != package(t)}


def _drawn_edges() -> set[tuple[str, str]]:
    """The arrows of docs/architecture.md's diagram, node ids mapped to the package each node's label names."""
    import re

    text = (ROOT.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = text.split("```mermaid", 1)[1].split("```", 1)[0]
    names = {node: label.split()[0].removesuffix("/").removesuffix(".py")
             for node, label in re.findall(r'^\s*(\w+)\["([^"]+)"\]', diagram, re.M)}
    drawn = set()
    for source, targets in re.findall(r"^\s*(\w+)\s*-->\s*(.+)$", diagram, re.M):
        drawn |= {(names[source], names[t.strip()]) for t in targets.split("&")}
    return drawn


def test_the_document_draws_every_package_import_and_no_other() -> None:
    """docs/architecture.md's arrows are the code's imports between packages: none missing, none invented."""
    real, drawn = _package_edges(), _drawn_edges()
    missing, invented = sorted(real - drawn), sorted(drawn - real)
    assert not missing, f"imports the document does not draw: {missing}"
    assert not invented, f"arrows in the document with no import behind them: {invented}"


def test_cli_modules_are_thin() -> None:
    """One module per subcommand: no file of the CLI over 250 lines (the work is in the library)."""
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / "cli").glob("*.py")}
    assert max(sizes.values()) <= 250, {name: n for name, n in sizes.items() if n > 250}

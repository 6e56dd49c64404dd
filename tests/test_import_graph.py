"""The shape of the code: no import circles (imports inside functions included) and the layers'
arrows (``../shared/ARCHITECTURE.md``): trainers and storage import no other layer, reports
imports storage only, study sits on top.

Read from the source with :mod:`ast`, so a circle closed by an import inside a function, which
Python only runs when the function is called, is found as well as one at module level.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("study", "trainers", "storage", "reports")
# Which other layers each layer may import.
ALLOWED = {
    "trainers": set(),
    "storage": set(),
    "reports": {"storage"},
    "study": {"trainers", "storage", "reports"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            out[module_name(path) if root == ROOT else _name_under(root, path)] = path
    return out


def _name_under(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that module ``name`` imports anywhere in its source (at module
    level, inside functions, under ``TYPE_CHECKING``): ``from . import x`` names the
    submodule ``x`` when there is one, else the package."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(_known_prefix(alias.name, known))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in known else _known_prefix(target, known))
    out.discard("")
    out.discard(name)
    return {m for m in out if m in known}


def _known_prefix(dotted: str, known: set[str]) -> str:
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return ""


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    found = modules(root)
    known = set(found)
    return {name: imported(name, path, known) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def _package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges without a package's ``__init__`` re-exporting its own modules: a package front
    importing its rooms is no circle as long as no room imports the front back, which the
    module-level check still sees (a room importing ``study`` names the package module)."""
    return {
        name: {t for t in targets if not t.startswith(name + ".")}
        for name, targets in edges.items()
    }


def test_no_import_circles() -> None:
    found = cycles(_package_edges(graph()))
    assert not found, "import circles (imports inside functions count): " + "; ".join(
        " <-> ".join(c) for c in found
    )


@pytest.mark.parametrize("layer", PACKAGES)
def test_layers_import_only_downward(layer: str) -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items()
        if name.split(".")[0] == layer
        for target in targets
        if target.split(".")[0] not in ALLOWED[layer] | {layer}
    )
    assert not wrong, f"{layer} may import only {sorted(ALLOWED[layer])}: " + "; ".join(wrong)


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """A circle closed inside a function, and an upward import, are found."""
    pkg = tmp_path / "study"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "__init__.py").write_text("def g():\n    import study.a\n")
    for package in ("trainers", "storage"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    edges = graph(tmp_path)
    assert cycles(_package_edges(edges)) == [["study.a", "study.b"]]
    assert "study.a" in edges["reports"]

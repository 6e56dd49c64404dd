"""The shape of the code (``docs/architecture.md``): no import circles (imports inside functions
included); the layers' arrows: trainers and storage import no other layer, reports imports
storage only, study sits on top; inside study, the rooms' arrows, from ``study.errors`` at the
bottom to ``study.cli`` at the top; and no module over 500 lines.

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


# The rooms of study, each with the rooms it may import (study's own layers, bottom up).
STUDY_ROOMS = ("errors", "config", "search", "run", "api", "service", "cli")
ROOM_ALLOWED = {
    f"study.{room}": {f"study.{below}" for below in STUDY_ROOMS[:i]}
    for i, room in enumerate(STUDY_ROOMS)
}
# study's door (its lazy public names) and the entry point sit outside the rooms
ROOM_ALLOWED["study"] = {f"study.{room}" for room in STUDY_ROOMS}
ROOM_ALLOWED["study.__main__"] = {"study.config", "study.search", "study.cli"}
MAX_LINES = 500


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


def room_of(module: str) -> str:
    """``study.config.env`` -> ``study.config``; ``study`` and ``study.errors`` are their own."""
    return ".".join(module.split(".")[:2])


def room_violations(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{name} imports {target}"
        for name, targets in edges.items()
        if name.split(".")[0] == "study"
        for target in targets
        if target.split(".")[0] == "study"
        and room_of(target) != room_of(name)
        and room_of(target) not in ROOM_ALLOWED.get(room_of(name), set())
    )


def test_every_study_module_lives_in_a_known_room() -> None:
    rooms = {room_of(name) for name in graph() if name.split(".")[0] == "study"}
    assert rooms == set(ROOM_ALLOWED), "a room the arrows do not name, or one gone"


def test_rooms_import_only_downward() -> None:
    wrong = room_violations(graph())
    assert not wrong, "a room of study imports one above it or beside it: " + "; ".join(wrong)


@pytest.mark.parametrize("room", [r for r in STUDY_ROOMS if r != "errors"])
def test_each_room_says_what_lives_there_and_what_it_may_import(room: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / "study" / room / "__init__.py").read_text()))
    assert doc, f"study/{room}/__init__.py has no docstring"
    assert "import" in doc, f"study/{room}/__init__.py does not say what the room may import"
    modules = {path.stem for path in (ROOT / "study" / room).iterdir()} - {"__init__"}
    modules.discard("__pycache__")
    unnamed = sorted(m for m in modules if f"``{m}``" not in doc)
    assert not unnamed, f"study/{room}/__init__.py does not name {unnamed}"


def test_no_module_is_over_500_lines() -> None:
    long = sorted(
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    )
    assert not long, f"split these into modules of at most {MAX_LINES} lines: {long}"


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
    # a room importing one above it (config -> run), and one importing its own door, are found
    for room in ("config", "run"):
        (pkg / room).mkdir()
        (pkg / room / "__init__.py").write_text("")
    (pkg / "config" / "x.py").write_text("def f():\n    from study.run import y\n")
    (pkg / "run" / "y.py").write_text("from study.config import x\n")
    wrong = room_violations(graph(tmp_path))
    assert "study.config.x imports study.run.y" in wrong
    assert "study.run.y imports study.config.x" not in wrong

"""The packages' boundaries, checked from the code itself.

- No import circles between modules, counting every import (type-only and function-level
  ones too): a circle is a design knot even where Python tolerates it.
- core/ imports no discord, torch, sqlalchemy or celery; bot/ never imports gpu_worker/
  and gpu_worker/ never imports bot/.
- Starting the bot loads no torch, diffusers or transformers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "db", "bot", "gpu_worker", "imaginarium", "web")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> Iterator[str]:
    """Every module name an import statement of ``path`` names (absolute imports)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _own(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in MODULES.items():
        for target in _imports(path):
            own = _own(target)
            # A module may import its own package (its __init__): that is not a circle.
            if own and own != name and not name.startswith(own + "."):
                graph[name].add(own)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    nodes = set(graph) | {w for targets in graph.values() for w in targets}
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(nodes)))
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("core", ("discord", "torch", "diffusers", "transformers", "sqlalchemy", "celery", "bot", "gpu_worker", "db")),
        ("db", ("discord", "torch", "diffusers", "bot", "gpu_worker")),
        ("bot", ("torch", "diffusers", "transformers", "gpu_worker")),
        ("gpu_worker", ("discord", "bot")),
    ],
)
def test_package_boundaries(package: str, forbidden: tuple[str, ...]) -> None:
    crossing = sorted(
        f"{name} imports {target}"
        for name, path in MODULES.items()
        if name == package or name.startswith(package + ".")
        for target in _imports(path)
        if target.split(".")[0] in forbidden
    )
    assert crossing == []


def test_starting_the_bot_loads_no_torch() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import bot.app, bot.cli"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    heavy = sorted(m for m in loaded if m.split(".")[0] in {"torch", "diffusers", "transformers"})
    assert heavy == []
    assert "bot.app" in loaded


def test_the_bot_writes_no_sql_of_its_own() -> None:
    # Queries live in db/repositories as keyword-only functions; the bot calls them.
    builders = {"select", "update", "delete", "insert", "func", "text", "or_", "and_", "exists"}
    found = sorted(
        f"{name}: {node.module}.{alias.name}"
        for name, path in MODULES.items()
        if name.startswith("bot.")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
        for alias in node.names
        if alias.name in builders
    )
    assert found == []


def test_long_files_say_why_in_their_opening_comment() -> None:
    long_ones = sorted(
        name
        for name, path in MODULES.items()
        if len(path.read_text(encoding="utf-8").splitlines()) > 400
        and "Longer than 400 lines on purpose" not in (ast.get_docstring(ast.parse(path.read_text())) or "")
    )
    assert long_ones == []

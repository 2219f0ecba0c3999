"""The house rules of the code's layout, checked on the source: imports run one way, there are no
import circles, everything is imported as `mnistkit.*`, and every package folder gets installed."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Folder in the checkout → the package it installs as (pyproject's package-dir).
ROOTS = {"cli": "mnistkit.cli", "pipeline": "mnistkit.pipeline", "model_export": "mnistkit.model_export"}

# Layers, lowest first; a module may import its own layer and the ones below it only.
LAYERS = [
    ("model_export", ["mnistkit.model_export"]),
    ("row model", ["mnistkit.pipeline", "mnistkit.pipeline.rows", "mnistkit.pipeline.accounting",
                   "mnistkit.pipeline.coders", "mnistkit.pipeline.choices", "mnistkit.pipeline.runners"]),
    ("io and inference", ["mnistkit.pipeline.io", "mnistkit.pipeline.inference"]),
    ("transforms", ["mnistkit.pipeline.transforms"]),
    ("pipelines", ["mnistkit.pipeline.batch", "mnistkit.pipeline.streaming", "mnistkit.pipeline.serving"]),
    ("cloud", ["mnistkit.pipeline.cloud"]),
    ("cli", ["mnistkit.cli"]),
]  # fmt: skip
# cloud.config and cloud.gpus are plain settings (no Beam, no pipeline): the CLI and the config
# handoff read them; everything else in cloud/ sits above the pipelines.


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, at any depth (functions and TYPE_CHECKING too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def _own(name: str) -> str | None:
    """The kit module `name` refers to (a name imported from a module resolves to the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {_own(name) for _, name in _imports(path)}
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


def _layer(module: str) -> int:
    best = (-1, -1)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                best = max(best, (len(prefix), index))
    assert best[1] >= 0, f"{module} belongs to no layer: add it to LAYERS"
    return best[1]


def test_no_import_circles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert cycles == []


def test_imports_run_one_way():
    settings = ("mnistkit.pipeline.cloud.config", "mnistkit.pipeline.cloud.gpus")
    upward = []
    for module, targets in _graph().items():
        for target in targets:
            if target in settings and module.startswith("mnistkit.pipeline.cloud"):
                continue
            if _layer(target) > _layer(module) and not target.startswith(settings):
                upward.append(f"{module} → {target}")
    assert upward == [], "imports must run cli → cloud → pipelines → transforms → io/inference → row model"


def test_the_kit_is_imported_by_its_installed_name_only():
    bare = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in [*MODULES.values(), *REPO.glob("tests/**/*.py"), *REPO.glob("benchmarks/**/*.py")]
        for line, name in _imports(path)
        if name.split(".")[0] in ROOTS
    ]
    assert bare == []


def test_every_package_folder_is_installed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {package: folder for folder, package in ROOTS.items()}
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert set(config["packages"]) == packages


@pytest.mark.parametrize("module", sorted(m for m, p in MODULES.items() if p.name != "__init__.py"))
def test_modules_used_from_outside_declare_their_surface(module):
    """A module another package imports from names what it offers in `__all__`."""
    path = MODULES[module]
    importers = [
        m for m, targets in _graph().items() if module in targets and m.rpartition(".")[0] != module.rpartition(".")[0]
    ]
    if not importers:
        return
    tree = ast.parse(path.read_text())
    names = [
        t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
    ]
    assert "__all__" in names, f"{module} is imported by {sorted(importers)[:3]} but has no __all__"

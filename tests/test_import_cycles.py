"""Data flows one way: no import cycle between gansearch modules, and no private library API.

The module graph is read from the source with :mod:`ast`, not by importing it, so every
import counts: module level, deferred into a function body, ``importlib.import_module``
with a literal name, and a name resolved through a package's lazy exports
(:func:`gansearch.lazy.lazy_exports`). Only imports under ``if TYPE_CHECKING:`` are left
out, since they never run. A cycle, even through a deferred import, means a concept sits
in the wrong module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Source folder -> installed package name (pyproject.toml's package-dir).
SOURCES = {
    "gansearch": "gansearch",
    "spaces": "gansearch.spaces",
    "search": "gansearch.search",
    "evaluators": "gansearch.evaluators",
}

# Libraries whose private modules and members must not be used: their underscored names
# change without notice. thop's public API is ``thop.profile`` (the function, imported
# from the package) and ``thop.clever_format``; its submodules are internals.
PRIVATE_CHECKED = ("optuna", "thop")
THOP_PUBLIC = {"profile", "clever_format", "__version__"}
# Members of Optuna objects that are internal (``study._storage``, ``trial._trial_id``).
PRIVATE_ATTRIBUTES = {"_storage", "_trial_id", "_study_id", "_cached_frozen_trial"}


@dataclass(frozen=True)
class Import:
    """One import statement (or literal ``importlib.import_module``) in a module."""

    module: str  # absolute dotted name of the module imported from
    names: tuple[str, ...]  # names of ``from module import ...``; () for ``import module``
    line: int


@dataclass(frozen=True)
class SourceModule:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package a relative import of this module starts from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def discover(root: Path = ROOT) -> dict[str, SourceModule]:
    """Every ``.py`` file under the source folders, by installed module name."""
    modules: dict[str, SourceModule] = {}
    for folder, installed in SOURCES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            dotted = ".".join((installed, *(parts[:-1] if is_package else parts)))
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            modules[dotted] = SourceModule(dotted, path, is_package, tree)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(reversed(node.orelse))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _absolute(module: SourceModule, level: int, name: str | None) -> str:
    """The absolute module of ``from <level dots><name> import ...`` in ``module``."""
    if level == 0:
        return name or ""
    base = module.package.split(".")
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(module: SourceModule) -> list[Import]:
    """All imports that can run, deferred ones included, with absolute module names."""
    found: list[Import] = []
    for node in _runtime_nodes(module.tree):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, (), node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node.level, node.module)
            found.append(Import(target, tuple(a.name for a in node.names), node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(node.args[0].value, (), node.lineno))
    return found


def lazy_exports(module: SourceModule) -> dict[str, str]:
    """Name -> absolute module of a package's ``lazy_exports(__name__, {...})`` table."""
    tables: dict[str, ast.Dict] = {}
    for node in module.tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    tables[target.id] = node.value
    exports: dict[str, str] = {}
    for node in ast.walk(module.tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "lazy_exports"
            and len(node.args) == 2
        ):
            continue
        table = node.args[1]
        if isinstance(table, ast.Name):
            table = tables.get(table.id)
        if not isinstance(table, ast.Dict):
            continue
        for key, value in zip(table.keys, table.values, strict=True):
            if isinstance(key, ast.Constant) and isinstance(value, ast.Constant):
                target = value.value
                absolute = target if target.startswith("gansearch.") else f"{module.name}.{target}"
                exports[key.value] = absolute
    return exports


def _internal(name: str, modules: dict[str, SourceModule]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(
    modules: dict[str, SourceModule],
) -> dict[str, dict[str, int]]:
    """Module -> {imported module: line of the first such import}."""
    lazy = {name: lazy_exports(m) for name, m in modules.items() if m.is_package}
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, module in modules.items():
        for item in imports_of(module):
            targets: list[str | None] = []
            if not item.names:
                targets.append(_internal(item.module, modules))
            for imported in item.names:
                submodule = f"{item.module}.{imported}"
                if submodule in modules:
                    targets.append(submodule)
                elif imported in lazy.get(item.module, {}):
                    targets.append(_internal(lazy[item.module][imported], modules))
                else:
                    targets.append(_internal(item.module, modules))
            for target in targets:
                if target is not None and target != name:
                    graph[name].setdefault(target, item.line)
    return graph


def _strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of ``component`` (breadth-first)."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node]):
                if successor not in members:
                    continue
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    return component  # unreachable for a strongly connected component


def import_cycles(root: Path = ROOT) -> list[str]:
    """One line per cycle: ``a (line) -> b (line) -> a``; empty when the graph is acyclic."""
    modules = discover(root)
    graph = import_graph(modules)
    lines = []
    for component in _strongly_connected(graph):
        path = _shortest_cycle(graph, component)
        steps = [
            f"{source} (line {graph[source][target]})"
            for source, target in zip(path, path[1:], strict=False)
        ]
        lines.append(" -> ".join([*steps, path[-1]]) + f"   (cycle among {', '.join(component)})")
    return lines


def _private_use(module: SourceModule) -> Iterator[str]:
    """Imports and attribute reads of private optuna/thop names in ``module``."""
    aliases: dict[str, str] = {}  # local name -> library module it stands for
    for item in imports_of(module):
        root = item.module.split(".")[0]
        if root not in PRIVATE_CHECKED:
            continue
        parts = item.module.split(".")
        if any(part.startswith("_") for part in parts):
            yield f"line {item.line}: imports {item.module}"
        elif root == "thop" and len(parts) > 1:
            yield f"line {item.line}: imports thop internals {item.module}"
        for imported in item.names:
            if imported.startswith("_"):
                yield f"line {item.line}: imports {imported} from {item.module}"
            elif item.module == "thop" and imported not in THOP_PUBLIC:
                yield f"line {item.line}: imports thop.{imported}, not thop's public API"
    for node in _runtime_nodes(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PRIVATE_CHECKED:
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr in PRIVATE_ATTRIBUTES:
            yield f"line {node.lineno}: reads .{node.attr}"
        chain, value = [node.attr], node.value
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in aliases:
            dotted = [value.id, *reversed(chain)]
            private = [p for p in dotted[1:] if p.startswith("_") and not p.startswith("__")]
            if private and node.attr == private[-1]:
                yield f"line {node.lineno}: reads {'.'.join(dotted)}"


def private_api_uses(root: Path = ROOT) -> list[str]:
    return [
        f"{name}: {use}"
        for name, module in discover(root).items()
        for use in dict.fromkeys(_private_use(module))
    ]


# --------------------------------------------------------------------------- tests


def test_no_import_cycle() -> None:
    cycles = import_cycles()
    assert not cycles, "import cycles (deferred imports included):\n" + "\n".join(cycles)


def test_no_private_optuna_or_thop_api() -> None:
    uses = private_api_uses()
    assert not uses, "private optuna/thop API used:\n" + "\n".join(uses)


def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in ("spaces", "search", "evaluators"):
        (root / folder).mkdir(exist_ok=True)
    return root


def test_cycle_detection_sees_deferred_relative_and_lazy_imports(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "gansearch/__init__.py": "",
            "gansearch/a.py": "def f():\n    from . import b\n",
            "gansearch/b.py": "from gansearch.pkg import thing\n",
            "gansearch/pkg/__init__.py": (
                "from gansearch.lazy import lazy_exports\n"
                "_E = {'thing': 'c'}\n__getattr__ = lazy_exports(__name__, _E)\n"
            ),
            "gansearch/pkg/c.py": "import importlib\nimportlib.import_module('gansearch.a')\n",
            "gansearch/d.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gansearch import e\n"
            ),
            "gansearch/e.py": "import gansearch.d\n",
            "evaluators/x.py": "from ..spaces import y\n",
            "spaces/y.py": "from gansearch.evaluators.x import z\n",
        },
    )
    cycles = import_cycles(root)
    assert len(cycles) == 2, cycles
    assert cycles[0].startswith("gansearch.a (line 2) -> gansearch.b (line 1) -> gansearch.pkg.c")
    assert cycles[0].split(" -> ")[-1].startswith("gansearch.a")
    assert cycles[1].startswith("gansearch.evaluators.x (line 1) -> gansearch.spaces.y")


def test_private_api_detection(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "gansearch/__init__.py": "",
            "gansearch/bad.py": (
                "import optuna\nimport importlib\n"
                "def f(study, trial):\n"
                "    from optuna._hypervolume import compute_hypervolume\n"
                "    from thop.vision.basic_hooks import count_normalization\n"
                "    importlib.import_module('thop.profile')\n"
                "    study._storage.set_trial_system_attr(trial._trial_id, 'k', 1)\n"
                "    return optuna._imports\n"
            ),
            "gansearch/good.py": (
                "import optuna\nfrom thop import profile\n"
                "def f(trial):\n    return optuna.trial.TrialState, trial.constraints, profile\n"
            ),
        },
    )
    uses = private_api_uses(root)
    assert [use.split(":")[0] for use in uses] == ["gansearch.bad"] * 6, uses
    assert any("optuna._hypervolume" in use for use in uses)
    assert any("thop internals thop.profile" in use for use in uses)
    assert any("._storage" in use for use in uses) and any("._trial_id" in use for use in uses)

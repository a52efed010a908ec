"""The layer rule, pinned (DESIGN.md, "Layers and who may import whom").

The core (``statecore/*.py``, outside ``backends/``, ``runners/`` and ``testing/``)
imports no backend and no runner and does no I/O: no sqlite3, redis, threads, sockets,
clocks, files or processes. The documented exceptions:

* ``Flow.run`` imports ``statecore.runners.local`` (and, for a flow with a schedule,
  ``statecore.runners.scheduling``) lazily, inside the method;
* ``statecore/__main__.py`` (``python -m statecore``) is the command line's entry point:
  it imports ``statecore.cli.main`` and is never imported by ``import statecore``;
* ``statecore.testing`` is test tooling (it is not scanned).

``Parameter.run`` and ``Secret.run`` import ``statecore.context`` lazily; that is core.
The stores import only the core's events and errors (and each other).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "statecore"
# the schedules package is core too (pure; its one clock read is pinned in test_schedules)
CORE = sorted(p for p in PACKAGE.glob("*.py")) + sorted((PACKAGE / "schedules").glob("*.py"))
BACKENDS = sorted((PACKAGE / "backends").glob("*.py"))

FORBIDDEN = (
    "sqlite3",
    "redis",
    "threading",
    "socket",
    "time",
    "os",
    "subprocess",
    "statecore.backends",
    "statecore.runners",
    "statecore.cli",
)
IO_CALLS = {"open", "input", "print", "breakpoint", "exec", "eval"}

# (file, enclosing function or "<module>", imported module)
ALLOWED = {
    ("flow.py", "Flow.run", "statecore.runners.local"),
    ("flow.py", "Flow.run", "statecore.runners.scheduling"),
    ("__main__.py", "<module>", "statecore.cli.main"),
}


@dataclass(frozen=True)
class Found:
    file: str
    where: str
    module: str
    line: int


class _Scanner(ast.NodeVisitor):
    """Collects imports (with where they happen) and I/O calls, skipping TYPE_CHECKING."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.scope: list[str] = []
        self.imports: list[Found] = []
        self.calls: list[Found] = []

    @property
    def where(self) -> str:
        return ".".join(self.scope) or "<module>"

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = _scoped
    visit_AsyncFunctionDef = _scoped
    visit_ClassDef = _scoped

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for child in node.orelse:
                self.visit(child)
            return
        if test in ("__name__ == '__main__'", '__name__ == "__main__"'):
            return  # running a module as a script may print
        self.generic_visit(node)

    def _add(self, module: str, line: int) -> None:
        self.imports.append(Found(self.file, self.where, module, line))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            base = ["statecore"] if self.file in {p.name for p in CORE} else []
            module = ".".join([*base, module]) if module else ".".join(base)
        self._add(module, node.lineno)
        if module == "statecore":
            # ``from statecore import runners`` imports the module statecore.runners
            for alias in node.names:
                self._add(f"{module}.{alias.name}", node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else None
        if name in IO_CALLS:
            self.calls.append(Found(self.file, self.where, name, node.lineno))
        dotted = ast.unparse(func)
        if dotted in ("importlib.import_module", "import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self._add(arg.value, node.lineno)
        self.generic_visit(node)


def scan(path: Path) -> _Scanner:
    scanner = _Scanner(path.name)
    scanner.visit(ast.parse(path.read_text(), filename=str(path)))
    return scanner


def forbidden(module: str) -> str | None:
    for name in FORBIDDEN:
        if module == name or module.startswith(name + "."):
            return name
    return None


def test_the_core_is_what_the_scan_covers() -> None:
    names = {p.name for p in CORE}
    for expected in ("decide.py", "fold.py", "flow.py", "tasks.py", "states.py", "machine.py"):
        assert expected in names


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_imports_no_backend_runner_or_io_module(path: Path) -> None:
    bad = [
        f"{f.file}:{f.line} in {f.where}: imports {f.module}"
        for f in scan(path).imports
        if forbidden(f.module) and (f.file, f.where, f.module) not in ALLOWED
    ]
    assert bad == []


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_does_no_io(path: Path) -> None:
    calls = [f"{f.file}:{f.line} in {f.where}: calls {f.module}()" for f in scan(path).calls]
    assert calls == []


def test_the_documented_exceptions_are_still_there() -> None:
    # If one of these goes away, drop it from ALLOWED: exceptions must stay few.
    found = {(f.file, f.where, f.module) for p in CORE for f in scan(p).imports}
    assert found >= ALLOWED
    flow = scan(PACKAGE / "flow.py").imports
    assert not [f for f in flow if f.where == "<module>" and forbidden(f.module)]
    context_imports = {
        (f.where, f.module) for f in scan(PACKAGE / "tasks.py").imports if "context" in f.module
    }
    assert ("Parameter.run", "statecore.context") in context_imports
    assert ("Secret.run", "statecore.context") in context_imports


@pytest.mark.parametrize("path", BACKENDS, ids=lambda p: p.name)
def test_stores_import_only_the_cores_events_and_errors(path: Path) -> None:
    allowed = ("statecore.events", "statecore.errors", "statecore.backends")
    bad = [
        f"{f.file}:{f.line}: imports {f.module}"
        for f in scan(path).imports
        if f.module.startswith("statecore")
        and f.module != "statecore"
        and not any(f.module == a or f.module.startswith(a + ".") for a in allowed)
    ]
    assert bad == []


def test_the_scanner_sees_lazy_and_aliased_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import sqlite3\n"
        "import os.path as p\n"
        "from statecore import runners\n"
        "def f():\n"
        "    import time\n"
        "    open('x')\n"
        "    importlib.import_module('statecore.backends.redis')\n"
    )
    s = scan(sample)
    modules = {(f.where, f.module) for f in s.imports if forbidden(f.module)}
    assert modules == {
        ("<module>", "os.path"),
        ("<module>", "statecore.runners"),
        ("f", "time"),
        ("f", "statecore.backends.redis"),
    }
    assert [(f.where, f.module) for f in s.calls] == [("f", "open")]


def test_import_statecore_loads_no_store_driver_and_no_shell() -> None:
    code = (
        "import json, sys, statecore\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlite3', '_sqlite3', 'redis', 'statecore'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    assert not [m for m in loaded if m.split(".")[0] in ("sqlite3", "_sqlite3", "redis")]
    assert not [m for m in loaded if m.startswith(("statecore.backends", "statecore.runners"))]


def test_import_backends_does_not_load_redis() -> None:
    code = "import sys, statecore.backends; print('redis' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# -- import cycles ------------------------------------------------------------------------

#: old import paths kept one release (each only aliases its new module)
SHIMS = {
    "statecore.view",
    "statecore.runners.audit",
    "statecore.runners.cli",
    "statecore.runners.cli_errors",
    "statecore.runners.cli_time",
    "statecore.runners.cli_progress",
    "statecore.runners.cli_report",
    "statecore.runners.cli_schedule",
    "statecore.runners.timeline",
    "statecore.runners.graph_render",
    "statecore.runners.rerun",
}
#: the one documented cycle: ``Flow.run`` hands the flow to the runners, lazily
CYCLE_ALLOWED = {
    ("statecore.flow", "statecore.runners.local"),
    ("statecore.flow", "statecore.runners.scheduling"),
    # serialization's deprecated ``scrub``/``scrub_text`` (module __getattr__), one release
    ("statecore.serialization", "statecore.scrubbing"),
}
AUTHORING = ("statecore.flow", "statecore.tasks", "statecore.graph", "statecore.control_flow")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the statecore modules it imports (lazily or not, TYPE_CHECKING aside).

    ``from statecore import x`` counts as importing ``statecore.x`` when that is a module,
    else the package; a package's ``__init__`` run by importing a submodule does not count.
    """
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "testing" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        if name in SHIMS:
            continue
        edges: set[str] = set()
        for f in scan(path).imports:
            module = f.module
            if not module.startswith("statecore"):
                continue
            if module == "statecore":
                continue  # the submodule names were added beside it
            while module not in paths and "." in module:
                module = module.rsplit(".", 1)[0]
            if module in paths and module != name:
                edges.add(module)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_but_the_documented_flow_run_delegation() -> None:
    graph = import_graph()
    for src, dst in CYCLE_ALLOWED:
        assert dst in graph[src], f"drop {src} -> {dst} from CYCLE_ALLOWED: it is gone"
        graph[src].discard(dst)
    assert cycles(graph) == []


def test_the_cycle_check_sees_a_new_cycle() -> None:
    graph = import_graph()
    for src, dst in CYCLE_ALLOWED:
        graph[src].discard(dst)
    graph["statecore.fold"].add("statecore.decide")  # decide imports fold
    assert any({"statecore.decide", "statecore.fold"} <= set(c) for c in cycles(graph))


def test_the_fold_imports_no_authoring_layer() -> None:
    graph = import_graph()
    reach: set[str] = set()
    frontier = ["statecore.fold"]
    while frontier:
        for dst in graph[frontier.pop()]:
            if dst not in reach:
                reach.add(dst)
                frontier.append(dst)
    assert not [m for m in reach if m.startswith(AUTHORING)]


@pytest.mark.parametrize("old", sorted(SHIMS))
def test_old_import_paths_warn_and_still_work(old: str) -> None:
    code = (
        "import warnings, importlib\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n"
        f"    importlib.import_module({old!r})\n"
        "except DeprecationWarning as w:\n"
        "    print('warned', w)\n"
        "warnings.simplefilter('ignore')\n"
        f"m = importlib.import_module({old!r})\n"
        "print(len([n for n in dir(m) if not n.startswith('__')]) > 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("warned " + old)
    assert out.rstrip().endswith("True")


def test_tests_are_grouped_by_the_layer_they_test() -> None:
    """Each layer's tests live in its folder; only the whole-package checks (and the
    build's) stay on top."""
    tests = Path(__file__).resolve().parent
    layers = {"core", "stores", "runners", "cli", "ui", "compat"}
    top = {p.stem for p in tests.glob("test_*.py")}
    assert top == {"test_build", "test_docs", "test_layers", "test_public_api"}
    for layer in layers:
        assert (tests / layer / "__init__.py").is_file(), layer
        assert list((tests / layer).glob("test_*.py")), layer
    stray = [
        p.relative_to(tests)
        for p in tests.rglob("test_*.py")
        if p.parent != tests and p.parent.name not in layers and p.parent.name != "golden"
    ]
    assert not stray, stray

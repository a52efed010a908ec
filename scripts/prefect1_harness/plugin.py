"""pytest plugin that runs Prefect 1.4.1's tests against statecore (loaded with ``-p``).

At configure time (before any test module is imported) it makes ``import prefect`` resolve to
statecore, through ``statecore.compat.install()`` when that package exists (else through the
private :mod:`prefect1_harness.aliases` map). Modules that the scope table declares out of
scope (``prefect.serialization``, ``prefect.executors``, ...) and the test-only third-party
packages that are not installed (``flaky``, ``toml``) are served as *placeholders*: importing
them works, so a test file collects, but using any of their names raises
:class:`OutOfScopeUsed`. Each test whose id matches the scope table is skipped with the
table's reason *before it runs*; whether it would fail never decides. Outcomes are written as
JSON to ``$PREFECT1_HARNESS_OUT``.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import sys
import types
from typing import Any

import prefect1_tests as scope  # the table lives in the script, next to its docs
import pytest

_MARK = "statecore-out-of-scope: "


class OutOfScopeUsed(Exception):
    """An in-scope test used a name the scope table declares out of scope."""


# the out-of-scope names each test touched (reset per test): an in-scope test that touches
# one fails, so a placeholder can never make a test pass by accident
_touched: list[str] = []


class Placeholder:
    """Stands for an out-of-scope Prefect name.

    Building with it (calling it, reading its attributes) gives more placeholders, so a test
    module that uses one at import time still collects; asking it anything (truth,
    equality, iteration, a context) raises :class:`OutOfScopeUsed`, and so does any test
    that touched it while running.
    """

    def __init__(self, qualname: str) -> None:
        object.__setattr__(self, "_qualname", qualname)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise OutOfScopeUsed(f"{self._qualname} is out of scope for statecore")

    def __call__(self, *args: Any, **kwargs: Any) -> Placeholder:
        _touched.append(self._qualname)
        return Placeholder(f"{self._qualname}()")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        _touched.append(self._qualname)
        return Placeholder(f"{self._qualname}.{name}")

    __bool__ = _refuse
    __eq__ = _refuse
    __iter__ = _refuse
    __len__ = _refuse
    __enter__ = _refuse
    __getitem__ = _refuse
    __hash__ = object.__hash__

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        # ``class X(prefect.serialization.Schema)`` at module level must still import
        return (_PlaceholderBase,)

    def __repr__(self) -> str:
        return f"<out of scope: {self._qualname}>"


class _PlaceholderBase:
    pass


class _PlaceholderModule(types.ModuleType):
    """A placeholder module; also stands for a *name* the compatibility layer refuses
    (``from prefect.engine.result import Result`` falls back to importing a submodule)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return Placeholder(f"{self.__name__}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Placeholder:
        return Placeholder(self.__name__)(*args, **kwargs)

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (_PlaceholderBase,)


class _PlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves placeholder modules for the scope table's out-of-scope module prefixes."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self.prefixes = prefixes

    def _covered(self, fullname: str) -> bool:
        return any(fullname == p or fullname.startswith(p + ".") for p in self.prefixes)

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if not self._covered(fullname):
            return None
        # a name the compatibility layer really serves wins over a placeholder
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            try:
                spec = finder.find_spec(fullname, path, target)
            except ImportError:
                spec = None
            if spec is not None:
                return spec
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> types.ModuleType:
        mod = _PlaceholderModule(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _install_prefect() -> str:
    """Make ``import prefect`` resolve to statecore; returns which layer did it."""
    try:
        import importlib.util

        real = importlib.util.find_spec("prefect")
    except (ImportError, ValueError):
        real = None
    if real is not None and "statecore" not in str(getattr(real, "origin", "")):
        raise pytest.UsageError(
            f"a real prefect is importable ({real.origin}): the proof needs it absent"
        )
    try:
        import statecore.compat as compat
    except ImportError:
        compat = None
    if compat is None or not hasattr(compat, "install"):
        from prefect1_harness import aliases

        aliases.install()
        return "prefect1_harness.aliases (temporary: statecore.compat not importable)"
    compat.install()
    return "statecore.compat.install()"


def _attach_placeholder_modules() -> None:
    """Import each out-of-scope ``prefect.*`` module once, so attribute paths such as
    ``prefect.storage.Local()`` in a class body resolve as its imports do."""
    import importlib

    for name in scope.PLACEHOLDER_MODULES:
        if name.startswith("prefect."):
            module = importlib.import_module(name)
            parent, _, child = name.rpartition(".")
            with contextlib.suppress(AttributeError, TypeError):
                setattr(sys.modules[parent], child, module)


def _bridge_compat_gaps() -> list[str]:
    """Fill the scope table's COMPAT_GAPS (statecore names the map lacks); returns those used."""
    import importlib

    used = []
    for (module_name, name), (ours, our_name) in scope.COMPAT_GAPS.items():
        module = importlib.import_module(module_name)
        if not hasattr(module, name):
            setattr(module, name, getattr(importlib.import_module(ours), our_name))
            used.append(f"{module_name}.{name} -> {ours}.{our_name}")
    return used


def _runners_as_executors() -> None:
    """Let the harness's ``executor`` fixture reach ``flow.run(executor=...)``.

    Prefect's tests pass their ``executor`` fixture to ``flow.run``; the compatibility layer
    refuses Prefect executors (out of scope), so the fixture gives statecore runners marked
    ``_prefect1_harness_runner`` and only those are passed on as ``runner=``.
    """
    import prefect

    flow_cls = prefect.Flow
    original = flow_cls.run

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        executor = kwargs.get("executor")
        if getattr(executor, "_prefect1_harness_runner", False):
            kwargs["runner"] = kwargs.pop("executor")
        return original(self, *args, **kwargs)

    run.__doc__ = original.__doc__
    flow_cls.run = run


def _declare_missing_names() -> None:
    """Give the names the scope table declares out of scope a placeholder in their module,
    so ``from prefect.engine.state import Submitted`` collects; only where the compatibility
    layer has no such name."""
    import importlib

    for module_name, names in scope.OUT_OF_SCOPE_NAMES.items():
        module = importlib.import_module(module_name)
        for name in names:
            if not hasattr(module, name):
                setattr(module, name, Placeholder(f"{module_name}.{name}"))


class _Recorder:
    def __init__(self) -> None:
        self.layer = ""
        self.bridged: list[str] = []
        self.tests: dict[str, dict[str, str]] = {}
        self.collect_errors: dict[str, str] = {}

    def set(self, nodeid: str, outcome: str, detail: str = "") -> None:
        current = self.tests.get(nodeid)
        # a teardown error after a pass is still a failure; never downgrade a failure
        if current is not None and current["outcome"] == "failed":
            return
        self.tests[nodeid] = {"outcome": outcome, "detail": detail}


_recorder = _Recorder()


def _flaky(*args: Any, **kwargs: Any) -> Any:
    """``flaky.flaky`` without reruns: a test here must pass on its first run."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


def serve_prefect() -> tuple[str, list[str]]:
    """Everything ``import prefect`` and the test modules' imports need, in this process."""
    flaky = types.ModuleType("flaky")
    flaky.flaky = _flaky  # type: ignore[attr-defined]
    sys.modules.setdefault("flaky", flaky)
    layer = _install_prefect()
    # after the compatibility layer's own finder, so this one is asked first
    sys.meta_path.insert(0, _PlaceholderFinder(scope.PLACEHOLDER_MODULES))
    _attach_placeholder_modules()
    bridged = _bridge_compat_gaps()
    _declare_missing_names()
    return layer, bridged


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("STATECORE_STORE", "memory://")
    _recorder.layer, _recorder.bridged = serve_prefect()
    _runners_as_executors()


def _test_source(item: pytest.Item) -> str:
    fn = getattr(item, "function", None)
    if fn is None:
        return ""
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = scope.out_of_scope_reason(item.nodeid, _test_source(item))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=_MARK + reason))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    del _touched[:]
    result = yield
    if _touched:
        used = ", ".join(sorted(set(_touched))[:5])
        raise OutOfScopeUsed(f"an in-scope test used out-of-scope names: {used}")
    return result


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _recorder.collect_errors[report.nodeid] = str(report.longrepr)[-2000:]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        if _MARK in reason:
            _recorder.set(report.nodeid, "out_of_scope", reason.split(_MARK, 1)[1])
        elif hasattr(report, "wasxfail"):
            _recorder.set(report.nodeid, "xfail", str(report.wasxfail))
        else:
            _recorder.set(report.nodeid, "skipped", reason)
    elif report.failed:
        text = str(report.longrepr)
        _recorder.set(report.nodeid, "failed", f"[{report.when}] " + text[-3000:])
    elif report.when == "call":
        _recorder.set(report.nodeid, "passed")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    out = os.environ.get("PREFECT1_HARNESS_OUT")
    if not out:
        return
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(
            {
                "layer": _recorder.layer,
                "bridged": _recorder.bridged,
                "tests": _recorder.tests,
                "collect_errors": _recorder.collect_errors,
            },
            fh,
            indent=1,
            sort_keys=True,
        )

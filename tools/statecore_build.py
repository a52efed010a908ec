"""statecore's build backend: setuptools', plus mypy when the compiled build is asked for.

``STATECORE_COMPILE=1 pip install .`` (or ``-e .``) compiles the run's hot path, the
modules in :data:`HOT_PATH`, with mypyc; without it statecore is pure Python. The two
builds behave alike (CI runs the whole suite on each); the compiled one runs a task's
bookkeeping faster (README, Speed).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import (
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

__all__ = [
    "HOT_PATH",
    "build_editable",
    "build_sdist",
    "build_wheel",
    "compiled_files",
    "compiling",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

#: the modules a task's run goes through, compiled when STATECORE_COMPILE=1. Modules
#: users subclass from (states, tasks) or introspect (triggers' docstrings) stay Python.
HOT_PATH = [
    "statecore/decide.py",
    "statecore/readiness.py",
    "statecore/runners/bodies.py",
    "statecore/runners/dispatch.py",
    "statecore/runners/driver.py",
    "statecore/runners/execution.py",
    "statecore/runners/journal.py",
    "statecore/runners/recorder.py",
    "statecore/runners/session.py",
]

#: what compiling needs: mypyc comes with mypy (the version CI type-checks with), which
#: checks the modules' types as CI does, so it needs the typed packages they import
COMPILE_REQUIRES = ["mypy==2.4.1", "pendulum>=3.0", "cryptography>=42"]


def compiled_files(root: Path) -> list[Path]:
    """The extension modules a compiled build put under ``root`` (a source checkout):
    one per module of :data:`HOT_PATH`, and mypyc's shared library."""
    found = sorted(root.glob("statecore__mypyc.*.so"))
    for source in HOT_PATH:
        module = root / source
        found += sorted(module.parent.glob(f"{module.stem}.*.so"))
    return found


def compiling() -> bool:
    """True when ``STATECORE_COMPILE`` asks for the compiled build."""
    return os.environ.get("STATECORE_COMPILE", "").strip().lower() in {"1", "true", "yes"}


#: True while setuptools runs setup.py only to learn the build's requirements (mypy is
#: not installed yet then, so setup.py must not compile)
asking_requirements = False


def _requires(ask: Callable[[dict[str, Any] | None], list[str]], config: Any) -> list[str]:
    global asking_requirements
    asking_requirements = True
    try:
        base = ask(config)
    finally:
        asking_requirements = False
    return [*base, *COMPILE_REQUIRES] if compiling() else base


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _requires(build_meta.get_requires_for_build_wheel, config_settings)


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _requires(build_meta.get_requires_for_build_editable, config_settings)

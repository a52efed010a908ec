"""Prefect 1 flows, unchanged, on statecore: an opt-in ``prefect`` import path.

``statecore.compat.install()`` puts an import hook on ``sys.meta_path`` that serves
``prefect`` and the Prefect 1.4.1 module paths flows import (``prefect.engine.state``,
``prefect.triggers``, ``prefect.schedules``, ``prefect.client.Secret``, ...) with
statecore's objects; see :mod:`statecore.compat.modules` for the map. Three ways to turn
it on:

* ``statecore run FILE.py:FLOW --prefect1``, or ``STATECORE_PREFECT1=1`` in the
  environment of ``statecore run``;
* ``python -m statecore.compat FILE.py [ARGS]``: run a script with the layer on;
* ``import statecore.compat; statecore.compat.install()`` before the flow's imports; or
  install the shim package (``shim/prefect1``), whose ``prefect`` does this itself.

It never shadows a real Prefect by accident: when one is installed, :func:`install`
refuses unless ``force=True``. Names that are out of scope (Cloud, Server, agents,
storage, run configs, executors, ``Flow.register``/``deploy``) raise
:class:`OutOfScope`, whose message says what to use instead.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from pathlib import Path

from statecore.compat.errors import (
    OutOfScope,
    OutOfScopeAttribute,
    OutOfScopeImport,
    PrefectInstalled,
)
from statecore.compat.finder import MARKER, CompatFinder

__all__ = [
    "ENV_VAR",
    "OutOfScope",
    "OutOfScopeAttribute",
    "OutOfScopeImport",
    "PrefectInstalled",
    "enabled_by_env",
    "install",
    "install_from_env",
    "install_if",
    "installed",
    "real_prefect",
    "uninstall",
]

#: set to 1 (or true/yes/on) to turn the layer on in ``statecore run`` and the shim
ENV_VAR = "STATECORE_PREFECT1"
#: the file that marks the shim's ``prefect`` package as statecore's, not Prefect's
SHIM_MARKER = "_statecore_shim.py"

_finder: CompatFinder | None = None


def real_prefect() -> str | None:
    """Where a real Prefect is installed (the path of its package), else None.

    Looks on ``sys.path`` only (``PathFinder``), so this layer's own finder is skipped;
    the shim package (``shim/prefect1``) is recognised by its marker file and skipped too.
    """
    spec = importlib.machinery.PathFinder.find_spec("prefect")
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or ())
    if any((Path(loc) / SHIM_MARKER).is_file() for loc in locations):
        return None
    return locations[0] if locations else spec.origin or "prefect"


def _ours(module: object) -> bool:
    return bool(getattr(module, MARKER, False))


def installed() -> bool:
    """Whether the import hook is on ``sys.meta_path``."""
    return _finder is not None and _finder in sys.meta_path


def install(force: bool = False) -> None:
    """Serve ``import prefect`` (and its Prefect 1 submodules) with statecore's objects.

    Idempotent. The hook goes first on ``sys.meta_path``.

    Args:
        force: install even when a real Prefect is installed (it is then shadowed, and a
            ``prefect`` already imported from it is dropped from ``sys.modules``).

    Raises:
        PrefectInstalled: a real Prefect is installed (or already imported) and
            ``force`` is False.
    """
    global _finder
    if installed():
        return
    loaded = [name for name in sys.modules if name == "prefect" or name.startswith("prefect.")]
    foreign = [name for name in loaded if not _ours(sys.modules[name])]
    if not force:
        where = real_prefect()
        if where is not None or foreign:
            place = where if where is not None else getattr(sys.modules["prefect"], "__file__", "?")
            raise PrefectInstalled(
                f"a real Prefect is installed ({place}); statecore's Prefect 1 layer would "
                "shadow it. Uninstall Prefect (pip uninstall prefect), or force it: "
                "statecore.compat.install(force=True)"
            )
    for name in foreign:
        del sys.modules[name]
    _finder = CompatFinder()
    sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    """Remove the hook and forget the modules it served (tests use this)."""
    global _finder
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None
    for name in [n for n in sys.modules if n == "prefect" or n.startswith("prefect.")]:
        if _ours(sys.modules[name]):
            del sys.modules[name]


def enabled_by_env() -> bool:
    """Whether ``STATECORE_PREFECT1`` asks for the layer."""
    return os.environ.get(ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def install_if(requested: bool) -> bool:
    """Install when ``requested`` (``statecore run --prefect1``) or when
    ``STATECORE_PREFECT1`` asks; returns whether the layer is on.

    Raises:
        PrefectInstalled: see :func:`install`.
    """
    if requested or enabled_by_env():
        install()
    return installed()


def install_from_env() -> bool:
    """Install when ``STATECORE_PREFECT1`` asks; returns whether the layer is on."""
    return install_if(False)

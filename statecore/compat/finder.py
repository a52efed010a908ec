"""The import hook: a ``sys.meta_path`` finder and loader serving ``prefect``.

Every served module is a package (an empty ``__path__``), so ``from prefect.x import Y``
for a name the module lacks asks the finder for ``prefect.x.Y``, which answers with an
:class:`~statecore.compat.errors.OutOfScopeImport` saying what to use instead, rather
than Python's bare "cannot import name". A module's ``__getattr__`` does the same for
attribute lookups (an :class:`~statecore.compat.errors.OutOfScopeAttribute`, so
``hasattr`` is False) and imports a served submodule on first use
(``prefect.engine.state`` after a bare ``import prefect``), as Prefect 1's eager imports
allowed.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from statecore.compat.errors import OutOfScopeAttribute, OutOfScopeImport
from statecore.compat.modules import MODULES, ModuleDef, out_of_scope_module

__all__ = ["CompatFinder", "CompatLoader", "populate", "unknown_name_message"]

#: set on every module the layer serves (and on the shim's ``prefect``)
MARKER = "__statecore_compat__"


def _served_names(fullname: str) -> list[str]:
    module = sys.modules.get(fullname)
    names = [n for n in vars(module) if not n.startswith("_")] if module is not None else []
    return names + list(MODULES[fullname].submodules)


def unknown_name_message(fullname: str, name: str) -> str:
    """The message for ``fullname.name``, a Prefect 1 name the layer does not serve."""
    definition = MODULES[fullname]
    message = definition.out_of_scope.get(name)
    if message is not None:
        return f"{fullname}.{name}: {message}"
    close = difflib.get_close_matches(name, _served_names(fullname), n=1)
    hint = f"; did you mean {fullname}.{close[0]}?" if close else ""
    where = (
        f" (its statecore equivalent is {definition.equivalent})" if definition.equivalent else ""
    )
    return (
        f"{fullname} has no name {name!r} in statecore's Prefect 1 compatibility layer"
        f"{where}{hint}; the README's Prefect 1 table lists what is served"
    )


def _module_getattr(fullname: str) -> Any:
    definition = MODULES[fullname]

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {fullname!r} has no attribute {name!r}")
        if name in definition.submodules:
            return importlib.import_module(f"{fullname}.{name}")
        raise OutOfScopeAttribute(unknown_name_message(fullname, name))

    return __getattr__


def populate(module: ModuleType, fullname: str) -> None:
    """Fill ``module`` with the names of served module ``fullname``.

    Raises:
        OutOfScopeImport: the module's statecore counterpart cannot be imported.
    """
    definition: ModuleDef = MODULES[fullname]
    names = definition.build()
    module.__dict__.update(names)
    module.__doc__ = definition.doc
    module.__all__ = sorted(n for n in names if not n.startswith("_"))  # type: ignore[attr-defined]
    module.__getattr__ = _module_getattr(fullname)  # type: ignore[method-assign]
    setattr(module, MARKER, True)


class CompatLoader(importlib.abc.Loader):
    """Makes each served module: a package whose names are statecore objects."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        populate(module, module.__name__)


class CompatFinder(importlib.abc.MetaPathFinder):
    """Answers for ``prefect`` and every ``prefect.*`` module: a served module, or an
    :class:`OutOfScopeImport` saying what to use instead. Other names are not its."""

    def __init__(self) -> None:
        self.loader = CompatLoader()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "prefect" and not fullname.startswith("prefect."):
            return None
        if fullname in MODULES:
            spec = importlib.machinery.ModuleSpec(fullname, self.loader, is_package=True)
            spec.submodule_search_locations = []
            return spec
        message = out_of_scope_module(fullname)
        if message is None:
            parent, _, name = fullname.rpartition(".")
            if parent in MODULES:
                message = unknown_name_message(parent, name)
            else:
                message = (
                    f"{fullname} is not served by statecore's Prefect 1 compatibility layer; "
                    "the README's Prefect 1 table lists what is"
                )
        else:
            message = f"{fullname}: {message}"
        raise OutOfScopeImport(message, name=fullname)

    def invalidate_caches(self) -> None:
        """Nothing is cached."""

"""Loading a flow named on the command line as ``FILE.py:FLOW``.

``FILE.py`` is a path to a Python file and ``FLOW`` the name of a module attribute that
is a :class:`~statecore.Flow`. The file is imported as a fresh module each time (under a
private name, so two files called ``flows.py`` do not collide), with its own directory
first on ``sys.path`` so that it can import its neighbours.

Every way this can go wrong raises :class:`FlowLoadError` with a message that says what
to fix; the command line turns it into exit status 2.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from statecore.errors import StatecoreError
from statecore.flow import Flow

__all__ = ["FlowLoadError", "load_flow", "split_flow_ref"]

_FORM = "FILE.py:FLOW (a Python file and the name of a Flow defined in it)"


class FlowLoadError(StatecoreError, ValueError):
    """``FILE.py:FLOW`` is malformed, or the file or the flow cannot be loaded."""


def split_flow_ref(ref: str) -> tuple[Path, str]:
    """Split ``FILE.py:FLOW`` into the file's path and the attribute name.

    The split is at the last colon, so paths that contain colons still work.

    Raises:
        FlowLoadError: no colon, an empty part, or an attribute that is not an identifier.

    Example:
        >>> split_flow_ref("flows/etl.py:flow")
        (PosixPath('flows/etl.py'), 'flow')
    """
    path, sep, name = ref.rpartition(":")
    if not sep or not path or not name:
        raise FlowLoadError(f"{ref!r} does not name a flow; expected {_FORM}")
    if not name.isidentifier():
        raise FlowLoadError(f"{ref!r}: {name!r} is not a Python attribute name; expected {_FORM}")
    return Path(path), name


def load_flow(ref: str) -> Flow:
    """Import ``FILE.py`` and return its attribute ``FLOW``.

    Raises:
        FlowLoadError: the reference is malformed, the file is missing or not a Python
            file, importing it raised (the message carries the traceback's last lines),
            the attribute is missing, or it is not a Flow.
    """
    path, name = split_flow_ref(ref)
    if not path.exists():
        raise FlowLoadError(f"{ref!r}: no file {str(path)!r}; expected {_FORM}")
    if not path.is_file() or path.suffix != ".py":
        raise FlowLoadError(f"{ref!r}: {str(path)!r} is not a .py file; expected {_FORM}")
    module = _import_file(path.resolve(), ref)
    if not hasattr(module, name):
        flows = sorted(k for k, v in vars(module).items() if isinstance(v, Flow))
        hint = f"; flows in it: {', '.join(flows)}" if flows else "; it defines no Flow"
        raise FlowLoadError(f"{ref!r}: {str(path)!r} has no attribute {name!r}{hint}")
    flow = getattr(module, name)
    if not isinstance(flow, Flow):
        raise FlowLoadError(f"{ref!r}: {name!r} is a {type(flow).__name__}, not a statecore Flow")
    return flow


def _import_file(path: Path, ref: str) -> ModuleType:
    digest = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:12]
    module_name = f"_statecore_flow_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise FlowLoadError(f"{ref!r}: {str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    # Left on the path: task bodies may import the file's neighbours when they run.
    if folder not in sys.path:
        sys.path.insert(0, folder)
    # Registered before running it, as a normal import does: dataclasses and pickling
    # look the module up by name while it executes.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        tail = "".join(traceback.format_exception(exc)[-3:]).rstrip()
        raise FlowLoadError(f"{ref!r}: importing {str(path)!r} failed:\n{tail}") from exc
    return module

"""A private, temporary ``prefect`` module map, used only while ``statecore.compat`` is absent.

Once ``import statecore.compat`` works the plugin calls ``statecore.compat.install()`` instead
and this map is not used: the proof must run through the real compatibility layer.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__path__ = []  # every alias may have submodules
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, mod)
    return mod


def _copy(name: str, source: types.ModuleType, **extra: Any) -> types.ModuleType:
    attrs = {k: v for k, v in vars(source).items() if not k.startswith("__")}
    attrs.update(extra)
    return _module(name, **attrs)


def install() -> None:
    """Map the Prefect 1 module paths the tests import onto statecore objects."""
    import statecore
    from statecore import cache_validators, control_flow, signals, states, tasks, triggers
    from statecore import schedules as sched
    from statecore.context import context
    from statecore.flow import Edge, Flow
    from statecore.schedules import adjustments, clocks, filters
    from statecore.schedules import schedules as schedules_mod

    _module(
        "prefect",
        __version__="1.4.1",
        Flow=Flow,
        Task=tasks.Task,
        task=tasks.task,
        Parameter=tasks.Parameter,
        context=context,
        triggers=triggers,
        unmapped=tasks.unmapped,
        flatten=tasks.flatten,
        case=control_flow.case,
        signals=signals,
        states=states,
    )
    _module("prefect.core", Edge=Edge, Flow=Flow, Task=tasks.Task, Parameter=tasks.Parameter)
    _module("prefect.core.edge", Edge=Edge, Task=tasks.Task)
    _module("prefect.core.flow", Flow=Flow)
    _module("prefect.core.task", Task=tasks.Task)
    _module("prefect.core.parameter", Parameter=tasks.Parameter)
    _module("prefect.engine")
    _copy("prefect.engine.state", states)
    _copy("prefect.engine.signals", signals, PrefectStateSignal=signals.StateSignal)
    _copy("prefect.engine.cache_validators", cache_validators)
    _copy("prefect.triggers", triggers)
    _copy("prefect.schedules", sched)
    _copy("prefect.schedules.clocks", clocks)
    _copy("prefect.schedules.filters", filters)
    _copy("prefect.schedules.adjustments", adjustments)
    _copy("prefect.schedules.schedules", schedules_mod)
    _module("prefect.tasks")
    _copy("prefect.tasks.control_flow", control_flow)
    _copy("prefect.tasks.control_flow.conditional", control_flow)
    _copy("prefect.tasks.control_flow.filter", control_flow)
    _module("prefect.tasks.core")
    _module("prefect.tasks.core.constants", Constant=tasks.Constant)
    _module("prefect.tasks.core.function", FunctionTask=tasks.FunctionTask)
    _module("prefect.utilities")
    _module("prefect.utilities.edges", unmapped=tasks.unmapped, flatten=tasks.flatten)
    _module("prefect.utilities.tasks", task=tasks.task)
    _module(
        "prefect.exceptions",
        PrefectSignal=signals.Signal,
        TaskTimeoutSignal=signals.TaskTimeoutSignal,
    )
    del statecore

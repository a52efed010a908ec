"""The module map: each Prefect 1.4.1 module path the layer serves, and what it holds.

A :class:`ModuleDef` names a module's statecore objects (built when the module is first
imported, so nothing is imported before it is asked for), its submodules, and the
Prefect 1 names it does not serve with what to use instead. :data:`OUT_OF_SCOPE_MODULES`
lists the Prefect 1 packages with no statecore counterpart (Cloud, Server, agents,
storage, run configs, executors, the task library).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "MODULES",
    "OUT_OF_SCOPE_MODULES",
    "PREFECT_VERSION",
    "ModuleDef",
    "out_of_scope_module",
]

#: ``prefect.__version__`` as served: the Prefect 1 release whose API is mirrored
PREFECT_VERSION = "1.4.1+statecore"

_CLOUD = (
    "statecore has no server: run flows with `statecore run FILE.py:FLOW` (on a schedule: "
    "`--on-schedule`, or cron), watch and audit them with `statecore ui`, `statecore "
    "runs`, `statecore show RUN_ID`"
)
_RUNNER = (
    "statecore runs bodies with a runner: flow.run(runner=statecore.runners.LocalRunner("
    "max_workers=N)) or runner=statecore.runners.DaskRunner()"
)
_RESULTS = (
    "statecore's store (SQLite by default, Redis) persists every result; Result classes "
    "and targets are out of scope (checkpoint=False keeps a result out of the store)"
)
_CLIENT = (
    "the Prefect Cloud/Server Client is out of scope: runs live in statecore's store "
    "(statecore.backends.open_store, statecore.runners.replay; `statecore runs`, "
    "`statecore show`, `statecore ui`); read secrets with prefect.client.Secret(NAME).get()"
)
_CONFIG = (
    "prefect.config is out of scope: statecore reads STATECORE_STORE for the store and "
    "flow.run(secrets=...), PREFECT__CONTEXT__SECRETS__NAME or STATECORE_SECRET_NAME for "
    "secrets; put your own values in prefect.context(key=value)"
)


def _names(module: str, names: Mapping[str, str] | tuple[str, ...]) -> dict[str, Any]:
    """Objects of statecore module ``module``: a tuple of names, or Prefect name ->
    statecore name."""
    mod = importlib.import_module(module)
    pairs = names.items() if isinstance(names, Mapping) else ((n, n) for n in names)
    return {prefect_name: getattr(mod, ours) for prefect_name, ours in pairs}


def _public(module: str) -> dict[str, Any]:
    """Every name in statecore module ``module``'s ``__all__``."""
    mod = importlib.import_module(module)
    return {name: getattr(mod, name) for name in mod.__all__}


@dataclass(frozen=True)
class ModuleDef:
    """One served module.

    Attributes:
        doc: the module's docstring.
        build: returns the module's names (statecore objects), called at import.
        submodules: the short names of the modules served beneath it.
        out_of_scope: Prefect 1 names of this module not served -> what to use instead.
        equivalent: the statecore module closest to it (named in errors).
    """

    doc: str
    build: Callable[[], dict[str, Any]]
    submodules: tuple[str, ...] = ()
    out_of_scope: Mapping[str, str] = field(default_factory=dict)
    equivalent: str | None = None


def _top() -> dict[str, Any]:
    import statecore.compat.authoring as authoring
    import statecore.compat.context as compat_context

    names = _names("statecore", ("Task", "Parameter", "unmapped", "flatten", "case"))
    names.update(_names("statecore.tasks", ("mapped",)))
    names.update(
        Flow=authoring.Flow,
        task=authoring.task,
        context=compat_context.context,
        __version__=PREFECT_VERSION,
    )
    return names


def _core() -> dict[str, Any]:
    import statecore.compat.authoring as authoring

    names = _names("statecore", ("Task", "Parameter", "Edge"))
    names["Flow"] = authoring.Flow
    return names


def _task_module() -> dict[str, Any]:
    return _names("statecore.tasks", ("Task",))


def _flow_module() -> dict[str, Any]:
    import statecore.compat.authoring as authoring

    return {"Flow": authoring.Flow}


def _edges() -> dict[str, Any]:
    return _names("statecore.tasks", ("EdgeAnnotation", "unmapped", "flatten", "mapped"))


def _debug() -> dict[str, Any]:
    import statecore.compat.authoring as authoring

    return {"raise_on_exception": authoring.raise_on_exception}


def _utilities_tasks() -> dict[str, Any]:
    import statecore.compat.authoring as authoring

    names = _names("statecore.tasks", ("as_task",))
    names["task"] = authoring.task
    return names


def _control_flow() -> dict[str, Any]:
    return _names("statecore.control_flow", ("FilterTask", "case", "ifelse", "merge", "switch"))


def _conditional() -> dict[str, Any]:
    return _names("statecore.control_flow", ("CompareValue", "Merge", "ifelse", "merge", "switch"))


def _schedules() -> dict[str, Any]:
    return _names("statecore.schedules", ("Schedule", "IntervalSchedule", "CronSchedule"))


def _secrets_tasks() -> dict[str, Any]:
    return _names("statecore.compat.secrets", ("EnvVarSecret", "PrefectSecret", "SecretBase"))


def _client() -> dict[str, Any]:
    return _names("statecore.compat.secrets", ("Secret",))


def _utilities_context() -> dict[str, Any]:
    import statecore.compat.context as compat_context

    return {"Context": compat_context.PrefectContext, "context": compat_context.context}


def _notifications() -> dict[str, Any]:
    # engineer B's package; imported only when a flow asks for Prefect 1's notifiers
    try:
        mod = importlib.import_module("statecore.notifications")
    except ImportError as exc:
        from statecore.compat.errors import OutOfScopeImport

        raise OutOfScopeImport(
            "prefect.utilities.notifications maps to statecore.notifications, which "
            f"cannot be imported here: {exc}",
            name="prefect.utilities.notifications",
        ) from exc
    names: list[str] = list(getattr(mod, "__all__", ()))
    return {name: getattr(mod, name) for name in names}


def _exceptions() -> dict[str, Any]:
    names = _names("statecore.signals", {"PrefectSignal": "Signal"})
    names.update(_names("statecore.signals", ("TaskTimeoutSignal",)))
    names.update(_names("statecore.errors", {"PrefectException": "StatecoreError"}))
    return names


def _signals() -> dict[str, Any]:
    names = _names(
        "statecore.signals",
        (
            "ENDRUN",
            "FAIL",
            "LOOP",
            "PAUSE",
            "RETRY",
            "SKIP",
            "SUCCESS",
            "TRIGGERFAIL",
            "VALIDATIONFAIL",
        ),
    )
    names.update(_names("statecore.signals", {"PrefectStateSignal": "StateSignal"}))
    ours = importlib.import_module("statecore.signals")
    if hasattr(ours, "signal_from_state"):
        names["signal_from_state"] = ours.signal_from_state
    return names


def _state() -> dict[str, Any]:
    from statecore import states

    return {name: getattr(states, name) for name in states.__all__ if name[:1].isupper()}


def _engine() -> dict[str, Any]:
    return {}


def _nothing() -> dict[str, Any]:
    return {}


_CLOUD_STATE = (
    "is a Prefect Cloud/Server state and is out of scope: statecore's states are those of "
    "statecore.states (the run's lease stands for Submitted/Queued; `statecore cancel` "
    "ends a run Cancelled)"
)


def _result_names() -> dict[str, str]:
    names = (
        "Result",
        "NoResult",
        "NoResultType",
        "ConstantResult",
        "LocalResult",
        "PrefectResult",
        "SecretResult",
        "S3Result",
        "GCSResult",
        "AzureResult",
    )
    return {name: f"{name} {_RESULTS}" for name in names}


MODULES: Mapping[str, ModuleDef] = MappingProxyType(
    {
        "prefect": ModuleDef(
            "Prefect 1's top-level names, served by statecore (statecore.compat).",
            _top,
            submodules=(
                "client",
                "core",
                "engine",
                "exceptions",
                "schedules",
                "tasks",
                "triggers",
                "utilities",
            ),
            out_of_scope={
                "Client": _CLIENT,
                "config": _CONFIG,
                "api": f"prefect.api is out of scope: {_CLOUD}",
                "plugins": f"prefect.plugins is out of scope: {_CLOUD}",
                "models": f"prefect.models is out of scope: {_CLOUD}",
                "resource_manager": "resource_manager is out of scope: open and close the "
                "resource in a task body (or in setup/cleanup tasks with "
                "trigger=triggers.always_run)",
                "tags": "the prefect.tags context manager is out of scope: pass tags=[...] "
                "to @task",
                "apply_map": "apply_map is out of scope: call task.map(...) for each mapped step",
            },
            equivalent="statecore",
        ),
        "prefect.core": ModuleDef(
            "Tasks, flows, edges.", _core, ("edge", "flow", "parameter", "task")
        ),
        "prefect.core.task": ModuleDef(
            "prefect.core.task -> statecore.tasks", _task_module, equivalent="statecore.tasks"
        ),
        "prefect.core.flow": ModuleDef(
            "prefect.core.flow -> statecore.flow", _flow_module, equivalent="statecore.flow"
        ),
        "prefect.core.edge": ModuleDef(
            "prefect.core.edge -> statecore.flow",
            # Prefect 1's module imports Task too, and users import it from there
            lambda: {**_names("statecore.flow", ("Edge",)), **_names("statecore.tasks", ("Task",))},
            equivalent="statecore.flow",
        ),
        "prefect.core.parameter": ModuleDef(
            "prefect.core.parameter -> statecore.tasks",
            lambda: _names("statecore.tasks", ("Parameter",)),
            out_of_scope={
                "DateTimeParameter": "DateTimeParameter is out of scope: use Parameter and "
                "parse the value (pendulum.parse) in the task that reads it",
            },
            equivalent="statecore.tasks",
        ),
        "prefect.triggers": ModuleDef(
            "prefect.triggers -> statecore.triggers",
            lambda: _public("statecore.triggers"),
            equivalent="statecore.triggers",
        ),
        "prefect.exceptions": ModuleDef(
            "prefect.exceptions -> statecore.signals, statecore.errors",
            _exceptions,
            out_of_scope={
                name: f"{name} is a Prefect Cloud/Server error and is out of scope: {_CLOUD}"
                for name in (
                    "ClientError",
                    "ObjectNotFoundError",
                    "AuthorizationError",
                    "FlowStorageError",
                    "VersionLockMismatchSignal",
                )
            },
            equivalent="statecore.errors",
        ),
        "prefect.engine": ModuleDef(
            "prefect.engine: states, signals, cache validators.",
            _engine,
            submodules=("cache_validators", "result", "results", "signals", "state"),
            out_of_scope={
                "FlowRunner": f"FlowRunner is out of scope: call flow.run(); {_RUNNER}",
                "TaskRunner": f"TaskRunner is out of scope: call flow.run(); {_RUNNER}",
                "get_default_executor_class": f"executors are out of scope: {_RUNNER}",
                "get_default_flow_runner_class": f"flow runners are out of scope: {_RUNNER}",
                "get_default_task_runner_class": f"task runners are out of scope: {_RUNNER}",
            },
            equivalent="statecore.runners",
        ),
        "prefect.engine.state": ModuleDef(
            "prefect.engine.state -> statecore.states",
            _state,
            out_of_scope={
                name: f"{name} {_CLOUD_STATE}"
                for name in ("ClientFailed", "Submitted", "Queued", "Cancelling", "_MetaState")
            },
            equivalent="statecore.states",
        ),
        "prefect.engine.signals": ModuleDef(
            "prefect.engine.signals -> statecore.signals", _signals, equivalent="statecore.signals"
        ),
        "prefect.engine.cache_validators": ModuleDef(
            "prefect.engine.cache_validators -> statecore.cache_validators",
            lambda: _public("statecore.cache_validators"),
            equivalent="statecore.cache_validators",
        ),
        "prefect.engine.result": ModuleDef(
            "Prefect 1's Result base classes: out of scope (the store persists results).",
            _nothing,
            out_of_scope=_result_names(),
        ),
        "prefect.engine.results": ModuleDef(
            "Prefect 1's Result classes: out of scope (the store persists results).",
            _nothing,
            out_of_scope=_result_names(),
        ),
        "prefect.tasks": ModuleDef(
            "prefect.tasks: Task, control flow, secrets, core tasks.",
            _task_module,
            submodules=("control_flow", "core", "secrets"),
        ),
        "prefect.tasks.control_flow": ModuleDef(
            "prefect.tasks.control_flow -> statecore.control_flow",
            _control_flow,
            submodules=("case", "conditional", "filter"),
            equivalent="statecore.control_flow",
        ),
        "prefect.tasks.control_flow.conditional": ModuleDef(
            "prefect.tasks.control_flow.conditional -> statecore.control_flow",
            _conditional,
            equivalent="statecore.control_flow",
        ),
        "prefect.tasks.control_flow.case": ModuleDef(
            "prefect.tasks.control_flow.case -> statecore.control_flow",
            lambda: _names("statecore.control_flow", ("case",)),
            equivalent="statecore.control_flow",
        ),
        "prefect.tasks.control_flow.filter": ModuleDef(
            "prefect.tasks.control_flow.filter -> statecore.control_flow",
            lambda: _names("statecore.control_flow", ("FilterTask",)),
            equivalent="statecore.control_flow",
        ),
        "prefect.tasks.core": ModuleDef(
            "prefect.tasks.core: constants, collections, function tasks.",
            _nothing,
            submodules=("collections", "constants", "function"),
            out_of_scope={
                "resource_manager": "resource_manager is out of scope: open and close the "
                "resource in a task body",
            },
        ),
        "prefect.tasks.core.constants": ModuleDef(
            "prefect.tasks.core.constants -> statecore.tasks",
            lambda: _names("statecore.tasks", ("Constant",)),
        ),
        "prefect.tasks.core.collections": ModuleDef(
            "prefect.tasks.core.collections -> statecore.tasks",
            lambda: _names("statecore.tasks", ("List", "Tuple", "Set", "Dict")),
        ),
        "prefect.tasks.core.function": ModuleDef(
            "prefect.tasks.core.function -> statecore.tasks",
            lambda: _names("statecore.tasks", ("FunctionTask",)),
        ),
        "prefect.tasks.secrets": ModuleDef(
            "prefect.tasks.secrets -> statecore.compat.secrets (statecore Secret tasks)",
            _secrets_tasks,
            submodules=("base", "env_var"),
            equivalent="statecore.tasks",
        ),
        "prefect.tasks.secrets.base": ModuleDef(
            "prefect.tasks.secrets.base", _secrets_tasks, equivalent="statecore.tasks"
        ),
        "prefect.tasks.secrets.env_var": ModuleDef(
            "prefect.tasks.secrets.env_var",
            lambda: _names("statecore.compat.secrets", ("EnvVarSecret",)),
            equivalent="statecore.tasks",
        ),
        "prefect.client": ModuleDef(
            "prefect.client: Secret (Client is out of scope).",
            _client,
            submodules=("secrets",),
            out_of_scope={"Client": _CLIENT},
        ),
        "prefect.client.secrets": ModuleDef("prefect.client.secrets", _client),
        "prefect.schedules": ModuleDef(
            "prefect.schedules -> statecore.schedules",
            _schedules,
            submodules=("adjustments", "clocks", "filters", "schedules"),
            out_of_scope={
                "RRuleSchedule": "RRuleSchedule is out of scope: use CronSchedule, or "
                "Schedule(clocks=[...]) with filters",
            },
            equivalent="statecore.schedules",
        ),
        "prefect.schedules.schedules": ModuleDef(
            "prefect.schedules.schedules -> statecore.schedules.schedules",
            lambda: _names(
                "statecore.schedules.schedules", ("Schedule", "IntervalSchedule", "CronSchedule")
            ),
            out_of_scope={
                "RRuleSchedule": "RRuleSchedule is out of scope: use CronSchedule, or "
                "Schedule(clocks=[...]) with filters",
            },
            equivalent="statecore.schedules.schedules",
        ),
        "prefect.schedules.clocks": ModuleDef(
            "prefect.schedules.clocks -> statecore.schedules.clocks",
            lambda: _public("statecore.schedules.clocks"),
            equivalent="statecore.schedules.clocks",
        ),
        "prefect.schedules.filters": ModuleDef(
            "prefect.schedules.filters -> statecore.schedules.filters",
            lambda: _public("statecore.schedules.filters"),
            equivalent="statecore.schedules.filters",
        ),
        "prefect.schedules.adjustments": ModuleDef(
            "prefect.schedules.adjustments -> statecore.schedules.adjustments",
            lambda: _public("statecore.schedules.adjustments"),
            equivalent="statecore.schedules.adjustments",
        ),
        "prefect.utilities": ModuleDef(
            "prefect.utilities: edges, tasks, context, debug, notifications.",
            _nothing,
            submodules=("context", "debug", "edges", "notifications", "tasks"),
        ),
        "prefect.utilities.edges": ModuleDef(
            "prefect.utilities.edges -> statecore.tasks",
            _edges,
            equivalent="statecore.tasks",
        ),
        "prefect.utilities.debug": ModuleDef(
            "prefect.utilities.debug: raise_on_exception (flow.run raises a task's error "
            "once the run has ended and is logged whole).",
            _debug,
        ),
        "prefect.utilities.tasks": ModuleDef(
            "prefect.utilities.tasks -> statecore.tasks",
            _utilities_tasks,
            out_of_scope={
                "apply_map": "apply_map is out of scope: call task.map(...) for each step",
                "tags": "the tags context manager is out of scope: pass tags=[...] to @task",
                "pause_task": "pause_task is out of scope: raise signals.PAUSE(...) in the "
                "body, or give the task trigger=triggers.manual_only",
                "defaults_from_attrs": "defaults_from_attrs is out of scope: read self.attr "
                "in run()",
            },
            equivalent="statecore.tasks",
        ),
        "prefect.utilities.context": ModuleDef(
            "prefect.utilities.context -> statecore.compat.context",
            _utilities_context,
            equivalent="statecore.context",
        ),
        "prefect.utilities.notifications": ModuleDef(
            "prefect.utilities.notifications -> statecore.notifications",
            _notifications,
            submodules=("notifications",),
            out_of_scope={
                "jira_notifier": "jira_notifier is out of scope: use webhook_notifier",
                "snowflake_logger": "snowflake_logger is out of scope",
            },
            equivalent="statecore.notifications",
        ),
        "prefect.utilities.notifications.notifications": ModuleDef(
            "prefect.utilities.notifications.notifications -> statecore.notifications",
            _notifications,
            equivalent="statecore.notifications",
        ),
    }
)

#: Prefect 1 packages with no statecore counterpart -> what to use instead
OUT_OF_SCOPE_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "prefect.agent": f"Prefect agents are out of scope: {_CLOUD}",
        "prefect.backend": f"prefect.backend (Cloud/Server) is out of scope: {_CLOUD}",
        "prefect.cli": f"Prefect's CLI is out of scope: use `statecore` ({_CLOUD})",
        "prefect.client.client": _CLIENT,
        "prefect.configuration": _CONFIG,
        "prefect.storage": "flow storage is out of scope: the flow file is the deployment; "
        + _CLOUD,
        "prefect.environments": f"environments are out of scope: {_CLOUD}",
        "prefect.run_configs": f"run configs are out of scope: {_CLOUD}",
        "prefect.executors": f"executors are out of scope: {_RUNNER}",
        "prefect.engine.executors": f"executors are out of scope: {_RUNNER}",
        "prefect.engine.cloud": f"Cloud runners are out of scope: {_CLOUD}",
        "prefect.engine.flow_runner": f"FlowRunner is out of scope: call flow.run(); {_RUNNER}",
        "prefect.engine.task_runner": f"TaskRunner is out of scope: call flow.run(); {_RUNNER}",
        "prefect.engine.serializers": f"serializers are out of scope: {_RESULTS}",
        "prefect.engine.result_handlers": f"result handlers are out of scope: {_RESULTS}",
        "prefect.serialization": "Prefect's serialization schemas are out of scope: each run "
        "records the flow's graph (`statecore export RUN_ID`)",
        "prefect.artifacts": "artifacts are out of scope: log what you want to keep with "
        "prefect.context.logger (`statecore logs RUN_ID`)",
        "prefect.tasks.core.resource_manager": "resource_manager is out of scope: open and "
        "close the resource in a task body",
        "prefect.utilities.logging": "prefect.utilities.logging is out of scope: inside a task "
        "use prefect.context.logger (its records are appended to the run's log)",
    }
)

_TASK_LIBRARY = (
    "Prefect's task library ({name}) is out of scope: call the service from your own @task "
    "(read credentials with PrefectSecret or prefect.client.Secret)"
)


def out_of_scope_module(fullname: str) -> str | None:
    """What to use instead of Prefect 1 module ``fullname``, when it is out of scope."""
    parts = fullname.split(".")
    for i in range(len(parts), 1, -1):
        message = OUT_OF_SCOPE_MODULES.get(".".join(parts[:i]))
        if message is not None:
            return message
    if len(parts) >= 3 and parts[:2] == ["prefect", "tasks"]:
        return _TASK_LIBRARY.format(name=".".join(parts[:3]))
    return None

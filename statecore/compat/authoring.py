"""``prefect.Flow`` and ``prefect.task``: statecore's, with Prefect 1's extra arguments.

``prefect.Flow`` is a :class:`statecore.Flow` subclass that takes Prefect 1's
constructor in its order (``name, schedule, executor, run_config, storage, ...``) and
``flow.run(context=...)``; what belongs to Prefect Cloud or Server
(``register``, ``deploy``, ``run_agent``, storage, run configs, executors, result
classes, ``visualize``, ``serialize``) raises :class:`~statecore.compat.errors.OutOfScope`
saying what to use instead. ``prefect.task`` is ``statecore.task`` refusing, with the same
kind of message, the task options statecore replaces (``result``, ``target``, ...). Tasks
made either way are plain statecore tasks: ``prefect.Task`` is ``statecore.Task``.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from statecore import flow as _flow
from statecore import tasks as _tasks
from statecore.compat.context import context as _prefect_context
from statecore.compat.errors import OutOfScope, OutOfScopeAttribute
from statecore.decide import with_result
from statecore.states import Pending, State

__all__ = ["FLOW_OUT_OF_SCOPE", "TASK_OUT_OF_SCOPE", "Flow", "raise_on_exception", "task"]

_CLOUD = (
    "statecore has no server to register with: the flow file is the deployment. Run it "
    "with `statecore run FILE.py:FLOW` (on its schedule: `statecore run FILE.py:FLOW "
    "--on-schedule`, or cron), watch runs with `statecore ui`"
)
_RUNNER = (
    "statecore runs bodies with a runner: flow.run(runner=statecore.runners.LocalRunner("
    "max_workers=N)) or runner=statecore.runners.DaskRunner()"
)
_RESULTS = (
    "statecore's store (SQLite by default, Redis) persists every result; Result classes "
    "and targets are out of scope: drop the argument (checkpoint=False keeps a result out "
    "of the store; cache_for/cache_key reuse one)"
)

#: Flow attributes that belong to Prefect Cloud/Server, and what to use instead
FLOW_OUT_OF_SCOPE: Mapping[str, str] = {
    "register": f"Flow.register is out of scope: {_CLOUD}",
    "deploy": f"Flow.deploy is out of scope: {_CLOUD}",
    "run_agent": f"Flow.run_agent is out of scope: there are no agents; {_CLOUD}",
    "serialize": "Flow.serialize is out of scope: statecore records the graph in each "
    "run's first event (`statecore export RUN_ID`)",
    "serialized_hash": "Flow.serialized_hash is out of scope: each run records the "
    "flow's graph; a changed graph is reported on resume",
    "save": f"Flow.save is out of scope (flow storage): {_CLOUD}",
    "load": f"Flow.load is out of scope (flow storage): {_CLOUD}",
    "visualize": "Flow.visualize is out of scope: use `statecore graph FILE.py:FLOW`",
    "diagnostics": "Flow.diagnostics is out of scope: `statecore show RUN_ID` and "
    "`statecore verify RUN_ID` report on a run",
    "storage": f"flow storage is out of scope: {_CLOUD}",
    "run_config": f"run configs are out of scope: {_CLOUD}",
    "executor": f"executors are out of scope: {_RUNNER}",
    "result": f"Flow(result=...) is out of scope: {_RESULTS}",
    "terminal_state_handler": "terminal_state_handler is out of scope: use a flow "
    "state handler (Flow(state_handlers=[...])), which sees the final state",
}

#: task options statecore replaces, and what to use instead
TASK_OUT_OF_SCOPE: Mapping[str, str] = {
    "result": f"the task option result= is out of scope: {_RESULTS}",
    "target": f"the task option target= is out of scope: {_RESULTS}",
    "task_run_name": "the task option task_run_name= is out of scope: a mapped child is "
    "shown as name[i]; log what identifies it with prefect.context.logger",
    "executor": f"executors are out of scope: {_RUNNER}",
}


def _check_task_options(options: Mapping[str, Any]) -> None:
    for key in options:
        if key in TASK_OUT_OF_SCOPE:
            raise OutOfScope(TASK_OUT_OF_SCOPE[key])


def task(fn: Callable[..., Any] | None = None, /, **task_init_kwargs: Any) -> Any:
    """``prefect.task``: ``@task`` or ``@task(max_retries=2, ...)``, as statecore's.

    Raises:
        OutOfScope: an option statecore replaces (``result``, ``target``, ...).
    """
    _check_task_options(task_init_kwargs)
    if fn is None:
        return _tasks.task(**task_init_kwargs)
    return _tasks.task(fn, **task_init_kwargs)


_raising: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "prefect1_raise_on_exception", default=False
)


@contextlib.contextmanager
def raise_on_exception() -> Iterator[None]:
    """``prefect.utilities.debug.raise_on_exception``: inside the block, ``flow.run``
    raises the first failed task body's exception once the run has ended
    (``Flow.run(raise_on_exception=True)``); Prefect 1 raised it as the body failed."""
    token = _raising.set(True)
    try:
        yield
    finally:
        _raising.reset(token)


class Flow(_flow.Flow):
    """``prefect.Flow``: a statecore flow built with Prefect 1's constructor.

    Raises:
        OutOfScope: ``executor``, ``run_config``, ``storage``, ``result`` or
            ``terminal_state_handler`` given.
    """

    def __init__(
        self,
        name: str,
        schedule: Any = None,
        executor: Any = None,
        run_config: Any = None,
        storage: Any = None,
        tasks: Iterable[_tasks.Task] | None = None,
        edges: Iterable[_flow.Edge] | None = None,
        reference_tasks: Iterable[_tasks.Task] | None = None,
        state_handlers: Iterable[Callable[[Any, State, State], State | None]] | None = None,
        on_failure: Callable[[Any, State], None] | None = None,
        validate: bool | None = None,
        result: Any = None,
        terminal_state_handler: Any = None,
    ) -> None:
        given = {
            "executor": executor,
            "run_config": run_config,
            "storage": storage,
            "result": result,
            "terminal_state_handler": terminal_state_handler,
        }
        for key, value in given.items():
            if value is not None:
                raise OutOfScope(FLOW_OUT_OF_SCOPE[key])
        super().__init__(
            name,
            tasks=tasks,
            edges=edges,
            reference_tasks=reference_tasks,
            state_handlers=state_handlers,
            on_failure=on_failure,
            schedule=schedule,
        )

    def run(
        self,
        parameters: Mapping[str, Any] | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        return_tasks: Iterable[Any] | None = None,
        executor: Any = None,
        runner_cls: Any = None,
        state: State | None = None,
        **kwargs: Any,
    ) -> State:
        """``flow.run`` with Prefect 1's keywords: ``context`` adds values to
        ``prefect.context`` for the run; ``return_tasks`` is refused with Prefect 1.4.1's
        ValueError (the returned state's ``result`` holds every task); ``state`` is the
        flow run's initial state, as Prefect 1's FlowRunner took it: a finished one is
        returned at once, every task ``Pending("Task not run.")`` and no run recorded,
        and a pending or running one (a ``Scheduled`` one too, whatever its start time)
        starts the run as usual.
        Everything else is statecore's ``Flow.run`` (``store=``, ``run_id=``,
        ``secrets=``, ``runner=``, ...).

        Raises:
            OutOfScope: ``executor`` or ``runner_cls`` given.
            ValueError: ``return_tasks`` given (as Prefect 1.4.1).
        """
        if return_tasks is not None:
            raise ValueError(
                "The `return_tasks` keyword cannot be provided to `flow.run()`; all task "
                "states are always returned. If you want to receive a subset of task "
                "states, use a FlowRunner directly."
            )
        if executor is not None:
            raise OutOfScope(FLOW_OUT_OF_SCOPE["executor"])
        if runner_cls is not None:
            raise OutOfScope(f"flow.run(runner_cls=...) is out of scope: {_RUNNER}")
        if state is not None and state.is_finished():
            results = state.result if isinstance(state.result, dict) else {}
            not_run = {t: Pending("Task not run.") for t in self.tasks if t not in results}
            return with_result(state, {**results, **not_run})
        if _raising.get():
            kwargs.setdefault("raise_on_exception", True)
        with _prefect_context(dict(context or {})):
            return super().run(parameters, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in FLOW_OUT_OF_SCOPE:
            raise OutOfScopeAttribute(FLOW_OUT_OF_SCOPE[name])
        known = [n for n in dir(_flow.Flow) if not n.startswith("_")]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise OutOfScopeAttribute(
            f"'Flow' object has no attribute {name!r} in statecore's Prefect 1 layer{hint}"
        )

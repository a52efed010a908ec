"""Control flow as in Prefect 1: ``case``, ``merge``, ``ifelse``, ``switch``, ``FilterTask``.

Branches are ordinary tasks gated by a ``CompareValue`` task that raises ``SKIP`` when the
condition does not match; skips then propagate downstream, and ``merge`` (trigger
``not_all_skipped``) picks the first branch result that is not None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from statecore import signals, triggers
from statecore.building import case_stack as _case_stack
from statecore.building import current_flow
from statecore.context import context
from statecore.errors import FlowDefinitionError
from statecore.flow import Flow
from statecore.tasks import Task, as_task, task

__all__ = ["CompareValue", "FilterTask", "Merge", "case", "ifelse", "merge", "switch"]


class CompareValue(Task):
    """Raises ``SKIP`` unless its input equals ``value``."""

    def __init__(self, value: Any, name: str | None = None, **kwargs: Any) -> None:
        self.value = value
        super().__init__(name=name or f'CompareValue: "{value}"', **kwargs)

    def run(self, value: Any) -> None:  # type: ignore[override]
        if value != self.value:
            raise signals.SKIP(f'Provided value "{value}" did not match "{self.value}"')


class Merge(Task):
    """Returns the first input that is not None (branches are ``task1``, ``task2``, ...)."""

    def __init__(self, **kwargs: Any) -> None:
        # a merge that skipped whenever a branch skipped would always skip
        if kwargs.setdefault("skip_on_upstream_skip", False):
            raise ValueError("Merge tasks must have `skip_on_upstream_skip=False`.")
        kwargs.setdefault("trigger", triggers.not_all_skipped)
        super().__init__(**kwargs)

    def run(self, **task_results: Any) -> Any:
        return next((v for _, v in sorted(task_results.items()) if v is not None), None)


class FilterTask(Task):
    """Filters a list of results; by default drops None and exceptions (not signals).

    Runs with trigger ``all_finished`` and ``skip_on_upstream_skip=False`` so it can
    collect the results of a mapped task whose children partly failed or skipped.

    Args:
        filter_func: keep a result when this returns True.
        log_func: called with the filtered list; what it returns is logged at INFO (to
            the run's log inside a run, else to the logger ``statecore.<task name>``).
    """

    def __init__(
        self,
        filter_func: Callable[[Any], bool] | None = None,
        log_func: Callable[[list[Any]], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("skip_on_upstream_skip", False)
        kwargs.setdefault("trigger", triggers.all_finished)
        self.filter_func = filter_func or _keep_real_results
        self.log_func = log_func
        super().__init__(**kwargs)

    def run(self, task_results: list[Any]) -> list[Any]:  # type: ignore[override]
        kept = [r for r in task_results if self.filter_func(r)]
        if self.log_func is not None:
            logger = context.get("logger") or logging.getLogger(f"statecore.{self.name}")
            logger.info(self.log_func(kept))
        return kept


def _keep_real_results(value: Any) -> bool:
    # exactly Prefect 1's default: signals (a skipped child's SKIP) are kept
    return not isinstance(value, type(None) | Exception)


class case:
    """Run the tasks created in this block only when ``task``'s result equals ``value``.

    Only the block's first tasks (those with no upstream inside the block) are gated;
    the rest skip through ordinary skip propagation. The block works inside ``with
    Flow(...)`` and imperatively: every task added to a flow while it is open
    (``flow.add_task(t)``, ``t.bind(..., flow=flow)``; ``Flow.add_task`` calls
    :meth:`add_task`) is gated, and all of them must go to the same flow.

    Raises:
        TypeError: if ``value`` is a task (compare with a constant).
    """

    def __init__(self, task: Any, value: Any) -> None:
        if isinstance(value, Task):
            raise TypeError("`value` cannot be a task")
        self.task = task
        self.value = value
        self.tasks: list[Task] = []
        self.flow: Flow | None = None
        self._token: Any = None

    def add_task(self, task: Task, flow: Flow) -> None:
        """Gate ``task``, just added to ``flow`` inside this block (Prefect 1's
        ``case.add_task``: every task of a block belongs to one flow).

        Raises:
            ValueError: if the block's tasks were added to different flows.
        """
        if self.flow is None:
            self.flow = flow
        elif self.flow is not flow:
            raise ValueError("Multiple flows cannot be used with the same case statement")
        if task not in self.tasks:
            self.tasks.append(task)

    def __enter__(self) -> case:
        # None for the imperative API: the first task added names the flow
        self.flow = current_flow()
        self._token = _case_stack.set((*_case_stack.get(), self))
        return self

    def __exit__(self, *exc: object) -> None:
        _case_stack.reset(self._token)
        if not self.tasks or self.flow is None:
            return
        cond = CompareValue(self.value, name=f"case({self.value})").bind(
            value=self.task, flow=self.flow
        )
        members = set(self.tasks)
        for child in self.tasks:
            if not members.intersection(self.flow.upstream_tasks(child)):
                child.set_upstream(cond, flow=self.flow)


def switch(condition: Any, cases: Mapping[Any, Any], mapped: bool = False) -> None:
    """Run ``cases[v]`` for the value ``v`` that ``condition`` returns; skip the others."""
    flow = current_flow()
    if flow is None:
        raise FlowDefinitionError("switch(...) must be used inside a `with Flow(...)` block")
    for value, branch in cases.items():
        branch = as_task(branch, flow)
        match = CompareValue(value).bind(value=condition, mapped=mapped, flow=flow)
        flow.set_dependencies(branch, upstream_tasks=[match], mapped=mapped)


@task
def _as_bool(x: Any) -> bool:
    return bool(x)


def ifelse(condition: Any, true_task: Any, false_task: Any, mapped: bool = False) -> None:
    """Run ``true_task`` when ``condition`` is truthy, else ``false_task``."""
    branches = {c: t for c, t in ((True, true_task), (False, false_task)) if t is not None}
    if branches:
        flag = _as_bool.copy(name="as_bool")(condition, mapped=mapped)
        switch(flag, branches, mapped=mapped)


def merge(*tasks: Any, flow: Flow | None = None, mapped: bool = False, **kwargs: Any) -> Task:
    """A task returning the first non-None result among ``tasks`` (typically branches).

    ``kwargs`` go to the :class:`Merge` task (``name=``, ``checkpoint=``, ...).
    """
    return Merge(**kwargs).bind(
        **{f"task{i}": t for i, t in enumerate(tasks, start=1)}, flow=flow, mapped=mapped
    )

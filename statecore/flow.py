"""Flows: graphs of tasks built with ``with Flow(...)``, as in Prefect Core 1.x."""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from statecore.building import case_stack as _case_stack
from statecore.building import current_flow
from statecore.building import current_flow_var as _current_flow
from statecore.errors import FlowDefinitionError
from statecore.states import State
from statecore.tasks import (
    Constant,
    EdgeAnnotation,
    Parameter,
    Task,
    as_task,
    contains_task,
    edge_options,
)

if TYPE_CHECKING:
    from statecore.backends.base import Store
    from statecore.schedules import Schedule

__all__ = ["Edge", "Flow", "current_flow"]


@dataclass(frozen=True, eq=True)
class Edge:
    """A dependency: ``downstream_task`` runs after ``upstream_task``.

    Attributes:
        upstream_task: the task that runs first.
        downstream_task: the task that runs after.
        key: the argument name the upstream result is passed as (None: state only).
        mapped: the downstream task maps over the upstream result.
        flattened: the upstream result (a list of lists) is flattened first.
    """

    upstream_task: Task
    downstream_task: Task
    key: str | None = None
    mapped: bool = False
    flattened: bool = False
    # hashed once: an edge keys the upstream states decide gathers for every task run
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = (self.upstream_task, self.downstream_task, self.key, self.mapped, self.flattened)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    # a copy or an unpickled edge has new tasks (hashed by identity): hash it anew
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self.__post_init__()

    def __repr__(self) -> str:
        arrow = f"({self.key})" if self.key else ""
        return f"<Edge{arrow}: {self.upstream_task.name} to {self.downstream_task.name}>"


class Flow:
    """A graph of tasks.

    Args:
        name: the flow's name (recorded in every run).
        tasks: tasks to add up front.
        edges: edges to add up front.
        reference_tasks: the tasks whose states decide the flow's state (default: the
            terminal tasks).
        state_handlers: callables ``(flow, old_state, new_state) -> State | None``.
        on_failure: callable ``(flow, state)`` called when the flow fails.
        schedule: a :class:`statecore.schedules.Schedule`; ``flow.run()`` then runs the
            flow at each of its start times (README, "Schedules").
    """

    def __init__(
        self,
        name: str,
        tasks: Iterable[Task] | None = None,
        edges: Iterable[Edge] | None = None,
        reference_tasks: Iterable[Task] | None = None,
        state_handlers: Iterable[Callable[[Flow, State, State], State | None]] | None = None,
        on_failure: Callable[[Flow, State], None] | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise FlowDefinitionError("a flow needs a non-empty string name")
        self.name = name
        self._tasks: dict[Task, None] = {}
        self._edges: dict[Edge, None] = {}
        self._down: dict[Task, list[Task]] = {}
        self._keyed: set[tuple[Task, str]] = set()
        self.constants: dict[Task, dict[str, Any]] = {}
        self.slugs: dict[Task, str] = {}
        self._taken_slugs: set[str] = set()
        self._slug_counters: dict[str, int] = {}
        self._reference_tasks: list[Task] = []
        self.state_handlers = list(state_handlers or ())
        self.on_failure = on_failure
        #: the flow's schedule, used by ``flow.run()`` unless ``run_on_schedule=False``
        self.schedule = schedule
        self._token: contextvars.Token[Flow | None] | None = None
        #: bumped by every change to the graph, so a compiled graph can be reused
        self.version = 0
        for t in tasks or ():
            self.add_task(t)
        for e in edges or ():
            self.add_edge(e.upstream_task, e.downstream_task, e.key, e.mapped, e.flattened)
        if reference_tasks:
            self.set_reference_tasks(reference_tasks)

    def __repr__(self) -> str:
        return f"<Flow: name={self.name!r}, {len(self._tasks)} tasks>"

    def __enter__(self) -> Flow:
        self._token = _current_flow.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current_flow.reset(self._token)
            self._token = None

    # -- the graph ----------------------------------------------------------------------

    @property
    def tasks(self) -> set[Task]:
        """Every task of the flow (a set, as in Prefect 1)."""
        return set(self._tasks)

    @property
    def edges(self) -> set[Edge]:
        """Every edge of the flow."""
        return set(self._edges)

    def ordered_tasks(self) -> list[Task]:
        """Tasks in the order they were added."""
        return list(self._tasks)

    def ordered_edges(self) -> list[Edge]:
        """Edges in the order they were added."""
        return list(self._edges)

    def add_task(self, task: Task) -> Task:
        """Add ``task`` (once) and give it its key."""
        if not isinstance(task, Task):
            raise FlowDefinitionError(f"flows hold tasks, got {task!r}")
        if task in self._tasks:
            return task
        if isinstance(task, Parameter):
            for other in self._tasks:
                if isinstance(other, Parameter) and other.name == task.name:
                    raise FlowDefinitionError(
                        f"flow {self.name!r} already has a parameter named {task.name!r}"
                    )
        self._tasks[task] = None
        self.version += 1
        self.constants.setdefault(task, {})
        slug = self.slugs[task] = self._make_slug(task)
        self._taken_slugs.add(slug)
        task._key = slug
        blocks = _case_stack.get()
        # parameters and constants stay root tasks: a case block first using them does not
        # make them wait on its condition (as in Prefect 1)
        if blocks and not isinstance(task, Parameter | Constant):
            blocks[-1].add_task(task, self)
        return task

    def _make_slug(self, task: Task) -> str:
        taken = self._taken_slugs
        if task.slug is not None:
            if task.slug in taken:
                raise FlowDefinitionError(
                    f"flow {self.name!r} already has a task with key {task.slug!r}"
                )
            return task.slug
        prefix = "-".join([task.name, *sorted(task.tags)])
        while True:
            n = self._slug_counters.get(prefix, 0) + 1
            self._slug_counters[prefix] = n
            slug = f"{prefix}-{n}"
            if slug not in taken:
                return slug

    def add_edge(
        self,
        upstream_task: Any,
        downstream_task: Any,
        key: str | None = None,
        mapped: bool = False,
        flattened: bool = False,
        validate: bool = True,
    ) -> Edge:
        """Add an edge; constants passed unmapped become the task's constants."""
        if isinstance(downstream_task, Parameter):
            raise FlowDefinitionError(
                f"parameter {downstream_task.name!r} must be a root task: it cannot have "
                "upstream dependencies"
            )
        downstream = as_task(downstream_task, self)
        if not contains_task(upstream_task) and key is not None and not mapped and not flattened:
            self.add_task(downstream)
            self.constants[downstream][key] = upstream_task
            self.version += 1
            return Edge(Constant(upstream_task), downstream, key, mapped, flattened)
        if not isinstance(upstream_task, Task) and mapped and not contains_task(upstream_task):
            _check_mappable(downstream, key, upstream_task)
            if isinstance(upstream_task, Sequence) and not isinstance(
                upstream_task, list | tuple | str | bytes
            ):
                # a mapped constant is only ever indexed: as a list, a range or another
                # sequence type is stored like any list (``f.map(range(4))``, as Prefect 1)
                upstream_task = list(upstream_task)
        upstream = as_task(upstream_task, self)
        if key is not None and (downstream, key) in self._keyed:
            raise FlowDefinitionError(f"task {downstream.name!r} already has an input {key!r}")
        self.add_task(upstream)
        self.add_task(downstream)
        edge = Edge(upstream, downstream, key, mapped, flattened)
        if self._reaches(downstream, upstream):
            raise FlowDefinitionError(
                f"cycle found: {upstream.name!r} -> {downstream.name!r} would make flow "
                f"{self.name!r} cyclic; flows must be acyclic"
            )
        self._edges[edge] = None
        self.version += 1
        self._down.setdefault(upstream, []).append(downstream)
        if key is not None:
            self._keyed.add((downstream, key))
        return edge

    def chain(self, *tasks: Any, validate: bool | None = None) -> list[Edge]:
        """Make each task run after the one before it (``flow.chain(a, b, c)``: a, then
        b, then c), as Prefect 1's ``Flow.chain``; returns the edges added."""
        del validate  # accepted as Prefect 1 takes it; edges are always checked
        return [self.add_edge(up, down) for up, down in itertools.pairwise(tasks)]

    def update(
        self,
        flow: Flow,
        merge_parameters: bool = False,
        validate: bool | None = None,
        merge_reference_tasks: bool = False,
    ) -> None:
        """Add every task, edge and constant input of ``flow`` to this flow (Prefect 1's
        ``Flow.update``).

        Args:
            flow: the flow to take from (left unchanged).
            merge_parameters: a parameter of this flow that ``flow`` also has (by name)
                is replaced by ``flow``'s, so the two share it.
            validate: accepted as Prefect 1 takes it; edges are always checked.
            merge_reference_tasks: this flow's reference tasks become both flows'.
        """
        del validate
        if merge_parameters:
            theirs = {p.name: p for p in flow.parameters()}
            for p in self.parameters():
                if p.name in theirs and theirs[p.name] is not p:
                    self.replace(p, theirs[p.name])
        for t in flow.ordered_tasks():
            self.add_task(t)
        for e in flow.ordered_edges():
            if e not in self._edges:
                self.add_edge(e.upstream_task, e.downstream_task, e.key, e.mapped, e.flattened)
        for t, constants in flow.constants.items():
            self.constants[t].update(constants)
        if merge_reference_tasks:
            self.set_reference_tasks(self.reference_tasks() | flow.reference_tasks())
        self.version += 1

    def replace(self, old: Task, new: Any, validate: bool = True) -> None:
        """Put ``new`` where ``old`` was: its edges, constant inputs and reference role.

        ``new`` may be any value a task accepts as an argument (a collection or a
        constant becomes a task), as in Prefect 1's ``Flow.replace``.

        Raises:
            FlowDefinitionError: ``old`` is not in the flow, or (with ``validate``) the
                graph after the replacement is not valid.
        """
        if old not in self._tasks:
            raise FlowDefinitionError(f"task {old!r} was not found in flow {self.name!r}")
        new = as_task(new, self)
        affected = [e for e in self._edges if old in (e.upstream_task, e.downstream_task)]
        constants = self.constants.pop(old, {})
        del self._tasks[old]
        self._taken_slugs.discard(self.slugs.pop(old))
        for edge in affected:
            del self._edges[edge]
        self._down = {}
        self._keyed = set()
        for edge in self._edges:
            self._down.setdefault(edge.upstream_task, []).append(edge.downstream_task)
            if edge.key is not None:
                self._keyed.add((edge.downstream_task, edge.key))
        self.add_task(new)
        self.constants[new].update(constants)
        for edge in affected:
            self.add_edge(
                new if edge.upstream_task is old else edge.upstream_task,
                new if edge.downstream_task is old else edge.downstream_task,
                edge.key,
                edge.mapped,
                edge.flattened,
                validate=False,
            )
        if old in self._reference_tasks:
            self._reference_tasks = [t for t in self._reference_tasks if t is not old] + [new]
        self.version += 1
        if validate:
            self.validate()

    def _reaches(self, start: Task, goal: Task) -> bool:
        """True when ``goal`` is downstream of ``start`` (or is it)."""
        if start is goal:
            return True
        downstream = self._down
        seen: set[Task] = set()
        stack = [start]
        while stack:
            t = stack.pop()
            for d in downstream.get(t, ()):
                if d is goal:
                    return True
                if d not in seen:
                    seen.add(d)
                    stack.append(d)
        return False

    def set_dependencies(
        self,
        task: Any,
        upstream_tasks: Iterable[Any] | None = None,
        downstream_tasks: Iterable[Any] | None = None,
        keyword_tasks: Mapping[str, Any] | None = None,
        mapped: bool = False,
        validate: bool = True,
    ) -> None:
        """Add ``task`` with its upstream, downstream and keyword (data) dependencies."""
        task = as_task(task, self)
        self.add_task(task)
        for t in upstream_tasks or ():
            value, is_mapped, _ = edge_options(t, mapped)
            self.add_edge(value, task, mapped=is_mapped, validate=validate)
        for t in downstream_tasks or ():
            self.add_edge(task, edge_options(t, False)[0], validate=validate)
        for key, t in (keyword_tasks or {}).items():
            value, is_mapped, flattened = edge_options(t, mapped)
            self.add_edge(
                value, task, key=key, mapped=is_mapped, flattened=flattened, validate=validate
            )

    def upstream_tasks(self, task: Task) -> set[Task]:
        """Tasks with an edge into ``task``."""
        return {e.upstream_task for e in self._edges if e.downstream_task is task}

    def downstream_tasks(self, task: Task) -> set[Task]:
        """Tasks with an edge out of ``task``."""
        return {e.downstream_task for e in self._edges if e.upstream_task is task}

    def edges_to(self, task: Task) -> set[Edge]:
        """Edges into ``task``."""
        return {e for e in self._edges if e.downstream_task is task}

    def edges_from(self, task: Task) -> set[Edge]:
        """Edges out of ``task``."""
        return {e for e in self._edges if e.upstream_task is task}

    def root_tasks(self) -> set[Task]:
        """Tasks with no upstream."""
        has_upstream = {e.downstream_task for e in self._edges}
        return {t for t in self._tasks if t not in has_upstream}

    def terminal_tasks(self) -> set[Task]:
        """Tasks with no downstream."""
        has_downstream = {e.upstream_task for e in self._edges}
        return {t for t in self._tasks if t not in has_downstream}

    def reference_tasks(self) -> set[Task]:
        """The tasks whose states decide the flow's state (default: terminal tasks)."""
        return set(self._reference_tasks) or self.terminal_tasks()

    def set_reference_tasks(self, tasks: Iterable[Task]) -> None:
        """Decide the flow's state from these tasks."""
        tasks = list(tasks)
        for t in tasks:
            if t not in self._tasks:
                raise FlowDefinitionError(f"reference task {t!r} is not in flow {self.name!r}")
        self._reference_tasks = tasks
        self.version += 1

    def parameters(self) -> set[Parameter]:
        """The flow's parameters."""
        return {t for t in self._tasks if isinstance(t, Parameter)}

    def sorted_tasks(self) -> list[Task]:
        """Tasks in a stable topological order (ties broken by order of addition)."""
        order = {t: i for i, t in enumerate(self._tasks)}
        indegree = dict.fromkeys(self._tasks, 0)
        downstream: dict[Task, list[Task]] = {t: [] for t in self._tasks}
        for e in self._edges:
            if e.downstream_task not in downstream[e.upstream_task]:
                downstream[e.upstream_task].append(e.downstream_task)
                indegree[e.downstream_task] += 1
        import heapq

        heap = [(order[t], i) for i, t in enumerate(self._tasks) if indegree[t] == 0]
        tasks = list(self._tasks)
        heapq.heapify(heap)
        out: list[Task] = []
        while heap:
            _, i = heapq.heappop(heap)
            t = tasks[i]
            out.append(t)
            for d in downstream[t]:
                indegree[d] -= 1
                if indegree[d] == 0:
                    heapq.heappush(heap, (order[d], order[d]))
        if len(out) != len(tasks):
            raise FlowDefinitionError(f"flow {self.name!r} has a cycle")
        return out

    def get_tasks(self, name: str | None = None, slug: str | None = None) -> list[Task]:
        """Tasks matching a name and/or key."""
        return [
            t
            for t in self._tasks
            if (name is None or t.name == name) and (slug is None or self.slugs[t] == slug)
        ]

    def validate(self) -> None:
        """Check the flow: acyclic, reference tasks present."""
        self.sorted_tasks()
        for t in self._reference_tasks:
            if t not in self._tasks:
                raise FlowDefinitionError(f"reference task {t!r} is not in the flow")

    def __iter__(self) -> Iterator[Task]:
        return iter(self.sorted_tasks())

    # -- running ------------------------------------------------------------------------

    def run(
        self,
        parameters: Mapping[str, Any] | None = None,
        *,
        store: Store | str | None = None,
        run_id: str | None = None,
        task_states: Mapping[Any, State] | None = None,
        secrets: Mapping[str, Any] | None = None,
        runner: Any = None,
        run_on_schedule: bool | None = None,
        raise_on_exception: bool = False,
        **kwargs: Any,
    ) -> State:
        """Run the flow and return its final state (README: "A flow", "Resume, rerun, cancel").

        Keyword arguments that name a parameter are taken as its value, as in Prefect 1.
        With a ``schedule`` and ``run_on_schedule`` not False, runs the flow at each of
        the schedule's start times until it has none left (forever, for most schedules),
        one durable run per slot, and returns the last run's state (README, "Schedules").
        Imports the runner lazily: the core itself does no I/O.

        With ``raise_on_exception``, for debugging (Prefect 1's ``raise_on_exception``),
        the exception of the first task body that failed (in the flow's order) is raised
        once the run has ended, instead of being returned in its Failed state; the run is
        logged whole either way. Signals (``FAIL``, trigger failures) are states, never
        raised.

        Raises:
            ValueError: bad parameters; on a schedule, a ``run_id`` or ``task_states``
                (slot runs have their own ids), or no start time left.
            RuntimeError: called inside the flow's own ``with Flow(...)`` block.
            Exception: with ``raise_on_exception``, a task body's own exception.
        """
        from statecore.runners.local import run_flow

        if current_flow() is self:
            # the flow is still being built: running it here would run half a graph, and
            # once per pass if the block sits in a loop
            raise RuntimeError(
                f"flow {self.name!r}: don't call `flow.run()` from within a `Flow` context "
                "manager; call it after the `with Flow(...)` block"
            )
        params = dict(parameters or {})
        names = {p.name for p in self.parameters()}
        for key in list(kwargs):
            if key in names:
                params[key] = kwargs.pop(key)
        if kwargs:
            raise TypeError(
                f"Flow.run() got unexpected keyword arguments: {', '.join(sorted(kwargs))}"
            )
        if self.schedule is not None and run_on_schedule is not False:
            if run_id is not None or task_states:
                raise ValueError(
                    "Flow.run on a schedule derives each slot's run id and starts every run "
                    "afresh: pass run_on_schedule=False to use run_id or task_states"
                )
            from statecore.runners.scheduling import run_on_schedule as run_scheduled

            last = run_scheduled(
                self, parameters=params, store=store, runner=runner, secrets=secrets
            )
            if last is None:
                raise ValueError(
                    f"flow {self.name!r}: every slot of its schedule was driven by another "
                    "process; no run was made here"
                )
            state = last
        else:
            state = run_flow(
                self,
                parameters=params,
                store=store,
                run_id=run_id,
                task_states=task_states,
                secrets=secrets,
                runner=runner,
            )
        if raise_on_exception:
            exc = self._first_body_exception(state)
            if exc is not None:
                raise exc
        return state

    def _first_body_exception(self, state: State) -> BaseException | None:
        """The exception of the first task (in flow order, children by index) whose own
        body raised it, from a run's final state."""
        from statecore.signals import Signal

        results = state.result if isinstance(state.result, Mapping) else {}
        for t in self.sorted_tasks():
            task_state = results.get(t)
            if task_state is None:
                continue
            for s in [task_state, *(getattr(task_state, "map_states", None) or ())]:
                raised = s.result
                if (
                    s.is_failed()
                    and isinstance(raised, BaseException)
                    and not isinstance(raised, Signal)
                ):
                    return raised
        return None


def _check_mappable(task: Task, key: str | None, value: Any) -> None:
    # a flattened constant need not be a list of lists: Prefect 1 maps over flatten([1, 2])
    # as over [1, 2] (the run's flatten keeps elements that are not lists as they are)
    if isinstance(value, EdgeAnnotation):
        value = value.value
    if not hasattr(value, "__getitem__") or not hasattr(value, "__len__"):
        raise FlowDefinitionError(
            f"task {task.name!r}: cannot map over argument {key!r} = {value!r}: it is not a "
            "list or other sequence; wrap it in unmapped(...) to pass it whole"
        )

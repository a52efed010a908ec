"""Tasks: the units of work, authored with Prefect Core 1.x's functional API.

``@task`` turns a function into a :class:`Task`; calling a task inside ``with Flow(...)``
adds a copy to the flow and returns it as a handle (nothing runs). ``Task`` subclasses
override ``run(self, **inputs)``.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import operator
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar, overload

from statecore import triggers as _triggers
from statecore.errors import FlowDefinitionError
from statecore.states import State

__all__ = [
    "Constant",
    "FunctionTask",
    "GetItem",
    "Not",
    "Operator",
    "Parameter",
    "Secret",
    "Task",
    "edge_options",
    "flatten",
    "mapped",
    "task",
    "unmapped",
]

StateHandler = Callable[[Any, State, State], State | None]

_RESERVED_ARGS = {"upstream_tasks", "mapped", "task_args", "flow"}
# run() functions already checked (a weak set: functions of deleted tasks may go)
_VALID_RUNS: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def _timedelta_ns(value: datetime.timedelta | float | int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        raise FlowDefinitionError(f"{what} must be a datetime.timedelta or seconds, got {value!r}")
    if seconds < 0:
        raise FlowDefinitionError(f"{what} must not be negative, got {value!r}")
    return int(seconds * 1_000_000_000)


class Task:
    """A unit of work with Prefect 1's options.

    Args:
        name: display name; the class name by default.
        slug: an explicit task key (else ``name-1``, ``name-2``, ... within a flow).
        tags: labels, part of the key as in Prefect 1.
        max_retries: how many times a failed run is retried.
        retry_delay: wait between retries (timedelta or seconds); 0 by default.
        timeout: seconds after which the attempt ends ``TimedOut``.
        trigger: a function of upstream states (see :mod:`statecore.triggers`).
        skip_on_upstream_skip: skip when any upstream skipped (default True).
        cache_for: how long a successful result may be reused (timedelta or seconds).
        cache_validator: ``(state, inputs, parameters) -> bool`` (see
            :mod:`statecore.cache_validators`); ``duration_only`` by default.
        cache_key: share a cache between tasks; else (flow name, task key).
        checkpoint: write the result to the log (default True). False for values that
            must not be stored; replay then shows ``NOT_PERSISTED``.
        state_handlers: callables ``(task, old_state, new_state) -> State | None``.
        on_failure: callable ``(task, state)`` called when the task fails.
        nout: number of outputs, for ``a, b = task(...)``.
        log_stdout: accepted for Prefect compatibility; ignored.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        slug: str | None = None,
        tags: Iterable[str] | None = None,
        max_retries: int | None = None,
        retry_delay: datetime.timedelta | float | None = None,
        timeout: float | datetime.timedelta | None = None,
        trigger: Callable[[Mapping[Any, State]], bool] | None = None,
        skip_on_upstream_skip: bool = True,
        cache_for: datetime.timedelta | float | None = None,
        cache_validator: Callable[..., bool] | None = None,
        cache_key: str | None = None,
        checkpoint: bool | None = None,
        state_handlers: Iterable[StateHandler] | None = None,
        on_failure: Callable[[Any, State], None] | None = None,
        nout: int | None = None,
        log_stdout: bool = False,
    ) -> None:
        self.name = name or type(self).__name__
        self.slug = slug
        self.tags = set(tags or ())
        self.max_retries = int(max_retries or 0)
        if self.max_retries < 0:
            raise FlowDefinitionError(f"task {self.name!r}: max_retries must be >= 0")
        self.retry_delay = retry_delay
        self.retry_delay_ns = _timedelta_ns(retry_delay, f"task {self.name!r}: retry_delay") or 0
        if isinstance(timeout, datetime.timedelta):
            timeout = timeout.total_seconds()
        if timeout is not None and timeout <= 0:
            raise FlowDefinitionError(f"task {self.name!r}: timeout must be positive seconds")
        self.timeout = timeout
        self.trigger = trigger or _triggers.all_successful
        self.skip_on_upstream_skip = skip_on_upstream_skip
        self.cache_for = cache_for
        self.cache_for_ns = _timedelta_ns(cache_for, f"task {self.name!r}: cache_for")
        if cache_validator is None:
            from statecore.cache_validators import duration_only

            cache_validator = duration_only
        self.cache_validator = cache_validator
        self.cache_key = cache_key
        self.checkpoint = True if checkpoint is None else checkpoint
        self.state_handlers = list(state_handlers or ())
        self.on_failure = on_failure
        self.nout = nout
        self.log_stdout = log_stdout
        # the key the task got in the flow it was added to (for lookups without the flow)
        self._key: str | None = None
        self._validate_run_signature()

    def _validate_run_signature(self) -> None:
        run = getattr(self.run, "__func__", self.run)
        if run in _VALID_RUNS:
            return
        params = inspect.signature(self.run).parameters.values()
        for p in params:
            if p.kind is inspect.Parameter.VAR_POSITIONAL and type(self).__name__ not in (
                "List",
                "Tuple",
                "Set",
            ):
                raise FlowDefinitionError(
                    f"task {self.name!r}: run() may not take *{p.name}; use named arguments"
                )
            if p.name in _RESERVED_ARGS:
                raise FlowDefinitionError(
                    f"task {self.name!r}: run() argument {p.name!r} is a reserved name"
                )
        _VALID_RUNS.add(run)

    def __repr__(self) -> str:
        return f"<Task: {self.name}>"

    # Tasks are graph nodes: identity is what matters.
    __hash__ = object.__hash__

    def run(self, **inputs: Any) -> Any:
        """The task's work; override in subclasses.

        A bare ``Task()`` does nothing and succeeds with None, as in Prefect 1, where it
        serves as a join point or a stand-in while a flow is sketched.
        """
        return None

    def code_source(self) -> str:
        """The source used for the per-task code hash (changed code is noted on resume)."""
        try:
            return inspect.getsource(type(self).run)
        except (OSError, TypeError):
            return type(self).__qualname__

    # -- building flows -----------------------------------------------------------------

    def copy(self, **task_args: Any) -> Task:
        """A shallow copy with some options replaced (``name=...``, ``max_retries=...``)."""
        new = copy.copy(self)
        new._key = None
        new.tags = set(self.tags)
        new.state_handlers = list(self.state_handlers)
        if task_args:
            if "retry_delay" in task_args:
                new.retry_delay_ns = (
                    _timedelta_ns(task_args["retry_delay"], f"task {self.name!r}: retry_delay") or 0
                )
            if "cache_for" in task_args:
                new.cache_for_ns = _timedelta_ns(task_args["cache_for"], "cache_for")
            if "tags" in task_args:
                task_args = dict(task_args, tags=set(task_args["tags"]))
            for key, value in task_args.items():
                if not hasattr(new, key):
                    raise FlowDefinitionError(f"task {self.name!r}: unknown task option {key!r}")
                setattr(new, key, value)
        return new

    def __call__(
        self,
        *args: Any,
        mapped: bool = False,
        task_args: dict[str, Any] | None = None,
        upstream_tasks: Iterable[Any] | None = None,
        flow: Any = None,
        **kwargs: Any,
    ) -> Task:
        """Add a copy of this task to the active flow, bound to these arguments."""
        new = self.copy(**(task_args or {}))
        return new.bind(*args, mapped=mapped, upstream_tasks=upstream_tasks, flow=flow, **kwargs)

    def map(
        self,
        *args: Any,
        upstream_tasks: Iterable[Any] | None = None,
        task_args: dict[str, Any] | None = None,
        flow: Any = None,
        **kwargs: Any,
    ) -> Task:
        """Add a mapped copy: one child per element (several iterables: shortest wins)."""
        new = self.copy(**(task_args or {}))
        return new.bind(*args, mapped=True, upstream_tasks=upstream_tasks, flow=flow, **kwargs)

    def bind(
        self,
        *args: Any,
        mapped: bool = False,
        upstream_tasks: Iterable[Any] | None = None,
        flow: Any = None,
        **kwargs: Any,
    ) -> Task:
        """Bind this very task (not a copy) to arguments in the flow."""
        from statecore.building import current_flow

        flow = flow or current_flow()
        if flow is None:
            raise FlowDefinitionError(
                f"task {self.name!r} was called outside a `with Flow(...)` block; "
                f"build flows inside `with Flow(...)`, or call `{self.name}.run(...)` to run "
                "the function directly"
            )
        signature = inspect.signature(self.run)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise FlowDefinitionError(f"task {self.name!r}: {exc}") from None
        callargs = dict(bound.arguments)
        for p in signature.parameters.values():
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                callargs.update(callargs.pop(p.name, {}))
            elif p.kind is inspect.Parameter.VAR_POSITIONAL:
                extra = callargs.pop(p.name, ())
                callargs.update({f"arg_{i}": v for i, v in enumerate(extra, start=1)})
        flow.set_dependencies(
            self, upstream_tasks=upstream_tasks, keyword_tasks=callargs, mapped=mapped
        )
        return self

    def set_upstream(
        self, task: Any, flow: Any = None, key: str | None = None, mapped: bool = False
    ) -> Task:
        """Make ``task`` run before this one (passing its result as ``key`` if given)."""
        from statecore.building import current_flow

        flow = flow or current_flow()
        if flow is None:
            raise FlowDefinitionError(
                f"task {self.name!r}: set_upstream needs a flow (pass flow=...)"
            )
        if key is None:
            flow.set_dependencies(self, upstream_tasks=[task], mapped=mapped)
        else:
            flow.set_dependencies(self, keyword_tasks={key: task}, mapped=mapped)
        return self

    def set_downstream(
        self, task: Any, flow: Any = None, key: str | None = None, mapped: bool = False
    ) -> Task:
        """Make ``task`` run after this one."""
        if not isinstance(task, Task):
            raise FlowDefinitionError(f"set_downstream needs a task, got {task!r}")
        task.set_upstream(self, flow=flow, key=key, mapped=mapped)
        return self

    def __getitem__(self, key: Any) -> Task:
        """A task that indexes this task's result: ``handle[0]``, ``handle["k"]``."""
        name = f"{self.name}[{key.name}]" if isinstance(key, Task) else f"{self.name}[{key!r}]"
        return GetItem(name=name, checkpoint=self.checkpoint).bind(self, key)

    def __iter__(self) -> Iterator[Task]:
        if self.nout is None:
            raise TypeError(
                f"task {self.name!r} is not iterable; give it nout=N to unpack its result"
            )
        return (self[i] for i in range(self.nout))

    # -- operators: each builds a task of the flow, as Prefect 1's did ------------------
    # (``==`` and ``!=`` stay identity, since tasks are graph nodes: use is_equal)

    def __add__(self, other: Any) -> Task:
        return Operator("Add", operator.add).bind(self, other)

    def __sub__(self, other: Any) -> Task:
        return Operator("Sub", operator.sub).bind(self, other)

    def __mul__(self, other: Any) -> Task:
        return Operator("Mul", operator.mul).bind(self, other)

    def __truediv__(self, other: Any) -> Task:
        return Operator("Div", operator.truediv).bind(self, other)

    def __floordiv__(self, other: Any) -> Task:
        return Operator("FloorDiv", operator.floordiv).bind(self, other)

    def __mod__(self, other: Any) -> Task:
        return Operator("Mod", operator.mod).bind(self, other)

    def __pow__(self, other: Any) -> Task:
        return Operator("Pow", operator.pow).bind(self, other)

    def __and__(self, other: Any) -> Task:
        return Operator("And", _and).bind(self, other)

    def __radd__(self, other: Any) -> Task:
        return Operator("Add", operator.add).bind(other, self)

    def __rsub__(self, other: Any) -> Task:
        return Operator("Sub", operator.sub).bind(other, self)

    def __rmul__(self, other: Any) -> Task:
        return Operator("Mul", operator.mul).bind(other, self)

    def __rtruediv__(self, other: Any) -> Task:
        return Operator("Div", operator.truediv).bind(other, self)

    def __rfloordiv__(self, other: Any) -> Task:
        return Operator("FloorDiv", operator.floordiv).bind(other, self)

    def __rmod__(self, other: Any) -> Task:
        return Operator("Mod", operator.mod).bind(other, self)

    def __rpow__(self, other: Any) -> Task:
        return Operator("Pow", operator.pow).bind(other, self)

    def __rand__(self, other: Any) -> Task:
        return Operator("And", _and).bind(other, self)

    def __gt__(self, other: Any) -> Task:
        return Operator("GreaterThan", operator.gt).bind(self, other)

    def __ge__(self, other: Any) -> Task:
        return Operator("GreaterThanOrEqual", operator.ge).bind(self, other)

    def __lt__(self, other: Any) -> Task:
        return Operator("LessThan", operator.lt).bind(self, other)

    def __le__(self, other: Any) -> Task:
        return Operator("LessThanOrEqual", operator.le).bind(self, other)

    def is_equal(self, other: Any) -> Task:
        """A task of ``self == other`` (``==`` itself compares tasks)."""
        return Operator("Equal", operator.eq).bind(self, other)

    def is_not_equal(self, other: Any) -> Task:
        """A task of ``self != other``."""
        return Operator("NotEqual", operator.ne).bind(self, other)

    def or_(self, other: Any) -> Task:
        """A task of ``self or other`` (``|`` makes a dependency, as in Prefect 1)."""
        return Operator("Or", _or).bind(self, other)

    def not_(self) -> Task:
        """A task of ``not self``."""
        return Not().bind(self)

    def __or__(self, other: Any) -> Any:
        """``a | b``: ``b`` runs after ``a``; returns ``b`` so that chains read left to right."""
        from statecore.building import current_flow

        flow = current_flow()
        if flow is None:
            raise FlowDefinitionError(f"task {self.name!r}: `|` needs a `with Flow(...)` block")
        flow.set_dependencies(self, downstream_tasks=[other])
        return other

    def __ror__(self, other: Any) -> Task:
        """``x | task``: ``task`` runs after ``x``."""
        return self.set_upstream(other)


class FunctionTask(Task):
    """A task whose ``run`` is a plain function (made by ``@task``)."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, **kwargs: Any) -> None:
        if not callable(fn):
            raise FlowDefinitionError(f"@task needs a function, got {fn!r}")
        self.run = fn  # type: ignore[method-assign]
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        super().__init__(name=name or getattr(fn, "__name__", "task"), **kwargs)

    def code_source(self) -> str:
        try:
            return inspect.getsource(self.run)
        except (OSError, TypeError):
            return getattr(self.run, "__qualname__", self.name)


F = TypeVar("F", bound=Callable[..., Any])


@overload
def task(fn: Callable[..., Any], /) -> FunctionTask: ...


@overload
def task(
    fn: None = None, /, **task_init_kwargs: Any
) -> Callable[[Callable[..., Any]], FunctionTask]: ...


def task(
    fn: Callable[..., Any] | None = None, /, **task_init_kwargs: Any
) -> FunctionTask | Callable[[Callable[..., Any]], FunctionTask]:
    """Turn a function into a task: ``@task`` or ``@task(max_retries=2, ...)``.

    Example:
        >>> from statecore import task, Flow
        >>> @task
        ... def add(x, y=1):
        ...     return x + y
        >>> with Flow("math") as flow:
        ...     total = add(1, y=2)
        >>> flow.run(store=__import__("statecore").backends.MemoryStore()).result[total].result
        3
    """
    if fn is None:
        return lambda f: FunctionTask(f, **task_init_kwargs)
    return FunctionTask(fn, **task_init_kwargs)


class Parameter(Task):
    """A run-time input of the flow: ``Parameter("channel", default="#eng")``.

    Args:
        name: the parameter's name (and its key: names must be unique in a flow).
        default: value used when the run does not supply one.
        required: a run without this parameter is refused; by default a parameter is
            required when it has no default.
    """

    def __init__(
        self,
        name: str,
        default: Any = None,
        required: bool | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        if required is None:
            required = default is None
        self.default = default
        self.required = required
        super().__init__(name=name, slug=name, tags=tags, checkpoint=True)

    def __repr__(self) -> str:
        return f"<Parameter: {self.name}>"

    def run(self) -> Any:  # type: ignore[override]
        from statecore.context import context

        params = context.get("parameters") or {}
        return params.get(self.name, self.default)

    def __call__(self, *args: Any, **kwargs: Any) -> Task:
        raise FlowDefinitionError(
            f"Parameter {self.name!r} cannot be called; pass it to tasks as an argument"
        )


class Secret(Task):
    """A secret value, never written anywhere (``checkpoint=False``).

    Resolved from ``flow.run(secrets={...})``, then the environment variable
    ``STATECORE_SECRET_<NAME>``, then ``<NAME>``. Missing: the task ends
    ``Failed('Secret "NAME" was not found')``. The value is replaced by
    ``<secret:NAME>`` in everything the run writes.
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        kwargs["checkpoint"] = False
        super().__init__(name=name, **kwargs)

    def run(self) -> Any:  # type: ignore[override]
        from statecore.context import resolve_secret

        return resolve_secret(self.name)


class Constant(Task):
    """A constant value as a task (made for mapped constant arguments)."""

    def __init__(self, value: Any, name: str | None = None) -> None:
        self.value = value
        if name is None:
            name = repr(value)
            if len(name) > 8:
                name = f"Constant[{type(value).__name__}]"
        super().__init__(name=name)

    def run(self) -> Any:  # type: ignore[override]
        return self.value


class GetItem(Task):
    """``handle[key]``: returns ``task_result[key]``."""

    def run(self, task_result: Any, key: Any) -> Any:  # type: ignore[override]
        return task_result[key]


def _and(x: Any, y: Any) -> Any:
    return x and y


def _or(x: Any, y: Any) -> Any:
    return x or y


class Operator(Task):
    """``x <op> y`` of two arguments: the task an operator on tasks builds (``a + 1``).

    Args:
        name: the operation's name (Prefect 1's operator task names: ``Add``, ``Sub``,
            ``GreaterThan``, ...), also the task's name.
        fn: a module-level function of two arguments (worker processes get it by
            reference).
    """

    def __init__(self, name: str, fn: Callable[[Any, Any], Any], **kwargs: Any) -> None:
        self.fn = fn
        super().__init__(name=name, **kwargs)

    def run(self, x: Any, y: Any) -> Any:  # type: ignore[override]
        return self.fn(x, y)

    def code_source(self) -> str:
        return f"{self.name}: {self.fn.__module__}.{self.fn.__qualname__}"


class Not(Task):
    """``not x`` of a task's result (``task.not_()``)."""

    def run(self, x: Any) -> Any:  # type: ignore[override]
        return not x


class _VarArgs(Task):
    def bind(
        self,
        *args: Any,
        mapped: bool = False,
        upstream_tasks: Iterable[Any] | None = None,
        flow: Any = None,
        **kwargs: Any,
    ) -> Task:
        keyword = {f"arg_{i}": a for i, a in enumerate(args, start=1)}
        return Task.bind(
            self, mapped=mapped, upstream_tasks=upstream_tasks, flow=flow, **keyword, **kwargs
        )

    def run(self, **task_results: Any) -> Any:
        return [task_results[k] for k in sorted(task_results, key=lambda k: int(k[4:]))]


class List(_VarArgs):
    """Collects a list of task results into one input."""


class Tuple(_VarArgs):
    """Collects a tuple of task results into one input."""

    def run(self, **task_results: Any) -> Any:
        return tuple(super().run(**task_results))


class Set(_VarArgs):
    """Collects a set of task results into one input."""

    def run(self, **task_results: Any) -> Any:
        return set(super().run(**task_results))


class Dict(Task):
    """Collects a dict whose keys or values are task results into one input."""

    def run(self, keys: Any, values: Any) -> Any:  # type: ignore[override]
        return dict(zip(keys, values, strict=True))


class EdgeAnnotation:
    """Base of ``unmapped``, ``mapped`` and ``flatten``: how an argument joins its task."""

    #: what the annotation sets on its edge; nested annotations combine, the inner one
    #: winning where both set a flag (``unmapped(mapped(xs))`` maps), as in Prefect 1
    annotations: ClassVar[Mapping[str, bool]] = {}

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class unmapped(EdgeAnnotation):
    """Hold an argument constant across a ``.map``: ``f.map(xs, unmapped(y))``."""

    annotations: ClassVar[Mapping[str, bool]] = {"mapped": False}


class mapped(EdgeAnnotation):
    """Map over this argument in a plain call: ``f(x=mapped(xs), y=y)`` is
    ``f.map(x=xs, y=unmapped(y))`` (Prefect 1's ``prefect.utilities.edges.mapped``)."""

    annotations: ClassVar[Mapping[str, bool]] = {"mapped": True}


class flatten(EdgeAnnotation):
    """Map over a list of lists as one flat list: ``f.map(flatten(xs))``."""

    annotations: ClassVar[Mapping[str, bool]] = {"flattened": True}


def edge_options(value: Any, mapped: bool) -> tuple[Any, bool, bool]:
    """``(value, mapped, flattened)`` for an argument, its annotations taken off.

    ``mapped`` is the call's (True for ``.map``); an annotation overrides it.
    """
    flags: dict[str, bool] = {}
    while isinstance(value, EdgeAnnotation):
        flags.update(type(value).annotations)  # outermost first: inner ones win
        value = value.value
    return value, flags.get("mapped", mapped), flags.get("flattened", False)


def contains_task(value: Any) -> bool:
    """True when ``value`` is a task or a collection holding one (at any depth)."""
    if isinstance(value, Task):
        return True
    if isinstance(value, EdgeAnnotation):
        return contains_task(value.value)
    if isinstance(value, list | tuple | set | frozenset):
        return any(contains_task(v) for v in value)
    if isinstance(value, dict):
        return any(contains_task(k) or contains_task(v) for k, v in value.items())
    return False


def as_task(value: Any, flow: Any) -> Task:
    """A task for ``value``: itself, a collection task over its items, or a Constant."""
    if isinstance(value, Task):
        return value
    if isinstance(value, EdgeAnnotation):
        return as_task(value.value, flow)
    if not contains_task(value):
        return Constant(value)
    if isinstance(value, list):
        return List().bind(*value, flow=flow)
    if isinstance(value, tuple):
        return Tuple().bind(*value, flow=flow)
    if isinstance(value, set | frozenset):
        return Set().bind(*value, flow=flow)
    if isinstance(value, dict):
        return Dict().bind(keys=list(value.keys()), values=list(value.values()), flow=flow)
    return Constant(value)

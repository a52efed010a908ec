"""Hypothesis strategies for property-testing triggers and whole flows.

Three strategies, the ones statecore's own property tests use:

* :func:`states` draws :class:`~statecore.states.State` instances of every class, with
  sensible messages and results (``Mapped`` with child states, ``Retrying`` with a start
  time and run count, ``Looped`` with a loop count).
* :func:`upstream_states` draws what a trigger receives: a dict from upstream
  :class:`~statecore.Edge` to :class:`~statecore.states.State`, one entry per edge, with
  distinct upstream tasks, sometimes one state object on two edges from the same
  upstream task, and sometimes ``Mapped`` states with children.
* :func:`flows` draws random valid flows built through the public API, with task
  behaviours that return, raise, signal, retry, loop or fail a few times and then
  succeed. By default only behaviours that finish are drawn, so every drawn flow ends.

Install with ``pip install statecore[testing]``.

Property-testing a custom trigger: whatever the upstream states, it passes or raises one
of the signals a trigger may raise, and it passes exactly when at most one upstream
failed.

    >>> from hypothesis import given, settings
    >>> from statecore import signals
    >>> from statecore.testing.strategies import upstream_states
    >>> def at_most_one_failure(upstream):
    ...     failed = [s for s in upstream.values() if s.is_failed()]
    ...     if len(failed) > 1:
    ...         raise signals.TRIGGERFAIL(f"{len(failed)} upstream tasks failed")
    ...     return True
    >>> @settings(max_examples=25, deadline=None)
    ... @given(upstream_states())
    ... def test_at_most_one_failure(upstream):
    ...     failed = sum(s.is_failed() for s in upstream.values())
    ...     try:
    ...         assert at_most_one_failure(upstream) and failed <= 1
    ...     except signals.TRIGGERFAIL:
    ...         assert failed > 1
    >>> test_at_most_one_failure()

Property-testing whole flows: every drawn flow finishes, and replaying its log gives back
the states the run returned.

    >>> from statecore.backends import MemoryStore
    >>> from statecore.runners import replay
    >>> from statecore.testing.strategies import flows
    >>> @settings(max_examples=10, deadline=None)
    ... @given(flows(max_tasks=5))
    ... def test_flows_finish(drawn):
    ...     store = MemoryStore()
    ...     state = drawn.flow.run(parameters=drawn.parameters, store=store)
    ...     assert state.is_successful() or state.is_failed()
    ...     view = replay(store, state.run_id)
    ...     for key in state.result:
    ...         assert state.result[key].is_finished(), key
    ...         assert view.task_states[key].name == state.result[key].name
    >>> test_flows_finish()

A failing example shrinks to a small flow printed as the code that builds it (see
:class:`DrawnFlow`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "statecore.testing.strategies needs Hypothesis; install it with "
        "`pip install statecore[testing]`"
    ) from exc

from statecore import cache_validators, signals, triggers
from statecore import states as _states
from statecore.context import context
from statecore.control_flow import case, merge
from statecore.flow import Edge, Flow
from statecore.states import State
from statecore.tasks import Parameter, Task, flatten, task, unmapped

__all__ = [
    "Behaviour",
    "BehaviourTask",
    "DrawnFlow",
    "FINISHED_KINDS",
    "TRIGGER_KINDS",
    "behaviours",
    "flows",
    "states",
    "upstream_states",
]

StateKind = type[State] | str

FINISHED_KINDS: tuple[type[State], ...] = (
    _states.Success,
    _states.Cached,
    _states.Mapped,
    _states.Skipped,
    _states.Failed,
    _states.TriggerFailed,
    _states.ValidationFailed,
    _states.TimedOut,
    _states.Cancelled,
)
"""The finished states a task can end in (``Looped`` is finished but not an end)."""

TRIGGER_KINDS: tuple[type[State], ...] = FINISHED_KINDS
"""What a trigger receives from an upstream task: ``decide`` calls a trigger only when
every upstream task has ended."""

_CHILD_KINDS: tuple[type[State], ...] = tuple(k for k in FINISHED_KINDS if k is not _states.Mapped)

# -- states ---------------------------------------------------------------------------------

_MESSAGES: st.SearchStrategy[str | None] = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "Task run succeeded.",
            "Error during execution of task: ValueError('boom')",
            "Retrying Task (after attempt 1 of 2)",
            "Upstream task was skipped",
            "Ready to proceed with mapping.",
            "Task not run.",
        ]
    ),
    st.text(max_size=12),
)

_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.integers(-3, 20),
    st.text(max_size=6),
    st.lists(st.integers(0, 9), max_size=4),
    st.dictionaries(st.sampled_from("abc"), st.integers(0, 9), max_size=2),
)

_ERRORS: st.SearchStrategy[BaseException] = st.one_of(
    st.builds(ValueError, st.sampled_from(["boom", "bad input"])),
    st.builds(RuntimeError, st.just("failed")),
    st.builds(signals.FAIL, st.just("failed on purpose")),
)

_TIMES: st.SearchStrategy[int | None] = st.one_of(st.none(), st.integers(0, 2**62))


def _kind_classes(
    kinds: Iterable[StateKind] | None, default: Sequence[type[State]]
) -> list[type[State]]:
    if kinds is None:
        return list(default)
    out: list[type[State]] = []
    for kind in kinds:
        cls = _states.state_class(kind) if isinstance(kind, str) else kind
        if not (isinstance(cls, type) and issubclass(cls, State)):
            raise TypeError(f"states(kinds=...) takes State classes or names, got {kind!r}")
        out.append(cls)
    if not out:
        raise ValueError("states(kinds=...) needs at least one state class")
    return out


def _result_for(cls: type[State]) -> st.SearchStrategy[Any]:
    if issubclass(cls, _states.Failed):
        return st.one_of(st.none(), _ERRORS)
    if issubclass(cls, _states.Skipped):
        return st.one_of(st.none(), st.builds(signals.SKIP, st.just("skipped on purpose")))
    return _VALUES


@st.composite
def _state_of(
    draw: st.DrawFn, cls: type[State], child_kinds: Sequence[type[State]], depth: int
) -> State:
    message = draw(_MESSAGES)
    if cls is _states.Mapped:
        if depth > 0:
            # A Mapped child would be a mapped task inside a mapped task: not a thing.
            return _states.Success(message, draw(_VALUES))
        children = draw(
            st.lists(
                st.sampled_from(child_kinds).flatmap(
                    lambda k: _state_of(k, child_kinds, depth + 1)
                ),
                max_size=4,
            )
        )
        return _states.Mapped(message, map_states=children)
    result = draw(_result_for(cls))
    if cls is _states.Retrying:
        return _states.Retrying(
            message, result, start_time=draw(_TIMES), run_count=draw(st.integers(1, 5))
        )
    if issubclass(cls, _states.Scheduled):
        return cls(message, result, start_time=draw(_TIMES))
    if cls is _states.Looped:
        return _states.Looped(message, result, loop_count=draw(st.integers(1, 5)))
    if cls is _states.Cached:
        return _states.Cached(
            message,
            result,
            cached_inputs=draw(st.none() | st.just({})),
            cached_parameters=draw(st.none() | st.just({})),
            cached_result_expiration=draw(_TIMES),
        )
    return cls(message, result)


def states(
    kinds: Iterable[StateKind] | None = None,
    *,
    child_kinds: Iterable[StateKind] | None = None,
) -> st.SearchStrategy[State]:
    """Draw states of the given classes (default: every class of :mod:`statecore.states`).

    Args:
        kinds: state classes or names to draw from, e.g. ``[states.Success, "Failed"]``.
        child_kinds: the classes of a ``Mapped`` state's children (default: the finished
            states other than ``Mapped``).

    Returns:
        A strategy of :class:`~statecore.states.State`. Failed states often carry an
        exception as result, Skipped ones a ``SKIP`` signal; ``Mapped`` states have 0-4
        children and their children's results as result.

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=20)
        ... @given(states(kinds=["Retrying"]))
        ... def test_retrying_is_pending(state):
        ...     assert state.is_pending() and state.run_count >= 1
        >>> test_retrying_is_pending()
    """
    classes = _kind_classes(kinds, list(_states.STATE_CLASSES.values()))
    children = _kind_classes(child_kinds, _CHILD_KINDS)
    return st.sampled_from(classes).flatmap(lambda cls: _state_of(cls, children, 0))


# -- upstream states ------------------------------------------------------------------------


@st.composite
def _upstream_states(
    draw: st.DrawFn,
    min_size: int,
    max_size: int,
    kinds: Sequence[type[State]],
) -> dict[Edge, State]:
    downstream = Task(name="downstream")
    out: dict[Edge, State] = {}
    any_state = states(kinds)
    # Mapped upstreams are where triggers go wrong (they count by children): draw them
    # often when they are wanted at all.
    mapped = states([_states.Mapped]) if _states.Mapped in kinds else any_state
    for i in range(draw(st.integers(min_size, max_size))):
        upstream = Task(name=f"upstream_{i}")
        state = draw(mapped if draw(st.integers(0, 3)) == 0 else any_state)
        # One data edge, or a data edge plus a state-only edge from the same task, both
        # holding the very same state object (a trigger must count it once).
        out[Edge(upstream, downstream, key=f"x{i}")] = state
        if draw(st.integers(0, 3)) == 0:
            out[Edge(upstream, downstream)] = state
    return out


def upstream_states(
    min_size: int = 0,
    max_size: int = 6,
    *,
    kinds: Iterable[StateKind] | None = None,
) -> st.SearchStrategy[dict[Edge, State]]:
    """Draw the mapping a trigger receives: upstream :class:`~statecore.Edge` to state.

    Args:
        min_size: the fewest distinct upstream tasks.
        max_size: the most distinct upstream tasks.
        kinds: the classes of the upstream states (default :data:`TRIGGER_KINDS`: the
            finished states, ``Mapped`` ones with children).

    Returns:
        A strategy of ``dict[Edge, State]``. Each upstream task is a distinct
        :class:`~statecore.Task`; about one in four is joined by two edges (a data edge
        and a state-only edge) that carry the same state object.

    Example:
        >>> from hypothesis import given, settings
        >>> from statecore import triggers
        >>> @settings(max_examples=20)
        ... @given(upstream_states(min_size=1))
        ... def test_all_finished_passes(upstream):
        ...     assert triggers.all_finished(upstream)
        >>> test_all_finished_passes()
    """
    if min_size < 0 or max_size < min_size:
        raise ValueError(f"need 0 <= min_size <= max_size, got {min_size}, {max_size}")
    classes = _kind_classes(kinds, TRIGGER_KINDS)
    return _upstream_states(min_size, max_size, classes)


# -- behaviours -----------------------------------------------------------------------------

_SIGNALS: dict[str, type[signals.StateSignal]] = {
    "SUCCESS": signals.SUCCESS,
    "FAIL": signals.FAIL,
    "SKIP": signals.SKIP,
    "TRIGGERFAIL": signals.TRIGGERFAIL,
    "VALIDATIONFAIL": signals.VALIDATIONFAIL,
}

_ENDRUN_STATES: dict[str, Callable[[Any], State]] = {
    "Success": lambda value: _states.Success("ended by ENDRUN", result=value),
    "Failed": lambda value: _states.Failed("ended by ENDRUN"),
    "Skipped": lambda value: _states.Skipped("ended by ENDRUN"),
}


@dataclass(frozen=True, eq=False, repr=False)
class Behaviour:
    """What a drawn task's body does; a deterministic function of its context.

    The body reads ``task_run_count``, ``task_loop_count``, ``map_index`` and ``resume``
    from :data:`statecore.context`, never a counter of its own, so running the same flow
    twice (or resuming it) behaves the same way.

    Attributes:
        op: ``return``, ``raise``, ``signal``, ``endrun``, ``retry`` (raise ``RETRY`` the
            first ``n`` attempts), ``fail`` (raise the first ``n`` attempts), ``loop``
            (raise ``LOOP`` ``n`` times), ``fail_odd`` / ``skip_even`` (by map index),
            ``pause`` (raise ``PAUSE`` until approved).
        value: what the body returns when it returns.
        n: how many times ``retry``, ``fail`` and ``loop`` repeat.
        name: the signal (``signal``) or state (``endrun``) name.
    """

    op: str
    value: Any = None
    n: int = 0
    name: str = ""

    @property
    def terminating(self) -> bool:
        """False for behaviours that wait for a person (``pause``)."""
        return self.op != "pause"

    def __call__(self, **inputs: Any) -> Any:
        op = self.op
        if op == "return":
            return self.value
        if op == "raise":
            raise ValueError("boom")
        if op == "signal":
            if self.name == "SUCCESS":
                raise signals.SUCCESS("succeeded on purpose", result=self.value)
            raise _SIGNALS[self.name](f"{self.name} on purpose")
        if op == "endrun":
            raise signals.ENDRUN(_ENDRUN_STATES[self.name](self.value))
        if op == "retry":
            attempt = context.get("task_run_count", 1)
            if attempt <= self.n:
                raise signals.RETRY(f"RETRY on attempt {attempt}")
            return self.value
        if op == "fail":
            attempt = context.get("task_run_count", 1)
            if attempt <= self.n:
                raise ValueError(f"attempt {attempt} fails")
            return self.value
        if op == "loop":
            count = context.get("task_loop_count", 1)
            if count <= self.n:
                raise signals.LOOP(f"iteration {count}", result=count)
            return self.value
        if op == "fail_odd":
            index = context.get("map_index")
            if index is not None and index % 2 == 1:
                raise ValueError(f"odd index {index}")
            return self.value
        if op == "skip_even":
            index = context.get("map_index")
            if index is not None and index % 2 == 0:
                raise signals.SKIP(f"even index {index}")
            return self.value
        if op == "pause":
            if not context.get("resume"):
                raise signals.PAUSE("waiting for approval")
            return self.value
        raise AssertionError(f"unknown behaviour {op!r}")

    def __repr__(self) -> str:
        v = self.value
        return {
            "return": f"returns {v!r}",
            "raise": "raises ValueError('boom')",
            "signal": f"raises {self.name}"
            + (f" with result {v!r}" if self.name == "SUCCESS" else ""),
            "endrun": f"raises ENDRUN({self.name})",
            "retry": f"raises RETRY {self.n}x, then returns {v!r}",
            "fail": f"raises ValueError {self.n}x, then returns {v!r}",
            "loop": f"raises LOOP {self.n}x, then returns {v!r}",
            "fail_odd": f"raises ValueError at odd map indices, else returns {v!r}",
            "skip_even": f"raises SKIP at even map indices, else returns {v!r}",
            "pause": f"raises PAUSE until approved, then returns {v!r}",
        }.get(self.op, f"Behaviour({self.op!r})")


class BehaviourTask(Task):
    """A ``Task`` subclass running a :class:`Behaviour` (flows draw both this and ``@task``)."""

    def __init__(self, behaviour: Behaviour, **kwargs: Any) -> None:
        self.behaviour = behaviour
        super().__init__(**kwargs)

    def run(self, **inputs: Any) -> Any:
        return self.behaviour(**inputs)


_RETURN_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.lists(st.integers(0, 9), max_size=3),
    st.lists(st.integers(0, 9), min_size=1, max_size=3),
    st.integers(0, 9),
)


def behaviours(terminating: bool = True) -> st.SearchStrategy[Behaviour]:
    """Draw task behaviours (only ones that finish unless ``terminating=False``).

    Returned values are mostly short lists of small integers, so a downstream task can
    map over them; sometimes a plain integer, which cannot be mapped over.
    """
    counted = st.integers(1, 3)
    options: list[st.SearchStrategy[Behaviour]] = [
        st.builds(Behaviour, st.just("return"), _RETURN_VALUES),
        st.builds(Behaviour, st.just("return"), _RETURN_VALUES),
        st.just(Behaviour("raise")),
        st.builds(
            Behaviour,
            st.just("signal"),
            _RETURN_VALUES,
            name=st.sampled_from(sorted(_SIGNALS)),
        ),
        st.builds(
            Behaviour,
            st.just("endrun"),
            _RETURN_VALUES,
            name=st.sampled_from(sorted(_ENDRUN_STATES)),
        ),
        st.builds(Behaviour, st.just("retry"), _RETURN_VALUES, n=counted),
        st.builds(Behaviour, st.just("fail"), _RETURN_VALUES, n=counted),
        st.builds(Behaviour, st.just("loop"), _RETURN_VALUES, n=counted),
        st.builds(Behaviour, st.just("fail_odd"), _RETURN_VALUES),
        st.builds(Behaviour, st.just("skip_even"), _RETURN_VALUES),
    ]
    if not terminating:
        options.append(st.builds(Behaviour, st.just("pause"), _RETURN_VALUES))
    return st.one_of(options)


# -- flows ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class DrawnFlow:
    """A drawn flow and what a test needs to run and check it.

    Attributes:
        flow: the flow, built through the public API.
        handles: each drawn task's handle by label (``"t0"``, ``"t1"``, ...; the label is
            also the task's name, except for ``merge`` tasks, named ``Merge``).
        description: the code that builds the flow (its ``repr``, so a shrunk failing
            example reads as a program).
        parameters: what to pass as ``flow.run(parameters=...)``.
        behaviours: each drawn task's behaviour by label (merges and parameters have none).
        gated: labels of tasks that wait for approval (a ``PAUSE`` behaviour or the
            ``manual_only`` trigger); empty when drawn with ``terminating=True``.
    """

    flow: Flow
    handles: Mapping[str, Task]
    description: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    behaviours: Mapping[str, Behaviour] = field(default_factory=dict)
    gated: frozenset[str] = frozenset()

    @property
    def terminating(self) -> bool:
        """True when every task can finish without approval."""
        return not self.gated

    def __repr__(self) -> str:
        return self.description

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints falsifying examples with this hook: show the code.
        printer.text(self.description)


_PLAIN_TRIGGERS: tuple[tuple[str, triggers.Trigger], ...] = (
    ("triggers.all_successful", triggers.all_successful),
    ("triggers.all_failed", triggers.all_failed),
    ("triggers.any_successful", triggers.any_successful),
    ("triggers.any_failed", triggers.any_failed),
    ("triggers.all_finished", triggers.all_finished),
    ("triggers.not_all_skipped", triggers.not_all_skipped),
)

_BOUNDS: st.SearchStrategy[float | None] = st.one_of(
    st.none(), st.integers(0, 3).map(float), st.sampled_from([0.25, 0.5, 0.75])
)


def _format_bound(value: float | None) -> str:
    if value is not None and value == int(value):
        return str(int(value))
    return repr(value)


@st.composite
def _trigger(draw: st.DrawFn, terminating: bool) -> tuple[str, triggers.Trigger] | None:
    """None for the default trigger (half the time)."""
    choice = draw(st.integers(0, 9 if terminating else 10))
    if choice < 4:
        return None
    if choice < 8:
        return draw(st.sampled_from(_PLAIN_TRIGGERS))
    if choice < 10:
        name = draw(st.sampled_from(["some_successful", "some_failed"]))
        at_least, at_most = draw(_BOUNDS), draw(_BOUNDS)
        maker = triggers.some_successful if name == "some_successful" else triggers.some_failed
        text = (
            f"triggers.{name}(at_least={_format_bound(at_least)}, at_most={_format_bound(at_most)})"
        )
        return text, maker(at_least=at_least, at_most=at_most)
    return "triggers.manual_only", triggers.manual_only


class _Builder:
    """Draws one flow step by step, keeping the code that builds it."""

    def __init__(self, draw: st.DrawFn, terminating: bool) -> None:
        self.draw = draw
        self.terminating = terminating
        self.flow = Flow("drawn")
        self.handles: dict[str, Task] = {}
        self.behaviours: dict[str, Behaviour] = {}
        self.parameters: dict[str, Any] = {}
        self.gated: set[str] = set()
        self.likely: dict[str, Any] = {}
        self.lines = ['with Flow("drawn") as flow:']

    # -- arguments --

    def _argument(self, label: str) -> tuple[Any, str]:
        """One argument built from an earlier task: the handle, an index or a collection."""
        draw = self.draw
        handle = self.handles[label]
        form = draw(
            st.sampled_from(["handle", "handle", "handle", "index", "list", "tuple", "dict"])
        )
        if form == "index":
            return handle[0], f"{label}[0]"
        if form in ("list", "tuple"):
            others = draw(st.lists(st.sampled_from(sorted(self.handles)), max_size=2))
            items = [label, *others]
            value: Any = [self.handles[x] for x in items]
            text = ", ".join(items)
            if form == "tuple":
                return tuple(value), f"({text},)"
            return value, f"[{text}]"
        if form == "dict":
            return {"k": handle}, f'{{"k": {label}}}'
        return handle, label

    def _inputs(self, mapped: bool) -> tuple[dict[str, Any], list[Any], list[str]]:
        """Keyword arguments and upstream_tasks for a task step, with their code."""
        draw = self.draw
        labels = sorted(self.handles, key=lambda s: int(s[1:]))
        kwargs: dict[str, Any] = {}
        texts: list[str] = []
        picks = draw(st.lists(st.sampled_from(labels), max_size=3)) if labels else []
        if mapped:
            # At least one argument is mapped over: a task, a flattened task or a constant.
            how = draw(st.sampled_from(["task", "flatten", "constant"] if labels else ["constant"]))
            if how == "constant":
                items = draw(st.lists(st.integers(0, 9), max_size=3))
                kwargs["m"] = items
                texts.append(f"m={items!r}")
            else:
                source = draw(st.sampled_from(labels))
                if how == "flatten":
                    kwargs["m"] = flatten(self.handles[source])
                    texts.append(f"m=flatten({source})")
                else:
                    kwargs["m"] = self.handles[source]
                    texts.append(f"m={source}")
        for i, label in enumerate(picks):
            value, text = self._argument(label)
            if mapped and draw(st.booleans()):
                value, text = unmapped(value), f"unmapped({text})"
            kwargs[f"x{i}"] = value
            texts.append(f"x{i}={text}")
        if draw(st.integers(0, 3)) == 0:
            constant = draw(st.integers(0, 9))
            kwargs["c"] = unmapped(constant) if mapped else constant
            texts.append(f"c=unmapped({constant})" if mapped else f"c={constant}")
        upstream: list[Any] = []
        upstream_texts: list[str] = []
        if labels:
            for label in draw(st.lists(st.sampled_from(labels), max_size=2, unique=True)):
                if mapped and draw(st.integers(0, 3)) > 0:
                    upstream.append(unmapped(self.handles[label]))
                    upstream_texts.append(f"unmapped({label})")
                else:
                    upstream.append(self.handles[label])
                    upstream_texts.append(label)
        if upstream:
            texts.append(f"upstream_tasks=[{', '.join(upstream_texts)}]")
        return kwargs, upstream, texts

    # -- steps --

    def task_step(self, label: str, indent: str) -> None:
        draw = self.draw
        behaviour = draw(behaviours(self.terminating))
        options: dict[str, Any] = {"name": label}
        option_text = [f"name={label!r}"]
        trig = draw(_trigger(self.terminating))
        if trig is not None:
            options["trigger"] = trig[1]
            option_text.append(f"trigger={trig[0]}")
            if trig[1] is triggers.manual_only:
                self.gated.add(label)
        if draw(st.integers(0, 3)) == 0:
            options["skip_on_upstream_skip"] = False
            option_text.append("skip_on_upstream_skip=False")
        retries = draw(st.integers(0, 2))
        if retries:
            options["max_retries"] = retries
            options["retry_delay"] = timedelta(0)
            option_text.append(f"max_retries={retries}, retry_delay=timedelta(0)")
        if draw(st.integers(0, 4)) == 0:
            # a result cache: Prefect 1 checks a Cached state again on every pass, with
            # the task's validator (never_use makes every later pass run the body again)
            name = draw(st.sampled_from(sorted(_VALIDATORS)))
            options["cache_for"] = timedelta(hours=1)
            options["cache_validator"] = _VALIDATORS[name]
            option_text.append(f"cache_for=timedelta(hours=1), cache_validator={name}")
        if not behaviour.terminating:
            self.gated.add(label)
        mapped = draw(st.integers(0, 2)) == 0
        kwargs, upstream, texts = self._inputs(mapped)
        if draw(st.booleans()):
            made: Task = task(behaviour, **options)
            maker = f"task({behaviour!r}, {', '.join(option_text)})"
        else:
            made = BehaviourTask(behaviour, **options)
            maker = f"BehaviourTask({behaviour!r}, {', '.join(option_text)})"
        call = made.map if mapped else made
        handle = call(upstream_tasks=upstream or None, **kwargs)
        self.handles[label] = handle
        self.behaviours[label] = behaviour
        self.likely[label] = behaviour.value
        self.lines.append(
            f"{indent}{label} = {maker}{'.map' if mapped else ''}({', '.join(texts)})"
        )

    def case_step(self, label: str) -> None:
        draw = self.draw
        labels = sorted(self.handles, key=lambda s: int(s[1:]))
        cond = draw(st.sampled_from(labels))
        value = draw(st.one_of(st.just(self.likely.get(cond)), _RETURN_VALUES))
        self.lines.append(f"    with case({cond}, {value!r}):")
        with case(self.handles[cond], value):
            self.task_step(label, "        ")

    def merge_step(self, label: str) -> None:
        draw = self.draw
        labels = sorted(self.handles, key=lambda s: int(s[1:]))
        picks = draw(st.lists(st.sampled_from(labels), min_size=1, max_size=3, unique=True))
        self.handles[label] = merge(*[self.handles[x] for x in picks])
        self.likely[label] = None
        self.lines.append(f"    {label} = merge({', '.join(picks)})")

    def parameter_step(self, label: str) -> None:
        draw = self.draw
        default = draw(st.lists(st.integers(0, 9), max_size=3))
        if draw(st.booleans()):
            param = Parameter(label, default=default)
            self.lines.append(f"    {label} = Parameter({label!r}, default={default!r})")
        else:
            param = Parameter(label, required=True)
            self.parameters[label] = default
            self.lines.append(f"    {label} = Parameter({label!r}, required=True)")
        self.flow.add_task(param)
        self.handles[label] = param
        self.likely[label] = default

    def build(self, n: int) -> DrawnFlow:
        draw = self.draw
        with self.flow:
            for i in range(n):
                label = f"t{i}"
                kinds = ["task", "task", "task", "parameter"]
                if self.handles:
                    kinds += ["case", "merge"]
                kind = draw(st.sampled_from(kinds))
                if kind == "case":
                    self.case_step(label)
                elif kind == "merge":
                    self.merge_step(label)
                elif kind == "parameter":
                    self.parameter_step(label)
                else:
                    self.task_step(label, "    ")
        if self.handles and draw(st.integers(0, 2)) == 0:
            labels = sorted(self.handles, key=lambda s: int(s[1:]))
            refs = draw(st.lists(st.sampled_from(labels), min_size=1, max_size=3, unique=True))
            self.flow.set_reference_tasks([self.handles[x] for x in refs])
            self.lines.append(f"flow.set_reference_tasks([{', '.join(refs)}])")
        if self.parameters:
            self.lines.append(f"flow.run(parameters={self.parameters!r})")
        return DrawnFlow(
            flow=self.flow,
            handles=dict(self.handles),
            description="\n".join(self.lines),
            parameters=dict(self.parameters),
            behaviours=dict(self.behaviours),
            gated=frozenset(self.gated),
        )


_VALIDATORS = {
    "duration_only": cache_validators.duration_only,
    "all_inputs": cache_validators.all_inputs,
    "all_parameters": cache_validators.all_parameters,
    "never_use": cache_validators.never_use,
}


@st.composite
def _flows(draw: st.DrawFn, min_tasks: int, max_tasks: int, terminating: bool) -> DrawnFlow:
    n = draw(st.integers(min_tasks, max_tasks))
    return _Builder(draw, terminating).build(n)


def flows(
    max_tasks: int = 8, terminating: bool = True, *, min_tasks: int = 1
) -> st.SearchStrategy[DrawnFlow]:
    """Draw random valid flows built through the public API.

    Each step adds a task made with ``@task`` or a ``Task`` subclass (called, or mapped
    with ``.map`` over a task, a ``flatten``-ed task or a constant list, with
    ``unmapped`` arguments), a ``Parameter``, a task inside ``case(...)``, or a
    ``merge(...)`` of earlier tasks. Arguments are earlier tasks, ``handle[0]``, lists,
    tuples and dicts of handles, constants, and state-only ``upstream_tasks``. Tasks get
    random triggers (``some_successful``/``some_failed`` with bounds included),
    ``skip_on_upstream_skip``, ``max_retries`` with ``retry_delay`` 0, result caches
    (``cache_for`` with one of the built-in ``cache_validator`` functions), and a
    :class:`Behaviour`. Some flows set reference tasks.

    Args:
        max_tasks: the most drawn steps (the tasks the API adds for indexing,
            collections and ``case`` come on top).
        terminating: draw only behaviours that finish: no ``PAUSE``, no
            ``manual_only``, and ``RETRY``/``LOOP`` a bounded number of times. With
            False, flows may hold tasks that wait for approval (see
            :attr:`DrawnFlow.gated`).
        min_tasks: the fewest drawn steps.

    Returns:
        A strategy of :class:`DrawnFlow`.
    """
    if min_tasks < 1 or max_tasks < min_tasks:
        raise ValueError(f"need 1 <= min_tasks <= max_tasks, got {min_tasks}, {max_tasks}")
    return _flows(min_tasks, max_tasks, terminating)

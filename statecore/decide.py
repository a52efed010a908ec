"""Decide: from (graph, view, now) to the next actions. Pure: no I/O, no threads, no clock.

For each candidate task (or mapped child) ``decide`` walks Prefect 1's task pipeline:

1. not pending (running, paused, finished)        -> nothing
2. scheduled in the future (a retry's delay)      -> wake up at that time
3. an upstream not finished                        -> nothing (stays Pending)
4. an upstream skipped and skip_on_upstream_skip   -> Skipped
5. a mapped task's own run                         -> Mapped(n) or Failed (nothing to map)
6. the trigger                                     -> TriggerFailed / Skipped / Paused
7. a valid cached result                           -> Cached
8. otherwise                                       -> run it

``settle`` is the other half: from what a task body did to the state it ends in (success,
signals, retries, caching). ``final_state`` is the flow-state rule. The decisions a run
makes outside that pipeline are here too, each returning actions for the driver to
carry out and log: ``seed`` (``task_states=`` and a rerun's reused states),
``interrupt`` (a resume ends the attempts a dead driver left open), ``approve`` (a
resume's approvals), ``cancel``, ``loop_restart``, and readiness (``blocker_counts``,
``is_ready``). ``signal_state`` is the one mapping from a control-flow signal to the
state it stands for. The runner feeds
``decide`` only the tasks whose upstream changed, so a step costs O(changed), not O(graph).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from statecore import signals
from statecore.events import MAX_MAP_STATES
from statecore.fold import RunView, TaskRun
from statecore.graph import Graph, Input, Node
from statecore.states import (
    Cached,
    Cancelled,
    Failed,
    Finished,
    Looped,
    Mapped,
    Paused,
    Pending,
    Resume,
    Retrying,
    Running,
    Scheduled,
    Skipped,
    State,
    Success,
    TimedOut,
    TriggerFailed,
)

__all__ = [
    "Decision",
    "RunTask",
    "SetState",
    "all_entities",
    "approve",
    "blocker_counts",
    "cancel",
    "decidable",
    "decide",
    "entity_run",
    "entity_runs",
    "final_state",
    "interrupt",
    "is_ready",
    "loop_restart",
    "outcome_state",
    "seed",
    "settle",
    "signal_state",
    "task_inputs",
    "upstream_states",
    "with_result",
]

SKIP_MESSAGE = (
    "Upstream task was skipped; if this was not the intended behavior, consider changing "
    "`skip_on_upstream_skip=False` for this task."
)

Entity = tuple[int, int | None]


# Actions are built on the hot path (one per task step): plain slotted records, since a
# frozen dataclass's __init__ costs twice as much.
@dataclass(slots=True)
class SetState:
    """Move a task to ``state`` without running it.

    ``attempt`` is the attempt the change belongs to (an interrupted one keeps its
    number), ``timing`` the ``started_at``/``ended_at`` it carries, and ``handlers``
    whether state handlers see it (a resume's bookkeeping is not a state change of the
    task's own doing, as in Prefect 1).
    """

    node: int
    index: int | None
    state: State
    attempt: int = 0
    timing: Mapping[str, int] | None = None
    handlers: bool = True


@dataclass(slots=True)
class RunTask:
    """Run a task's body with ``inputs`` as attempt ``attempt``."""

    node: int
    index: int | None
    inputs: dict[str, Any]
    attempt: int
    resume: bool = False
    loop_count: int = 0
    loop_result: Any = None


class Decision:
    """What to do next."""

    __slots__ = ("run", "set_states", "wake")

    def __init__(self) -> None:
        self.set_states: list[SetState] = []
        self.run: list[RunTask] = []
        self.wake: list[tuple[int, Entity]] = []


def decide(
    graph: Graph,
    view: RunView,
    now: int,
    candidates: Iterable[Entity] | None = None,
    *,
    cache: Mapping[int, list[Cached]] | None = None,
    retry_now: bool = True,
) -> Decision:
    """The next actions for ``candidates`` (every task when None).

    Args:
        graph: the compiled flow.
        view: the folded log.
        now: UTC ns.
        candidates: (node, map index) pairs whose inputs may have changed.
        cache: cached states per node, loaded by the runner from the store.
        retry_now: False for a single pass: retries wait for a later run.
    """
    decision = Decision()
    if candidates is None:
        candidates = all_entities(view)
    for node_i, index in candidates:
        _decide_one(graph, view, now, graph.nodes[node_i], index, cache, retry_now, decision)
    return decision


def all_entities(view: RunView) -> list[Entity]:
    """Every task and mapped child of the view, in graph order."""
    out: list[Entity] = []
    children = view.children
    for i in range(len(view.runs)):
        out.append((i, None))
        n = len(children.get(i, ()))
        if n:
            out.extend(zip(repeat(i, n), range(n), strict=True))
    return out


def _decide_one(
    graph: Graph,
    view: RunView,
    now: int,
    node: Node,
    index: int | None,
    cache: Mapping[int, list[Cached]] | None,
    retry_now: bool,
    decision: Decision,
) -> None:
    run = view.runs[node.index] if index is None else view.children[node.index][index]
    state = run.state
    # a plain Pending (most tasks) is none of the subclasses checked below: Scheduled,
    # Paused, Retrying, Resume (and not Looped, a Finished state)
    plain = type(state) is Pending
    cached = type(state) is Cached
    if not plain:
        # what decidable() offers: the rest is left as it is
        if not cached and (not isinstance(state, Pending) or isinstance(state, Paused)):
            return
        if cached and node.mapped and index is None:
            return
        if isinstance(state, Scheduled):
            if isinstance(state, Retrying) and not retry_now:
                return
            if state.start_time is not None and state.start_time > now:
                decision.wake.append((state.start_time, (node.index, index)))
                return
    upstream = upstream_states(graph, view, node, index)
    if upstream is None:
        return
    if node.skip_on_upstream_skip and _any_skipped(upstream):
        decision.set_states.append(SetState(node.index, index, Skipped(SKIP_MESSAGE)))
        return
    if node.mapped and index is None:
        decision.set_states.append(SetState(node.index, None, _ready_to_map(upstream)))
        return
    inputs = task_inputs(node, upstream)
    if cached:
        # Prefect 1 checks a Cached task again: a valid cache keeps it (after its
        # trigger); an invalid one sends it back to Pending to run
        assert isinstance(state, Cached)
        if _cache_hit(node, (state,), inputs, view.parameters, now, stored=False) is None:
            invalid = Pending("Cache was invalid; ready to run.")
            decision.set_states.append(SetState(node.index, index, invalid))
            return
    resumed = not plain and isinstance(state, Resume)
    verdict = _check_trigger(node, upstream, approved=resumed)
    if verdict is not None:
        decision.set_states.append(SetState(node.index, index, verdict))
        return
    if cached:
        return
    if node.cache_for_ns is not None and cache:
        hit = _cache_hit(node, cache.get(node.index, ()), inputs, view.parameters, now)
        if hit is not None:
            decision.set_states.append(SetState(node.index, index, hit))
            return
    if not plain and isinstance(state, Looped):
        attempt = 1  # a LOOP's next iteration is a new task run (its own retries)
    else:
        attempt = run.attempt if run.interrupted else run.attempt + 1
    decision.run.append(
        RunTask(
            node.index,
            index,
            inputs,
            max(attempt, 1),
            resume=resumed,
            loop_count=run.loop_count,
            loop_result=run.loop_result,
        )
    )


def upstream_states(
    graph: Graph, view: RunView, node: Node, index: int | None
) -> dict[Any, State] | None:
    """Each input edge's upstream state, or None while any upstream is unfinished.

    For a mapped child, a mapped edge gives the upstream child (or element) at ``index``.
    A mapped upstream seen whole counts as finished only when all its children are.
    """
    out: dict[Any, State] = {}
    shared: dict[int, State] = {}
    for inp in node.inputs:
        up = inp.upstream
        if up < 0:
            out[inp.edge] = inp.constant  # type: ignore[assignment]
            continue
        up_run = view.runs[up]
        up_state = up_run.state
        if not isinstance(up_state, Finished) or isinstance(up_state, Looped):
            return None
        whole_mapped = isinstance(up_state, Mapped)
        if whole_mapped and (not inp.mapped or inp.flattened) and view.unfinished_children.get(up):
            return None
        if index is not None and inp.mapped:
            element = _mapped_element(view, up, inp, index)
            if element is None:
                return None
            out[inp.edge] = element
            continue
        state = shared.get(up)
        if state is None:
            state = view.state_of(up)
            if inp.flattened and not whole_mapped:
                state = with_result(state, _flatten(state.result))
            shared[up] = state
        if inp.flattened and whole_mapped:
            # a flattened mapped upstream: its children's lists, one level flattened (a
            # mapped parent's width is the total; a reducer reads the flat list)
            state = Mapped(up_state.message, None, _flat_children(view, up), None)
        out[inp.edge] = state
    return out


def _mapped_element(view: RunView, up: int, inp: Input, index: int) -> State | None:
    up_state = view.runs[up].state
    if isinstance(up_state, Mapped):
        if inp.flattened:
            flat = _flat_children(view, up)
            return flat[index] if index < len(flat) else None
        child = view.children[up][index].state
        if not isinstance(child, Finished) or isinstance(child, Looped):
            return None
        return child
    result = up_state.result
    if inp.flattened:
        result = _flatten(result)
    try:
        value = result[index]
    except (IndexError, KeyError, TypeError):
        value = None
    return with_result(up_state, value)


def _flat_children(view: RunView, up: int) -> list[State]:
    out: list[State] = []
    for child in view.children.get(up, ()):
        result = child.state.result
        if isinstance(result, list | tuple):
            out.extend(with_result(child.state, r) for r in result)
        else:
            out.append(child.state)
    return out


def _flatten(value: Any) -> Any:
    if isinstance(value, list | tuple):
        out: list[Any] = []
        for v in value:
            if isinstance(v, list | tuple):
                out.extend(v)
            else:
                out.append(v)
        return out
    return value


def with_result(state: State, result: Any) -> State:
    """A copy of ``state`` (same class and fields) carrying ``result``."""
    kind = type(state)
    slots = _all_slots.get(kind)
    if slots is None:
        names: list[str] = []
        for cls in kind.__mro__:
            declared = cls.__dict__.get("__slots__", ())
            names.extend([declared] if isinstance(declared, str) else declared)
        slots = _all_slots[kind] = tuple(dict.fromkeys(names))
    copy = object.__new__(kind)
    for slot in slots:
        value = getattr(state, slot, _UNSET)
        if value is not _UNSET:
            object.__setattr__(copy, slot, value)
    copy.result = result
    return copy


#: every slot of a state class, its bases' included (what with_result copies), by class
_all_slots: dict[type[State], tuple[str, ...]] = {}
_UNSET = object()


def _any_skipped(upstream: Mapping[Any, State]) -> bool:
    """Whether an upstream state, a mapped parent's children counted one by one (unless
    the edge maps over it), is Skipped. A loop, not generators: it runs per task."""
    for edge, state in upstream.items():
        if isinstance(state, Mapped) and not getattr(edge, "mapped", False):
            if any(isinstance(s, Skipped) for s in state.map_states):
                return True
        elif isinstance(state, Skipped):
            return True
    return False


def _ready_to_map(upstream: Mapping[Any, State]) -> State:
    if upstream and not any(e.mapped and s.is_successful() for e, s in upstream.items()):
        return Failed("No upstream states can be mapped over.")
    lengths: list[int] = []
    for edge, state in upstream.items():
        if not edge.mapped or not state.is_successful():
            continue
        if isinstance(state, Mapped):
            lengths.append(state.n_map_states)
        elif not hasattr(state.result, "__getitem__"):
            return Failed("At least one upstream state has an unmappable result.")
        else:
            lengths.append(len(state.result))
    n = min(lengths, default=0)
    if n > MAX_MAP_STATES:
        return Failed(
            f"Cannot map over {n:,} items: a mapped task has at most {MAX_MAP_STATES:,} "
            "children (map over batches instead)"
        )
    return Mapped("Ready to proceed with mapping.", n_map_states=n)


def _check_trigger(node: Node, upstream: Mapping[Any, State], *, approved: bool) -> State | None:
    """None when the trigger passes; else the state the task ends in."""
    try:
        if not node.trigger(upstream):
            raise signals.TRIGGERFAIL("Trigger failed")
    except signals.PAUSE as sig:
        return None if approved else sig.state
    except (signals.StateSignal, signals.ENDRUN) as sig:
        return signal_state(sig)
    except Exception as exc:
        return TriggerFailed(f"Unexpected error while checking task trigger: {exc!r}", result=exc)
    return None


def task_inputs(node: Node, upstream: Mapping[Any, State]) -> dict[str, Any]:
    """The keyword arguments the task body receives."""
    inputs: dict[str, Any] = {}
    for inp in node.inputs:
        if inp.key is not None:
            inputs[inp.key] = upstream[inp.edge].result
    return inputs


def _cache_hit(
    node: Node,
    candidates: Iterable[Cached],
    inputs: Mapping[str, Any],
    parameters: Mapping[str, Any],
    now: int,
    *,
    stored: bool = True,
) -> Cached | None:
    """The first candidate still valid, or None.

    A candidate must not have expired; one with no expiration is valid only if it came
    from the store (a ``Cached`` state handed in without one is invalid, as Prefect 1's
    ``duration_only`` says).
    """
    validator = node.task.cache_validator
    for candidate in candidates:
        expires = candidate.cached_result_expiration
        if expires is None and not stored:
            continue
        if expires is not None and expires <= now:
            continue
        try:
            if validator(candidate, dict(inputs), dict(parameters)):
                return candidate
        except Exception:
            continue
    return None


def settle(
    node: Node,
    outcome: State,
    *,
    attempt: int,
    now: int,
    inputs: Mapping[str, Any],
    parameters: Mapping[str, Any],
    ended_run: bool = False,
) -> State:
    """The state a task ends an attempt in, from the state its body produced.

    Applies Prefect 1's post-run steps: a success with ``cache_for`` becomes ``Cached``;
    a failure with retries left becomes ``Retrying`` at ``now + retry_delay``. An
    ``ENDRUN`` state (``ended_run``) is final as it is.
    """
    if ended_run:
        return outcome
    if type(outcome) is Success and node.cache_for_ns is None:
        return outcome  # the commonest case, none of the steps below apply
    if isinstance(outcome, Retrying) and outcome.start_time is None:
        return Retrying(outcome.message, outcome.result, now, attempt)
    if (
        isinstance(outcome, Success)
        and not isinstance(outcome, Skipped | Cached | Mapped)
        and node.cache_for_ns is not None
    ):
        return Cached(
            outcome.message,
            outcome.result,
            cached_inputs=dict(inputs),
            cached_parameters=dict(parameters),
            cached_result_expiration=now + node.cache_for_ns,
        )
    if isinstance(outcome, Failed) and attempt <= node.max_retries:
        return Retrying(
            f"Retrying Task (after attempt {attempt} of {node.max_retries + 1})",
            None,
            now + node.retry_delay_ns,
            attempt,
        )
    return outcome


def signal_state(sig: BaseException) -> State | None:
    """The state a control-flow signal stands for (``ENDRUN``'s state, a ``FAIL``'s
    Failed, ...), or None for anything that is not such a signal."""
    if isinstance(sig, signals.ENDRUN | signals.StateSignal):
        state: State = sig.state
        return state
    return None


def outcome_state(exc: BaseException | None, value: Any, loop_count: int) -> tuple[State, bool]:
    """The state a body's return value or exception gives, and whether it was ENDRUN."""
    if exc is None:
        return Success("Task run succeeded.", value), False
    if isinstance(exc, signals.LOOP):
        looped = exc.state
        assert isinstance(looped, Looped)
        looped.loop_count = loop_count
        looped.message = looped.message or f"Task is looping ({loop_count})"
        return looped, False
    by_signal = signal_state(exc)
    if by_signal is not None:
        return by_signal, isinstance(exc, signals.ENDRUN)
    if isinstance(exc, signals.TaskTimeoutSignal):
        return TimedOut("Task timed out during execution.", exc), False
    return Failed(f"Error during execution of task: {exc!r}", exc), False


def final_state(graph: Graph, view: RunView) -> State:
    """The flow's state from its terminal and reference tasks (Prefect 1's rule).

    Running while any terminal task (or mapped child) is unfinished; else Failed if any
    reference state failed; else Success ("All reference tasks succeeded." when all
    succeeded, "No reference tasks failed." otherwise).
    """
    terminal = _flat_states(view, graph.terminal)
    if not all(s.is_finished() for s in terminal):
        return Running("Running flow.")
    key = _flat_states(view, graph.reference)
    if any(s.is_failed() for s in key):
        return Failed("Some reference tasks failed.")
    if all(s.is_successful() for s in key):
        return Success("All reference tasks succeeded.")
    return Success("No reference tasks failed.")


def _flat_states(view: RunView, nodes: Iterable[int]) -> list[State]:
    out: list[State] = []
    for i in nodes:
        state = view.runs[i].state
        if isinstance(state, Mapped):
            out.extend(c.state for c in view.children.get(i, ()))
        else:
            out.append(state)
    return out


def entity_run(view: RunView, node: int, index: int | None) -> TaskRun:
    """The TaskRun of a task or mapped child."""
    return view.runs[node] if index is None else view.children[node][index]


# -- decisions outside the task pipeline --------------------------------------------------


def seed(graph: Graph, initial: Mapping[int, State], reuse: Mapping[int, State]) -> list[SetState]:
    """A new run's starting states: ``task_states=`` (``initial``) over a rerun's reused
    states; a reused mapped task keeps its children's states. Pending needs no event."""
    actions: list[SetState] = []
    for node, state in {**reuse, **initial}.items():
        if type(state) is Pending:
            continue  # every task starts Pending: nothing to record
        actions.append(SetState(node, None, state, handlers=False))
        if isinstance(state, Mapped):
            for j, child in enumerate(state.map_states[: state.n_map_states]):
                if not isinstance(child, Pending):
                    actions.append(SetState(node, j, child, handlers=False))
    return actions


def interrupt(view: RunView, *, ended_at: int) -> list[SetState]:
    """A resume's first step: every attempt the log leaves open (Running, or between two
    LOOP iterations) ends ``Pending("Interrupted: ...")`` at ``ended_at``, when its driver
    was last known alive. It keeps its attempt number, so it does not count as a retry."""
    actions: list[SetState] = []
    for node, index, run in entity_runs(view):
        if isinstance(run.state, Running | Looped):
            message = (
                f"Interrupted: the process running attempt {run.attempt} stopped before it finished"
            )
            extra = {"ended_at": ended_at}
            actions.append(
                SetState(node, index, Pending(message), run.attempt, extra, handlers=False)
            )
    return actions


def decidable(view: RunView) -> list[Entity]:
    """The tasks and mapped children :func:`decide` may act on, in graph order: those
    Pending but not Paused (Scheduled and Retrying too), and those Cached (checked again).
    The others it leaves as they are, so a resume need not offer it every finished one."""
    return [
        (node, index)
        for node, index, run in entity_runs(view)
        if type(run.state) is Cached
        or (isinstance(run.state, Pending) and not isinstance(run.state, Paused))
    ]


def entity_runs(view: RunView) -> Iterator[tuple[int, int | None, TaskRun]]:
    """Every task and mapped child of the view with its record, in graph order (the
    records read straight from the view: no entity list is built)."""
    children = view.children
    for node, task_run in enumerate(view.runs):
        yield node, None, task_run
        for j, child in enumerate(children.get(node, ())):
            yield node, j, child


def approve(view: RunView, nodes: Iterable[int]) -> list[SetState]:
    """Approve exactly the paused tasks (and paused mapped children) of ``nodes``."""
    actions: list[SetState] = []
    for node in nodes:
        if isinstance(view.runs[node].state, Paused):
            actions.append(SetState(node, None, Resume("Approved"), handlers=False))
        for j, child in enumerate(view.children.get(node, ())):
            if isinstance(child.state, Paused):
                actions.append(SetState(node, j, Resume("Approved"), handlers=False))
    return actions


def cancel(view: RunView) -> list[SetState]:
    """A cancelled run: every task and mapped child that has not started ends Cancelled."""
    return [
        SetState(node, index, Cancelled("Cancelled: the run was cancelled"))
        for node, index in all_entities(view)
        if isinstance(entity_run(view, node, index).state, Pending)
    ]


def loop_restart(looped: Looped) -> State:
    """After a LOOP iteration is logged, the task starts its next one."""
    return Running("Starting task run.")


def is_ready(view: RunView, node: int, complete: bool) -> bool:
    """Whether ``node`` is finished (and, if ``complete``, every mapped child too)."""
    state = view.runs[node].state
    if not state.is_finished() or isinstance(state, Looped):
        return False
    return not (complete and isinstance(state, Mapped) and view.unfinished_children.get(node))


def blocker_counts(graph: Graph, view: RunView) -> tuple[list[dict[int, bool]], list[int]]:
    """Per task, the upstream tasks it waits for and how many are not ready yet.

    A task waits for an upstream to be *finished* when it only maps over it (a Mapped
    parent suffices to expand), else to be *complete* (finished, with every mapped child
    finished); ``needs[d][u]`` says which. Only a task whose count is zero can run, so a
    reducer over 10,000 children is decided once, not 10,000 times.
    """
    needs_complete: list[dict[int, bool]] = []
    blockers: list[int] = []
    # loops, not generators: this runs once per run over every task (a W1 chain of
    # 1,000 tasks pays it once per task)
    for node in graph.nodes:
        needs: dict[int, bool] = {}
        waiting = 0
        for inp in node.inputs:
            if inp.upstream >= 0:
                full = not inp.mapped or inp.flattened
                needs[inp.upstream] = needs.get(inp.upstream, False) or full
        for u, full in needs.items():
            if not is_ready(view, u, full):
                waiting += 1
        needs_complete.append(needs)
        blockers.append(waiting)
    return needs_complete, blockers

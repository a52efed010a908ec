"""The formal machine: every legal state transition of a task and of a flow.

The transitions are declared once, with the ``transitions`` package, and compiled at import into
two frozen lookup tables, :data:`TASK_TRANSITIONS` and :data:`FLOW_TRANSITIONS` (source state name
to the frozenset of legal destination names). The hot path (:func:`check_task`,
:func:`check_flow`) is a dict lookup; no ``transitions.Machine`` is ever built per task or per run.
The same declaration exports the table (:func:`table_text`) and the diagram (:func:`mermaid`);
``python -m statecore.machine`` prints both for both machines.

Example:
    >>> from statecore import machine
    >>> machine.is_legal("Running", "Success")
    True
    >>> machine.is_legal("Success", "Running")
    False
    >>> machine.check_task("run-1", "load", "Success", "Running")
    Traceback (most recent call last):
        ...
    statecore.errors.IllegalTransition: illegal transition in run 'run-1': task 'load' cannot go \
from Success to Running
"""

################################################################################################
# The task machine
################################################################################################
#
# Two groups of states carry the rules:
#
#   waiting  W = {Pending, Scheduled, Retrying, Resume}
#   finished F = {Success, Cached, Mapped, Skipped, Failed, TriggerFailed, ValidationFailed,
#                 TimedOut, Cancelled}
#
# and the rules, which are the paths Prefect 1 takes plus our interruption path, are:
#
# 1) A waiting state may start running (run), wait for approval (pause), or finish without
#    running: skip propagation, a failed trigger, a cache hit, mapping, a state supplied by ENDRUN
#    or by `task_states=`, or cancellation (finish, cancel).
# 2) Pending alone may also become Scheduled, Retrying or Resume, when `task_states=` supplies one
#    (supply). Pending never becomes Looped: only a run loops.
# 3) Paused waits for approval: it becomes Resume (approve), or finishes with a state the user
#    supplies, Cancelled included (finish, cancel). It does not run until it has been approved.
#    A state handler may answer a pause at once with Resume (Prefect 1's handlers change the
#    new state): then a waiting state, or a Cached one checked again, becomes Resume (approve).
# 4) Running finishes (finish, cancel), schedules a retry (retry), ends one loop iteration
#    (loop), pauses when the body raises PAUSE (pause), or falls back to Pending when the attempt
#    was interrupted: on resume the driver logs Pending("Interrupted: ...") (interrupt).
# 5) Looped runs the next iteration (run), is cancelled (cancel), or falls back to Pending when
#    the run was interrupted between iterations (interrupt). Looped is a Finished subclass in the
#    class tree, but it is not terminal here.
# 6) Finished states are terminal: nothing leaves them, except:
# 7) Cached, when a run starts from it (supplied by `task_states=`, or found on resume), is
#    checked again as Prefect 1 re-checks cached tasks: an invalid cache falls back to
#    Pending("Cache was invalid; ready to run.") (invalidate); a valid one still meets skip
#    propagation and its trigger (finish: Skipped, TriggerFailed; pause).
#
# No state moves to itself: a repeated state is a bug in the caller, not a transition.
#
################################################################################################
# The flow machine
################################################################################################
#
# 1) Pending or Scheduled starts running (run).
# 2) Running ends in Success, Failed or TimedOut (finish) or Cancelled (cancel). A paused run
#    stays Running: pausing is a task's state, not the flow's.
# 3) The end states are terminal.
#
# The trigger names label the diagram's edges; they are never fired. Only the compiled tables are
# consulted, and an unlisted pair raises IllegalTransition naming run, task, from and to.

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from transitions import Machine

from statecore.errors import IllegalTransition, UnknownState

__all__ = [
    "FLOW_STATES",
    "FLOW_TRANSITIONS",
    "TASK_STATES",
    "TASK_TRANSITIONS",
    "check_flow",
    "check_task",
    "is_legal",
    "mermaid",
    "table_text",
]

_WAITING: Final = ("Pending", "Scheduled", "Retrying", "Resume")
_ENDED: Final = (
    "Success",
    "Cached",
    "Mapped",
    "Skipped",
    "Failed",
    "TriggerFailed",
    "ValidationFailed",
    "TimedOut",
)
_FINISHED: Final = (*_ENDED, "Cancelled")

TASK_STATES: Final[tuple[str, ...]] = (
    "Pending",
    "Scheduled",
    "Paused",
    "Resume",
    "Retrying",
    "Running",
    *_FINISHED,
    "Looped",
)
"""Every task state name, in the order tables and diagrams list them."""

FLOW_STATES: Final[tuple[str, ...]] = (
    "Pending",
    "Scheduled",
    "Running",
    "Success",
    "Failed",
    "TimedOut",
    "Cancelled",
)
"""Every flow state name, in the order tables and diagrams list them."""


def _to_each(trigger: str, source: Sequence[str], dests: Iterable[str]) -> list[dict[str, Any]]:
    return [{"trigger": trigger, "source": list(source), "dest": dest} for dest in dests]


_TASK_DECLARATION: Final[list[dict[str, Any]]] = [
    # 1) waiting states
    {"trigger": "run", "source": list(_WAITING), "dest": "Running"},
    {"trigger": "pause", "source": list(_WAITING), "dest": "Paused"},
    *_to_each("finish", _WAITING, _ENDED),
    {"trigger": "cancel", "source": list(_WAITING), "dest": "Cancelled"},
    # 2) Pending only
    *_to_each("supply", ["Pending"], ["Scheduled", "Retrying", "Resume"]),
    # 3) Paused, or a pause a state handler answered with Resume
    {
        "trigger": "approve",
        "source": ["Paused", "Scheduled", "Retrying", "Cached"],
        "dest": "Resume",
    },
    *_to_each("finish", ["Paused"], _ENDED),
    {"trigger": "cancel", "source": "Paused", "dest": "Cancelled"},
    # 4) Running
    *_to_each("finish", ["Running"], _ENDED),
    {"trigger": "cancel", "source": "Running", "dest": "Cancelled"},
    {"trigger": "retry", "source": "Running", "dest": "Retrying"},
    {"trigger": "loop", "source": "Running", "dest": "Looped"},
    {"trigger": "pause", "source": "Running", "dest": "Paused"},
    {"trigger": "interrupt", "source": "Running", "dest": "Pending"},
    # 5) Looped
    {"trigger": "run", "source": "Looped", "dest": "Running"},
    {"trigger": "cancel", "source": "Looped", "dest": "Cancelled"},
    {"trigger": "interrupt", "source": "Looped", "dest": "Pending"},
    # 6) finished states: nothing, but 7) a Cached state checked again
    {"trigger": "invalidate", "source": "Cached", "dest": "Pending"},
    *_to_each("finish", ["Cached"], ["Skipped", "TriggerFailed"]),
    {"trigger": "pause", "source": "Cached", "dest": "Paused"},
]

_FLOW_DECLARATION: Final[list[dict[str, Any]]] = [
    {"trigger": "run", "source": ["Pending", "Scheduled"], "dest": "Running"},
    *_to_each("finish", ["Running"], ["Success", "Failed", "TimedOut"]),
    {"trigger": "cancel", "source": "Running", "dest": "Cancelled"},
]

TASK_MACHINE: Final = Machine(
    model=None,
    states=list(TASK_STATES),
    transitions=_TASK_DECLARATION,
    auto_transitions=False,
    initial="Pending",
)
"""The declaration of the task machine (never fired; read by the compiler and the exports)."""

FLOW_MACHINE: Final = Machine(
    model=None,
    states=list(FLOW_STATES),
    transitions=_FLOW_DECLARATION,
    auto_transitions=False,
    initial="Pending",
)
"""The declaration of the flow machine (never fired; read by the compiler and the exports)."""


def _edges(machine: Any) -> dict[tuple[str, str], list[str]]:
    """Read ``(source, dest) -> trigger names`` out of a ``transitions`` Machine."""
    edges: dict[tuple[str, str], list[str]] = {}
    for trigger, event in machine.events.items():
        for source, declared in event.transitions.items():
            for transition in declared:
                labels = edges.setdefault((source, transition.dest), [])
                if trigger not in labels:
                    labels.append(trigger)
    return edges


def _compile(machine: Any, names: Sequence[str]) -> Mapping[str, frozenset[str]]:
    """Compile a Machine into a read-only ``source -> frozenset(destinations)`` table."""
    table: dict[str, set[str]] = {name: set() for name in names}
    for source, dest in _edges(machine):
        table[source].add(dest)
    return types.MappingProxyType({name: frozenset(dests) for name, dests in table.items()})


TASK_TRANSITIONS: Final[Mapping[str, frozenset[str]]] = _compile(TASK_MACHINE, TASK_STATES)
"""Task state name -> the names it may move to (empty for terminal states)."""

FLOW_TRANSITIONS: Final[Mapping[str, frozenset[str]]] = _compile(FLOW_MACHINE, FLOW_STATES)
"""Flow state name -> the names it may move to (empty for terminal states)."""

# The hot path reads plain dicts (one indirection fewer than the read-only proxies above).
_TASK: Final[dict[str, frozenset[str]]] = dict(TASK_TRANSITIONS)
_FLOW: Final[dict[str, frozenset[str]]] = dict(FLOW_TRANSITIONS)


def _unknown(name: str, known: Sequence[str], what: str) -> UnknownState:
    return UnknownState(f"unknown {what} state name {name!r}; known states: {', '.join(known)}")


def check_task(run_id: str, task: str, src: str, dst: str) -> None:
    """Check that a task may move from ``src`` to ``dst``.

    Args:
        run_id: the run, named in the error.
        task: the task key (with ``[i]`` for a mapped child), named in the error.
        src: the state name before.
        dst: the state name after.

    Raises:
        IllegalTransition: if the task machine has no such transition.
        UnknownState: if ``src`` or ``dst`` is not a task state name.

    Example:
        >>> check_task("run-1", "load", "Pending", "Running")
        >>> check_task("run-1", "load", "Pending", "Looped")
        Traceback (most recent call last):
            ...
        statecore.errors.IllegalTransition: illegal transition in run 'run-1': task 'load' \
cannot go from Pending to Looped
    """
    try:
        legal = dst in _TASK[src]
    except KeyError:
        raise _unknown(src, TASK_STATES, "task") from None
    if not legal:
        if dst not in _TASK:
            raise _unknown(dst, TASK_STATES, "task")
        raise IllegalTransition(run_id, task, src, dst)


def check_flow(run_id: str, src: str, dst: str) -> None:
    """Check that a flow run may move from ``src`` to ``dst``.

    A task state the flow machine does not use (``Mapped``, ``Looped``, ...) is an illegal
    transition, not an unknown name.

    Args:
        run_id: the run, named in the error.
        src: the state name before.
        dst: the state name after.

    Raises:
        IllegalTransition: if the flow machine has no such transition (``task`` is None).
        UnknownState: if ``src`` or ``dst`` is not a state name at all.

    Example:
        >>> check_flow("run-1", "Running", "Success")
        >>> check_flow("run-1", "Running", "Paused")
        Traceback (most recent call last):
            ...
        statecore.errors.IllegalTransition: illegal transition in run 'run-1': flow cannot go \
from Running to Paused
    """
    dests = _FLOW.get(src)
    if dests is not None and dst in dests:
        return
    for name in (src, dst):
        if name not in _TASK:
            raise _unknown(name, TASK_STATES, "flow")
    raise IllegalTransition(run_id, None, src, dst)


def is_legal(src: str, dst: str, *, flow: bool = False) -> bool:
    """Whether the task machine (or, with ``flow=True``, the flow machine) allows ``src -> dst``.

    Args:
        src: the state name before.
        dst: the state name after.
        flow: check the flow machine instead of the task machine.

    Returns:
        True if the transition is in the table.

    Raises:
        UnknownState: if ``src`` or ``dst`` is not a state name at all.

    Example:
        >>> is_legal("Looped", "Running"), is_legal("Pending", "Looped")
        (True, False)
        >>> is_legal("Pending", "Running", flow=True)
        True
    """
    for name in (src, dst):
        if name not in _TASK:
            raise _unknown(name, TASK_STATES, "flow" if flow else "task")
    dests = (_FLOW if flow else _TASK).get(src)
    return dests is not None and dst in dests


def table_text(flow: bool = False) -> str:
    """The compiled table as text, one source state per line.

    Args:
        flow: the flow machine instead of the task machine.

    Returns:
        Lines ``Source -> Dest, Dest, ...`` in declaration order, ``(terminal)`` for states
        with no exit.

    Example:
        >>> print(table_text(flow=True))
        Flow machine (initial state: Pending)
          Pending   -> Running
          Scheduled -> Running
          Running   -> Success, Failed, TimedOut, Cancelled
          Success   -> (terminal)
          Failed    -> (terminal)
          TimedOut  -> (terminal)
          Cancelled -> (terminal)
    """
    names, table = (FLOW_STATES, FLOW_TRANSITIONS) if flow else (TASK_STATES, TASK_TRANSITIONS)
    width = max(map(len, names))
    lines = [f"{'Flow' if flow else 'Task'} machine (initial state: Pending)"]
    for source in names:
        dests = [name for name in names if name in table[source]]
        lines.append(f"  {source:<{width}} -> {', '.join(dests) or '(terminal)'}")
    return "\n".join(lines)


def mermaid(flow: bool = False) -> str:
    """The machine as a Mermaid ``stateDiagram-v2``, each edge labelled with its triggers.

    Args:
        flow: the flow machine instead of the task machine.

    Returns:
        The diagram source; terminal states lead to ``[*]``.

    Example:
        >>> print(mermaid(flow=True))  # doctest: +ELLIPSIS
        stateDiagram-v2
            [*] --> Pending
            Pending --> Running: run
            Scheduled --> Running: run
            Running --> Success: finish
            ...
            Cancelled --> [*]
    """
    names, declared = (FLOW_STATES, FLOW_MACHINE) if flow else (TASK_STATES, TASK_MACHINE)
    edges = _edges(declared)
    order = {name: i for i, name in enumerate(names)}
    lines = ["stateDiagram-v2", f"    [*] --> {declared.initial}"]
    for (source, dest), triggers in sorted(
        edges.items(), key=lambda item: (order[item[0][0]], order[item[0][1]])
    ):
        lines.append(f"    {source} --> {dest}: {', '.join(triggers)}")
    sources = {source for source, _ in edges}
    lines.extend(f"    {name} --> [*]" for name in names if name not in sources)
    return "\n".join(lines)


if __name__ == "__main__":
    for is_flow in (False, True):
        print(table_text(flow=is_flow), end="\n\n")
    for is_flow in (False, True):
        print(mermaid(flow=is_flow), end="\n\n")

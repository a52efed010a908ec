"""How a driver's session opens the run: a new run's first events, a resume's notes.

A new run's log opens with ``RunStarted``, the flow's ``Running`` and the states a rerun
or ``task_states=`` seeds. A resume first says what changed since the log was written (a
changed flow allowed by ``allow_changed``, task code that changed), then ends the
attempts a crashed driver left open, at the time it was last known alive, and approves
the paused tasks named. The decisions are :mod:`statecore.decide`'s; these write them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from statecore.decide import SetState, interrupt
from statecore.decide import approve as approve_paused
from statecore.events import RunStarted
from statecore.fold import RunView
from statecore.runners.leases import now_ns
from statecore.runners.recorder import Recorder
from statecore.serialization import packb, unpackb
from statecore.sessions import LostSession
from statecore.states import Pending, Running

__all__ = ["begin", "logged_slot", "resume_prelude"]


def begin(record: Recorder, start: RunStarted, seeded: Sequence[SetState]) -> None:
    """Write a new run's first events: ``start`` (already scrubbed), the flow's Running,
    and the seeded task states."""
    ts = now_ns()
    event = record.journal.add(start, ts)
    # folded from the body just encoded, not decoded back from its bytes (a 1,000-task
    # graph costs ~7 µs a task of a chain to decode); the parameters are read back from
    # their own encoding, so the view holds what a replay reads, a copy no body changes
    view = record.view
    view.start(
        RunStarted(
            start.flow_name, start.graph, unpackb(packb(start.parameters)), start.parent_run
        ),
        ts,
    )
    view.head = event.seq
    view.last_event = event
    record.flow(Running("Running flow."), ts)
    record.carry_out(seeded)


def resume_prelude(
    record: Recorder,
    approve: Sequence[int],
    code: Mapping[str, str],
    graph_record: Mapping[str, Any] | None,
    lost: LostSession | None,
) -> None:
    """Note what changed since the log was written, end a crashed driver's open
    attempts, approve the paused tasks ``approve``."""
    ts = now_ns()
    view: RunView = record.view
    logged = view.graph
    if graph_record is not None and logged.get("fingerprint") != graph_record.get("fingerprint"):
        # resumed with allow_changed: the log records the new graph, and the fold
        # (here and in every later replay) realigns the run's tasks to it by key
        from statecore.plans import describe_changes

        record.note(
            "graph-changed",
            "resumed with a changed flow: " + describe_changes(logged, graph_record),
            {"graph": dict(graph_record)},
        )
    changed = [k for k, h in code.items() if logged.get("code", {}).get(k) not in (None, h)]
    if changed:
        record.note(
            "code-changed",
            "task code changed since the run started: " + ", ".join(changed),
            {"tasks": changed},
        )
    if isinstance(view.flow_state, Pending):
        record.flow(Running("Running flow."), ts)
    # the attempts a crashed driver left open end when it was last known alive
    record.carry_out(interrupt(view, ended_at=lost.last_alive if lost is not None else ts))
    record.carry_out(approve_paused(view, approve))


def logged_slot(view: RunView) -> int | None:
    """The run's schedule slot from its ``scheduled`` note, else when it started."""
    found = view.started
    for _, note in view.notes:
        if note.code == "scheduled" and note.data and "start_time" in note.data:
            found = int(note.data["start_time"])
    return found

"""The command line's schedule commands: ``statecore schedule`` and ``run --on-schedule``.

``statecore schedule FILE.py:FLOW [--next N] [--after T]`` prints the next start times of
the flow's schedule and each slot's run id (with the run's state when the store has it);
``statecore run FILE.py:FLOW --on-schedule`` runs the flow at each start time, one
durable run per slot (see :mod:`statecore.runners.scheduling`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pendulum import DateTime
from rich.console import Console

from statecore.backends.base import Store
from statecore.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_UNFINISHED, CLIError
from statecore.flow import Flow
from statecore.runners.scheduling import ScheduledRun, run_on_schedule, slot_run_id
from statecore.schedules import Schedule
from statecore.schedules.clocks import as_datetime, utc_now

__all__ = ["parse_after", "print_next", "run_scheduled", "schedule_of"]


def schedule_of(flow: Flow, flow_ref: str) -> Schedule:
    """The flow's schedule, or a usage error saying it has none."""
    schedule = getattr(flow, "schedule", None)
    if schedule is None:
        raise CLIError(
            f"{flow_ref}: flow {flow.name!r} has no schedule; give it one with "
            "Flow(..., schedule=...) or flow.schedule = ..."
        )
    if not isinstance(schedule, Schedule):
        raise CLIError(f"{flow_ref}: flow.schedule is a {type(schedule).__name__}, not a Schedule")
    return schedule


def parse_after(text: str | None) -> DateTime:
    """``--after``: an ISO 8601 time (naive: UTC); None is now.

    Example:
        >>> parse_after("2026-01-01T09:00:00+01:00").isoformat()
        '2026-01-01T09:00:00+01:00'
    """
    if text is None:
        return utc_now()
    try:
        return as_datetime(dt.datetime.fromisoformat(text.strip()))
    except ValueError:
        raise CLIError(
            f"--after {text!r} is not an ISO 8601 time (2026-05-01T12:00:00+02:00)"
        ) from None


def print_next(
    console: Console,
    flow: Flow,
    schedule: Schedule,
    n: int,
    after: dt.datetime,
    store: Store | None,
) -> None:
    """Print the next ``n`` start times, their slot run ids and (if known) run states."""
    events = schedule.next(n, after=after, return_events=True)
    if not events:
        console.print(f"flow {flow.name!r} has no scheduled start time after {after.isoformat()}")
        return
    seen: dict[Any, int] = {}
    for event in events:
        index = seen.get(event.start_time, 0)
        seen[event.start_time] = index + 1
        run_id = slot_run_id(flow.name, event.start_time, index)
        meta = store.get_run(run_id) if store is not None else None
        parts = [event.start_time.isoformat(), run_id]
        if event.parameter_defaults:
            parts.append(" ".join(f"{k}={v!r}" for k, v in event.parameter_defaults.items()))
        if meta is not None:
            parts.append(f"[{meta.state}]")
        console.print("  ".join(parts))


def run_scheduled(
    console: Console,
    flow: Flow,
    store: Store,
    parameters: Mapping[str, Any],
    *,
    max_runs: int | None,
    catch_up: bool,
) -> int:
    """Run ``flow`` on its schedule, printing each slot's outcome; the exit status."""
    last: list[ScheduledRun] = []

    def report(run: ScheduledRun) -> None:
        last[:] = [run]
        if run.state is None:
            console.print(f"{run.start_time.isoformat()}  {run.run_id}  skipped: {run.skipped}")
            return
        how = " (resumed)" if run.resumed else ""
        console.print(f"{run.start_time.isoformat()}  {run.run_id}  {run.state.name}{how}")

    try:
        run_on_schedule(
            flow,
            parameters=parameters,
            store=store,
            max_runs=max_runs,
            catch_up=catch_up,
            on_run=report,
        )
    except ValueError as exc:  # no start time left, bad parameters from a clock
        raise CLIError(str(exc)) from exc
    except KeyboardInterrupt:
        console.print(
            "stopped; a slot run that was under way is resumed when the schedule is run again"
        )
        return EXIT_UNFINISHED
    if not last or last[0].state is None:
        return EXIT_OK
    state = last[0].state
    if not state.is_finished():
        return EXIT_UNFINISHED
    return EXIT_OK if state.is_successful() else EXIT_FAILED

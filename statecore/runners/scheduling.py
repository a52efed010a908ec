"""Running a flow on its schedule, durably: one deterministic run per schedule slot.

Prefect 1's ``flow.run()`` with a schedule sleeps until each start time and runs the
flow, forever, in memory. This loop does the same over the store, so a slot is never run
twice:

* each slot's run id is derived from the flow and the slot: ``"<flow name>@<UTC time>"``
  (:func:`slot_run_id`; a second event at the same time with other parameter defaults
  gets ``#2``, and so on). Running a slot is ``flow.run(run_id=that id)``: a finished run
  is replayed, not run again; an unfinished one resumes.
* on start, slot runs of this flow that are not finished (the scheduler died while one
  ran) are resumed first, oldest first.
* slots missed while no scheduler ran are skipped, as in Prefect 1, and so are slots that
  passed while a run overran them: after each run the next slot is the first after now.
  With ``catch_up=True`` every slot after the flow's latest recorded slot run is run, in
  order, as fast as they finish, then the loop keeps to the schedule.

The clock and the sleep are injectable (``now=``, ``sleep=``), and ``max_runs=``,
``until=`` and ``stop=`` end the loop, for tests and for embedding.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pendulum
from pendulum import DateTime

from statecore.backends.base import Store
from statecore.errors import ConcurrencyError, LeaseHeld
from statecore.flow import Flow
from statecore.runners.execution import Runner
from statecore.runners.local import resume, run_flow
from statecore.schedules import ClockEvent, Schedule
from statecore.schedules.clocks import as_datetime, utc_now
from statecore.states import State

__all__ = ["ScheduledRun", "run_on_schedule", "slot_run_id", "slot_time"]

logger = logging.getLogger("statecore.schedules")

#: how many of the flow's newest runs ``catch_up`` looks through for its latest slot
_CATCH_UP_LOOKBACK = 200


@dataclass(frozen=True)
class ScheduledRun:
    """What the loop did for one slot.

    Attributes:
        start_time: the slot's start time.
        run_id: the slot's run id.
        state: the flow's state (None when another process held the run).
        resumed: the run existed (unfinished: resumed; finished: replayed).
        skipped: why the slot was not driven here, if it was not.
    """

    start_time: DateTime
    run_id: str
    state: State | None
    resumed: bool = False
    skipped: str | None = None


def slot_run_id(flow_name: str, start_time: dt.datetime, index: int = 0) -> str:
    """The run id of a schedule slot: ``"<flow name>@<UTC ISO time>"``.

    Args:
        flow_name: the flow's name.
        start_time: the slot's start time (naive: UTC).
        index: the event's position among distinct events at the same time (0: first).

    Example:
        >>> import pendulum
        >>> slot_run_id("etl", pendulum.datetime(2026, 3, 1, 9, tz="Europe/Paris"))
        'etl@2026-03-01T08:00:00Z'
        >>> slot_run_id("etl", pendulum.datetime(2026, 3, 1, 8, 0, 0, 5), index=1)
        'etl@2026-03-01T08:00:00.000005Z#2'
    """
    utc = as_datetime(start_time).in_tz("UTC")
    stamp = utc.format("YYYY-MM-DDTHH:mm:ss") + (
        f".{utc.microsecond:06d}" if utc.microsecond else ""
    )
    return f"{flow_name}@{stamp}Z" + (f"#{index + 1}" if index else "")


def slot_time(flow_name: str, run_id: str) -> DateTime | None:
    """The slot time a run id of :func:`slot_run_id` names, or None for another id.

    Example:
        >>> slot_time("etl", "etl@2026-03-01T08:00:00Z#2").isoformat()
        '2026-03-01T08:00:00+00:00'
        >>> slot_time("etl", "a1b2c3") is None
        True
    """
    prefix = f"{flow_name}@"
    if not run_id.startswith(prefix):
        return None
    stamp = run_id[len(prefix) :].partition("#")[0]
    try:
        parsed = pendulum.parse(stamp)
    except ValueError:  # pendulum's ParserError included
        return None
    return parsed if isinstance(parsed, DateTime) else None


def run_on_schedule(
    flow: Flow,
    schedule: Schedule | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    store: Store | str | None = None,
    runner: Runner | None = None,
    secrets: Mapping[str, Any] | None = None,
    catch_up: bool = False,
    max_runs: int | None = None,
    until: dt.datetime | None = None,
    stop: threading.Event | None = None,
    now: Callable[[], dt.datetime] | None = None,
    sleep: Callable[[float], Any] | None = None,
    on_run: Callable[[ScheduledRun], None] | None = None,
) -> State | None:
    """Run ``flow`` at each start time of its schedule; return the last run's state.

    Each slot runs as ``flow.run(run_id=slot_run_id(...))`` with the event's
    ``parameter_defaults`` under ``parameters`` (explicit values win), and
    ``statecore.context["scheduled_start_time"]`` set to the slot (UTC ns).

    Args:
        flow: the flow.
        schedule: default ``flow.schedule``.
        parameters: parameter values for every run.
        store: the store (object or URL; default as ``flow.run``).
        runner: the runner for each run.
        secrets: secrets for each run.
        catch_up: run the slots missed since the flow's latest slot run (default: skip
            them, as Prefect 1 does).
        max_runs: stop after this many slot runs (resumed ones count).
        until: stop before the first slot later than this.
        stop: stop when this event is set (checked between runs and while waiting).
        now: the clock (default: the system's, in UTC).
        sleep: waits this many seconds (default: ``stop.wait`` with ``stop``, else
            ``time.sleep``). May return early; the loop looks at the clock again.
        on_run: called after each slot with what happened.

    Raises:
        ValueError: the flow has no schedule, or the schedule has no start time ahead
            when the loop starts ("Flow has no more scheduled runs.", as in Prefect 1).
        LeaseLost, StoreUnavailable: as ``flow.run``.
    """
    chosen = schedule if schedule is not None else getattr(flow, "schedule", None)
    if chosen is None:
        raise ValueError(f"flow {flow.name!r} has no schedule")
    plan = _Plan(flow, chosen, _open(store), parameters, runner, secrets, on_run)
    clock = now or utc_now
    wait = sleep or (stop.wait if stop is not None else time.sleep)
    runs = 0

    def done() -> bool:
        return (stop is not None and stop.is_set()) or (max_runs is not None and runs >= max_runs)

    for run_id in plan.unfinished():
        if done():
            return plan.last
        plan.recover(run_id)
        runs += 1
    cursor = as_datetime(clock())
    if catch_up:
        cursor = min(cursor, plan.latest_slot() or cursor)
    first = True
    while not done():
        group = plan.slot_after(cursor)
        if not group:
            if first and runs == 0:
                raise ValueError("Flow has no more scheduled runs.")
            break
        first = False
        when = group[0].start_time
        if until is not None and when > as_datetime(until):
            break
        if not _wait_until(when, clock, wait, stop):
            break
        for index, event in enumerate(group):
            if done():
                break
            plan.run_slot(event, index)
            runs += 1
        cursor = when if catch_up else max(when, as_datetime(clock()))
    return plan.last


def _open(store: Store | str | None) -> Store:
    if store is None or isinstance(store, str):
        from statecore.backends import open_store

        return open_store(store)
    return store


def _wait_until(
    when: DateTime,
    clock: Callable[[], dt.datetime],
    wait: Callable[[float], Any],
    stop: threading.Event | None,
) -> bool:
    """Sleep until ``when``; False if ``stop`` was set meanwhile."""
    announced = False
    while True:
        if stop is not None and stop.is_set():
            return False
        remaining = (when - as_datetime(clock())).total_seconds()
        if remaining <= 0:
            return True
        if not announced:
            logger.info("Waiting for next scheduled run at %s", when.isoformat())
            announced = True
        wait(remaining)


class _Plan:
    """The loop's dealings with the schedule and the store for one flow."""

    def __init__(
        self,
        flow: Flow,
        schedule: Schedule,
        store: Store,
        parameters: Mapping[str, Any] | None,
        runner: Runner | None,
        secrets: Mapping[str, Any] | None,
        on_run: Callable[[ScheduledRun], None] | None,
    ) -> None:
        self.flow = flow
        self.schedule = schedule
        self.store = store
        self.parameters = dict(parameters or {})
        self.runner = runner
        self.secrets = secrets
        self.on_run = on_run
        self.last: State | None = None

    def unfinished(self) -> list[str]:
        """This flow's slot runs that are not finished, oldest slot first."""
        found = [
            (when, meta.run_id)
            for meta in self.store.list_runs(flow_name=self.flow.name, state="Running")
            if (when := slot_time(self.flow.name, meta.run_id)) is not None
        ]
        return [run_id for _, run_id in sorted(found)]

    def latest_slot(self) -> DateTime | None:
        """The latest slot time among the flow's newest recorded runs."""
        runs = self.store.list_runs(flow_name=self.flow.name, limit=_CATCH_UP_LOOKBACK)
        times = [t for m in runs if (t := slot_time(self.flow.name, m.run_id)) is not None]
        return max(times, default=None)

    def slot_after(self, cursor: DateTime) -> list[ClockEvent]:
        """The distinct events at the first start time strictly after ``cursor``.

        Adjustments may move a time to or before ``cursor`` (``add`` with a negative
        interval) or onto a time already listed (``next_weekday``): those are dropped.
        """
        group: list[ClockEvent] = []
        # through ``next``, as Prefect 1's flow.run asks: a Schedule subclass overriding
        # it is obeyed (64 events cover any group of one start time a clock set makes)
        for event in self.schedule.next(64, after=cursor, return_events=True):
            if event.start_time <= cursor:
                continue
            if group and event.start_time != group[0].start_time:
                break
            if event not in group:
                group.append(event)
        return group

    def run_slot(self, event: ClockEvent, index: int) -> None:
        run_id = slot_run_id(self.flow.name, event.start_time, index)
        existed = self.store.head(run_id) > 0
        params = {**event.parameter_defaults, **self.parameters}
        slot_ns = _ns(event.start_time)
        logger.info(
            "Running flow %r for slot %s (run %s)", self.flow.name, event.start_time, run_id
        )
        try:
            state = run_flow(
                self.flow,
                parameters=params,
                store=self.store,
                run_id=run_id,
                secrets=self.secrets,
                runner=self.runner,
                scheduled_start_time=slot_ns,
            )
        except (LeaseHeld, ConcurrencyError) as exc:
            # another scheduler of this flow has the slot: it drives the run, not us
            self._report(ScheduledRun(event.start_time, run_id, None, existed, str(exc)))
            return
        self.last = state
        self._report(ScheduledRun(event.start_time, run_id, state, existed))

    def recover(self, run_id: str) -> None:
        when = slot_time(self.flow.name, run_id)
        assert when is not None  # unfinished() lists slot runs only
        logger.info("Resuming unfinished slot run %s", run_id)
        try:
            state = resume(
                run_id, self.flow, store=self.store, secrets=self.secrets, runner=self.runner
            )
        except LeaseHeld as exc:
            self._report(ScheduledRun(when, run_id, None, True, str(exc)))
            return
        self.last = state
        self._report(ScheduledRun(when, run_id, state, True))

    def _report(self, run: ScheduledRun) -> None:
        if self.on_run is not None:
            self.on_run(run)


_EPOCH = pendulum.datetime(1970, 1, 1, tz="UTC")


def _ns(when: DateTime) -> int:
    # integer arithmetic: a float timestamp would round the microseconds
    delta = when - _EPOCH
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1_000

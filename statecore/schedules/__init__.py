"""Schedules as Prefect Core 1.x users write them: clocks, filters and adjustments.

Pure: no I/O, and no clock read except :func:`statecore.schedules.clocks.utc_now` when a
caller passes no ``after``. Running a flow on its schedule, durably, is the shell's job
(:func:`statecore.runners.run_on_schedule`, ``flow.run()``, ``statecore run --on-schedule``).

Example:
    >>> import pendulum
    >>> from datetime import timedelta
    >>> from statecore.schedules import IntervalSchedule
    >>> start = pendulum.datetime(2026, 1, 1, tz="UTC")
    >>> schedule = IntervalSchedule(start_date=start, interval=timedelta(hours=1))
    >>> [t.isoformat() for t in schedule.next(2, after=start)]
    ['2026-01-01T01:00:00+00:00', '2026-01-01T02:00:00+00:00']
"""

from __future__ import annotations

from statecore.schedules import adjustments, clocks, filters
from statecore.schedules.clocks import ClockEvent
from statecore.schedules.schedules import CronSchedule, IntervalSchedule, Schedule

__all__ = [
    "ClockEvent",
    "CronSchedule",
    "IntervalSchedule",
    "Schedule",
    "adjustments",
    "clocks",
    "filters",
]

"""Schedule adjustments, as in Prefect Core 1.4.1: ``Callable[[datetime], datetime]``.

Applied in order to each start time that passes the filters.

Example:
    >>> import pendulum
    >>> from datetime import timedelta
    >>> saturday = pendulum.datetime(2026, 1, 3, 9, tz="Europe/Paris")
    >>> next_weekday(saturday).isoformat()
    '2026-01-05T09:00:00+01:00'
    >>> add(timedelta(minutes=30))(saturday).isoformat()
    '2026-01-03T09:30:00+01:00'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pendulum

from statecore.schedules.filters import is_weekday

__all__ = ["Adjustment", "add", "next_weekday"]

Adjustment = Callable[[dt.datetime], dt.datetime]


def add(interval: dt.timedelta) -> Adjustment:
    """Add ``interval``, in elapsed time (a pendulum timedelta addition, as Prefect 1)."""

    def _add(when: dt.datetime) -> dt.datetime:
        return pendulum.instance(when) + interval

    return _add


def next_weekday(when: dt.datetime) -> dt.datetime:
    """Move a Saturday or Sunday to the next Monday, same local time; weekdays unchanged."""
    moved = pendulum.instance(when)
    while not is_weekday(moved):
        moved = moved.add(days=1)
    return moved

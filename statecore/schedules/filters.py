"""Schedule filters, as in Prefect Core 1.4.1: ``Callable[[datetime], bool]``.

A filter sees a dt start time in its clock's time zone (a ``CronClock`` or
``IntervalClock`` with a ``start_date`` in Europe/Paris hands it Paris times), so
``is_weekday`` and ``between_times`` mean local days and hours.

Example:
    >>> import pendulum
    >>> from datetime import time
    >>> monday_9 = pendulum.datetime(2026, 1, 5, 9, tz="Europe/Paris")
    >>> is_weekday(monday_9), is_weekend(monday_9)
    (True, False)
    >>> between_times(time(17), time(10))(monday_9)    # a window across midnight
    True
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable

__all__ = [
    "Filter",
    "at_time",
    "between_dates",
    "between_datetimes",
    "between_times",
    "is_day_of_week",
    "is_month_end",
    "is_month_start",
    "is_weekday",
    "is_weekend",
    "on_date",
    "on_datetime",
]

Filter = Callable[[_dt.datetime], bool]


def on_datetime(when: _dt.datetime) -> Filter:
    """Allow only the instant ``when``."""

    def _on_datetime(dt: _dt.datetime) -> bool:
        return dt == when

    return _on_datetime


def between_datetimes(start: _dt.datetime, end: _dt.datetime) -> Filter:
    """Allow instants from ``start`` to ``end``, both included."""

    def _between_datetimes(dt: _dt.datetime) -> bool:
        return start <= dt <= end

    return _between_datetimes


def on_date(month: int, day: int) -> Filter:
    """Allow one calendar day (``month``, ``day``) in any year."""

    def _on_date(dt: _dt.datetime) -> bool:
        return (dt.month, dt.day) == (month, day)

    return _on_date


def between_dates(start_month: int, start_day: int, end_month: int, end_day: int) -> Filter:
    """Allow the days from (start_month, start_day) to (end_month, end_day), included.

    A start later in the year than the end wraps over New Year, as in Prefect 1:
    ``between_dates(10, 15, 3, 31)`` allows October 15 to March 31.
    """
    start, end = (start_month, start_day), (end_month, end_day)

    def _between_dates(dt: _dt.datetime) -> bool:
        day = (dt.month, dt.day)
        # Prefect 1 compares the months to decide whether the window wraps
        if start_month <= end_month:
            return start <= day <= end
        return day >= start or day <= end

    return _between_dates


def at_time(t: _dt.time) -> Filter:
    """Allow only the time of day ``t`` (local to the clock)."""

    def _at_time(dt: _dt.datetime) -> bool:
        return dt.time() == t

    return _at_time


def between_times(start: _dt.time, end: _dt.time) -> Filter:
    """Allow times of day from ``start`` to ``end``, included; ``start > end`` wraps midnight."""

    def _between_times(dt: _dt.datetime) -> bool:
        t = dt.time()
        if start <= end:
            return start <= t <= end
        return t >= start or t <= end

    return _between_times


def is_weekday(dt: _dt.datetime) -> bool:
    """Monday to Friday."""
    return dt.weekday() < 5


def is_weekend(dt: _dt.datetime) -> bool:
    """Saturday or Sunday."""
    return dt.weekday() > 4


def is_day_of_week(day_of_week: int) -> Filter:
    """Allow one day of the week, numbered as ``datetime.weekday()``: 0 is Monday.

    (Prefect 1's docstring says 0 is Sunday, but its code, followed here, uses
    ``weekday()``.)
    """

    def _is_day_of_week(dt: _dt.datetime) -> bool:
        return dt.weekday() == day_of_week

    return _is_day_of_week


def is_month_start(dt: _dt.datetime) -> bool:
    """The first day of a month."""
    return dt.day == 1


def is_month_end(dt: _dt.datetime) -> bool:
    """The last day of a month."""
    return (dt.date() + _dt.timedelta(days=1)).month != dt.month

"""``Schedule`` and the ``IntervalSchedule``/``CronSchedule`` shorthands (Prefect Core 1.4.1).

A schedule merges its clocks' events in time order (an event two clocks both emit, with
the same parameter defaults, once), keeps those that pass every ``filters``, at least one
of the ``or_filters`` (when there are any) and none of the ``not_filters``, then applies
the ``adjustments`` in order.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal, overload

from pendulum import DateTime

from statecore.schedules.adjustments import Adjustment
from statecore.schedules.clocks import (
    Clock,
    ClockEvent,
    CronClock,
    IntervalClock,
    as_datetime,
    utc_now,
)
from statecore.schedules.filters import Filter

__all__ = ["MAX_CHECKED", "CronSchedule", "IntervalSchedule", "Schedule"]

#: ``next`` gives up after looking at this many clock events (Prefect 1's bound)
MAX_CHECKED = 10_000


class Schedule:
    """Start times from clocks, filtered and adjusted.

    Args:
        clocks: the clocks that emit candidate events.
        filters: every one must pass.
        or_filters: at least one must pass (when any are given).
        not_filters: none may pass.
        adjustments: applied in order to each time that passes.

    Raises:
        TypeError: ``clocks`` is not a list of clocks.

    Example:
        >>> import pendulum
        >>> from datetime import timedelta
        >>> from statecore.schedules import Schedule, filters, adjustments
        >>> from statecore.schedules.clocks import IntervalClock
        >>> start = pendulum.datetime(2026, 1, 2, 9, tz="UTC")          # a Friday
        >>> s = Schedule(clocks=[IntervalClock(timedelta(days=1), start)],
        ...              adjustments=[adjustments.next_weekday])
        >>> [t.format("ddd D") for t in s.next(3, after=start)]
        ['Mon 5', 'Mon 5', 'Mon 5']
        >>> s = Schedule(clocks=[IntervalClock(timedelta(days=1), start)],
        ...              filters=[filters.is_weekday])
        >>> [t.format("ddd D") for t in s.next(3, after=start)]
        ['Mon 5', 'Tue 6', 'Wed 7']
    """

    def __init__(
        self,
        clocks: Sequence[Clock],
        filters: Sequence[Filter] | None = None,
        or_filters: Sequence[Filter] | None = None,
        not_filters: Sequence[Filter] | None = None,
        adjustments: Sequence[Adjustment] | None = None,
    ) -> None:
        if not isinstance(clocks, Iterable) or not all(isinstance(c, Clock) for c in clocks):
            raise TypeError("clocks should be a list of clocks.")
        self.clocks = list(clocks)
        self.filters = list(filters or [])
        self.or_filters = list(or_filters or [])
        self.not_filters = list(not_filters or [])
        self.adjustments = list(adjustments or [])

    def __repr__(self) -> str:
        return f"<Schedule: {len(self.clocks)} clock(s)>"

    @property
    def start_date(self) -> DateTime | None:
        """The earliest of the clocks' start dates."""
        return min((c.start_date for c in self.clocks if c.start_date), default=None)

    @property
    def end_date(self) -> DateTime | None:
        """The latest of the clocks' end dates."""
        return max((c.end_date for c in self.clocks if c.end_date), default=None)

    @overload
    def next(
        self, n: int, after: dt.datetime | None = None, return_events: Literal[False] = False
    ) -> list[DateTime]: ...

    @overload
    def next(
        self, n: int, after: dt.datetime | None, return_events: Literal[True]
    ) -> list[ClockEvent]: ...

    @overload
    def next(
        self, n: int, after: dt.datetime | None = None, *, return_events: Literal[True]
    ) -> list[ClockEvent]: ...

    def next(
        self, n: int, after: dt.datetime | None = None, return_events: bool = False
    ) -> list[DateTime] | list[ClockEvent]:
        """The next ``n`` start times strictly after ``after`` (default: now).

        Stops after looking at 10,000 clock events, however few passed the filters (as
        Prefect 1 does). Adjusted times are as the adjustments make them: ``next_weekday``
        can turn a weekend into a Monday that is already in the list.

        Args:
            n: how many.
            after: the times returned are later than this (naive: UTC).
            return_events: return :class:`ClockEvent` s (with ``parameter_defaults``)
                instead of times.
        """
        events = list(itertools.islice(self.events(after), n)) if n > 0 else []
        if return_events:
            return events
        return [e.start_time for e in events]

    def events(self, after: dt.datetime | None = None) -> Iterator[ClockEvent]:
        """The schedule's events after ``after``, filtered and adjusted, lazily.

        Like :meth:`next` (and bounded the same way), for callers that do not know how
        many they need.
        """
        after_ = utc_now() if after is None else as_datetime(after)
        merged = heapq.merge(*(clock.events(after=after_) for clock in self.clocks))
        for checked, (_, same) in enumerate(itertools.groupby(merged), start=1):
            if checked > MAX_CHECKED:
                return
            event = next(same)
            if self._passes(event.start_time):
                yield ClockEvent(
                    self._adjust(event.start_time), event.parameter_defaults, event.labels
                )

    def _passes(self, when: DateTime) -> bool:
        if not all(f(when) for f in self.filters):
            return False
        if self.or_filters and not any(f(when) for f in self.or_filters):
            return False
        return not any(f(when) for f in self.not_filters)

    def _adjust(self, when: DateTime) -> dt.datetime:
        adjusted: dt.datetime = when
        for adjustment in self.adjustments:
            adjusted = adjustment(adjusted)
        return adjusted


def IntervalSchedule(  # Prefect 1 spells this function like a class
    start_date: dt.datetime | None = None,
    interval: dt.timedelta | None = None,
    end_date: dt.datetime | None = None,
) -> Schedule:
    """A schedule of one :class:`IntervalClock` (Prefect 1's argument order).

    Raises:
        TypeError: ``interval`` is missing or not a timedelta.
        ValueError: ``interval`` is not positive.
    """
    if interval is None:
        raise TypeError("IntervalSchedule needs an interval (a timedelta)")
    return Schedule(clocks=[IntervalClock(interval, start_date=start_date, end_date=end_date)])


def CronSchedule(  # Prefect 1 spells this function like a class
    cron: str,
    start_date: dt.datetime | None = None,
    end_date: dt.datetime | None = None,
    day_or: bool | None = None,
) -> Schedule:
    """A schedule of one :class:`CronClock`.

    Raises:
        ValueError: the cron expression is invalid.
        ImportError: croniter is not installed (``pip install statecore[cron]``).
    """
    return Schedule(
        clocks=[CronClock(cron, start_date=start_date, end_date=end_date, day_or=day_or)]
    )

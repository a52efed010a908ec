"""Clocks: the sources of a schedule's candidate start times, as in Prefect Core 1.4.1.

A clock's :meth:`Clock.events` yields :class:`ClockEvent` s strictly after ``after``, in
order. Times are aware :class:`pendulum.DateTime` s in the clock's time zone (its
``start_date``'s; UTC without one). Nothing here reads the clock except :func:`utc_now`,
the one documented spot, and only when ``after`` is None; the scheduling loop always
passes ``after``.

DST, as Prefect 1 does it:

* :class:`IntervalClock` adds ``interval * k`` to ``start_date`` with pendulum: a
  whole-days part in wall-clock time of the start's time zone, and the rest in elapsed
  time when there are no whole days. A daily clock at 09:00 stays at 09:00 local across a
  DST change; an hourly clock near its start fires every elapsed hour.
* :class:`CronClock` matches the cron expression against wall-clock times in the start's
  time zone: a wall time that occurs twice (clocks set back) fires once, at its second
  occurrence; one that does not exist (clocks set forward) moves forward by the gap, and
  fires once even if that lands on another match.
* :class:`RRuleClock` leaves recurrence to ``dateutil.rrule``: its times are the rule's
  own, in the rule's ``dtstart`` time zone (naive ones are UTC).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import pendulum
from pendulum import DateTime

__all__ = [
    "Clock",
    "ClockEvent",
    "CronClock",
    "DatesClock",
    "IntervalClock",
    "RRuleClock",
    "utc_now",
]

#: Prefect 1's start date for an IntervalClock without one
DEFAULT_START = pendulum.datetime(2019, 1, 1, tz="UTC")


def utc_now() -> DateTime:
    """The current time in UTC: the only clock read in ``statecore.schedules``.

    Called only when ``next``/``events`` get ``after=None``, as Prefect 1 does; the
    scheduling loop passes its own (injectable) clock's time instead.
    """
    return pendulum.now("UTC")


def as_datetime(value: dt.datetime) -> DateTime:
    """``value`` as an aware pendulum DateTime (a naive one is taken as UTC, as Prefect 1)."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return pendulum.instance(value)


class ClockEvent:
    """A candidate start time with the clock's parameter defaults and labels.

    Compares with datetimes and other events by ``start_time``; two events are equal when
    start time, parameter defaults and labels are (Prefect 1.4.1's rules).

    Attributes:
        start_time: the aware start time.
        parameter_defaults: parameter values for runs on this event.
        labels: labels for runs on this event (kept for Prefect 1 parity; unused).
    """

    __slots__ = ("labels", "parameter_defaults", "start_time")
    __hash__ = None  # type: ignore[assignment]  # equal events may differ in dict contents

    def __init__(
        self,
        start_time: dt.datetime,
        parameter_defaults: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
    ) -> None:
        self.start_time: DateTime = as_datetime(start_time)
        self.parameter_defaults: dict[str, Any] = dict(parameter_defaults or {})
        self.labels = labels

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dt.datetime):
            return self.start_time == other
        if isinstance(other, ClockEvent):
            return (
                self.start_time == other.start_time
                and self.parameter_defaults == other.parameter_defaults
                and self.labels == other.labels
            )
        return False

    def __lt__(self, other: ClockEvent | dt.datetime) -> bool:
        return self.start_time < _time_of(other, "<")

    def __gt__(self, other: ClockEvent | dt.datetime) -> bool:
        return self.start_time > _time_of(other, ">")

    def __repr__(self) -> str:
        return f"<ClockEvent {self.start_time.isoformat()} {self.parameter_defaults!r}>"


def _time_of(other: object, op: str) -> dt.datetime:
    if isinstance(other, ClockEvent):
        return other.start_time
    if isinstance(other, dt.datetime):
        return other
    raise TypeError(
        f"'{op}' not supported between instances of 'ClockEvent' and {type(other).__name__}"
    )


class Clock:
    """Base class for clocks.

    Args:
        start_date: no event before this time.
        end_date: no event after this time.
        parameter_defaults: parameter values for runs on this clock's events.
        labels: labels carried by the events.
    """

    def __init__(
        self,
        start_date: dt.datetime | None = None,
        end_date: dt.datetime | None = None,
        parameter_defaults: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
    ) -> None:
        self.start_date = None if start_date is None else as_datetime(start_date)
        self.end_date = None if end_date is None else as_datetime(end_date)
        self.parameter_defaults: dict[str, Any] = dict(parameter_defaults or {})
        self.labels = labels

    def events(self, after: dt.datetime | None = None) -> Iterator[ClockEvent]:
        """Events strictly after ``after`` (default: now), in order.

        Raises:
            NotImplementedError: on the base class.
        """
        raise NotImplementedError("Must be implemented on Clock subclasses")

    def _event(self, start_time: DateTime) -> ClockEvent:
        return ClockEvent(start_time, self.parameter_defaults, self.labels)

    def _past_end(self, start_time: DateTime) -> bool:
        return self.end_date is not None and start_time > self.end_date


class IntervalClock(Clock):
    """Fires every ``interval`` from ``start_date`` (default 2019-01-01 00:00 UTC).

    Args:
        interval: a positive timedelta.
        start_date: the first event; its time zone rules DST (see the module docstring).
        end_date: no event after this time.
        parameter_defaults: parameter values for runs on this clock's events.
        labels: labels carried by the events.

    Raises:
        TypeError: ``interval`` is not a timedelta.
        ValueError: ``interval`` is not positive.
    """

    def __init__(
        self,
        interval: dt.timedelta,
        start_date: dt.datetime | None = None,
        end_date: dt.datetime | None = None,
        parameter_defaults: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
    ) -> None:
        if not isinstance(interval, dt.timedelta):
            raise TypeError("Interval must be a timedelta.")
        if interval <= dt.timedelta(0):
            raise ValueError("Interval must be greater than 0.")
        self.interval = interval
        super().__init__(start_date, end_date, parameter_defaults, labels)

    def events(self, after: dt.datetime | None = None) -> Iterator[ClockEvent]:
        """Events strictly after ``after`` (default: now), in order."""
        start = self.start_date or DEFAULT_START
        after_ = utc_now() if after is None else as_datetime(after)
        # Skip the whole intervals before ``after`` in elapsed time, as Prefect 1 does
        # (integer microseconds here, so a long-running clock does not drift by rounding).
        elapsed = _micros(after_ - start)
        step = _micros(self.interval)
        k = 0 if elapsed < 0 else elapsed // step + 1
        while True:
            offset = self.interval * k
            k += 1
            # Days in wall-clock time and the rest on top, by pendulum's rules: this is what
            # keeps a daily clock at the same local hour across a DST change.
            rest = offset - dt.timedelta(days=offset.days)
            when = start.add(days=offset.days, seconds=rest.seconds, microseconds=rest.microseconds)
            # Prefect 1 skips only times before ``after`` and so can return ``after``
            # itself after a DST change; strictly after is what ``next`` promises.
            if when <= after_:
                continue
            if self._past_end(when):
                return
            yield self._event(when)


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise ImportError("cron schedules need croniter: pip install statecore[cron]") from None
    return croniter


class CronClock(Clock):
    """Fires at the times a cron expression matches, in ``start_date``'s time zone.

    Args:
        cron: a cron expression (``croniter`` syntax).
        start_date: no event before it; its time zone is the cron's (default UTC).
        end_date: no event after this time.
        parameter_defaults: parameter values for runs on this clock's events.
        labels: labels carried by the events.
        day_or: True (default, as cron): day-of-month OR day-of-week; False: AND.

    Raises:
        ValueError: the cron expression is invalid.
        ImportError: ``croniter`` is not installed (``pip install statecore[cron]``).
    """

    def __init__(
        self,
        cron: str,
        start_date: dt.datetime | None = None,
        end_date: dt.datetime | None = None,
        parameter_defaults: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
        day_or: bool | None = None,
    ) -> None:
        if not isinstance(cron, str) or not _croniter().is_valid(cron):
            raise ValueError(f"Invalid cron string: {cron}")
        self.cron = cron
        self.day_or = True if day_or is None else day_or
        super().__init__(start_date, end_date, parameter_defaults, labels)

    @property
    def tz(self) -> Any:
        """The time zone the expression is read in."""
        return self.start_date.tz if self.start_date is not None else pendulum.UTC

    def events(self, after: dt.datetime | None = None) -> Iterator[ClockEvent]:
        """Events strictly after ``after`` (default: now), in order."""
        from croniter import CroniterBadDateError

        tz = self.tz
        after_ = (utc_now() if after is None else as_datetime(after)).in_tz(tz)
        # start_date itself is a valid event: look from just before it
        if self.start_date is not None and after_ < self.start_date:
            after_ = (self.start_date - dt.timedelta(microseconds=1)).in_tz(tz)
        # A wall time about to repeat (clocks set back) can match after ``after`` although
        # it reads earlier: start the naive search back by the coming offset change.
        back = after_.utcoffset() - after_.add(days=1).utcoffset()  # type: ignore[operator]
        naive = after_.naive() - max(back, dt.timedelta(0)) - dt.timedelta(seconds=1)
        matches = _croniter()(self.cron, naive, day_or=self.day_or)
        last: DateTime = after_
        while True:
            try:
                wall: dt.datetime = matches.get_next(dt.datetime)
            except CroniterBadDateError:
                return  # the expression never matches again (e.g. 30 February)
            # pendulum resolves a repeated wall time to its second occurrence and a missing
            # one forward by the gap: Prefect 1's results in both cases
            when = pendulum.datetime(
                wall.year,
                wall.month,
                wall.day,
                wall.hour,
                wall.minute,
                wall.second,
                wall.microsecond,
                tz=tz,
            )
            if when <= last:
                continue  # before ``after``, or a DST duplicate
            if self._past_end(when):
                return
            last = when
            yield self._event(when)


class DatesClock(Clock):
    """Fires at each of the given dates.

    Args:
        dates: the start times (naive ones are UTC).
        parameter_defaults: parameter values for runs on this clock's events.
        labels: labels carried by the events.

    Raises:
        ValueError: ``dates`` is empty.
    """

    def __init__(
        self,
        dates: list[dt.datetime],
        parameter_defaults: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
    ) -> None:
        if not dates:
            raise ValueError("DatesClock needs at least one date")
        self.dates = sorted(as_datetime(d) for d in dates)
        super().__init__(self.dates[0], self.dates[-1], parameter_defaults, labels)

    def events(self, after: dt.datetime | None = None) -> Iterator[ClockEvent]:
        """Events strictly after ``after`` (default: now), in order."""
        after_ = utc_now() if after is None else as_datetime(after)
        for when in self.dates:
            if when > after_:
                yield self._event(when)


class RRuleClock(Clock):
    """Fires at the times of an iCalendar recurrence rule (``dateutil.rrule``).

    Args:
        rrule_obj: a ``dateutil.rrule.rrule`` or ``rruleset``; its times are used as they
            are (naive ones are UTC).
        start_date: no event before it; ``start_date`` itself is an event if the rule has it.
        end_date: no event after this time.
        parameter_defaults: parameter values for runs on this clock's events.
        labels: labels carried by the events.

    Raises:
        TypeError: ``rrule_obj`` is not an rrule or rruleset.

    Example:
        >>> import pendulum
        >>> from dateutil import rrule
        >>> start = pendulum.datetime(2026, 1, 1, 9, tz="UTC")
        >>> clock = RRuleClock(rrule.rrule(rrule.WEEKLY, byweekday=rrule.MO, dtstart=start))
        >>> [e.start_time.isoformat() for e in clock.events(after=start)][:2]
        ['2026-01-05T09:00:00+00:00', '2026-01-12T09:00:00+00:00']
    """

    def __init__(
        self,
        rrule_obj: Any,
        start_date: dt.datetime | None = None,
        end_date: dt.datetime | None = None,
        parameter_defaults: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
    ) -> None:
        if not isinstance(rrule_obj, _rrulebase()):
            raise TypeError(f"rrule_obj must be an rrule or rruleset, got: {rrule_obj!r}")
        self.rrule_obj: Any = rrule_obj
        super().__init__(start_date, end_date, parameter_defaults, labels)

    def events(self, after: dt.datetime | None = None) -> Iterator[ClockEvent]:
        """Events after ``after`` (default: from now on, now included), in order; from
        ``start_date`` on, ``start_date`` included."""
        inclusive = after is None
        after_ = utc_now() if after is None else as_datetime(after)
        if self.start_date is not None and after_ < self.start_date:
            after_, inclusive = self.start_date, True
        # a rule of naive times cannot be compared with an aware one: ask it in naive UTC
        first: dt.datetime | None = next(iter(self.rrule_obj), None)
        bound: dt.datetime = after_
        if first is not None and first.tzinfo is None:
            bound = after_.in_tz("UTC").naive()
        for raw in self.rrule_obj.xafter(bound, inc=inclusive):
            when = as_datetime(raw)
            if self._past_end(when):
                return
            yield self._event(when)


def _rrulebase() -> type | tuple[()]:
    """dateutil's rule base class; imported only here, as only a rule's owner needs it
    (without dateutil nothing can be a rule: the empty tuple matches no instance)."""
    try:
        from dateutil.rrule import rrulebase  # type: ignore[import-untyped]  # no stubs
    except ImportError:
        return ()
    base: type = rrulebase
    return base

"""Schedule arithmetic against Prefect Core 1.4.1.

The expected values come from reading Prefect 1.4.1's ``src/prefect/schedules/`` and
its own tests (``tests/schedules/test_clocks.py``: the New York DST cases and the
Santiago cron case are theirs); the one deliberate difference (strictly after ``after``)
is tested as such.
"""

from __future__ import annotations

import ast
import sys
from datetime import UTC, datetime, time, timedelta
from itertools import islice, pairwise
from pathlib import Path

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statecore.schedules import (
    ClockEvent,
    CronSchedule,
    IntervalSchedule,
    Schedule,
    adjustments,
    filters,
)
from statecore.schedules.clocks import CronClock, DatesClock, IntervalClock

NY = "America/New_York"
PARIS = "Europe/Paris"


def hours(clock: IntervalClock | CronClock, after: datetime, tz: str) -> tuple[list[int], ...]:
    events = list(islice(clock.events(after=after), 4))
    return (
        [e.start_time.in_tz(tz).hour for e in events],
        [e.start_time.in_tz("UTC").hour for e in events],
    )


# -- IntervalClock ----------------------------------------------------------------------


def test_interval_hourly_across_dst_forward_is_every_utc_hour() -> None:
    start = pendulum.datetime(2018, 3, 10, 23, tz=NY)
    clock = IntervalClock(timedelta(hours=1), start_date=start)
    assert hours(clock, start, NY) == ([0, 1, 3, 4], [5, 6, 7, 8])


def test_interval_hourly_across_dst_backward_repeats_1am_local() -> None:
    start = pendulum.datetime(2018, 11, 3, 23, tz=NY)
    clock = IntervalClock(timedelta(hours=1), start_date=start)
    assert hours(clock, start, NY) == ([0, 1, 1, 2], [4, 5, 6, 7])


@pytest.mark.parametrize(
    ("day", "utc_hours"), [((2018, 3, 8), [14, 14, 13, 13]), ((2018, 11, 1), [13, 13, 14, 14])]
)
def test_interval_daily_keeps_the_local_hour_across_dst(
    day: tuple[int, int, int], utc_hours: list[int]
) -> None:
    start = pendulum.datetime(*day, 9, tz=NY)
    clock = IntervalClock(timedelta(days=1), start_date=start)
    assert hours(clock, start, NY) == ([9, 9, 9, 9], utc_hours)


def test_interval_daily_is_strictly_after_a_slot_after_dst() -> None:
    # Prefect 1 skips only times *before* ``after``; months after a DST change its
    # elapsed-time skip lands on ``after`` itself and returns it. statecore does not.
    start = pendulum.datetime(2026, 1, 1, 9, tz=PARIS)
    slot = pendulum.datetime(2026, 4, 1, 9, tz=PARIS)
    schedule = IntervalSchedule(start_date=start, interval=timedelta(days=1))
    assert schedule.next(2, after=slot) == [slot.add(days=1), slot.add(days=2)]


def test_interval_after_mid_interval_before_start_end_date_and_microseconds() -> None:
    start = pendulum.datetime(2018, 1, 1)
    hourly = IntervalClock(timedelta(hours=1), start_date=start)
    after = start + timedelta(microseconds=1)
    assert [e.start_time for e in islice(hourly.events(after=after), 2)] == [
        start.add(hours=1),
        start.add(hours=2),
    ]
    early = pendulum.datetime(2000, 1, 1)
    assert [e.start_time for e in islice(hourly.events(after=early), 2)] == [
        start,
        start.add(hours=1),
    ]
    daily = IntervalClock(timedelta(days=1), start_date=start, end_date=start.add(days=1))
    assert [e.start_time for e in daily.events(after=start)] == [start.add(days=1)]
    assert list(daily.events(after=pendulum.datetime(2018, 2, 1))) == []
    micro = pendulum.datetime(2018, 1, 1, 0, 0, 0, 1)
    clock = IntervalClock(timedelta(hours=1), start_date=micro)
    assert next(iter(clock.events(after=early))).start_time == micro


def test_interval_default_start_is_2019_utc_and_interval_must_be_positive() -> None:
    clock = IntervalClock(timedelta(days=1))
    first = next(iter(clock.events(after=pendulum.datetime(2018, 6, 1))))
    assert first.start_time == pendulum.datetime(2019, 1, 1, tz="UTC")
    with pytest.raises(ValueError, match="greater than 0"):
        IntervalClock(timedelta(0))
    with pytest.raises(TypeError, match="timedelta"):
        IntervalClock(3600)  # type: ignore[arg-type]


# -- CronClock --------------------------------------------------------------------------


def test_cron_hourly_dst_forward_skips_2am() -> None:
    start = pendulum.datetime(2018, 3, 10, 23, tz=NY)
    assert hours(CronClock("0 * * * *", start), start, NY) == ([0, 1, 3, 4], [5, 6, 7, 8])
    # with a UTC start the cron is read in UTC: DST does not matter
    utc = CronClock("0 * * * *", start.in_tz("UTC"))
    assert hours(utc, start, NY) == ([0, 1, 3, 4], [5, 6, 7, 8])


def test_cron_hourly_dst_backward_fires_1am_once() -> None:
    start = pendulum.datetime(2018, 11, 3, 23, tz=NY)
    assert hours(CronClock("0 * * * *", start), start, NY) == ([0, 1, 2, 3], [4, 6, 7, 8])


@pytest.mark.parametrize(
    ("day", "utc_hours"), [((2018, 3, 8), [14, 14, 13, 13]), ((2018, 11, 1), [13, 13, 14, 14])]
)
def test_cron_daily_9am_in_a_time_zone(day: tuple[int, int, int], utc_hours: list[int]) -> None:
    start = pendulum.datetime(*day, 9, tz=NY)
    assert hours(CronClock("0 9 * * *", start), start, NY) == ([9, 9, 9, 9], utc_hours)


def test_cron_santiago_midnight_dst() -> None:
    start = pendulum.datetime(2022, 8, 21, 10, tz="America/Santiago")
    events = islice(CronClock("0 0 * * 0", start).events(after=start), 4)
    assert [e.start_time.in_tz("America/Santiago").day for e in events] == [28, 4, 11, 18]


def test_cron_schedule_weekdays_at_9_paris() -> None:
    schedule = CronSchedule("0 9 * * 1-5", start_date=pendulum.datetime(2026, 1, 1, tz=PARIS))
    times = schedule.next(3, after=pendulum.datetime(2026, 3, 27, tz="UTC"))
    assert [t.isoformat() for t in times] == [
        "2026-03-27T09:00:00+01:00",
        "2026-03-30T09:00:00+02:00",  # over the weekend and the DST change: still 9 local
        "2026-03-31T09:00:00+02:00",
    ]


def test_cron_start_date_end_date_alignment_and_microseconds() -> None:
    start = pendulum.datetime(2050, 1, 1)
    daily = CronClock("0 0 * * *", start_date=start, end_date=start.add(days=1))
    assert [e.start_time for e in daily.events(after=pendulum.datetime(2000, 1, 1))] == [
        start,
        start.add(days=1),
    ]
    late = CronClock("0 0 * * *", start_date=pendulum.datetime(2050, 1, 1, 6))
    assert next(iter(late.events(after=pendulum.datetime(2000, 1, 1)))).start_time == (
        pendulum.datetime(2050, 1, 2)
    )
    micro = CronClock("0 0 * * *", start_date=pendulum.datetime(2050, 1, 1, 0, 0, 0, 1))
    assert next(iter(micro.events(after=pendulum.datetime(2000, 1, 1)))).start_time == (
        pendulum.datetime(2050, 1, 2)
    )


def test_cron_day_or_false_means_and() -> None:
    first_tuesdays = CronClock("0 0 1-7 * 2", day_or=False)
    events = islice(first_tuesdays.events(after=pendulum.datetime(2026, 1, 1)), 3)
    assert [e.start_time.date().isoformat() for e in events] == [
        "2026-01-06",
        "2026-02-03",
        "2026-03-03",
    ]
    either = CronClock("0 0 1-7 * 2")
    assert len(list(islice(either.events(after=pendulum.datetime(2026, 1, 1)), 9))) == 9
    assert CronClock("0 0 * * *").day_or is True


def test_cron_invalid_and_missing_croniter(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="Invalid cron string"):
        CronClock("every day")
    monkeypatch.setitem(sys.modules, "croniter", None)
    with pytest.raises(ImportError, match=r"pip install statecore\[cron\]"):
        CronSchedule("0 9 * * *")


# -- DatesClock -------------------------------------------------------------------------


def test_dates_clock_sorted_strictly_after_with_parameters() -> None:
    d1, d2, d3 = (pendulum.datetime(2026, 1, d) for d in (3, 1, 2))
    clock = DatesClock([d1, d2, d3], parameter_defaults={"x": 1})
    assert clock.start_date == d2 and clock.end_date == d1
    events = list(clock.events(after=d2))
    assert events == [d3, d1]
    assert all(e.parameter_defaults == {"x": 1} for e in events)
    naive = DatesClock([datetime(2026, 1, 1)])
    assert next(iter(naive.events(after=datetime(2025, 1, 1, tzinfo=UTC)))).start_time == (
        pendulum.datetime(2026, 1, 1, tz="UTC")
    )
    with pytest.raises(ValueError):
        DatesClock([])


# -- Schedule: merge, filters, adjustments, next ----------------------------------------


def test_clock_events_compare_like_prefect_1() -> None:
    t = pendulum.datetime(2026, 1, 1)
    assert ClockEvent(t) == t
    assert ClockEvent(t, {"x": 1}) != ClockEvent(t, {"x": 2})
    assert ClockEvent(t) < ClockEvent(t.add(hours=1)) and ClockEvent(t.add(hours=1)) > t
    with pytest.raises(TypeError):
        _ = ClockEvent(t) < 3  # type: ignore[operator]


def test_next_is_strictly_after_and_returns_events_with_parameter_defaults() -> None:
    start = pendulum.datetime(2026, 1, 1, tz="UTC")
    schedule = Schedule(
        clocks=[
            IntervalClock(timedelta(hours=1), start, parameter_defaults={"x": 1}),
            DatesClock([start.add(minutes=30)], parameter_defaults={"x": 2}),
        ]
    )
    events = schedule.next(3, after=start, return_events=True)
    assert [(e.start_time.format("HH:mm"), e.parameter_defaults) for e in events] == [
        ("00:30", {"x": 2}),
        ("01:00", {"x": 1}),
        ("02:00", {"x": 1}),
    ]
    assert schedule.next(1, after=start.add(hours=1)) == [start.add(hours=2)]
    assert schedule.start_date == start and schedule.end_date == start.add(minutes=30)


def test_two_clocks_with_the_same_event_yield_it_once() -> None:
    start = pendulum.datetime(2026, 1, 1, tz="UTC")
    same = [IntervalClock(timedelta(hours=1), start), IntervalClock(timedelta(hours=2), start)]
    assert [t.hour for t in Schedule(same).next(4, after=start)] == [1, 2, 3, 4]
    other = [
        IntervalClock(timedelta(hours=1), start, parameter_defaults={"a": 1}),
        IntervalClock(timedelta(hours=1), start, parameter_defaults={"a": 2}),
    ]
    assert [t.hour for t in Schedule(other).next(4, after=start)] == [1, 1, 2, 2]


def test_filters_or_filters_not_filters_and_adjustments_combined() -> None:
    start = pendulum.datetime(2026, 1, 1, tz=PARIS)  # a Thursday
    schedule = Schedule(
        clocks=[IntervalClock(timedelta(hours=1), start)],
        filters=[filters.is_weekday],
        or_filters=[filters.at_time(time(9)), filters.at_time(time(17))],
        not_filters=[filters.on_date(1, 2)],
        adjustments=[adjustments.add(timedelta(minutes=15))],
    )
    assert [t.format("ddd D HH:mm") for t in schedule.next(4, after=start)] == [
        "Thu 1 09:15",
        "Thu 1 17:15",
        "Mon 5 09:15",  # Fri 2 is excluded by the not_filter, then the weekend
        "Mon 5 17:15",
    ]


def test_next_weekday_keeps_the_local_time_and_can_repeat_a_monday() -> None:
    start = pendulum.datetime(2026, 1, 2, 9, tz=PARIS)  # a Friday
    schedule = Schedule(
        clocks=[IntervalClock(timedelta(days=1), start)], adjustments=[adjustments.next_weekday]
    )
    assert [t.format("ddd D HH:mm") for t in schedule.next(4, after=start)] == [
        "Mon 5 09:00",
        "Mon 5 09:00",
        "Mon 5 09:00",
        "Tue 6 09:00",
    ]


def test_next_gives_up_after_10000_events() -> None:
    start = pendulum.datetime(2026, 1, 1, tz="UTC")
    never = Schedule([IntervalClock(timedelta(minutes=1), start)], filters=[filters.on_date(2, 30)])
    assert never.next(1, after=start) == []


def test_filters() -> None:
    sat = pendulum.datetime(2026, 1, 31, 23, 30, tz=PARIS)
    assert filters.is_weekend(sat) and not filters.is_weekday(sat)
    assert filters.is_month_end(sat) and not filters.is_month_start(sat)
    assert filters.is_month_start(sat.add(days=1))
    assert filters.between_times(time(23), time(1))(sat)
    assert not filters.between_times(time(1), time(23))(sat)
    assert filters.between_dates(10, 15, 3, 31)(sat)
    assert not filters.between_dates(4, 1, 10, 14)(sat)
    assert filters.on_date(1, 31)(sat)
    assert filters.on_datetime(sat)(sat.in_tz("UTC"))
    assert filters.between_datetimes(sat, sat.add(hours=1))(sat)
    assert filters.at_time(time(23, 30))(sat)
    assert filters.is_day_of_week(5)(sat)  # weekday(): Monday is 0


def test_schedule_needs_clocks() -> None:
    with pytest.raises(TypeError, match="list of clocks"):
        Schedule(clocks=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        IntervalSchedule(start_date=pendulum.datetime(2026, 1, 1))


# -- properties -------------------------------------------------------------------------

ZONES = st.sampled_from(["UTC", NY, PARIS, "Australia/Lord_Howe", "Asia/Kolkata"])
MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1))


@settings(max_examples=150, deadline=None)
@given(
    interval=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=9)),
    start=MOMENTS,
    after=MOMENTS,
    tz=ZONES,
)
def test_interval_times_are_strictly_increasing_and_after(
    interval: timedelta, start: datetime, after: datetime, tz: str
) -> None:
    schedule = IntervalSchedule(pendulum.instance(start, tz=tz), interval)
    after_ = pendulum.instance(after, tz="UTC")
    times = schedule.next(5, after=after_)
    assert len(times) == 5
    assert all(t > after_ for t in times)
    assert all(a < b for a, b in pairwise(times))


CRONS = st.sampled_from(["0 * * * *", "30 2 * * *", "*/20 1-3 * * *", "0 9 * * 1-5", "0 0 1 * *"])
FILTERS = st.lists(
    st.sampled_from(
        [
            filters.is_weekday,
            filters.is_weekend,
            filters.between_times(time(1), time(4)),
            filters.between_dates(3, 1, 11, 30),
            filters.is_month_start,
        ]
    ),
    max_size=2,
)


@settings(max_examples=100, deadline=None)
@given(cron=CRONS, after=MOMENTS, tz=ZONES, chosen=FILTERS)
def test_cron_times_increase_and_pass_the_filters(
    cron: str, after: datetime, tz: str, chosen: list[filters.Filter]
) -> None:
    start = pendulum.datetime(2000, 1, 1, tz=tz)
    schedule = Schedule([CronClock(cron, start)], filters=chosen)
    after_ = pendulum.instance(after, tz="UTC")
    times = schedule.next(4, after=after_)
    assert all(t > after_ for t in times)
    assert all(a < b for a, b in pairwise(times))
    assert all(f(t) for t in times for f in chosen)


# -- purity -----------------------------------------------------------------------------

SCHEDULES = Path(__file__).resolve().parent.parent.parent / "statecore" / "schedules"


def test_the_only_clock_read_is_utc_now() -> None:
    reads: list[str] = []
    for path in sorted(SCHEDULES.glob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                called = ast.unparse(node.func)
                # ``candidate.time()`` is a datetime's time of day, not the clock
                if node.func.attr in {"now", "today", "utcnow", "monotonic"} or called in {
                    "time.time",
                    "time.time_ns",
                }:
                    reads.append(f"{path.name}:{fn.name}")
    assert reads == ["clocks.py:utc_now"]

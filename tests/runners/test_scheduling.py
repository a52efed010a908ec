"""Running flows on their schedules, durably: one run per slot, resumed after a crash.

Every test injects the clock and the sleep (a fake clock that sleeping advances): no
test waits on real time or asserts on durations.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from click.testing import CliRunner

from statecore import Flow, Parameter, context, task
from statecore.backends import MemoryStore, SQLiteStore
from statecore.cli.main import cli
from statecore.runners import replay, run_on_schedule
from statecore.runners import scheduling as scheduling_module
from statecore.runners.scheduling import ScheduledRun, slot_run_id, slot_time
from statecore.schedules import IntervalSchedule, Schedule
from statecore.schedules.clocks import DatesClock, IntervalClock
from statecore.states import State

START = pendulum.datetime(2026, 1, 1, tz="UTC")
FLOWS = Path(__file__).parent.parent / "flows" / "scheduled.py"


class FakeClock:
    """A clock that only moves when the loop sleeps (or a test moves it)."""

    def __init__(self, now: datetime) -> None:
        self.now_ = pendulum.instance(now)
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.now_

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now_ = self.now_ + timedelta(seconds=seconds)

    def run(
        self, flow: Flow, schedule: Schedule, **options: Any
    ) -> tuple[State | None, list[ScheduledRun]]:
        """``run_on_schedule`` on this clock: its result and the slots it reported."""
        seen: list[ScheduledRun] = []
        last = run_on_schedule(
            flow, schedule, now=self.now, sleep=self.sleep, on_run=seen.append, **options
        )
        return last, seen


def ns(when: datetime) -> int:
    return int(pendulum.instance(when).timestamp()) * 1_000_000_000


def make_flow(calls: list[tuple[Any, ...]], *, crash_on: set[int] | None = None) -> Flow:
    crash = crash_on if crash_on is not None else set()

    @task
    def work(x: int, y: str) -> int:
        slot = context["scheduled_start_time"]
        calls.append((slot, x, y))
        if len(calls) in crash:
            raise KeyboardInterrupt  # the process dies mid-run: the task stays Running
        return x

    with Flow("etl") as flow:
        work(Parameter("x", default=0), Parameter("y", default="d"))
    return flow


def hourly(**defaults: Any) -> Schedule:
    return Schedule([IntervalClock(timedelta(hours=1), START, parameter_defaults=defaults)])


def test_runs_each_slot_once_with_slot_ids_context_and_parameters() -> None:
    calls: list[tuple[Any, ...]] = []
    flow = make_flow(calls)
    store = MemoryStore()
    clock = FakeClock(START.add(minutes=30))
    state, seen = clock.run(
        flow, hourly(x=5, y="clock"), parameters={"y": "explicit"}, store=store, max_runs=3
    )
    assert state is not None and state.is_successful()
    slots = [START.add(hours=h) for h in (1, 2, 3)]
    assert [r.run_id for r in seen] == [f"etl@2026-01-01T0{h}:00:00Z" for h in (1, 2, 3)]
    assert [r.start_time for r in seen] == slots
    # the clock's defaults sit under the run's parameters; context has the slot's time
    assert calls == [(ns(t), 5, "explicit") for t in slots]
    assert clock.slept == [1800.0, 3600.0, 3600.0]
    for r in seen:
        assert replay(store, r.run_id).parameters == {"x": 5, "y": "explicit"}


def test_a_restart_resumes_the_interrupted_slot_instead_of_starting_another(
    tmp_path: Path,
) -> None:
    calls: list[tuple[Any, ...]] = []
    store = SQLiteStore(tmp_path / "runs.db")
    clock = FakeClock(START.add(minutes=59))
    with pytest.raises(KeyboardInterrupt):
        run_on_schedule(
            make_flow(calls, crash_on={1}), hourly(), store=store, now=clock.now, sleep=clock.sleep
        )
    slot = slot_run_id("etl", START.add(hours=1))
    assert not replay(store, slot).finished()
    # restarted after the slot's time: the slot's run is resumed, not run anew or skipped
    clock.now_ = START.add(hours=1, minutes=10)
    _, seen = clock.run(make_flow(calls), hourly(), store=store, max_runs=2)
    assert [(r.run_id, r.resumed) for r in seen] == [
        (slot, True),
        (slot_run_id("etl", START.add(hours=2)), False),
    ]
    assert [c[0] for c in calls] == [ns(START.add(hours=1))] * 2 + [ns(START.add(hours=2))]
    assert replay(store, slot).flow_state.is_successful()
    assert len(store.list_runs(flow_name="etl")) == 2


def test_a_finished_slot_is_not_run_again_and_missed_slots_are_skipped() -> None:
    calls: list[tuple[Any, ...]] = []
    flow = make_flow(calls)
    store = MemoryStore()
    clock = FakeClock(START.add(minutes=30))
    clock.run(flow, hourly(), store=store, max_runs=1)
    # down for three hours: the slots at 2:00, 3:00 and 4:00 are not run (Prefect 1)
    clock.now_ = START.add(hours=4, minutes=30)
    _, seen = clock.run(flow, hourly(), store=store, max_runs=1)
    assert [r.start_time for r in seen] == [START.add(hours=5)]
    assert len(calls) == 2


def test_catch_up_runs_the_missed_slots_in_order() -> None:
    calls: list[tuple[Any, ...]] = []
    flow = make_flow(calls)
    store = MemoryStore()
    clock = FakeClock(START.add(minutes=30))
    clock.run(flow, hourly(), store=store, max_runs=1)
    clock.now_ = START.add(hours=3, minutes=30)
    _, seen = clock.run(flow, hourly(), store=store, catch_up=True, until=START.add(hours=3))
    assert [r.start_time.hour for r in seen] == [2, 3]
    assert [c[0] for c in calls] == [ns(START.add(hours=h)) for h in (1, 2, 3)]


def test_until_stop_and_an_exhausted_schedule_end_the_loop() -> None:
    calls: list[tuple[Any, ...]] = []
    flow = make_flow(calls)
    clock = FakeClock(START)
    dates = Schedule([DatesClock([START.add(hours=1), START.add(hours=2)])])
    last, _ = clock.run(flow, dates, store=MemoryStore())
    assert last is not None and len(calls) == 2
    with pytest.raises(ValueError, match="no more scheduled runs"):
        clock.run(flow, dates, store=MemoryStore())
    stop = threading.Event()

    def stopping_sleep(seconds: float) -> None:
        stop.set()  # e.g. a signal handler while waiting

    assert (
        run_on_schedule(
            flow, hourly(), store=MemoryStore(), stop=stop, now=clock.now, sleep=stopping_sleep
        )
        is None
    )
    assert len(calls) == 2


def test_events_at_one_time_with_other_parameters_get_their_own_slots() -> None:
    calls: list[tuple[Any, ...]] = []
    flow = make_flow(calls)
    at = START.add(hours=1)
    both = Schedule(
        [
            DatesClock([at], parameter_defaults={"x": 1}),
            DatesClock([at], parameter_defaults={"x": 2}),
        ]
    )
    _, seen = FakeClock(START).run(flow, both, store=MemoryStore())
    assert [r.run_id for r in seen] == ["etl@2026-01-01T01:00:00Z", "etl@2026-01-01T01:00:00Z#2"]
    assert sorted(c[1] for c in calls) == [1, 2]


def test_flow_run_uses_the_schedule_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    flow = make_flow(calls)
    flow.schedule = Schedule([DatesClock([START.add(hours=1)], parameter_defaults={"x": 3})])
    clock = FakeClock(START)
    monkeypatch.setattr(scheduling_module, "utc_now", clock.now)
    monkeypatch.setattr(scheduling_module.time, "sleep", clock.sleep)
    store = MemoryStore()
    state = flow.run(store=store)
    assert state.is_successful() and state.run_id == "etl@2026-01-01T01:00:00Z"
    assert calls == [(ns(START.add(hours=1)), 3, "d")]
    once = flow.run(run_on_schedule=False, store=store)
    assert once.run_id != state.run_id and len(calls) == 2
    with pytest.raises(ValueError, match="run_on_schedule=False"):
        flow.run(store=store, run_id="mine")


def test_slot_ids_round_trip() -> None:
    when = pendulum.datetime(2026, 3, 29, 3, 30, tz="Europe/Paris")
    run_id = slot_run_id("my flow", when)
    assert run_id == "my flow@2026-03-29T01:30:00Z"
    assert slot_time("my flow", run_id) == when
    assert slot_time("other", run_id) is None
    assert slot_time("my flow", "my flow@not-a-time") is None


def test_interval_schedule_example_from_the_brief() -> None:
    schedule = IntervalSchedule(start_date=START, interval=timedelta(hours=1))
    assert schedule.next(3, after=START) == [START.add(hours=h) for h in (1, 2, 3)]


# -- the command line -------------------------------------------------------------------


def test_cli_schedule_prints_the_next_start_times(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    result = CliRunner().invoke(
        cli,
        [
            "schedule",
            f"{FLOWS}:flow",
            "--next",
            "2",
            "--after",
            "2026-01-01T00:30:00Z",
            "--store",
            f"sqlite:///{db}",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["2026-01-01T01:00:00+00:00", "hourly@2026-01-01T01:00:00Z"]
    assert lines[1].split()[:2] == ["2026-01-01T02:00:00+00:00", "hourly@2026-01-01T02:00:00Z"]
    assert "x=7" in lines[0]
    assert not db.exists()  # listing writes nothing
    bad = CliRunner().invoke(cli, ["schedule", f"{FLOWS}:plain", "--store", f"sqlite:///{db}"])
    assert bad.exit_code == 2 and "has no schedule" in bad.output


def test_cli_run_on_schedule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = tmp_path / "ran.txt"
    counter.write_text("")
    monkeypatch.setenv("STATECORE_TEST_COUNTER", str(counter))
    clock = FakeClock(START.add(minutes=30))
    monkeypatch.setattr(scheduling_module, "utc_now", clock.now)
    monkeypatch.setattr(scheduling_module.time, "sleep", clock.sleep)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    args = ["run", f"{FLOWS}:flow", "--on-schedule", "--max-runs", "2", "--store", url]
    result = CliRunner().invoke(cli, [*args, "-p", "x=9"])
    assert result.exit_code == 0, result.output
    assert "hourly@2026-01-01T01:00:00Z  Success" in result.output
    assert "hourly@2026-01-01T02:00:00Z  Success" in result.output
    assert counter.read_text().split() == [
        str(ns(START.add(hours=1))),
        "9",
        str(ns(START.add(hours=2))),
        "9",
    ]
    for bad in (["--run-id", "r1"], ["-p", "nope=1"]):
        refused = CliRunner().invoke(cli, [*args, *bad])
        assert refused.exit_code == 2, refused.output
    plain = CliRunner().invoke(cli, ["run", f"{FLOWS}:plain", "--on-schedule", "--store", url])
    assert plain.exit_code == 2 and "has no schedule" in plain.output
    stray = CliRunner().invoke(cli, ["run", f"{FLOWS}:plain", "--max-runs", "1", "--store", url])
    assert stray.exit_code == 2


def test_a_slot_another_scheduler_drives_is_skipped_not_run_twice() -> None:
    calls: list[tuple[Any, ...]] = []
    flow = make_flow(calls)
    store = MemoryStore()
    clock = FakeClock(START.add(minutes=30))
    slot = slot_run_id("etl", START.add(hours=1))
    # a second scheduler process holds the slot's run (its lease outlives this test)
    store.acquire_lease(slot, owner="other-host:4242:x", ttl=3600, now=time.time_ns())
    _, seen = clock.run(flow, hourly(), store=store, max_runs=1)
    assert calls == []
    assert [(r.run_id, r.state) for r in seen] == [(slot, None)]
    assert seen[0].skipped is not None and "other-host:4242:x" in seen[0].skipped
    assert store.head(slot) == 0

"""Differences from Prefect 1.4.1 in states, signals, triggers, schedules and control flow,
found by running Prefect's own tests (``scripts/prefect1_tests.py``), fixed in statecore
and pinned here by tests of our own."""

from __future__ import annotations

import copy
import logging

import pytest

from statecore import Flow, states, task
from statecore.backends import MemoryStore
from statecore.compat.context import context as prefect_context
from statecore.control_flow import FilterTask, Merge, case, merge


@task
def _same(x: object) -> object:
    return x


# -- states ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (states.Retrying(start_time=1), states.Retrying(start_time=2)),
        (states.Retrying(run_count=1), states.Retrying(run_count=2)),
        (states.Scheduled(start_time=1), states.Scheduled()),
        (states.Looped(loop_count=1), states.Looped(loop_count=2)),
        (states.Cached(cached_inputs={"x": 1}), states.Cached(cached_inputs={"x": 2})),
        (states.Cached(cached_parameters={"p": 1}), states.Cached()),
        (states.Cached(cached_result_expiration=5), states.Cached()),
    ],
)
def test_states_differing_in_a_field_of_their_class_are_not_equal(
    one: states.State, other: states.State
) -> None:
    # Prefect 1 compares every field but message and context; statecore compared only
    # message and result, so two retries at different times were equal
    assert one != other
    assert one == copy.copy(one)


def test_state_equality_leaves_out_the_in_memory_annotations() -> None:
    a = states.Pending(context={"k": 1}, cached_inputs={"x": 1})
    assert a == states.Pending(cached_inputs={"x": 2})
    assert states.Success("done", 1) != states.Success("other", 1)  # the log keeps messages


# -- control flow ---------------------------------------------------------------------


def test_a_case_compares_with_a_constant_never_a_task() -> None:
    with Flow("f"):
        flag = _same(True)
        with pytest.raises(TypeError, match="cannot be a task"):
            case(flag, _same(False))


def test_a_case_block_holds_tasks_of_one_flow_only() -> None:
    one, two = Flow("one"), Flow("two")
    block = case(_same, True)
    block.add_task(_same, one)
    block.add_task(_same, one)  # the same task twice is gated once
    assert block.tasks == [_same] and block.flow is one
    with pytest.raises(ValueError, match="Multiple flows"):
        block.add_task(_same, two)


def test_a_case_block_gates_tasks_added_imperatively() -> None:
    flow = Flow("f")
    flag = _same.copy().bind("b", flow=flow)
    with case(flag, "a"):
        a = _same.copy().bind(1, flow=flow)
    with case(flag, "b"):
        b = _same.copy().bind(2, flow=flow)
        flow.add_task(b)  # added twice, gated once
    state = flow.run(store=MemoryStore())
    assert state.result[a].is_skipped()
    assert state.result[b].result == 2
    gates = [t for t in flow.tasks if t.name.startswith("case(")]
    assert len(gates) == 2 and all(len(flow.upstream_tasks(t)) == 1 for t in (a, b))


def test_a_case_block_refuses_tasks_of_a_second_flow() -> None:
    one, two = Flow("one"), Flow("two")
    task_of_both = _same.copy()
    with pytest.raises(ValueError, match="Multiple flows"), case(_same, True):
        one.add_task(task_of_both)
        two.add_task(task_of_both)


def test_the_open_case_block_is_in_the_prefect_context() -> None:
    with Flow("f"):
        outer, inner = case(_same(1), 1), case(_same(2), 2)
        assert "case" not in prefect_context
        with outer:
            assert prefect_context["case"] is outer
            with inner:
                assert prefect_context["case"] is inner
            assert prefect_context["case"] is outer
        assert "case" not in prefect_context


def test_a_merge_that_would_skip_on_a_skipped_branch_is_refused() -> None:
    with pytest.raises(ValueError, match="skip_on_upstream_skip=False"):
        Merge(skip_on_upstream_skip=True)


def test_merge_passes_its_keyword_arguments_to_the_merge_task() -> None:
    with Flow("f"):
        merged = merge(_same(1), _same(2), name="pick", checkpoint=False)
    assert merged.name == "pick" and merged.checkpoint is False


def test_merge_never_compares_branch_results() -> None:
    class Opaque:
        def __eq__(self, other: object) -> bool:
            raise TypeError("no comparing")

        def __bool__(self) -> bool:
            raise TypeError("no truth")

        __hash__ = object.__hash__

    @task(checkpoint=False)
    def opaque() -> Opaque:
        return Opaque()

    with Flow("f") as flow:
        merged = merge(_same(None), opaque(), checkpoint=False)
    state = flow.run(store=MemoryStore())
    assert state.is_successful()
    assert isinstance(state.result[merged].result, Opaque)


def test_filter_task_logs_what_its_log_func_returns(caplog: pytest.LogCaptureFixture) -> None:
    keep = FilterTask(filter_func=lambda r: r % 2 == 0, log_func=lambda kept: f"kept {kept}")
    with caplog.at_level(logging.INFO):
        assert keep.run([1, 2, 3, 4]) == [2, 4]
    assert "kept [2, 4]" in caplog.text


def test_filter_task_in_a_run_logs_into_the_runs_log() -> None:
    from statecore.audit import log_lines
    from statecore.runners import replay

    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    odd = FilterTask(filter_func=lambda r: r % 2 == 1, log_func=lambda kept: f"odd: {kept}")
    with Flow("f") as flow:
        kept = odd(numbers())
    store = MemoryStore()
    state = flow.run(store=store)
    assert state.result[kept].result == [1, 3]
    lines = log_lines(replay(store, state.run_id), notes=False)
    assert [(line.level, line.message) for line in lines] == [("INFO", "odd: [1, 3]")]


# -- schedules ------------------------------------------------------------------------


def test_an_rrule_clock_fires_at_the_rules_times_within_its_dates() -> None:
    import pendulum
    from dateutil import rrule

    from statecore.schedules import Schedule
    from statecore.schedules.clocks import RRuleClock

    # every Monday and Thursday at 09:00 New York time, a rule Prefect 1 users wrote
    first = pendulum.datetime(2026, 3, 2, 9, tz="America/New_York")  # a Monday
    rule = rrule.rrule(rrule.WEEKLY, byweekday=(rrule.MO, rrule.TH), dtstart=first)
    clock = RRuleClock(
        rule, start_date=first.add(days=3), end_date=first.add(weeks=2), labels=["x"]
    )
    got = list(clock.events(after=first.subtract(years=1)))
    assert [e.start_time.format("ddd D HH:mm Z") for e in got] == [
        "Thu 5 09:00 -05:00",
        "Mon 9 09:00 -04:00",  # across the DST change, still 09:00 local
        "Thu 12 09:00 -04:00",
        "Mon 16 09:00 -04:00",
    ]
    assert all(e.labels == ["x"] for e in got)
    schedule = Schedule(clocks=[clock])
    assert schedule.next(1, after=got[0].start_time) == [got[1].start_time]


def test_an_rrule_clock_of_naive_times_reads_them_as_utc() -> None:
    import datetime as dt

    import pendulum
    from dateutil import rrule

    from statecore.schedules.clocks import RRuleClock

    rule = rrule.rrule(rrule.HOURLY, dtstart=dt.datetime(2026, 1, 1), count=5)
    after = pendulum.datetime(2026, 1, 1, 4, 30, tz="Europe/Paris")  # 03:30 UTC
    assert [e.start_time for e in RRuleClock(rule).events(after=after)] == [
        pendulum.datetime(2026, 1, 1, 4, tz="UTC")
    ]


def test_an_rrule_clock_needs_a_rule() -> None:
    from statecore.schedules.clocks import RRuleClock

    with pytest.raises(TypeError, match="rrule"):
        RRuleClock("FREQ=DAILY")

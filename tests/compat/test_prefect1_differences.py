"""Differences from Prefect 1.4.1 found by running its own tests (scripts/prefect1_tests.py),
each fixed in statecore's core and pinned here by a test of our own."""

from __future__ import annotations

import pytest

from statecore import signals, states


@pytest.mark.parametrize(
    ("state", "signal"),
    [
        (states.Success(), signals.SUCCESS),
        (states.Failed(), signals.FAIL),
        (states.TriggerFailed(), signals.TRIGGERFAIL),
        (states.ValidationFailed(), signals.VALIDATIONFAIL),
        (states.Skipped(), signals.SKIP),
        (states.Paused(), signals.PAUSE),
        (states.Retrying(), signals.RETRY),
        (states.Looped(), signals.LOOP),
    ],
)
def test_signal_from_state_gives_the_signal_of_that_state(
    state: states.State, signal: type[signals.StateSignal]
) -> None:
    # Prefect 1's engine.signals.signal_from_state was missing (test_signals.py)
    assert signals.signal_from_state(state) is signal
    assert type(signal("x").state) is type(state)


@pytest.mark.parametrize("state", [states.Pending(), states.Running(), states.Mapped()])
def test_signal_from_state_refuses_a_state_no_signal_produces(state: states.State) -> None:
    with pytest.raises(ValueError, match="No signal matches"):
        signals.signal_from_state(state)


def test_schedule_filters_take_their_datetime_as_dt() -> None:
    # Prefect 1's filters are called as filter(dt=...) (schedules/test_filters.py)
    import pendulum

    from statecore.schedules import filters

    day = pendulum.datetime(2020, 3, 1, 9, tz="UTC")
    assert filters.is_month_start(dt=day)
    assert not filters.is_month_end(dt=day)
    assert filters.is_weekend(dt=day)  # a Sunday
    assert filters.is_day_of_week(6)(dt=day)
    assert filters.at_time(day.time())(dt=day)
    assert filters.on_date(3, 1)(dt=day)

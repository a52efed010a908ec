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

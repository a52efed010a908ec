"""The public names, pinned: adding or removing one must be a deliberate change here.

The lists follow ../shared/API.md; every name it gives is here.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import textwrap

import pytest

import statecore
from statecore import backends, runners, signals, states, triggers
from statecore.errors import StatecoreError

TOP_LEVEL = {
    # authoring (API.md, "Authoring")
    "task",
    "Task",
    "Flow",
    "Parameter",
    "Secret",
    "Edge",
    "unmapped",
    "flatten",
    "signals",
    "triggers",
    "case",
    "merge",
    "ifelse",
    "switch",
    "FilterTask",
    # modules and objects API.md names as statecore.<name>
    "states",
    "context",
    # the one error base, and the rebuilt task error (DESIGN.md, Events)
    "StatecoreError",
    "TaskError",
}

STATE_CLASSES = [
    "State",
    "Pending",
    "Scheduled",
    "Paused",
    "Resume",
    "Retrying",
    "Running",
    "Finished",
    "Success",
    "Cached",
    "Mapped",
    "Skipped",
    "Failed",
    "TriggerFailed",
    "ValidationFailed",
    "TimedOut",
    "Cancelled",
    "Looped",
]

PREDICATES = [
    "is_pending",
    "is_running",
    "is_retrying",
    "is_finished",
    "is_successful",
    "is_failed",
    "is_skipped",
    "is_mapped",
    "is_cached",
]

SIGNALS = [
    "SUCCESS",
    "FAIL",
    "SKIP",
    "RETRY",
    "PAUSE",
    "LOOP",
    "ENDRUN",
    "TRIGGERFAIL",
    "VALIDATIONFAIL",
    "TaskTimeoutSignal",
]

TRIGGERS = [
    "all_successful",
    "all_failed",
    "any_successful",
    "any_failed",
    "all_finished",
    "always_run",
    "manual_only",
    "not_all_skipped",
    "some_successful",
    "some_failed",
]

BACKENDS = {
    "CacheEntry",
    "Lease",
    "MemoryStore",
    "RunMeta",
    "SQLiteStore",
    "Store",
    "default_store_url",
    "open_store",
}

RUNNERS = {"DaskRunner", "LocalRunner", "replay", "rerun", "resume", "run_on_schedule"}


def test_top_level_names_are_pinned() -> None:
    assert set(statecore.__all__) == TOP_LEVEL
    assert len(statecore.__all__) == len(set(statecore.__all__))
    for name in statecore.__all__:
        assert getattr(statecore, name) is not None, name


def test_top_level_names_are_the_modules_and_objects_api_md_gives() -> None:
    assert statecore.states is states
    assert statecore.signals is signals
    assert statecore.triggers is triggers
    assert isinstance(statecore.Task, type)
    assert issubclass(statecore.FilterTask, statecore.Task)
    assert issubclass(statecore.StatecoreError, Exception)
    assert statecore.__version__


@pytest.mark.parametrize("name", STATE_CLASSES)
def test_state_classes(name: str) -> None:
    cls = getattr(states, name)
    assert name in states.__all__
    assert issubclass(cls, states.State)
    state = cls()
    assert state.name == name
    assert state.message is None and state.result is None
    for predicate in PREDICATES:
        assert isinstance(getattr(state, predicate)(), bool), (name, predicate)


def test_state_tree_is_prefect_1s() -> None:
    parent = {
        "Pending": "State",
        "Scheduled": "Pending",
        "Paused": "Scheduled",
        "Resume": "Scheduled",
        "Retrying": "Scheduled",
        "Running": "State",
        "Finished": "State",
        "Success": "Finished",
        "Cached": "Success",
        "Mapped": "Success",
        "Skipped": "Success",
        "Failed": "Finished",
        "TriggerFailed": "Failed",
        "ValidationFailed": "Failed",
        "TimedOut": "Failed",
        "Cancelled": "Finished",
        "Looped": "Finished",
    }
    for child, base in parent.items():
        assert getattr(states, child).__bases__ == (getattr(states, base),), child


def test_state_construction_and_equality() -> None:
    assert states.Success(message=None, result=1) == states.Success(result=1)
    assert states.Success(result=1) != states.Success(result=2)
    assert states.Success(result=1) != states.Cached(result=1)
    assert states.Failed(result=ValueError("x")) == states.Failed(result=ValueError("x"))
    mapped = states.Mapped(map_states=[states.Success(result=1), states.Failed()])
    assert [s.name for s in mapped.map_states] == ["Success", "Failed"]
    assert mapped.result == [1, None]


@pytest.mark.parametrize("name", SIGNALS)
def test_signals(name: str) -> None:
    cls = getattr(signals, name)
    assert name in signals.__all__
    assert issubclass(cls, signals.Signal)
    assert issubclass(cls, BaseException)
    assert not issubclass(cls, StatecoreError)
    if name == "ENDRUN":
        sig = cls(states.Success())
        assert sig.state == states.Success()
    elif name == "TaskTimeoutSignal":
        assert cls().args == ("Execution timed out.",)
    else:
        sig = cls("message", result=3)
        assert sig.state.message == "message"
        assert sig.state.result == 3


@pytest.mark.parametrize("name", TRIGGERS)
def test_triggers(name: str) -> None:
    assert name in triggers.__all__
    trigger = getattr(triggers, name)
    if name.startswith("some_"):
        trigger = trigger(at_least=1)
    assert callable(trigger)
    assert trigger.__doc__ or getattr(triggers, name).__doc__
    if name not in ("manual_only", "not_all_skipped"):
        assert trigger({}) is True


def test_always_run_is_all_finished() -> None:
    assert triggers.always_run is triggers.all_finished


def test_backends_names() -> None:
    assert set(backends.__all__) == BACKENDS
    for name in backends.__all__:
        assert getattr(backends, name) is not None
    assert issubclass(backends.MemoryStore, backends.Store)
    assert issubclass(backends.SQLiteStore, backends.Store)
    assert inspect.isabstract(backends.Store)
    assert isinstance(backends.open_store("memory://"), backends.MemoryStore)


def test_redis_store_is_importable_lazily() -> None:
    assert "RedisStore" in dir(backends)
    pytest.importorskip("redis")
    assert issubclass(backends.RedisStore, backends.Store)
    from statecore.backends import RedisStore

    assert RedisStore is backends.RedisStore


def test_runners_names() -> None:
    assert set(runners.__all__) == RUNNERS
    assert isinstance(runners.LocalRunner(), runners.LocalRunner)
    assert callable(runners.resume)
    assert callable(runners.replay)


def test_testing_names() -> None:
    testing = importlib.import_module("statecore.testing")
    for name in ("states", "upstream_states", "flows", "StoreContractTests"):
        assert name in testing.__all__
        assert getattr(testing, name) is not None


def test_strategies_without_hypothesis_say_what_to_install() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["hypothesis"] = None
        try:
            import statecore.testing.strategies
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported without hypothesis")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install statecore[testing]" in out


SCHEDULES = {
    "ClockEvent",
    "CronSchedule",
    "IntervalSchedule",
    "Schedule",
    "adjustments",
    "clocks",
    "filters",
}


def test_schedules_names() -> None:
    schedules = importlib.import_module("statecore.schedules")
    assert set(schedules.__all__) == SCHEDULES
    for name in ("IntervalClock", "CronClock", "DatesClock", "Clock", "ClockEvent"):
        assert name in schedules.clocks.__all__
    for name in (
        "is_weekday",
        "is_weekend",
        "is_month_end",
        "is_month_start",
        "between_times",
        "between_dates",
        "on_date",
        "on_datetime",
        "at_time",
    ):
        assert callable(getattr(schedules.filters, name))
    assert set(schedules.adjustments.__all__) >= {"add", "next_weekday"}

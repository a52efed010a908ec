"""Caching in the store (cache_for, cache_key, validators) and task timeouts."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from statecore import Flow, Parameter, signals, task
from statecore.backends import MemoryStore
from statecore.backends.sqlite import SQLiteStore
from statecore.cache_validators import (
    all_inputs,
    all_parameters,
    never_use,
    partial_inputs_only,
    partial_parameters_only,
)
from statecore.runners import replay
from statecore.states import Cached, Success, TimedOut


@pytest.fixture
def calls() -> Counter[str]:
    return Counter()


def counted(calls: Counter[str], name: str, **options: Any) -> Any:
    @task(name=name, **options)
    def body(x: int = 0) -> int:
        calls[name] += 1
        return x * 10

    return body


def test_a_cached_result_is_reused_by_a_later_run_on_the_same_store(
    tmp_path: Path, calls: Counter[str]
) -> None:
    slow = counted(calls, "slow", cache_for=timedelta(hours=1))
    with Flow("cached") as flow:
        out = slow(4)
    store = SQLiteStore(tmp_path / "runs.db")
    first = flow.run(store=store)
    # Prefect 1: a successful task with cache_for ends Cached, its result stored
    assert isinstance(first.result[out], Cached)
    assert first.result[out].result == 40
    again = SQLiteStore(tmp_path / "runs.db")  # another handle: the cache is in the file
    second = flow.run(store=again)
    assert calls["slow"] == 1
    assert isinstance(second.result[out], Cached) and second.result[out].result == 40
    assert replay(again, second.run_id).task_states[out].result == 40


def test_another_store_has_its_own_cache(calls: Counter[str]) -> None:
    slow = counted(calls, "slow", cache_for=timedelta(hours=1))
    with Flow("cached") as flow:
        slow(1)
    flow.run(store=MemoryStore())
    flow.run(store=MemoryStore())
    assert calls["slow"] == 2


def test_an_expired_entry_is_not_used(calls: Counter[str]) -> None:
    slow = counted(calls, "slow", cache_for=timedelta(microseconds=1))
    with Flow("cached") as flow:
        slow(1)
    store = MemoryStore()
    flow.run(store=store)
    flow.run(store=store)
    assert calls["slow"] == 2


def test_cache_key_shares_results_between_flows(calls: Counter[str]) -> None:
    store = MemoryStore()
    first = counted(calls, "first", cache_for=timedelta(hours=1), cache_key="shared")
    second = counted(calls, "second", cache_for=timedelta(hours=1), cache_key="shared")
    with Flow("one") as one:
        first(2)
    with Flow("two") as two:
        got = second(2)
    one.run(store=store)
    state = two.run(store=store)
    assert (calls["first"], calls["second"]) == (1, 0)
    assert state.result[got].result == 20


def test_without_cache_key_the_entry_belongs_to_flow_and_task(calls: Counter[str]) -> None:
    store = MemoryStore()
    a = counted(calls, "same", cache_for=timedelta(hours=1))
    with Flow("one") as one:
        a(2)
    with Flow("two") as two:
        a(2)
    one.run(store=store)
    two.run(store=store)
    assert calls["same"] == 2


@pytest.mark.parametrize(
    ("validator", "changed_input_hits"),
    [(all_inputs, False), (partial_inputs_only(["y"]), True)],
)
def test_input_validators(calls: Counter[str], validator: Any, changed_input_hits: bool) -> None:
    @task(cache_for=timedelta(hours=1), cache_validator=validator)
    def add(x: int, y: int) -> int:
        calls["add"] += 1
        return x + y

    store = MemoryStore()
    with Flow("inputs") as flow:
        p = Parameter("x", default=1)
        add(p, 5)
    flow.run(store=store)
    flow.run(store=store)
    assert calls["add"] == 1  # same inputs: a hit for every validator
    flow.run(parameters={"x": 2}, store=store)
    assert calls["add"] == (1 if changed_input_hits else 2)


@pytest.mark.parametrize(
    ("validator", "changed_param_hits"),
    [(all_parameters, False), (partial_parameters_only(["b"]), True), (never_use, False)],
)
def test_parameter_validators(
    calls: Counter[str], validator: Any, changed_param_hits: bool
) -> None:
    @task(cache_for=timedelta(hours=1), cache_validator=validator)
    def constant() -> int:
        calls["constant"] += 1
        return 7

    store = MemoryStore()
    with Flow("params") as flow:
        flow.add_task(Parameter("a", default=1))
        flow.add_task(Parameter("b", default=1))
        constant()
    flow.run(store=store)
    flow.run(parameters={"a": 2}, store=store)
    expected = 1 if changed_param_hits else 2
    assert calls["constant"] == expected


def test_results_the_log_does_not_store_are_not_cached(calls: Counter[str]) -> None:
    secretish = counted(calls, "secretish", cache_for=timedelta(hours=1), checkpoint=False)
    with Flow("unstored") as flow:
        secretish(1)
    store = MemoryStore()
    flow.run(store=store)
    flow.run(store=store)
    assert calls["secretish"] == 2


# -- timeouts ------------------------------------------------------------------------------


def test_a_task_past_its_timeout_ends_timed_out_and_its_late_outcome_is_discarded() -> None:
    release = threading.Event()
    finished = threading.Event()

    @task(timeout=0.2)
    def stuck() -> str:
        release.wait(30)
        finished.set()
        return "late"

    with Flow("timeout") as flow:
        t = stuck()
    store = MemoryStore()
    state = flow.run(store=store)
    head = store.head(state.run_id)
    assert state.is_failed()
    assert isinstance(state.result[t], TimedOut)
    assert state.result[t].message == "Task timed out during execution."
    # as in Prefect 1, the TimedOut state carries the timeout signal as its result
    assert isinstance(state.result[t].result, signals.TaskTimeoutSignal)
    release.set()
    assert finished.wait(30)
    # the body returned after the deadline: nothing of it reaches the log
    assert store.head(state.run_id) == head
    assert isinstance(replay(store, state.run_id).task_states[t], TimedOut)


def test_a_timed_out_attempt_is_retried() -> None:
    release = threading.Event()
    attempts: list[int] = []

    @task(timeout=0.2, max_retries=1, retry_delay=timedelta(0))
    def slow_then_fast() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            release.wait(30)
        return "done"

    with Flow("timeout-retry") as flow:
        t = slow_then_fast()
    store = MemoryStore()
    state = flow.run(store=store)
    release.set()
    assert state.is_successful() and state.result[t].result == "done"
    names = [e.new for e in replay(store, state.run_id).timeline() if e.task]
    assert names == ["Running", "Retrying", "Running", "Success"]
    retry = next(e for e in replay(store, state.run_id).timeline() if e.new == "Retrying")
    assert retry.message == "Retrying Task (after attempt 1 of 2)"
    assert isinstance(state.result[t], Success)


# -- a run that starts from a Cached state -----------------------------------------------------


def test_a_cached_state_handed_in_is_checked_again_as_in_prefect_1(calls: Counter[str]) -> None:
    from statecore.runners.leases import now_ns

    source = counted(calls, "source")

    @task
    def plus_one(x: int) -> int:
        return x + 1

    with Flow("start-cached") as flow:
        x = source(1)
        y = plus_one(x)
    # no expiration: the cache is invalid, the task runs again before its downstream
    store = MemoryStore()
    state = flow.run(store=store, task_states={x: Cached(result=99)})
    assert calls["source"] == 1
    assert state.result[x].name == "Success" and state.result[y].result == 11
    timeline = [(e.task, e.new, e.message) for e in replay(store, state.run_id).timeline()]
    assert ("source-1", "Pending", "Cache was invalid; ready to run.") in timeline
    # a valid cache is kept: the task does not run, its downstream uses the cached result
    fresh = Cached(result=99, cached_result_expiration=now_ns() + 3_600 * 10**9)
    state = flow.run(store=MemoryStore(), task_states={x: fresh})
    assert calls["source"] == 1
    assert isinstance(state.result[x], Cached) and state.result[y].result == 100

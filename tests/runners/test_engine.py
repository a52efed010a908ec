"""Engine behaviour through the public API, on the memory store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from statecore import (
    FilterTask,
    Flow,
    Parameter,
    Secret,
    Task,
    case,
    context,
    flatten,
    ifelse,
    merge,
    signals,
    states,
    switch,
    task,
    unmapped,
)
from statecore.backends import MemoryStore
from statecore.events import StateChanged, StoredEvent, decode_body
from statecore.runners import replay, resume
from statecore.states import NOT_PERSISTED, State


def changes(store: MemoryStore, run_id: str, key: str | None = None) -> list[StateChanged]:
    """The run's state-change events (of one task key, when given)."""
    out = []
    for event in store.read(run_id):
        if event.kind != "state":
            continue
        body = decode_body(event)
        assert isinstance(body, StateChanged)
        if key is None or body.task == key:
            out.append(body)
    return out


def state_events(store: MemoryStore, run_id: str, key: str) -> list[tuple[StoredEvent, Any]]:
    out = []
    for event in store.read(run_id):
        if event.kind == "state":
            body = decode_body(event)
            if isinstance(body, StateChanged) and body.task == key:
                out.append((event, body))
    return out


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


# -- retries and loops ---------------------------------------------------------------------------


def test_retry_delay_is_a_scheduled_time_that_the_next_attempt_honours(store: MemoryStore) -> None:
    starts: list[int] = []

    @task(max_retries=1, retry_delay=timedelta(seconds=0.05))
    def flaky() -> str:
        starts.append(time.time_ns())
        if len(starts) == 1:
            raise ValueError("first attempt fails")
        return "ok"

    with Flow("retry") as flow:
        t = flaky()
    state = flow.run(store=store)
    assert state.is_successful()
    assert state.result[t].result == "ok"
    assert len(starts) == 2

    events = state_events(store, state.run_id, "flaky-1")
    assert [b.new for _, b in events] == ["Running", "Retrying", "Running", "Success"]
    retry_event, retrying = events[1]
    start_time = retrying.extra["start_time"]
    assert retrying.extra["run_count"] == 1
    assert start_time >= retry_event.ts + 50_000_000 - 1
    second_running, _ = events[2]
    assert second_running.ts >= start_time
    assert starts[1] >= start_time
    assert [b.attempt for _, b in events] == [1, 1, 2, 2]


def test_a_retrying_state_seen_by_a_handler_carries_its_start_time(store: MemoryStore) -> None:
    seen: list[State] = []

    def handler(t: Task, old: State, new: State) -> None:
        seen.append(new)

    @task(max_retries=2, retry_delay=timedelta(seconds=0.01), state_handlers=[handler])
    def always_fails() -> None:
        raise ValueError("no")

    with Flow("retry-handler") as flow:
        t = always_fails()
    state = flow.run(store=store)
    assert state.is_failed()
    retrying = [s for s in seen if isinstance(s, states.Retrying)]
    assert [s.run_count for s in retrying] == [1, 2]
    assert all(s.start_time is not None for s in retrying)
    assert state.result[t].message == "Error during execution of task: ValueError('no')"


def test_loop_passes_loop_count_and_result_through_the_context(store: MemoryStore) -> None:
    seen: list[tuple[Any, Any]] = []

    @task
    def looper(x: int) -> int:
        seen.append((context.get("task_loop_count"), context.get("task_loop_result")))
        if context.get("task_loop_count", 1) < 5:
            raise signals.LOOP(result=context.get("task_loop_result", 0) + x)
        return int(context.get("task_loop_result")) + x

    @task
    def square(v: int) -> int:
        return v**2

    with Flow("loop") as flow:
        inter = looper(10)
        final = square(inter)
    state = flow.run(store=store)
    assert state.result[inter].result == 50
    assert state.result[final].result == 2500
    assert seen == [(None, None), (2, 10), (3, 20), (4, 30), (5, 40)]
    news = [b.new for b in changes(store, state.run_id, "looper-1")]
    assert news == ["Running", *["Looped", "Running"] * 4, "Success"]
    looped = [b for b in changes(store, state.run_id, "looper-1") if b.new == "Looped"]
    assert [b.extra["loop_count"] for b in looped] == [1, 2, 3, 4]
    assert [b.result for b in looped] == [10, 20, 30, 40]


# -- state handlers and callbacks ----------------------------------------------------------------


def test_state_handlers_see_every_transition_in_order(store: MemoryStore) -> None:
    seen: list[tuple[str, str]] = []
    calls = {"n": 0}

    def record(t: Task, old: State, new: State) -> None:
        seen.append((old.name, new.name))

    @task(max_retries=1, state_handlers=[record])
    def flaky() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("once")
        return 1

    with Flow("handlers") as flow:
        flaky()
    state = flow.run(store=store)
    # as in Prefect 1: the failed attempt, then the retry, each a change handlers see
    assert seen == [
        ("Pending", "Running"),
        ("Running", "Failed"),
        ("Failed", "Retrying"),
        ("Retrying", "Running"),
        ("Running", "Success"),
    ]
    # the log keeps one event for the failed attempt and its retry
    news = [e.new for e in replay(store, state.run_id).timeline() if e.task]
    assert news == ["Running", "Retrying", "Running", "Success"]


def test_a_state_returned_by_a_handler_replaces_the_new_state(store: MemoryStore) -> None:
    def veto(t: Task, old: State, new: State) -> State | None:
        if new.is_successful():
            return states.Failed("vetoed by a handler", result=new.result)
        return None

    seen: list[str] = []

    def after(t: Task, old: State, new: State) -> None:
        seen.append(new.name)

    @task(state_handlers=[veto, after])
    def fine() -> int:
        return 7

    with Flow("veto") as flow:
        t = fine()
    state = flow.run(store=store)
    assert state.is_failed()
    assert state.result[t] == states.Failed("vetoed by a handler", result=7)
    assert seen == ["Running", "Failed"]
    assert replay(store, state.run_id).task_states["fine"] == states.Failed(
        "vetoed by a handler", result=7
    )


def test_a_raising_state_handler_fails_the_task(store: MemoryStore) -> None:
    def broken(t: Task, old: State, new: State) -> None:
        if new.is_successful():
            raise RuntimeError("handler bug")

    @task(state_handlers=[broken])
    def fine() -> int:
        return 1

    with Flow("broken-handler") as flow:
        t = fine()
    state = flow.run(store=store)
    got = state.result[t]
    assert got.is_failed()
    assert got.message == (
        "Unexpected error while calling state handlers: RuntimeError('handler bug')"
    )
    assert replay(store, state.run_id).task_states["fine"].message == got.message


def test_on_failure_is_called_for_every_failed_attempt(store: MemoryStore) -> None:
    calls: list[tuple[Task, State]] = []

    @task(max_retries=1, on_failure=lambda t, s: calls.append((t, s)))
    def always_fails() -> None:
        raise ValueError("no")

    @task(on_failure=lambda t, s: calls.append((t, s)))
    def fine() -> int:
        return 1

    with Flow("on-failure") as flow:
        bad = always_fails()
        fine()
    state = flow.run(store=store)
    # Prefect 1: on_failure is a state handler; the first attempt fails (then retries),
    # the second fails for good, and the task that succeeds never calls it
    assert [t for t, _ in calls] == [bad, bad]
    assert all(s.is_failed() for _, s in calls)
    assert calls[-1][1] == state.result[bad]


def test_flow_state_handlers_and_on_failure(store: MemoryStore) -> None:
    seen: list[tuple[str, str]] = []
    failures: list[State] = []

    def record(flow: Flow, old: State, new: State) -> None:
        seen.append((old.name, new.name))

    @task
    def boom() -> None:
        raise ValueError("boom")

    flow = Flow(
        "flow-handlers", state_handlers=[record], on_failure=lambda f, s: failures.append(s)
    )
    with flow:
        boom()
    state = flow.run(store=store)
    assert state.is_failed()
    assert seen == [("Pending", "Running"), ("Running", "Failed")]
    assert failures == [states.Failed("Some reference tasks failed.")]


def test_a_flow_state_handler_can_replace_the_flow_state(store: MemoryStore) -> None:
    def forgive(flow: Flow, old: State, new: State) -> State | None:
        return states.Success("forgiven") if new.is_failed() else None

    @task
    def boom() -> None:
        raise ValueError("boom")

    flow = Flow("forgive", state_handlers=[forgive])
    with flow:
        boom()
    state = flow.run(store=store)
    assert (state.name, state.message) == ("Success", "forgiven")
    replayed = replay(store, state.run_id).flow_state
    assert (replayed.name, replayed.message) == ("Success", "forgiven")
    assert replayed == state  # its result too: every task's state


# -- bad input: clear errors, nothing written ----------------------------------------------------


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "did not receive the following required parameters: n"),
        ({"n": 1, "extra": 2}, "unexpected parameters: extra"),
    ],
)
def test_a_missing_or_unknown_parameter_fails_before_anything_is_written(
    store: MemoryStore, parameters: dict[str, Any], message: str
) -> None:
    ran: list[int] = []

    @task
    def record(n: int) -> None:
        ran.append(n)

    with Flow("params") as flow:
        record(Parameter("n"))
    with pytest.raises(ValueError, match=message):
        flow.run(parameters=parameters, store=store, run_id="r")
    assert store.list_runs() == []
    assert store.read("r") == []
    assert ran == []


def test_a_task_called_outside_a_flow_names_the_task() -> None:
    @task
    def lonely() -> None: ...

    with pytest.raises(ValueError, match="'lonely' was called outside a `with Flow"):
        lonely()


def test_a_cycle_made_with_set_upstream_is_refused() -> None:
    with Flow("cycle") as flow:
        a = add(1)
        b = add(a)
        with pytest.raises(ValueError, match="cycle"):
            a.set_upstream(b)
    assert len(flow.edges) == 1


def test_mapping_over_a_non_iterable_constant_names_the_task() -> None:
    with Flow("bad-map"), pytest.raises(ValueError, match=r"task 'add'.*cannot map over"):
        add.map(5)


def test_an_unserializable_result_fails_the_task_with_advice(store: MemoryStore) -> None:
    @task
    def opaque() -> object:
        return object()

    @task(checkpoint=False)
    def opaque_but_unstored() -> object:
        return object()

    with Flow("unserializable") as flow:
        bad = opaque()
        fine = opaque_but_unstored()
    state = flow.run(store=store)
    failed = state.result[bad]
    assert failed.is_failed()
    assert "checkpoint=False" in failed.message
    assert "register a serializer" in failed.message
    assert state.result[fine].is_successful()
    assert replay(store, state.run_id).task_states["opaque"].message == failed.message


def test_a_result_that_is_not_checkpointed_folds_to_not_persisted(store: MemoryStore) -> None:
    @task(checkpoint=False)
    def private() -> int:
        return 41

    with Flow("checkpoint") as flow:
        p = private()
        total = add(p)
    state = flow.run(store=store)
    assert state.result[p].result == 41
    assert state.result[total].result == 42
    view = replay(store, state.run_id)
    assert view.task_states["private"].result is NOT_PERSISTED
    assert view.task_states["private"].name == "Success"
    assert view.task_states["add"].result == 42
    assert all(b"41" not in e.payload for e in store.read(state.run_id) if e.kind == "state")


# -- secrets -------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("STATECORE_SECRET_API_TOKEN", "API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


def secret_flow() -> tuple[Flow, Task, Task]:
    @task
    def use(token: str) -> str:
        context["logger"].info("using %s", token)
        if token.endswith("!"):
            raise ValueError(f"rejected {token}")
        return f"sent with {token}"

    with Flow("secrets") as flow:
        token = Secret("API_TOKEN")
        sent = use(token)
    return flow, token, sent


@pytest.mark.parametrize("source", ["secrets", "STATECORE_SECRET_API_TOKEN", "API_TOKEN"])
def test_a_secret_is_resolved_and_never_written(
    store: MemoryStore, clean_env: pytest.MonkeyPatch, source: str
) -> None:
    value = "s3cr3t-value-42"
    secrets = None
    if source == "secrets":
        secrets = {"API_TOKEN": value}
    else:
        clean_env.setenv(source, value)
    flow, token, sent = secret_flow()
    state = flow.run(store=store, secrets=secrets)
    assert state.is_successful()
    assert state.result[token].result == value
    assert state.result[sent].result == f"sent with {value}"
    events = store.read(state.run_id)
    assert all(value.encode() not in e.payload for e in events)
    view = replay(store, state.run_id)
    assert view.task_states["API_TOKEN"].result is NOT_PERSISTED
    assert view.task_states["use"].result == "sent with <secret:API_TOKEN>"


def test_a_secret_in_an_error_message_is_scrubbed(
    store: MemoryStore, clean_env: pytest.MonkeyPatch
) -> None:
    value = "hunter2-hunter2!"
    flow, _, sent = secret_flow()
    state = flow.run(store=store, secrets={"API_TOKEN": value})
    assert state.result[sent].is_failed()
    assert all(value.encode() not in e.payload for e in store.read(state.run_id))


def test_a_missing_secret_fails_its_task(store: MemoryStore, clean_env: pytest.MonkeyPatch) -> None:
    flow, token, sent = secret_flow()
    state = flow.run(store=store)
    assert state.result[token].is_failed()
    assert state.result[token].message == 'Secret "API_TOKEN" was not found'
    assert state.result[sent].name == "TriggerFailed"
    assert state.is_failed()


# -- context -------------------------------------------------------------------------------------

ALWAYS_THERE = {
    "run_id",
    "flow_name",
    "task_name",
    "task_full_name",
    "map_index",
    "parameters",
    "task_run_count",
    "resume",
    "scheduled_start_time",
    "logger",
}


def test_context_inside_a_task_and_empty_outside(store: MemoryStore) -> None:
    seen: dict[Any, dict[str, Any]] = {}

    @task
    def look(x: int, n: int) -> None:
        seen[context["map_index"]] = dict(context)

    with Flow("ctx") as flow:
        n = Parameter("n", default=3)
        look.map([10, 20], unmapped(n))
    assert dict(context) == {}
    assert len(context) == 0
    state = flow.run(store=store, run_id="ctx-run")
    assert dict(context) == {}
    assert set(seen) == {0, 1}
    for i, ctx in seen.items():
        assert set(ctx) >= ALWAYS_THERE
        assert ctx["run_id"] == state.run_id == "ctx-run"
        assert ctx["flow_name"] == "ctx"
        assert ctx["task_name"] == "look"
        assert ctx["task_full_name"] == f"look[{i}]"
        assert ctx["map_index"] == i
        assert ctx["parameters"] == {"n": 3}
        assert ctx["task_run_count"] == 1
        assert ctx["resume"] is False
        assert isinstance(ctx["scheduled_start_time"], int)


def test_context_logger_lines_are_appended_to_the_log(store: MemoryStore) -> None:
    @task
    def chatty() -> None:
        context["logger"].info("hello %s", "world")

    with Flow("log") as flow:
        chatty()
    state = flow.run(store=store)
    view = replay(store, state.run_id)
    assert [record.message for _, record in view.logs] == ["hello world"]


# -- interruption and resume ---------------------------------------------------------------------


def test_keyboard_interrupt_logs_the_attempt_interrupted_and_resume_finishes_it(
    store: MemoryStore,
) -> None:
    calls: list[int] = []

    @task(max_retries=1)
    def fragile() -> str:
        calls.append(context["task_run_count"])
        if len(calls) == 1:
            raise KeyboardInterrupt
        if len(calls) == 2:
            raise ValueError("fails once after the interrupt")
        return "done"

    with Flow("interrupt") as flow:
        t = fragile()
    with pytest.raises(KeyboardInterrupt):
        flow.run(store=store, run_id="ki")
    view = replay(store, "ki")
    # the driver logs the attempt it could not finish, and the end of its session
    interrupted = view.task_states["fragile"]
    assert interrupted.name == "Pending"
    assert interrupted.message.startswith("Interrupted: attempt 1 was stopped by KeyboardInterrupt")
    assert not view.finished()
    assert [n.data["reason"] for _, n in view.notes if n.code == "session-end"] == ["interrupted"]

    state = resume("ki", flow, store=store)
    assert state.is_successful()
    assert state.result[t].result == "done"
    # the interrupted attempt does not count: attempt 1 again, then its one retry
    assert calls == [1, 1, 2]
    news = [(b.prev, b.new) for b in changes(store, "ki", "fragile-1")]
    assert news == [
        ("Pending", "Running"),
        ("Running", "Pending"),
        ("Pending", "Running"),
        ("Running", "Retrying"),
        ("Retrying", "Running"),
        ("Running", "Success"),
    ]
    interrupted = changes(store, "ki", "fragile-1")[1]
    assert interrupted.message is not None and interrupted.message.startswith("Interrupted: ")


def test_a_finished_run_id_returns_its_state_and_runs_nothing(store: MemoryStore) -> None:
    ran: list[int] = []

    @task
    def count(n: int) -> int:
        ran.append(n)
        return n * 2

    with Flow("rerun") as flow:
        n = Parameter("n", default=1)
        doubled = count(n)
    first = flow.run(store=store, run_id="R", parameters={"n": 2})
    head = store.head("R")
    again = flow.run(store=store, run_id="R", parameters={"n": 2})
    assert ran == [2]
    assert store.head("R") == head
    assert again == first
    assert again.run_id == "R"
    assert again.result[doubled] == first.result[doubled]
    with pytest.raises(ValueError, match="parameters"):
        flow.run(store=store, run_id="R", parameters={"n": 3})
    assert ran == [2]


# -- looking tasks up ----------------------------------------------------------------------------


def test_task_lookup_by_handle_key_or_unique_name(store: MemoryStore) -> None:
    @task
    def one() -> int:
        return 1

    with Flow("lookup") as flow:
        a = add(1)
        b = add(2)
        o = one()
    state = flow.run(store=store)
    assert state.result[a].result == 2
    assert state.result["add-1"].result == 2
    assert state.result["add-2"] == state.result[b]
    assert state.result["one"] == state.result[o] == state.result["one-1"]
    with pytest.raises(KeyError, match="add-1, add-2"):
        state.result["add"]
    with pytest.raises(KeyError):
        state.result["nothing"]
    view = replay(store, state.run_id)
    with pytest.raises(KeyError, match="add-1, add-2"):
        view.task_states["add"]
    assert view.task_states["one"].result == 1


# -- authoring: indexing, nout, collections ------------------------------------------------------


def test_indexing_and_nout_unpacking(store: MemoryStore) -> None:
    @task(nout=2)
    def pair() -> tuple[int, int]:
        return 3, 4

    @task
    def record() -> dict[str, int]:
        return {"k": 5}

    with Flow("index") as flow:
        left, right = pair()
        rec = record()
        k = rec["k"]
        total = add(left, right)
    state = flow.run(store=store)
    assert state.result[left].result == 3
    assert state.result[right].result == 4
    assert state.result[k].result == 5
    assert state.result[total].result == 7
    with pytest.raises(TypeError, match="nout"):
        iter(rec)


def test_collections_of_handles_are_one_input(store: MemoryStore) -> None:
    @task
    def echo(x: Any) -> Any:
        return x

    @task
    def seven() -> int:
        return 7

    with Flow("collections") as flow:
        a = add(1)
        s = seven()
        as_list = echo([a, s, 3])
        as_tuple = echo((a, s))
        as_dict = echo({"a": a, "s": s, "c": 0})
        as_set = echo({a, s})
    state = flow.run(store=store)
    assert state.result[as_list].result == [2, 7, 3]
    assert state.result[as_tuple].result == (2, 7)
    assert state.result[as_dict].result == {"a": 2, "s": 7, "c": 0}
    assert state.result[as_set].result == {2, 7}


def test_map_flatten_and_unmapped(store: MemoryStore) -> None:
    @task
    def nested() -> list[list[int]]:
        return [[1, 2], [3]]

    with Flow("map") as flow:
        plus = add.map(flatten(nested()), unmapped(10))
        shortest = add.map([1, 2, 3], [10, 20])
    state = flow.run(store=store)
    assert [s.result for s in state.result[plus].map_states] == [11, 12, 13]
    assert [s.result for s in state.result[shortest].map_states] == [11, 22]


def test_map_over_mapped_upstream_zipped_with_shorter_list(store: MemoryStore) -> None:
    with Flow("zip") as flow:
        wide = add.map([1, 2])
        narrow = add.map(wide, [10])
    state = flow.run(store=store)
    assert [s.result for s in state.result[narrow].map_states] == [12]


# -- control flow --------------------------------------------------------------------------------


def test_case_and_merge(store: MemoryStore) -> None:
    @task
    def choose() -> str:
        return "b"

    @task
    def branch(label: str) -> str:
        return label

    with Flow("case") as flow:
        c = choose()
        with case(c, "a"):
            a = branch("A")
        with case(c, "b"):
            b = branch("B")
        m = merge(a, b)
    state = flow.run(store=store)
    assert state.result[a].is_skipped()
    assert state.result[b].result == "B"
    assert state.result[m].result == "B"
    assert state.is_successful()


def test_ifelse_and_switch(store: MemoryStore) -> None:
    @task
    def truthy() -> int:
        return 1

    @task
    def label(x: str) -> str:
        return x

    @task
    def pick() -> str:
        return "two"

    with Flow("branches") as flow:
        yes, no = label("yes"), label("no")
        ifelse(truthy(), yes, no)
        one, two = label("one"), label("two")
        switch(pick(), {"one": one, "two": two})
    state = flow.run(store=store)
    assert state.result[yes].result == "yes"
    assert state.result[no].is_skipped()
    assert state.result[one].is_skipped()
    assert state.result[two].result == "two"


def test_filter_task_collects_the_results_of_a_mapped_task(store: MemoryStore) -> None:
    @task
    def maybe(x: int) -> int | None:
        if x == 1:
            raise signals.SKIP("one is skipped")
        if x == 2:
            raise ValueError("two fails")
        return None if x == 3 else x

    with Flow("filter") as flow:
        values = maybe.map([0, 1, 2, 3, 4])
        kept = FilterTask()(values)
        odd = FilterTask(filter_func=lambda v: isinstance(v, int) and v % 2 == 1)(values)
    state = flow.run(store=store)
    # Prefect 1's default filter drops None and exceptions, and keeps the SKIP signal a
    # skipped child carries as its result
    kept_results = state.result[kept].result
    assert [type(r) for r in kept_results] == [int, signals.SKIP, int]
    assert kept_results[0] == 0 and kept_results[2] == 4
    assert state.result[odd].result == []

"""End to end on every store: run, replay, secrets at rest, odd run ids, changed flows,
finished runs, approvals.

* ``flow.run`` on memory, SQLite and Redis; ``replay`` from each equals the run.
* A ``Secret``'s value is nowhere in the raw SQLite files (main, ``-wal``, ``-shm``) nor in
  any Redis key or value under the store's prefix, though tasks return it, log it, raise
  it and a parameter carries it.
* Run ids with spaces, colons, quotes, unicode, brace tags, SQL and 1 KB work end to end
  on every store, or are refused with a ``StatecoreError`` that writes nothing.
* A flow whose structure changed is refused on resume with ``FlowChanged`` naming the
  change (unless ``allow_changed=True``); changed task code is noted (``code-changed``).
* ``flow.run(run_id=R)`` and ``resume`` of a finished run run nothing and return equal states.
* ``resume(approve=[task])`` approves exactly that paused task; a crash-resume never
  approves a manual gate.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from statecore import Flow, Parameter, Secret, context, signals, task, triggers
from statecore.backends import MemoryStore, SQLiteStore, Store
from statecore.errors import FlowChanged, StatecoreError
from statecore.events import chain_hash
from statecore.runners import LocalRunner, replay, resume
from statecore.states import (
    NOT_PERSISTED,
    Failed,
    Mapped,
    Paused,
    Skipped,
    State,
    Success,
    TriggerFailed,
    results_equal,
)

from ..conftest import unique_prefix

RUNNER = {"lease_ttl": 1.0, "lease_renew": 0.3}
CALLS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


def count(name: str) -> None:
    CALLS[name] += 1


def assert_same_states(folded: Any, returned: Any, keys: list[str]) -> None:
    """Replayed task states equal returned ones (unstored results aside)."""
    for key in keys:
        a: State = folded[key]
        b: State = returned[key]
        assert (type(a), a.message) == (type(b), b.message), key
        if isinstance(b, Mapped):
            assert isinstance(a, Mapped)
            assert len(a.map_states) == len(b.map_states), key
            for i, (x, y) in enumerate(zip(a.map_states, b.map_states, strict=True)):
                assert (type(x), x.message) == (type(y), y.message), (key, i)
                if x.result is not NOT_PERSISTED:
                    assert results_equal(x.result, y.result), (key, i)
        elif a.result is not NOT_PERSISTED:
            assert results_equal(a.result, b.result), key


def assert_replay_equals(store: Store, state: State) -> None:
    view = replay(store, state.run_id)
    assert view.problems == []
    assert (type(view.flow_state), view.flow_state.message) == (type(state), state.message)
    keys = list(state.result)
    assert list(view.task_states) == keys
    assert_same_states(view.task_states, state.result, keys)
    events = store.read(state.run_id)
    assert events[0].prev_hash == b""
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == chain_hash(previous)


# -- a flow that exercises most of the machine ---------------------------------------------


@task
def numbers(n: int) -> list[int]:
    count("numbers")
    return list(range(n))


@task
def square(x: int) -> int:
    count("square")
    if x == 1:
        raise signals.SKIP("one is skipped", result=-1)
    return x * x


@task(max_retries=1, retry_delay=timedelta(seconds=0))
def flaky() -> str:
    count("flaky")
    if context["task_run_count"] == 1:
        raise RuntimeError("first attempt fails")
    return "recovered"


@task
def broken() -> None:
    count("broken")
    raise ValueError("always broken", 42)


@task
def after_broken(x: Any) -> str:
    count("after_broken")
    return "never"


@task
def looping() -> int:
    count("looping")
    n = context.get("task_loop_result", 0)
    if n < 3:
        raise signals.LOOP(result=n + 1)
    return n


@task(trigger=triggers.all_finished, skip_on_upstream_skip=False)
def report(squares: list[Any], note: str, loops: int) -> dict[str, Any]:
    count("report")
    return {"squares": squares, "note": note, "loops": loops, "when": (1, 2.5, b"x")}


with Flow("e2e") as e2e_flow:
    N = Parameter("n", default=4)
    SQUARES = square.map(numbers(N))
    REPORT = report(SQUARES, flaky(), looping())
    AFTER_BROKEN = after_broken(broken())
e2e_flow.set_reference_tasks([REPORT])


def test_run_and_replay_on_every_store(store: Store) -> None:
    state = e2e_flow.run(store=store, runner=LocalRunner(**RUNNER))
    assert state.is_successful()
    result = state.result
    assert isinstance(result[SQUARES], Mapped)
    assert [type(c) for c in result[SQUARES].map_states] == [Success, Skipped, Success, Success]
    assert result[REPORT].result["squares"] == [0, -1, 4, 9]
    assert result[REPORT].result["note"] == "recovered"
    assert result[REPORT].result["loops"] == 3
    assert isinstance(result[AFTER_BROKEN], TriggerFailed)
    assert isinstance(result["broken"], Failed)
    assert_replay_equals(store, state)
    timeline = replay(store, state.run_id).timeline()
    assert any(e.new == "Retrying" for e in timeline)
    assert any(e.new == "Looped" for e in timeline)


def test_replay_view_accepts_the_flows_handles(store: Store) -> None:
    state = e2e_flow.run(store=store, runner=LocalRunner(**RUNNER))
    view = replay(store, state.run_id)
    assert view.task_states["report-1"].result == state.result[REPORT].result
    assert view.task_states["report"].result == state.result[REPORT].result


def test_replay_view_resolves_a_handle() -> None:
    store = MemoryStore()
    state = e2e_flow.run(store=store, runner=LocalRunner(**RUNNER))
    assert replay(store, state.run_id).task_states[REPORT].result == state.result[REPORT].result


# -- secrets at rest -----------------------------------------------------------------------

TOKEN = "tok-7Qx9-zz-SECRET-VALUE"


@task
def use_token(tok: str) -> dict[str, Any]:
    context["logger"].info("calling the API with %s", tok)
    return {"header": f"Bearer {tok}", "raw": tok.encode(), "parts": [tok, (tok,)]}


@task
def reject_token(tok: str) -> None:
    raise ValueError(f"the API rejected {tok}")


@task
def signal_token(tok: str) -> None:
    raise signals.FAIL(f"giving up on {tok}")


@task(max_retries=1, retry_delay=timedelta(seconds=0))
def retry_token(tok: str) -> str:
    if context["task_run_count"] == 1:
        raise RuntimeError(f"transient failure with {tok}")
    return tok[::-1] + tok


@task
def map_token(x: str) -> str:
    return f"child {x}"


@task
def echo(value: str, tok: str) -> str:
    return f"{value} / {tok}"


with Flow("secrets") as secret_flow:
    TOK = Secret("API_TOKEN")
    PLAIN = Parameter("plain", default="nothing")
    use_token(TOK)
    reject_token(TOK)
    signal_token(TOK)
    retry_token(TOK)
    map_token.map(use_token(TOK)["parts"])
    echo(PLAIN, TOK)


def secret_run(store: Store) -> State:
    state = secret_flow.run(
        parameters={"plain": TOKEN},
        secrets={"API_TOKEN": TOKEN},
        store=store,
        runner=LocalRunner(**RUNNER),
    )
    assert state.result["use_token-1"].result["header"] == f"Bearer {TOKEN}"
    assert state.result["echo-1"].is_successful()
    return state


def sqlite_bytes(path: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in path.parent.iterdir()
        if p.name.startswith(path.name) and p.is_file()
    }


def redis_dump(url: str, prefix: str) -> list[bytes]:
    """Every key under ``prefix:`` and every value it holds, as bytes."""
    import redis

    client = redis.Redis.from_url(url)
    out: list[bytes] = []
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            out.append(key)
            kind = client.type(key)
            if kind == b"stream":
                for entry_id, fields in client.xrange(key):
                    out.append(entry_id)
                    for name, value in fields.items():
                        out += [name, value]
            elif kind == b"hash":
                for name, value in client.hgetall(key).items():
                    out += [name, value]
            elif kind == b"list":
                out += client.lrange(key, 0, -1)
            elif kind == b"zset":
                out += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == b"set":
                out += list(client.smembers(key))
            elif kind == b"string":
                out.append(client.get(key) or b"")
            else:
                raise AssertionError(f"unexpected key type {kind!r} for {key!r}")
            out.append(client.dump(key) or b"")
    finally:
        client.close()
    return out


def test_secret_never_reaches_the_sqlite_files(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    try:
        state = secret_run(store)
        files = sqlite_bytes(path)
        assert any(name.endswith("-wal") for name in files)
        for name, data in files.items():
            assert TOKEN.encode() not in data, name
        view = replay(store, state.run_id)
        assert view.parameters["plain"] == "<secret:API_TOKEN>"
        assert any("<secret:API_TOKEN>" in r.message for _, r in view.logs)
        assert view.task_states["reject_token-1"].message.count("<secret:API_TOKEN>") == 1
    finally:
        store.close()
    for name, data in sqlite_bytes(path).items():  # after close (and its checkpoint)
        assert TOKEN.encode() not in data, name


def test_secret_never_reaches_redis(redis_url: str, redis_cleanup: Any) -> None:
    from statecore.backends.redis import RedisStore

    prefix = unique_prefix()
    redis_cleanup(prefix)
    store = RedisStore(redis_url, prefix=prefix)
    try:
        state = secret_run(store)
        assert replay(store, state.run_id).parameters["plain"] == "<secret:API_TOKEN>"
    finally:
        store.close()
    everything = redis_dump(redis_url, prefix)
    assert len(everything) > 10
    assert not [v for v in everything if TOKEN.encode() in v]


@task(cache_for=timedelta(hours=1))
def cached_call(tok: str) -> str:
    return f"session for {tok}"


with Flow("secrets-cached") as cached_secret_flow:
    cached_call(Secret("API_TOKEN"))


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_secret_never_reaches_the_result_cache(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        path = tmp_path / "runs.db"
        store: Store = SQLiteStore(path)
    else:
        from statecore.backends.redis import RedisStore

        redis_url = request.getfixturevalue("redis_url")
        prefix = unique_prefix()
        request.getfixturevalue("redis_cleanup")(prefix)
        store = RedisStore(redis_url, prefix=prefix)
    try:
        state = cached_secret_flow.run(
            store=store, secrets={"API_TOKEN": TOKEN}, runner=LocalRunner(**RUNNER)
        )
        assert state.is_successful()
    finally:
        store.close()
    if kind == "sqlite":
        leaks = [name for name, data in sqlite_bytes(path).items() if TOKEN.encode() in data]
    else:
        leaks = [v for v in redis_dump(redis_url, prefix) if TOKEN.encode() in v]
    assert leaks == []


# -- odd run ids ---------------------------------------------------------------------------

ODD_RUN_IDS = [
    "with space",
    "colon:run:1",
    "quote'double\"back`",
    "ünïcødé-运行-🚀",
    "x" * 1024,
    "é" * 1024,
    "'; DROP TABLE events; --",
    "{brace}tag}",
    "a b",
    "=YSBi",  # what Redis would tag "a b" as, were tags not kept apart
    "*?[glob]",
    "new\nline\ttab",
    "statecore:{x}:events",
    "../../etc/passwd",
]
MAYBE_REFUSED = ["nul\x00byte", "lone\ud800surrogate"]


@task
def tag_run(n: int) -> str:
    count("tag_run")
    return f"{context['run_id']}#{n}"


with Flow("odd-ids") as odd_flow:
    ODD = tag_run(Parameter("n"))


def test_odd_run_ids_work_end_to_end(store: Store) -> None:
    for n, run_id in enumerate(ODD_RUN_IDS):
        state = odd_flow.run(
            parameters={"n": n}, store=store, run_id=run_id, runner=LocalRunner(**RUNNER)
        )
        assert state.is_successful(), run_id
        assert state.run_id == run_id
        assert state.result[ODD].result == f"{run_id}#{n}"
        assert_replay_equals(store, state)
        assert all(e.run_id == run_id for e in store.read(run_id))
        meta = store.get_run(run_id)
        assert meta is not None and meta.run_id == run_id and meta.state == "Success"
    assert CALLS["tag_run"] == len(ODD_RUN_IDS)
    # each run kept its own log: none was appended to another's
    for n, run_id in enumerate(ODD_RUN_IDS):
        again = odd_flow.run(
            parameters={"n": n}, store=store, run_id=run_id, runner=LocalRunner(**RUNNER)
        )
        assert again.result[ODD].result == f"{run_id}#{n}"
        assert replay(store, run_id).parameters == {"n": n}
    assert CALLS["tag_run"] == len(ODD_RUN_IDS)
    listed = {m.run_id for m in store.list_runs(flow_name="odd-ids")}
    assert listed == set(ODD_RUN_IDS)


@pytest.mark.parametrize("run_id", MAYBE_REFUSED, ids=["nul", "surrogate"])
def test_unstorable_run_ids_work_or_are_refused_cleanly(
    store: Store, run_id: str, request: pytest.FixtureRequest
) -> None:
    try:
        state = odd_flow.run(
            parameters={"n": 7}, store=store, run_id=run_id, runner=LocalRunner(**RUNNER)
        )
    except StatecoreError as exc:
        assert CALLS["tag_run"] == 0, "a task ran before the run id was refused"
        assert store.list_runs() == []
        with contextlib.suppress(StatecoreError):
            assert store.head(run_id) == 0
        assert str(exc)
        return
    assert state.is_successful()
    assert state.run_id == run_id
    assert_replay_equals(store, state)
    assert [m.run_id for m in store.list_runs()] == [run_id]


# -- a flow that changed under a run -------------------------------------------------------


@task
def source() -> int:
    count("source")
    return 1


@task
def other() -> int:
    count("other")
    return 5


@task(trigger=triggers.manual_only)
def gate(x: int) -> int:
    count("gate")
    return x + 1


@task(name="compute")
def compute_v1(x: int) -> int:
    count("compute_v1")
    return x + 100


@task(name="compute")
def compute_v2(x: int) -> int:
    count("compute_v2")
    return x + 200


@task
def added(x: int) -> int:
    count("added")
    return x * 1000


def build(variant: str) -> tuple[Flow, dict[str, Any]]:
    with Flow("changing") as flow:
        s = source()
        o = other()
        if variant == "mapped":
            g = gate.map([s, o])
        elif variant == "edge":
            g = gate(o)
        elif variant == "trigger":
            g = gate.copy(trigger=triggers.all_successful)(s)
        else:
            g = gate(s)
        c = (compute_v2 if variant == "code" else compute_v1)(g)
        handles = {"source": s, "other": o, "gate": g, "compute": c}
        if variant == "added":
            handles["added"] = added(c)
    return flow, handles


def paused_run(store: Store, run_id: str) -> tuple[Flow, dict[str, Any]]:
    flow, handles = build("base")
    state = flow.run(store=store, run_id=run_id, runner=LocalRunner(**RUNNER))
    assert isinstance(state.result[handles["gate"]], Paused)
    assert not state.is_finished()
    return flow, handles


@pytest.mark.parametrize(
    ("variant", "named"),
    [
        ("added", "tasks added: added-1"),
        ("edge", "source-1->gate-1"),
        ("trigger", "gate-1: trigger 'manual_only' -> 'all_successful'"),
        ("mapped", "gate-1: mapped False -> True"),
    ],
)
def test_changed_structure_is_refused_naming_the_change(
    store: Store, variant: str, named: str
) -> None:
    paused_run(store, "changed")
    before = store.read("changed")
    changed, handles = build(variant)
    with pytest.raises(FlowChanged) as refused:
        resume("changed", changed, store=store, approve=[handles["gate"]])
    assert named in str(refused.value)
    assert "allow_changed" in str(refused.value)
    assert store.read("changed") == before
    with pytest.raises(ValueError, match="another flow graph"):
        changed.run(store=store, run_id="changed", runner=LocalRunner(**RUNNER))
    assert store.read("changed") == before
    assert Counter({"source": 1, "other": 1}) == CALLS


def test_a_run_of_another_flow_is_refused(store: Store) -> None:
    paused_run(store, "mine")
    before = store.read("mine")
    with Flow("someone-else") as foreign:
        gate(source())
    with pytest.raises(FlowChanged, match="'changing'"):
        resume("mine", foreign, store=store)
    assert store.read("mine") == before


@pytest.mark.parametrize("variant", ["trigger", "edge"])
def test_allow_changed_resumes_a_changed_structure(store: Store, variant: str) -> None:
    paused_run(store, "allowed")
    changed, handles = build(variant)
    state = resume(
        "allowed",
        changed,
        store=store,
        approve=[handles["gate"]],
        allow_changed=True,
        runner=LocalRunner(**RUNNER),
    )
    assert state.is_successful()
    expected = 1 if variant == "trigger" else 5
    assert state.result[handles["compute"]].result == expected + 1 + 100


@pytest.mark.parametrize("variant", ["added", "removed"])
def test_allow_changed_with_added_or_removed_tasks(store: Store, variant: str) -> None:
    paused_run(store, "grown")
    head = store.head("grown")
    if variant == "added":
        changed, handles = build("added")
    else:
        with Flow("changing") as changed:
            g = gate(source())
            handles = {"gate": g, "compute": compute_v1(g)}
    try:
        state = resume(
            "grown",
            changed,
            store=store,
            approve=[handles["gate"]],
            allow_changed=True,
            runner=LocalRunner(**RUNNER),
        )
    except StatecoreError:
        assert store.head("grown") == head  # a clear refusal that changes nothing is fine
        return
    assert state.is_successful()
    if variant == "added":
        assert state.result[handles["added"]].result == 102_000


def test_changed_code_is_noted_not_refused(store: Store) -> None:
    paused_run(store, "recoded")
    changed, handles = build("code")
    state = resume(
        "recoded", changed, store=store, approve=[handles["gate"]], runner=LocalRunner(**RUNNER)
    )
    assert state.is_successful()
    assert state.result[handles["compute"]].result == 202  # the new code ran
    assert CALLS["compute_v2"] == 1 and CALLS["compute_v1"] == 0
    notes = [n for _, n in replay(store, "recoded").notes if n.code == "code-changed"]
    assert len(notes) == 1
    assert "compute-1" in notes[0].message
    assert "gate-1" not in notes[0].message and "source-1" not in notes[0].message


# -- finished runs -------------------------------------------------------------------------


def test_a_finished_run_runs_nothing_again(store: Store) -> None:
    first = e2e_flow.run(store=store, run_id="done", runner=LocalRunner(**RUNNER))
    calls = Counter(CALLS)
    head = store.head("done")
    keys = list(first.result)

    again = e2e_flow.run(store=store, run_id="done", runner=LocalRunner(**RUNNER))
    assert calls == CALLS
    assert store.head("done") == head
    assert (type(again), again.message, again.run_id) == (type(first), first.message, "done")
    assert_same_states(again.result, first.result, keys)

    resumed = resume("done", e2e_flow, store=store, runner=LocalRunner(**RUNNER))
    assert calls == CALLS
    assert store.head("done") == head
    assert_same_states(resumed.result, first.result, keys)

    with pytest.raises(ValueError, match="parameters"):
        e2e_flow.run(parameters={"n": 9}, store=store, run_id="done")
    assert store.head("done") == head


# -- approvals -----------------------------------------------------------------------------


@task(trigger=triggers.manual_only)
def gate_one(x: int) -> str:
    count("gate_one")
    return f"one {x}"


@task(trigger=triggers.manual_only)
def gate_two(x: int) -> str:
    count("gate_two")
    return f"two {x}"


@task
def crashy() -> str:
    count("crashy")
    if CALLS["crashy"] == 1:
        raise KeyboardInterrupt  # the process "dies" in the middle of this task
    return "survived"


with Flow("approvals") as approval_flow:
    S = source()
    ONE = gate_one(S)
    TWO = gate_two(S)
    CRASHY = crashy()


def resumes(store: Store, run_id: str) -> list[tuple[str | None, str, str]]:
    return [(e.task, e.prev, e.new) for e in replay(store, run_id).timeline() if e.new == "Resume"]


def test_crash_resume_never_approves_and_approve_approves_exactly_one(store: Store) -> None:
    with pytest.raises(KeyboardInterrupt):
        approval_flow.run(store=store, run_id="gates", runner=LocalRunner(max_workers=1, **RUNNER))
    view = replay(store, "gates")
    assert view.task_states["crashy-1"].message.startswith("Interrupted")  # logged at the "crash"

    # a crash-resume: the interrupted task runs again, the gates stay shut
    state = resume("gates", approval_flow, store=store, runner=LocalRunner(**RUNNER))
    assert state.result[CRASHY].result == "survived"
    assert isinstance(state.result[ONE], Paused) and isinstance(state.result[TWO], Paused)
    assert not state.is_finished()
    assert CALLS["gate_one"] == CALLS["gate_two"] == 0
    assert resumes(store, "gates") == []
    interrupted = [
        e for e in replay(store, "gates").timeline() if (e.message or "").startswith("Interrupted")
    ]
    assert [(e.task, e.prev, e.new) for e in interrupted] == [("crashy-1", "Running", "Pending")]

    # approve one gate: exactly that one runs
    state = resume("gates", approval_flow, store=store, approve=[ONE], runner=LocalRunner(**RUNNER))
    assert state.result[ONE].result == "one 1"
    assert isinstance(state.result[TWO], Paused)
    assert not state.is_finished()
    assert resumes(store, "gates") == [("gate_one-1", "Paused", "Resume")]
    assert CALLS["gate_one"] == 1 and CALLS["gate_two"] == 0

    # another plain resume changes nothing; approving the other one finishes the run
    head = store.head("gates")
    state = resume("gates", approval_flow, store=store, runner=LocalRunner(**RUNNER))
    assert isinstance(state.result[TWO], Paused)
    assert CALLS["gate_two"] == 0
    assert [e for e in resumes(store, "gates")] == [("gate_one-1", "Paused", "Resume")]
    assert all(e.seq <= head or e.task is None for e in replay(store, "gates").timeline())
    state = resume(
        "gates", approval_flow, store=store, approve=["gate_two"], runner=LocalRunner(**RUNNER)
    )
    assert state.is_successful()
    assert Counter({"source": 1, "crashy": 2, "gate_one": 1, "gate_two": 1}) == CALLS
    assert_replay_equals(store, state)

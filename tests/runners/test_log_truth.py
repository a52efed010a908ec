"""The log tells the truth: measured attempt times, outcomes streamed per task, crashes
and driver sessions in the log, nothing logged as done run again.

The kill tests run a map of 16 children in a subprocess (8 bodies of 0.1 s, 8 of 3 s,
on 16 threads) and SIGKILL or SIGINT it well after the 8 fast bodies have ended: those
outcomes must be in the log (each reached it within one group window of its body's
end), so a resume runs only the 8 slow ones again. No assertion reads a clock against
a bound: waits are for events, bounded only to end a hung test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from statecore import Flow, context, signals, states, task, triggers, unmapped
from statecore.attempts import attempt_bars
from statecore.backends import MemoryStore, SQLiteStore, open_store
from statecore.backends.base import Store
from statecore.cache_validators import never_use
from statecore.runners import LocalRunner, replay, resume
from statecore.sessions import run_status, sessions

from ..conftest import unique_prefix
from ..crash_flows import flows
from ..crash_flows.flows import FAST_SLOW, SLOW_ENV, fast_slow_flow, read_lines

REPO = Path(__file__).resolve().parent.parent.parent
HALF = FAST_SLOW // 2


def _env(side: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATECORE_")}
    env[flows.SIDE_ENV] = str(side)
    env[SLOW_ENV] = "3"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _spawn(url: str, run_id: str, side: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.crash_flows.drive",
            *("--store", url, "--run-id", run_id, "--flow", "fast-slow"),
            *("--max-workers", str(FAST_SLOW), "--group-events", "512"),
        ],
        cwd=REPO,
        env=_env(side),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(check: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120  # only to end a hung test
    while not check():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


def _ended(side: Path) -> set[int]:
    return {i for key, i, _, extra in read_lines(side) if extra == "end" and i is not None}


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    redis_url: str = request.getfixturevalue("redis_url")
    prefix = unique_prefix()
    request.getfixturevalue("redis_cleanup")(prefix)
    yield f"{redis_url}?prefix={prefix}"


def _fast_done_then(
    store_url: str, tmp_path: Path, sig: int
) -> tuple[Store, Path, list[object], int]:
    """Run the map, let the fast bodies end and their outcomes be committed, send
    ``sig`` while the slow ones run; return the store, side file, log and kill time."""
    side = tmp_path / "side"
    proc = _spawn(store_url, "fs", side)
    _wait_for(lambda: _ended(side) >= set(range(HALF)), proc)
    fast_end = time.time_ns()
    # well past one window (20 ms) after the last fast body ended
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    killed_at = time.time_ns()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode != 0, err.decode()
    assert fast_end < killed_at
    store = open_store(store_url)
    return store, side, list(store.read("fs")), killed_at


def _resume_and_check(store: Store, side: Path, before: list[object]) -> None:
    os.environ[flows.SIDE_ENV] = str(side)
    os.environ[SLOW_ENV] = "0.05"
    try:
        state = resume("fs", fast_slow_flow, store=store, runner=LocalRunner(max_workers=16))
    finally:
        del os.environ[flows.SIDE_ENV], os.environ[SLOW_ENV]
    assert state.is_successful()
    assert state.result["add_up"].result == sum(range(FAST_SLOW))
    # nothing committed was lost or changed
    assert store.read("fs")[: len(before)] == before
    starts = Counter(i for _, i, _, extra in read_lines(side) if extra == "start")
    # no fast body (ended a second before the kill) ran again; every slow one did
    assert {i: starts[i] for i in range(HALF)} == dict.fromkeys(range(HALF), 1)
    assert {i: starts[i] for i in range(HALF, FAST_SLOW)} == dict.fromkeys(
        range(HALF, FAST_SLOW), 2
    )
    view = replay(store, "fs")
    bars = [b for b in attempt_bars(view) if b.index is not None and b.index >= HALF]
    # each slow child: attempt #1 interrupted, #2 its success; numbered across sessions
    assert sorted((b.index, b.number, b.state) for b in bars) == sorted(
        [(i, 1, "Pending") for i in range(HALF, FAST_SLOW)]
        + [(i, 2, "Success") for i in range(HALF, FAST_SLOW)]
    )
    assert all(b.interrupted for b in bars if b.number == 1)


def test_sigkill_loses_no_outcome_older_than_one_window(store_url: str, tmp_path: Path) -> None:
    store, side, before, killed_at = _fast_done_then(store_url, tmp_path, signal.SIGKILL)
    try:
        view = replay(store, "fs")
        kids = view.children[view.by_key["fast_or_slow-1"]]
        assert [k.state.name for k in kids[:HALF]] == ["Success"] * HALF
        assert [k.state.name for k in kids[HALF:]] == ["Running"] * HALF
        # the crash is visible: the session never ended, no live driver holds the run
        assert sessions(view)[-1].ended is None
        assert run_status(view, holder_alive=False).startswith("interrupted (driver gone since ")
        _resume_and_check(store, side, before)
        view = replay(store, "fs")
        lost = [s for s in sessions(view) if s.crashed]
        assert len(lost) == 1 and lost[0].ended is not None and lost[0].ended <= killed_at
        # the interrupted attempts end when the dead driver was last known alive
        for bar in attempt_bars(view):
            if bar.interrupted:
                assert bar.end == lost[0].ended
        assert [s.why for s in sessions(view)] in (["run", "takeover"], ["run", "resume"])
    finally:
        store.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_commit_finished_outcomes_and_log_the_rest_interrupted(
    store_url: str, tmp_path: Path, sig: int
) -> None:
    store, side, before, _ = _fast_done_then(store_url, tmp_path, sig)
    try:
        view = replay(store, "fs")
        kids = view.children[view.by_key["fast_or_slow-1"]]
        assert [k.state.name for k in kids[:HALF]] == ["Success"] * HALF
        stopper = "KeyboardInterrupt" if sig == signal.SIGINT else "SystemExit"
        for kid in kids[HALF:]:
            assert kid.state.name == "Pending"
            assert kid.state.message.startswith(f"Interrupted: attempt 1 was stopped by {stopper}")
        last = sessions(view)[-1]
        assert (last.reason, last.why) == ("interrupted", "run")
        _resume_and_check(store, side, before)
        assert [s.reason for s in sessions(replay(store, "fs"))] == ["interrupted", "finished"]
    finally:
        store.close()


# -- measured times ---------------------------------------------------------------------


def test_bars_are_each_bodys_own_time_with_at_most_four_at_once(tmp_path: Path) -> None:
    """Children of 0.05 s and 2 s on 4 workers: each bar is its own body's time, not its
    batch's, and no more than 4 overlap (the bodies record what they slept)."""
    slept: dict[int, float] = {}

    @task
    def nap(i: int) -> int:
        began = time.perf_counter()
        time.sleep(2.0 if i % 4 == 0 else 0.05)
        slept[i] = time.perf_counter() - began
        return i

    with Flow("naps") as flow:
        nap.map(list(range(12)))
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        state = flow.run(store=store, runner=LocalRunner(max_workers=4))
        assert state.is_successful()
        bars = [b for b in attempt_bars(replay(store, state.run_id)) if b.index is not None]
    finally:
        store.close()
    assert len(bars) == 12 and all(b.measured and b.number == 1 for b in bars)
    for bar in bars:
        assert bar.duration is not None
        assert abs(bar.duration / 1e9 - slept[bar.index]) <= 0.2 * slept[bar.index]
    # the short bodies batched beside a 2 s one are not drawn 2 s long
    assert all(bar.duration < 1e9 for bar in bars if bar.index % 4)
    edges = sorted([(b.start, 1) for b in bars] + [(b.end or 0, -1) for b in bars])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak <= 4


def test_a_retried_task_has_one_bar_per_attempt(tmp_path: Path) -> None:
    tries: list[int] = []

    @task(max_retries=2, retry_delay=timedelta(0))
    def flaky() -> int:
        tries.append(context["task_run_count"])
        if len(tries) < 3:
            raise ValueError("not yet")
        return 1

    with Flow("flaky") as flow:
        flaky()
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        state = flow.run(store=store)
        bars = attempt_bars(replay(store, state.run_id))
    finally:
        store.close()
    assert [(b.number, b.run_count, b.state) for b in bars] == [
        (1, 1, "Retrying"),
        (2, 2, "Retrying"),
        (3, 3, "Success"),
    ]
    assert all(b.measured for b in bars)
    assert bars[0].end is not None and bars[0].end <= bars[1].start


# -- replay equals the run ----------------------------------------------------------------


def test_replays_flow_state_result_is_every_tasks_state(tmp_path: Path) -> None:
    @task
    def one() -> int:
        return 1

    @task
    def add(x: int) -> int:
        return x + 1

    with Flow("r") as flow:
        a = one()
        b = add(a)
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        state = flow.run(store=store)
        view = replay(store, state.run_id)
        again = flow.run(store=store, run_id=state.run_id)
    finally:
        store.close()
    result = view.flow_state.result
    assert set(result) == {"one-1", "add-1"}
    assert result["one-1"] == state.result[a] and result["add"] == state.result[b]
    assert view.flow_state == state  # class, message and result
    assert again == state and again.result[b].result == 2


def test_time_travel_folds_the_log_only_that_far(tmp_path: Path) -> None:
    @task
    def one() -> int:
        return 1

    with Flow("t") as flow:
        one()
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        state = flow.run(store=store)
        log = store.read(state.run_id)
        running = next(
            e for e in log if e.kind == "state" and b"Running" in e.payload and e.seq > 3
        )
        early = replay(store, state.run_id, until=running.seq)
        at = datetime.fromtimestamp(running.ts / 1e9, UTC) + timedelta(microseconds=1)
        by_time = replay(store, state.run_id, until=at)
        with pytest.raises(ValueError, match="aware"):
            replay(store, state.run_id, until=datetime(2026, 1, 1))
        with pytest.raises(ValueError, match="sequence number"):
            replay(store, state.run_id, until=0)
    finally:
        store.close()
    assert early.head == running.seq
    assert early.task_states["one"].name == "Running" and not early.finished()
    assert by_time.head >= running.seq and by_time.task_states["one"].name in ("Running", "Success")


# -- a logged Cached success never runs again -----------------------------------------------


def test_a_resume_after_a_cached_success_runs_nothing_logged(tmp_path: Path) -> None:
    from statecore.cache_validators import all_inputs

    calls: Counter[str] = Counter()

    @task(cache_for=timedelta(hours=1), cache_validator=all_inputs)
    def cached(x: int) -> int:
        calls["cached"] += 1
        return x * 2

    @task
    def crash(y: int) -> int:
        calls["crash"] += 1
        if calls["crash"] == 1:
            raise KeyboardInterrupt
        return y

    with Flow("cache") as flow:
        crash(cached(21))
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        with pytest.raises(KeyboardInterrupt):
            flow.run(store=store, run_id="c")
        assert replay(store, "c").task_states["cached"].name == "Cached"
        state = resume("c", flow, store=store)
        view = replay(store, "c")
    finally:
        store.close()
    assert state.is_successful() and state.result["crash"].result == 42
    assert calls == Counter({"cached": 1, "crash": 2})
    assert not any("Cache was invalid" in (e.message or "") for e in view.timeline())
    # the fold keeps every field the validator reads
    folded = view.task_states["cached"]
    assert isinstance(folded, states.Cached)
    assert folded.cached_inputs == {"x": 21}
    assert folded.cached_result_expiration is not None


def test_an_invalid_cache_runs_again_on_a_retrys_pass_as_in_prefect_1(tmp_path: Path) -> None:
    """Prefect 1's flow.run makes a pass over every task for a retry, and checks a Cached
    task's cache again there: a cache that expired before the retry's pass (0.2 s
    against a 1 s retry delay) fails its validator and the body runs again."""
    calls: Counter[str] = Counter()

    @task(cache_for=timedelta(milliseconds=200))
    def given() -> int:
        calls["given"] += 1
        return 5

    @task(max_retries=1, retry_delay=timedelta(seconds=1))
    def flaky() -> int:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ValueError("once")
        return 1

    with Flow("revisit") as flow:
        given()
        flaky()
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        state = flow.run(store=store)
        timeline = replay(store, state.run_id).timeline()
    finally:
        store.close()
    assert state.is_successful()
    assert calls == Counter({"given": 2, "flaky": 2})
    given_changes = [(e.prev, e.new, e.message) for e in timeline if e.task == "given-1"]
    assert ("Cached", "Pending", "Cache was invalid; ready to run.") in given_changes
    assert given_changes[-1][1] == "Cached"


def test_a_resume_is_its_own_pass_so_a_retry_it_finds_does_not_rerun_its_upstream() -> None:
    """A task waiting for approval, cached with a validator that never accepts, upstream
    of a task that retries. Approving it once: it succeeds (Cached), the downstream task
    fails and waits to retry, and the retry's pass checks the cache, which fails, so the
    approved task runs again and pauses again (Prefect 1's flow.run does the same).
    Approving it a second time is a new flow run: the approved task succeeds and the
    retry runs in that same pass, as in Prefect 1. (Found by the pause-and-approve
    property: every resume checked the cache again before the retry and the run never
    ended.)"""
    calls: Counter[str] = Counter()

    @task(cache_for=timedelta(hours=1), cache_validator=never_use)
    def gate() -> int:
        calls["gate"] += 1
        if not context.get("resume"):
            raise signals.PAUSE("waiting for approval")
        return 1

    @task(max_retries=1, retry_delay=timedelta(0))
    def flaky() -> int:
        calls["flaky"] += 1
        if context.get("task_run_count") == 1:
            raise signals.RETRY("once")
        return 2

    with Flow("approve-then-retry") as flow:
        g = gate()
        flaky(upstream_tasks=[g])
    store = MemoryStore()
    state = flow.run(store=store)
    assert state.result[g].is_paused()
    state = resume(state.run_id, flow, store=store, approve=[g])
    # the retry's pass ran the gate again, and it waits again
    assert state.result[g].is_paused()
    assert state.result[flow.get_tasks(name="flaky")[0]].is_retrying()
    state = resume(state.run_id, flow, store=store, approve=[g])
    assert state.is_successful()
    assert calls == Counter({"gate": 4, "flaky": 2})
    assert state.result[flow.get_tasks(name="flaky")[0]].result == 2


def test_a_mapped_retry_waiting_on_an_upstream_that_ran_again_still_runs() -> None:
    """A mapped task whose child retries waits on an upstream whose cache went invalid on
    the retry's pass; once that upstream is Cached again the child's retries go on (the
    run used to stop there, Running, with the child Retrying)."""
    calls: Counter[str] = Counter()

    @task(cache_for=timedelta(hours=1), cache_validator=never_use)
    def given(c: int) -> list[int]:
        calls["given"] += 1
        return [0]

    @task(max_retries=2, retry_delay=timedelta(0))
    def child(m: int, c: int) -> int:
        calls["child"] += 1
        raise ValueError("boom")

    with Flow("revisit-map") as flow:
        xs = given(c=0)
        child.map(m=xs, c=unmapped(0), upstream_tasks=[xs])
    state = flow.run(store=MemoryStore())
    assert state.is_finished() and state.is_failed()
    assert calls["child"] == 3
    assert state.result["child"].map_states[0].is_failed()


def test_a_revisited_cached_child_keeps_its_map_unfinished_until_it_ends_again() -> None:
    """A mapped child's Cached state re-visited on a retry's pass goes Pending and ends
    again: its map counted it finished twice, so a task downstream of the map was never
    ready (found by the fold==run property: flow.run returned a run still Running)."""

    @task(
        max_retries=1,
        retry_delay=timedelta(0),
        cache_for=timedelta(hours=1),
        cache_validator=never_use,
    )
    def odd_fails(m: int) -> list[int]:
        if context.get("map_index") % 2:
            raise ValueError("odd index")
        return []

    @task(trigger=triggers.always_run)
    def after(xs: list[Any]) -> int:
        return len(xs)

    with Flow("revisit-downstream") as flow:
        after(odd_fails.map(m=[5, 3]))
    store = MemoryStore()
    state = flow.run(store=store)
    # the task after the map ran (before the fix it was never ready)
    assert state.is_successful(), state
    assert state.result["after"].is_successful()
    kids = state.result["odd_fails"].map_states
    assert [type(k).__name__ for k in kids] == ["Cached", "Failed"]
    # the log re-visits the Cached child, and replay folds to the same finished run
    view = replay(store, state.run_id)
    assert any(e.message == "Cache was invalid; ready to run." for e in view.timeline())
    assert view.flow_state == state and view.unfinished_children == {1: 0}


def test_a_retry_waits_for_a_revisited_child_then_runs() -> None:
    """A reducer's retry re-visits the Cached child it reads: the child runs again, and
    the retry waits for it, then runs (it was never queued again: flow.run returned the
    run Running, with the reducer Retrying)."""
    calls: Counter[str] = Counter()

    @task(cache_for=timedelta(hours=1), cache_validator=never_use)
    def child(m: int) -> int:
        calls["child"] += 1
        return m

    @task(max_retries=2, retry_delay=timedelta(0))
    def flaky(xs: list[int]) -> int:
        calls["flaky"] += 1
        if calls["flaky"] <= 2:
            raise ValueError("not yet")
        return sum(xs)

    with Flow("retry-after-revisit") as flow:
        flaky(child.map([1, 2]))
    store = MemoryStore()
    state = flow.run(store=store)
    assert state.is_successful(), state
    assert state.result["flaky"].result == 3
    # each retry's pass re-visits both Cached children: they run three times
    assert calls == Counter(flaky=3, child=6)
    assert replay(store, state.run_id).flow_state == state


# -- the lease first, then the log ----------------------------------------------------------


def test_a_stale_resumer_takes_the_lease_then_reads_the_log_and_runs_nothing_done(
    tmp_path: Path,
) -> None:
    """A resumer that read the log, then paused while another driver finished the run,
    folds what was appended once it holds the lease: no logged success runs again."""
    from statecore.graph import Graph
    from statecore.runners.driver import Driver

    calls: Counter[str] = Counter()

    @task
    def first() -> int:
        calls["first"] += 1
        return 1

    @task
    def second(x: int) -> int:
        calls["second"] += 1
        if calls["second"] == 1:
            raise KeyboardInterrupt
        return x + 1

    with Flow("stale") as flow:
        second(first())
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        with pytest.raises(KeyboardInterrupt):
            flow.run(store=store, run_id="s")
        stale = replay(store, "s")  # a resumer reads the log here, then pauses...
        assert resume("s", flow, store=store).is_successful()  # ...while another finishes
        head = store.head("s")
        state = Driver(Graph.of(flow), store, stale, LocalRunner()).drive()
        assert state.is_successful() and state.result["second"].result == 2
        assert store.head("s") == head  # it wrote nothing
    finally:
        store.close()
    assert calls == Counter({"first": 1, "second": 2})


def test_a_new_run_id_started_twice_runs_its_first_task_once(tmp_path: Path) -> None:
    from statecore.errors import LeaseHeld
    from statecore.events import RunStarted
    from statecore.fold import RunView
    from statecore.graph import Graph
    from statecore.runners.driver import Driver

    calls: Counter[str] = Counter()

    @task
    def once() -> int:
        calls["once"] += 1
        return 1

    with Flow("twice") as flow:
        once()
    graph = Graph.of(flow)
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        # two starters both saw no run "n"; the first to hold the lease starts it
        late = Driver(graph, store, RunView("n"), LocalRunner())
        assert flow.run(store=store, run_id="n").is_successful()
        with pytest.raises(LeaseHeld, match="started by another process"):
            late.drive(start=RunStarted(flow.name, graph.record(), {}))
        assert replay(store, "n").flow_state.is_successful()
    finally:
        store.close()
    assert calls["once"] == 1


def test_a_secret_from_the_environment_never_reaches_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from statecore import Parameter, Secret

    canary = "canary-7f3a9c1e-from-env"
    monkeypatch.setenv("STATECORE_SECRET_API_TOKEN", canary)

    @task(cache_for=timedelta(hours=1))
    def use(token: str, p: str) -> str:
        context["logger"].info(f"using {token} and {p}")
        return f"{token}/{p}"

    with Flow("env-secret") as flow:
        use(Secret("API_TOKEN"), Parameter("p", default=canary))
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    try:
        state = flow.run(store=store)
        assert state.is_successful()
        assert state.result["use"].result == f"{canary}/{canary}"  # the run itself sees it
    finally:
        store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert canary.encode() not in raw
    assert b"<secret:API_TOKEN>" in raw


# -- outcomes stream back one by one --------------------------------------------------------


@task
def gated_child(i: int, gate: str) -> int:
    """Child 1 waits until the test has seen child 0's outcome in the log (a file)."""
    deadline = time.monotonic() + 60  # only to end a hung test
    while i == 1 and not Path(gate).exists():
        assert time.monotonic() < deadline, "the fast child's outcome never reached the log"
        time.sleep(0.005)
    return i


@pytest.mark.parametrize("executor", ["threads", "dask"])
def test_an_outcome_is_logged_while_its_sibling_still_runs(tmp_path: Path, executor: str) -> None:
    """No batching of results: with both children handed to one worker batch (or one Dask
    worker), the fast child's Success is committed while the slow one is still running."""
    gate = tmp_path / "gate"
    with Flow("stream") as flow:
        # on 2 workers, children 0 and 1 are handed out in one batch
        gated_child.map([0, 1, 2, 3], unmapped(str(gate)))
    store = SQLiteStore(tmp_path / "runs.db")
    watcher = SQLiteStore(tmp_path / "runs.db")

    def watch() -> None:
        deadline = time.monotonic() + 60  # only to end a hung test
        while time.monotonic() < deadline and not gate.exists():
            if store_has_fast_success(watcher):
                gate.touch()
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        runner: Any
        if executor == "threads":
            runner = LocalRunner(max_workers=2, group_delay=0.02)
        else:
            from statecore.runners import DaskRunner

            runner = DaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 2})
        state = flow.run(store=store, run_id="stream", runner=runner)
    finally:
        gate.touch()
        thread.join(5)
        watcher.close()
        store.close()
    assert state.is_successful()


def store_has_fast_success(store: Store) -> bool:
    if store.head("stream") == 0:
        return False
    view = replay(store, "stream")
    kids = view.children.get(view.by_key["gated_child-1"], [])
    return bool(kids) and kids[0].state.name == "Success" and kids[1].state.name == "Running"

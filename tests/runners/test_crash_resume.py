"""Crash-resume: a subprocess driving a real flow is SIGKILLed at seeded points, then resumed.

The flow (:data:`tests.crash_flows.flows.crash_flow`) is a chain of 20 tasks feeding a
``.map`` over 30 items (some children fail their first attempt and retry) feeding a
reducer, plus a task that needs three attempts and a task that LOOPs five times. Every
body appends ``key index attempt`` to a side-effect file with write + fsync before doing
anything else, so the file is the ground truth of which bodies were entered.

Each seed picks a kill moment (the side-effect file has ``k`` lines, then a few ms of
jitter; ``k = 0`` kills during start-up, the last seeds kill in the last bodies). The
killed driver held a 30 s lease, so the resume can only succeed by the same-host
dead-holder takeover. After the resume we check, against the log as it was at the kill:

* no body whose Success was logged ran again (side-effect lines after the kill);
* every task and mapped child ran at least once;
* final states and results equal an uninterrupted run's;
* ``replay`` equals what the resume returned;
* entities logged Running (or Looped) at the kill are logged ``Pending("Interrupted: ...")``
  and run again with the same attempt number (no retry consumed), and a loop continues
  from its last logged iteration;
* the hash chain is intact across the kill and the resumed events carry a newer epoch.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from statecore.backends import SQLiteStore, Store
from statecore.errors import RunNotFound
from statecore.events import StateChanged, StoredEvent, chain_hash, decode_body
from statecore.fold import RunView, fold
from statecore.runners import LocalRunner, replay, resume
from statecore.states import Looped, Mapped, Running, State, Success

from ..conftest import unique_prefix
from ..crash_flows import flows
from ..crash_flows.flows import crash_flow, crash_lines_total, read_lines

REPO = Path(__file__).resolve().parent.parent.parent
TOTAL_LINES = crash_lines_total()
SQLITE_SEEDS = list(range(52))
REDIS_SEEDS = list(range(10))

Entity = tuple[str, int | None]
# The killed driver's lease outlives the test, so a resume gets in only through the
# same-host dead-holder takeover.
HOLDER_TTL = 30.0


def subprocess_env(side: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATECORE_")}
    env[flows.SIDE_ENV] = str(side)
    env.update(extra or {})
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def spawn(
    store_url: str, run_id: str, side: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.crash_flows.drive",
            "--store",
            store_url,
            "--run-id",
            run_id,
            *extra,
        ],
        cwd=REPO,
        env=subprocess_env(side, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@dataclass(frozen=True)
class KillPlan:
    """When to kill: once the side-effect file has ``lines`` lines, after ``jitter`` s.

    ``lines == 0`` kills ``jitter`` seconds after the process starts (during start-up,
    the first appends or the first body), or at its first line, whichever comes first.
    """

    lines: int
    jitter: float

    @classmethod
    def for_seed(cls, seed: int, n_seeds: int) -> KillPlan:
        rng = random.Random(f"crash-{seed}")
        if seed % 17 == 0:
            return cls(0, rng.uniform(0.15, 0.45))
        if seed == n_seeds - 1:
            return cls(TOTAL_LINES, 0.0)  # inside the reducer, before the last commits
        if seed == n_seeds - 2:
            return cls(TOTAL_LINES - 1, rng.uniform(0, 0.002))
        return cls(rng.randint(1, TOTAL_LINES - 1), rng.uniform(0, 0.004))


def kill_at(proc: subprocess.Popen[bytes], side: Path, plan: KillPlan) -> bool:
    """SIGKILL ``proc`` per ``plan`` and reap it; True if it was killed before finishing."""
    began = time.monotonic()
    deadline = began + 60
    while proc.poll() is None and time.monotonic() < deadline:
        count = len(read_lines(side))
        if plan.lines == 0:
            if count > 0 or time.monotonic() - began >= plan.jitter:
                break
        elif count >= plan.lines:
            if plan.jitter:
                time.sleep(plan.jitter)
            break
        time.sleep(0.0005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    # The dead-holder takeover needs the process reaped: a zombie still answers kill(pid, 0).
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()
    return proc.returncode == -signal.SIGKILL


# -- comparing states ------------------------------------------------------------------


def summary(states: Any, keys: list[str]) -> dict[str, Any]:
    """Each task's (name, message, result); a mapped task's children likewise."""
    out: dict[str, Any] = {}
    for key in keys:
        st: State = states[key]
        if isinstance(st, Mapped):
            out[key] = (st.name, st.message, [(c.name, c.message, c.result) for c in st.map_states])
        else:
            out[key] = (st.name, st.message, st.result)
    return out


def entity_states(view: RunView) -> dict[Entity, Any]:
    """Every task and mapped child's TaskRun, by (key, index)."""
    out: dict[Entity, Any] = {}
    for i, key in enumerate(view.keys):
        out[(key, None)] = view.runs[i]
        for j, child in enumerate(view.children.get(i, ())):
            out[(key, j)] = child
    return out


def task_changes(events: list[StoredEvent]) -> list[tuple[int, StateChanged]]:
    out = []
    for event in events:
        if event.kind == "state":
            body = decode_body(event)
            assert isinstance(body, StateChanged)
            if body.task is not None:
                out.append((event.seq, body))
    return out


def assert_chain(events: list[StoredEvent]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    previous: StoredEvent | None = None
    for event in events:
        expected = b"" if previous is None else chain_hash(previous)
        assert event.prev_hash == expected, f"hash chain broken at event {event.seq}"
        previous = event


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted run of the crash flow: its summary and its flow state."""
    from statecore.backends import MemoryStore

    side = tmp_path_factory.mktemp("reference") / "side"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(flows.SIDE_ENV, str(side))
        mp.delenv("STATECORE_HMAC_KEY", raising=False)
        state = crash_flow.run(store=MemoryStore(), runner=LocalRunner(group_events=8))
    assert state.is_successful()
    lines = read_lines(side)
    assert len(lines) == TOTAL_LINES
    keys = list(state.result)
    return {"summary": summary(state.result, keys), "flow": (state.name, state.message)}


def crash_and_resume(
    store: Store,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reference: dict[str, Any],
    plan: KillPlan,
    run_id: str,
) -> None:
    side = tmp_path / "side"
    proc = spawn(
        store_url,
        run_id,
        side,
        *("--group-events", "8", "--lease-ttl", str(HOLDER_TTL), "--lease-renew", "0.5"),
    )
    killed = kill_at(proc, side, plan)

    # -- the log and the side effects as the kill left them --------------------------
    before_lines = read_lines(side)
    before_events = store.read(run_id)
    at_kill: RunView | None = fold(before_events, run_id=run_id) if before_events else None
    lease_at_kill = store.get_lease(run_id)

    monkeypatch.setenv(flows.SIDE_ENV, str(side))
    monkeypatch.delenv("STATECORE_HMAC_KEY", raising=False)
    runner = LocalRunner(max_workers=4, group_events=8, lease_ttl=1.0, lease_renew=0.3)
    lease_live = lease_at_kill is not None and lease_at_kill.expires > time.time_ns()
    if at_kill is None:
        # Nothing was durable yet: there is no run to resume, and saying so writes nothing.
        with pytest.raises(RunNotFound):
            resume(run_id, crash_flow, store=store, runner=runner)
        assert store.head(run_id) == 0
        state = crash_flow.run(store=store, run_id=run_id, runner=runner)
    else:
        state = resume(run_id, crash_flow, store=store, runner=runner)

    # -- outcome ----------------------------------------------------------------------
    assert state.is_successful(), state
    keys = list(state.result)
    assert summary(state.result, keys) == reference["summary"]
    assert (state.name, state.message) == reference["flow"]

    events = store.read(run_id)
    view = replay(store, run_id)
    assert view.problems == []
    assert (view.flow_state.name, view.flow_state.message) == (state.name, state.message)
    assert summary(view.task_states, keys) == summary(state.result, keys)
    assert_chain(events)

    # -- side effects -----------------------------------------------------------------
    all_lines = read_lines(side)
    assert all_lines[: len(before_lines)] == before_lines
    after = all_lines[len(before_lines) :]
    ran = {(key, index) for key, index, _, _ in all_lines}
    final = entity_states(view)
    bodies = {e for e, run in final.items() if not isinstance(run.state, Mapped)}
    assert bodies - ran == set(), "tasks that never ran"
    assert ran <= set(final)

    if at_kill is None:
        return
    head = at_kill.head
    kill_states = entity_states(at_kill)
    succeeded = {e for e, run in kill_states.items() if isinstance(run.state, Success)}
    rerun = sorted({(k, i) for k, i, _, _ in after if (k, i) in succeeded}, key=str)
    assert rerun == [], f"logged successes ran again after the kill: {rerun}"

    # the resumed driver fenced the dead one out with a newer epoch
    old_epochs = {e.epoch for e in before_events}
    assert len(old_epochs) == 1
    assert all(e.epoch > max(old_epochs) for e in events[head:])
    assert events[:head] == before_events
    if at_kill.finished():
        # killed after the run's last commit (releasing its lease, exiting): nothing to do
        assert after == [] and events == before_events
    elif killed and lease_live:
        # The holder's lease had time left, so only the dead-holder rule let us in.
        assert [n.code for _, n in view.notes].count("takeover") == 1, view.notes

    # -- interrupted attempts -----------------------------------------------------------
    changes = task_changes(events)
    later: dict[Entity, list[StateChanged]] = defaultdict(list)
    for seq, change in changes:
        if seq > head:
            later[(change.task, change.index)].append(change)  # type: ignore[arg-type]
    lines_after: dict[Entity, list[tuple[int, str]]] = defaultdict(list)
    for key, index, attempt, extra in after:
        lines_after[(key, index)].append((attempt, extra))
    for entity, run in kill_states.items():
        if not isinstance(run.state, Running | Looped):
            assert all(
                not (c.new == "Pending" and (c.message or "").startswith("Interrupted"))
                for c in later[entity]
            ), entity
            continue
        first, *rest = later[entity]
        assert (first.prev, first.new) == (run.state.name, "Pending"), (entity, first)
        assert (first.message or "").startswith("Interrupted: "), first.message
        assert first.attempt == run.attempt
        rerun_attempts = [c.attempt for c in rest if c.new == "Running"]
        assert rerun_attempts and rerun_attempts[0] == run.attempt, (entity, rerun_attempts)
        assert lines_after[entity][0][0] == run.attempt, (entity, lines_after[entity])
    # retries are never exceeded: attempts stay within max_retries + 1
    for _, change in changes:
        if change.new == "Running":
            limit = {"flaky-1": flows.FLAKY_ATTEMPTS, "square-1": 2}.get(change.task or "", 1)
            assert change.attempt <= limit, change

    # -- a loop resumes from its last logged iteration -----------------------------------
    loop_run = kill_states[("countdown-1", None)]
    if isinstance(loop_run.state, Running | Looped) and loop_run.loop_count:
        iterations = [int(extra[1:]) for _, extra in lines_after[("countdown-1", None)]]
        assert iterations and min(iterations) == loop_run.loop_count + 1, (
            loop_run.loop_count,
            iterations,
        )


@pytest.mark.parametrize("seed", SQLITE_SEEDS)
def test_sqlite_crash_resume(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[str, Any]
) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    try:
        crash_and_resume(
            store,
            f"sqlite:///{path}",
            tmp_path,
            monkeypatch,
            reference,
            KillPlan.for_seed(seed, len(SQLITE_SEEDS)),
            f"crash-sqlite-{seed}",
        )
    finally:
        store.close()


@pytest.fixture
def redis_prefix(redis_url: str, redis_cleanup: Callable[[str], None]) -> Iterator[str]:
    prefix = unique_prefix()
    redis_cleanup(prefix)
    yield prefix


@pytest.mark.parametrize("seed", REDIS_SEEDS)
def test_redis_crash_resume(
    seed: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reference: dict[str, Any],
    redis_url: str,
    redis_prefix: str,
) -> None:
    from statecore.backends.redis import RedisStore

    url = f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={redis_prefix}"
    store = RedisStore(url)
    try:
        crash_and_resume(
            store,
            url,
            tmp_path,
            monkeypatch,
            reference,
            KillPlan.for_seed(seed, len(REDIS_SEEDS)),
            f"crash-redis-{seed}",
        )
    finally:
        store.close()


def test_kill_plans_cover_start_middle_and_end() -> None:
    plans = [KillPlan.for_seed(s, len(SQLITE_SEEDS)) for s in SQLITE_SEEDS]
    assert len(plans) >= 50
    assert sum(p.lines == 0 for p in plans) >= 3
    assert any(p.lines >= TOTAL_LINES - 1 for p in plans)
    assert len({p.lines for p in plans}) >= 25


def test_a_blocked_inline_body_does_not_hold_the_commit_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body run inline does not hold the commit window open: while the first body
    waits (for a gate never opened), the run's opening events reach the log; a SIGKILL
    then leaves a run that the same run id takes over, the body running again."""
    from ..crash_flows.flows import GATE_ENV, gated_flow

    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    side = tmp_path / "side"
    gate = tmp_path / "gate"
    proc = spawn(
        f"sqlite:///{path}",
        "early",
        side,
        *("--flow", "gated", "--lease-ttl", "30"),
        env={GATE_ENV: str(gate)},
    )
    # no clock in the assertion: wait (bounded) for the commit while the body is blocked
    deadline = time.monotonic() + 60
    while store.head("early") == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the flow ended although its first body is blocked"
    committed = store.read("early")
    assert committed and committed[0].kind == "run"
    assert kill_at(proc, side, KillPlan(0, 0.0))
    assert store.read("early")[: len(committed)] == committed
    assert store.get_lease("early") is not None
    monkeypatch.setenv(flows.SIDE_ENV, str(side))
    gate.touch()
    monkeypatch.setenv(GATE_ENV, str(gate))
    try:
        state = gated_flow.run(store=store, run_id="early", runner=LocalRunner(lease_ttl=1))
        assert state.is_successful()
    finally:
        events = store.read("early")
        store.close()
    assert events[0].kind == "run"
    assert_chain(events)
    view = replay(SQLiteStore(path), "early")
    assert view.flow_state.is_successful()
    assert [n.code for _, n in view.notes] == [
        "session-start",
        "session-lost",
        "session-start",
        "takeover",
        "session-end",
    ]

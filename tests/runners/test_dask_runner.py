"""DaskRunner: task bodies on dask.distributed workers, events appended by the driver only.

The cluster is started by the tests themselves (LocalCluster): in CI a missing dask
installation is an error, not a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed
import pytest

from statecore import Flow, Secret, context, signals, task
from statecore.backends import MemoryStore
from statecore.backends.sqlite import SQLiteStore
from statecore.errors import ClusterUnavailable
from statecore.runners import DaskRunner, replay, resume
from statecore.states import NOT_PERSISTED, Mapped


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


# Module-level tasks: spawned worker processes import them by reference.


@task
def inc(x: int) -> int:
    context["logger"].info("inc %s on a worker", x)
    return x + 1


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@task(max_retries=1)
def flaky(x: int) -> int:
    if context["task_run_count"] == 1:
        raise ValueError("first attempt fails")
    return x


@task
def count_up() -> int:
    i = context.get("task_loop_result", 0)
    if i < 3:
        raise signals.LOOP(result=i + 1)
    return int(i)


@task
def skip_odd(x: int) -> int:
    if x % 2:
        raise signals.SKIP("odd")
    return x


@task
def uses_token(token: str) -> int:
    return len(token)


@task
def pid() -> int:
    import os

    return os.getpid()


def build() -> tuple[Flow, dict[str, Any]]:
    with Flow("dask") as flow:
        mapped = inc.map(list(range(12)))
        summed = total(mapped)
        retried = flaky(summed)
        looped = count_up()
        skipped = skip_odd.map([1, 2, 3])
        token = uses_token(Secret("TOKEN"))
        where = pid()
    return flow, dict(
        mapped=mapped,
        summed=summed,
        retried=retried,
        looped=looped,
        skipped=skipped,
        token=token,
        where=where,
    )


def test_a_flow_runs_on_worker_processes_and_replays_equal(client: Any, tmp_path: Path) -> None:
    import os

    flow, h = build()
    store = SQLiteStore(tmp_path / "runs.db")
    state = flow.run(store=store, runner=DaskRunner(client=client), secrets={"TOKEN": "s3cr3t"})
    assert state.is_successful()
    assert state.result[h["summed"]].result == sum(range(1, 13))
    assert state.result[h["retried"]].result == sum(range(1, 13))
    assert state.result[h["looped"]].result == 3
    assert [s.name for s in state.result[h["skipped"]].map_states] == [
        "Skipped",
        "Success",
        "Skipped",
    ]
    assert state.result[h["token"]].result == 6
    # bodies ran in the workers, not in the driver
    assert state.result[h["where"]].result != os.getpid()
    view = replay(store, state.run_id)
    for key in view.task_states:
        live, folded = state.result[key], view.task_states[key]
        assert live.name == folded.name and live.message == folded.message
        if not isinstance(live, Mapped) and folded.result is not NOT_PERSISTED:
            assert folded.result == live.result
    # log lines written on workers reach the log, and retries/loops are in the timeline
    assert sum("on a worker" in r.message for _, r in view.logs) == 12
    news = [e.new for e in view.timeline() if e.task == "flaky-1"]
    assert news == ["Running", "Retrying", "Running", "Success"]
    assert [e.new for e in view.timeline() if e.task == "count_up-1"].count("Looped") == 3
    raw = (tmp_path / "runs.db").read_bytes()
    assert b"s3cr3t" not in raw


def test_a_temporary_local_cluster_per_run() -> None:
    flow, h = build()
    state = flow.run(
        store=MemoryStore(),
        runner=DaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 2}),
        secrets={"TOKEN": "x"},
    )
    assert state.is_successful()
    assert state.result[h["summed"]].result == sum(range(1, 13))


def test_a_driver_interrupted_mid_run_resumes_on_dask(client: Any, tmp_path: Path) -> None:
    ran = tmp_path / "ran.txt"
    interrupt = [True]

    def ctrl_c(task: Any, old: Any, new: Any) -> None:
        # Ctrl-C reaches the driver (never a worker) as the second task is about to run
        if interrupt and new.is_running():
            interrupt.clear()
            raise KeyboardInterrupt

    @task
    def first(path: str) -> int:
        with open(path, "a") as f:
            f.write("first\n")
        return 1

    @task(state_handlers=[ctrl_c])
    def second(x: int, path: str) -> int:
        with open(path, "a") as f:
            f.write("second\n")
        return x + 1

    with Flow("dask-resume") as flow:
        out = second(first(str(ran)), str(ran))
    store = MemoryStore()
    runner = DaskRunner(client=client)
    with pytest.raises(KeyboardInterrupt):
        flow.run(store=store, run_id="d1", runner=runner)
    assert replay(store, "d1").task_states[out].name == "Pending"
    state = resume("d1", flow, store=store, runner=runner)
    assert state.is_successful() and state.result[out].result == 2
    # bodies ran on worker processes; the logged success did not run again
    assert ran.read_text().split() == ["first", "second"]


def test_an_unreachable_scheduler_is_a_clear_error() -> None:
    with Flow("nowhere") as flow:
        inc(1)
        inc(2)
    with pytest.raises(ClusterUnavailable, match=r"127\.0\.0\.1:9"):
        flow.run(store=MemoryStore(), runner=DaskRunner("tcp://127.0.0.1:9", connect_timeout=1))


@task
def where_default() -> int:
    import os

    return os.getpid()


def test_the_default_runner_starts_worker_processes() -> None:
    import os

    with Flow("dask-default") as flow:
        out = where_default()
    # no address, no cluster_kwargs: a LocalCluster of worker processes, as Prefect 1's
    # DaskExecutor; threads only when asked
    state = flow.run(store=MemoryStore(), runner=DaskRunner(cluster_kwargs={"n_workers": 1}))
    assert state.is_successful() and state.result[out].result != os.getpid()
    threaded = DaskRunner(cluster_kwargs={"n_workers": 1, "processes": False})
    state = flow.run(store=MemoryStore(), runner=threaded)
    assert state.is_successful() and state.result[out].result == os.getpid()


@task
def record(path: str, name: str, x: int) -> int:
    with open(path, "a") as f:
        f.write(f"{name}\n")
    return x + 1


@task(max_retries=1)
def kill_my_worker(path: str, marker: str, x: int) -> int:
    import os
    import signal

    if not os.path.exists(marker):
        open(marker, "w").close()
        # the worker process dies mid-task, as from the OOM killer
        os.kill(os.getpid(), signal.SIGKILL)
    with open(path, "a") as f:
        f.write("killer\n")
    return x + 1


def test_a_worker_process_killed_mid_task_loses_nothing(tmp_path: Path) -> None:
    ran, marker = str(tmp_path / "ran.txt"), str(tmp_path / "killed")
    with Flow("dask-kill") as flow:
        a = record(ran, "a", 0)
        b = kill_my_worker(ran, marker, a)
        c = record(ran, "c", b)
        side = record.map([ran] * 4, [f"m{i}" for i in range(4)], list(range(4)))
    store = SQLiteStore(tmp_path / "runs.db")
    runner = DaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1})
    state = flow.run(store=store, runner=runner)
    assert Path(marker).exists()  # the worker really was killed once
    assert state.is_successful()
    assert state.result[c].result == 3
    # every body that finished ran exactly once; the killed one finished once, after
    lines = Path(ran).read_text().split()
    assert sorted(lines) == sorted(["a", "killer", "c", "m0", "m1", "m2", "m3"])
    # the log folds to what the run returned
    view = replay(store, state.run_id)
    assert view.flow_state.is_successful()
    for key, live in state.result.items():
        folded = view.task_states[key]
        assert (live.name, live.message) == (folded.name, folded.message)
    assert [s.result for s in view.task_states[side].map_states] == [1, 2, 3, 4]
    news = [e.new for e in view.timeline() if e.task == "kill_my_worker-1"]
    assert news[0] == "Running" and news[-1] == "Success"


@task(max_retries=1)
def wait_to_be_killed(path: str, marker: str, x: int) -> int:
    import os
    import time

    context["logger"].info("attempt %s starts", context["task_run_count"])
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)  # killed from outside long before this ends
    with open(path, "a") as f:
        f.write("victim\n")
    return x + 1


@pytest.mark.parametrize("allowed_failures", [3, 0])
def test_a_worker_process_killed_from_outside_mid_task(
    tmp_path: Path, allowed_failures: int
) -> None:
    """The test kills the worker that runs the task (found through the client, as an
    operator or the OOM killer would): the task's body runs again and succeeds, the
    bodies that had finished are not run again, and their log lines stay in the log.

    With Dask's default ``allowed-failures`` (3) the scheduler itself runs the lost
    attempt again on the other worker: one Running, one Success in the log. With 0 Dask
    gives up at once (``KilledWorker``), the attempt fails and the task's own policy
    (``max_retries=1``) retries it: Running, Retrying, Running, Success."""
    import os
    import signal
    import threading
    import time

    import dask

    ran, marker = str(tmp_path / "ran.txt"), str(tmp_path / "started")
    with Flow("dask-kill-outside") as flow:
        side = inc.map(list(range(6)))
        # a chain after the map: when the worker dies, the victim is its only task
        a = record(ran, "a", total(side))
        b = wait_to_be_killed(ran, marker, a)
        c = record(ran, "c", b)
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
    killed: list[int] = []

    def kill_the_worker_running_it(client: Any) -> None:
        deadline = time.monotonic() + 60
        while not os.path.exists(marker) or not Path(marker).read_text():
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.05)
        pids = client.run(os.getpid)  # {worker address: pid}, asked of the workers
        busy = [w for w, keys in client.processing().items() if keys]
        victim = int(Path(marker).read_text())
        # the pid the body wrote is a worker's, and that worker is the busy one
        assert victim in pids.values()
        assert next(w for w, p in pids.items() if p == victim) in busy
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    try:
        with distributed.Client(cluster) as client:
            killer = threading.Thread(target=kill_the_worker_running_it, args=(client,))
            killer.start()
            store = SQLiteStore(tmp_path / "runs.db")
            state = flow.run(store=store, runner=DaskRunner(client=client))
            killer.join(timeout=60)
    finally:
        cluster.close()
    assert len(killed) == 1
    assert state.is_successful()
    assert state.result[c].result == 21 + 3
    # the finished bodies ran exactly once; the killed one finished once, after the kill
    assert Path(ran).read_text().split() == ["a", "victim", "c"]
    view = replay(store, state.run_id)
    assert view.flow_state.is_successful()
    assert [s.result for s in view.task_states[side].map_states] == [1, 2, 3, 4, 5, 6]
    # every mapped child's line, logged before or after the kill, is in the log, once
    lines = [r.message for _, r in view.logs if "on a worker" in r.message]
    assert sorted(lines) == sorted(f"inc {i} on a worker" for i in range(6))
    news = [e.new for e in view.timeline() if e.task == "wait_to_be_killed-1"]
    started = [r.message for _, r in view.logs if r.message.startswith("attempt")]
    if allowed_failures:
        assert news == ["Running", "Success"]
        # the killed run's lines died with its worker (lines travel with the outcome)
        assert started == ["attempt 1 starts"]
    else:
        assert news == ["Running", "Retrying", "Running", "Success"]
        assert started == ["attempt 2 starts"]
    # a resume of the finished run runs nothing
    again = resume(state.run_id, flow, store=store)
    assert again.is_successful()
    assert Path(ran).read_text().split() == ["a", "victim", "c"]

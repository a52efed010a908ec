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

"""Hostile run ids, flow names and task names on every store: each is stored and read back
exactly, or refused with a clear error before anything is written; none reaches another
run's data (SQL quoting, Redis key patterns and Cluster hash tags, path traversal).

Each id runs a real flow, then the store is asked everything a reader asks: the run's
events and metadata, the run list (filtered by flow), replay, and the CLI's ``show`` and
``export``. A plain run beside them must be untouched. Output paths that are device
nodes or pipes are refused (writing "atomically" would replace the node), and a symbolic
link is written through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from statecore import Flow, task
from statecore.backends import SQLiteStore, Store
from statecore.cli.main import cli
from statecore.errors import InvalidRunId
from statecore.runners import replay

from ..conftest import (
    cluster_client,
    delete_cluster_prefix,
    delete_prefix,
    unique_prefix,
)

HOSTILE_IDS = [
    'it\'s "quoted"',
    "x'; DROP TABLE events; --",
    "../../../etc/passwd",
    "/absolute/path",
    "*",
    "run:*:events",
    "{tag}slot",
    "}{",
    "ünïcødé ✓ 🚀",
    "tab\there\nnewline",
    "\x1b[31mred\x1b[0m",
    "%s %d {0} $(echo x)",
    "r" * 10_240,
]
HOSTILE_NAMES = [
    "name'; --",
    "{a}*",
    "../x",
    "<b>bold</b>",
    "[red]markup[/red]",
    "\x1b[2Jclear",
    "\x1b]0;title\x07",
    "ünï 🚀",
    "n" * 2_000,
]


def hostile_flow(name: str) -> Flow:
    @task(name=name)
    def first() -> int:
        return 1

    @task(name=name + "-second")
    def second(x: int) -> int:
        return x + 1

    with Flow(name) as flow:
        second(first())
    return flow


def _sqlite(tmp: Path) -> Iterator[tuple[Store, str]]:
    store = SQLiteStore(tmp / "runs.db")
    yield store, f"sqlite:///{tmp / 'runs.db'}"
    store.close()


def _redis(tmp: Path, url: str) -> Iterator[tuple[Store, str]]:
    from statecore.backends.redis import RedisStore

    prefix = unique_prefix()
    store = RedisStore(url, prefix=prefix)
    try:
        yield store, f"{url}{'&' if '?' in url else '?'}prefix={prefix}"
    finally:
        store.close()
        delete_prefix(url, prefix)


def _cluster(tmp: Path, url: str) -> Iterator[tuple[Store, str]]:
    from statecore.backends.redis import RedisStore

    prefix = unique_prefix()
    store = RedisStore(url, prefix=prefix)
    try:
        yield store, f"{url}&prefix={prefix}"
    finally:
        store.close()
        admin = cluster_client(url)
        delete_cluster_prefix(admin, prefix)
        admin.close()


@pytest.fixture(params=["sqlite", "redis", "cluster"])
def store_and_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, str]]:
    makers: dict[str, Callable[[], Iterator[tuple[Store, str]]]] = {
        "sqlite": lambda: _sqlite(tmp_path),
        "redis": lambda: _redis(tmp_path, request.getfixturevalue("redis_url")),
        "cluster": lambda: _cluster(tmp_path, request.getfixturevalue("redis_cluster_url")),
    }
    yield from makers[request.param]()


def _read_everything(store: Store, url: str, run_id: str, flow_name: str) -> None:
    """Every reader's view of the run agrees with what the run wrote."""
    view = replay(store, run_id)
    assert view.run_id == run_id and view.flow_name == flow_name
    assert view.flow_state.is_successful()
    meta = store.get_run(run_id)
    assert meta is not None and meta.run_id == run_id and meta.flow_name == flow_name
    assert [m.run_id for m in store.list_runs(flow_name=flow_name)] == [run_id]
    runner = CliRunner()
    # terminal escapes in ids and names are shown as text, never obeyed (CliRunner is no
    # terminal, so statecore itself writes no colour codes here)
    for args in (["show", run_id, "--children"], ["logs", run_id], ["runs"]):
        shown = runner.invoke(cli, [*args, "--store", url])
        assert shown.exit_code == 0, shown.output
        assert "\x1b" not in shown.output and "\x07" not in shown.output, args
    exported = runner.invoke(cli, ["export", run_id, "--store", url])
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in exported.output.splitlines()]
    assert len(lines) == store.head(run_id)
    assert {line["run_id"] for line in lines} == {run_id}


def test_hostile_run_ids_are_kept_exactly_and_apart(store_and_url: tuple[Store, str]) -> None:
    store, url = store_and_url
    plain = hostile_flow("plain").run(store=store, run_id="plain")
    plain_events = store.read("plain")
    for i, run_id in enumerate(HOSTILE_IDS):
        flow_name = f"flow-{i}"
        state = hostile_flow(flow_name).run(store=store, run_id=run_id)
        assert state.is_successful() and state.run_id == run_id
        _read_everything(store, url, run_id, flow_name)
    # the plain run is untouched, and the list holds every run once
    assert store.read("plain") == plain_events and plain.is_successful()
    ids = [m.run_id for m in store.list_runs()]
    assert sorted(ids) == sorted([*HOSTILE_IDS, "plain"])


def test_hostile_flow_and_task_names_are_kept_exactly(store_and_url: tuple[Store, str]) -> None:
    store, url = store_and_url
    for i, name in enumerate(HOSTILE_NAMES):
        run_id = f"names-{i}"
        state = hostile_flow(name).run(store=store, run_id=run_id)
        assert state.is_successful()
        _read_everything(store, url, run_id, name)
        view = replay(store, run_id)
        assert len(view.task_states) == 2
        assert all(s.is_successful() for s in view.task_states.values())


@pytest.mark.parametrize("bad", ["", "nul\x00inside", "\udcff surrogate"])
def test_run_ids_that_cannot_be_kept_are_refused_before_anything_is_written(
    bad: str, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        with pytest.raises(InvalidRunId):
            hostile_flow("f").run(store=store, run_id=bad)
        assert store.list_runs() == []
    finally:
        store.close()


def _special_files(tmp: Path) -> list[Path]:
    """A pipe, and (as root, so always in CI) a character device like /dev/null."""
    import os
    import stat

    fifo = tmp / "a-pipe"
    os.mkfifo(fifo)
    found = [fifo]
    if os.geteuid() == 0:
        device = tmp / "a-device"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        found.append(device)
    elif os.environ.get("CI") == "true":
        pytest.fail("CI runs as root: the device-node case must run")
    return found


@pytest.mark.parametrize("command", ["export", "timeline"])
def test_output_onto_a_device_or_pipe_is_refused_and_the_node_kept(
    command: str, tmp_path: Path
) -> None:
    import stat

    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    hostile_flow("f").run(store=store, run_id="r")
    store.close()
    option = "--output" if command == "export" else "--html"
    for node in _special_files(tmp_path):
        mode = node.stat().st_mode
        result = CliRunner().invoke(
            cli, [command, "r", option, str(node), "--store", f"sqlite:///{db}"]
        )
        assert result.exit_code == 2, result.output
        assert "is not a regular file" in result.output
        assert node.stat().st_mode == mode and not stat.S_ISREG(node.stat().st_mode)


def test_output_through_a_symlink_writes_the_file_it_names(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    hostile_flow("f").run(store=store, run_id="r")
    events = store.head("r")
    store.close()
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    result = CliRunner().invoke(
        cli, ["export", "r", "--output", str(link), "--store", f"sqlite:///{db}"]
    )
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == target
    written = [json.loads(line)["run_id"] for line in target.read_text().splitlines()]
    assert written == ["r"] * events

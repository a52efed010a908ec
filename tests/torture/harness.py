"""Kill and race machinery shared by the torture tests and ``scripts/torture.py``.

A *target* is a store under test: SQLite with ``synchronous=FULL``, SQLite with its
defaults (WAL, ``synchronous=NORMAL``), or a Redis server of our own with
``appendonly yes`` and ``appendfsync always``. :func:`kill_round` drives one run of a
torture flow in a subprocess, SIGKILLs it at a random point, snapshots the log's raw
rows, resumes the run in this process and checks everything the README promises about
a crash; it returns what it saw rather than asserting, so the soak script can count.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from statecore.backends import open_store
from statecore.backends.base import Store
from statecore.cli.main import cli
from statecore.fold import RunView, fold
from statecore.runners import LocalRunner, replay, resume
from statecore.states import Looped, Mapped, State, Success

from . import flows
from .flows import FLOWS, GATE_KEY, read_lines

REPO = Path(__file__).resolve().parent.parent.parent
Entity = tuple[str, int | None]
#: the killed driver's lease outlives the round: a resume gets in only through the
#: same-host dead-holder takeover
HOLDER_TTL = 30.0
#: the documented group-commit window (statecore.runners.journal defaults)
WINDOW_EVENTS = 512
WINDOW_SECONDS = 0.020


# -- targets ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server of our own, AOF on and fsynced on every write, in a temp dir."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="torture-redis-"))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the torture redis-server did not start") from None
                time.sleep(0.05)
        info = client.config_get("append*")
        client.close()
        assert info["appendonly"] == "yes" and info["appendfsync"] == "always", info

    def url(self, prefix: str) -> str:
        return f"redis://127.0.0.1:{self.port}/0?prefix={prefix}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


TARGETS = ("sqlite-full", "sqlite", "redis-aof")


def store_url(target: str, workdir: Path, redis: RedisServer | None) -> str:
    """The store URL of ``target`` for one round in ``workdir``."""
    if target == "sqlite-full":
        return f"sqlite:///{workdir / 'runs.db'}?synchronous=FULL"
    if target == "sqlite":
        return f"sqlite:///{workdir / 'runs.db'}"
    if target == "redis-aof":
        assert redis is not None, "redis-aof needs a RedisServer"
        return redis.url(f"torture-{uuid.uuid4().hex[:12]}")
    raise ValueError(f"unknown target {target!r}")


def raw_log(url: str, run_id: str) -> list[tuple[Any, ...]]:
    """Every committed event row of ``run_id`` as the store keeps it, read around
    statecore: the SQLite table (read-only) or the Redis stream's entries."""
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:///").split("?")[0]
        if not os.path.exists(path):
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return list(
                conn.execute(
                    "SELECT run_id, seq, epoch, prev_hash, kind, ts, payload FROM events"
                    " WHERE run_id = ? ORDER BY seq",
                    (run_id,),
                )
            )
        finally:
            conn.close()
    import redis

    from statecore.backends._redis_keys import run_keys

    prefix = url.split("prefix=")[1].split("&")[0]
    client = redis.Redis.from_url(url.split("?")[0])
    try:
        out: list[tuple[Any, ...]] = []
        for key in run_keys(prefix, run_id):
            if client.type(key) == b"stream":
                for entry_id, fields in client.xrange(key):
                    out.append((key, entry_id, tuple(sorted(fields.items()))))
        return out
    finally:
        client.close()


# -- reference and summaries -------------------------------------------------------------


def summary(states: Any, keys: list[str]) -> dict[str, Any]:
    """Each task's (name, message, result), a mapped task's children likewise."""
    out: dict[str, Any] = {}
    for key in keys:
        st: State = states[key]
        if isinstance(st, Mapped):
            out[key] = (st.name, st.message, [(c.name, c.message, c.result) for c in st.map_states])
        else:
            out[key] = (st.name, st.message, st.result)
    return out


def entity_runs(view: RunView) -> dict[Entity, Any]:
    out: dict[Entity, Any] = {}
    for i, key in enumerate(view.keys):
        out[(key, None)] = view.runs[i]
        for j, child in enumerate(view.children.get(i, ())):
            out[(key, j)] = child
    return out


@contextmanager
def side_env(side: Path) -> Iterator[None]:
    old = os.environ.get(flows.SIDE_ENV)
    os.environ[flows.SIDE_ENV] = str(side)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(flows.SIDE_ENV, None)
        else:
            os.environ[flows.SIDE_ENV] = old


def finish_in_process(store: Store, flow_name: str, run_id: str) -> tuple[State, bool]:
    """Take the run from wherever it is to its end, as ``drive --mode full`` does.

    Returns the final state and whether the gate's body stayed unrun by the resume
    that did not approve it (True when the gate was not waiting).
    """
    flow = FLOWS[flow_name]
    runner = LocalRunner(max_workers=4, lease_ttl=5.0, lease_renew=0.5)
    if store.head(run_id) == 0:
        state = flow.run(store=store, run_id=run_id, runner=runner)
    else:
        state = resume(run_id, flow, store=store, runner=runner)
    gate_kept = True
    view = replay(store, run_id)
    if not state.is_finished() and GATE_KEY in view.by_key:
        gate_state = view.state_of(view.by_key[GATE_KEY])
        gate_kept = gate_state is not None and gate_state.is_paused()
        state = resume(run_id, flow, store=store, runner=runner, approve=[GATE_KEY])
    return state, gate_kept


_references: dict[str, dict[str, Any]] = {}


def reference(flow_name: str) -> dict[str, Any]:
    """An uninterrupted run of the flow (memory store): its summary and flow state."""
    if flow_name not in _references:
        from statecore.backends import MemoryStore

        with tempfile.TemporaryDirectory() as tmp, side_env(Path(tmp) / "side"):
            store = MemoryStore()
            state, _ = finish_in_process(store, flow_name, "reference")
            lines = read_lines(Path(tmp) / "side")
        assert state.is_successful(), state
        keys = list(state.result)
        _references[flow_name] = {
            "summary": summary(state.result, keys),
            "flow": (state.name, state.message),
            "starts": sum(line.phase == "start" for line in lines),
            # the entities that have a body (parameters have none)
            "bodies": {line.entity for line in lines},
        }
    return _references[flow_name]


# -- one kill round ----------------------------------------------------------------------


def subprocess_env(side: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATECORE_")}
    env[flows.SIDE_ENV] = str(side)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def spawn_drive(
    url: str, run_id: str, side: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``python -m tests.torture.drive`` on ``run_id``, its bodies writing to ``side``."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.torture.drive", "--store", url, "--run-id", run_id, *extra],
        cwd=REPO,
        env=subprocess_env(side) | (env or {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@dataclass
class Round:
    """What one kill round saw. ``problems`` empty means every check held."""

    target: str
    flow: str
    seed: int
    killed: bool = False
    events_at_kill: int = 0
    #: logged successes whose body ran again after the kill
    reran_successes: list[Entity] = field(default_factory=list)
    #: committed rows that changed or vanished after the resume
    lost_events: int = 0
    #: attempts whose body had ended before the kill and ran again (their outcome was
    #: not yet committed): the cost of the group-commit window
    reran_ended: int = 0
    #: how long before the kill the oldest of those bodies had ended (seconds)
    reran_ended_age: float = 0.0
    problems: list[str] = field(default_factory=list)


def pick_kill(seed: int, starts: int) -> tuple[int, float]:
    """A kill point: once the side file has this many start lines, after this jitter
    (0 lines: that many seconds after the process starts, during start-up)."""
    rng = random.Random(f"torture-{seed}")
    if seed % 13 == 0:
        return 0, rng.uniform(0.05, 0.4)
    return rng.randint(1, starts), rng.uniform(0, 0.006)


def _kill(proc: subprocess.Popen[bytes], side: Path, lines: int, jitter: float) -> int | None:
    """SIGKILL ``proc`` at the planned point; the kill time (ns), None if it ended first."""
    began = time.monotonic()
    deadline = began + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if lines == 0:
            if time.monotonic() - began >= jitter:
                break
        elif sum(line.phase == "start" for line in read_lines(side)) >= lines:
            if jitter:
                time.sleep(jitter)
            break
        time.sleep(0.0005)
    at: int | None = None
    if proc.poll() is None:
        at = time.time_ns()
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    # reaped, so the dead-holder takeover sees the pid gone (a zombie answers kill(pid, 0))
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"the driver exited {proc.returncode}: {err.decode()}")
    return at if proc.returncode == -signal.SIGKILL else None


def verify_cli(url: str, run_id: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["verify", run_id, "--store", url])
    return result.exit_code, result.output


def kill_round(
    target: str, seed: int, workdir: Path, redis: RedisServer | None, flow_name: str = "torture"
) -> Round:
    """One SIGKILL at a seeded random point, then the resume and every check."""
    ref = reference(flow_name)
    url = store_url(target, workdir, redis)
    run_id = f"torture-{target}-{seed}"
    side = workdir / "side"
    out = Round(target, flow_name, seed)
    lines, jitter = pick_kill(seed, ref["starts"])
    proc = spawn_drive(url, run_id, side, "--flow", flow_name, "--lease-ttl", str(HOLDER_TTL))
    killed_at = _kill(proc, side, lines, jitter)
    out.killed = killed_at is not None

    # -- the log and the side effects as the kill left them --------------------------
    before_raw = raw_log(url, run_id)
    before_lines = read_lines(side)
    store = open_store(url)
    try:
        before_events = store.read(run_id)
        at_kill = fold(before_events, run_id=run_id) if before_events else None
        out.events_at_kill = len(before_events)

        with side_env(side):
            state, gate_kept = finish_in_process(store, flow_name, run_id)
        view = replay(store, run_id)
    finally:
        store.close()
    after_raw = raw_log(url, run_id)
    all_lines = read_lines(side)

    # -- outcome ----------------------------------------------------------------------
    if not state.is_successful():
        out.problems.append(f"final state {state!r}")
    keys = list(state.result)
    if summary(state.result, keys) != ref["summary"]:
        out.problems.append("results differ from an uninterrupted run")
    if (state.name, state.message) != ref["flow"]:
        out.problems.append(f"flow state {state.name}: {state.message} differs")
    if view.problems:
        out.problems.append(f"replay problems: {view.problems}")
    code, text = verify_cli(url, run_id)
    if code != 0:
        out.problems.append(f"statecore verify exited {code}: {text.strip()}")

    # -- nothing committed lost or changed ----------------------------------------------
    if after_raw[: len(before_raw)] != before_raw:
        changed = sum(a != b for a, b in zip(before_raw, after_raw, strict=False))
        out.lost_events = changed + max(0, len(before_raw) - len(after_raw))
        out.problems.append(f"{out.lost_events} committed rows changed or vanished")

    # -- side effects -------------------------------------------------------------------
    if all_lines[: len(before_lines)] != before_lines:
        out.problems.append("the side-effect file's prefix changed")
    after = all_lines[len(before_lines) :]
    ran = {line.entity for line in all_lines}
    if ref["bodies"] - ran:
        out.problems.append(f"tasks that never ran: {sorted(ref['bodies'] - ran, key=str)}")
    if at_kill is None:
        return out
    kill_runs = entity_runs(at_kill)
    succeeded = {e for e, run in kill_runs.items() if isinstance(run.state, Success)}
    out.reran_successes = sorted(
        {line.entity for line in after if line.entity in succeeded}, key=str
    )
    if out.reran_successes:
        out.problems.append(f"logged successes ran again: {out.reran_successes}")
    # a loop never repeats a logged iteration
    for entity, run in kill_runs.items():
        if isinstance(run.state, Looped) and run.loop_count:
            again = [
                line
                for line in after
                if line.entity == entity and int(line.extra[1:] or 0) <= run.loop_count
            ]
            if again:
                out.problems.append(f"{entity}: logged loop iterations ran again: {again}")
    # a paused gate runs only after its approval
    gate = kill_runs.get((GATE_KEY, None))
    if gate is not None and gate.state.is_paused() and not gate_kept:
        out.problems.append("the paused gate ran on a resume that did not approve it")

    # -- the group-commit window: bodies that ended before the kill and ran again ----
    if killed_at is not None:
        ended = {
            (line.entity, line.attempt, line.extra): line.ns
            for line in before_lines
            if line.phase == "end"
        }
        again = {(line.entity, line.attempt, line.extra) for line in after if line.phase == "start"}
        lost = [ns for attempt, ns in ended.items() if attempt in again]
        out.reran_ended = len(lost)
        if lost:
            out.reran_ended_age = (killed_at - min(lost)) / 1e9
    return out

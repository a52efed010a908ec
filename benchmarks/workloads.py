"""Workloads and stores shared by the benchmark scripts (not a test module).

W1  a chain of ``n`` tasks, each taking the previous one's result      (default n=1,000)
W2  ``n`` independent tasks and one reducer that takes all of them,
    passed as one list of task handles                                  (default n=1,000)
W3  ``.map`` over ``n`` items and one reducer that takes the mapped task (default n=10,000)

Bodies are trivial (``x + 1``, ``sum``), so what is measured is the engine: fold,
decide, settle, event encoding, hash chain, group commit and the store.

"µs per task" divides by the tasks a user wrote and sees run: W1 n, W2 n + 1, W3 n + 1
(the mapped children and the reducer). Internal tasks the engine adds (the list that
collects W2's handles, W3's mapped parent) are overhead and are not counted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from statecore import Flow, task  # noqa: E402
from statecore.backends.base import Store  # noqa: E402

REDIS_URL = os.environ.get("STATECORE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
STORES = ("memory", "sqlite", "redis")


@task
def inc(x: int) -> int:
    return x + 1


@task
def reduce_all(xs: list[int]) -> int:
    return sum(xs)


def build_w1(n: int) -> Flow:
    with Flow("bench-w1-chain") as flow:
        x = inc(0)
        for _ in range(n - 1):
            x = inc(x)
    return flow


def build_w2(n: int) -> Flow:
    with Flow("bench-w2-fan-in") as flow:
        handles = [inc(i) for i in range(n)]
        reduce_all(handles)
    return flow


def build_w3(n: int) -> Flow:
    with Flow("bench-w3-map") as flow:
        mapped = inc.map(list(range(n)))
        reduce_all(mapped)
    return flow


@dataclass(frozen=True)
class Workload:
    name: str
    shape: str
    build: Callable[[int], Flow]
    n: int
    quick_n: int
    extra_tasks: int  # user-visible tasks beyond n (the reducer)

    def title(self, tasks: int) -> str:
        return self.shape.format(n=tasks - self.extra_tasks)

    def size(self, quick: bool) -> int:
        return self.quick_n if quick else self.n

    def tasks(self, quick: bool) -> int:
        return self.size(quick) + self.extra_tasks


WORKLOADS: dict[str, Workload] = {
    "W1": Workload("W1", "chain of {n:,} tasks", build_w1, 1_000, 200, 0),
    "W2": Workload("W2", "{n:,} independent tasks + reducer", build_w2, 1_000, 200, 1),
    "W3": Workload("W3", "map over {n:,} items + reducer", build_w3, 10_000, 2_000, 1),
}


# -- Redis -----------------------------------------------------------------------------


def _redis_ping() -> bool:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def ensure_redis() -> str | None:
    """Make sure a Redis server answers at REDIS_URL; return why not, or None if it does."""
    if _redis_ping():
        return None
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install 'statecore[redis]')"
    if shutil.which("redis-server") is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "redis-server"],
            check=False,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    subprocess.run(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--daemonize",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=False,
        capture_output=True,
    )
    for _ in range(50):
        if _redis_ping():
            return None
        time.sleep(0.1)
    return f"no Redis server answers at {REDIS_URL}"


def drop_redis_prefix(prefix: str) -> None:
    """Delete the keys one benchmark store wrote, and nothing else in the shared db."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
        for start in range(0, len(keys), 10_000):
            client.delete(*keys[start : start + 10_000])
    finally:
        client.close()


# -- fresh stores ------------------------------------------------------------------------


class StoreFactory:
    """Hands out a fresh, empty store of one kind per call.

    SQLite gets a new file; Redis a key prefix unique to the process and the call, whose
    keys are deleted afterwards, so other users of the same Redis db are left alone.
    """

    def __init__(self, kind: str, workdir: str | None = None) -> None:
        if kind not in STORES:
            raise ValueError(f"unknown store {kind!r}; choose from {', '.join(STORES)}")
        self.kind = kind
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="statecore-bench-")
        self._count = 0

    @contextmanager
    def fresh(self, **options: Any) -> Iterator[Store]:
        self._count += 1
        store: Store
        if self.kind == "memory":
            from statecore.backends.memory import MemoryStore

            store = MemoryStore()
        elif self.kind == "sqlite":
            from statecore.backends.sqlite import SQLiteStore

            path = os.path.join(self.workdir, f"run-{self._count}.db")
            store = SQLiteStore(path, **options)
        else:
            from statecore.backends.redis import RedisStore

            prefix = f"statecore-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}-{self._count}"
            store = RedisStore(REDIS_URL, prefix=prefix, **options)
        try:
            yield store
        finally:
            store.close()
            if self.kind == "redis":
                drop_redis_prefix(store.prefix)  # type: ignore[attr-defined]
            if self.kind == "sqlite":
                for suffix in ("", "-wal", "-shm"):
                    with suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.workdir, f"run-{self._count}.db{suffix}"))

    def cleanup(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

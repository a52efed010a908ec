"""Process faults: SIGKILL of a driver at seeded random points, then a resume.

The flow (:data:`tests.torture.flows.torture_flow`) has a chain, a map whose children
fail their first attempt and retry, a task needing three attempts, a LOOP of four
iterations, a ``cache_for`` task with the ``all_inputs`` validator and a ``manual_only``
gate that pauses until approved. One subprocess takes a run from nothing to the end
(run, then resume approving the gate) with the default group commit (512 events or
20 ms) and is SIGKILLed at a random point; the test then snapshots the log's raw rows,
resumes the run in this process (first without approving, then approving) and checks,
on SQLite with ``synchronous=FULL``, SQLite with its defaults and a Redis server of its
own with ``appendonly yes`` + ``appendfsync always``:

* no body whose Success (or Cached) was logged at the kill runs again, no logged loop
  iteration repeats, a paused gate stays paused on a resume that does not approve it;
* every committed row is still there, byte for byte, as the prefix of the final log;
* ``statecore verify`` passes; the final states and results equal an uninterrupted run.

``STATECORE_TORTURE_ROUNDS=N`` runs N rounds per target instead of the CI's few (the
soak is ``python scripts/torture.py kill --rounds 200``, which also reports the cost of
the group-commit window: how many ended bodies ran again per crash).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import service_missing
from ..torture.harness import TARGETS, RedisServer, kill_round, pick_kill, reference

CI_ROUNDS = {"sqlite-full": 12, "sqlite": 12, "redis-aof": 10}
ROUNDS = int(os.environ.get("STATECORE_TORTURE_ROUNDS", "0"))


def rounds(target: str) -> list[int]:
    return list(range(ROUNDS or CI_ROUNDS[target]))


@pytest.fixture(scope="module")
def aof_redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        service_missing("redis-server is not installed (the AOF-always torture needs one)")
    server = RedisServer()
    yield server
    server.stop()


CASES = [(t, s) for t in TARGETS for s in rounds(t)]


@pytest.mark.parametrize(("target", "seed"), CASES, ids=[f"{t}-{s}" for t, s in CASES])
def test_sigkill_then_resume_keeps_every_promise(
    target: str, seed: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    redis = request.getfixturevalue("aof_redis") if target == "redis-aof" else None
    result = kill_round(target, seed, tmp_path, redis)
    assert result.problems == [], result
    assert result.reran_successes == [] and result.lost_events == 0


def test_a_kill_in_the_wide_flow_loses_only_uncommitted_outcomes(tmp_path: Path) -> None:
    """200 trivial bodies: many fit in one window, so a kill costs several re-runs, and
    still no logged success runs again."""
    for seed in (1, 2, 3):
        work = tmp_path / str(seed)
        work.mkdir()
        result = kill_round("sqlite", seed, work, None, flow_name="wide")
        assert result.problems == [], result


def test_kill_points_cover_start_up_and_every_body() -> None:
    starts = reference("torture")["starts"]
    plans = [pick_kill(seed, starts) for seed in range(200)]
    assert sum(lines == 0 for lines, _ in plans) >= 10  # start-up and the first appends
    points = {lines for lines, _ in plans}
    assert len(points) >= starts * 3 // 4  # spread over the bodies, first to last
    assert max(points) == starts
    assert len(CASES) >= 30 or ROUNDS

"""Races: many processes on one run, a resumer held between reading the log and taking
the lease, many processes appending runs to one store.

* 8 ``statecore resume`` command lines started at once on one interrupted run (SQLite
  and Redis): exactly one drives (one new driver session in the log, its bodies held
  until the others have exited), the 7 others exit 4 naming the holder, and every body
  runs once.
* A stale resumer (``resume`` and ``flow.run(run_id=R)``) has read the log and is held
  just before it asks for the lease while another driver finishes the run, or takes it
  to its paused gate; released, it runs nothing that was logged meanwhile, appends to a
  finished run nothing at all, and never reaches an append with a stale view.
* ``flow.run(run_id=R)`` of one new id started twice, the first held before the lease:
  it gets ``LeaseHeld`` and runs no body, whether the other is still running or done.
* 8 processes each append a 200-task run to one SQLite file, and to one Redis: no
  error, every log 1..n without gap or duplicate, chains intact, each body once.

``STATECORE_RACE_ROUNDS=N`` races N rounds per store instead of the CI's few
(``python scripts/torture.py race --rounds 20`` is the soak).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..torture.races import (
    frozen_holder,
    many_appenders,
    new_run_twice,
    refused_after_takeover,
    resume_race,
    stale_resumer,
)

ROUNDS = int(os.environ.get("STATECORE_RACE_ROUNDS", "0"))


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    from ..conftest import unique_prefix

    base: str = request.getfixturevalue("redis_url")
    prefix = unique_prefix()
    request.getfixturevalue("redis_cleanup")(prefix)
    return f"{base}{'&' if '?' in base else '?'}prefix={prefix}"


@pytest.mark.parametrize("round_no", range(ROUNDS or 3))
def test_eight_resumers_one_driver(url: str, tmp_path: Path, round_no: int) -> None:
    result = resume_race(url, tmp_path, round_no)
    assert result.problems == [], result
    assert (result.drivers, result.refused) == (1, 7)


@pytest.mark.parametrize("mode", ["resume", "run"])
@pytest.mark.parametrize("progress", ["finish", "gate"])
def test_a_stale_resumer_runs_nothing_logged_meanwhile(
    url: str, tmp_path: Path, mode: str, progress: str
) -> None:
    assert stale_resumer(url, tmp_path, mode, progress) == []


@pytest.mark.parametrize("other_finishes", [True, False])
def test_one_new_run_id_started_twice_runs_once(
    url: str, tmp_path: Path, other_finishes: bool
) -> None:
    assert new_run_twice(url, tmp_path, other_finishes) == []


def test_eight_appenders_share_one_store(url: str, tmp_path: Path) -> None:
    assert many_appenders(url, tmp_path, "ci") == []


def test_a_driver_frozen_past_its_lease_starts_no_body_when_it_wakes(tmp_path: Path) -> None:
    """SIGSTOP the driver mid-map for longer than its 1 s lease; another driver takes the
    expired lease and finishes the run; SIGCONT: the frozen driver must start no body
    (it exits 5, LeaseLost, and the log is untouched)."""
    assert frozen_holder(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path) == []


def test_a_refused_resumer_names_the_live_holder(tmp_path: Path) -> None:
    assert refused_after_takeover(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path) == []

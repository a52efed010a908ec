"""Runs emit Python logging records worded like Prefect 1's, through the ``statecore``
logger; a library user who configures nothing sees nothing."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest

from statecore import Flow, task
from statecore.backends.memory import MemoryStore


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("statecore")]


def test_a_run_logs_flow_and_task_lines_like_prefect_1(caplog: pytest.LogCaptureFixture) -> None:
    @task
    def extract() -> list[int]:
        return [1, 2]

    @task
    def double(x: int) -> int:
        return 2 * x

    with Flow("etl") as flow:
        double.map(extract())
    caplog.set_level(logging.INFO, logger="statecore")
    assert flow.run(store=MemoryStore()).is_successful()
    lines = _messages(caplog)
    assert lines[0] == "Beginning Flow run for 'etl'"
    assert "Task 'extract': Starting task run..." in lines
    assert "Task 'extract': Finished task run for task with final state: 'Success'" in lines
    assert "Task 'double[1]': Finished task run for task with final state: 'Success'" in lines
    assert "Task 'double': Finished task run for task with final state: 'Mapped'" not in lines
    assert lines[-1] == "Flow run SUCCESS: all reference tasks succeeded"
    assert {r.name for r in caplog.records} <= {"statecore.FlowRunner", "statecore.TaskRunner"}


def test_failures_and_retries_are_logged_with_the_error_and_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from statecore import Secret

    calls: list[int] = []

    @task(max_retries=1, retry_delay=timedelta(0))
    def flaky(token: str) -> None:
        calls.append(1)
        raise ValueError(f"bad token {token}")

    with Flow("f") as flow:
        flaky(Secret("TOKEN"))
    caplog.set_level(logging.INFO, logger="statecore")
    state = flow.run(store=MemoryStore(), secrets={"TOKEN": "hunter2-canary"})
    assert state.is_failed() and len(calls) == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    text = errors[0].getMessage()
    assert text.startswith("Task 'flaky': Exception encountered during task execution!")
    assert "ValueError: bad token <secret:TOKEN>" in text
    assert "Traceback" in text
    lines = _messages(caplog)
    assert "Task 'flaky': Finished task run for task with final state: 'Retrying'" in lines
    assert lines[-1] == "Flow run FAILED: some reference tasks failed."
    assert not any("hunter2-canary" in m for m in lines)


def test_resume_says_resuming(caplog: pytest.LogCaptureFixture) -> None:
    from statecore.runners import resume

    seen: list[int] = []

    @task
    def once() -> None:
        seen.append(1)
        if len(seen) == 1:
            raise KeyboardInterrupt

    with Flow("r") as flow:
        once()
    store = MemoryStore()
    with pytest.raises(KeyboardInterrupt):
        flow.run(store=store, run_id="r1")
    caplog.set_level(logging.INFO, logger="statecore")
    assert resume("r1", flow, store=store).is_successful()
    assert _messages(caplog)[0] == "Resuming Flow run for 'r'"


def test_a_library_user_who_configures_nothing_sees_nothing() -> None:
    code = textwrap.dedent(
        """
        from statecore import Flow, task
        from statecore.backends.memory import MemoryStore

        @task
        def boom():
            raise RuntimeError("nope")

        with Flow("quiet") as flow:
            boom()
        assert flow.run(store=MemoryStore()).is_failed()
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "" and done.stderr == ""

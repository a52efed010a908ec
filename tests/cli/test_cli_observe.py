"""``statecore show --at/--seq`` (time travel), ``show/logs --errors`` (stored
tracebacks) and the log records ``run``/``resume``/``rerun`` print on stderr (``-v/-q``).

In-process with click's CliRunner over a real SQLite store, and once in a subprocess.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from statecore.attempts import failures
from statecore.backends import SQLiteStore
from statecore.cli.main import cli
from statecore.runners.local import replay

DEMO = Path(__file__).parent.parent / "flows" / "demo.py"

ESC = "\x1b]0;owned\x07\x1b[31m"
FLOW = f"""
import logging
from statecore import Flow, task

@task
def numbers() -> list[int]:
    logging.getLogger("statecore.test").debug("numbers at debug")
    return [1, 0, 2]

@task(max_retries=1, retry_delay=__import__("datetime").timedelta(0))
def invert(x: int) -> float:
    if x == 0:
        raise ZeroDivisionError("child zero {ESC!s}")
    return 1 / x

@task
def boom() -> None:
    raise RuntimeError("boom {ESC!s}")

with Flow("observe") as flow:
    invert.map(numbers())
    boom()
"""


def invoke(db: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--store", f"sqlite:///{db}"], catch_exceptions=False)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Result]:
    root = tmp_path_factory.mktemp("observe")
    (root / "observe.py").write_text(FLOW, encoding="utf-8")
    db = root / "runs.db"
    result = invoke(db, "run", f"{root / 'observe.py'}:flow", "--run-id", "obs")
    assert result.exit_code == 1, result.output + result.stderr
    return root, db, result


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("mixed") / "runs.db"
    assert invoke(db, "run", f"{DEMO}:mixed", "--run-id", "mixed").exit_code == 1
    return db


def _states(output: str) -> dict[str, str]:
    """task key -> state from ``show``'s table."""
    found = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line)]
        if len(cells) > 4 and cells[2].endswith("-1"):
            found[cells[2]] = cells[3]
    return found


# -- time travel ------------------------------------------------------------------------


def test_show_seq_is_the_fold_stopped_at_that_event(mixed: Path) -> None:
    store = SQLiteStore(mixed)
    try:
        head = store.head("mixed")
        for seq in (1, 3, head // 2, head):
            expected = replay(store, "mixed", until=seq)
            result = invoke(mixed, "show", "mixed", "--seq", str(seq))
            assert f"as of event {seq} of {head}" in result.output
            assert f"· {expected.flow_state.name}" in result.output.splitlines()[0]
            want = {k: expected.runs[i].state.name for k, i in expected.by_key.items()}
            assert _states(result.output) == want
            # the exit status is the state shown: unfinished 3, failed 1
            assert result.exit_code == (1 if expected.finished() else 3)
    finally:
        store.close()


def test_show_at_an_instant_naive_meaning_utc_and_offsets(mixed: Path) -> None:
    store = SQLiteStore(mixed)
    try:
        events = store.read("mixed")
    finally:
        store.close()
    mid = events[len(events) // 2]
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=mid.ts // 1000)
    expected = replay(str(f"sqlite:///{mixed}"), "mixed", until=when)
    naive = when.replace(tzinfo=None).isoformat()
    shifted = when.astimezone(UTC).astimezone(__import__("datetime").timezone(timedelta(hours=2)))
    outputs = []
    for text in (naive, naive + "Z", shifted.isoformat()):
        result = invoke(mixed, "show", "mixed", "--at", text)
        assert f"as of event {expected.head} of {len(events)}" in result.output, text
        outputs.append(_states(result.output))
    want = {k: expected.runs[i].state.name for k, i in expected.by_key.items()}
    assert outputs == [want, want, want]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--seq", "0"], "--seq"),
        (["--seq", "x"], "--seq"),
        (["--seq", "100000"], "has 3"),
        (["--at", "yesterday-ish"], "--at"),
        (["--at", "2001-01-01T00:00:00"], "no event at or before 2001-01-01T00:00:00+00:00"),
        (["--at", "2001-01-01", "--seq", "2"], "exclude each other"),
    ],
)
def test_bad_time_travel_values_are_usage_errors(mixed: Path, args: list[str], needle: str) -> None:
    result = invoke(mixed, "show", "mixed", *args)
    assert result.exit_code == 2
    assert needle in result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_show_seq_of_an_unknown_run_names_the_store(mixed: Path) -> None:
    result = invoke(mixed, "show", "nope", "--seq", "1")
    assert result.exit_code == 2 and "no run 'nope'" in result.output + result.stderr


# -- tracebacks -------------------------------------------------------------------------


def test_show_errors_prints_each_failed_task_and_childs_traceback_escaped(
    observed: tuple[Path, Path, Result],
) -> None:
    _, db, _ = observed
    result = invoke(db, "show", "obs", "--errors")
    assert result.exit_code == 1
    out = result.output
    assert "Failed: boom (boom-1), attempt 1" in out
    assert "Failed: invert[1] (invert-1[1]), attempt 2" in out  # retried once, then failed
    assert "invert[0]" not in out and "invert[2]" not in out
    assert out.count("Traceback (most recent call last):") == 2
    assert "raise ZeroDivisionError" in out and "raise RuntimeError" in out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;owned\\x07" in out
    # the same failures the ui's read model finds
    view = replay(f"sqlite:///{db}", "obs")
    assert [(f.task, f.index) for f in failures(view)] == [("invert-1", 1), ("boom-1", None)]
    without = invoke(db, "show", "obs")
    assert "Traceback" not in without.output


def test_logs_errors_prints_the_tracebacks_after_the_log_lines(
    observed: tuple[Path, Path, Result], mixed: Path
) -> None:
    _, db, _ = observed
    result = invoke(db, "logs", "obs", "--errors")
    assert result.exit_code == 0
    assert result.output.count("Traceback (most recent call last):") == 2
    assert "ZeroDivisionError: child zero \\x1b" in result.output
    assert "\x1b" not in result.output
    plain = invoke(db, "logs", "obs")
    assert "Traceback" not in plain.output
    ok = invoke(mixed, "show", "mixed", "--errors", "--seq", "2")
    assert "no failed task" in ok.output


# -- log records on stderr --------------------------------------------------------------


def test_run_prints_prefect_1_like_info_lines_on_stderr(
    observed: tuple[Path, Path, Result],
) -> None:
    _, _, result = observed
    err = result.stderr
    assert "INFO - statecore.FlowRunner | Beginning Flow run for 'observe'" in err
    assert "INFO - statecore.TaskRunner | Task 'numbers': Starting task run..." in err
    assert "Task 'invert[1]': Finished task run for task with final state: 'Retrying'" in err
    assert "ERROR - statecore.TaskRunner | Task 'boom': Exception encountered" in err
    assert "RuntimeError: boom \\x1b]0;owned\\x07" in err and "\x1b" not in err
    assert "numbers at debug" not in err
    assert re.search(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+0000\] INFO", err, re.M)
    assert "Beginning Flow run" not in result.stdout  # stdout keeps the summary only


def test_quiet_shows_only_warnings_and_errors_verbose_shows_debug(
    observed: tuple[Path, Path, Result],
) -> None:
    root, db, _ = observed
    quiet = invoke(db, "run", f"{root / 'observe.py'}:flow", "--run-id", "q", "-q")
    assert quiet.exit_code == 1
    assert "ERROR - statecore.TaskRunner | Task 'boom'" in quiet.stderr
    assert " INFO - " not in quiet.stderr
    loud = invoke(db, "run", f"{root / 'observe.py'}:flow", "--run-id", "v", "--verbose")
    assert "DEBUG - statecore.test | numbers at debug" in loud.stderr
    assert " INFO - " in loud.stderr
    both = invoke(db, "run", f"{root / 'observe.py'}:flow", "-v", "-q")
    assert both.exit_code == 2 and "exclude each other" in both.output + both.stderr
    # the command's handler is gone afterwards: a library user still sees nothing
    logger = logging.getLogger("statecore")
    assert all(isinstance(h, logging.NullHandler) for h in logger.handlers)
    assert logger.level == logging.NOTSET


def test_resume_and_rerun_log_too(observed: tuple[Path, Path, Result]) -> None:
    root, db, _ = observed
    flow = f"{root / 'observe.py'}:flow"
    resumed = invoke(db, "resume", "obs", "--flow", flow)
    assert "statecore" in resumed.stderr or "already finished" in resumed.output
    rerun = invoke(db, "rerun", "obs", "--from", "boom", "--flow", flow, "--run-id", "re")
    assert "Task 'boom': Starting task run..." in rerun.stderr
    assert "Task 'numbers': Starting task run..." not in rerun.stderr  # reused, not run
    quiet = invoke(db, "rerun", "obs", "--from", "boom", "--flow", flow, "-q", "--run-id", "r2")
    assert " INFO - " not in quiet.stderr and "ERROR" in quiet.stderr


def test_the_console_script_logs_on_stderr(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    cmd = [sys.executable, "-m", "statecore", "run", f"{DEMO}:ok", "--store", f"sqlite:///{db}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Beginning Flow run for" in proc.stderr
    assert "Flow run SUCCESS: all reference tasks succeeded" in proc.stderr
    assert "Beginning Flow run" not in proc.stdout

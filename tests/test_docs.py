"""The README's examples and the docstring examples run, so the docs stay true."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_flow_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATECORE_STORE", raising=False)
    block = next(b for b in python_blocks() if 'with Flow("reminders")' in b)
    scope: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), scope)
    state = scope["state"]
    assert state.is_successful()
    assert [s.name for s in state.result[scope["sent"]].map_states] == [
        "Success",
        "Skipped",
        "Success",
    ]
    # the embedded default store, under the working directory
    assert (tmp_path / ".statecore" / "runs.db").exists()


def test_the_schedules_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATECORE_STORE", raising=False)
    block = next(b for b in python_blocks() if 'Flow("etl", schedule=schedule)' in b)
    scope: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["state"].is_successful()
    assert scope["flow"].schedule is scope["schedule"]


def test_the_property_testing_example_runs() -> None:
    block = next(b for b in python_blocks() if "def test_my_trigger" in b)
    scope: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), scope)
    scope["test_my_trigger"]()
    scope["test_every_flow_finishes_and_replays"]()


def test_the_prefect1_notifications_example_runs() -> None:
    """The migration guide's block, through the Prefect 1 layer: `prefect` imports give
    statecore's notifier, configured for failures only."""
    from statecore import compat
    from statecore.notifications import Notifier

    block = next(b for b in python_blocks() if "slack_notifier(only_states" in b)
    compat.install()
    try:
        scope: dict[str, Any] = {}
        exec(compile(block, "README.md", "exec"), scope)
    finally:
        compat.uninstall()
    [handler] = scope["load"].state_handlers
    assert isinstance(handler, Notifier)
    assert [s.__name__ for s in handler.options["only_states"]] == ["Failed"]


@pytest.mark.parametrize(
    "module",
    [
        "statecore.states",
        "statecore.signals",
        "statecore.triggers",
        "statecore.tasks",
        "statecore.serialization",
        "statecore.scrubbing",
        "statecore.schedules",
        "statecore.schedules.filters",
        "statecore.schedules.adjustments",
        "statecore.schedules.schedules",
        "statecore.runners.scheduling",
        "statecore.cli.schedule",
    ],
)
def test_docstring_examples(module: str) -> None:
    from statecore import states

    # the triggers' examples use the helper their module docstring defines
    extra = {"states": states, "edges": lambda *ss: dict(enumerate(ss))}
    result = doctest.testmod(
        importlib.import_module(module), extraglobs=extra, optionflags=doctest.ELLIPSIS
    )
    assert result.attempted > 0
    assert result.failed == 0

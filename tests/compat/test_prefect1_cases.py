"""Every verified Prefect 1.4.1 behaviour case, through statecore's public API."""

from __future__ import annotations

from typing import Any

import pytest

from statecore.runners import replay
from statecore.states import NOT_PERSISTED, Mapped, results_equal

from ..prefect1_cases import load_cases, run_flow_case, run_trigger_case

CASES = load_cases()


def test_cases_are_loaded() -> None:
    assert len(CASES) >= 50


@pytest.mark.parametrize("c", [c for c in CASES if c["kind"] == "trigger"], ids=lambda c: c["id"])
def test_trigger_case(c: dict[str, Any]) -> None:
    trigger_result, task_state = run_trigger_case(c)
    assert trigger_result == c["expected"]["trigger_result"]
    assert task_state == c["expected"]["task_state"]


@pytest.mark.parametrize("c", [c for c in CASES if c["kind"] == "flow"], ids=lambda c: c["id"])
def test_flow_case(c: dict[str, Any]) -> None:
    expected = c["expected"]
    if "raises" in expected:
        with pytest.raises(Exception) as info:
            run_flow_case(c)
        assert type(info.value).__name__ == expected["raises"]["error"] or isinstance(
            info.value, __builtins__["ValueError"] if isinstance(__builtins__, dict) else ValueError
        )
        assert expected["raises"]["message_contains"] in str(info.value)
        return
    observed = run_flow_case(c)
    for field in ("task_states", "map_states", "task_results", "attempts"):
        for name, value in expected.get(field, {}).items():
            assert observed[field][name] == value, f"{field}[{name}]"
    if "flow_state" in expected:
        assert observed["flow_state"] == expected["flow_state"]
    if "flow_message" in expected:
        assert observed["flow_message"] == expected["flow_message"]
    assert_replay_equals_run(observed)


def assert_replay_equals_run(observed: dict[str, Any]) -> None:
    view = replay(observed["store"], observed["run_id"])
    state = observed["state"]
    assert view.flow_state == type(state)(state.message, view.flow_state.result)
    assert set(view.flow_state.result) == set(state.result)  # every task's state
    for key in view.task_states:
        folded = view.task_states[key]
        live = state.result[key]
        assert folded.name == live.name, key
        assert folded.message == live.message, key
        if isinstance(live, Mapped):
            assert [s.name for s in folded.map_states] == [s.name for s in live.map_states]
            continue
        if folded.result is not NOT_PERSISTED:
            assert results_equal(folded.result, live.result), key

"""Tests of the formal machine (statecore.machine): the table, its checks and its exports."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statecore import machine, states
from statecore.errors import IllegalTransition, UnknownState
from statecore.machine import (
    FLOW_STATES,
    FLOW_TRANSITIONS,
    TASK_STATES,
    TASK_TRANSITIONS,
    check_flow,
    check_task,
    is_legal,
)

# The rules, written out again independently of statecore.machine.
WAITING = frozenset({"Pending", "Scheduled", "Retrying", "Resume"})
FINISHED = frozenset(
    {
        "Success",
        "Cached",
        "Mapped",
        "Skipped",
        "Failed",
        "TriggerFailed",
        "ValidationFailed",
        "TimedOut",
        "Cancelled",
    }
)
ALL_TASK = WAITING | FINISHED | {"Paused", "Running", "Looped"}
FLOW_PAIRS = frozenset(
    {
        ("Pending", "Running"),
        ("Scheduled", "Running"),
        ("Running", "Success"),
        ("Running", "Failed"),
        ("Running", "Cancelled"),
        ("Running", "TimedOut"),
    }
)


def reference_task(src: str, dst: str) -> bool:
    """The task rules as plain Python, one line per rule."""
    if src in WAITING and (dst in {"Running", "Paused"} or dst in FINISHED):
        return True
    if src == "Pending" and dst in {"Scheduled", "Retrying", "Resume"}:
        return True
    if src in {"Scheduled", "Retrying", "Cached"} and dst == "Resume":
        return True  # a state handler answered the pause with Resume
    if src == "Paused":
        return dst == "Resume" or dst in FINISHED
    if src == "Running":
        return dst in FINISHED or dst in {"Retrying", "Looped", "Paused", "Pending"}
    if src == "Looped":
        return dst in {"Running", "Cancelled", "Pending"}
    if src == "Cached":
        return dst in {"Pending", "Skipped", "TriggerFailed", "Paused"}
    return False


def reference_flow(src: str, dst: str) -> bool:
    """The flow rules as plain Python."""
    return (src, dst) in FLOW_PAIRS


LISTED_TASK_PATHS = sorted(
    {(w, d) for w in WAITING for d in {"Running", "Paused"} | FINISHED}
    | {("Pending", d) for d in ("Scheduled", "Retrying", "Resume")}
    | {(s, "Resume") for s in ("Scheduled", "Retrying", "Cached")}
    | {("Paused", d) for d in {"Resume", "Cancelled"} | FINISHED}
    | {("Running", d) for d in FINISHED | {"Retrying", "Looped", "Paused", "Pending"}}
    | {("Looped", d) for d in ("Running", "Cancelled", "Pending")}
    | {("Cached", d) for d in ("Pending", "Skipped", "TriggerFailed", "Paused")}
)


def declared_edges(declared: Any) -> set[tuple[str, str]]:
    """Every (source, dest) the ``transitions`` Machine declares, read from its events."""
    return {
        (source, transition.dest)
        for event in declared.events.values()
        for source, listed in event.transitions.items()
        for transition in listed
    }


# -- the declared states ---------------------------------------------------------------------


def test_state_names_are_the_concrete_state_classes() -> None:
    assert set(TASK_STATES) == ALL_TASK
    assert len(TASK_STATES) == len(ALL_TASK) == 16
    assert set(FLOW_STATES) == {"Pending", "Scheduled", "Running"} | {
        d for _, d in FLOW_PAIRS if d != "Running"
    }
    for name in TASK_STATES:
        assert states.state_class(name).__name__ == name


def test_groups_agree_with_the_class_tree() -> None:
    for name in TASK_STATES:
        state = states.state_class(name)()
        assert (name in FINISHED) == (state.is_finished() and not state.is_looped())
        assert (name in WAITING) == (state.is_pending() and not state.is_paused())


# -- legal paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), LISTED_TASK_PATHS)
def test_every_listed_task_path_is_legal(src: str, dst: str) -> None:
    assert is_legal(src, dst)
    assert dst in TASK_TRANSITIONS[src]
    check_task("run-1", "t", src, dst)


@pytest.mark.parametrize(("src", "dst"), sorted(FLOW_PAIRS))
def test_every_listed_flow_path_is_legal(src: str, dst: str) -> None:
    assert is_legal(src, dst, flow=True)
    assert dst in FLOW_TRANSITIONS[src]
    check_flow("run-1", src, dst)


def test_prefect_paths_named_in_the_api() -> None:
    assert all(is_legal("Running", f) for f in FINISHED)
    assert is_legal("Looped", "Running")
    assert is_legal("Retrying", "Running")
    assert is_legal("Paused", "Resume")
    assert is_legal("Running", "Pending")  # an interrupted attempt


def test_the_table_has_exactly_the_listed_paths() -> None:
    compiled = {(s, d) for s, dests in TASK_TRANSITIONS.items() for d in dests}
    assert compiled == set(LISTED_TASK_PATHS)
    assert {(s, d) for s, dests in FLOW_TRANSITIONS.items() for d in dests} == FLOW_PAIRS


# -- terminal states and illegal pairs ----------------------------------------------------------


@pytest.mark.parametrize("src", sorted(FINISHED - {"Cached"}))
def test_finished_states_are_terminal(src: str) -> None:
    assert TASK_TRANSITIONS[src] == frozenset()
    for dst in TASK_STATES:
        assert not is_legal(src, dst)
        with pytest.raises(IllegalTransition):
            check_task("run-1", "t", src, dst)


@pytest.mark.parametrize("src", ["Success", "Failed", "TimedOut", "Cancelled"])
def test_flow_end_states_are_terminal(src: str) -> None:
    assert FLOW_TRANSITIONS[src] == frozenset()
    for dst in FLOW_STATES:
        with pytest.raises(IllegalTransition):
            check_flow("run-1", src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("Pending", "Looped"),
        ("Pending", "Pending"),
        ("Scheduled", "Retrying"),
        ("Paused", "Running"),
        ("Looped", "Success"),
        ("Success", "Running"),
        ("Failed", "Retrying"),
        ("Cancelled", "Pending"),
    ],
)
def test_illegal_task_transition_names_run_task_from_and_to(src: str, dst: str) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_task("run-42", "load[3]", src, dst)
    err = caught.value
    assert (err.run_id, err.task, err.from_state, err.to_state) == ("run-42", "load[3]", src, dst)
    message = str(err)
    for part in ("run-42", "load[3]", src, dst):
        assert part in message
    assert message == (
        f"illegal transition in run 'run-42': task 'load[3]' cannot go from {src} to {dst}"
    )


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("Pending", "Success"),
        ("Running", "Paused"),
        ("Running", "Pending"),
        ("Running", "Mapped"),
        ("Looped", "Running"),
        ("Success", "Running"),
    ],
)
def test_illegal_flow_transition_names_run_and_flow(src: str, dst: str) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_flow("run-42", src, dst)
    err = caught.value
    assert (err.run_id, err.task, err.from_state, err.to_state) == ("run-42", None, src, dst)
    assert str(err) == f"illegal transition in run 'run-42': flow cannot go from {src} to {dst}"


# -- unknown names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst", "bad"),
    [
        ("Sucess", "Running", "Sucess"),
        ("Running", "Sucess", "Sucess"),
        ("Finished", "Running", "Finished"),
        ("Running", "State", "State"),
        ("Success", "nope", "nope"),
    ],
)
def test_unknown_names_raise_unknown_state(src: str, dst: str, bad: str) -> None:
    for call in (
        lambda: check_task("run-1", "t", src, dst),
        lambda: check_flow("run-1", src, dst),
        lambda: is_legal(src, dst),
        lambda: is_legal(src, dst, flow=True),
    ):
        with pytest.raises(UnknownState) as caught:
            call()
        message = str(caught.value)
        assert repr(bad) in message
        assert all(name in message for name in TASK_STATES)


def test_unknown_state_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_task("run-1", "t", "Pending", "Done")


# -- differential: the compiled table against the reference model --------------------------------

task_names = st.sampled_from(sorted(ALL_TASK))


@given(src=task_names, dst=task_names)
def test_is_legal_agrees_with_the_reference_model(src: str, dst: str) -> None:
    assert is_legal(src, dst) is reference_task(src, dst)
    assert is_legal(src, dst, flow=True) is reference_flow(src, dst)


@given(src=task_names, dst=task_names, run_id=st.text(max_size=8), task=st.text(max_size=8))
def test_checks_raise_exactly_when_illegal(src: str, dst: str, run_id: str, task: str) -> None:
    if reference_task(src, dst):
        check_task(run_id, task, src, dst)
    else:
        with pytest.raises(IllegalTransition):
            check_task(run_id, task, src, dst)
    if reference_flow(src, dst):
        check_flow(run_id, src, dst)
    else:
        with pytest.raises(IllegalTransition):
            check_flow(run_id, src, dst)


# -- the table is the declaration, compiled ---------------------------------------------------


def test_compiled_tables_equal_the_declared_machines() -> None:
    for declared, table, names in (
        (machine.TASK_MACHINE, TASK_TRANSITIONS, TASK_STATES),
        (machine.FLOW_MACHINE, FLOW_TRANSITIONS, FLOW_STATES),
    ):
        assert list(declared.states) == list(names)
        assert set(table) == set(names)
        edges = declared_edges(declared)
        assert {(s, d) for s, dests in table.items() for d in dests} == edges
        assert declared.initial == "Pending"


def test_declared_machines_have_no_automatic_transitions() -> None:
    for declared in (machine.TASK_MACHINE, machine.FLOW_MACHINE):
        assert not any(name.startswith("to_") for name in declared.events)
        assert declared.models == []


def test_tables_are_frozen() -> None:
    with pytest.raises(TypeError):
        TASK_TRANSITIONS["Success"] = frozenset({"Running"})  # type: ignore[index]
    with pytest.raises(TypeError):
        FLOW_TRANSITIONS["Success"] = frozenset({"Running"})  # type: ignore[index]
    assert all(isinstance(dests, frozenset) for dests in TASK_TRANSITIONS.values())
    assert all(isinstance(dests, frozenset) for dests in FLOW_TRANSITIONS.values())


# -- exports ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flow", [False, True])
def test_mermaid_has_one_edge_per_table_entry(flow: bool) -> None:
    table = FLOW_TRANSITIONS if flow else TASK_TRANSITIONS
    lines = machine.mermaid(flow=flow).splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert lines[1].split() == ["[*]", "-->", "Pending"]
    edges = {
        (parts[0], parts[2].rstrip(":"))
        for parts in (line.split() for line in lines[2:])
        if parts[2] != "[*]"
    }
    assert edges == {(s, d) for s, dests in table.items() for d in dests}
    ends = {line.split()[0] for line in lines[2:] if line.endswith("--> [*]")}
    assert ends == {s for s, dests in table.items() if not dests}


@pytest.mark.parametrize("flow", [False, True])
def test_table_text_lists_every_source(flow: bool) -> None:
    table = FLOW_TRANSITIONS if flow else TASK_TRANSITIONS
    rows = machine.table_text(flow=flow).splitlines()[1:]
    parsed = {}
    for row in rows:
        source, _, dests = row.partition(" -> ")
        parsed[source.strip()] = (
            frozenset() if dests == "(terminal)" else frozenset(dests.split(", "))
        )
    assert parsed == dict(table)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(machine)
    assert result.attempted > 0
    assert result.failed == 0


def test_python_m_prints_tables_and_diagrams() -> None:
    root = Path(__file__).resolve().parent.parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "statecore.machine"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.count("stateDiagram-v2") == 2
    assert "Task machine" in done.stdout
    assert "Flow machine" in done.stdout
    assert "Looped           -> Pending, Running, Cancelled" in done.stdout

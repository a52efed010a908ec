"""Out-of-scope rules for the flow.run()-driven tests of core/test_flow.py, core/test_task.py
and core/test_task_map.py: (node-id regex, reason), first match decides.

A rule names a real difference, decided from the test's id and never from its outcome;
each difference a user could meet is also pinned by tests/compat/test_prefect1_differences*.py.
(Tests of these files that never call flow.run() are out of scope by the script's own
NOT_RUN rule.)
"""

from __future__ import annotations

from prefect1_reasons import CONFIG, EXECUTORS, RESULTS, RUNNER

_FLOW = r"core/test_flow.py::"
_TASK = r"core/test_task.py::"
_MAP = r"core/test_task_map.py::"

RULES: list[tuple[str, str]] = [
    # -- Result classes: the store keeps every result ------------------------------------
    (
        _FLOW + r"test_results_write_to_(?:custom_formatters|formatted_locations)$",
        RESULTS + " (Flow(result=LocalResult(...)) and result locations)",
    ),
    (_TASK + r"test_task_call_with_self_succeeds$", RESULTS + " (task(target=..., result=...))"),
    (
        _MAP + r"test_map_skips_dont_leak_out\[",
        RESULTS + " (asserts a skipped child's state._result is NoResult)",
    ),
    (
        _MAP + r"test_mapped_retries_regenerate_child_pipelines$",
        RESULTS + " (task_states built with Success(result=Result()), a result with no value "
        "that a Cloud backend fills in)",
    ),
    # -- executors and runner internals ---------------------------------------------------
    (
        r"(?:" + _FLOW + r"test_timeout_actually_stops_execution"
        r"|" + _MAP + r"TestFlatMap::test_flatmap_nested_noniterable_input)\[",
        EXECUTORS + " (the test branches on isinstance(executor, prefect.executors.DaskExecutor))",
    ),
    (
        _FLOW + r"TestFlowRunMethod::test_flow_dot_run_schedule_continues_on_executor_failure$",
        EXECUTORS + " (flow.run(executor=MagicMock(side_effect=Exception)))",
    ),
    (_FLOW + r"test_bad_flow_runner_code_still_returns_state_obj$", RUNNER + " (runner_cls=)"),
    (
        _FLOW + r"TestFlowRunMethod::test_flow_dot_run_responds_to_config$",
        CONFIG + " (prefect.utilities.configuration.set_temporary_config)",
    ),
    (
        _FLOW + r"TestFlowRunMethod::test_flow_dot_run_with_paused_states_hangs$",
        "a paused run returns its Paused state at once (approve and resume it later: "
        "statecore resume, flow.run(run_id=...)); Prefect 1's flow.run polls time.sleep "
        "until the pause ends",
    ),
    # -- statecore's own run model --------------------------------------------------------
    (
        _MAP + r"TestFlatMap::test_flatmap_one_unmappable_input\[",
        "mapping over a constant that is not a sequence (flatten(1)) is refused when the "
        "flow is built (FlowDefinitionError, naming the task); Prefect 1 fails the task at "
        "run time",
    ),
    (
        _FLOW + r"test_flow_run_name_as_run_param$",
        "flow.run(flow_run_name=...): a statecore run is named by its run id "
        "(flow.run(run_id=...)), which also makes it resumable, and prefect.context."
        "flow_run_name is that id",
    ),
    (
        _FLOW + r"TestFlowRunMethod::test_flow_dot_run_(?:sets|persists)_scheduled_start_time",
        "asserts prefect.context.scheduled_start_time *is* the schedule's datetime object: "
        "statecore logs the slot as an integer (UTC ns) and builds an equal datetime",
    ),
    (
        _FLOW + r"TestTerminalStateHandler::",
        "Flow(terminal_state_handler=...): the flow's final state is one pure function of "
        "the reference tasks' states, the same on replay; a flow state handler sees it",
    ),
]

"""Out-of-scope rules for test_triggers.py, engine/test_state.py, engine/test_signals.py,
schedules/* and tasks/test_control_flow.py: (node-id regex, reason), first match decides.

A rule names a real difference, decided from the test's id and never from its outcome;
each difference a user could meet is also pinned by tests/compat/test_prefect1_differences*.py.
"""

from __future__ import annotations

from prefect1_reasons import AMBIENT, CLOUD, RESULTS

RULES: list[tuple[str, str]] = [
    (r"engine/test_state.py::TestResultInterface::", RESULTS),
    (
        r"engine/test_state.py::TestCreateStates::test_create_state_with_"
        r"(?:no_args|kwarg_result_arg|fully_hydrated_result|positional_message_arg)\[",
        RESULTS + " (asserts state._result, the Result object wrapping the value)",
    ),
    (r"engine/test_state.py::test_(?:queued_states|meta_states_dont_nest)", CLOUD),
    (
        r"engine/test_state.py::test_state_pickle_with_unpicklable_exception",
        RESULTS + " (Prefect's __getstate__ rewrites state._result; statecore's log "
        "serializes results itself, statecore.serialization)",
    ),
    (
        r"engine/test_state.py::test_state_equality(?:_ignores_message)?$",
        "statecore's State equality compares what the log keeps of a state (class, message, "
        "result and the class's fields: start_time, run_count, loop_count, ...), so a "
        "replayed state equals the live one; Prefect 1 ignores the message and compares "
        "cached_inputs, which statecore keeps in memory only",
    ),
    (
        r"engine/test_state.py::test_state_is_methods\[state_check(?:0|7|10)\]",
        "statecore's states have predicates Prefect 1.4.1 lacks (is_cancelled, is_paused, "
        "is_resume: statecore's API); the test asserts every other is_* is False",
    ),
    (
        r"(?:engine/test_state.py::test_(?:only_scheduled_states_have_task_run_count_in_context"
        r"|looped_stores_default_loop_count_in_context|retry_stores_default_run_count_in_context)"
        r"|engine/test_state.py::TestCreateStates::test_create_state_with_tags_in_context"
        r"|engine/test_signals.py::test_retry_signals_take_run_count_from_context)",
        AMBIENT,
    ),
    (
        r"(?:engine/test_state.py::test_scheduled_states_have_default_times"
        r"|engine/test_signals.py::test_retry_signals_carry_default_retry_time_on_state)",
        "a Scheduled/Retrying start_time of None means 'now' in statecore (UTC integer "
        "nanoseconds, fixed and logged by the driver when it decides); Prefect 1 stores "
        "pendulum.now() at construction",
    ),
    (
        r"engine/test_signals.py::test_exceptions_are_displayed_with_messages",
        "signal repr names statecore's base class StateSignal (prefect.engine.signals."
        "PrefectStateSignal is that same class)",
    ),
    (
        r"test_triggers.py::test_manual_only_with(?:_empty_set_and)?_resume_in_context",
        "statecore's triggers are pure functions of the upstream states (decide is pure): an "
        "approval is a logged Resume state, never an ambient prefect.context(resume=True)",
    ),
    (
        # the parameters hold ClientFailed, Queued and Submitted, Cloud's meta states: their
        # placeholders have no is_* methods, so the test would pass without checking anything
        r"engine/test_state.py::test_state_is_methods\[state_check(?:2|9|15)\]",
        CLOUD,
    ),
    (
        r"engine/test_state.py::test_state_sizeof$",
        "patches the module global super() of prefect.engine.state: the layer serves that "
        "module as a view of statecore.states, so the patch never reaches statecore's code "
        "(statecore's __sizeof__ is the same rule: the state's own size plus its result's)",
    ),
    (
        r"tasks/test_control_flow.py::TestFilterTask::test_log_func$",
        "reads an INFO record with no logging configured: Prefect 1 set its loggers to INFO "
        "on import; statecore, a library, leaves levels to the application (FilterTask logs "
        "what log_func returns at INFO, as Prefect 1's)",
    ),
    (
        r"tasks/test_control_flow.py::test_merging_with_objects_that_cant_be_equality_compared$",
        "statecore writes every task result to its log (a resumed run reads it back): a "
        "result of a class no serializer knows fails its task unless checkpoint=False; "
        "Prefect 1's flow.run() kept results in memory",
    ),
]

"""Python ``logging`` records for a run, worded like Prefect 1's.

A Prefect 1 user reads ``Beginning Flow run for 'etl'``, ``Task 'extract': Starting task
run...`` and ``Task 'extract': Finished task run for task with final state: 'Success'``
while ``flow.run()`` works; statecore emits the same lines through the
``statecore.FlowRunner`` and ``statecore.TaskRunner`` loggers (children of ``statecore``).
The ``statecore`` logger has a ``NullHandler`` and nothing else: a library user sees
nothing unless they configure logging (``logging.basicConfig(level="INFO")``), and the
command line shows them (``-q`` and ``-v`` change the level).

These records are for people watching; the log of events is the record. Text that may
hold a secret (an error's message and traceback) is scrubbed before it is logged.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from statecore.graph import Graph
from statecore.states import Failed, Retrying, State, Success

__all__ = ["RunLogging"]

logging.getLogger("statecore").addHandler(logging.NullHandler())
flow_log = logging.getLogger("statecore.FlowRunner")
task_log = logging.getLogger("statecore.TaskRunner")


class RunLogging:
    """The records of one run; ``scrub`` removes the run's secret values from text."""

    def __init__(self, graph: Graph, scrub: Callable[[Any], Any]) -> None:
        self.graph = graph
        self.flow_name = graph.flow_name
        self.scrub = scrub
        # one check per run: with nobody listening, a record costs one attribute read
        self.tasks_on = task_log.isEnabledFor(logging.INFO)

    def flow_started(self, why: str) -> None:
        if flow_log.isEnabledFor(logging.INFO):
            begin = "Resuming" if why in ("resume", "takeover") else "Beginning"
            flow_log.info("%s Flow run for '%s'", begin, self.flow_name)

    def _label(self, node_i: int, index: int | None) -> str:
        name = self.graph.nodes[node_i].name  # Prefect 1's task_full_name
        return name if index is None else f"{name}[{index}]"

    def task_started(self, node_i: int, index: int | None) -> None:
        if self.tasks_on:
            task_log.info("Task '%s': Starting task run...", self._label(node_i, index))

    def task_finished(
        self, node_i: int, index: int | None, state: State, error: BaseException | None
    ) -> None:
        if not self.tasks_on:
            return
        label = self._label(node_i, index)
        if error is not None and isinstance(state, Failed | Retrying):
            text = getattr(error, "traceback_text", None) or "".join(
                traceback.format_exception(error)
            )
            task_log.error(
                "Task '%s': Exception encountered during task execution!\n%s",
                label,
                self.scrub(str(text)),
            )
        task_log.info(
            "Task '%s': Finished task run for task with final state: '%s'",
            label,
            type(state).__name__,
        )

    def flow_finished(self, state: State) -> None:
        if not flow_log.isEnabledFor(logging.INFO):
            return
        if isinstance(state, Success):
            flow_log.info("Flow run SUCCESS: all reference tasks succeeded")
        elif isinstance(state, Failed):
            flow_log.info("Flow run FAILED: some reference tasks failed.")
        elif state.is_finished():
            flow_log.info("Flow run %s: %s", type(state).__name__.upper(), state.message or "")
        else:
            flow_log.info("Flow run RUNNING: terminal tasks are incomplete.")

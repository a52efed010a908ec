"""statecore: durable, auditable workflows with Prefect Core 1.x semantics.

Every task and flow is a formal state machine; every transition is an event appended
to a durable log (SQLite by default, Redis to share runs). Replay the log to audit a
run or resume one that died halfway.
"""

from __future__ import annotations

from statecore import signals, states, triggers
from statecore.context import context
from statecore.control_flow import FilterTask, case, ifelse, merge, switch
from statecore.errors import StatecoreError, TaskError
from statecore.flow import Edge, Flow
from statecore.tasks import Parameter, Secret, Task, flatten, task, unmapped

__version__ = "0.1.0"

__all__ = [
    "Edge",
    "FilterTask",
    "Flow",
    "Parameter",
    "Secret",
    "StatecoreError",
    "Task",
    "TaskError",
    "case",
    "context",
    "flatten",
    "ifelse",
    "merge",
    "signals",
    "states",
    "switch",
    "task",
    "triggers",
    "unmapped",
]

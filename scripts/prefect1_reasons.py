"""Why a Prefect 1.4.1 test is out of scope, grouped: the README's compatibility table lists
these groups. Shared by ``prefect1_tests.py`` and its per-area scope tables."""

from __future__ import annotations

CLOUD = "Cloud/Server: talks to or models the Prefect backend (statecore has no server)"
SERIAL = "serialization schemas (prefect.serialization): the event log replaces them"
RESULTS = "Result classes and targets (prefect.engine.result[s]): the store replaces them"
EXECUTORS = "executors statecore lacks (Prefect executor objects and their options)"
RUNNER = "FlowRunner/TaskRunner internals: statecore's driver is a different design"
CONFIG = "prefect.config internals (configuration file, task defaults from config)"
STORAGE = "storage and run configs (deployment): out of scope, use statecore run"
VISUALIZE = "flow.visualize (graphviz): statecore graph replaces it"
NOT_RUN = (
    "not flow.run()-driven: of this file only the tests that run a flow are in scope "
    "(the rest test Prefect's object model: copying, sorting, serializing flows)"
)
AMBIENT = (
    "reads the ambient prefect.context when a State is built: statecore builds a State from "
    "its arguments only, as the fold rebuilds every State from the log (a default taken from "
    "the context would make a replay depend on where it runs)"
)

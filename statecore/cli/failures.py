"""``show --errors`` and ``logs --errors``: each failed task's stored traceback.

The failures are :func:`statecore.attempts.failures`, the read model the ``ui``'s task
details use too; every line goes through :func:`statecore.cli.timeline.printable`, so
an escape sequence in an error's message or traceback is shown, not obeyed.
"""

from __future__ import annotations

from statecore.attempts import Failure, failures
from statecore.cli.timeline import printable
from statecore.fold import RunView

__all__ = ["failure_lines"]


def _block(failure: Failure) -> list[str]:
    where = failure.task if failure.index is None else f"{failure.task}[{failure.index}]"
    head = f"{failure.state}: {failure.name} ({where}), attempt {failure.attempt}"
    if failure.message:
        head += f": {failure.message}"
    lines = [printable(head)]
    if failure.traceback:
        lines += ["  " + printable(line) for line in failure.traceback.rstrip("\n").split("\n")]
    else:
        lines.append("  (no traceback stored: the state holds no error)")
    return lines


def failure_lines(view: RunView) -> list[str]:
    """The lines that show the run's failures: per failed task or mapped child a
    heading (state, name, key, attempt, message) and its traceback, indented; a blank
    line between two failures; one line saying so when nothing failed."""
    found = failures(view)
    if not found:
        return [f"run {printable(view.run_id)}: no failed task"]
    out: list[str] = []
    for i, failure in enumerate(found):
        if i:
            out.append("")
        out += _block(failure)
    return out

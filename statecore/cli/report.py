"""What the command line prints about a run: the task table and the closing summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from statecore.cli.timeline import STATE_COLOURS, printable
from statecore.cli.times import format_duration
from statecore.fold import RunView, TaskRun
from statecore.states import Mapped, State

__all__ = ["print_outcome", "styled_state", "tasks_table"]


def _span(runs: Sequence[TaskRun]) -> int | None:
    starts = [r.started for r in runs if r.started is not None]
    ends = [r.ended for r in runs if r.ended is not None]
    if not starts or not ends:
        return None
    return max(ends) - min(starts)


def styled_state(state: State | str) -> Text:
    """A state's name in its colour."""
    name = state if isinstance(state, str) else state.name
    return Text(name, style=STATE_COLOURS.get(name, ""))


def _children_summary(children: Sequence[TaskRun]) -> str:
    counts = Counter(c.state.name for c in children)
    parts = ", ".join(f"{n} {name}" for name, n in counts.most_common())
    return f"{len(children)} children: {parts}" if children else "no children"


def tasks_table(view: RunView, *, children: bool, limit: int | None = None) -> Table:
    """One row per task: name, key, state, attempts, duration and message.

    A mapped task sums its children's attempts and spans their durations; with
    ``children`` each child gets a row of its own under it. ``limit`` caps the rows.
    """
    table = Table(show_edge=True, expand=False)
    for column in ("task", "key", "state", "attempts", "duration", "message"):
        table.add_column(column, justify="right" if column in ("attempts", "duration") else "left")
    names = {t["key"]: t["name"] for t in view.graph.get("tasks", [])}
    for i, key in enumerate(view.keys):
        if limit is not None and i >= limit:
            table.add_row(f"... {len(view.keys) - i} more", "", "", "", "", "")
            break
        run = view.runs[i]
        kids = view.children.get(i)
        if isinstance(run.state, Mapped) and kids is not None:
            attempts = str(sum(c.attempt for c in kids))
            message = _children_summary(kids)
            duration = format_duration(_span(kids))
        else:
            attempts = str(run.attempt)
            message = run.state.message or ""
            duration = format_duration(_span([run]))
        table.add_row(
            printable(str(names.get(key, key))),
            printable(key),
            styled_state(run.state),
            attempts,
            duration,
            printable(message),
        )
        if children and kids:
            for j, child in enumerate(kids):
                table.add_row(
                    printable(f"  {names.get(key, key)}[{j}]"),
                    "",
                    styled_state(child.state),
                    str(child.attempt),
                    format_duration(_span([child])),
                    printable(child.state.message or ""),
                )
    return table


def print_outcome(console: Console, view: RunView, flow_ref: str | None) -> None:
    """The closing lines after run/resume/rerun: counts, failures, what to do next."""
    counts: Counter[str] = Counter()
    failed: list[str] = []
    paused: list[str] = []
    names = {t["key"]: t["name"] for t in view.graph.get("tasks", [])}
    for i, key in enumerate(view.keys):
        entities = [(key, view.runs[i])]
        if i in view.children:
            entities = [(f"{key}[{j}]", c) for j, c in enumerate(view.children[i])]
        for label, run in entities:
            counts[run.state.name] += 1
            if run.state.is_failed():
                failed.append(f"{label}: {run.state.message}")
            if run.state.is_paused():
                paused.append(names.get(key, key))
    summary = ", ".join(f"{n} {name}" for name, n in counts.most_common())
    console.print(f"tasks: {summary}")
    for failure in failed[:10]:
        console.print(Text(printable(f"  failed {failure}"), style=STATE_COLOURS["Failed"]))
    if len(failed) > 10:
        console.print(f"  ... and {len(failed) - 10} more failures")
    state = view.flow_state
    closing = Text("flow ")
    closing.append_text(styled_state(state))
    closing.append(printable(f": {state.message or ''} (run {view.run_id})"))
    console.print(closing)
    if not state.is_finished():
        flow_arg = f" --flow {flow_ref}" if flow_ref else " --flow FILE.py:FLOW"
        if paused:
            approve = " ".join(f"--approve {p}" for p in dict.fromkeys(paused))
            console.print(
                printable(
                    f"paused at {', '.join(dict.fromkeys(paused))}; to approve: "
                    f"statecore resume {view.run_id}{flow_arg} {approve}"
                )
            )
        else:
            console.print(
                printable(f"not finished; continue with: statecore resume {view.run_id}{flow_arg}")
            )
    console.print(printable(f"details: statecore show {view.run_id}"), style="dim")

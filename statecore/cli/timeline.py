"""Drawing a run's timeline in the terminal, fitted to a width (``statecore timeline``).

The bars are :func:`statecore.attempts.attempt_bars`, a fold of the log: one per
attempt, with the times measured where the body ran. A mapped task's children fold
into one density row ``name[N]`` unless ``children``; names are elided in the middle
and control characters escaped. ``timeline --html`` writes the ``ui``'s run page
instead (:func:`statecore.cli.ui_command.embedded_page`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text

from statecore.audit import iso_time
from statecore.fold import RunView

__all__ = ["STATE_COLOURS", "elide", "fitted_gantt", "printable", "terminal_rows", "time_span"]

#: Colour of each state, shared by the terminal and the HTML page.
STATE_COLOURS: dict[str, str] = {
    "Success": "#2e9e44",
    "Cached": "#1f9c8f",
    "Skipped": "#9aa0a6",
    "Mapped": "#7fb3e6",
    "Failed": "#d93025",
    "TriggerFailed": "#a50e0e",
    "ValidationFailed": "#c5221f",
    "TimedOut": "#e8710a",
    "Retrying": "#f29900",
    "Running": "#1a73e8",
    "Looped": "#4285f4",
    "Pending": "#9334e6",
    "Scheduled": "#b39ddb",
    "Paused": "#f9ab00",
    "Resume": "#fdd663",
    "Cancelled": "#5f6368",
}
_OTHER = "#80868b"


def time_span(view: RunView) -> tuple[int, int]:
    """The run's start and end (its last event while unfinished), in UTC ns."""
    stamps = [e.ts for e in view.entries] + [ts for ts, _ in view.logs]
    start = view.started if view.started is not None else min(stamps, default=0)
    if view.ended is not None:
        end = view.ended
    elif view.last_event is not None:
        end = view.last_event.ts
    else:
        end = max(stamps, default=start)
    return start, max(end, start)


def _seconds(ns: int) -> str:
    s = ns / 1e9
    if s < 1:
        return f"{s * 1000:.1f}ms"
    if s < 120:
        return f"{s:.2f}s"
    return f"{int(s // 60)}m{s % 60:04.1f}s"


# -- terminal, fitted to a width --------------------------------------------------------

_CONTROL = {i: f"\\x{i:02x}" for i in [*range(32), 127]}
# C1 controls and the few Unicode characters that reorder or hide text on a terminal
_CONTROL.update({i: f"\\x{i:02x}" for i in range(0x80, 0xA0)})
_CONTROL.update(
    {
        i: f"\\u{i:04x}"
        for i in (0x200E, 0x200F, *range(0x202A, 0x202F), 0x2066, 0x2067, 0x2068, 0x2069)
    }
)
_FAILED = ("Failed", "TriggerFailed", "ValidationFailed", "TimedOut", "Cancelled")


def printable(text: str) -> str:
    """``text`` with control bytes (ESC, CR, BEL, ...) shown as escapes, not obeyed."""
    return text.translate(_CONTROL)


def elide(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by dropping its middle (``start…end``)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = (width - 1 + 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


@dataclass(slots=True)
class _Row:
    label: str
    attempt: str
    state: str
    start: int
    end: int | None
    marker: bool
    cells: list[str | None] | None = None  # a collapsed map's per-cell state


def _rank(state: str) -> int:
    # which state a collapsed map's cell shows when several children overlap it
    if state in _FAILED:
        return 3
    if state in ("Running", "Retrying", "Pending"):
        return 2
    return 1


def terminal_rows(view: RunView, *, children: bool, cells: int) -> list[_Row]:
    """The rows of the terminal Gantt: an attempt per row; a mapped task's children
    folded into one density row unless ``children``."""
    from statecore.attempts import attempt_bars

    t0, t1 = time_span(view)
    span = max(t1 - t0, 1)
    names = {t["key"]: t.get("name", t["key"]) for t in view.graph.get("tasks", [])}
    per_task: dict[str, list[Any]] = {}
    per_child: dict[str, dict[int, list[Any]]] = {}
    for bar in attempt_bars(view):
        if bar.index is None:
            per_task.setdefault(bar.task, []).append(bar)
        else:
            per_child.setdefault(bar.task, {}).setdefault(bar.index, []).append(bar)
    rows: list[_Row] = []
    for node, key in enumerate(view.keys):
        name = printable(str(names.get(key, key)))
        run = view.runs[node]
        own = per_task.get(key, [])
        for bar in own:
            rows.append(_Row(name, str(bar.number), bar.state, bar.start, bar.end, False))
        if not own and (run.state.name != "Pending" or node in view.children):
            ts = run.ended or run.started or t1
            rows.append(_Row(name, "", run.state.name, ts, ts, True))
        kids = view.children.get(node, [])
        if not kids:
            continue
        bars = per_child.get(key, {})
        if children:
            for i, kid in enumerate(kids):
                label = f"{name}[{i}]"
                mine = bars.get(i, [])
                for bar in mine:
                    rows.append(_Row(label, str(bar.number), bar.state, bar.start, bar.end, False))
                if not mine:
                    ts = kid.ended or kid.started or t1
                    rows.append(_Row(label, "", kid.state.name, ts, ts, True))
            continue
        counts: dict[str, int] = {}
        for kid in kids:
            counts[kid.state.name] = counts.get(kid.state.name, 0) + 1
        density: list[str | None] = [None] * cells
        first, last = t1, t0
        for mine in bars.values():
            for bar in mine:
                end = bar.end if bar.end is not None else t1
                first, last = min(first, bar.start), max(last, end)
                a = min(cells - 1, (bar.start - t0) * cells // span)
                b = min(cells - 1, (end - t0) * cells // span)
                for c in range(a, b + 1):
                    now = density[c]
                    if now is None or _rank(bar.state) > _rank(now):
                        density[c] = bar.state
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda x: -x[1]))
        worst = max(counts, key=_rank)
        rows.append(
            _Row(
                f"{name}[{len(kids)}]",
                f"{sum(len(m) for m in bars.values())}",
                summary if len(counts) > 1 else worst,
                min(first, last),
                max(first, last),
                False,
                density,
            )
        )
    return rows


def fitted_gantt(view: RunView, *, width: int, children: bool = False) -> list[Text]:
    """The run's Gantt as lines of at most ``width`` columns (``width`` >= 40).

    Columns: task (names elided in the middle), attempt number (a collapsed map: its
    attempts), state, start offset, duration, bar.
    """
    width = max(width, 40)
    t0, t1 = time_span(view)
    span = max(t1 - t0, 1)
    bar_w = max(10, width // 3)
    state_w = 10
    fixed = 1 + 5 + 1 + state_w + 1 + 8 + 1 + 8 + 1 + bar_w
    name_w = max(8, width - fixed)
    rows = terminal_rows(view, children=children, cells=bar_w)
    if rows:
        name_w = min(name_w, max(len(r.label) for r in rows))
        bar_w = width - (name_w + 1 + 5 + 1 + state_w + 1 + 8 + 1 + 8 + 1)
        if any(r.cells for r in rows) and bar_w != len(
            next(r.cells for r in rows if r.cells) or []
        ):
            rows = terminal_rows(view, children=children, cells=bar_w)
    title = printable(f"{view.flow_name} · run {view.run_id} · {view.flow_state.name}")
    out = [Text(elide(title, width), style="bold")]
    caption = f"{_seconds(t1 - t0)} from {iso_time(t0)}"
    out.append(Text(elide(caption + "; ◆ never ran; name[N] a map (--children expands)", width)))
    header = (
        f"{'task'.ljust(name_w)} {'#':>5} {'state'.ljust(state_w)} {'start':>8} {'duration':>8} "
    )
    out.append(Text(header + "─" * bar_w, style="dim"))
    for r in rows:
        colour = STATE_COLOURS.get(r.state, _OTHER)
        end = r.end if r.end is not None else t1
        line = Text(f"{elide(r.label, name_w).ljust(name_w)} {elide(r.attempt, 5):>5} ")
        line.append(elide(r.state, state_w).ljust(state_w), style=colour)
        dur = "-" if r.marker else _seconds(end - r.start) + ("…" if r.end is None else "")
        line.append(f" {elide('+' + _seconds(r.start - t0), 8):>8} {elide(dur, 8):>8} ")
        if r.cells is not None:
            for cell in r.cells:
                line.append("█" if cell else " ", style=STATE_COLOURS.get(cell or "", _OTHER))
        else:
            left = min(bar_w - 1, (r.start - t0) * bar_w // span)
            line.append(" " * left)
            if r.marker:
                line.append("◆", style=colour)
            else:
                cells = max(1, min(bar_w - left, -(-(end - r.start) * bar_w // span)))
                line.append("█" * cells, style=colour)
        out.append(line)
    if not rows:
        out.append(Text("no task has a state yet"))
    return out

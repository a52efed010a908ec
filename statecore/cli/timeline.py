"""Drawing a run's timeline: a Gantt of task attempts, in the terminal or as one HTML page.

The bars come from the log alone (:func:`task_bars` reads ``view.entries``):

* An **attempt** starts at a transition of a task (or mapped child) into ``Running``
  from anything but ``Looped``, and ends at that entity's next transition to a state
  other than ``Running`` or ``Looped``; its state is that state (``Success``,
  ``Failed``, ``Retrying``, ``Skipped`` when the body raised SKIP, ``Pending`` when the
  attempt was interrupted, ...). LOOP iterations (``Running -> Looped -> Running``) stay
  inside one attempt and are counted in :attr:`Bar.loops`. An attempt with no end yet
  (the run is still going, or its process died) is drawn up to the run's last event
  with state ``Running``.
* A task or child that reached a state **without ever running** (skipped or
  trigger-failed by its upstream, a cache hit, a paused manual gate, a mapped parent,
  a state reused by ``rerun``, a cancellation) gets one zero-width **marker** at the
  time of its last transition, coloured by its state.

So the number of attempt bars is exactly the number of transitions into ``Running``
from a state other than ``Looped`` in the log. In the HTML page each attempt bar is an
element with class ``attempt`` and each marker one with class ``marker`` (never both),
both with ``data-task`` (key), ``data-index`` (map index, empty when not mapped),
``data-attempt`` (0 for markers) and ``data-state``. The page's script writes the counts
into ``data-attempt-count`` and ``data-marker-count`` on ``<body>``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from statecore.audit import iso_time, log_lines
from statecore.fold import RunView

__all__ = ["Bar", "STATE_COLOURS", "html_page", "gantt", "task_bars", "time_span"]

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


@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt of a task (or mapped child), or a marker for one that never ran.

    Attributes:
        task: the task's key.
        label: the task's name, with ``[i]`` for a mapped child.
        index: the map index, None when not mapped.
        attempt: the attempt number (0 for a marker).
        state: the state the attempt ended in (``Running`` while open); for a marker,
            the entity's last state.
        start: UTC ns when the attempt started (a marker: when it got its state).
        end: UTC ns when it ended; None while open.
        message: the message of that state.
        marker: True for an entity that never ran.
        loops: LOOP iterations within the attempt.
    """

    task: str
    label: str
    index: int | None
    attempt: int
    state: str
    start: int
    end: int | None
    message: str | None
    marker: bool = False
    loops: int = 0


def task_bars(view: RunView) -> list[Bar]:
    """Every attempt and marker of a run, in graph order, then map index, then time."""
    names = {t["key"]: t["name"] for t in view.graph.get("tasks", [])}
    order = {key: i for i, key in enumerate(view.keys)}
    open_: dict[tuple[str, int | None], tuple[int, int, int]] = {}
    ran: set[tuple[str, int | None]] = set()
    last: dict[tuple[str, int | None], tuple[int, str, str | None]] = {}
    bars: list[Bar] = []

    def label(key: str, index: int | None) -> str:
        name = names.get(key, key)
        return name if index is None else f"{name}[{index}]"

    for e in view.entries:
        if e.task is None:
            continue
        entity = (e.task, e.index)
        last[entity] = (e.ts, e.new, e.message)
        if e.new == "Running":
            if e.prev != "Looped":
                open_[entity] = (e.ts, e.attempt, 0)
                ran.add(entity)
        elif e.new == "Looped":
            if entity in open_:
                start, attempt, loops = open_[entity]
                open_[entity] = (start, attempt, loops + 1)
        elif entity in open_:
            start, attempt, loops = open_.pop(entity)
            bars.append(
                Bar(
                    e.task,
                    label(*entity),
                    e.index,
                    attempt,
                    e.new,
                    start,
                    e.ts,
                    e.message,
                    loops=loops,
                )
            )
    for entity, (start, attempt, loops) in open_.items():
        bars.append(
            Bar(
                entity[0],
                label(*entity),
                entity[1],
                attempt,
                "Running",
                start,
                None,
                None,
                loops=loops,
            )
        )
    for entity, (ts, state, message) in last.items():
        if entity not in ran:
            bars.append(
                Bar(entity[0], label(*entity), entity[1], 0, state, ts, ts, message, marker=True)
            )
    bars.sort(
        key=lambda b: (
            order.get(b.task, len(order)),
            -1 if b.index is None else b.index,
            b.start,
            b.attempt,
        )
    )
    return bars


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


def _describe(bar: Bar, t0: int, t1: int) -> str:
    end = bar.end if bar.end is not None else t1
    lines = [f"{bar.label}" + (f" attempt {bar.attempt}" if not bar.marker else "")]
    lines.append(f"state: {bar.state}" + (" (did not run)" if bar.marker else ""))
    lines.append(f"start: {iso_time(bar.start)} (+{_seconds(bar.start - t0)})")
    if bar.marker:
        pass
    elif bar.end is None:
        lines.append(f"end: not yet (running for {_seconds(end - bar.start)} at the last event)")
    else:
        lines.append(f"end: {iso_time(end)} (+{_seconds(end - t0)})")
        lines.append(f"duration: {_seconds(end - bar.start)}")
    if bar.loops:
        lines.append(f"loops: {bar.loops}")
    if bar.message:
        lines.append(f"message: {bar.message}")
    return "\n".join(lines)


# -- terminal ---------------------------------------------------------------------------


def gantt(view: RunView, *, width: int = 40) -> RenderableType:
    """A rich Gantt of the run: one row per attempt, bars scaled to the run's span."""
    t0, t1 = time_span(view)
    span = max(t1 - t0, 1)
    table = Table(
        title=Text(f"{view.flow_name} · run {view.run_id} · {view.flow_state.name}"),
        caption=f"{_seconds(t1 - t0)} from {iso_time(t0)}; one row per attempt, ◆ = never ran",
        expand=False,
    )
    table.add_column("task")
    table.add_column("#", justify="right")
    table.add_column("state")
    table.add_column("start", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("", no_wrap=True, min_width=width)
    for bar in task_bars(view):
        colour = STATE_COLOURS.get(bar.state, _OTHER)
        end = bar.end if bar.end is not None else t1
        left = round((bar.start - t0) / span * width)
        line = Text(" " * min(left, width - 1))
        if bar.marker:
            line.append("◆", style=colour)
            duration = "-"
        else:
            cells = max(1, round((end - bar.start) / span * width))
            cells = min(cells, width - min(left, width - 1))
            line.append("█" * cells, style=colour)
            duration = _seconds(end - bar.start) + ("…" if bar.end is None else "")
        table.add_row(
            Text(bar.label),
            "" if bar.marker else str(bar.attempt),
            Text(bar.state, style=colour),
            "+" + _seconds(bar.start - t0),
            duration,
            line,
        )
    if not table.rows:
        return Group(table, Text("no task has a state yet"))
    return table


# -- HTML -------------------------------------------------------------------------------

_CSS = """
:root { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #202124; }
body { margin: 24px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
.state { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff;
  font-size: 13px; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 12px;
  font-size: 13px; margin: 8px 0; }
dl.meta dt { color: #5f6368; }
dl.meta dd { margin: 0; }
.legend span { display: inline-block; margin-right: 12px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px;
  border-radius: 2px; vertical-align: middle; }
.gantt { border-top: 1px solid #dadce0; margin-top: 8px; }
.row { display: flex; align-items: center; height: 22px; border-bottom: 1px solid #f1f3f4; }
.row.child .label { padding-left: 16px; }
.label { width: 260px; flex: none; font-size: 12px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; padding-right: 8px; }
.label small { color: #5f6368; }
.lane { position: relative; flex: 1; height: 14px; }
.attempt { position: absolute; top: 0; height: 14px; min-width: 3px; border-radius: 3px; }
.attempt.open { background-image: repeating-linear-gradient(45deg, transparent 0 4px,
  rgba(255,255,255,.35) 4px 8px); }
.marker { position: absolute; top: 2px; width: 10px; height: 10px; margin-left: -5px;
  transform: rotate(45deg); }
.axis { position: relative; height: 18px; margin-left: 260px; font-size: 11px;
  color: #5f6368; }
.axis span { position: absolute; transform: translateX(-50%); }
.axis span:first-child { transform: none; }
table.logs { border-collapse: collapse; font-size: 12px; }
table.logs td, table.logs th { text-align: left; padding: 2px 8px;
  border-bottom: 1px solid #f1f3f4; vertical-align: top; }
table.logs td.msg { font-family: ui-monospace, monospace; white-space: pre-wrap; }
#tip { position: fixed; display: none; pointer-events: none; background: #202124;
  color: #fff; font-size: 12px; padding: 6px 8px; border-radius: 4px; white-space: pre;
  max-width: 520px; z-index: 10; }
"""

_JS = """
(function () {
  var body = document.body;
  body.setAttribute('data-attempt-count', document.querySelectorAll('.attempt').length);
  body.setAttribute('data-marker-count', document.querySelectorAll('.marker').length);
  var tip = document.getElementById('tip');
  document.querySelectorAll('.attempt, .marker').forEach(function (el) {
    var text = el.getAttribute('title');
    el.addEventListener('mouseenter', function () {
      el.setAttribute('data-title', text); el.removeAttribute('title');
      tip.textContent = text; tip.style.display = 'block';
    });
    el.addEventListener('mousemove', function (ev) {
      tip.style.left = (ev.clientX + 12) + 'px'; tip.style.top = (ev.clientY + 12) + 'px';
    });
    el.addEventListener('mouseleave', function () {
      el.setAttribute('title', text); tip.style.display = 'none';
    });
  });
})();
"""


def _attr(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ticks(span: int, count: int = 6) -> list[int]:
    """Round tick offsets (ns) across ``span``."""
    if span <= 0:
        return [0]
    raw = span / count
    step = 1
    while step * 10 <= raw:
        step *= 10
    for mult in (1, 2, 5, 10):
        if step * mult >= raw:
            step *= mult
            break
    return list(range(0, span + 1, step))


def _state_badge(state: str) -> str:
    colour = STATE_COLOURS.get(state, _OTHER)
    return f'<span class="state" style="background:{colour}">{html.escape(state)}</span>'


def html_page(view: RunView) -> str:
    """The run's timeline as one self-contained HTML page (inline CSS and JS)."""
    t0, t1 = time_span(view)
    span = max(t1 - t0, 1)
    bars = task_bars(view)
    names = {t["key"]: t["name"] for t in view.graph.get("tasks", [])}
    out: list[str] = []
    add = out.append
    title = f"{view.flow_name} · run {view.run_id}"
    add("<!DOCTYPE html>")
    add('<html lang="en"><head><meta charset="utf-8">')
    add(f"<title>{html.escape(title)}</title>")
    add(f"<style>{_CSS}</style></head>")
    add(
        f'<body data-run-id="{_attr(view.run_id)}" data-flow="{_attr(view.flow_name)}" '
        f'data-flow-state="{_attr(view.flow_state.name)}">'
    )
    add('<header id="summary">')
    add(f"<h1>{html.escape(view.flow_name)} {_state_badge(view.flow_state.name)}</h1>")
    add('<dl class="meta">')
    meta: list[tuple[str, str]] = [
        ("run", html.escape(view.run_id)),
        ("flow state", html.escape(view.flow_state.message or view.flow_state.name)),
        ("started", html.escape(iso_time(t0))),
        (
            "ended" if view.ended is not None else "last event",
            f"{html.escape(iso_time(t1))} ({_seconds(t1 - t0)})",
        ),
    ]
    if view.parent_run:
        meta.append(("rerun of", html.escape(view.parent_run)))
    reference = [
        f"{html.escape(names.get(k, k))} {_state_badge(view.state_of(view.by_key[k]).name)}"
        for k in view.graph.get("reference", [])
        if k in view.by_key
    ]
    meta.append(("reference tasks", ", ".join(reference) or "none"))
    if view.parameters:
        params = json.dumps(view.parameters, default=repr, sort_keys=True)
        meta.append(("parameters", f"<code>{html.escape(params)}</code>"))
    for dt, dd in meta:
        add(f"<dt>{dt}</dt><dd>{dd}</dd>")
    add("</dl>")
    shown = sorted(
        {b.state for b in bars},
        key=lambda s: list(STATE_COLOURS).index(s) if s in STATE_COLOURS else len(STATE_COLOURS),
    )
    add('<div class="legend">')
    for state in shown:
        colour = STATE_COLOURS.get(state, _OTHER)
        add(f'<span><i style="background:{colour}"></i>{html.escape(state)}</span>')
    add('<span><i style="background:#bbb;transform:rotate(45deg)"></i>never ran</span></div>')
    add("</header>")

    add('<section id="timeline"><h2>Task attempts</h2><div class="axis">')
    for tick in _ticks(span):
        add(f'<span style="left:{tick / span * 100:.3f}%">+{_seconds(tick)}</span>')
    add('</div><div class="gantt">')
    for bar in bars:
        colour = STATE_COLOURS.get(bar.state, _OTHER)
        left = (bar.start - t0) / span * 100
        classes = "row child" if bar.index is not None else "row"
        what = "never ran" if bar.marker else f"#{bar.attempt}"
        if bar.loops:
            what += f" · {bar.loops} loops"
        add(
            f'<div class="{classes}"><div class="label" title="{_attr(bar.label)}">'
            f'{html.escape(bar.label)} <small>{what}</small></div><div class="lane">'
        )
        common = (
            f'data-task="{_attr(bar.task)}" '
            f'data-index="{"" if bar.index is None else bar.index}" '
            f'data-attempt="{bar.attempt}" data-state="{_attr(bar.state)}" '
            f'data-start="{bar.start}" title="{_attr(_describe(bar, t0, t1))}"'
        )
        if bar.marker:
            add(f'<div class="marker" {common} style="left:{left:.3f}%;background:{colour}"></div>')
        else:
            end = bar.end if bar.end is not None else t1
            width = (end - bar.start) / span * 100
            extra = " open" if bar.end is None else ""
            add(
                f'<div class="attempt{extra}" {common} '
                f'data-end="{"" if bar.end is None else bar.end}" '
                f'style="left:{left:.3f}%;width:{width:.3f}%;background:{colour}"></div>'
            )
        add("</div></div>")
    if not bars:
        add("<p>No task has a state yet.</p>")
    add("</div></section>")

    add('<section id="logs"><h2>Task logs</h2>')
    lines = log_lines(view)
    if lines:
        add('<table class="logs"><tr><th>time</th><th>level</th><th>task</th><th>message</th></tr>')
        for line in lines:
            add(
                f'<tr class="log" data-level="{_attr(line.level)}">'
                f'<td title="{_attr(iso_time(line.ts))}">+{_seconds(line.ts - t0)}</td>'
                f"<td>{html.escape(line.level)}</td><td>{html.escape(line.source)}</td>"
                f'<td class="msg">{html.escape(line.message)}</td></tr>'
            )
        add("</table>")
    else:
        add("<p>No task logged anything.</p>")
    add("</section>")
    if view.problems:
        add('<section id="problems"><h2>Problems in the log</h2><ul>')
        add("".join(f"<li>{html.escape(p)}</li>" for p in view.problems))
        add("</ul></section>")
    add('<div id="tip"></div>')
    add(f"<script>{_JS}</script>")
    add("</body></html>")
    return "\n".join(out)


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

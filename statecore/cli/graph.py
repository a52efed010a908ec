"""The flow graph as text for ``statecore graph``: Graphviz DOT or Mermaid.

Both renderers take the flow's graph record (``Graph(flow).record()``) and, optionally,
the state of each task in a run, and draw parameters, mapped tasks, reference tasks and
the kinds of edge (keyed, mapped, flattened, ordering-only) the same way.
"""

from __future__ import annotations

from typing import Any

from statecore.cli.timeline import STATE_COLOURS

__all__ = ["render_dot", "render_mermaid"]


def _dot_str(*lines: str) -> str:
    escaped = (line.replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return '"' + "\\n".join(escaped) + '"'


def render_dot(name: str, record: dict[str, Any], states: dict[str, str]) -> str:
    """The flow as a Graphviz DOT digraph, tasks filled with their state's colour.

    Args:
        name: the flow's name, the graph's name.
        record: the flow's graph record (``Graph(flow).record()``).
        states: task key to state name, for the tasks to colour (may be empty).
    """
    reference = set(record.get("reference", []))
    lines = [
        f"digraph {_dot_str(name)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
    ]
    for t in record["tasks"]:
        attrs = [f"label={_dot_str(t['name'], t['key'])}"]
        if t.get("kind") == "parameter":
            attrs.append("shape=ellipse")
        if t.get("mapped"):
            attrs.append("peripheries=2")
        if t["key"] in reference:
            attrs.append("penwidth=2")
        if t["key"] in states:
            attrs.append(f'fillcolor="{STATE_COLOURS.get(states[t["key"]], "#ffffff")}"')
            attrs.append(f"tooltip={_dot_str(states[t['key']])}")
        lines.append(f"  {_dot_str(t['key'])} [{', '.join(attrs)}];")
    for up, down, key, mapped, flattened in record["edges"]:
        attrs = []
        label = key or ""
        if mapped:
            label += " (flattened, mapped)" if flattened else " (mapped)"
            attrs.append("style=dashed")
        if key is None:
            attrs.append("style=dotted")
        if label:
            attrs.append(f"label={_dot_str(label.strip())}")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {_dot_str(up)} -> {_dot_str(down)}{suffix};")
    lines.append("}")
    return "\n".join(lines)


def _mermaid_str(text: str) -> str:
    return text.replace('"', "#quot;")


def render_mermaid(name: str, record: dict[str, Any], states: dict[str, str]) -> str:
    """The flow as a Mermaid flowchart; arguments as for :func:`render_dot`."""
    ids = {t["key"]: f"t{i}" for i, t in enumerate(record["tasks"])}
    reference = set(record.get("reference", []))
    lines = [f"%% flow {_mermaid_str(name)}", "flowchart LR"]
    for t in record["tasks"]:
        label = f'"{_mermaid_str(t["name"])}<br/><small>{_mermaid_str(t["key"])}</small>"'
        if t.get("kind") == "parameter":
            shape = f"([{label}])"
        elif t.get("mapped"):
            shape = f"[[{label}]]"
        else:
            shape = f"[{label}]"
        lines.append(f"  {ids[t['key']]}{shape}")
    for up, down, key, mapped, flattened in record["edges"]:
        arrow = "-.->" if mapped else "-->"
        label = (key or "") + (" flattened" if flattened else "") + (" mapped" if mapped else "")
        text = f"|{_mermaid_str(label.strip())}|" if label.strip() else ""
        lines.append(f"  {ids[up]} {arrow}{text} {ids[down]}")
    for state in sorted(set(states.values())):
        colour = STATE_COLOURS.get(state, "#ffffff")
        lines.append(f"  classDef {state} fill:{colour},color:#fff")
    for key, state in states.items():
        lines.append(f"  class {ids[key]} {state}")
    if reference:
        lines.append("  classDef reference stroke-width:3px")
        lines.append(f"  class {','.join(ids[k] for k in sorted(reference))} reference")
    return "\n".join(lines)

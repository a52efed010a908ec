"""What a notification says: Prefect 1's Slack attachment shape, and the e-mail text.

The Slack payload is ``{"attachments": [attachment]}`` with one attachment::

    {
      "fallback": "add is now in a Failed state",
      "color": "#d62728",                     # by state class, see STATE_COLOURS
      "author_name": "statecore",
      "title": "Failed",                      # the state's class name
      "text": "add is now in a Failed state",
      "fields": [
        {"title": "Message", "value": "...", "short": false},   # when there is one
        {"title": "Flow", "value": "etl", "short": true},         # backend_info, when known
        {"title": "Run", "value": "`<run id>` (statecore show <run id>)", "short": false}
      ],
      "footer": "statecore notification"
    }

The message is the state's message, or the repr of its result in a code block when the
result is an exception (as Prefect 1 shows it). With ``backend_info`` the attachment names
the flow and the run when they are known: the run id is on a flow's final state, and in
``statecore.context`` when a handler runs with one.
"""

from __future__ import annotations

import html
from email.message import EmailMessage
from typing import Any

from statecore.context import context
from statecore.flow import Flow
from statecore.states import (
    Cached,
    Cancelled,
    Failed,
    Finished,
    Looped,
    Mapped,
    Paused,
    Pending,
    Resume,
    Retrying,
    Running,
    Scheduled,
    Skipped,
    State,
    Success,
    TimedOut,
    TriggerFailed,
    ValidationFailed,
)

__all__ = ["STATE_COLOURS", "colour", "email_message", "slack_payload", "summary"]

#: the attachment's side-bar colour by state class; a state takes its nearest ancestor's
STATE_COLOURS: dict[type[State], str] = {
    State: "#b0b0b0",
    Pending: "#9e9e9e",
    Scheduled: "#8ab4f8",
    Paused: "#f2c94c",
    Resume: "#a5c8ff",
    Retrying: "#ff9800",
    Running: "#3b82f6",
    Finished: "#555555",
    Success: "#2ca02c",
    Cached: "#5cb85c",
    Mapped: "#1f77b4",
    Skipped: "#7f7f7f",
    Failed: "#d62728",
    TriggerFailed: "#c0392b",
    ValidationFailed: "#a93226",
    TimedOut: "#e4572e",
    Cancelled: "#607d8b",
    Looped: "#17becf",
}


def colour(state: State) -> str:
    """The colour of ``state``'s class, or of its nearest ancestor listed.

    >>> from statecore.states import TimedOut
    >>> colour(TimedOut())
    '#e4572e'
    """
    for kind in type(state).__mro__:
        if kind in STATE_COLOURS:
            return STATE_COLOURS[kind]
    return STATE_COLOURS[State]


def _name(tracked_obj: Any) -> str:
    return str(getattr(tracked_obj, "name", type(tracked_obj).__name__))


def summary(tracked_obj: Any, state: State) -> str:
    """``"<name> is now in a <State> state"``."""
    return f"{_name(tracked_obj)} is now in a {state.name} state"


def state_message(state: State) -> str | None:
    """The state's message, or the repr of the exception it carries (in a code block)."""
    if isinstance(state.result, BaseException):
        return f"```{state.result!r}```"
    return state.message


def run_facts(tracked_obj: Any, state: State) -> dict[str, str]:
    """The flow's name and the run's id, where they are known."""
    facts: dict[str, str] = {}
    flow_name = _name(tracked_obj) if isinstance(tracked_obj, Flow) else context.get("flow_name")
    if flow_name:
        facts["flow"] = str(flow_name)
    run_id = state.run_id or context.get("run_id")
    if run_id:
        facts["run_id"] = str(run_id)
    return facts


def slack_attachment(tracked_obj: Any, state: State, backend_info: bool) -> dict[str, Any]:
    """One Slack attachment describing ``state`` (see the module docstring)."""
    fields: list[dict[str, Any]] = []
    message = state_message(state)
    if message is not None:
        fields.append({"title": "Message", "value": message, "short": False})
    if backend_info:
        facts = run_facts(tracked_obj, state)
        if "flow" in facts and not isinstance(tracked_obj, Flow):
            fields.append({"title": "Flow", "value": facts["flow"], "short": True})
        if "run_id" in facts:
            run_id = facts["run_id"]
            value = f"`{run_id}` (statecore show {run_id})"
            fields.append({"title": "Run", "value": value, "short": False})
    text = summary(tracked_obj, state)
    return {
        "fallback": text,
        "color": colour(state),
        "author_name": "statecore",
        "title": state.name,
        "text": text,
        "fields": fields,
        "footer": "statecore notification",
    }


def slack_payload(tracked_obj: Any, state: State, backend_info: bool = True) -> dict[str, Any]:
    """The JSON body a Slack incoming webhook is sent: ``{"attachments": [...]}``."""
    return {"attachments": [slack_attachment(tracked_obj, state, backend_info)]}


def email_message(
    tracked_obj: Any, state: State, *, email_from: str, email_to: str, backend_info: bool
) -> EmailMessage:
    """The e-mail for one state change: a plain-text part and an HTML part (every value
    escaped), subject ``State change notification for <name>: <State>``."""
    message = state_message(state)
    lines = [summary(tracked_obj, state)]
    if message is not None:
        lines.append(f"Message: {message}")
    if backend_info:
        facts = run_facts(tracked_obj, state)
        if "flow" in facts:
            lines.append(f"Flow: {facts['flow']}")
        if "run_id" in facts:
            lines.append(f"Run: {facts['run_id']} (statecore show {facts['run_id']})")
    rows = "".join(f"<p>{html.escape(line)}</p>" for line in lines[1:])
    body = (
        "<html><body>"
        f'<div style="border-left: 4px solid {colour(state)}; padding-left: 8px;">'
        f"<p><b>{html.escape(_name(tracked_obj))}</b> is now in a "
        f'<b style="color: {colour(state)};">{html.escape(state.name)}</b> state</p>'
        f"{rows}</div></body></html>"
    )
    email = EmailMessage()
    email["Subject"] = f"State change notification for {_name(tracked_obj)}: {state.name}"
    email["From"] = email_from
    email["To"] = email_to
    email.set_content("\n".join(lines) + "\n")
    email.add_alternative(body, subtype="html")
    return email

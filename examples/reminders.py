"""The standup-reminder flow: statecore's example, runnable as is.

It gets the team, maps ``is_reminder_needed`` over it (SKIP for people who already
posted), maps ``send_reminder`` over the result, and ends with a ``report`` that runs even
when every reminder skipped. The reminders are the flow's reference tasks, so the run
succeeds when every needed reminder went out. The "sender" appends to a local file:
nothing touches the network.

Run it::

    python examples/reminders.py            # the embedded SQLite store, .statecore/runs.db
    statecore show <run id>                 # what ran, when, and why
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

from statecore import Flow, Parameter, Secret, context, signals, task, unmapped

OUTBOX = Path(os.environ.get("REMINDERS_OUTBOX", ".statecore/outbox.jsonl"))
POSTED_TODAY = {"grace"}


@task(max_retries=2, retry_delay=timedelta(seconds=0))
def get_team() -> list[str]:
    """The people who should post a standup update."""
    return ["ada", "grace", "linus"]


@task
def is_reminder_needed(person: str, channel: str) -> str:
    """Skip people who already posted in the channel today."""
    if person in POSTED_TODAY:
        raise signals.SKIP(f"{person} already posted in {channel}")
    return person


@task(max_retries=1, retry_delay=timedelta(seconds=0))
def send_reminder(person: str, channel: str, token: str) -> str:
    """Send one reminder (a stub: appends a line to the outbox file)."""
    OUTBOX.parent.mkdir(parents=True, exist_ok=True)
    line = {"to": person, "channel": channel, "authorised": bool(token)}
    with OUTBOX.open("a") as out:
        out.write(json.dumps(line) + "\n")
    context["logger"].info("reminded %s in %s", person, channel)
    return f"reminded {person}"


@task(skip_on_upstream_skip=False)
def report(results: list[object]) -> str:
    """Summarise what was sent; runs even if every reminder was skipped."""
    sent = [r for r in results if isinstance(r, str)]
    return f"{len(sent)} reminder(s) sent"


with Flow("reminders") as flow:
    channel = Parameter("channel", default="#standup")
    token = Secret("SLACK_TOKEN")
    team = get_team()
    needed = is_reminder_needed.map(team, unmapped(channel))
    sent = send_reminder.map(needed, unmapped(channel), unmapped(token))
    summary = report(sent)

flow.set_reference_tasks([sent])


def main() -> int:
    """Run the flow on the default store and say where its log is."""
    from statecore.backends import default_store_url

    secrets = {"SLACK_TOKEN": os.environ.get("SLACK_TOKEN", "xoxb-demo-token")}
    state = flow.run(secrets=secrets)
    print(f"run {state.run_id}: {state.name} ({state.message})")
    print(f"  report: {state.result[summary].result}")
    for child in state.result[sent].map_states:
        print(f"  send_reminder: {child.name} {child.result if child.is_successful() else ''}")
    print(f"run log: {default_store_url()}  (try: statecore show {state.run_id})")
    return 0 if state.is_successful() else 1


if __name__ == "__main__":
    raise SystemExit(main())

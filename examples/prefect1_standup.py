"""The standup and reminder flows of "Prefect runs on Prefect (part 2)", in Prefect 1 form.

This file is what a Prefect 1 user writes: ``from prefect import ...``, secrets read with
``prefect.client.Secret("MARVIN_TOKEN").get()`` inside the tasks, a ``CronSchedule``.
It runs unchanged on statecore through the compatibility layer, on the embedded SQLite
store (``.statecore/runs.db``):

    python -m statecore.compat examples/prefect1_standup.py       # both flows, once each
    STATECORE_PREFECT1=1 statecore run examples/prefect1_standup.py:standup_flow
    statecore run examples/prefect1_standup.py:reminder_flow --prefect1
    statecore run examples/prefect1_standup.py:standup_flow --prefect1 --on-schedule

The post's two external services are local fakes so nothing touches the network: the
"Firestore" of standup updates is a dict, and "Slack" appends each message it would post
to a JSON-lines outbox (``STANDUP_OUTBOX``, default ``.statecore/slack_outbox.jsonl``); it
refuses a call without a token, as Slack does, and never writes the token.

Where the post calls ``flow.deploy(...)`` (Prefect Cloud), a statecore user runs the file
with ``statecore run ... --on-schedule`` (or cron) and watches it with ``statecore ui``.
"""

import datetime
import json
import os
from pathlib import Path

import pendulum
import prefect
from prefect import Flow, Parameter, task, unmapped
from prefect.client import Secret
from prefect.engine import signals
from prefect.schedules import CronSchedule

# -- the local fakes of the post's external services --------------------------------------

OUTBOX = Path(os.environ.get("STANDUP_OUTBOX", ".statecore/slack_outbox.jsonl"))
TEAM = ["chris", "jeremiah", "josh", "laura"]
UPDATES_BY_DAY = {  # Firestore: one collection of updates per day, keyed by user
    "default": {
        "chris": "Reviewed the scheduler PR; today: the agent docs.",
        "laura": "Shipped the UI filters; today: pairing on mapping.",
    }
}


def slack_post(method, data):
    """Stands in for ``requests.post(f"https://slack.com/api/{method}", data=data)``."""
    if not data.get("token"):
        return {"ok": False, "error": "not_authed"}
    if method == "users.list":
        return {"ok": True, "members": [{"name": n, "is_bot": False} for n in TEAM]}
    OUTBOX.parent.mkdir(parents=True, exist_ok=True)
    message = {k: v for k, v in data.items() if k != "token"}
    with OUTBOX.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"method": method, **message}) + "\n")
    return {"ok": True}


def firestore_updates(collection):
    """Stands in for ``firestore.Client().collection(collection).stream()``."""
    return dict(UPDATES_BY_DAY.get(collection, UPDATES_BY_DAY["default"]))


# -- the standup flow ------------------------------------------------------------------


@task(max_retries=3, retry_delay=datetime.timedelta(seconds=0))
def get_collection_name():
    date_format = "%Y-%m-%d"
    return pendulum.now("utc").strftime(date_format)


@task(max_retries=3, retry_delay=datetime.timedelta(seconds=0))
def get_latest_updates(date):
    return firestore_updates(date)


@task(max_retries=3, retry_delay=datetime.timedelta(seconds=0))
def post_standup(updates, channel):
    TOKEN = Secret("MARVIN_TOKEN")
    msg = "\n".join(f"*{user}*: {update}" for user, update in sorted(updates.items()))
    r = slack_post(
        "chat.postMessage",
        data={"token": TOKEN.get(), "channel": channel, "text": msg, "as_user": "true"},
    )
    if r["ok"] is False:
        raise ValueError(r.get("error", "Requests error"))
    logger = prefect.context.get("logger")
    logger.info("posted %d updates to %s", len(updates), channel)
    return r


weekday_schedule = CronSchedule(
    "0 9 * * 1-5", start_date=pendulum.datetime(2019, 3, 1, tz="US/Eastern")
)

with Flow("post-standup", schedule=weekday_schedule) as standup_flow:
    standup_channel = Parameter("standup_channel", default="standup")
    res = post_standup(get_latest_updates(get_collection_name()), standup_channel)


# -- the reminder flow -----------------------------------------------------------------


@task
def get_team():
    TOKEN = Secret("MARVIN_TOKEN").get()
    r = slack_post("users.list", data={"token": TOKEN})
    if r["ok"] is False:
        raise ValueError(r.get("error", "Requests error"))
    return [m["name"] for m in r["members"] if not m["is_bot"]]


@task
def is_reminder_needed(user_name, updates):
    if user_name in updates:
        raise signals.SKIP(f"{user_name} has already provided an update")
    return user_name


@task(max_retries=3, retry_delay=datetime.timedelta(seconds=0))
def send_reminder(user_name):
    TOKEN = Secret("MARVIN_TOKEN").get()
    r = slack_post(
        "chat.postMessage",
        data={
            "token": TOKEN,
            "channel": f"@{user_name}",
            "text": "Reminder: standup is in 30 minutes; please post your update.",
        },
    )
    if r["ok"] is False:
        raise ValueError(r.get("error", "Requests error"))
    return user_name


@task(skip_on_upstream_skip=False)
def report(results):
    logger = prefect.context.get("logger")
    sent = [r for r in results if isinstance(r, str)]
    logger.info("sent %d reminders: %s", len(sent), ", ".join(sent) or "none")


reminder_schedule = CronSchedule(
    "30 8 * * 1-5", start_date=pendulum.datetime(2019, 3, 1, tz="US/Eastern")
)

with Flow("standup-reminder", schedule=reminder_schedule) as reminder_flow:
    team = get_team()
    updates = get_latest_updates(get_collection_name())
    needed = is_reminder_needed.map(team, unmapped(updates))
    reminders = send_reminder.map(needed)
    final = report(reminders)

reminder_flow.set_reference_tasks([reminders])


if __name__ == "__main__":
    # Prefect 1's local secrets, for testing off-schedule (in production the token comes
    # from PREFECT__CONTEXT__SECRETS__MARVIN_TOKEN or flow.run(secrets=...) on statecore)
    token = os.environ.get("MARVIN_TOKEN", "xoxb-local-testing-token")
    with prefect.context(secrets=dict(MARVIN_TOKEN=token)):
        standup_state = standup_flow.run(run_on_schedule=False)
        reminder_state = reminder_flow.run(run_on_schedule=False)
    print("standup:", standup_state)
    print("reminders:", reminder_state)
    raise SystemExit(0 if standup_state.is_successful() and reminder_state.is_successful() else 1)

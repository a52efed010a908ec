"""``slack_notifier``: Prefect 1's Slack state handler, over a Slack incoming webhook.

Posts :func:`statecore.notifications.message.slack_payload` (Prefect 1's attachment shape)
to the URL in the secret named by ``webhook_secret`` (default ``"SLACK_WEBHOOK_URL"``), or
to ``webhook_url`` when given. Options as Prefect 1's: ``ignore_states``, ``only_states``,
``webhook_secret``, ``backend_info`` (True), ``proxies``; and statecore's ``webhook_url``,
``timeout`` (10 s) and ``raise_errors`` (False: a failure is a WARNING, the run goes on).

Example::

    from statecore import task
    from statecore.notifications import slack_notifier
    from statecore.states import Failed

    @task(state_handlers=[slack_notifier(only_states=[Failed])])
    def add(x, y):
        return x + y
"""

from __future__ import annotations

from statecore.notifications._notifier import Delivery, Notifier
from statecore.notifications.message import slack_payload
from statecore.notifications.webhook import check_http_option, post_json, webhook_url

__all__ = ["slack_notifier"]


def _send(delivery: Delivery) -> None:
    options = delivery.options
    post_json(
        webhook_url(delivery, "SLACK_WEBHOOK_URL"),
        slack_payload(delivery.tracked_obj, delivery.new_state, bool(options["backend_info"])),
        timeout=float(options["timeout"]),
        proxies=options["proxies"],
    )


#: Prefect 1's ``slack_notifier`` (module docstring).
slack_notifier = Notifier(
    "slack_notifier",
    _send,
    {"webhook_secret": None, "webhook_url": None, "proxies": None},
    check_http_option,
)

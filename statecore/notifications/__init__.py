"""Notifications as Prefect 1 had them: state handlers that tell Slack, e-mail or any
webhook when a task or a flow changes state.

Each notifier is a state handler ``(tracked_obj, old_state, new_state) -> new_state``;
called with keyword options only it returns a configured copy, as Prefect 1's curried
notifiers did::

    @task(state_handlers=[slack_notifier(only_states=[Failed])])
    def load(): ...

    Flow("etl", state_handlers=[gmail_notifier(ignore_states=[Running])])

A notifier never changes a run's outcome: when it cannot deliver (a missing secret, a
refused connection, an HTTP or SMTP error, a timeout) it logs a WARNING on the
``statecore.notifications`` logger and returns ``new_state`` unchanged, unless it was
given ``raise_errors=True``. ``prefect.utilities.notifications`` maps to this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from statecore.notifications._notifier import NotificationError, Notifier, lookup_secret
from statecore.notifications.gmail import gmail_notifier
from statecore.notifications.message import email_message, slack_payload
from statecore.notifications.slack import slack_notifier
from statecore.notifications.webhook import webhook_notifier
from statecore.states import State

__all__ = [
    "NotificationError",
    "Notifier",
    "callback_factory",
    "email_message_formatter",
    "gmail_notifier",
    "lookup_secret",
    "slack_message_formatter",
    "slack_notifier",
    "slack_payload",
    "snowflake_logger",
    "webhook_notifier",
]


def callback_factory(
    fn: Callable[[Any, State], Any], check: Callable[[State], bool]
) -> Callable[[Any, State, State], State]:
    """A state handler that calls ``fn(tracked_obj, new_state)`` whenever
    ``check(new_state)`` is True, and returns ``new_state`` (Prefect 1's helper).

    Unlike the notifiers, it does not catch what ``fn`` raises: that is the caller's code.

    >>> from statecore.states import Failed, Success
    >>> seen = []
    >>> handler = callback_factory(lambda obj, s: seen.append(s.name), lambda s: s.is_failed())
    >>> handler(None, Success(), Failed()).name, seen
    ('Failed', ['Failed'])
    """

    def state_handler(tracked_obj: Any, old_state: State, new_state: State) -> State:
        if check(new_state) is True:
            fn(tracked_obj, new_state)
        return new_state

    return state_handler


def slack_message_formatter(
    tracked_obj: Any, state: State, backend_info: bool = True
) -> dict[str, Any]:
    """Prefect 1's name for :func:`slack_payload`: the JSON a Slack webhook is sent."""
    return slack_payload(tracked_obj, state, backend_info)


def email_message_formatter(tracked_obj: Any, state: State, email_to: str) -> str:
    """Prefect 1's e-mail formatter: the whole message (headers, plain and HTML parts) as
    text, addressed to and from ``email_to``."""
    message = email_message(
        tracked_obj, state, email_from=email_to, email_to=email_to, backend_info=True
    )
    return message.as_string()


def snowflake_logger(*args: Any, **kwargs: Any) -> NoReturn:
    """Prefect 1's Snowflake logger is out of scope: it needs Prefect's Snowflake task.

    Raises:
        NotImplementedError: always, saying what to use instead.
    """
    raise NotImplementedError(
        "snowflake_logger is not part of statecore: use webhook_notifier(formatter=...) "
        "to send state changes to a service, or a state handler of your own that writes "
        "the row (statecore's run log already keeps every state change: statecore export)"
    )

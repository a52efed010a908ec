"""``webhook_notifier``: POST a JSON description of a state change to any HTTP endpoint.

The body is Prefect 1's Slack shape (``{"attachments": [...]}``, see
:mod:`statecore.notifications.message`) plus an ``"event"`` object for programs::

    {"attachments": [...],
     "event": {"kind": "task", "name": "add", "old_state": "Running", "state": "Failed",
               "message": "...", "flow": "etl", "run_id": "..."}}

(``flow`` and ``run_id`` when known and ``backend_info`` is on). ``formatter=`` replaces
the whole body with what it returns for ``(tracked_obj, old_state, new_state)``.

The URL is the ``webhook_url`` option, else the secret named by ``webhook_secret``
(default ``"WEBHOOK_URL"``). Sent with the standard library (``urllib.request``), with a
timeout (``timeout``, default 10 s); ``proxies`` (``{"http": ..., "https": ...}``) as
Prefect 1's Slack notifier took them; ``headers`` are added to the request.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from statecore.flow import Flow
from statecore.notifications._notifier import Delivery, NotificationError, Notifier
from statecore.notifications.message import run_facts, slack_payload

__all__ = ["post_json", "webhook_notifier"]

#: at most this much of an error response's body is quoted in the warning
_QUOTED = 200


def post_json(
    url: str,
    body: Any,
    *,
    timeout: float,
    proxies: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> int:
    """POST ``body`` as JSON to ``url``; the response's status.

    Raises:
        NotificationError: not an http(s) URL, a status outside 2xx, or no answer
            (refused, unreachable, timed out). Its text never holds the URL.
    """
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        # urllib would also open file:// and ftp:// URLs: a wrong secret must not read files
        raise NotificationError(f"the webhook URL must be http(s), not {scheme or 'relative'}")
    data = json.dumps(body, default=str).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    handlers = [] if proxies is None else [urllib.request.ProxyHandler(dict(proxies))]
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            status = int(response.status)
            response.read()
    except urllib.error.HTTPError as exc:
        quoted = _body_of(exc)
        exc.close()
        raise NotificationError(
            f"the webhook answered HTTP {exc.code} {exc.reason}{quoted}"
        ) from None
    except urllib.error.URLError as exc:
        raise NotificationError(f"the webhook could not be reached: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # a timeout while reading, a malformed URL
        raise NotificationError(
            f"the webhook could not be reached: {type(exc).__name__}: {exc}"
        ) from None
    if not 200 <= status < 300:
        raise NotificationError(f"the webhook answered HTTP {status}")
    return status


def _body_of(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(_QUOTED + 1).decode("utf-8", "replace")
    except OSError:
        return ""
    text = " ".join(text.split())
    if len(text) > _QUOTED:
        text = text[:_QUOTED] + "..."
    return f": {text}" if text else ""


def check_http_option(option: str, value: Any) -> None:
    """Validates the HTTP options shared by the Slack and generic webhook notifiers."""
    if option == "webhook_secret" and value is not None and not isinstance(value, str):
        raise TypeError(f"webhook_secret must be a secret's name, not {value!r}")
    if (
        option == "webhook_url"
        and value is not None
        and (not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"))
    ):
        raise ValueError("webhook_url must be an http(s) URL")
    if option in ("proxies", "headers") and value is not None and not isinstance(value, Mapping):
        raise TypeError(f"{option} must be a mapping, not {type(value).__name__}")


def webhook_url(delivery: Delivery, default_secret: str) -> str:
    """The URL to post to: the ``webhook_url`` option, else the secret's value."""
    url = delivery.options["webhook_url"]
    if url is not None:
        delivery.secrets.append(str(url))  # a URL given in code is as secret as one stored
        return str(url)
    return delivery.secret(delivery.options["webhook_secret"] or default_secret)


def event_body(delivery: Delivery) -> dict[str, Any]:
    """The default body: the Slack attachments plus the ``event`` object."""
    obj, new = delivery.tracked_obj, delivery.new_state
    body = slack_payload(obj, new, bool(delivery.options["backend_info"]))
    event: dict[str, Any] = {
        "kind": "flow" if isinstance(obj, Flow) else "task",
        "name": str(getattr(obj, "name", type(obj).__name__)),
        "old_state": getattr(delivery.old_state, "name", str(delivery.old_state)),
        "state": new.name,
        "message": new.message,
    }
    if delivery.options["backend_info"]:
        event.update(run_facts(obj, new))
    body["event"] = event
    return body


def _send(delivery: Delivery) -> None:
    options = delivery.options
    formatter: Callable[[Any, Any, Any], Any] | None = options["formatter"]
    if formatter is None:
        body: Any = event_body(delivery)
    else:
        body = formatter(delivery.tracked_obj, delivery.old_state, delivery.new_state)
    post_json(
        webhook_url(delivery, "WEBHOOK_URL"),
        body,
        timeout=float(options["timeout"]),
        proxies=options["proxies"],
        headers=options["headers"],
    )


def _check(option: str, value: Any) -> None:
    check_http_option(option, value)
    if option == "formatter" and value is not None and not callable(value):
        raise TypeError("formatter must be a callable (tracked_obj, old_state, new_state)")


#: POST each wanted state change as JSON (module docstring); options: ``ignore_states``,
#: ``only_states``, ``webhook_secret`` ("WEBHOOK_URL"), ``webhook_url``, ``headers``,
#: ``proxies``, ``formatter``, ``backend_info`` (True), ``timeout`` (10 s),
#: ``raise_errors`` (False).
webhook_notifier = Notifier(
    "webhook_notifier",
    _send,
    {
        "webhook_secret": None,
        "webhook_url": None,
        "headers": None,
        "proxies": None,
        "formatter": None,
    },
    _check,
)

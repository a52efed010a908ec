"""``gmail_notifier``: Prefect 1's e-mail state handler, for Gmail or any SMTP relay.

As in Prefect 1 the credentials are the secrets ``EMAIL_USERNAME`` and ``EMAIL_PASSWORD``,
and the username is also where the notification goes. It connects to smtp.gmail.com:465
over SSL by default; ``smtp_server``, ``smtp_port`` and ``smtp_type`` (``"SSL"``,
``"STARTTLS"`` or ``"INSECURE"``, plain SMTP) point it at another relay, ``ssl_context``
sets how TLS is verified (default: the system's trust store), ``login=False`` skips
authentication (a relay that takes mail from the host without it; ``EMAIL_PASSWORD`` is
then not needed), ``email_to``/``email_from`` override the addresses (both default to the
username). ``timeout`` (10 s) bounds each network step; ``raise_errors`` (False) as for
every notifier.

Example::

    from statecore.notifications import gmail_notifier
    from statecore.states import Failed

    notify = gmail_notifier(only_states=[Failed], smtp_server="mail.internal",
                            smtp_port=587, smtp_type="STARTTLS")
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from typing import Any

from statecore.notifications._notifier import Delivery, NotificationError, Notifier
from statecore.notifications.message import email_message

__all__ = ["SMTP_TYPES", "gmail_notifier"]

SMTP_TYPES = ("SSL", "STARTTLS", "INSECURE")


def _connect(options: Mapping[str, Any]) -> smtplib.SMTP:
    host, port = str(options["smtp_server"]), int(options["smtp_port"])
    timeout = float(options["timeout"])
    kind = options["smtp_type"]
    tls = options["ssl_context"] or ssl.create_default_context()
    if kind == "SSL":
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=tls)
    server = smtplib.SMTP(host, port, timeout=timeout)
    if kind == "STARTTLS":
        try:
            server.starttls(context=tls)
        except BaseException:
            server.close()
            raise
    return server


def _send(delivery: Delivery) -> None:
    options = delivery.options
    username = delivery.secret("EMAIL_USERNAME")
    password = delivery.secret("EMAIL_PASSWORD") if options["login"] else None
    email_to = options["email_to"] or username
    email_from = options["email_from"] or username
    email = email_message(
        delivery.tracked_obj,
        delivery.new_state,
        email_from=email_from,
        email_to=email_to,
        backend_info=bool(options["backend_info"]),
    )
    try:
        with _connect(options) as server:
            if password is not None:
                server.login(username, password)
            server.send_message(email, from_addr=email_from, to_addrs=[email_to])
    except smtplib.SMTPException as exc:
        # SMTP errors quote the server's reply, never the password
        raise NotificationError(f"SMTP {type(exc).__name__}: {exc}") from None
    except ssl.SSLError as exc:
        raise NotificationError(f"TLS with the SMTP server failed: {exc}") from None
    except OSError as exc:
        raise NotificationError(f"the SMTP server could not be reached: {exc}") from None


def _check(option: str, value: Any) -> None:
    if option == "smtp_type" and value not in SMTP_TYPES:
        raise ValueError(f"smtp_type must be one of {', '.join(SMTP_TYPES)}, not {value!r}")
    if option == "smtp_port" and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"smtp_port must be an int, not {value!r}")
    if option == "ssl_context" and value is not None and not isinstance(value, ssl.SSLContext):
        raise TypeError("ssl_context must be an ssl.SSLContext")
    text_option = option in ("smtp_server", "email_to", "email_from")
    if text_option and value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{option} must be a non-empty string, not {value!r}")


#: Prefect 1's ``gmail_notifier`` (module docstring).
gmail_notifier = Notifier(
    "gmail_notifier",
    _send,
    {
        "smtp_server": "smtp.gmail.com",
        "smtp_port": 465,
        "smtp_type": "SSL",
        "ssl_context": None,
        "login": True,
        "email_to": None,
        "email_from": None,
    },
    _check,
)

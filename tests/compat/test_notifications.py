"""Notifiers (statecore.notifications) against real servers on 127.0.0.1.

A real HTTP server (``http.server`` in a thread, port 0) receives the Slack and webhook
JSON; a real SMTP server (aiosmtpd, port 0) receives the e-mail. Flows run on a real
SQLite store. Failures are real too: a closed port, a server that accepts and never
answers, a server that answers 500, a missing secret; after each the run's log and its
outcome are what they are without the notifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from statecore import Flow, Task, task
from statecore.backends.sqlite import SQLiteStore
from statecore.events import LogRecord, Note, StateChanged, decode_body
from statecore.notifications import (
    NotificationError,
    Notifier,
    callback_factory,
    gmail_notifier,
    slack_notifier,
    webhook_notifier,
)
from statecore.states import (
    Failed,
    Pending,
    Running,
    State,
    Success,
    TimedOut,
    TriggerFailed,
)

SLACK_SECRET_TOKEN = "T0000/B0000/s3cr3t-hook-token"
EMAIL_PASSWORD = "pa55-w0rd-never-stored"


# -- servers ----------------------------------------------------------------------------


@dataclass
class HTTPSink:
    """A real HTTP server: POSTs to ``/ok...`` get 200, to ``/fail...`` 500."""

    server: ThreadingHTTPServer
    received: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def bodies(self) -> list[Any]:
        return [body for _, _, body in self.received]


@pytest.fixture
def http_sink() -> Iterator[HTTPSink]:
    sink: HTTPSink

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            sink.received.append((self.path, dict(self.headers), body))
            status = 500 if self.path.startswith("/fail") else 200
            reply = b"internal trouble" if status == 500 else b"ok"
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads what arrived, not the access log

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink = HTTPSink(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=password == EMAIL_PASSWORD, handled=False)


class _PortZeroController(Controller):
    """aiosmtpd's Controller on a socket bound to port 0 (its own start needs a port)."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self._sock.getsockname()[1], **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


@dataclass
class SMTPSink:
    mailbox: _Mailbox
    port: int


@contextlib.contextmanager
def smtp_server(**kwargs: Any) -> Iterator[SMTPSink]:
    mailbox = _Mailbox()
    controller = _PortZeroController(
        mailbox, loop=asyncio.new_event_loop(), authenticator=mailbox.authenticate, **kwargs
    )
    controller.start()
    try:
        yield SMTPSink(mailbox, controller.port)
    finally:
        controller.stop()
        controller.loop.close()


@pytest.fixture
def smtp_sink() -> Iterator[SMTPSink]:
    # plain SMTP on 127.0.0.1 (smtp_type="INSECURE"), so AUTH is allowed without TLS
    with smtp_server(auth_require_tls=False) as sink:
        yield sink


@dataclass
class SelfSigned:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> SelfSigned:
    """A self-signed certificate for 127.0.0.1 (cryptography, a dependency of the dev
    tools), trusted by the client contexts the tests pass as ``ssl_context``."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    paths = SelfSigned(folder / "cert.pem", folder / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


# -- helpers ----------------------------------------------------------------------------


def run_events(store: SQLiteStore, run_id: str) -> list[tuple[Any, ...]]:
    """The run's events as comparable tuples (states, log lines, notes; no times)."""
    out: list[tuple[Any, ...]] = []
    for event in store.read(run_id):
        body = decode_body(event)
        if isinstance(body, StateChanged):
            out.append(("state", body.task, body.index, body.prev, body.new))
        elif isinstance(body, LogRecord):
            out.append(("log", body.task, body.level, body.message))
        elif isinstance(body, Note):
            out.append(("note", body.code))
        else:
            out.append((body.kind,))
    return out


def etl_flow(*handlers: Any, flow_handlers: tuple[Any, ...] = ()) -> Flow:
    """extract -> load (which fails), plus an independent ``report`` that succeeds."""

    @task(state_handlers=list(handlers))
    def extract() -> int:
        return 3

    @task(state_handlers=list(handlers))
    def load(x: int) -> int:
        raise ValueError(f"cannot load {x}")

    @task
    def report() -> str:
        return "done"

    with Flow("etl", state_handlers=list(flow_handlers)) as flow:
        load(extract())
        report()
    return flow


def attachment(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict) and len(body["attachments"]) == 1
    found = body["attachments"][0]
    assert isinstance(found, dict)
    return found


# -- currying and options ---------------------------------------------------------------


def test_keyword_options_only_return_a_configured_handler() -> None:
    configured = slack_notifier(only_states=[Failed])
    assert isinstance(configured, Notifier)
    assert configured.options["only_states"] == [Failed]
    assert configured.options["webhook_secret"] is None  # SLACK_WEBHOOK_URL at send time
    again = configured(backend_info=False)
    assert isinstance(again, Notifier)
    assert again.options["only_states"] == [Failed] and again.options["backend_info"] is False
    assert configured.options["backend_info"] is True  # binding made a copy
    assert (
        repr(again)
        == "slack_notifier(only_states=[<class 'statecore.states.Failed'>], backend_info=False)"
    )


@pytest.mark.parametrize(
    ("notifier", "options", "error"),
    [
        (slack_notifier, {"only_sates": [Failed]}, TypeError),
        (slack_notifier, {"only_states": Failed}, TypeError),
        (slack_notifier, {"only_states": ["Failed"]}, TypeError),
        (slack_notifier, {"webhook_url": "file:///etc/passwd"}, ValueError),
        (webhook_notifier, {"timeout": 0}, ValueError),
        (webhook_notifier, {"formatter": "json"}, TypeError),
        (gmail_notifier, {"smtp_type": "TLS"}, ValueError),
        (gmail_notifier, {"smtp_port": "25"}, TypeError),
    ],
)
def test_bad_options_fail_where_they_are_bound(
    notifier: Notifier, options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        notifier(**options)


def test_only_some_positional_arguments_is_an_error() -> None:
    with pytest.raises(TypeError, match="tracked_obj, old_state, new_state"):
        slack_notifier(Flow("f"))  # type: ignore[call-overload]


# -- Slack and webhook over real HTTP ---------------------------------------------------


def test_slack_notifier_called_directly_posts_prefect1_attachment(http_sink: HTTPSink) -> None:
    flow = Flow("nightly")
    failed = Failed("2 tasks failed")
    returned = slack_notifier(flow, Running(), failed, webhook_url=http_sink.url("/ok"))
    assert returned is failed
    [(path, headers, body)] = http_sink.received
    assert path == "/ok" and headers["Content-Type"] == "application/json"
    found = attachment(body)
    assert found["title"] == "Failed"
    assert found["text"] == "nightly is now in a Failed state"
    assert found["color"] == "#d62728"
    assert found["fields"][0] == {"title": "Message", "value": "2 tasks failed", "short": False}
    assert found["footer"] == "statecore notification"


def test_exception_results_are_shown_as_their_repr() -> None:
    from statecore.notifications import slack_payload

    state = Failed("boom", result=ValueError("no rows"))
    found = attachment(slack_payload(Flow("f"), state))
    assert found["fields"][0]["value"] == "```ValueError('no rows')```"


def test_slack_secret_from_environment_and_only_states_in_a_real_flow(
    http_sink: HTTPSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = http_sink.url(f"/ok/services/{SLACK_SECRET_TOKEN}")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    flow = etl_flow(slack_notifier(only_states=[Failed]))
    state = flow.run(store=store)
    assert isinstance(state, Failed)
    # only load's Failed state: extract's Running and Success were filtered out
    texts = [attachment(b)["text"] for b in http_sink.bodies()]
    assert texts == ["load is now in a Failed state"]
    assert "cannot load 3" in attachment(http_sink.bodies()[0])["fields"][0]["value"]
    store.close()
    assert SLACK_SECRET_TOKEN.encode() not in db.read_bytes()


def test_ignore_states_and_subclass_matching(http_sink: HTTPSink) -> None:
    obj = Flow("f")
    url = http_sink.url("/ok")
    notify = slack_notifier(webhook_url=url, ignore_states=[Running, Pending])
    for state in (Pending(), Running(), Success("ok"), TimedOut("late")):
        notify(obj, Pending(), state)
    only_failed = slack_notifier(webhook_url=url, only_states=[Failed])
    for state in (Running(), Success(), TriggerFailed("upstream"), TimedOut("late")):
        only_failed(obj, Running(), state)
    titles = [attachment(b)["title"] for b in http_sink.bodies()]
    assert titles == ["Success", "TimedOut", "TriggerFailed", "TimedOut"]


def test_flow_level_handler_sees_every_flow_state_with_run_id(
    http_sink: HTTPSink, tmp_path: Path
) -> None:
    notify = webhook_notifier(webhook_url=http_sink.url("/ok/hook"), headers={"X-Team": "data"})
    flow = etl_flow(flow_handlers=(notify,))
    state = flow.run(store=SQLiteStore(tmp_path / "runs.db"))
    assert isinstance(state, Failed)
    events = [body["event"] for body in http_sink.bodies()]
    assert [(e["kind"], e["name"], e["old_state"], e["state"]) for e in events] == [
        ("flow", "etl", "Pending", "Running"),
        ("flow", "etl", "Running", "Failed"),
    ]
    # handlers run before the runner stamps the run id on the flow's final state, and
    # with no run context: the run is named only where it is known (see the next test)
    assert events[-1].get("run_id") in (None, state.run_id)
    assert all(headers["X-Team"] == "data" for _, headers, _ in http_sink.received)


def test_backend_info_names_the_flow_and_run_when_known(http_sink: HTTPSink) -> None:
    from statecore.context import reset_context, set_context

    token = set_context({"run_id": "run-42", "flow_name": "etl"})
    try:
        webhook_notifier(
            Task(name="load"), Running(), Failed("x"), webhook_url=http_sink.url("/ok")
        )
    finally:
        reset_context(token)
    [body] = http_sink.bodies()
    assert body["event"]["run_id"] == "run-42" and body["event"]["flow"] == "etl"
    fields = {f["title"]: f["value"] for f in attachment(body)["fields"]}
    assert fields == {"Message": "x", "Flow": "etl", "Run": "`run-42` (statecore show run-42)"}


def test_backend_info_off_leaves_out_the_run(http_sink: HTTPSink) -> None:
    state = Failed("x")
    state.run_id = "run-123"
    slack_notifier(
        Flow("f"), Running(), state, webhook_url=http_sink.url("/ok"), backend_info=False
    )
    fields = attachment(http_sink.bodies()[0])["fields"]
    assert [f["title"] for f in fields] == ["Message"]


def test_webhook_formatter_replaces_the_body(http_sink: HTTPSink) -> None:
    def formatter(obj: Any, old: State, new: State) -> dict[str, str]:
        return {"content": f"{obj.name}: {old.name} -> {new.name}"}

    webhook_notifier(
        Flow("f"), Running(), Success(), webhook_url=http_sink.url("/ok"), formatter=formatter
    )
    assert http_sink.bodies() == [{"content": "f: Running -> Success"}]


def test_webhook_secret_names_the_secret(
    http_sink: HTTPSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT__CONTEXT__SECRETS__TEAM_HOOK", http_sink.url("/ok/team"))
    slack_notifier(Flow("f"), Running(), Success(), webhook_secret="TEAM_HOOK")
    assert [path for path, _, _ in http_sink.received] == ["/ok/team"]


# -- failure isolation ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["closed", "silent", "500", "no-secret"])
def test_a_failing_notifier_changes_nothing_in_the_run(
    where: str,
    http_sink: HTTPSink,
    closed_port: int,
    silent_port: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    options: dict[str, Any] = {
        "closed": {"webhook_url": f"http://127.0.0.1:{closed_port}/{SLACK_SECRET_TOKEN}"},
        "silent": {"webhook_url": f"http://127.0.0.1:{silent_port}/{SLACK_SECRET_TOKEN}"},
        "500": {"webhook_url": http_sink.url(f"/fail/{SLACK_SECRET_TOKEN}")},
        "no-secret": {},
    }[where]
    notify = slack_notifier(timeout=0.5, **options)

    plain_store = SQLiteStore(tmp_path / "plain.db")
    plain = etl_flow().run(store=plain_store)

    db = tmp_path / "notified.db"
    store = SQLiteStore(db)
    with caplog.at_level(logging.WARNING, logger="statecore.notifications"):
        notified = etl_flow(notify, flow_handlers=(notify,)).run(store=store)

    assert type(notified) is type(plain) is Failed
    assert notified.message == plain.message
    # every state event is the plain run's; besides them the log holds the notifiers'
    # warnings, as lines of their tasks (the flow handler's as the run's own lines)
    events = run_events(store, str(notified.run_id))
    notes = [e for e in events if e[0] == "log" and "slack_notifier" in e[3]]

    # (task by task: extract and report are independent, their events interleave as their
    # threads finish, and the notifier's HTTP calls shift that)
    def per_task(found: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return sorted(found, key=lambda e: str(e[1]) if len(e) > 1 else "")

    assert per_task([e for e in events if e not in notes]) == per_task(
        run_events(plain_store, str(plain.run_id))
    )
    assert sorted((str(e[1]).split("-")[0], e[2]) for e in notes) == [
        ("None", "WARNING"),
        ("None", "WARNING"),
        ("extract", "WARNING"),
        ("extract", "WARNING"),
        ("load", "WARNING"),
        ("load", "WARNING"),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.name == "statecore.notifications"]
    # extract: Running, Success; load: Running, Failed; the flow: Running, Failed
    assert len(warnings) == 6
    assert all(w.startswith("slack_notifier: notification for ") for w in warnings)
    sent = sorted(w.split(" was not sent")[0].split(" for ")[1] for w in warnings)
    assert sent == [
        "flow 'etl' (Failed)",
        "flow 'etl' (Running)",
        "task 'extract' (Running)",
        "task 'extract' (Success)",
        "task 'load' (Failed)",
        "task 'load' (Running)",
    ]
    expected = {
        "closed": "could not be reached",
        "silent": "could not be reached",
        "500": "HTTP 500 Internal Server Error: internal trouble",
        "no-secret": 'secret "SLACK_WEBHOOK_URL" was not found',
    }[where]
    assert all(expected in w for w in warnings), warnings[0]
    assert not [w for w in warnings if SLACK_SECRET_TOKEN in w]
    store.close()
    assert SLACK_SECRET_TOKEN.encode() not in db.read_bytes()


def test_raise_errors_gives_prefect1s_failed_task_without_the_secret(
    http_sink: HTTPSink, tmp_path: Path
) -> None:
    notify = slack_notifier(
        webhook_url=http_sink.url(f"/fail/{SLACK_SECRET_TOKEN}"),
        only_states=[Success],
        raise_errors=True,
    )
    with pytest.raises(NotificationError, match="HTTP 500") as raised:
        notify(Flow("f"), Running(), Success())
    assert raised.value.__cause__ is None and raised.value.__context__ is None

    db = tmp_path / "runs.db"
    store = SQLiteStore(db)

    @task(state_handlers=[notify])
    def fine() -> int:
        return 1

    with Flow("strict") as flow:
        fine()
    state = flow.run(store=store)
    # the runner turns a raising handler into a Failed task, as Prefect 1 does
    assert isinstance(state, Failed)
    changes = [
        e for e in run_events(store, str(state.run_id)) if e[0] == "state" and e[1] == "fine-1"
    ]
    assert changes[-1][-1] == "Failed"
    store.close()
    assert SLACK_SECRET_TOKEN.encode() not in db.read_bytes()


def test_a_failure_is_also_written_to_the_task_logger_in_context(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    from statecore.context import reset_context, set_context

    lines: list[str] = []

    class Logger:
        def warning(self, msg: object, *args: object) -> None:
            lines.append(str(msg))

    token = set_context({"logger": Logger(), "run_id": "r1"})
    try:
        slack_notifier(
            Flow("f"), Running(), Failed(), webhook_url=f"http://127.0.0.1:{closed_port}/x"
        )
    finally:
        reset_context(token)
    assert len(lines) == 1 and lines[0].startswith("slack_notifier: notification for flow 'f'")


def test_flow_run_secrets_never_reach_the_database(
    http_sink: HTTPSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Handlers run on the driver's thread, with the run's secret lookup installed: the
    # webhook given in secrets= is found and posted to, and never written.
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    url = http_sink.url(f"/ok/services/{SLACK_SECRET_TOKEN}")
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    state = etl_flow(slack_notifier(only_states=[Failed])).run(
        store=store, secrets={"SLACK_WEBHOOK_URL": url}
    )
    assert isinstance(state, Failed)
    assert [attachment(b)["text"] for b in http_sink.bodies()] == ["load is now in a Failed state"]
    with Flow("f", state_handlers=[webhook_notifier(only_states=[Success])]) as flow_handler:
        task(lambda: 1, name="one")()
    assert flow_handler.run(store=store, secrets={"WEBHOOK_URL": url}).is_successful()
    assert len(http_sink.bodies()) == 2
    store.close()
    assert SLACK_SECRET_TOKEN.encode() not in db.read_bytes()


# -- e-mail over real SMTP --------------------------------------------------------------


def test_gmail_notifier_sends_to_a_real_smtp_server_in_a_flow(
    smtp_sink: SMTPSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMAIL_USERNAME", "ops@example.com")
    monkeypatch.setenv("EMAIL_PASSWORD", EMAIL_PASSWORD)
    notify = gmail_notifier(
        only_states=[Failed],
        smtp_server="127.0.0.1",
        smtp_port=smtp_sink.port,
        smtp_type="INSECURE",
    )
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    state = etl_flow(notify).run(store=store)
    assert isinstance(state, Failed)
    assert smtp_sink.mailbox.logins == [("ops@example.com", EMAIL_PASSWORD)]
    [(mail_from, rcpt_tos, content)] = smtp_sink.mailbox.messages
    assert mail_from == "ops@example.com" and rcpt_tos == ["ops@example.com"]
    text = content.decode()
    assert "Subject: State change notification for load: Failed" in text
    assert "load is now in a Failed state" in text
    assert "cannot load 3" in text
    assert "text/html" in text
    store.close()
    assert EMAIL_PASSWORD.encode() not in db.read_bytes()


def test_gmail_addresses_and_login_false(
    smtp_sink: SMTPSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMAIL_USERNAME", "ops@example.com")
    monkeypatch.delenv("EMAIL_PASSWORD", raising=False)
    gmail_notifier(
        Flow("<b>nightly</b>"),
        Running(),
        Success("all good"),
        smtp_server="127.0.0.1",
        smtp_port=smtp_sink.port,
        smtp_type="INSECURE",
        login=False,
        email_to="team@example.com",
        email_from="robot@example.com",
        raise_errors=True,
    )
    assert smtp_sink.mailbox.logins == []
    [(mail_from, rcpt_tos, content)] = smtp_sink.mailbox.messages
    assert (mail_from, rcpt_tos) == ("robot@example.com", ["team@example.com"])
    assert b"&lt;b&gt;nightly&lt;/b&gt;" in content  # the HTML part escapes names


def test_gmail_wrong_password_and_closed_port_are_warnings(
    smtp_sink: SMTPSink,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EMAIL_USERNAME", "ops@example.com")
    monkeypatch.setenv("EMAIL_PASSWORD", "wrong-" + EMAIL_PASSWORD)
    failed = Failed("x")
    with caplog.at_level(logging.WARNING, logger="statecore.notifications"):
        for port in (smtp_sink.port, closed_port):
            returned = gmail_notifier(
                Flow("f"),
                Running(),
                failed,
                smtp_server="127.0.0.1",
                smtp_port=port,
                smtp_type="INSECURE",
                timeout=2,
            )
            assert returned is failed
    warnings = [r.getMessage() for r in caplog.records if r.name == "statecore.notifications"]
    assert len(warnings) == 2
    assert "SMTPAuthenticationError" in warnings[0]
    assert "could not be reached" in warnings[1]
    assert not [w for w in warnings if EMAIL_PASSWORD in w]
    assert smtp_sink.mailbox.messages == []


@pytest.mark.parametrize("smtp_type", ["SSL", "STARTTLS"])
def test_gmail_over_tls_with_a_self_signed_certificate(
    smtp_type: str,
    self_signed: SelfSigned,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("EMAIL_USERNAME", "ops@example.com")
    monkeypatch.setenv("EMAIL_PASSWORD", EMAIL_PASSWORD)
    server_options: dict[str, Any] = (
        # implicit TLS: aiosmtpd cannot see that the wrapped socket is encrypted, so it
        # is told AUTH needs no STARTTLS here
        {"ssl_context": self_signed.server_context(), "auth_require_tls": False}
        if smtp_type == "SSL"
        else {"tls_context": self_signed.server_context(), "require_starttls": True}
    )
    with smtp_server(**server_options) as sink:
        options: dict[str, Any] = {
            "smtp_server": "127.0.0.1",
            "smtp_port": sink.port,
            "smtp_type": smtp_type,
            "timeout": 5,
        }
        with caplog.at_level(logging.WARNING, logger="statecore.notifications"):
            # the system's trust store does not know the certificate: refused, a warning
            gmail_notifier(Flow("f"), Running(), Failed("x"), **options)
        # (the server's own logger reports the failed handshake too: only ours counted)
        [warning] = [r.getMessage() for r in caplog.records if r.name.startswith("statecore")]
        assert "CERTIFICATE_VERIFY_FAILED" in warning
        assert sink.mailbox.messages == []

        trusting = gmail_notifier(ssl_context=self_signed.client_context(), raise_errors=True)
        trusting(Flow("f"), Running(), Failed("x"), **options)
        assert sink.mailbox.logins == [("ops@example.com", EMAIL_PASSWORD)]
        [(_, rcpt_tos, content)] = sink.mailbox.messages
        assert rcpt_tos == ["ops@example.com"] and b"f is now in a Failed state" in content


def test_gmail_defaults_are_prefect1s() -> None:
    options = gmail_notifier.options
    assert (options["smtp_server"], options["smtp_port"], options["smtp_type"]) == (
        "smtp.gmail.com",
        465,
        "SSL",
    )
    assert options["timeout"] == 10.0


def test_every_state_class_has_its_own_colour() -> None:
    import statecore.states as states_module
    from statecore.notifications.message import colour

    classes = [
        c for c in vars(states_module).values() if isinstance(c, type) and issubclass(c, State)
    ]
    assert len(classes) >= 17
    colours = {colour(c()) for c in classes}
    assert len(colours) == len(classes)


def test_prefect1_formatter_names_and_out_of_scope_snowflake() -> None:
    from statecore.notifications import (
        email_message_formatter,
        slack_message_formatter,
        snowflake_logger,
    )

    state = Failed("x")
    assert slack_message_formatter(Task(name="t"), state)["attachments"][0]["title"] == "Failed"
    text = email_message_formatter(Task(name="t"), state, "me@example.com")
    assert "To: me@example.com" in text and "t is now in a Failed state" in text
    with pytest.raises(NotImplementedError, match="webhook_notifier"):
        snowflake_logger(ignore_states=[Running])


def test_callback_factory() -> None:
    seen: list[str] = []
    handler = callback_factory(lambda obj, s: seen.append(f"{obj.name}:{s.name}"), Failed.is_failed)
    assert handler(Flow("f"), Running(), Success()).name == "Success"
    assert handler(Flow("f"), Running(), Failed()).name == "Failed"
    assert seen == ["f:Failed"]

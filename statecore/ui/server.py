"""The ``statecore ui`` web server: the standard library's ThreadingHTTPServer.

Routes (all JSON but ``/`` and ``/static/...``):

* ``GET /api/runs?flow=&state=&since=&until=&q=&before=&limit=``: a page of runs.
* ``GET /api/flows/<flow>/history?last=N``: durations and outcomes of its last runs.
* ``GET /api/runs/<id>?until=SEQ``: the run's document (as of event SEQ).
* ``GET /api/runs/<id>/head``: the log's head and the flow's state, for live polling.
* ``GET /api/runs/<id>/task?key=K&index=I&until=SEQ``: one task's details.
* ``GET /api/runs/<id>/children?key=K&until=SEQ``: a mapped task's children's attempts,
  for a document that left them out (``children_lazy``).
* ``POST /api/runs/<id>/cancel``: :meth:`Store.request_cancel`, as ``statecore cancel``.

Errors are JSON ``{"error": ...}`` with a 4xx status; nothing is ever answered with a
traceback. A server bound to another interface than loopback requires ``?token=T``
on every request (the command prints the URL with it).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from statecore.backends.base import Store
from statecore.cli.times import parse_time
from statecore.errors import CorruptEvent, InvalidRunId, RunNotFound, StatecoreError
from statecore.fold import RunView
from statecore.ui.model import (
    children_attempts,
    history,
    load_view,
    run_document,
    runs_page,
    task_details,
)

__all__ = ["UIServer", "make_server"]

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_MAX_LIMIT = 500


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def static_text(name: str) -> str:
    """One of the page's shipped assets."""
    return resources.files("statecore.ui").joinpath("static", name).read_text("utf-8")


class _Views:
    """A few replayed views, keyed by run, head and cut, so polling does not refold."""

    def __init__(self, store: Store, size: int = 4) -> None:
        self.store = store
        self.size = size
        self.lock = threading.Lock()
        self.cache: OrderedDict[tuple[str, int, int | None], Any] = OrderedDict()

    def get(self, run_id: str, until: int | None) -> tuple[RunView, dict[str, Any] | None]:
        head = self.store.head(run_id)
        if head == 0:
            raise RunNotFound(f"no run {run_id!r} in store {self.store.url}")
        cut = None if until is None or until >= head else until
        key = (run_id, head, cut)
        with self.lock:
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]  # type: ignore[no-any-return]
        found = load_view(self.store, run_id, cut)
        with self.lock:
            self.cache[key] = found
            while len(self.cache) > self.size:
                self.cache.popitem(last=False)
        return found


class UIServer(ThreadingHTTPServer):
    """The server: a store, an optional token, and the views it has folded."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: Store, token: str | None) -> None:
        super().__init__(address, _Handler)
        self.store = store
        self.token = token
        self.views = _Views(store)
        self.docs: OrderedDict[tuple[str, int, int | None], bytes] = OrderedDict()
        self.docs_lock = threading.Lock()

    @property
    def url(self) -> str:
        """The page's URL (with the token when one is required)."""
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        shown = f"[{host}]" if ":" in str(host) else str(host)
        suffix = f"?token={self.token}" if self.token else ""
        return f"http://{shown}:{port}/{suffix}"


def make_server(store: Store, *, host: str = "127.0.0.1", port: int = 0) -> UIServer:
    """A server for ``store`` on ``host:port`` (0: any free port); not yet serving.

    Any host but loopback gets a random token the URL must carry.
    """
    token = None if host in ("127.0.0.1", "localhost", "::1") else secrets.token_urlsafe(16)
    return UIServer((host, port), store, token)


def _int(params: dict[str, list[str]], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if not raw or raw[0] == "":
        return default
    try:
        value = int(raw[0])
    except ValueError:
        raise _BadRequest(400, f"{name}={raw[0]!r} is not a whole number") from None
    if value < 0:
        raise _BadRequest(400, f"{name} must not be negative, got {value}")
    return value


def _text(params: dict[str, list[str]], name: str) -> str | None:
    raw = params.get(name)
    return raw[0] if raw and raw[0] != "" else None


def _time(params: dict[str, list[str]], name: str) -> int | None:
    raw = _text(params, name)
    if raw is None:
        return None
    if raw.isdigit():
        return int(raw)
    try:
        return parse_time(raw)
    except Exception as exc:
        raise _BadRequest(400, f"{name}={raw!r}: {exc}") from None


class _Handler(BaseHTTPRequestHandler):
    server: UIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal shows the URL, not every poll

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        body = json.dumps(value, separators=(",", ":"), default=repr).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def _dispatch(self, route: Callable[[list[str], dict[str, list[str]]], None]) -> None:
        try:
            parts = urlsplit(self.path)
            params = parse_qs(parts.query, keep_blank_values=True, max_num_fields=50)
            if self.server.token is not None:
                given = (params.get("token") or [""])[0]
                if not secrets.compare_digest(given, self.server.token):
                    raise _BadRequest(403, "this server needs ?token=... (printed at start)")
            segments = [unquote(s, errors="strict") for s in parts.path.split("/")[1:]]
            route(segments, params)
        except _BadRequest as exc:
            self._json(exc.status, {"error": str(exc)})
        except (RunNotFound, KeyError) as exc:
            self._json(404, {"error": exc.args[0] if exc.args else str(exc)})
        except (InvalidRunId, CorruptEvent, ValueError, UnicodeError) as exc:
            self._json(400, {"error": str(exc)})
        except StatecoreError as exc:
            self._json(503, {"error": f"{type(exc).__name__}: {exc}"})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # never a traceback page
            self._json(500, {"error": f"internal error: {type(exc).__name__}"})

    def _get(self, seg: list[str], params: dict[str, list[str]]) -> None:
        if seg in ([""], ["index.html"]):
            self._send(200, static_text("index.html").encode(), _STATIC["index.html"])
            return
        if len(seg) == 2 and seg[0] == "static" and seg[1] in _STATIC:
            self._send(200, static_text(seg[1]).encode(), _STATIC[seg[1]])
            return
        if seg[:1] != ["api"]:
            raise _BadRequest(404, f"no page {self.path.split('?')[0]!r}")
        store = self.server.store
        if seg == ["api", "runs"]:
            limit = _int(params, "limit", 50) or 50
            page = runs_page(
                store,
                flow=_text(params, "flow"),
                state=_text(params, "state"),
                since=_time(params, "since"),
                until=_time(params, "until"),
                query=_text(params, "q"),
                before=_int(params, "before"),
                limit=min(limit, _MAX_LIMIT),
            )
            self._json(200, page)
        elif len(seg) == 4 and seg[1] == "flows" and seg[3] == "history" and seg[2]:
            last = min(_int(params, "last", 30) or 30, 200)
            self._json(200, history(store, seg[2], last=last))
        elif len(seg) == 3 and seg[1] == "runs":
            self._run(seg[2], params)
        elif len(seg) == 4 and seg[1] == "runs" and seg[3] == "head":
            head = store.head(_run_id(seg[2]))
            if head == 0:
                raise RunNotFound(f"no run {seg[2]!r} in store {store.url}")
            meta = store.get_run(seg[2])
            self._json(200, {"head": head, "state": meta.state if meta else None})
        elif len(seg) == 4 and seg[1] == "runs" and seg[3] == "children":
            key = _text(params, "key")
            if key is None:
                raise _BadRequest(400, "key= is required")
            view, _ = self.server.views.get(_run_id(seg[2]), _until(params))
            self._json(200, children_attempts(view, key))
        elif len(seg) == 4 and seg[1] == "runs" and seg[3] == "task":
            key = _text(params, "key")
            if key is None:
                raise _BadRequest(400, "key= is required")
            view, _ = self.server.views.get(_run_id(seg[2]), _until(params))
            self._json(200, task_details(view, key, _index(params)))
        else:
            raise _BadRequest(404, f"no endpoint {self.path.split('?')[0]!r}")

    def _run(self, run_id: str, params: dict[str, list[str]]) -> None:
        run_id = _run_id(run_id)
        until = _until(params)
        head = self.server.store.head(run_id)
        key = (run_id, head, None if until is None or until >= head else until)
        with self.server.docs_lock:
            cached = self.server.docs.get(key)
        if cached is None:
            view, damage = self.server.views.get(run_id, until)
            doc = run_document(view, damage)
            doc["log_head"] = head
            cached = json.dumps(doc, separators=(",", ":"), default=repr).encode("utf-8")
            with self.server.docs_lock:
                self.server.docs[key] = cached
                while len(self.server.docs) > 4:
                    self.server.docs.popitem(last=False)
        self._send(200, cached, "application/json; charset=utf-8")

    def _post(self, seg: list[str], params: dict[str, list[str]]) -> None:
        length = _int({"n": [self.headers.get("Content-Length", "0")]}, "n", 0) or 0
        if length > 65536:
            raise _BadRequest(413, "request body too large")
        self.rfile.read(length)
        if len(seg) == 4 and seg[:2] == ["api", "runs"] and seg[3] == "cancel":
            self._cancel(_run_id(seg[2]))
        else:
            raise _BadRequest(404, f"no endpoint {self.path.split('?')[0]!r}")

    def _cancel(self, run_id: str) -> None:
        # the same steps as ``statecore cancel``: a finished run is left alone
        store = self.server.store
        view, _ = self.server.views.get(run_id, None)
        if view.finished():
            self._json(409, {"error": f"run {run_id} already finished ({view.flow_state.name})"})
            return
        now = time.time_ns()
        store.request_cancel(run_id, now=now)
        lease = store.get_lease(run_id)
        driven = lease is not None and lease.expires > now
        self._json(
            200,
            {
                "requested": True,
                "driven_by": lease.owner if driven and lease is not None else None,
                "message": "cancel requested"
                + ("" if driven else "; no process drives it now, it ends when resumed"),
            },
        )


def _run_id(raw: str) -> str:
    if not raw or len(raw) > 1000:
        raise _BadRequest(400, "a run id must be 1 to 1000 characters")
    return raw


def _until(params: dict[str, list[str]]) -> int | None:
    until = _int(params, "until")
    if until == 0:
        raise _BadRequest(400, "until must be a sequence number >= 1")
    return until


def _index(params: dict[str, list[str]]) -> int | None:
    return _int(params, "index")

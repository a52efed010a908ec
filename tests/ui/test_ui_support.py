"""Shared by the ui tests (no tests of its own): a store with runs and a served ui."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from statecore import Flow, context, task
from statecore.backends import SQLiteStore
from statecore.backends.base import Store
from statecore.runners.loading import load_flow
from statecore.ui.server import UIServer, make_server

from ..conftest import BROWSER_WAIT

FLOWS = Path(__file__).parent.parent / "flows" / "demo.py"
HOSTILE = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"


@task(name=HOSTILE)
def hostile_task() -> int:
    context["logger"].warning("log line " + HOSTILE)
    raise ValueError("message " + HOSTILE)


def hostile_flow() -> Flow:
    with Flow("hostile" + HOSTILE) as flow:
        hostile_task()
    return flow


def fill(store: Store) -> None:
    """Three runs: squares (ok), mixed (retries, a map, a crash, a LOOP), hostile."""
    load_flow(f"{FLOWS}:ok").run(store=store, run_id="ok-1")
    load_flow(f"{FLOWS}:ok").run({"n": 5}, store=store, run_id="ok-2")
    load_flow(f"{FLOWS}:mixed").run(store=store, run_id="mixed")
    hostile_flow().run(store=store, run_id="hostile")


@contextmanager
def serving(store: Store, host: str = "127.0.0.1") -> Iterator[UIServer]:
    server = make_server(store, host=host, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def base_url(server: UIServer) -> str:
    port = server.server_address[1]
    return f"http://127.0.0.1:{port}"


def get(server: UIServer, path: str, method: str = "GET") -> tuple[int, Any, str]:
    """Status, decoded JSON (or None) and content type of one request."""
    req = urllib.request.Request(
        base_url(server) + path, method=method, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, body, ctype = resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        status, body, ctype = exc.code, exc.read(), exc.headers["Content-Type"]
    try:
        return status, json.loads(body), ctype
    except ValueError:
        return status, body.decode("utf-8", "replace"), ctype


def sqlite_store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "runs.db")


def wait(driver: Any, condition: Any, message: str = "") -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, BROWSER_WAIT, poll_frequency=0.1).until(condition, message)

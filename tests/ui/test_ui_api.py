"""The ``statecore ui`` server without a browser: every endpoint, bad input, escaping.

A real SQLite store with real runs (a success, a run with retries, a map, a crash and
a LOOP, and a run whose task name, message and log line are HTML) is served on a free
loopback port; requests go over HTTP. Each answer must be JSON with a 4xx status for
bad input, never a traceback.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statecore.backends import SQLiteStore
from statecore.runners.local import replay
from statecore.ui.model import ATTEMPT_FIELDS
from statecore.ui.server import UIServer

from .test_ui_support import HOSTILE, fill, get, serving


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UIServer, SQLiteStore]]:
    path = tmp_path_factory.mktemp("ui") / "runs.db"
    store = SQLiteStore(path)
    fill(store)
    with serving(store) as server:
        yield server, store
    store.close()


def test_the_page_and_its_assets_are_served_with_no_external_reference(
    served: tuple[UIServer, SQLiteStore],
) -> None:
    server, _ = served
    status, page, ctype = get(server, "/")
    assert status == 200 and ctype.startswith("text/html")
    assert "static/app.js" in page and "http" not in page.replace('lang="en"', "")
    for asset, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, text, ctype = get(server, f"/static/{asset}")
        assert status == 200 and ctype.startswith(kind) and len(text) > 100
        assert "https://" not in text and "http://" not in text.replace("http://www.w3.org", "")


def test_runs_lists_every_run_newest_first_with_its_fields(
    served: tuple[UIServer, SQLiteStore],
) -> None:
    server, store = served
    status, page, _ = get(server, "/api/runs")
    assert status == 200
    ids = [r["run_id"] for r in page["runs"]]
    assert ids == [m.run_id for m in store.list_runs()]
    ok2 = next(r for r in page["runs"] if r["run_id"] == "ok-2")
    assert ok2["flow"] == "squares" and ok2["state"] == "Success"
    assert ok2["parameters"]["n"] == 5 and ok2["trigger"] == "ad hoc"
    assert ok2["duration"] == store.get_run("ok-2").ended - store.get_run("ok-2").started


def test_runs_filter_by_flow_state_search_and_time(served: tuple[UIServer, SQLiteStore]) -> None:
    server, store = served
    _, page, _ = get(server, "/api/runs?flow=squares")
    assert {r["run_id"] for r in page["runs"]} == {"ok-1", "ok-2"}
    _, page, _ = get(server, "/api/runs?state=Failed")
    assert {r["run_id"] for r in page["runs"]} == {"mixed", "hostile"}
    _, page, _ = get(server, "/api/runs?q=MIX")
    assert [r["run_id"] for r in page["runs"]] == ["mixed"]
    started = store.get_run("mixed").started
    _, page, _ = get(server, f"/api/runs?since={started}")
    assert "ok-1" not in {r["run_id"] for r in page["runs"]}
    _, page, _ = get(server, "/api/runs?since=2262-01-01T00:00:00")
    assert page["runs"] == []


def test_runs_paginate_backwards_without_gaps_or_repeats(
    served: tuple[UIServer, SQLiteStore],
) -> None:
    server, store = served
    seen: list[str] = []
    path = "/api/runs?limit=1"
    for _ in range(10):
        status, page, _ = get(server, path)
        assert status == 200 and len(page["runs"]) <= 1
        seen += [r["run_id"] for r in page["runs"]]
        if page["next_before"] is None:
            break
        path = f"/api/runs?limit=1&before={page['next_before']}"
    assert seen == [m.run_id for m in store.list_runs()]


def test_a_run_document_has_one_attempt_row_per_logged_attempt(
    served: tuple[UIServer, SQLiteStore],
) -> None:
    server, store = served
    status, doc, _ = get(server, "/api/runs/mixed")
    assert status == 200
    view = replay(store, "mixed")
    running = [e for e in view.timeline() if e.task and e.new == "Running" and e.prev != "Looped"]
    assert len(doc["attempts"]) == len(running)
    assert doc["attempt_fields"] == ATTEMPT_FIELDS
    flaky = doc["tasks"].index(next(t for t in doc["tasks"] if t["key"] == "flaky-1"))
    rows = [a for a in doc["attempts"] if a[0] == flaky]
    assert [doc["states"][a[5]] for a in rows] == ["Retrying", "Retrying", "Success"]
    ends = [e for e in view.timeline() if e.task == "flaky-1" and e.new != "Running"]
    for row, end in zip(rows, ends, strict=True):
        assert row[4] - row[3] == end.ended_at - end.started_at  # the logged durations
    halve = next(t for t in doc["tasks"] if t["key"] == "halve-1")
    assert halve["children"] == 3 and halve["child_states"]["Skipped"] == 1
    assert doc["state"] == "Failed" and doc["rule"] == view.flow_state.message
    assert doc["head"] == view.head and doc["sessions"][0]["why"] == "run"
    assert doc["damage"] is None


def test_time_travel_returns_the_run_as_of_an_event(served: tuple[UIServer, SQLiteStore]) -> None:
    server, store = served
    status, early, _ = get(server, "/api/runs/mixed?until=3")
    assert status == 200 and early["head"] == 3 and early["log_head"] == store.head("mixed")
    assert early["state"] == replay(store, "mixed", until=3).flow_state.name
    assert not early["finished"]


def test_task_details_give_attempts_traceback_and_logs(
    served: tuple[UIServer, SQLiteStore],
) -> None:
    server, _ = served
    status, d, _ = get(server, "/api/runs/mixed/task?key=flaky-1")
    assert status == 200 and len(d["attempts"]) == 3 and d["state"] == "Success"
    status, d, _ = get(server, "/api/runs/mixed/task?key=crash-1")
    assert status == 200 and d["state"] == "Failed"
    assert "Traceback" in d["traceback"]
    status, d, _ = get(server, "/api/runs/mixed/task?key=halve-1&index=1")
    assert status == 200 and d["state"] == "Skipped" and d["index"] == 1


def test_history_per_flow_and_task(served: tuple[UIServer, SQLiteStore]) -> None:
    server, _ = served
    status, h, _ = get(server, "/api/flows/squares/history?last=10")
    assert status == 200 and [r["run_id"] for r in h["runs"]] == ["ok-1", "ok-2"]
    assert h["failure_rate"] == 0 and h["median"] is not None
    total = next(t for t in h["tasks"] if t["name"] == "total")
    assert len(total["points"]) == 2 and total["failure_rate"] == 0
    assert total["p95"] >= total["median"]


def test_head_for_live_polling(served: tuple[UIServer, SQLiteStore]) -> None:
    server, store = served
    status, h, _ = get(server, "/api/runs/ok-1/head")
    assert status == 200 and h == {"head": store.head("ok-1"), "state": "Success"}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/runs/nope", 404),
        ("/api/runs/nope/head", 404),
        ("/api/runs/nope/task?key=x", 404),
        ("/api/runs/mixed/task?key=nope", 404),
        ("/api/runs/mixed/task?key=halve-1&index=99", 404),
        ("/api/runs/mixed/task", 400),
        ("/api/runs/mixed?until=0", 400),
        ("/api/runs/mixed?until=-1", 400),
        ("/api/runs/mixed?until=abc", 400),
        ("/api/runs/mixed/task?key=flaky-1&index=x", 400),
        ("/api/runs?limit=zz", 400),
        ("/api/runs?since=yesterday-ish", 400),
        ("/api/runs/%FF%FE", 400),
        ("/api/runs/" + "x" * 2000, 400),
        ("/api/runs/%3Cscript%3E", 404),
        ("/api/nothing", 404),
        ("/etc/passwd", 404),
        ("/static/../server.py", 404),
        ("/static/%2e%2e%2fserver.py", 404),
    ],
)
def test_bad_input_is_a_clear_json_4xx(
    served: tuple[UIServer, SQLiteStore], path: str, status: int
) -> None:
    server, _ = served
    got, body, ctype = get(server, path)
    assert got == status, body
    assert ctype.startswith("application/json") and isinstance(body, dict) and body["error"]
    assert "Traceback" not in body["error"]


def test_html_in_names_messages_and_logs_is_data_not_markup(
    served: tuple[UIServer, SQLiteStore],
) -> None:
    server, _ = served
    _, doc, _ = get(server, "/api/runs/hostile")
    assert doc["tasks"][0]["name"] == HOSTILE  # carried as data, the page writes textContent
    assert any(HOSTILE in line["message"] for line in doc["logs"])
    # the page itself never turns data into markup
    _, js, _ = get(server, "/static/app.js")
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js


def test_a_damaged_log_shows_what_is_intact_and_names_the_first_bad_event(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    fill_one(store)
    head = store.head("ok-1")
    store.close()
    bad = head - 2
    with sqlite3.connect(path) as db:
        table = _events_table(db)
        db.execute(
            f"UPDATE {table} SET payload = x'c1c1c1' WHERE run_id = ? AND seq = ?", ("ok-1", bad)
        )
    store = SQLiteStore(path)
    with serving(store) as server:
        status, doc, _ = get(server, "/api/runs/ok-1")
    store.close()
    assert status == 200
    assert doc["damage"]["first_bad_seq"] == bad and doc["head"] == bad - 1


def fill_one(store: SQLiteStore) -> None:
    from statecore.runners.loading import load_flow

    from .test_ui_support import FLOWS

    load_flow(f"{FLOWS}:ok").run(store=store, run_id="ok-1")


def _events_table(db: sqlite3.Connection) -> str:
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for name in names:
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({name})")]
        if "payload" in cols and "seq" in cols:
            return str(name)
    raise AssertionError(f"no events table in {names}")


def test_cancel_asks_the_store_and_refuses_a_finished_run(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    fill_one(store)
    from statecore.runners.loading import load_flow

    from .test_ui_support import FLOWS

    load_flow(f"{FLOWS}:paused").run(store=store, run_id="gate")
    with serving(store) as server:
        status, body, _ = get(server, "/api/runs/ok-1/cancel", method="POST")
        assert status == 409 and "already finished" in body["error"]
        status, body, _ = get(server, "/api/runs/gate/cancel", method="POST")
        assert status == 200 and body["requested"]
        status, _, _ = get(server, "/api/runs/nope/cancel", method="POST")
        assert status == 404
    assert store.cancel_requested("gate", now=store.get_run("gate").started + 1)
    store.close()


def test_another_interface_needs_the_token(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    fill_one(store)
    with serving(store, host="0.0.0.0") as server:
        assert server.token
        status, body, _ = get(server, "/api/runs")
        assert status == 403
        status, body, _ = get(server, f"/api/runs?token={server.token}")
        assert status == 200 and body["runs"]
        assert f"token={server.token}" in server.url
    store.close()


def test_a_big_map_s_children_come_on_demand_and_complete_the_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past LAZY_CHILDREN mapped children, the document holds the tasks' attempts only
    (one fold that keeps them) and /children gives a map's children's attempts: together
    they are the document a small run gets whole, row for row."""
    import statecore.ui.model as model

    store = SQLiteStore(tmp_path / "runs.db")
    fill(store)
    with serving(store) as server:
        _, whole, _ = get(server, "/api/runs/mixed")
    monkeypatch.setattr(model, "LAZY_CHILDREN", 2)
    with serving(store) as server:
        status, doc, _ = get(server, "/api/runs/mixed")
        assert status == 200
        halve = next(i for i, t in enumerate(doc["tasks"]) if t["key"] == "halve-1")
        assert doc["tasks"][halve]["children_lazy"] is True
        assert not [a for a in doc["attempts"] if a[1] >= 0]  # no child's attempt
        status, kids, _ = get(server, "/api/runs/mixed/children?key=halve-1")
        assert status == 200 and kids["key"] == "halve-1"
        status, missing, _ = get(server, "/api/runs/mixed/children?key=nope")
        assert status == 404 and "nope" in missing["error"]
        status, bad, _ = get(server, "/api/runs/mixed/children")
        assert status == 400 and "key=" in bad["error"]
    store.close()

    def named(d: dict[str, Any], rows: list[list[Any]], by_code: bool) -> list[tuple[Any, ...]]:
        return sorted(
            (r[0], r[1], r[2], r[3], r[4], d["states"][r[5]] if by_code else r[5], r[6])
            for r in rows
        )

    merged = named(doc, doc["attempts"], True) + named(doc, kids["attempts"], False)
    assert sorted(merged) == named(whole, whole["attempts"], True)
    assert all(not t["children_lazy"] for t in whole["tasks"])

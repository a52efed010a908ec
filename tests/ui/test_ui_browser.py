"""The ``statecore ui`` page in a real browser: Selenium driving Debian's headless Chromium.

The server runs in this process on a free loopback port over a real SQLite store;
every wait is a WebDriverWait on a condition, never a timed assertion. Screenshots go
to ``$STATECORE_TEST_ARTIFACTS`` (default: the test's temporary directory). Under
``CI=true`` a missing browser fails instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statecore.backends import SQLiteStore
from statecore.runners.local import replay
from statecore.ui.server import UIServer

from ..conftest import BROWSER_WAIT
from .test_ui_support import HOSTILE, base_url, fill, serving, wait


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("STATECORE_TEST_ARTIFACTS")
    path = Path(root) / "ui" if root else tmp_path_factory.mktemp("ui-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UIServer, SQLiteStore]]:
    store = SQLiteStore(tmp_path_factory.mktemp("ui-browser") / "runs.db")
    fill(store)
    with serving(store) as server:
        yield server, store
    store.close()


def ready(driver: Any, page: str) -> None:
    wait(
        driver,
        lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == page,
        f"page {page} never ready",
    )


def open_page(driver: Any, server: UIServer, fragment: str, page: str) -> None:
    driver.get(base_url(server) + "/#" + fragment)
    driver.refresh()  # a hash change alone would not reload a page already open
    ready(driver, page)


def test_runs_list_filters_by_state_flow_and_search(
    browser: Any, served: tuple[UIServer, SQLiteStore], artifacts: Path
) -> None:
    server, store = served
    open_page(browser, server, "/", "runs")
    rows = browser.find_elements("css selector", "#runs tr.run")
    assert [r.get_attribute("data-run") for r in rows] == [m.run_id for m in store.list_runs()]
    browser.save_screenshot(str(artifacts / "runs.png"))
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "f-state")).select_by_value("Failed")
    wait(
        browser,
        lambda d: (
            {r.get_attribute("data-run") for r in d.find_elements("css selector", "#runs tr.run")}
            == {"mixed", "hostile"}
            and d.find_element("tag name", "body").get_attribute("data-ready") == "runs"
        ),
    )
    Select(browser.find_element("id", "f-state")).select_by_value("")
    ready(browser, "runs")
    field = browser.find_element("id", "f-flow")
    field.clear()
    field.send_keys("squares\n")
    wait(
        browser,
        lambda d: (
            {r.get_attribute("data-run") for r in d.find_elements("css selector", "#runs tr.run")}
            == {"ok-1", "ok-2"}
        ),
    )
    browser.save_screenshot(str(artifacts / "runs-filtered.png"))


def test_a_runs_gantt_has_one_bar_per_attempt_with_the_logged_durations(
    browser: Any, served: tuple[UIServer, SQLiteStore], artifacts: Path
) -> None:
    server, store = served
    open_page(browser, server, "/run/mixed", "run")
    view = replay(store, "mixed")
    # from the log: an attempt runs from its first measured start (a LOOP's iterations
    # are one attempt) to the measured end of the event that closes it
    ends: dict[Any, int] = {}
    numbers: dict[Any, int] = {}
    first: dict[Any, int | None] = {}
    for e in view.timeline():
        if not e.task:
            continue
        entity = (e.task, e.index)
        if e.new == "Running" and e.prev != "Looped":
            numbers[entity] = numbers.get(entity, 0) + 1
            first[entity] = None
        elif e.new != "Running" and entity in first:
            if first[entity] is None:
                first[entity] = e.started_at
            if e.new != "Looped":
                start = first.pop(entity)
                assert start is not None and e.ended_at is not None
                ends[(*entity, numbers[entity])] = e.ended_at - start
    browser.find_element("id", "expand-all").click()
    wait(browser, lambda d: len(d.find_elements("css selector", ".grow.child")) == 3)
    bars = browser.find_elements("css selector", ".attempt")
    assert len(bars) == sum(numbers.values())
    got = {}
    for bar in bars:
        row = bar.find_element("xpath", "./ancestor::div[contains(@class,'grow')]")
        index = row.get_attribute("data-index")
        got[
            (
                row.get_attribute("data-task"),
                int(index) if index else None,
                int(bar.get_attribute("data-attempt")),
            )
        ] = int(bar.get_attribute("data-duration"))
    assert got == ends
    browser.save_screenshot(str(artifacts / "run-gantt.png"))


def test_a_map_collapses_and_expands_with_counts_per_state(
    browser: Any, served: tuple[UIServer, SQLiteStore]
) -> None:
    server, _ = served
    open_page(browser, server, "/run/mixed", "run")
    browser.find_element("id", "collapse-all").click()
    wait(browser, lambda d: not d.find_elements("css selector", ".grow.child"))
    label = browser.find_element("css selector", ".grow[data-task='halve-1'] .label")
    assert "1 Skipped" in label.text and "2 Success" in label.text
    label.click()
    wait(
        browser,
        lambda d: (
            [
                r.get_attribute("data-index")
                for r in d.find_elements("css selector", ".grow.child[data-task='halve-1']")
            ]
            == ["0", "1", "2"]
        ),
    )
    browser.find_element("css selector", ".grow[data-task='halve-1'] .label").click()
    wait(browser, lambda d: not d.find_elements("css selector", ".grow.child"))


def test_a_traceback_opens_from_a_failed_task(
    browser: Any, served: tuple[UIServer, SQLiteStore], artifacts: Path
) -> None:
    server, _ = served
    open_page(browser, server, "/run/mixed", "run")
    browser.find_element("css selector", ".grow[data-task='crash-1'] .label").click()
    tb = wait(browser, lambda d: d.find_elements("id", "traceback"))[0]
    assert not tb.find_element("tag name", "pre").is_displayed()
    tb.find_element("tag name", "summary").click()
    wait(browser, lambda d: d.find_element("css selector", "#traceback pre").is_displayed())
    assert "Traceback" in browser.find_element("css selector", "#traceback pre").text
    browser.save_screenshot(str(artifacts / "run-traceback.png"))


def test_html_in_a_task_name_and_a_log_line_is_shown_as_text(
    browser: Any, served: tuple[UIServer, SQLiteStore], artifacts: Path
) -> None:
    server, _ = served
    open_page(browser, server, "/run/hostile", "run")
    assert browser.execute_script("return window.pwned === undefined")
    assert not browser.find_elements("css selector", "#app script, #app img")
    assert HOSTILE in browser.find_element("css selector", ".grow .label").text
    assert any(HOSTILE in c.text for c in browser.find_elements("css selector", "#logs td.msg"))
    browser.find_element("css selector", ".grow .label").click()
    wait(browser, lambda d: d.find_elements("id", "details-title"))
    assert browser.execute_script("return window.pwned === undefined")
    open_page(browser, server, "/", "runs")
    assert browser.execute_script("return window.pwned === undefined")
    browser.save_screenshot(str(artifacts / "hostile.png"))


def test_time_travel_shows_an_earlier_state(
    browser: Any, served: tuple[UIServer, SQLiteStore], artifacts: Path
) -> None:
    server, store = served
    open_page(browser, server, "/run/mixed", "run")
    assert browser.find_element("tag name", "body").get_attribute("data-flow-state") == "Failed"
    slider = browser.find_element("id", "travel")
    browser.execute_script(
        "arguments[0].value = 3; arguments[0].dispatchEvent(new Event('change'));", slider
    )
    wait(
        browser,
        lambda d: (
            d.find_element("tag name", "body").get_attribute("data-head") == "3"
            and d.find_element("tag name", "body").get_attribute("data-ready") == "run"
        ),
    )
    assert (
        browser.find_element("tag name", "body").get_attribute("data-flow-state")
        == replay(store, "mixed", until=3).flow_state.name
    )
    assert "as of event 3" in browser.find_element("id", "travel-label").text
    browser.save_screenshot(str(artifacts / "time-travel.png"))


LIVE_FLOW = """
import os, time
from pathlib import Path
from statecore import Flow, task

GATE = Path(os.environ["UI_TEST_GATE"])

@task
def step(x: int) -> int:
    # each step waits for its own go-file, so the test decides when the log grows
    while not (GATE / f"go-{x}").exists():
        time.sleep(0.05)
    return x + 1

with Flow("live") as flow:
    step(step(step(0)))
"""


def test_the_live_page_advances_while_a_subprocess_runs_a_flow(
    browser: Any, tmp_path: Path, artifacts: Path
) -> None:
    db = tmp_path / "live.db"
    (tmp_path / "live_flow.py").write_text(LIVE_FLOW, encoding="utf-8")
    store = SQLiteStore(db)
    env = {**os.environ, "UI_TEST_GATE": str(tmp_path)}
    cmd = [sys.executable, "-m", "statecore", "run", f"{tmp_path / 'live_flow.py'}:flow"]
    cmd += ["--run-id", "live", "--store", f"sqlite:///{db}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    body = lambda d: d.find_element("tag name", "body")  # noqa: E731
    try:
        with serving(store) as server:
            wait(browser, lambda _: store.head("live") > 0 or proc.poll() is not None)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            browser.get(base_url(server) + "/#/run/live")
            browser.refresh()
            ready(browser, "run")
            assert body(browser).get_attribute("data-flow-state") == "Running"
            first = int(body(browser).get_attribute("data-head"))
            (tmp_path / "go-0").touch()
            wait(browser, lambda d: int(body(d).get_attribute("data-head") or 0) > first)
            wait(browser, lambda d: len(d.find_elements("css selector", ".attempt")) >= 2)
            browser.save_screenshot(str(artifacts / "live-running.png"))
            (tmp_path / "go-1").touch()
            (tmp_path / "go-2").touch()
            assert proc.wait(timeout=BROWSER_WAIT * 2) == 0
            final = str(store.head("live"))
            wait(browser, lambda d: body(d).get_attribute("data-head") == final)
            wait(browser, lambda d: body(d).get_attribute("data-flow-state") == "Success")
            browser.save_screenshot(str(artifacts / "live-done.png"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        store.close()


BIG = 100_000


@pytest.fixture(scope="module")
def big_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UIServer, SQLiteStore]]:
    """A real run of a 100,000-child map on SQLite (about 5 s here, 200,008 events)."""
    from statecore import Flow, task

    @task
    def items(n: int) -> list[int]:
        return list(range(n))

    @task
    def inc(x: int) -> int:
        return x + 1

    with Flow("big") as flow:
        inc.map(items(BIG))
    store = SQLiteStore(tmp_path_factory.mktemp("ui-big") / "runs.db")
    assert flow.run(store=store, run_id="big").is_successful()
    with serving(store) as server:
        yield server, store
    store.close()


def test_a_100000_task_runs_page_loads_and_responds(
    browser: Any, big_served: tuple[UIServer, SQLiteStore], artifacts: Path
) -> None:
    server, _ = big_served
    open_page(browser, server, "/run/big", "run")
    body = browser.find_element("tag name", "body")
    assert body.get_attribute("data-flow-state") == "Success"
    # the document holds the tasks' attempts; the 100,000 children's come when the map
    # opens (statecore.ui.model.LAZY_CHILDREN)
    assert body.get_attribute("data-attempt-count") == "1"
    # collapsed by default: one row per task, the map's counts on its label
    assert not browser.find_elements("css selector", ".grow.child")
    label = browser.find_element("css selector", ".grow[data-task='inc-1'] .label")
    assert f"{BIG} Success" in label.text
    browser.save_screenshot(str(artifacts / "big-collapsed.png"))
    # expand the map: the rows are drawn as they scroll into view, to the last child
    label.click()
    wait(browser, lambda d: d.find_elements("css selector", ".grow.child[data-index='0']"))
    assert body.get_attribute("data-attempt-count") == str(BIG + 1)
    gantt = browser.find_element("id", "gantt")
    browser.execute_script(
        "arguments[0].scrollTop = arguments[0].scrollHeight;"
        "arguments[0].dispatchEvent(new Event('scroll'));",
        gantt,
    )
    wait(
        browser,
        lambda d: d.find_elements("css selector", f".grow.child[data-index='{BIG - 1}']"),
        "the last child never drawn",
    )
    last = browser.find_element("css selector", f".grow.child[data-index='{BIG - 1}']")
    assert last.find_elements("css selector", ".attempt")
    browser.save_screenshot(str(artifacts / "big-expanded-end.png"))
    # a child's details open from its row
    last.find_element("css selector", ".label").click()
    wait(
        browser,
        lambda d: (
            f"inc[{BIG - 1}]" in d.find_element("id", "details").text
            and "Success" in d.find_element("id", "details").text
        ),
    )
    # search a task: only the matching rows stay
    search = browser.find_element("id", "task-search")
    search.send_keys("items")
    wait(
        browser,
        lambda d: (
            [r.get_attribute("data-task") for r in d.find_elements("css selector", ".grow")]
            == ["items-1"]
        ),
    )
    search.clear()
    search.send_keys("inc")
    wait(
        browser,
        lambda d: (
            {r.get_attribute("data-task") for r in d.find_elements("css selector", ".grow")}
            == {"inc-1"}
        ),
    )
    browser.save_screenshot(str(artifacts / "big-search.png"))

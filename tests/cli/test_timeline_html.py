"""``statecore timeline --html``: the ui's run page, offline in one file, in a real browser.

A real flow with retries, a skip, a mapped task, a LOOP and a failure runs on a SQLite
store; ``statecore timeline --html`` writes the page; headless Chromium (Debian's
``chromium`` driven by Selenium, installed by .ci/run) opens it from disk, its script
draws the Gantt from the run's document inlined in the page, and the page must show
exactly as many ``.attempt`` bars as the log has attempts, with their states; a
screenshot is saved. Under CI (``CI=true``) a missing browser fails the test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from statecore.attempts import attempt_bars
from statecore.backends import MemoryStore, SQLiteStore
from statecore.cli.main import cli
from statecore.cli.ui_command import embedded_page
from statecore.fold import RunView
from statecore.runners.loading import load_flow
from statecore.runners.local import replay, resume

from ..ui.test_ui_support import wait

FLOWS = Path(__file__).parent.parent / "flows" / "demo.py"


def attempts_in_log(view: RunView) -> int:
    """Attempts, counted straight from the log: each entry into Running not from Looped."""
    return sum(1 for e in view.entries if e.task and e.new == "Running" and e.prev != "Looped")


def external_references(page: str) -> list[str]:
    """``src``/``href`` attributes and ``<link>`` elements: a self-contained page has none."""
    return re.findall(r"<link\b|\b(?:src|href)\s*=", page, flags=re.IGNORECASE)


@pytest.fixture
def mixed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, RunView]:
    monkeypatch.setenv("STATECORE_TEST_COUNTER", str(tmp_path / "ran.txt"))
    db = tmp_path / "runs.db"
    result = CliRunner().invoke(
        cli, ["run", f"{FLOWS}:mixed", "--run-id", "mixed", "--store", f"sqlite:///{db}"]
    )
    assert result.exit_code == 1, result.output  # crash fails a reference task
    with SQLiteStore(db) as store:
        return db, replay(store, "mixed")


def test_the_log_has_what_the_page_must_show(mixed_run: tuple[Path, RunView]) -> None:
    _, view = mixed_run
    states = {(e.task, e.index, e.new) for e in view.entries}
    assert ("flaky-1", None, "Retrying") in states  # retries
    assert ("halve-1", 1, "Skipped") in states  # a skipped mapped child
    assert ("crash-1", None, "Failed") in states  # a failure
    assert ("after_crash-1", None, "TriggerFailed") in states  # never ran
    assert ("looper-1", None, "Looped") in states  # loops stay in one attempt
    assert attempts_in_log(view) == 3 + 3 + 1 + 1 + 1  # flaky, halve[0..2], crash, looper, summary


def test_the_html_page_draws_every_attempt_offline_in_chromium(
    mixed_run: tuple[Path, RunView], tmp_path: Path, browser: Any
) -> None:
    db, view = mixed_run
    out = tmp_path / "timeline.html"
    result = CliRunner().invoke(
        cli, ["timeline", "mixed", "--html", str(out), "--store", f"sqlite:///{db}"]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert external_references(page) == []  # self-contained: no linked assets
    assert re.findall(r"https?://[^'\"]*", page) == ["http://www.w3.org/2000/svg"] * 2

    browser.get(out.as_uri())
    wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "run")
    body = browser.find_element("tag name", "body")
    expected = attempts_in_log(view)
    assert body.get_attribute("data-attempt-count") == str(expected)  # the page's own count
    assert body.get_attribute("data-flow-state") == "Failed"
    browser.find_element("id", "expand-all").click()
    wait(browser, lambda d: len(d.find_elements("css selector", ".attempt")) == expected)

    by_task: dict[tuple[str | None, str | None], list[str | None]] = {}
    for bar in browser.find_elements("css selector", ".attempt"):
        row = bar.find_element("xpath", "./ancestor::div[contains(@class,'grow')]")
        key = (row.get_attribute("data-task"), row.get_attribute("data-index") or "")
        by_task.setdefault(key, []).append(bar.get_attribute("data-state"))
    assert by_task[("flaky-1", "")] == ["Retrying", "Retrying", "Success"]
    assert by_task[("halve-1", "1")] == ["Skipped"]
    assert by_task[("crash-1", "")] == ["Failed"]
    assert by_task[("looper-1", "")] == ["Success"]
    markers = {
        (
            m.find_element("xpath", "./ancestor::div[contains(@class,'grow')]").get_attribute(
                "data-task"
            ),
            m.get_attribute("data-state"),
        )
        for m in browser.find_elements("css selector", ".marker")
    }
    assert ("after_crash-1", "TriggerFailed") in markers

    root = os.environ.get("STATECORE_TEST_ARTIFACTS")
    shots = Path(root) / "timeline" if root else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "timeline-html.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupted_attempts_get_their_own_bars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = tmp_path / "ran.txt"
    counter.write_text("")
    monkeypatch.setenv("STATECORE_TEST_COUNTER", str(counter))
    flow = load_flow(f"{FLOWS}:interrupted")
    store = MemoryStore()
    with pytest.raises(KeyboardInterrupt):
        flow.run(store=store, run_id="i")
    stopped = replay(store, "i")
    # Ctrl-C: the driver logged the attempt it could not finish as interrupted
    stopped_bars = [b for b in attempt_bars(stopped) if b.task == "dies_once-1"]
    assert [(b.state, b.end is None) for b in stopped_bars] == [("Pending", False)]
    assert len(attempt_bars(stopped)) == attempts_in_log(stopped) == 2

    resume("i", flow, store=store)
    done = replay(store, "i")
    bars = [b for b in attempt_bars(done) if b.task == "dies_once-1"]
    assert [(b.number, b.state) for b in bars] == [(1, "Pending"), (2, "Success")]
    assert bars[0].message is not None and bars[0].message.startswith("Interrupted")
    assert len(attempt_bars(done)) == attempts_in_log(done) == 3


def test_text_in_the_log_is_escaped(tmp_path: Path) -> None:
    from statecore import Flow, task

    @task
    def shout() -> None:
        raise ValueError("</script><script>alert('x')</script> & \"quotes\"")

    with Flow("<b>flow</b></title>") as flow:
        shout()
    store = MemoryStore()
    state = flow.run(store=store)
    assert state.run_id is not None
    page = embedded_page(replay(store, state.run_id))
    assert "<\\/script><script>alert" in page  # inside the inlined document, escaped
    assert "<b>flow</b></title>" not in page
    assert "&lt;b&gt;flow&lt;/b&gt;&lt;/title&gt;" in page
    assert page.count("</script>") == 2  # the document's and the script's own

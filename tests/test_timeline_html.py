"""The HTML timeline, checked in a real browser: one bar per task attempt in the log.

A real flow with retries, a skip, a mapped task, a LOOP and a failure runs on a SQLite
store; ``statecore timeline --html`` writes the page; headless Chromium (Debian's
``chromium``, installed by .ci/run) loads it, runs its script, and dumps the DOM, which
must show exactly as many ``.attempt`` bars as the log has attempts; a screenshot is
saved. Under CI (``CI=true``) a missing Chromium fails the test instead of skipping it.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from statecore.backends import MemoryStore, SQLiteStore
from statecore.cli.main import cli
from statecore.cli.timeline import html_page, task_bars
from statecore.fold import RunView
from statecore.runners.loading import load_flow
from statecore.runners.local import replay, resume

from .conftest import service_missing

FLOWS = Path(__file__).parent / "flows" / "demo.py"


def attempts_in_log(view: RunView) -> int:
    """Attempts, counted straight from the log: each entry into Running not from Looped."""
    return sum(1 for e in view.entries if e.task and e.new == "Running" and e.prev != "Looped")


def never_ran_in_log(view: RunView) -> int:
    """Tasks and children with log entries but no entry into Running."""
    touched = {(e.task, e.index) for e in view.entries if e.task}
    ran = {(e.task, e.index) for e in view.entries if e.task and e.new == "Running"}
    return len(touched - ran)


class _Bars(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[dict[str, str | None]] = []
        self.markers: list[dict[str, str | None]] = []
        self.body: dict[str, str | None] = {}
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "body":
            self.body = a
        if "attempt" in classes:
            self.attempts.append(a)
        if "marker" in classes:
            self.markers.append(a)
        for name in ("src", "href"):
            if a.get(name):
                self.external.append(f"{tag} {name}={a[name]}")
        if tag == "link":
            self.external.append("link")


def parse(page: str) -> _Bars:
    bars = _Bars()
    bars.feed(page)
    return bars


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    service_missing("chromium is not installed (apt-get install -y chromium)")


def chromium(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


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


def test_html_page_in_headless_chromium(mixed_run: tuple[Path, RunView], tmp_path: Path) -> None:
    db, view = mixed_run
    out = tmp_path / "timeline.html"
    result = CliRunner().invoke(
        cli, ["timeline", "mixed", "--html", str(out), "--store", f"sqlite:///{db}"]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")

    static = parse(page)
    assert static.external == []  # self-contained: no linked assets
    assert "http://" not in page and "https://" not in page
    assert len(static.attempts) == attempts_in_log(view)

    exe = find_chromium()
    dumped = chromium(exe, tmp_path / "profile", "--dump-dom", out.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = parse(dumped.stdout)
    expected = attempts_in_log(view)
    assert len(dom.attempts) == expected
    assert dom.body["data-attempt-count"] == str(expected)  # counted by the page's own script
    assert dom.body["data-marker-count"] == str(never_ran_in_log(view))
    assert dom.body["data-flow-state"] == "Failed"
    assert not any(m in dom.attempts for m in dom.markers)

    by_task: dict[tuple[str | None, str | None], list[str | None]] = {}
    for bar in dom.attempts:
        by_task.setdefault((bar["data-task"], bar["data-index"]), []).append(bar["data-state"])
    assert by_task[("flaky-1", "")] == ["Retrying", "Retrying", "Success"]
    assert by_task[("halve-1", "1")] == ["Skipped"]
    assert by_task[("crash-1", "")] == ["Failed"]
    assert by_task[("looper-1", "")] == ["Success"]
    markers = {(m["data-task"], m["data-state"]) for m in dom.markers}
    assert ("after_crash-1", "TriggerFailed") in markers
    assert ("halve-1", "Mapped") in markers
    for bar in dom.attempts:
        title = bar["title"] or ""
        assert "start: " in title and "end: " in title and "duration: " in title
    reference = page.split("<dt>reference tasks</dt><dd>", 1)[1].split("</dd>", 1)[0]
    for key in view.graph["reference"]:
        assert view.graph["tasks"][view.by_key[key]]["name"] in reference
    assert "flaky attempt 2" in dumped.stdout  # the task log section

    shot = tmp_path / "timeline.png"
    taken = chromium(
        exe, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,800", out.as_uri()
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 5000


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
    stopped_bars = [b for b in task_bars(stopped) if b.task == "dies_once-1"]
    assert [(b.state, b.end is None) for b in stopped_bars] == [("Pending", False)]
    assert len(parse(html_page(stopped)).attempts) == attempts_in_log(stopped) == 2

    resume("i", flow, store=store)
    done = replay(store, "i")
    bars = [b for b in task_bars(done) if b.task == "dies_once-1"]
    assert [b.state for b in bars] == ["Pending", "Success"]  # interrupted, then finished
    assert bars[0].message is not None and bars[0].message.startswith("Interrupted")
    assert len(parse(html_page(done)).attempts) == attempts_in_log(done) == 3


def test_text_in_the_log_is_escaped(tmp_path: Path) -> None:
    from statecore import Flow, task

    @task
    def shout() -> None:
        raise ValueError("<script>alert('x')</script> & \"quotes\"")

    with Flow("<b>flow</b>") as flow:
        shout()
    store = MemoryStore()
    state = flow.run(store=store)
    assert state.run_id is not None
    page = html_page(replay(store, state.run_id))
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert" in page
    assert "<b>flow</b>" not in page
    assert len(parse(page).attempts) == 1

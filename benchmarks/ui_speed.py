"""``statecore ui`` speed: first render of the runs page over 10,000 runs and of the
run page of a 100,000-task run, and the server's memory.

Both stores are built by real runs on SQLite (10,000 runs of two small flows, a tenth
of them failing, about 30 s; one run of a 100,000-child map, about 5 s), kept in
``--workdir`` so later invocations reuse them. Each repeat starts a fresh server
(``python -m statecore ui`` in a subprocess, so nothing is cached) and measures

* ``api``: the server-side time of the page's request (``GET /api/runs?limit=50``,
  ``GET /api/runs/big``): from the request to the last byte of the JSON;
* ``browser``: with Selenium driving the headless Chromium, from ``driver.get`` to the
  page marking itself drawn (``body[data-ready]``: the data fetched and the runs
  table or the Gantt drawn), on a second fresh server;
* ``rss``: the server's peak resident memory (VmHWM) after the browser's load.

Medians of ``--repeat`` repeats are printed as a table.

    python benchmarks/ui_speed.py [--runs 10000] [--tasks 100000] [--repeat 5]
        [--workdir DIR] [--no-browser]

Targets: each page's first render under 2 s; the server under 300 MB. A run with more
than ``statecore.ui.model.LAZY_CHILDREN`` mapped children sends its children's attempts
when a map is opened: the last row times that request (``/api/runs/big/children``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from statecore import Flow, Parameter, task  # noqa: E402
from statecore.backends import SQLiteStore  # noqa: E402


@task
def load(n: int) -> list[int]:
    return list(range(n))


@task
def check(xs: list[int], fail: bool) -> int:
    if fail:
        raise ValueError("a failing run")
    return sum(xs)


@task
def items(n: int) -> list[int]:
    return list(range(n))


@task
def inc(x: int) -> int:
    return x + 1


def small_flows() -> list[Flow]:
    flows = []
    for name in ("nightly", "hourly"):
        with Flow(name) as flow:
            check(load(Parameter("n", default=3)), Parameter("fail", default=False))
        flows.append(flow)
    return flows


def build_runs(path: Path, runs: int) -> None:
    store = SQLiteStore(path)
    try:
        have = len(store.list_runs(limit=runs))
        flows = small_flows()
        for i in range(have, runs):
            flows[i % 2].run({"n": i % 7, "fail": i % 10 == 0}, store=store, run_id=f"run-{i:06d}")
    finally:
        store.close()


def build_big(path: Path, tasks: int) -> None:
    store = SQLiteStore(path)
    try:
        if store.head("big") == 0:
            with Flow("big") as flow:
                inc.map(items(tasks))
            flow.run(store=store, run_id="big")
    finally:
        store.close()


@contextmanager
def server(db: Path) -> Iterator[tuple[str, int]]:
    """A fresh ``statecore ui`` process on a free loopback port: its URL and pid."""
    cmd = [sys.executable, "-m", "statecore", "ui", "--store", f"sqlite:///{db}", "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        yield url.rstrip("/"), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def api_time(url: str) -> tuple[float, int]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as resp:
        body = resp.read()
    return time.perf_counter() - start, len(body)


def make_browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-background-networking",
    ):
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='ui-speed-chrome-')}")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(300)
    return driver


def browser_time(driver: Any, url: str, page: str) -> float:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    start = time.perf_counter()
    driver.get(url)
    WebDriverWait(driver, 300, poll_frequency=0.01).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == page
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ui-speed")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    runs_db = args.workdir / f"runs-{args.runs}.db"
    big_db = args.workdir / f"big-{args.tasks}.db"
    t = time.perf_counter()
    build_runs(runs_db, args.runs)
    print(f"store with {args.runs} runs ready ({time.perf_counter() - t:.1f}s)", file=sys.stderr)
    t = time.perf_counter()
    build_big(big_db, args.tasks)
    print(f"{args.tasks}-task run ready ({time.perf_counter() - t:.1f}s)", file=sys.stderr)

    driver = None if args.no_browser else make_browser()
    cases = [
        (f"runs page, {args.runs} runs", runs_db, "/api/runs?limit=50", "/#/", "runs"),
        (f"run page, {args.tasks}-task run", big_db, "/api/runs/big", "/#/run/big", "run"),
    ]
    rows = []
    try:
        for label, db, api, fragment, page in cases:
            apis: list[float] = []
            views: list[float] = []
            rss: list[float] = []
            size = 0
            for _ in range(args.repeat):
                with server(db) as (url, pid):
                    took, size = api_time(url + api)
                    apis.append(took)
                    if driver is None:
                        rss.append(peak_rss_mb(pid))
                if driver is not None:
                    with server(db) as (url, pid):
                        views.append(browser_time(driver, url + "/" + fragment, page))
                        rss.append(peak_rss_mb(pid))
            rows.append(
                (
                    label,
                    statistics.median(apis),
                    statistics.median(views) if views else None,
                    statistics.median(rss),
                    size,
                )
            )
        # opening the big map: its children's attempts come on demand (a fold that keeps
        # every entry), after the page's own document
        opens: list[float] = []
        rss = []
        size = 0
        for _ in range(args.repeat):
            with server(big_db) as (url, pid):
                api_time(url + "/api/runs/big")
                took, size = api_time(url + "/api/runs/big/children?key=inc-1")
                opens.append(took)
                rss.append(peak_rss_mb(pid))
        rows.append(
            (
                f"open its map ({args.tasks} children)",
                statistics.median(opens),
                None,
                statistics.median(rss),
                size,
            )
        )
    finally:
        if driver is not None:
            driver.quit()
    print(f"\nmedians of {args.repeat} repeats, fresh server each")
    print(f"{'page':<28} {'api (s)':>8} {'browser (s)':>12} {'server RSS (MB)':>16} {'JSON':>10}")
    for label, api_s, view_s, rss_mb, size in rows:
        shown = f"{view_s:.2f}" if view_s is not None else "-"
        print(f"{label:<28} {api_s:>8.2f} {shown:>12} {rss_mb:>16.0f} {size / 1e6:>8.1f}MB")


if __name__ == "__main__":
    main()

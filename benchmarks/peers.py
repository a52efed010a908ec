"""statecore beside its peers: Prefect 1.4.1, Prefect 3, DBOS and dask.distributed, one command.

    python benchmarks/peers.py [--repeat 3] [--quick] [--cache DIR] [--upgrade]

Each peer gets a virtual environment of its own under the cache folder (default
``~/.cache/statecore-peers``, or ``$STATECORE_PEERS_CACHE``), made once with
``python -m venv`` and ``pip install`` of its requirement (``prefect==1.4.1``, ``prefect``,
``dbos``, ``dask[distributed]``; ``--upgrade`` reinstalls, which brings the newest
"latest"). A peer that cannot be installed or cannot run is reported as such in the
table, with pip's or its own last words.

The workloads are W1 (a chain of 1,000), W2 (1,000 independent tasks + a reducer) and W3
(a map over 10,000 items + a reducer), written in each peer's own API in
``peer_side.py`` and run by the peer's interpreter; DBOS runs W1 only, as 1,000
sequential durable steps of one workflow. statecore runs the same three on its memory,
SQLite and Redis stores through ``run.py --child``. Every (engine, workload) run is a
fresh process, warmed up once untimed; the engines alternate (their order rotates each
repeat) so the host's drift hits them alike. The figures are medians over the repeats
of wall-clock µs per task a user wrote (W1 n, W2 and W3 n + 1); a statecore process
times 5 runs after its warm-up and gives their median, as its runs last a fraction of
a second and one sample is mostly the host's noise.

The slow peers (Prefect 1 and 3, about 10 ms a task here) run W3 over 2,000 items
(``--slow-w3``) to keep the whole run near 15 minutes; the table says the size of
every cell. The minimal SQLite group-commit loop of ``run.py`` (2 rows a task, 512 rows
a commit) is measured in the same invocation as the floor.

It prints each run as it ends, then a markdown table, dated, with the machine, also
written to ``benchmarks/results/peers.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from run import baseline_redis_pipeline, baseline_sqlite_group_commit  # noqa: E402
from workloads import WORKLOADS, ensure_redis  # noqa: E402

RUN_TIMEOUT = 900.0  # seconds for one (engine, workload) process
INSTALL_TIMEOUT = 900.0
STATECORE_SAMPLES = 5  # timed runs per statecore process (median), after one warm-up


@dataclass
class Engine:
    """One column of the comparison: a statecore store or a peer in its own venv."""

    key: str
    label: str
    durable: str
    workloads: tuple[str, ...] = ("W1", "W2", "W3")
    requirement: str | None = None  # a peer's pip requirement; None for statecore
    distribution: str = ""  # the package whose installed version is shown
    slow: bool = False  # runs W3 at --slow-w3 items
    python: str = ""  # a peer's venv interpreter, once installed
    version: str = ""
    unavailable: str = ""  # why it could not be installed or run, if so
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def engines() -> list[Engine]:
    return [
        Engine("memory", "statecore, memory store", "no (in memory)"),
        Engine("sqlite", "statecore, SQLite store", "yes (WAL, group commit)"),
        Engine("redis", "statecore, Redis store", "yes (as the server is)"),
        Engine(
            "prefect1",
            "Prefect 1.4.1",
            "no (LocalExecutor, no backend)",
            requirement="prefect==1.4.1",
            distribution="prefect",
            slow=True,
        ),
        Engine(
            "prefect3",
            "Prefect 3",
            "yes (temporary local API server, SQLite)",
            requirement="prefect",
            distribution="prefect",
            slow=True,
        ),
        Engine(
            "dbos",
            "DBOS",
            "yes (SQLite system database)",
            workloads=("W1",),
            requirement="dbos",
            distribution="dbos",
        ),
        Engine(
            "dask",
            "dask.distributed",
            "no (threads, in process)",
            requirement="dask[distributed]",
            distribution="distributed",
        ),
    ]


# -- virtual environments -------------------------------------------------------------------


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " / ".join(kept)[-400:]


def install(engine: Engine, cache: Path, upgrade: bool) -> None:
    """Make (or reuse) the peer's venv; on failure set ``engine.unavailable``."""
    assert engine.requirement is not None
    venv = cache / engine.key
    python = venv / "bin" / "python"
    marker = venv / "statecore-peer.json"
    wanted = {"requirement": engine.requirement, "python": platform.python_version()}
    try:
        if upgrade or not marker.exists() or json.loads(marker.read_text()) != wanted:
            print(f"installing {engine.requirement} into {venv} ...", file=sys.stderr, flush=True)
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(venv)],
                check=True,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run(
                [*pip, "--upgrade", engine.requirement],
                check=True,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
            marker.write_text(json.dumps(wanted))
        probe = subprocess.run(
            [
                str(python),
                "-c",
                f"import importlib.metadata as m; print(m.version({engine.distribution!r}))",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.CalledProcessError as exc:
        engine.unavailable = f"cannot be installed: {_tail(exc.stderr or exc.stdout or '')}"
        return
    except (OSError, subprocess.TimeoutExpired) as exc:
        engine.unavailable = f"cannot be installed: {exc}"
        return
    engine.python = str(python)
    engine.version = probe.stdout.strip()


# -- one run --------------------------------------------------------------------------------


def size(engine: Engine, workload: str, quick: bool, slow_w3: int) -> int:
    n = WORKLOADS[workload].size(quick)
    if engine.slow and workload == "W3":
        return min(n, slow_w3 // 4 if quick else slow_w3)
    return n


def run_once(engine: Engine, workload: str, quick: bool, slow_w3: int) -> dict[str, Any]:
    """One fresh process, one timed run; returns seconds, tasks and peak RSS."""
    if engine.requirement is None:
        # statecore's runs are short (0.05-0.5 s), so one sample is noise on a shared
        # host: each process times STATECORE_SAMPLES runs and gives their median
        cmd = [sys.executable, str(HERE / "run.py"), "--child", workload, "--stores"]
        cmd += [engine.key, "--repeat", str(STATECORE_SAMPLES)] + (["--quick"] if quick else [])
    else:
        n = size(engine, workload, quick, slow_w3)
        cmd = [engine.python, str(HERE / "peer_side.py"), engine.key, workload, str(n)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if engine.key == "prefect3":
        # its defaults, kept out of the user's ~/.prefect
        env.setdefault("PREFECT_HOME", str(Path(engine.python).parent.parent / "prefect-home"))
    # output to files, not pipes, and a session of its own: a server the peer leaves
    # behind can neither hold the pipes open nor outlive the run
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=RUN_TIMEOUT)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        raise RuntimeError(f"exit {code}: {_tail(stderr)}")
    record: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    if engine.requirement is None:
        return {
            "seconds": statistics.median(record["seconds"]),
            "tasks": record["tasks"],
            "peak_rss_mb": record["peak_rss_mb"],
            "child_peak_rss_mb": 0.0,
        }
    return record


def us_per_task(runs: list[dict[str, Any]]) -> float:
    return statistics.median(r["seconds"] / r["tasks"] * 1e6 for r in runs)


# -- the report -----------------------------------------------------------------------------


def _cell_us(engine: Engine, workload: str) -> str:
    if engine.unavailable:
        return "-"
    if workload not in engine.workloads:
        return "n/a"
    runs = engine.runs.get(workload)
    if not runs:
        return "failed"
    tasks = runs[0]["tasks"]
    return f"{us_per_task(runs):,.1f} ({tasks:,})"


def _cell_rss(engine: Engine) -> str:
    if engine.unavailable:
        return "-"
    cells = []
    for w in engine.workloads:
        runs = engine.runs.get(w)
        if not runs:
            cells.append("-")
            continue
        own = max(r["peak_rss_mb"] for r in runs)
        child = max(r["child_peak_rss_mb"] for r in runs)
        cells.append(f"{own:.0f}" + (f" (+{child:.0f})" if engine.key == "prefect3" else ""))
    return " / ".join(cells)


def _ratio(peer: Engine, ours: Engine, workload: str) -> str:
    if peer.unavailable or ours.unavailable:
        return "-"
    a, b = peer.runs.get(workload), ours.runs.get(workload)
    if not a or not b:
        return "n/a" if workload not in peer.workloads else "-"
    return f"{us_per_task(a) / us_per_task(b):,.0f}x"


def report(
    all_engines: list[Engine],
    floors: tuple[float, float | None],
    args: argparse.Namespace,
    started: str,
) -> str:
    floor_us, redis_floor_us = floors
    by_key = {e.key: e for e in all_engines}
    ours = [by_key[k] for k in ("sqlite", "redis", "memory")]
    peers = [e for e in all_engines if e.requirement is not None]
    lines = [
        f"## statecore and its peers ({started} UTC)",
        "",
        f"`{' '.join(['python', 'benchmarks/peers.py', *sys.argv[1:]])}`: "
        f"median of {args.repeat} rounds, each engine and workload a fresh process per "
        f"round, engines alternating (statecore: each process the median of "
        f"{STATECORE_SAMPLES} runs); "
        f"{os.cpu_count()} CPUs ({platform.machine()}, shared with other work: figures "
        f"are noisy, compare the ratios), Python {platform.python_version()} "
        f"for statecore and every peer, SQLite {sqlite3.sqlite_version}.",
        "",
        "µs per task (tasks in the run), wall clock:",
        "",
        "| engine | version | durable | W1 chain | W2 fan-in | W3 map | peak RSS MB W1 / W2 / W3 |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for e in all_engines:
        version = e.version or ("this tree" if e.requirement is None else "-")
        if e.unavailable:
            lines.append(
                f"| {e.label} | - | {e.durable} | {e.unavailable} | | | |".replace("\n", " ")
            )
            continue
        cells = [_cell_us(e, w) for w in ("W1", "W2", "W3")]
        lines.append(
            f"| {e.label} | {version} | {e.durable} | " + " | ".join(cells) + f" | {_cell_rss(e)} |"
        )
    lines.append(
        f"| minimal SQLite group-commit loop (floor) | | yes | {floor_us:.1f} (100,000) | | | |"
    )
    if redis_floor_us is not None:
        lines.append(
            f"| minimal Redis pipelined log (floor) | | as the server is | "
            f"{redis_floor_us:.1f} (50,000) | | | |"
        )
    lines += [
        "",
        "statecore's lead: the peer's µs per task divided by statecore's "
        "(SQLite / Redis / memory store):",
        "",
        "| peer | W1 chain | W2 fan-in | W3 map |",
        "|---|---:|---:|---:|",
    ]
    for p in peers:
        if p.unavailable:
            lines.append(f"| {p.label} | {p.unavailable} | | |")
            continue
        cells = []
        for w in ("W1", "W2", "W3"):
            if w not in p.workloads:
                cells.append("n/a")
                continue
            cells.append(" / ".join(_ratio(p, o, w) for o in ours))
        lines.append(f"| {p.label} | " + " | ".join(cells) + " |")
    for engine, floor, what in (
        (by_key["sqlite"], floor_us, "SQLite"),
        (by_key["redis"], redis_floor_us, "Redis"),
    ):
        if floor is None or engine.unavailable:
            continue
        cells = []
        for w in ("W1", "W2", "W3"):
            runs = engine.runs.get(w)
            cells.append(f"{w} {us_per_task(runs) / floor:.1f}x" if runs else f"{w} -")
        lines += [
            "",
            f"statecore {what} against its floor (µs per task ÷ the loop's): "
            + ", ".join(cells)
            + ".",
        ]
    lines += [
        "",
        "Notes: Prefect 1 and 3 run W3 over fewer items (the size is in each cell); "
        "DBOS runs W1 only, as sequential `@DBOS.step`s of one workflow, so its ratio is "
        "per durable step; Prefect 3's RSS adds its temporary API server's (+N); "
        "dask.distributed runs on an in-process LocalCluster of threads, like statecore's "
        "LocalRunner, and keeps nothing durable.",
    ]
    failures = [(e, w, why) for e in all_engines for w, why in e.errors.items()]
    if failures:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {e.label} {w}: {why}" for e, w, why in failures]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine and workload")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: W1/W2 200, W3 2,000 (slow peers 500)"
    )
    parser.add_argument(
        "--cache",
        default=os.environ.get("STATECORE_PEERS_CACHE", "~/.cache/statecore-peers"),
        help="folder of the peers' virtual environments",
    )
    parser.add_argument("--upgrade", action="store_true", help="reinstall every peer")
    parser.add_argument("--slow-w3", type=int, default=2_000, help="W3 items for Prefect 1/3")
    parser.add_argument(
        "--engines", default="", help="comma-separated subset (memory,sqlite,redis,prefect1,...)"
    )
    parser.add_argument(
        "--out",
        help="default benchmarks/results/peers.md (peers-quick.md for --quick or --engines)",
    )
    args = parser.parse_args(argv)
    # a SIGTERM unwinds like Ctrl-C, so the running peer's process group is ended too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    all_engines = engines()
    if args.engines:
        keep = set(args.engines.split(","))
        all_engines = [e for e in all_engines if e.key in keep]
    cache = Path(args.cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    for e in all_engines:
        if e.requirement is not None:
            install(e, cache, args.upgrade)
            print(f"{e.label}: {e.version or e.unavailable}", file=sys.stderr, flush=True)
        elif e.key == "redis" and (why := ensure_redis()):
            e.unavailable = f"no Redis: {why}"

    floor_us = baseline_sqlite_group_commit(100_000, args.repeat)
    print(f"floor: minimal SQLite group-commit loop {floor_us:.2f} µs/task", flush=True)
    redis_floor_us = None
    if any(e.key == "redis" and not e.unavailable for e in all_engines):
        redis_floor_us = baseline_redis_pipeline(50_000, args.repeat)
        print(f"floor: minimal Redis pipelined log {redis_floor_us:.2f} µs/task", flush=True)
    ready = [e for e in all_engines if not e.unavailable]
    t0 = time.perf_counter()
    for r in range(args.repeat):
        order = ready[r % len(ready) :] + ready[: r % len(ready)] if ready else []
        for e in order:
            for w in e.workloads:
                if w in e.errors:
                    continue  # failed once: not again
                try:
                    got = run_once(e, w, args.quick, args.slow_w3)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    e.errors[w] = str(exc).replace("\n", " ")[:500]
                    print(f"[{r + 1}] {e.key:<8} {w} failed: {e.errors[w]}", flush=True)
                    continue
                e.runs.setdefault(w, []).append(got)
                print(
                    f"[{r + 1}] {e.key:<8} {w} {got['seconds'] / got['tasks'] * 1e6:10.1f} µs/task"
                    f"  ({got['tasks']:,} tasks, {got['seconds']:.2f} s, "
                    f"peak RSS {got['peak_rss_mb']:.0f} MB)  [{time.perf_counter() - t0:.0f} s]",
                    flush=True,
                )
    for e in all_engines:
        if not e.unavailable and e.errors and not e.runs:
            e.unavailable = "cannot run: " + "; ".join(e.errors.values())[:500]
    if all(k in {e.key for e in all_engines} for k in ("sqlite", "redis", "memory")):
        table = report(all_engines, (floor_us, redis_floor_us), args, started)
    else:
        table = report_subset(all_engines, started)
    print()
    print(table)
    partial = args.quick or args.engines
    out = Path(args.out or HERE / "results" / ("peers-quick.md" if partial else "peers.md"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(f"written to {out}", file=sys.stderr)
    return 0


def report_subset(all_engines: list[Engine], started: str) -> str:
    """A plain table when --engines left out a statecore store the ratios need."""
    lines = [
        f"## peers subset ({started} UTC)",
        "",
        "| engine | W1 | W2 | W3 |",
        "|---|---:|---:|---:|",
    ]
    for e in all_engines:
        label = e.unavailable or " | ".join(_cell_us(e, w) for w in ("W1", "W2", "W3"))
        lines.append(f"| {e.label} | {label} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

"""statecore against the performance targets of issue 14, in one command.

    python benchmarks/targets.py [--repeat 3] [--quick] [--peers] [--out FILE]

Every figure is measured in this one invocation; each compared pair is timed in the same
repeat, and the repeats run the jobs forward, then backward (ABBA...), so the host's drift
hits both sides of every ratio alike. Ratios are medians of the per-repeat ratios.

1. W1 (chain of 1,000), W2 (1,000 independent + reducer), W3 (map over 10,000 + reducer)
   on SQLite, µs per task (``run.py --child``: a fresh process, one untimed warm-up, the
   median of 5 runs) <= 2.5x the minimal SQLite group-commit loop of ``run.py`` (2 rows a
   task); on Redis <= 2.5x the pipelined Redis log of ``run.py``.
2. Flatness: W1 and W3 at 1,000, 10,000 and 100,000 tasks on SQLite, each size a fresh
   process (same child as 1; the flow is built untimed, its build time is shown apart):
   µs per task at the largest size over the smallest <= 1.3.
3. W3 over 100,000 items in a fresh process (build, one run on SQLite, exit): the
   process's peak RSS (``ru_maxrss`` from ``wait4``, nothing subtracted) <= 300 MB.
4. ``python -c "import statecore"`` minus ``python -c "pass"`` (medians of 7 alternating
   pairs a repeat, wall clock around the subprocess) <= 150 ms; ``-X importtime``'s top 5
   modules by cumulative time are listed.
5. SQLite replay >= 0.8 of the yardstick of ``store_throughput.py`` timed beside it
   (its ``measure``: replay and yardstick in pairs on a W3 log of 15,000 items).
6. ``resume`` of a 100,000-task run to its first new task <= 1.5x the replay of the same
   log (``resume.py``'s ``measure``), a fresh process a repeat.

``--peers`` adds Prefect 1.4.1 (>= 500x) and DBOS (>= 150x) rows from the last
``benchmarks/results/peers.md`` (``peers.py`` is not rerun: it needs its venvs and about 9
minutes), divided by this invocation's statecore SQLite figures.

It prints each job as it ends, then the table "target | measured | met?", also written,
dated and with the machine, to ``benchmarks/results/targets.md``
(a ``--quick`` run only prints, unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    baseline_redis_pipeline,
    baseline_sqlite_group_commit,
    peak_rss_mb,
    run_child,
)
from workloads import WORKLOADS, ensure_redis  # noqa: E402

FLOOR_RATIO = 2.5
FLAT_RATIO = 1.3
RSS_MB = 300.0
IMPORT_MS = 150.0
REPLAY_SHARE = 0.8
RESUME_RATIO = 1.5
PEER_TARGETS = {"Prefect 1.4.1": 500.0, "DBOS": 150.0}
RUN_SAMPLES = 5  # timed runs per target-1 process, after its warm-up (as peers.py)


@dataclasses.dataclass(frozen=True)
class Sizes:
    floor_sqlite: int
    floor_redis: int
    flat: tuple[int, ...]
    rss_items: int
    import_pairs: int
    replay_items: int
    resume_items: int


FULL = Sizes(100_000, 50_000, (1_000, 10_000, 100_000), 100_000, 7, 15_000, 100_000)
QUICK = Sizes(10_000, 10_000, (500, 2_000, 5_000), 10_000, 3, 3_000, 10_000)


def flat_samples(n: int) -> int:
    """Timed runs in one flatness process: about 0.3 s of timed work at small sizes."""
    return max(1, min(10, 30_000 // n))


# -- children: each job that needs a fresh interpreter -----------------------------------


def child_flat(workload: str, n: int, samples: int) -> dict[str, Any]:
    """run.py's child on SQLite with the workload resized to n; the build timed apart."""
    from run import child

    wl = WORKLOADS[workload]
    built: list[float] = []

    def timed_build(size: int) -> Any:
        t0 = time.perf_counter()
        flow = wl.build(size)
        built.append(time.perf_counter() - t0)
        return flow

    WORKLOADS[workload] = dataclasses.replace(wl, build=timed_build, n=n, quick_n=n)
    result = child(workload, "sqlite", samples, False)
    result["build_seconds"] = built[0]
    return result


def child_rss(items: int) -> dict[str, Any]:
    """Build W3 over ``items`` and run it once on a SQLite file: a fresh process's peak."""
    from workloads import StoreFactory, build_w3

    from statecore.runners.local import LocalRunner

    flow = build_w3(items)
    factory = StoreFactory("sqlite")
    try:
        with factory.fresh() as store:
            t0 = time.perf_counter()
            state = flow.run(store=store, runner=LocalRunner())
            seconds = time.perf_counter() - t0
            if not state.is_successful():
                raise SystemExit(f"W3 over {items} did not succeed: {state!r}")
    finally:
        factory.cleanup()
    return {"seconds": seconds, "self_peak_rss_mb": peak_rss_mb()}


def child_replay(items: int) -> dict[str, Any]:
    from store_throughput import measure, real_log

    run_id, events = real_log(items)
    got = measure("sqlite", run_id, events, 1, 500)
    got["events"] = len(events)
    return got


def child_resume(items: int) -> dict[str, Any]:
    from resume import measure

    events, replayed, first, first_cpu = measure("sqlite", items)
    return {"events": events, "replay": replayed, "first": first, "first_cpu": first_cpu}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "flat": child_flat,
    "rss": child_rss,
    "replay": child_replay,
    "resume": child_resume,
}


def spawn(job: str, *params: object) -> tuple[dict[str, Any], float]:
    """Run ``targets.py --child job params...``; its JSON and its peak RSS (MB, wait4)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", job, *map(str, params)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{job} {params} failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    rss = usage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    return json.loads(stdout.strip().splitlines()[-1]), rss


# -- import time -------------------------------------------------------------------------


def _wall(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - t0


def import_ms(pairs: int) -> dict[str, float]:
    """Medians of ``import statecore`` and of a bare interpreter, alternating, in ms."""
    _wall("import statecore")  # file cache warm, bytecode written
    bare: list[float] = []
    full: list[float] = []
    for i in range(pairs):
        first, second = ("pass", "import statecore") if i % 2 == 0 else ("import statecore", "pass")
        for code in (first, second):
            (bare if code == "pass" else full).append(_wall(code) * 1e3)
    return {"import": statistics.median(full), "bare": statistics.median(bare)}


def importtime_top(count: int = 5) -> list[tuple[str, int, int]]:
    """``-X importtime``'s modules with the largest cumulative time: (name, self, cum) µs."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import statecore"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if m:
            rows.append((m.group(4), int(m.group(1)), int(m.group(2))))
    rows.sort(key=lambda r: -r[2])
    return rows[:count]


# -- peers.md ----------------------------------------------------------------------------


def read_peers(path: Path) -> tuple[str, dict[str, list[tuple[float, int] | None]]]:
    """The date line and, per peer label, its W1-W3 (µs per task, tasks) from peers.md."""
    text = path.read_text()
    m = re.search(r"\(([^()]*UTC)\)", text)
    date = m.group(1) if m else "undated"
    rows: dict[str, list[tuple[float, int] | None]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 6 or cells[0] not in PEER_TARGETS:
            continue
        figures: list[tuple[float, int] | None] = []
        for cell in cells[3:6]:
            c = re.match(r"([\d,.]+)\s*\(([\d,]+)\)", cell)
            figures.append(
                (float(c.group(1).replace(",", "")), int(c.group(2).replace(",", "")))
                if c
                else None
            )
        rows[cells[0]] = figures
    return date, rows


# -- the run -----------------------------------------------------------------------------


class Collector:
    """Figures by key, one list per key (a value per repeat), and each job's failure."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {}
        self.errors: dict[str, str] = {}

    def add(self, key: str, value: Any) -> None:
        self.values.setdefault(key, []).append(value)

    def get(self, key: str) -> list[Any]:
        return self.values.get(key, [])


def jobs(sizes: Sizes, quick: bool, redis: bool, got: Collector) -> list[tuple[str, Any]]:
    """(name, callable) for one repeat; each callable records its figures in ``got``."""
    out: list[tuple[str, Any]] = []

    def floor_sqlite() -> str:
        us = baseline_sqlite_group_commit(sizes.floor_sqlite, 1)
        got.add("floor:sqlite", us)
        return f"{us:.2f} µs/task"

    def floor_redis() -> str:
        us = baseline_redis_pipeline(sizes.floor_redis, 1)
        got.add("floor:redis", us)
        return f"{us:.2f} µs/task"

    def workload(name: str, store: str) -> Callable[[], str]:
        def go() -> str:
            r = run_child(name, store, RUN_SAMPLES, quick)
            got.add(f"run:{store}:{name}", r)
            return f"{r['median_us_per_task']:.1f} µs/task ({r['tasks']:,} tasks)"

        return go

    def flat(name: str, n: int) -> Callable[[], str]:
        def go() -> str:
            r, _ = spawn("flat", name, n, flat_samples(n))
            got.add(f"flat:{name}:{n}", r)
            return (
                f"{r['median_us_per_task']:.1f} µs/task ({r['tasks']:,} tasks; "
                f"build {r['build_seconds']:.1f} s untimed; peak RSS {r['peak_rss_mb']:.0f} MB)"
            )

        return go

    def rss() -> str:
        r, mb = spawn("rss", sizes.rss_items)
        r["peak_rss_mb"] = mb
        got.add("rss", r)
        return f"peak RSS {mb:.0f} MB (run {r['seconds']:.2f} s)"

    def imports() -> str:
        r = import_ms(sizes.import_pairs)
        got.add("import", r)
        return f"import {r['import']:.0f} ms - bare {r['bare']:.0f} ms"

    def replay() -> str:
        r, _ = spawn("replay", sizes.replay_items)
        got.add("replay", r)
        return (
            f"share {r['share']:.2f} (replay {r['replay']:,.0f}, "
            f"yardstick {r['yardstick']:,.0f} events/s)"
        )

    def resume() -> str:
        r, _ = spawn("resume", sizes.resume_items)
        got.add("resume", r)
        return f"first new task {r['first']:.2f} s, replay {r['replay']:.2f} s"

    out.append(("floor sqlite", floor_sqlite))
    out += [(f"{w} sqlite", workload(w, "sqlite")) for w in WORKLOADS]
    if redis:
        out.append(("floor redis", floor_redis))
        out += [(f"{w} redis", workload(w, "redis")) for w in WORKLOADS]
    out += [(f"flat {w} {n:,}", flat(w, n)) for w in ("W1", "W3") for n in sizes.flat]
    out += [("rss W3", rss), ("import", imports), ("replay", replay), ("resume", resume)]
    return out


def _verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _failed(got: Collector, *prefixes: str) -> str | None:
    for key, why in got.errors.items():
        if key.startswith(prefixes):
            return why.strip().splitlines()[-1][:160] if why.strip() else "failed"
    return None


def _measured_row(
    got: Collector,
    name: str,
    target: str,
    render: Callable[[list[dict[str, Any]]], tuple[str, bool]],
) -> tuple[str, str, str]:
    """One target's row from the runs measured under ``name`` (or why they failed)."""
    runs = got.get(name)
    why = _failed(got, name)
    if why or not runs:
        return target, f"FAILED: {why}", "failed"
    measured, ok = render(runs)
    return target, measured, _verdict(ok)


def table(
    got: Collector,
    sizes: Sizes,
    quick: bool,
    redis_why: str | None,
    peers: tuple[Path, str, dict[str, list[tuple[float, int] | None]]] | None,
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The rows (target, measured, met?) and notes for the details section."""
    rows: list[tuple[str, str, str]] = []
    notes: list[str] = []
    med = statistics.median

    # 1. against the floors, ratio per repeat (the floor timed in the same repeat)
    for store, floor_name in (("sqlite", "SQLite group-commit loop"), ("redis", "Redis log")):
        if store == "redis" and redis_why is not None:
            rows.append((f"Redis W1-W3 <= {FLOOR_RATIO}x its floor", f"skipped: {redis_why}", "-"))
            continue
        floors = got.get(f"floor:{store}")
        for name, wl in WORKLOADS.items():
            label = (
                f"{'SQLite' if store == 'sqlite' else 'Redis'} {name} ({wl.title(wl.tasks(quick))})"
            )
            target = f"{label} <= {FLOOR_RATIO}x the minimal {floor_name}"
            runs = got.get(f"run:{store}:{name}")
            why = _failed(got, f"{name} {store}", f"floor {store}")
            if why or not runs or len(runs) != len(floors):
                rows.append((target, f"FAILED: {why}", "failed"))
                continue
            ratios = [r["median_us_per_task"] / f for r, f in zip(runs, floors, strict=True)]
            us = med(r["median_us_per_task"] for r in runs)
            rows.append(
                (
                    target,
                    f"{med(ratios):.2f}x ({us:.1f} µs/task; floor {med(floors):.2f} µs/task)",
                    _verdict(med(ratios) <= FLOOR_RATIO),
                )
            )

    # 2. flatness
    small, large = sizes.flat[0], sizes.flat[-1]
    for name in ("W1", "W3"):
        target = f"{name} flat: µs/task at {large:,} / at {small:,} tasks (SQLite) <= {FLAT_RATIO}"
        why = _failed(got, f"flat {name} ")
        per = {n: got.get(f"flat:{name}:{n}") for n in sizes.flat}
        if why or any(not v for v in per.values()):
            rows.append((target, f"FAILED: {why}", "failed"))
            continue
        ratios = [
            b["median_us_per_task"] / a["median_us_per_task"]
            for a, b in zip(per[small], per[large], strict=True)
        ]
        cells = ", ".join(
            f"{n:,}: {med(r['median_us_per_task'] for r in v):.1f}" for n, v in per.items()
        )
        rows.append(
            (target, f"{med(ratios):.2f} (µs/task {cells})", _verdict(med(ratios) <= FLAT_RATIO))
        )
        builds = ", ".join(
            f"{n:,}: {med(r['build_seconds'] for r in v):.2f} s" for n, v in per.items()
        )
        rss = ", ".join(f"{n:,}: {max(r['peak_rss_mb'] for r in v):.0f} MB" for n, v in per.items())
        notes.append(f"{name} flow build (untimed, outside the µs/task): {builds}; peak RSS {rss}")

    # 3. RSS
    target = f"W3 over {sizes.rss_items:,} items: peak RSS of a fresh process <= {RSS_MB:.0f} MB"
    if quick:
        target += " (quick size; the target is for 100,000)"

    def show_rss(runs: list[dict[str, Any]]) -> tuple[str, bool]:
        mbs = [r["peak_rss_mb"] for r in runs]
        return f"{med(mbs):.0f} MB (runs: {', '.join(f'{m:.0f}' for m in mbs)})", max(mbs) <= RSS_MB

    rows.append(_measured_row(got, "rss", target, show_rss))

    # 4. import
    target = (
        f'`import statecore` in a fresh interpreter (minus `python -c "pass"`) '
        f"<= {IMPORT_MS:.0f} ms"
    )

    def show_imports(runs: list[dict[str, Any]]) -> tuple[str, bool]:
        net = med(r["import"] - r["bare"] for r in runs)
        bare = med(r["bare"] for r in runs)
        return f"{net:.0f} ms ({med(r['import'] for r in runs):.0f} - {bare:.0f} ms)", (
            net <= IMPORT_MS
        )

    rows.append(_measured_row(got, "import", target, show_imports))

    # 5. replay against the yardstick
    target = f"SQLite replay >= {REPLAY_SHARE} of store_throughput.py's yardstick beside it"

    def show_replay(runs: list[dict[str, Any]]) -> tuple[str, bool]:
        share = med(r["share"] for r in runs)
        return (
            f"{share:.2f} (replay {med(r['replay'] for r in runs):,.0f}, yardstick "
            f"{med(r['yardstick'] for r in runs):,.0f} events/s; W3 log of "
            f"{runs[0]['events']:,} events)"
        ), share >= REPLAY_SHARE

    rows.append(_measured_row(got, "replay", target, show_replay))

    # 6. resume against replay
    target = (
        f"resume of a {sizes.resume_items:,}-task run to its first new task "
        f"<= {RESUME_RATIO}x the replay of its log"
    )

    def show_resume(runs: list[dict[str, Any]]) -> tuple[str, bool]:
        ratio = med(r["first"] / r["replay"] for r in runs)
        return (
            f"{ratio:.2f}x (first new task {med(r['first'] for r in runs):.2f} s, "
            f"replay {med(r['replay'] for r in runs):.2f} s; {runs[0]['events']:,} events)"
        ), ratio <= RESUME_RATIO

    rows.append(_measured_row(got, "resume", target, show_resume))

    # peers, from the last peers.md, against this invocation's SQLite figures
    if peers is not None:
        path, date, figures = peers
        source = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} of {date}"
        for peer, need in PEER_TARGETS.items():
            peer_cells = figures.get(peer)
            if peer_cells is None:
                rows.append((f"{peer} >= {need:.0f}x statecore SQLite", f"not in {source}", "-"))
                continue
            for name, cell in zip(WORKLOADS, peer_cells, strict=False):
                if cell is None:
                    continue
                runs = got.get(f"run:sqlite:{name}")
                if not runs:
                    continue
                ours = med(r["median_us_per_task"] for r in runs)
                ratio = cell[0] / ours
                rows.append(
                    (
                        f"{peer} {name} µs/task >= {need:.0f}x statecore SQLite's",
                        f"{ratio:,.0f}x ({peer} {cell[0]:,.1f} µs/task over {cell[1]:,} "
                        f"tasks, from {source}; statecore {ours:.1f} here)",
                        _verdict(ratio >= need),
                    )
                )
        if quick:
            notes.append("--quick: statecore ran smaller workloads than the peers in peers.md")
    return rows, notes


def build() -> str:
    """Which statecore build runs: pure Python, or the hot path compiled (README, Speed)."""
    import importlib.machinery

    import statecore.decide

    compiled = str(statecore.decide.__file__).endswith(
        tuple(importlib.machinery.EXTENSION_SUFFIXES)
    )
    return "compiled (STATECORE_COMPILE=1)" if compiled else "pure Python"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="repeats (medians over them)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--peers", action="store_true", help="add Prefect 1.4.1 / DBOS rows from peers.md"
    )
    parser.add_argument(
        "--out", help="default benchmarks/results/targets.md (--quick writes none unless given)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        job, *params = args.child
        print(json.dumps(CHILDREN[job](*(int(p) if p.isdigit() else p for p in params))))
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    started = datetime.datetime.now(datetime.UTC)
    t_start = time.perf_counter()
    sizes = QUICK if args.quick else FULL
    redis_why = ensure_redis()
    got = Collector()
    for r in range(args.repeat):
        todo = jobs(sizes, args.quick, redis_why is None, got)
        if r % 2:
            todo.reverse()
        for name, fn in todo:
            if any(k == name for k in got.errors):
                continue  # failed once: not again
            t0 = time.perf_counter()
            try:
                what = fn()
            except Exception as exc:
                got.errors[name] = str(exc)
                print(f"[{r + 1}] {name}: FAILED\n{exc}", file=sys.stderr, flush=True)
                continue
            print(
                f"[{r + 1}] {name}: {what}  [{time.perf_counter() - t0:.1f} s, "
                f"total {time.perf_counter() - t_start:.0f} s]",
                flush=True,
            )
    try:
        top = importtime_top()
    except subprocess.CalledProcessError as exc:
        top = []
        got.errors["importtime"] = str(exc)

    peers = None
    if args.peers:
        peers_path = HERE / "results" / "peers.md"
        if peers_path.exists():
            peers = (peers_path, *read_peers(peers_path))
        else:
            print(f"--peers: no {peers_path}; run benchmarks/peers.py first", file=sys.stderr)
    rows, notes = table(got, sizes, args.quick, redis_why, peers)
    wall = time.perf_counter() - t_start

    command = "python benchmarks/targets.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"## statecore against issue 14's targets ({started:%Y-%m-%d %H:%M} UTC)",
        "",
        f"`{command.strip()}`: {'quick sizes, ' if args.quick else ''}median of "
        f"{args.repeat} repeats (jobs forward, then backward), every ratio measured in this "
        f"invocation; {wall:.0f} s wall. Build: {build()}.",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.platform()}. Parent peak RSS "
        f"{peak_rss_mb():.0f} MB; children's "
        f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB at most.",
        "",
        "| target | measured | met? |",
        "|---|---|---|",
        *(f"| {t} | {m} | {v} |" for t, m, v in rows),
        "",
    ]
    if top:
        lines.append(
            '`python -X importtime -c "import statecore"`, top 5 by cumulative time (one run): '
            + "; ".join(f"`{n}` {cum / 1e3:.1f} ms (self {s / 1e3:.1f})" for n, s, cum in top)
            + "."
        )
        lines.append("")
    for note in notes:
        lines += [f"- {note}"]
    if notes:
        lines.append("")
    if got.errors:
        lines.append("Failures:")
        lines.append("")
        for name, why in got.errors.items():
            lines += [f"- {name}:", "", "```", why.strip(), "```", ""]
    text = "\n".join(lines)
    print()
    print(text)
    if args.quick and not args.out:
        print("--quick: not written (give --out FILE to keep it)", file=sys.stderr)
    else:
        out = Path(args.out or HERE / "results" / "targets.md")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"written to {out}", file=sys.stderr)
    return 1 if got.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())

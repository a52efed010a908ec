"""Race machinery: many processes resuming one run, a resumer held between reading the
log and taking the lease, many processes appending runs to one store.

Each function returns what it saw (a list of problems, empty when every check held) so
that the tests assert and ``scripts/torture.py`` counts.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from statecore.backends import open_store
from statecore.fold import RunView
from statecore.runners import LocalRunner, replay, resume
from statecore.states import Success

from . import flows
from .flows import GATE_KEY, Line, read_lines
from .harness import (
    REPO,
    _kill,
    entity_runs,
    finish_in_process,
    raw_log,
    reference,
    side_env,
    spawn_drive,
    subprocess_env,
    summary,
    verify_cli,
)

CLI_FLOW = f"{REPO / 'tests' / 'torture' / 'cli_flow.py'}:flow"


def wait_file(path: Path, proc: subprocess.Popen[bytes] | None = None, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            raise RuntimeError(f"process ended ({proc.returncode}) first: {err.decode()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never appeared")
        time.sleep(0.005)


def interrupted_run(url: str, run_id: str, side: Path, starts: int) -> RunView:
    """A run whose driver was SIGKILLed once ``starts`` bodies had started and some
    of its events were committed."""
    proc = spawn_drive(url, run_id, side, "--lease-ttl", "30")
    store = open_store(url)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            began = sum(line.phase == "start" for line in read_lines(side))
            if began >= starts and store.head(run_id) >= 4:
                break
            time.sleep(0.001)
    finally:
        store.close()
    killed = _kill(proc, side, 0, 0.0)
    assert killed is not None, "the run finished before it could be interrupted"
    return replay(url, run_id)


def session_owners(view: RunView) -> list[str]:
    return [
        str((note.data or {}).get("owner"))
        for _, note in view.notes
        if note.code == "session-start"
    ]


def check_once(before: list[Line], after: list[Line], at_kill: RunView) -> list[str]:
    """Problems: a logged success that ran again, or an attempt that started twice."""
    problems = []
    succeeded = {e for e, run in entity_runs(at_kill).items() if isinstance(run.state, Success)}
    again = sorted({line.entity for line in after if line.entity in succeeded}, key=str)
    if again:
        problems.append(f"logged successes ran again: {again}")
    starts = Counter(
        (line.entity, line.attempt, line.extra) for line in after if line.phase == "start"
    )
    twice = sorted((k for k, n in starts.items() if n > 1), key=str)
    if twice:
        problems.append(f"attempts started more than once: {twice}")
    return problems


@dataclass
class RaceResult:
    drivers: int = 0
    refused: int = 0
    #: refusals that named the interrupted run's dead holder instead of the live one
    named_dead: int = 0
    problems: list[str] = field(default_factory=list)


def resume_race(url: str, workdir: Path, round_no: int, processes: int = 8) -> RaceResult:
    """``processes`` ``statecore resume --approve gate`` command lines started at once on
    one interrupted run: exactly one drives (its bodies wait until every other process
    has exited), the others exit 4 naming the holder; each body runs once."""
    out = RaceResult()
    run_id = f"race-{round_no}"
    side = workdir / "side"
    at_kill = interrupted_run(url, run_id, side, 6 + round_no % 20)
    before = read_lines(side)
    go, hold = workdir / "go", workdir / "hold"
    env = subprocess_env(side)
    env[flows.HOLD_ENV] = str(hold)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.torture.cli_gate",
                str(go),
                "resume",
                run_id,
                "--flow",
                CLI_FLOW,
                "--approve",
                GATE_KEY,
                "--store",
                url,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    go.touch()
    # every loser exits while the winner's bodies are held; then the winner may finish
    deadline = time.monotonic() + 180
    while sum(p.poll() is not None for p in procs) < processes - 1:
        if time.monotonic() > deadline:
            out.problems.append("the losers did not exit")
            break
        time.sleep(0.01)
    hold.touch()
    results = [(p.pid, p.wait(timeout=180), *p.communicate()) for p in procs]
    view = replay(url, run_id)
    owners = session_owners(view)[len(session_owners(at_kill)) :]
    out.drivers = len(owners)
    if len(owners) != 1:
        out.problems.append(f"{len(owners)} driver sessions started: {owners}")
    # the winner finishes (0), or stops at the gate (3) when the gate was not yet paused
    # when it asked to approve it (an approval is for a paused task)
    winners = [r for r in results if r[1] in (0, 3)]
    if len(winners) != 1:
        out.problems.append(f"{len(winners)} processes drove: {[r[:2] for r in results]}")
    holder = owners[0] if owners else "?"
    for pid, code, stdout, stderr in results:
        if code in (0, 3):
            if f":{pid}:" not in holder:
                out.problems.append(f"process {pid} exited {code} but {holder} drove")
            continue
        text = (stdout + stderr).decode()
        if code == 4 and holder in text:
            out.refused += 1
        elif code == 4 and any(o in text for o in session_owners(at_kill)):
            # refused, but named the dead holder: the known bug that
            # test_a_refused_resumer_names_the_live_holder pins down (xfail)
            out.refused += 1
            out.named_dead += 1
        else:
            out.problems.append(f"process {pid} exited {code} without naming {holder}: {text}")
    with side_env(side):
        store = open_store(url)
        try:
            finish_in_process(store, "torture", run_id)
        finally:
            store.close()
    view = replay(url, run_id)
    out.problems += check_once(before, read_lines(side)[len(before) :], at_kill)
    if not view.flow_state.is_successful():
        out.problems.append(f"the run ended {view.flow_state!r}")
    elif summary(view.task_states, list(view.keys)) != reference("torture")["summary"]:
        out.problems.append("results differ from an uninterrupted run")
    code, text = verify_cli(url, run_id)
    if code != 0:
        out.problems.append(f"verify exited {code}: {text}")
    return out


# -- the stale resumer -------------------------------------------------------------------


def stale_resumer(url: str, workdir: Path, mode: str, progress: str) -> list[str]:
    """A resumer (``resume`` or ``flow.run(run_id=R)``, approving the gate) reads the
    interrupted run's log, then is held before it takes the lease while another driver
    makes progress: ``finish`` (the run ends) or ``gate`` (it stops at the paused
    gate). Released, the stale resumer must run nothing that was logged meanwhile."""
    run_id = f"stale-{mode}-{progress}"
    side = workdir / "side"
    interrupted_run(url, run_id, side, 10)
    hold = workdir / "lease-hold"
    stale = spawn_drive(
        url,
        run_id,
        side,
        *("--mode", mode, "--approve", "--hold-before-lease", str(hold), "--lease-ttl", "30"),
    )
    wait_file(Path(str(hold) + ".reached"), stale)
    # the stale process has read the log; another driver moves the run on meanwhile
    with side_env(side):
        store = open_store(url)
        try:
            runner = LocalRunner(max_workers=4, lease_ttl=5.0, lease_renew=0.5)
            state = resume(run_id, flows.torture_flow, store=store, runner=runner)
            if progress == "finish":
                state = resume(
                    run_id, flows.torture_flow, store=store, runner=runner, approve=[GATE_KEY]
                )
        finally:
            store.close()
    moved = replay(url, run_id)
    before_rows = raw_log(url, run_id)
    before = read_lines(side)
    hold.touch()
    _, stderr = stale.communicate(timeout=180)
    problems: list[str] = []
    after = read_lines(side)[len(before) :]
    problems += check_once(before, after, moved)
    if raw_log(url, run_id)[: len(before_rows)] != before_rows:
        problems.append("committed rows changed")
    view = replay(url, run_id)
    if progress == "finish":
        if after:
            problems.append(f"the stale resumer ran bodies of a finished run: {after}")
        if view.head != moved.head:
            problems.append(f"the stale resumer appended {view.head - moved.head} events")
        if stale.returncode != 0:
            problems.append(f"stale resumer exited {stale.returncode}: {stderr.decode()}")
    elif mode == "resume":  # approving the gate, paused meanwhile: only it and total run
        ran = {line.key for line in after}
        if not ran <= {GATE_KEY, "total-1"}:
            problems.append(f"the stale resumer ran {sorted(ran)}, not just the gate and total")
        if stale.returncode != 0 or not view.flow_state.is_successful():
            problems.append(f"stale resumer exited {stale.returncode}: {stderr.decode()}")
    else:  # flow.run cannot approve: nothing is left for it to run
        if after:
            problems.append(f"the stale flow.run ran bodies: {after}")
        if stale.returncode != 3:
            problems.append(f"stale flow.run exited {stale.returncode}: {stderr.decode()}")
    if "ConcurrencyError" in stderr.decode():
        problems.append(f"a stale view reached an append: {stderr.decode()}")
    code, text = verify_cli(url, run_id)
    if code != 0:
        problems.append(f"verify exited {code}: {text}")
    del state
    return problems


def new_run_twice(url: str, workdir: Path, other_finishes: bool) -> list[str]:
    """Two processes start one new run id with ``flow.run(run_id=R)``; the first is held
    after it saw the id free and before it takes the lease, while the second runs the
    run (to its paused gate, or still running with its bodies held). Released, the first
    must get LeaseHeld and run no body."""
    run_id = f"new-twice-{other_finishes}"
    side = workdir / "side"
    hold, body_hold = workdir / "lease-hold", workdir / "body-hold"
    first = spawn_drive(
        url, run_id, side, "--mode", "run", "--hold-before-lease", str(hold), "--lease-ttl", "30"
    )
    wait_file(Path(str(hold) + ".reached"), first)
    env_extra = {} if other_finishes else {flows.HOLD_ENV: str(body_hold)}
    second = spawn_drive(url, run_id, side, "--mode", "run", "--lease-ttl", "30", env=env_extra)
    problems: list[str] = []
    if other_finishes:
        second.communicate(timeout=180)
        if second.returncode != 3:  # paused at the gate
            problems.append(f"the second process exited {second.returncode}")
    else:
        deadline = time.monotonic() + 120
        while not read_lines(side) and time.monotonic() < deadline:
            time.sleep(0.005)
    hold.touch()
    _, stderr = first.communicate(timeout=180)
    if first.returncode != 4 or "LeaseHeld" not in stderr.decode():
        problems.append(f"the held first process exited {first.returncode}: {stderr.decode()}")
    body_hold.touch()
    if not other_finishes:
        second.communicate(timeout=180)
        if second.returncode != 3:
            problems.append(f"the second process exited {second.returncode}")
    pids = {line.pid for line in read_lines(side)}
    if first.pid in pids:
        problems.append("the held first process ran bodies")
    starts = Counter(
        (line.entity, line.attempt, line.extra)
        for line in read_lines(side)
        if line.phase == "start"
    )
    if any(n > 1 for n in starts.values()):
        problems.append(f"bodies ran twice: {[k for k, n in starts.items() if n > 1]}")
    view = replay(url, run_id)
    if len(session_owners(view)) != 1:
        problems.append(f"sessions: {session_owners(view)}")
    return problems


# -- many appenders ----------------------------------------------------------------------


def many_appenders(url: str, workdir: Path, tag: str, processes: int = 8) -> list[str]:
    """``processes`` drivers each run a new run of the wide flow (200 tasks) into one
    store at once: no error, each log 1..n without gap or duplicate, chain intact, every
    body once, every run listed."""
    go = workdir / "go"
    procs = []
    for i in range(processes):
        side = workdir / f"side-{i}"
        procs.append(
            spawn_drive(
                url,
                f"append-{tag}-{i}",
                side,
                *("--flow", "wide", "--mode", "run", "--start-gate", str(go)),
            )
        )
    go.touch()
    problems: list[str] = []
    for i, proc in enumerate(procs):
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            problems.append(f"appender {i} exited {proc.returncode}: {err.decode()}")
    expected = reference("wide")["summary"]
    store = open_store(url)
    try:
        listed = {r.run_id for r in store.list_runs(limit=10_000)}
        for i in range(processes):
            run_id = f"append-{tag}-{i}"
            events = store.read(run_id)
            seqs = [e.seq for e in events]
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"{run_id}: sequence {seqs[:5]}... has gaps or duplicates")
            if {e.run_id for e in events} != {run_id}:
                problems.append(f"{run_id}: rows of other runs")
            code, text = verify_cli(url, run_id)
            if code != 0:
                problems.append(f"{run_id}: verify exited {code}: {text}")
            view = replay(store, run_id)
            if summary(view.task_states, list(view.keys)) != expected:
                problems.append(f"{run_id}: results differ")
            lines = read_lines(workdir / f"side-{i}")
            starts = Counter((line.entity, line.attempt) for line in lines if line.phase == "start")
            if len(starts) != len(reference("wide")["bodies"]) or max(starts.values()) != 1:
                problems.append(f"{run_id}: bodies did not run exactly once")
            if run_id not in listed:
                problems.append(f"{run_id}: not listed")
    finally:
        store.close()
    return problems


__all__ = ["many_appenders", "new_run_twice", "resume_race", "stale_resumer"]


# -- a driver frozen past its lease ------------------------------------------------------


def frozen_holder(url: str, workdir: Path) -> list[str]:
    """A driver is SIGSTOPped in the middle of the map for longer than its lease (1 s),
    another driver takes the expired lease and finishes the run, then the frozen one is
    SIGCONTed: it must start no body (every one is logged done by the other) and stop
    with LeaseLost, and the log must stay the other driver's."""
    import signal as sig

    run_id = "frozen"
    side = workdir / "side"
    frozen = spawn_drive(
        url,
        run_id,
        side,
        *("--lease-ttl", "1", "--lease-renew", "0.3", "--max-workers", "4"),
        env={
            flows.PAUSE_ENV: "0",
            flows.HOLD_ENV: str(workdir / "thaw"),
            flows.HOLD_KEY_ENV: "square-1",
        },
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and frozen.poll() is None:
        if sum(line.key == "square-1" for line in read_lines(side)) >= 4:
            time.sleep(0.05)  # the rest of the batch handed out, the bodies held
            break
        time.sleep(0.002)
    problems: list[str] = []
    if sum(line.key == "square-1" for line in read_lines(side)) < 4:
        problems.append("the frozen driver never reached the map")
    frozen.send_signal(sig.SIGSTOP)
    try:
        stopped_lines = read_lines(side)
        store = open_store(url)
        try:
            while (lease := store.get_lease(run_id)) is not None and lease.expires > time.time_ns():
                time.sleep(0.05)
            with side_env(side):
                state, _ = finish_in_process(store, "torture", run_id)
        finally:
            store.close()
        if not state.is_successful():
            problems.append(f"the taking-over driver ended {state!r}")
        finished = raw_log(url, run_id)
    finally:
        # the held bodies end the moment the frozen process runs again
        (workdir / "thaw").touch()
        frozen.send_signal(sig.SIGCONT)
    _, stderr = frozen.communicate(timeout=120)
    after = read_lines(side)
    late = [
        line
        for line in after[len(stopped_lines) :]
        if line.pid == frozen.pid and line.phase == "start"
    ]
    if late:
        problems.append(
            f"the frozen driver started {len(late)} bodies after it lost its lease, all "
            f"logged done by the other driver: {[(x.key, x.index) for x in late]}"
        )
    if frozen.returncode != 5:
        problems.append(f"the frozen driver exited {frozen.returncode}: {stderr.decode()[-300:]}")
    if raw_log(url, run_id) != finished:
        problems.append("the frozen driver changed the finished log")
    return problems


def refused_after_takeover(url: str, workdir: Path) -> list[str]:
    """A resumer is refused the lease of a run whose holder is dead; before it looks at
    who holds it, another resumer takes the run over: the refused one must exit 4
    naming the live holder, not the dead one."""
    run_id = "refused"
    side = workdir / "side"
    dead = session_owners(interrupted_run(url, run_id, side, 8))[-1]
    hold, body_hold = workdir / "refusal-hold", workdir / "body-hold"
    loser = spawn_drive(url, run_id, side, "--mode", "resume", "--hold-after-refusal", str(hold))
    wait_file(Path(str(hold) + ".reached"), loser)
    winner = spawn_drive(
        url, run_id, side, "--mode", "resume", env={flows.HOLD_ENV: str(body_hold)}
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and winner.poll() is None:
        if any(line.pid == winner.pid for line in read_lines(side)):
            break
        time.sleep(0.005)
    hold.touch()
    _, err = loser.communicate(timeout=120)
    body_hold.touch()
    winner.communicate(timeout=120)
    owners = session_owners(replay(url, run_id))
    live = owners[-1] if owners and owners[-1] != dead else "?"
    text = err.decode()
    problems = []
    if loser.returncode != 4 or live not in text:
        problems.append(f"the refused resumer exited {loser.returncode} naming not {live}: {text}")
    if f":{winner.pid}:" not in live:
        problems.append(f"the winner {winner.pid} did not drive: {owners}")
    return problems

"""The ``statecore`` command line: commands, exit statuses, and bad input that writes nothing.

Most tests drive the command in-process with click's CliRunner; a few run
``python -m statecore`` in a subprocess, as a user would. Example flows live in
tests/flows/demo.py; their tasks append their names to ``$STATECORE_TEST_COUNTER``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from statecore.backends import SQLiteStore, open_store
from statecore.cli.main import cli, parse_parameters, parse_time
from statecore.runners.loading import load_flow
from statecore.runners.local import replay, rerun

FLOWS = Path(__file__).parent.parent / "flows" / "demo.py"


def ref(name: str) -> str:
    return f"{FLOWS}:{name}"


@pytest.fixture
def counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ran.txt"
    path.write_text("")
    monkeypatch.setenv("STATECORE_TEST_COUNTER", str(path))
    monkeypatch.delenv("STATECORE_HMAC_KEY", raising=False)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


def store_url(db: Path) -> str:
    return f"sqlite:///{db}"  # db is absolute: sqlite:////tmp/...


def invoke(db: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--store", store_url(db)], catch_exceptions=False)


def ran(counter: Path) -> list[str]:
    return counter.read_text().split()


def heads(db: Path) -> dict[str, int]:
    """Every run's head in the store (what "nothing written" compares)."""
    if not db.exists():
        return {}
    with SQLiteStore(db) as store:
        return {m.run_id: store.head(m.run_id) for m in store.list_runs()}


# -- run and its exit statuses ------------------------------------------------------------


def test_run_success_then_show_timeline_logs_export_graph(counter: Path, db: Path) -> None:
    result = invoke(db, "run", ref("ok"), "-p", "n=2", "-p", "label=total", "--run-id", "r1")
    assert result.exit_code == 0, result.output
    assert "flow Success" in result.output

    with SQLiteStore(db) as store:
        view = replay(store, "r1")
    assert view.task_states["report"].result == "total: 5"
    assert view.parameters == {"n": 2, "label": "total"}

    show = invoke(db, "show", "r1")
    assert show.exit_code == 0, show.output
    for name in ("numbers", "square", "total", "report", "2 children: 2 Success"):
        assert name in show.output
    expanded = invoke(db, "show", "r1", "--children")
    assert "square[1]" in expanded.output

    timeline = invoke(db, "timeline", "r1")
    assert timeline.exit_code == 0
    assert "square[2]" in timeline.output and "report" in timeline.output  # the map, folded
    assert "square[0]" not in timeline.output
    children = invoke(db, "timeline", "r1", "--children")
    assert "square[0]" in children.output and "square[1]" in children.output

    logs = invoke(db, "logs", "r1")
    assert logs.exit_code == 0
    assert "INFO    numbers: making 2 numbers" in logs.output
    assert "WARNING report: total is 5" in logs.output

    export = invoke(db, "export", "r1")
    assert export.exit_code == 0
    records = [json.loads(line) for line in export.output.splitlines()]
    assert [r["seq"] for r in records] == list(range(1, heads(db)["r1"] + 1))
    assert records[0]["kind"] == "run" and records[0]["flow_name"] == "squares"
    assert records[0]["prev_hash"] == "" and all(len(r["prev_hash"]) == 32 for r in records[1:])
    report = [r for r in records if r.get("task") == "report-1" and r.get("new") == "Success"]
    assert report[0]["result"] == "total: 5"

    dot = invoke(db, "graph", ref("ok"))
    assert dot.exit_code == 0
    assert dot.output.startswith('digraph "squares"')
    assert '"numbers-1" -> "square-1" [style=dashed, label="x (mapped)"];' in dot.output
    mermaid = invoke(db, "graph", ref("ok"), "--format", "mermaid", "--run", "r1")
    assert mermaid.exit_code == 0
    assert "flowchart LR" in mermaid.output and "-.->|x mapped|" in mermaid.output
    assert "classDef Success" in mermaid.output


def test_run_failing_flow_exits_1(counter: Path, db: Path) -> None:
    result = invoke(db, "run", ref("failing"), "--run-id", "bad")
    assert result.exit_code == 1, result.output
    assert "cannot transform 3 rows" in result.output
    assert invoke(db, "show", "bad").exit_code == 1
    assert ran(counter) == ["load", "broken"]


def test_paused_run_exits_3_and_resume_approve_finishes_it(counter: Path, db: Path) -> None:
    result = invoke(db, "run", ref("paused"), "--run-id", "gate")
    assert result.exit_code == 3, result.output
    assert "--approve approve" in result.output
    assert invoke(db, "show", "gate").exit_code == 3

    again = invoke(db, "resume", "gate", "--flow", ref("paused"))
    assert again.exit_code == 3  # a resume without approval leaves the gate closed
    assert ran(counter) == ["prepare"]

    done = invoke(db, "resume", "gate", "--flow", ref("paused"), "--approve", "approve")
    assert done.exit_code == 0, done.output
    assert ran(counter) == ["prepare", "approve", "ship"]
    with SQLiteStore(db) as store:
        assert replay(store, "gate").task_states["ship"].result == "shipped 42"

    finished = invoke(db, "resume", "gate", "--flow", ref("paused"))
    assert finished.exit_code == 0 and "already finished" in finished.output
    assert ran(counter) == ["prepare", "approve", "ship"]


def test_interrupted_run_exits_3_and_resumes(counter: Path, db: Path) -> None:
    result = invoke(db, "run", ref("interrupted"), "--run-id", "cut")
    assert result.exit_code == 3, result.output
    assert "statecore resume cut" in result.output
    assert invoke(db, "show", "cut").exit_code == 3
    done = invoke(db, "resume", "cut", "--flow", ref("interrupted"))
    assert done.exit_code == 0, done.output
    assert ran(counter) == ["first", "dies_once", "dies_once"]


def test_run_id_of_a_finished_run_runs_nothing(counter: Path, db: Path) -> None:
    assert invoke(db, "run", ref("ok"), "--run-id", "r").exit_code == 0
    before = ran(counter)
    again = invoke(db, "run", ref("ok"), "--run-id", "r")
    assert again.exit_code == 0
    assert "already existed" in again.output
    assert ran(counter) == before


# -- exit status 4 -------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_store_unavailable_exits_4(counter: Path) -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0?retries=0"
    for args in (["run", ref("ok")], ["show", "r1"], ["runs"]):
        result = CliRunner().invoke(cli, [*args, "--store", url])
        assert result.exit_code == 4, result.output
        assert "unavailable" in result.output
    assert ran(counter) == []


def test_held_lease_exits_4_and_changes_nothing(counter: Path, db: Path) -> None:
    assert invoke(db, "run", ref("paused"), "--run-id", "held").exit_code == 3
    with SQLiteStore(db) as store:
        store.acquire_lease("held", owner="elsewhere:1:abc", ttl=60, now=time.time_ns())
    before = heads(db)
    result = invoke(db, "resume", "held", "--flow", ref("paused"), "--approve", "approve")
    assert result.exit_code == 4, result.output
    assert "elsewhere:1:abc" in result.output
    assert heads(db) == before
    assert ran(counter) == ["prepare"]


# -- bad input: exit 2, nothing written -----------------------------------------------------


def test_bad_input_exits_2_and_writes_nothing(counter: Path, db: Path, tmp_path: Path) -> None:
    assert invoke(db, "run", ref("ok"), "--run-id", "r1").exit_code == 0
    assert invoke(db, "run", ref("paused"), "--run-id", "p1").exit_code == 3
    before = heads(db)
    ran_before = ran(counter)
    url = store_url(db)
    cases = [
        (["show", "nope"], "no run 'nope' in store " + url),
        (["timeline", "nope"], "no run 'nope'"),
        (["logs", "nope"], "no run 'nope'"),
        (["export", "nope"], "no run 'nope'"),
        (["verify", "nope"], "no run 'nope'"),
        (["cancel", "nope"], "no run 'nope'"),
        (["resume", "nope", "--flow", ref("ok")], "no run 'nope'"),
        (["rerun", "nope", "--from", "total", "--flow", ref("ok")], "no run 'nope'"),
        (["timeline", "r1", "--html", str(tmp_path)], "is a directory"),
        (["timeline", "r1", "--html", str(tmp_path / "no" / "x.html")], "does not exist"),
        (["export", "r1", "--output", str(tmp_path)], "is a directory"),
        (["run", "no-colon"], "does not name a flow"),
        (["run", f"{FLOWS}:"], "does not name a flow"),
        (["run", str(tmp_path / "missing.py") + ":flow"], "no file"),
        (["run", f"{FLOWS}:nope"], "has no attribute 'nope'"),
        (["run", f"{FLOWS}:square"], "not a statecore Flow"),
        (["run", f"{FLOWS}:1flow"], "not a Python attribute name"),
        (["graph", "flows.txt:flow"], "no file"),
        (["run", ref("ok"), "-p", "n"], "expected KEY=VALUE"),
        (["run", ref("ok"), "-p", "=3"], "expected KEY=VALUE"),
        (["run", ref("ok"), "-p", "zzz=1"], "unexpected parameters: zzz"),
        (["run", ref("ok"), "--run-id", "r1", "-p", "n=5"], "parameters"),
        (["run", ref("failing"), "--run-id", "r1"], "another flow graph"),
        (["resume", "r1", "--flow", ref("failing")], "run of flow 'squares'"),
        (["resume", "p1", "--flow", ref("paused"), "--approve", "nope"], "no task 'nope'"),
        (["rerun", "r1", "--from", "nope", "--flow", ref("ok")], "no task 'nope'"),
        (["rerun", "r1", "--from", "total", "--flow", ref("failing")], "no task 'total'"),
        (["rerun", "r1", "--from", "report", "--flow", ref("paused")], "no task 'report'"),
        (["runs", "--state", "Bogus"], "unknown state name 'Bogus'"),
        (["runs", "--since", "yesterday-ish"], "not an ISO 8601 time"),
        (["prune", "--before", "soon"], "not an ISO 8601 time"),
    ]
    for args, message in cases:
        result = invoke(db, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert heads(db) == before
    assert ran(counter) == ran_before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ran.txt", *_db_files(db)])


def _db_files(db: Path) -> list[str]:
    return [p.name for p in db.parent.iterdir() if p.name.startswith(db.name)]


def test_ambiguous_task_name_is_refused(counter: Path, db: Path) -> None:
    assert invoke(db, "run", ref("twins"), "--run-id", "t").exit_code == 0
    before = heads(db)
    result = invoke(db, "rerun", "t", "--from", "square", "--flow", ref("twins"))
    assert result.exit_code == 2
    assert "ambiguous" in result.output and "square-1" in result.output
    assert heads(db) == before
    ok = invoke(db, "rerun", "t", "--from", "square-2", "--flow", ref("twins"))
    assert ok.exit_code == 0, ok.output


def test_corrupt_log_exits_2(counter: Path, db: Path) -> None:
    import sqlite3

    assert invoke(db, "run", ref("ok"), "--run-id", "r").exit_code == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET payload = X'c1c1' WHERE run_id = 'r' AND seq = 3")
    for command in ("show", "timeline", "logs", "export"):
        result = invoke(db, command, "r")
        assert result.exit_code == 2, (command, result.output)
        assert "event 3" in result.output


def test_not_found_names_the_default_store_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATECORE_STORE", raising=False)
    result = CliRunner().invoke(cli, ["show", "r"])
    assert result.exit_code == 2
    assert "no run 'r' in store sqlite:///.statecore/runs.db" in result.output
    assert not (tmp_path / ".statecore").exists()

    monkeypatch.setenv("STATECORE_STORE", f"sqlite:///{tmp_path}/env.db")
    result = CliRunner().invoke(cli, ["logs", "r"])
    assert result.exit_code == 2
    assert f"sqlite:///{tmp_path}/env.db" in result.output
    assert "no runs" in CliRunner().invoke(cli, ["runs"]).output
    assert list(tmp_path.iterdir()) == []


# -- rerun ------------------------------------------------------------------------------------


def test_rerun_reuses_upstream_results(counter: Path, db: Path) -> None:
    assert invoke(db, "run", ref("failing"), "--run-id", "first").exit_code == 1
    assert ran(counter) == ["load", "broken"]
    counter.write_text("")

    result = invoke(db, "rerun", "first", "--from", "broken", "--flow", ref("failing"))
    assert result.exit_code == 1, result.output  # broken is still broken
    new_id = result.output.strip().splitlines()[-1]
    assert ran(counter) == ["broken"]  # load's logged result was reused, not recomputed

    with SQLiteStore(db) as store:
        view = replay(store, new_id)
        meta = store.get_run(new_id)
    assert view.parent_run == "first" and meta is not None and meta.parent_run == "first"
    assert view.task_states["load"].result == {"rows": 3}
    assert view.runs[view.by_key["load-1"]].attempt == 0  # reused: never started here
    assert "rerun of first" in invoke(db, "show", new_id).output


def test_rerun_python_api(counter: Path, db: Path) -> None:
    flow = load_flow(ref("chain"))
    with SQLiteStore(db) as store:
        first = flow.run(parameters={"n": 3}, store=store)
        assert first.run_id is not None
        counter.write_text("")
        state = rerun(first.run_id, flow, "transform", store=store)
        assert state.is_successful()
        assert state.run_id is not None and state.run_id != first.run_id
        assert state.result["load_rows"].result == "loaded [0, 10, 20]"
        view = replay(store, state.run_id)
        assert view.parent_run == first.run_id and view.parameters == {"n": 3}
    assert ran(counter) == ["transform", "load_rows"]


def test_rerun_reuses_mapped_children(counter: Path, db: Path) -> None:
    assert invoke(db, "run", ref("ok"), "--run-id", "m").exit_code == 0
    counter.write_text("")
    assert invoke(db, "rerun", "m", "--from", "total", "--flow", ref("ok")).exit_code == 0
    assert ran(counter) == ["total", "report"]


# -- runs, cancel, prune --------------------------------------------------------------------------


def test_runs_table_and_filters(counter: Path, db: Path) -> None:
    assert invoke(db, "run", ref("ok"), "--run-id", "a-ok").exit_code == 0
    assert invoke(db, "run", ref("failing"), "--run-id", "b-bad").exit_code == 1
    listed = invoke(db, "runs")
    assert listed.exit_code == 0
    assert "a-ok" in listed.output and "b-bad" in listed.output
    assert listed.output.index("b-bad") < listed.output.index("a-ok")  # newest first
    only_failed = invoke(db, "runs", "--state", "Failed").output
    assert "b-bad" in only_failed and "a-ok" not in only_failed
    by_flow = invoke(db, "runs", "--flow", "squares").output
    assert "a-ok" in by_flow and "b-bad" not in by_flow
    assert "b-bad" not in invoke(db, "runs", "--limit", "1", "--flow", "squares").output
    assert "no runs match" in invoke(db, "runs", "--since", "2999-01-01").output
    assert "a-ok" in invoke(db, "runs", "--since", "1h").output
    assert "no runs match" in invoke(db, "runs", "--until", "1h").output


def test_cancel(counter: Path, db: Path) -> None:
    assert invoke(db, "run", ref("paused"), "--run-id", "p").exit_code == 3
    result = invoke(db, "cancel", "p")
    assert result.exit_code == 0
    assert "no process is driving it" in result.output
    assert "when it is next resumed" in result.output
    with SQLiteStore(db) as store:
        assert store.cancel_requested("p", now=time.time_ns())
        store.acquire_lease("p", owner="host:99:live", ttl=60, now=time.time_ns())
    live = invoke(db, "cancel", "p")
    assert live.exit_code == 0 and "host:99:live" in live.output

    assert invoke(db, "run", ref("ok"), "--run-id", "done").exit_code == 0
    finished = invoke(db, "cancel", "done")
    assert finished.exit_code == 0 and "nothing to cancel" in finished.output
    with SQLiteStore(db) as store:
        assert not store.cancel_requested("done", now=time.time_ns())


def test_prune(counter: Path, db: Path) -> None:
    assert invoke(db, "run", ref("ok"), "--run-id", "old").exit_code == 0
    assert invoke(db, "run", ref("paused"), "--run-id", "open").exit_code == 3
    assert "pruned 0" in invoke(db, "prune", "--before", "1970-01-02").output
    result = invoke(db, "prune", "--before", "2999-01-01T00:00:00+00:00")
    assert result.exit_code == 0 and "pruned 1" in result.output
    assert set(heads(db)) == {"open"}  # unfinished runs are kept


# -- parsing helpers, python -m ---------------------------------------------------------------


def test_parse_parameters_and_times() -> None:
    assert parse_parameters(["a=1", "b=x", "c=[1]", 'd={"k": null}', "e=", "f=a=b"]) == {
        "a": 1,
        "b": "x",
        "c": [1],
        "d": {"k": None},
        "e": "",
        "f": "a=b",
    }
    assert parse_time("1970-01-01T00:00:01+00:00") == 10**9
    assert parse_time("1970-01-01T01:00:00+01:00") == 0
    assert parse_time("1970-01-01") == 0
    assert abs(parse_time("1h") - (time.time_ns() - 3600 * 10**9)) < 10 * 10**9


def test_python_m_statecore(counter: Path, db: Path) -> None:
    env = {**os.environ, "STATECORE_STORE": store_url(db)}
    done = subprocess.run(
        [sys.executable, "-m", "statecore", "run", ref("ok"), "--run-id", "sub"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "statecore", "show", "sub"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert shown.returncode == 0 and "report" in shown.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "statecore", "show", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr
    with open_store(store_url(db)) as store:
        assert store.head("sub") > 0


GATE_V1 = """
from statecore import Flow, task, triggers

@task
def prepare():
    return 41

@task(trigger=triggers.manual_only)
def approve(x):
    return x + 1

with Flow("gate-file") as flow:
    approve(prepare())
"""


def test_resume_refuses_a_changed_structure_and_notes_changed_code(
    counter: Path, db: Path, tmp_path: Path
) -> None:
    v1 = tmp_path / "v1.py"
    v1.write_text(GATE_V1)
    assert invoke(db, "run", f"{v1}:flow", "--run-id", "g").exit_code == 3
    before = heads(db)

    v2 = tmp_path / "v2.py"
    v2.write_text(GATE_V1 + "    prepare()\n")
    refused = invoke(db, "resume", "g", "--flow", f"{v2}:flow", "--approve", "approve")
    assert refused.exit_code == 2, refused.output
    assert "changed since run 'g' started" in refused.output
    assert "prepare-2" in refused.output and "--allow-changed" in refused.output
    assert heads(db) == before

    v3 = tmp_path / "v3.py"
    v3.write_text(GATE_V1.replace("return x + 1", "return x + 2"))
    done = invoke(db, "resume", "g", "--flow", f"{v3}:flow", "--approve", "approve")
    assert done.exit_code == 0, done.output
    shown = invoke(db, "show", "g")
    assert "[code-changed]" in shown.output and "approve-1" in shown.output
    assert "note:code-changed" in invoke(db, "logs", "g").output


def test_commands_on_a_redis_store(
    counter: Path, redis_url: str, redis_cleanup: Callable[[str], None]
) -> None:
    from tests.conftest import unique_prefix

    prefix = unique_prefix()
    redis_cleanup(prefix)
    sep = "&" if "?" in redis_url else "?"
    url = f"{redis_url}{sep}prefix={prefix}"

    def call(*args: str) -> Result:
        return CliRunner().invoke(cli, [*args, "--store", url], catch_exceptions=False)

    assert call("run", ref("paused"), "--run-id", "rp").exit_code == 3
    assert call("run", ref("ok"), "--run-id", "ro").exit_code == 0
    assert "rp" in call("runs").output
    assert call("verify", "ro").exit_code == 0
    assert len(call("export", "ro").output.splitlines()) > 5
    assert "no process is driving it" in call("cancel", "rp").output
    missing = call("show", "nope")
    assert missing.exit_code == 2 and f"prefix={prefix}" in missing.output


def test_a_cancelled_run_is_cancelled_when_resumed(counter: Path, db: Path) -> None:
    assert invoke(db, "run", ref("paused"), "--run-id", "c").exit_code == 3
    assert invoke(db, "cancel", "c").exit_code == 0
    result = invoke(db, "resume", "c", "--flow", ref("paused"), "--approve", "approve")
    assert result.exit_code == 1, result.output
    with SQLiteStore(db) as store:
        view = replay(store, "c")
    assert view.flow_state.name == "Cancelled"
    assert view.task_states["ship"].name == "Cancelled"
    assert ran(counter) == ["prepare"]


def test_cancel_stops_a_live_run(counter: Path, db: Path) -> None:
    env = {**os.environ, "STATECORE_STORE": store_url(db)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "statecore", "run", ref("slow"), "--run-id", "live"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while "step" not in ran(counter) or not heads(db).get("live"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        result = invoke(db, "cancel", "live")
        assert result.exit_code == 0
        assert "its driver" in result.output and "will start no more tasks" in result.output
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, (out, err)
    assert "flow Cancelled" in out
    with SQLiteStore(db) as store:
        view = replay(store, "live")
    assert view.flow_state.name == "Cancelled"
    states = [view.state_of(i).name for i in range(len(view.keys))]
    assert "Cancelled" in states and states.count("Success") < 4
    assert len(ran(counter)) < 4


def test_a_damaged_log_shows_its_intact_part_and_names_the_first_bad_event(
    counter: Path, db: Path
) -> None:
    """show, logs and timeline draw the run as of the event before the damage, export
    writes every event (the damaged one as its stored bytes); each names the event and
    exits 2, and the stored log is untouched."""
    import sqlite3

    assert invoke(db, "run", ref("ok"), "--run-id", "d").exit_code == 0
    head = heads(db)["d"]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET payload = x'c1c1' WHERE run_id = 'd' AND seq = 7")
    why = f"damaged at event 7 of {head}"
    shown = invoke(db, "show", "d")
    assert shown.exit_code == 2 and why in shown.output and "as of event 6" in shown.output
    assert "Running" in shown.output or "Success" in shown.output  # the table was drawn
    for args in (["logs", "d"], ["timeline", "d"]):
        result = invoke(db, *args)
        assert result.exit_code == 2 and why in result.output, args
    exported = invoke(db, "export", "d")
    assert exported.exit_code == 2 and "the first event 7" in exported.output
    records = [json.loads(line) for line in exported.output.splitlines() if line.startswith("{")]
    assert [r["seq"] for r in records] == list(range(1, head + 1))
    assert records[6]["payload_hex"] == "c1c1" and "cannot be decoded" in records[6]["damaged"]
    assert all("damaged" not in r for i, r in enumerate(records) if i != 6)
    assert heads(db)["d"] == head

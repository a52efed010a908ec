"""Audit: ``statecore verify`` (hash chain, HMAC, edit detection), ``export``, ``logs``."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from statecore.audit import iso_time, json_safe, log_lines, verify_chain
from statecore.backends import MemoryStore, SQLiteStore
from statecore.cli.main import cli
from statecore.events import Note, StateChanged, StoredEvent, chain_hash, decode_body, encode_body
from statecore.runners.loading import FlowLoadError, load_flow, split_flow_ref
from statecore.runners.local import replay

FLOWS = Path(__file__).parent.parent / "flows" / "demo.py"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATECORE_TEST_COUNTER", str(tmp_path / "ran.txt"))
    monkeypatch.delenv("STATECORE_HMAC_KEY", raising=False)


def invoke(db: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--store", f"sqlite:///{db}"], catch_exceptions=False)


def run(db: Path, flow: str, run_id: str) -> None:
    result = invoke(db, "run", f"{FLOWS}:{flow}", "--run-id", run_id)
    assert result.exit_code in (0, 1, 3), result.output


def events(db: Path, run_id: str) -> list[StoredEvent]:
    with SQLiteStore(db) as store:
        return store.read(run_id)


def head_line(output: str) -> str:
    line = next(x for x in output.splitlines() if x.startswith("head "))
    return line.split()[1]


# -- verify ---------------------------------------------------------------------------------


def test_verify_intact_chain_prints_the_head_hash(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run(db, "ok", "r")
    result = invoke(db, "verify", "r")
    assert result.exit_code == 0, result.output
    assert "hash chain intact (unkeyed BLAKE2b)" in result.output
    log = events(db, "r")
    assert head_line(result.output) == chain_hash(log[-1]).hex()
    assert f"after event {log[-1].seq}" in result.output
    anchored = invoke(db, "verify", "r", "--expect-head", head_line(result.output))
    assert anchored.exit_code == 0


def tamper(db: Path, run_id: str, seq: int) -> None:
    """Rewrite one event's payload as an editor with file access would: decodable."""
    event = next(e for e in events(db, run_id) if e.seq == seq)
    body = decode_body(event)
    forged: StateChanged | Note
    if isinstance(body, Note):  # e.g. the run's last event, its driver's session end
        forged = Note(body.code, "forged", body.data)
    else:
        assert isinstance(body, StateChanged)
        forged = StateChanged(
            body.task,
            body.index,
            body.prev,
            body.new,
            body.attempt,
            "forged",
            999,
            True,
            body.extra,
        )
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE events SET payload = ? WHERE run_id = ? AND seq = ?",
            (encode_body(forged), run_id, seq),
        )


def test_verify_names_the_edited_event(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run(db, "ok", "r")
    log = events(db, "r")
    target = next(e.seq for e in log if e.kind == "state" and e.seq < len(log) - 1)
    tamper(db, "r", target)
    # The edit is invisible to a reader of the log...
    assert invoke(db, "show", "r").exit_code == 0
    # ...but not to verify, which names the edited event and the link that broke.
    result = invoke(db, "verify", "r")
    assert result.exit_code == 2, result.output
    assert f"BROKEN at event {target + 1}" in result.output
    assert f"event {target} was altered" in result.output
    assert "different key" not in result.output


def test_an_edit_of_the_last_event_is_caught_by_the_anchored_head(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run(db, "ok", "r")
    anchored = head_line(invoke(db, "verify", "r").output)
    last = events(db, "r")[-1].seq
    tamper(db, "r", last)
    assert invoke(db, "verify", "r").exit_code == 0  # no later link to break
    result = invoke(db, "verify", "r", "--expect-head", anchored)
    assert result.exit_code == 2
    assert "is not the expected" in result.output


def test_verify_detects_removed_events(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run(db, "ok", "r")
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM events WHERE run_id = 'r' AND seq = 4")
    result = invoke(db, "verify", "r")
    assert result.exit_code == 2
    assert "BROKEN at event 5" in result.output and "removed or inserted" in result.output


def test_hmac_key_changes_the_head_and_is_needed_to_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "runs.db"
    monkeypatch.setenv("STATECORE_HMAC_KEY", "k1")
    run(db, "ok", "keyed")
    result = invoke(db, "verify", "keyed")
    assert result.exit_code == 0, result.output
    assert "HMAC (key from STATECORE_HMAC_KEY)" in result.output
    keyed_head = head_line(result.output)
    log = events(db, "keyed")
    assert keyed_head == chain_hash(log[-1], b"k1").hex()
    assert keyed_head != chain_hash(log[-1]).hex()

    monkeypatch.setenv("STATECORE_HMAC_KEY", "k2")
    wrong = invoke(db, "verify", "keyed")
    assert wrong.exit_code == 2
    assert "BROKEN at event 2" in wrong.output and "different key" in wrong.output
    monkeypatch.delenv("STATECORE_HMAC_KEY")
    assert invoke(db, "verify", "keyed").exit_code == 2

    # Same flow, no key: the same kind of run ends in a different head.
    run(db, "ok", "plain")
    assert head_line(invoke(db, "verify", "plain").output) != keyed_head


def test_verify_chain_unit() -> None:
    def ev(seq: int, prev: bytes, payload: bytes = b"x") -> StoredEvent:
        return StoredEvent("r", seq, 0, prev, "note", seq, payload)

    first = ev(1, b"")
    second = ev(2, chain_hash(first))
    third = ev(3, chain_hash(second))
    assert verify_chain("r", [first, second, third]).ok
    assert verify_chain("r", [first, second, third]).head == chain_hash(third).hex()
    edited = ev(2, chain_hash(first), b"y")
    result = verify_chain("r", [first, edited, third])
    assert result.broken_at == 3 and "event 2 was altered" in result.reason
    assert verify_chain("r", [ev(1, b"junk")]).broken_at == 1
    assert verify_chain("r", []).head == ""


# -- export -----------------------------------------------------------------------------------


def test_export_is_json_lines_with_the_documented_schema(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run(db, "odd", "o")
    out = tmp_path / "o.jsonl"
    result = invoke(db, "export", "o", "--output", str(out))
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    log = events(db, "o")
    assert len(records) == len(log)
    envelope = {"run_id", "seq", "ts", "ts_iso", "epoch", "kind", "prev_hash"}
    bodies = {
        "run": {"flow_name", "graph", "parameters", "parent_run"},
        "state": {"task", "index", "prev", "new", "attempt", "message", "result"}
        | {"result_stored", "extra"},
        "log": {"task", "index", "level", "message"},
        "note": {"code", "message", "data"},
    }
    for record, event in zip(records, log, strict=True):
        assert set(record) == envelope | bodies[record["kind"]]
        assert record["seq"] == event.seq and record["ts"] == event.ts
        assert record["prev_hash"] == event.prev_hash.hex()
        assert record["ts_iso"] == iso_time(event.ts)
    result_record = next(
        r for r in records if r.get("task") == "odd_values-1" and r["new"] == "Success"
    )
    value = result_record["result"]
    assert value["when"] == "datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)"
    assert value["pair"] == "(1, 2)"
    assert value["nan"] == "nan"
    assert value["nested"] == [1, "two", {"three": 3.0}]
    assert value["7"] == "int key"
    assert invoke(db, "export", "o").output.splitlines() == lines


def test_json_safe_and_iso_time() -> None:
    assert json_safe({"a": [1, {"b": None}], 2: {1, 2} - {1}}) == {
        "a": [1, {"b": None}],
        "2": "{2}",
    }
    assert json_safe(math.inf) == "inf" and json_safe(b"x") == "b'x'"
    assert json_safe(ValueError("boom")) == "ValueError('boom')"
    assert iso_time(1) == "1970-01-01T00:00:00.000000001Z"


# -- logs ---------------------------------------------------------------------------------------


def test_logs_show_task_lines_and_notes_in_time_order(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run(db, "mixed", "m")
    result = invoke(db, "logs", "m")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [x.split(": ", 1)[1] for x in lines if " flaky: " in x] == [
        f"flaky attempt {i}" for i in (1, 2, 3)
    ]
    assert any("halve[0]: halving 1" in x for x in lines)
    assert lines == sorted(lines)  # ISO timestamps sort as text

    with SQLiteStore(db) as store:
        view = replay(store, "m")
    assert [line.message for line in log_lines(view, notes=False)] == [
        r.message for _, r in view.logs
    ]
    # the driver's session notes are lines too, in time order among the task lines
    codes = [line.source for line in log_lines(view) if line.level == "NOTE"]
    assert codes == ["note:session-start", "note:session-end"]


def test_logs_include_run_notes(tmp_path: Path) -> None:
    store = MemoryStore()
    flow = load_flow(f"{FLOWS}:interrupted")
    (tmp_path / "ran.txt").write_text("")
    with pytest.raises(KeyboardInterrupt):
        flow.run(store=store, run_id="i")
    from statecore.events import Note
    from statecore.runners.journal import Journal

    view = replay(store, "i")
    journal = Journal(store, "i", head=view.head, last_event=view.last_event)
    journal.add(Note("code-changed", "task code changed since the run started: x", None), 5)
    journal.flush()
    lines = log_lines(replay(store, "i"))
    assert any(line.level == "NOTE" and line.source == "note:code-changed" for line in lines)
    assert not any(line.level == "NOTE" for line in log_lines(replay(store, "i"), notes=False))


# -- loading -------------------------------------------------------------------------------------


def test_flow_references(tmp_path: Path) -> None:
    assert split_flow_ref("a/b.py:flow") == (Path("a/b.py"), "flow")
    assert split_flow_ref("C:/x/b.py:flow") == (Path("C:/x/b.py"), "flow")
    assert load_flow(f"{FLOWS}:ok").name == "squares"
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no import for you')\n")
    with pytest.raises(FlowLoadError, match="no import for you"):
        load_flow(f"{broken}:flow")
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(FlowLoadError, match="SystemExit"):
        load_flow(f"{exits}:flow")
    text = tmp_path / "flow.txt"
    text.write_text("")
    with pytest.raises(FlowLoadError, match=r"not a \.py file"):
        load_flow(f"{text}:flow")
    with pytest.raises(FlowLoadError, match="flows in it: "):
        load_flow(f"{FLOWS}:nope")


@pytest.mark.parametrize(
    "module",
    ["statecore.audit", "statecore.cli.main", "statecore.runners.loading"],
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0

"""Results encrypted at rest: STATECORE_ENCRYPTION_KEY, AES-256-GCM, never garbage.

With the key set, every stored result (and a Cached state's inputs) is sealed; the raw
SQLite file and the Redis keys hold no result in clear; replay, resume, ``show`` and
``export`` with the key see the values; without it (or with another key) the readers
print everything but the results (``<encrypted>``), and a task that would need such a
value is refused with an EncryptionError naming it and why.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from statecore import Flow, task
from statecore.audit import export_records
from statecore.backends import SQLiteStore, Store
from statecore.cli.main import cli
from statecore.errors import CorruptEvent
from statecore.runners import LocalRunner, replay, resume
from statecore.runners.encryption import (
    ENV_KEY,
    Encrypted,
    EncryptionError,
    Sealed,
    new_key,
    seal,
    unseal,
)
from statecore.serialization import packb

from ..conftest import unique_prefix
from ..secret_canary import assert_absent, new_canary, scan_dir, scan_redis, scan_texts

RUNNER = {"lease_ttl": 1.0, "lease_renew": 0.3}
CANARY = new_canary("plain")  # a result value, not a secret: only encryption hides it
interrupt = {"armed": False}


@task
def produce() -> dict[str, Any]:
    return {"value": CANARY, "n": 3}


@task
def consume(d: dict[str, Any]) -> str:
    if interrupt["armed"]:
        interrupt["armed"] = False
        raise KeyboardInterrupt
    return str(d["value"]) + "!"


@task
def split(d: dict[str, Any]) -> list[str]:
    return [f"{d['value']}-{i}" for i in range(d["n"])]


@task
def child(x: str) -> str:
    return x.upper().lower()  # the same text again, stored per child


@task
def total(xs: list[str]) -> int:
    return sum(len(x) for x in xs)


def enc_flow() -> Flow:
    with Flow("encrypted") as flow:
        d = produce()
        consume(d)
        total(child.map(split(d)))
    return flow


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    k = new_key()
    monkeypatch.setenv(ENV_KEY, k)
    return k


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[tuple[Path, Store]]:
    path = tmp_path / "db" / "runs.db"
    path.parent.mkdir()
    store = SQLiteStore(path)
    try:
        yield path, store
    finally:
        store.close()


def run(store: Store) -> str:
    state = enc_flow().run(store=store, runner=LocalRunner(**RUNNER))
    assert state.is_successful()
    assert state.result["consume-1"].result == CANARY + "!"  # the run sees plain values
    return state.run_id


def test_the_key_is_base64_of_32_bytes_from_the_module_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "statecore.runners.encryption"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert len(base64.b64decode(out, validate=True)) == 32
    assert out != new_key()


def test_results_are_not_in_clear_at_rest_and_read_back_with_the_key(
    key: str, sqlite: tuple[Path, Store]
) -> None:
    path, store = sqlite
    run_id = run(store)
    assert_absent(scan_dir(CANARY, path.parent))
    view = replay(store, run_id)
    assert view.task_states["produce-1"].result == {"value": CANARY, "n": 3}
    assert view.task_states["total-1"].result == 3 * len(f"{CANARY}-0")
    children = view.task_states["child-1"].map_states
    assert [c.result for c in children] == [f"{CANARY}-{i}" for i in range(3)]


def test_export_and_show_with_the_key_print_the_values(
    key: str, sqlite: tuple[Path, Store]
) -> None:
    path, store = sqlite
    run_id = run(store)
    out = CliRunner().invoke(cli, ["export", run_id, "--store", f"sqlite:///{path}"])
    assert out.exit_code == 0, out.output
    assert CANARY in out.output and "<encrypted>" not in out.output


def test_without_the_key_readers_show_everything_but_the_results(
    key: str, sqlite: tuple[Path, Store], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, store = sqlite
    run_id = run(store)
    monkeypatch.delenv(ENV_KEY)
    view = replay(store, run_id)
    assert view.flow_state.is_successful()
    result = view.task_states["produce-1"].result
    assert isinstance(result, Encrypted) and repr(result) == "<encrypted>"
    assert f"{ENV_KEY} is not set" in result.reason
    url = f"sqlite:///{path}"
    runner = CliRunner()
    texts: dict[str, str] = {}
    for name, args in {
        "export": ["export", run_id],
        "show": ["show", run_id, "--children"],
        "logs": ["logs", run_id],
        "timeline --html": ["timeline", run_id, "--html", str(tmp_path / "t.html")],
    }.items():
        out = runner.invoke(cli, [*args, "--store", url], catch_exceptions=False)
        assert out.exit_code == 0, (name, out.output)
        texts[name] = out.output
    assert texts["export"].count('"result": "<encrypted>"') >= 3
    assert "Success" in texts["show"] and "produce" in texts["show"]
    texts["page"] = (tmp_path / "t.html").read_text()
    assert_absent(scan_texts(CANARY, texts))


def interrupted_run(store: Store) -> str:
    interrupt["armed"] = True
    flow = enc_flow()
    with pytest.raises(KeyboardInterrupt):
        flow.run(store=store, runner=LocalRunner(max_workers=1, **RUNNER), run_id="enc-r")
    view = replay(store, "enc-r")
    assert not view.task_states["consume-1"].is_finished()
    return "enc-r"


def test_resume_with_the_key_decrypts_the_inputs(key: str, sqlite: tuple[Path, Store]) -> None:
    _, store = sqlite
    run_id = interrupted_run(store)
    state = resume(run_id, enc_flow(), store=store, runner=LocalRunner(**RUNNER))
    assert state.is_successful()
    assert state.result["consume-1"].result == CANARY + "!"


@pytest.mark.parametrize("how", ["missing", "other key"])
def test_resume_without_the_right_key_is_a_clear_error(
    how: str, key: str, sqlite: tuple[Path, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store = sqlite
    run_id = interrupted_run(store)
    if how == "missing":
        monkeypatch.delenv(ENV_KEY)
        why = f"{ENV_KEY} is not set"
    else:
        monkeypatch.setenv(ENV_KEY, new_key())
        why = "encrypted with another key"
    with pytest.raises(EncryptionError, match="cannot run: its input 'd' is unreadable") as info:
        resume(run_id, enc_flow(), store=store, runner=LocalRunner(**RUNNER))
    assert why in str(info.value) and "produce-1" in str(info.value)
    monkeypatch.setenv(ENV_KEY, key)  # the run is intact: the right key finishes it
    state = resume(run_id, enc_flow(), store=store, runner=LocalRunner(**RUNNER))
    assert state.result["consume-1"].result == CANARY + "!"


def test_a_malformed_key_is_refused_before_anything_is_written(
    sqlite: tuple[Path, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store = sqlite
    monkeypatch.setenv(ENV_KEY, base64.b64encode(b"short").decode())
    with pytest.raises(EncryptionError, match="base64 of 32 random bytes"):
        enc_flow().run(store=store, run_id="bad-key")
    assert store.head("bad-key") == 0


def test_sealed_values_resist_tampering_and_moving() -> None:
    k = base64.b64decode(new_key())
    origin = ("run-1", "produce-1", None, 1, "Success")
    blob = seal({"v": CANARY}, k, origin).blob
    assert CANARY.encode() not in blob
    assert unseal(blob, k) == {"v": CANARY}
    assert seal({"v": CANARY}, k, origin).blob != blob  # a fresh nonce each time
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    altered = unseal(bytes(flipped), k)
    assert isinstance(altered, Encrypted) and "altered" in altered.reason
    # the associated data is authenticated: claiming another place breaks the tag
    ad = packb(list(origin))
    other = packb(["run-2", "produce-1", None, 1, "Success"])
    assert len(other) == len(ad)
    moved = unseal(blob.replace(ad, other), k)
    assert isinstance(moved, Encrypted) and "altered" in moved.reason
    with pytest.raises(ValueError):
        unseal(b"\x02" + blob[1:], k)
    assert packb(altered) == packb(Sealed(bytes(flipped)))  # a placeholder writes back as read


def _raw_items(payload: bytes) -> list[Any]:
    import msgpack

    items: list[Any] = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    return items  # extension values stay msgpack.ExtType: nothing is decrypted


def test_a_sealed_result_moved_to_another_event_is_refused(
    key: str, sqlite: tuple[Path, Store]
) -> None:
    import sqlite3

    import msgpack

    path, store = sqlite
    run_id = run(store)
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT seq, payload FROM events WHERE run_id = ? AND kind = 'state' ORDER BY seq",
            (run_id,),
        ).fetchall()
        done = {}
        for seq, payload in rows:
            items = _raw_items(bytes(payload))
            if items[4] == "Success" and items[1] in ("produce-1", "consume-1"):
                done[items[1]] = (seq, items)
        seq, items = done["consume-1"]
        items[7] = done["produce-1"][1][7]  # produce's sealed result, bytes as they are
        db.execute(
            "UPDATE events SET payload = ? WHERE run_id = ? AND seq = ?",
            (msgpack.packb(items, use_bin_type=True), run_id, seq),
        )
        db.commit()
    finally:
        db.close()
    # the moved value decrypts (its origin is authenticated), but it names produce's
    # event: every reader refuses the event it now sits in
    with pytest.raises(CorruptEvent, match=rf"event {seq}: holds a sealed value written for"):
        replay(store, run_id)
    with pytest.raises(CorruptEvent, match="written for"):
        list(export_records(store.read(run_id)))


def test_cached_results_are_encrypted_in_the_result_cache(
    key: str, sqlite: tuple[Path, Store]
) -> None:
    from datetime import timedelta

    path, store = sqlite

    @task(cache_for=timedelta(hours=1))
    def cached() -> str:
        return f"cached {CANARY}"

    with Flow("enc-cache") as flow:
        cached()
    assert flow.run(store=store).is_successful()
    assert_absent(scan_dir(CANARY, path.parent))


def test_redis_holds_no_result_in_clear(key: str, redis_url: str, redis_cleanup: Any) -> None:
    from statecore.backends.redis import RedisStore

    prefix = unique_prefix()
    redis_cleanup(prefix)
    store = RedisStore(redis_url, prefix=prefix)
    try:
        run_id = run(store)
        assert replay(store, run_id).task_states["consume-1"].result == CANARY + "!"
    finally:
        store.close()
    assert_absent(scan_redis(CANARY, redis_url, f"{prefix}:*"))

"""Prefect 1's runtime secrets through statecore.compat, scrubbed like Secret tasks.

``prefect.client.Secret("NAME").get()`` inside a body, the ``PrefectSecret`` task and
``prefect.context.secrets`` resolve ``flow.run(secrets=...)``, then the local secrets
(``prefect.context(secrets=...)``, ``PREFECT__CONTEXT__SECRETS__NAME``), then statecore's
environment lookup; every value is learnt by the run before the body can hand it on, so
a canary handed in each way is nowhere in the SQLite files, a Redis store, the export,
the logs, the returned state or the replay.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner

import statecore.compat as compat
from statecore.backends import SQLiteStore, Store
from statecore.cli.main import cli
from statecore.context import reset_context, set_context
from statecore.runners import LocalRunner, replay
from statecore.states import State

from ..conftest import unique_prefix
from ..secret_canary import assert_absent, new_canary, scan_dir, scan_redis, scan_texts

RUNNER = {"lease_ttl": 1.0, "lease_renew": 0.3, "max_workers": 4}


@pytest.fixture
def prefect() -> Iterator[ModuleType]:
    saved = {n: m for n, m in sys.modules.items() if n == "prefect" or n.startswith("prefect.")}
    for name in saved:
        del sys.modules[name]
    compat.uninstall()
    compat.install()
    module = importlib.import_module("prefect")
    module.context.clear()
    yield module
    module.context.clear()
    compat.uninstall()
    for name in [n for n in sys.modules if n == "prefect" or n.startswith("prefect.")]:
        del sys.modules[name]
    sys.modules.update(saved)


class Canaries:
    """One canary per way a Prefect 1 secret is handed in."""

    def __init__(self) -> None:
        self.by_way = {
            "secrets=": new_canary("given"),
            "context": new_canary("ctx"),
            "PREFECT env": new_canary("penv"),
            "STATECORE env": new_canary("senv"),
            "PrefectSecret": new_canary("ptask"),
            "context.secrets": new_canary("cmap"),
        }

    def scan(self, scanner: Callable[..., list[str]], *args: Any) -> list[str]:
        return [f"{way}: {p}" for way, c in self.by_way.items() for p in scanner(c, *args)]


@pytest.fixture
def canaries(monkeypatch: pytest.MonkeyPatch) -> Canaries:
    c = Canaries()
    monkeypatch.setenv("PREFECT__CONTEXT__SECRETS__PENV", c.by_way["PREFECT env"])
    monkeypatch.setenv("PREFECT__CONTEXT__SECRETS__PTASK", c.by_way["PrefectSecret"])
    monkeypatch.setenv("STATECORE_SECRET_SENV", c.by_way["STATECORE env"])
    return c


def canary_flow(prefect: ModuleType) -> Any:
    """A Prefect 1 flow that reads each secret its own way and leaks it every way it can:
    a log line, a result, a downstream input, an error message."""
    from prefect import Flow, task
    from prefect.client import Secret
    from prefect.tasks.secrets import PrefectSecret

    @task
    def read(name: str) -> str:
        value = str(Secret(name).get())
        prefect.context.logger.info("the %s token is %s", name, value)
        return f"token={value}"

    @task
    def read_map() -> str:
        value = str(prefect.context.secrets["CMAP"])
        prefect.context.get("logger").warning("context.secrets gave %s", value)
        return value

    @task
    def leak(text: str) -> None:
        raise ValueError(f"refused {text}")

    @task
    def echo(x: Any) -> str:
        return f"echo {x}"

    with Flow("compat-secrets") as flow:
        for name in ("GIVEN", "CTX", "PENV", "SENV"):
            leak(read(name))
        leak(read_map())
        echo(PrefectSecret("PTASK"))
    return flow


def run_canaries(prefect: ModuleType, store: Store, c: Canaries) -> State:
    flow = canary_flow(prefect)
    with prefect.context(secrets={"CTX": c.by_way["context"], "CMAP": c.by_way["context.secrets"]}):
        state = flow.run(
            secrets={"GIVEN": c.by_way["secrets="]}, store=store, runner=LocalRunner(**RUNNER)
        )
    by_name: dict[str, list[State]] = {}
    for key, s in state.result.items():
        by_name.setdefault(key.rsplit("-", 1)[0], []).append(s)
    # the bodies saw the real values (the returned results are scrubbed)
    assert all(s.is_successful() for s in by_name["read"]), by_name["read"]
    assert all(s.is_failed() for s in by_name["leak"])
    assert by_name["echo"][0].is_successful()
    return state


def state_texts(state: State) -> dict[str, str]:
    """What the returned state shows (its results are the real values: the run's own)."""
    texts = {"repr(state)": repr(state), "str(state)": str(state)}
    for key, s in state.result.items():
        texts[f"repr({key})"] = repr(s) + str(s) + str(s.message)
    return texts


def cli_texts(url: str, run_id: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("show", "export", "logs"):
        result = CliRunner().invoke(cli, [name, run_id, "--store", url], catch_exceptions=False)
        assert result.exit_code in (0, 1), result.output
        out[name] = result.output
    return out


def test_sqlite_export_logs_and_replay_hold_no_prefect_1_secret(
    prefect: ModuleType, tmp_path: Path, canaries: Canaries
) -> None:
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    try:
        state = run_canaries(prefect, store, canaries)
        view = replay(store, state.run_id)  # type: ignore[attr-defined]
        replayed = {k: repr(s) + repr(s.result) for k, s in view.task_states.items()}
        replayed["logs"] = repr(view.logs)
    finally:
        store.close()
    texts = cli_texts(f"sqlite:///{db}", state.run_id)  # type: ignore[attr-defined]
    # the scrubbed forms are there: the secrets were seen and replaced, not dropped
    for name in ("GIVEN", "CTX", "PENV", "SENV", "CMAP"):
        assert f"<secret:{name}>" in texts["export"], name
    assert "<secret:PENV>" in texts["logs"]
    assert_absent(
        canaries.scan(scan_dir, tmp_path),
        canaries.scan(scan_texts, texts),
        canaries.scan(scan_texts, state_texts(state)),
        canaries.scan(scan_texts, replayed),
    )


def test_a_redis_store_holds_no_prefect_1_secret(
    prefect: ModuleType, redis_url: str, redis_cleanup: Callable[[str], None], canaries: Canaries
) -> None:
    from statecore.backends.redis import RedisStore

    prefix = unique_prefix()
    redis_cleanup(prefix)
    store = RedisStore(redis_url, prefix=prefix, retries=1, backoff=0.01)
    try:
        run_canaries(prefect, store, canaries)
    finally:
        store.close()
    assert_absent(canaries.scan(scan_redis, redis_url, f"{prefix}*"))


@pytest.mark.parametrize("drop", range(4))
def test_the_lookup_order_is_secrets_then_context_then_prefect_env_then_statecore_env(
    prefect: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: int
) -> None:
    values = ["v-given", "v-context", "v-prefect-env", "v-statecore-env"]
    monkeypatch.setenv("STATECORE_SECRET_TOKEN", values[3])
    if drop <= 2:
        monkeypatch.setenv("PREFECT__CONTEXT__SECRETS__TOKEN", values[2])
    got: list[Any] = []

    from prefect import Flow, task
    from prefect.client import Secret

    @task
    def read() -> None:
        got.append(Secret("TOKEN").get())

    with Flow("order") as flow:
        read()
    run: dict[str, Any] = {"store": SQLiteStore(tmp_path / "o.db")}
    if drop == 0:
        run["secrets"] = {"TOKEN": values[0]}
    with prefect.context(secrets={"TOKEN": values[1]} if drop <= 1 else {}):
        assert flow.run(**run).is_successful()
    assert got == [values[drop]]


def test_values_decode_as_json_as_in_prefect_1_and_each_leaf_is_scrubbed(
    prefect: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = new_canary("pw")
    user = new_canary("user")
    monkeypatch.setenv(
        "PREFECT__CONTEXT__SECRETS__DB", f'{{"user": "{user}", "password": "{password}"}}'
    )
    monkeypatch.setenv("PREFECT__CONTEXT__SECRETS__N", "42")
    from prefect import Flow, task
    from prefect.client import Secret

    got: dict[str, Any] = {}

    @task
    def connect() -> str:
        creds = Secret("DB").get()
        got["creds"], got["n"] = creds, Secret("N").get()
        prefect.context.logger.info("password %s", creds["password"])
        return f"{creds['user']}:{creds['password']}@db"

    with Flow("json") as flow:
        connect()
    assert flow.run(store=SQLiteStore(tmp_path / "j.db")).is_successful()
    assert got == {"creds": {"user": user, "password": password}, "n": 42}
    assert_absent(scan_dir(password, tmp_path), scan_dir(user, tmp_path))


def test_a_parameter_equal_to_a_prefect_secret_is_scrubbed_from_the_first_event(
    prefect: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = new_canary("param")
    monkeypatch.setenv("PREFECT__CONTEXT__SECRETS__API_KEY", canary)
    from prefect import Flow, Parameter, task
    from prefect.tasks.secrets import PrefectSecret

    @task
    def use(key: str, p: str) -> bool:
        return key == p

    with Flow("param") as flow:
        same = use(PrefectSecret("API_KEY"), Parameter("p"))
    state = flow.run(parameters={"p": canary}, store=SQLiteStore(tmp_path / "p.db"))
    assert state.is_successful() and state.result[same].result is True
    assert_absent(scan_dir(canary, tmp_path))


def test_a_prefect_secret_task_is_never_stored(prefect: ModuleType, tmp_path: Path) -> None:
    from prefect import Flow
    from prefect.tasks.secrets import PrefectSecret

    from statecore.states import NotPersisted

    flow = Flow("p")
    s = PrefectSecret("TOK")
    flow.add_task(s)
    store = SQLiteStore(tmp_path / "p.db")
    state = flow.run(secrets={"TOK": "abc"}, store=store)
    assert state.is_successful()
    assert isinstance(replay(store, state.run_id).task_states[s].result, NotPersisted)  # type: ignore[attr-defined]
    store.close()


def test_a_missing_secret_fails_the_task_as_a_secret_task_does(
    prefect: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_X", raising=False)
    from prefect import Flow, task
    from prefect.client import Secret
    from prefect.tasks.secrets import PrefectSecret

    @task
    def read() -> Any:
        return Secret("NOPE_X").get()

    with Flow("missing") as flow:
        t = read()
    p = PrefectSecret("NOPE_X")
    flow.add_task(p)
    state = flow.run(store=SQLiteStore(tmp_path / "m.db"))
    assert state.result[t].is_failed() and state.result[p].is_failed()
    assert 'Secret "NOPE_X" was not found' in str(state.result[t].message)
    assert 'Secret "NOPE_X" was not found' in str(state.result[p].message)


def test_outside_a_run_local_secrets_serve_tests_as_in_prefect_1(
    prefect: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import Flow
    from prefect.client import Secret

    monkeypatch.delenv("LOCAL_X", raising=False)
    with pytest.raises(ValueError, match='Local Secret "LOCAL_X" was not found'):
        Secret("LOCAL_X").get()
    assert not Secret("LOCAL_X").exists()
    with prefect.context(secrets={"LOCAL_X": '["a", 1]'}):
        assert Secret("LOCAL_X").get() == ["a", 1]
        assert prefect.context.secrets["LOCAL_X"] == '["a", 1]'  # raw, as Prefect 1's dict
        assert "LOCAL_X" in prefect.context.secrets and Secret("LOCAL_X").exists()
        with Flow("building"), pytest.raises(ValueError, match="not while building a Flow"):
            Secret("LOCAL_X").get()
    monkeypatch.setenv("PREFECT__CONTEXT__SECRETS__LOCAL_X", "from-env")
    assert Secret("LOCAL_X").get() == "from-env"
    assert dict(prefect.context.secrets)["LOCAL_X"] == "from-env"


def test_a_body_without_the_runs_lookup_cannot_read_a_secret_unscrubbed(
    prefect: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body on a remote worker (DaskRunner) has a context but no run lookup to tell
    what to scrub: get() refuses instead of returning a value the log would hold."""
    from prefect.client import Secret

    monkeypatch.setenv("PREFECT__CONTEXT__SECRETS__REMOTE", "v")
    token = set_context({"run_id": "r", "task_name": "t"})
    try:
        with pytest.raises(compat.OutOfScope, match="PrefectSecret task"):
            Secret("REMOTE").get()
    finally:
        reset_context(token)


def test_an_env_var_secret_task(
    prefect: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = new_canary("envvar")
    monkeypatch.setenv("MY_PORT_X", "8080")
    monkeypatch.setenv("MY_TOKEN_X", canary)
    from prefect import Flow, task
    from prefect.tasks.secrets import EnvVarSecret

    seen: list[Any] = []

    @task
    def show(port: int, token: str) -> str:
        seen.append((port, token))
        return f"{port} {token}"

    with Flow("env") as flow:
        out = show(EnvVarSecret("MY_PORT_X", cast=int), EnvVarSecret("T", env_var="MY_TOKEN_X"))
    store = SQLiteStore(tmp_path / "e.db")
    state = flow.run(store=store)
    assert state.is_successful()
    assert seen == [(8080, canary)]
    stored = replay(store, state.run_id).task_states[out].result  # type: ignore[attr-defined]
    assert stored == "<secret:MY_PORT_X> <secret:T>"  # both are secrets
    store.close()
    assert_absent(scan_dir(canary, tmp_path))


def test_many_bodies_learning_secrets_at_once_leak_none(
    prefect: ModuleType, tmp_path: Path
) -> None:
    """Mapped children on worker threads each read their own secret while the driver
    writes the others' events: every value is learnt before it can be written."""
    from prefect import Flow, task
    from prefect.client import Secret

    values = {f"S{i}": new_canary(f"m{i}x") for i in range(24)}

    @task
    def read(name: str) -> str:
        value = str(Secret(name).get())
        prefect.context.logger.info("%s is %s", name, value)
        return value

    with Flow("many") as flow:
        read.map(sorted(values))
    with prefect.context(secrets=values):
        state = flow.run(store=SQLiteStore(tmp_path / "m.db"), runner=LocalRunner(**RUNNER))
    assert state.is_successful()
    assert_absent(*(scan_dir(v, tmp_path) for v in values.values()))

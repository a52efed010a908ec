"""statecore.compat: the ``prefect`` import path served by statecore (issue 13, part A).

What a Prefect 1.4.1 user imports resolves to statecore's own objects; what is out of
scope raises :class:`statecore.compat.OutOfScope` saying what to use instead; the layer
never shadows a real Prefect unless forced; ``statecore run --prefect1``,
``STATECORE_PREFECT1=1``, ``python -m statecore.compat`` and the shim turn it on.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import statecore
import statecore.compat as compat
from statecore import signals, states, triggers
from statecore.backends import MemoryStore
from statecore.compat.modules import MODULES

REPO = Path(__file__).resolve().parent.parent.parent
SHIM = REPO / "shim" / "prefect1"


def _prefect_modules() -> dict[str, ModuleType]:
    return {n: m for n, m in sys.modules.items() if n == "prefect" or n.startswith("prefect.")}


@pytest.fixture
def prefect() -> Iterator[ModuleType]:
    """The layer installed in this process, ``prefect`` imported; removed afterwards."""
    saved = _prefect_modules()
    for name in saved:
        del sys.modules[name]
    compat.uninstall()
    compat.install()
    module = importlib.import_module("prefect")
    module.context.clear()
    yield module
    module.context.clear()
    compat.uninstall()
    for name in _prefect_modules():
        del sys.modules[name]
    sys.modules.update(saved)


def env_with_repo(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.pop("STATECORE_PREFECT1", None)
    env.update(extra)
    return env


# -- the module map -------------------------------------------------------------------


def test_the_top_level_names_are_statecores(prefect: ModuleType) -> None:
    from prefect import Flow, Parameter, Task, case, flatten, task, unmapped

    assert Task is statecore.Task and Parameter is statecore.Parameter
    assert unmapped is statecore.unmapped and flatten is statecore.flatten
    assert case is statecore.case
    assert issubclass(Flow, statecore.Flow)
    assert prefect.triggers.all_successful is triggers.all_successful
    assert prefect.__version__.startswith("1.4.1")

    @task
    def one() -> int:
        return 1

    assert isinstance(one, Task)  # @task makes statecore tasks: isinstance holds


def test_every_name_prefect_1_4_1_exports_is_served_or_out_of_scope(prefect: ModuleType) -> None:
    # prefect/__init__.py's __all__ in Prefect 1.4.1
    exported = [
        "Client", "Flow", "Parameter", "Task", "api", "apply_map", "case", "config",
        "context", "flatten", "mapped", "models", "plugins", "resource_manager", "tags",
        "task", "unmapped",
    ]  # fmt: skip
    served, refused = [], []
    for name in exported:
        try:
            getattr(prefect, name)
            served.append(name)
        except compat.OutOfScope as exc:
            assert "out of scope" in str(exc) and len(str(exc)) > 40, name
            refused.append(name)
    assert set(served) == {
        "Flow", "Parameter", "Task", "case", "context", "flatten", "mapped", "task",
        "unmapped",
    }  # fmt: skip
    assert set(refused) == set(exported) - set(served)


@pytest.mark.parametrize(
    ("module", "names", "ours"),
    [
        ("prefect.engine.state", ["Success", "Failed", "Mapped", "TriggerFailed", "State"], states),
        ("prefect.engine.signals", ["SKIP", "FAIL", "ENDRUN", "LOOP", "PAUSE"], signals),
        ("prefect.triggers", ["all_finished", "always_run", "some_successful"], triggers),
        ("prefect.core.task", ["Task"], statecore),
        ("prefect.core.edge", ["Edge", "Task"], statecore),
        ("prefect.core", ["Task", "Parameter", "Edge"], statecore),
        (
            "prefect.tasks.control_flow",
            ["case", "ifelse", "merge", "switch", "FilterTask"],
            statecore,
        ),
        ("prefect.tasks.control_flow.conditional", ["ifelse", "merge", "switch"], statecore),
        ("prefect.tasks.control_flow.case", ["case"], statecore),
        ("prefect.tasks.control_flow.filter", ["FilterTask"], statecore),
        ("prefect.utilities.edges", ["unmapped", "flatten", "mapped"], statecore.tasks),
    ],
)
def test_module_paths_resolve_to_statecore_objects(
    prefect: ModuleType, module: str, names: list[str], ours: ModuleType
) -> None:
    mod = importlib.import_module(module)
    for name in names:
        assert getattr(mod, name) is getattr(ours, name), f"{module}.{name}"


def test_schedules_and_their_submodules(prefect: ModuleType) -> None:
    from prefect.schedules import CronSchedule, IntervalSchedule, Schedule, adjustments, clocks
    from prefect.schedules.filters import is_weekday

    import statecore.schedules as sched

    assert CronSchedule is sched.CronSchedule and IntervalSchedule is sched.IntervalSchedule
    assert Schedule is sched.Schedule
    assert clocks.CronClock is sched.clocks.CronClock
    assert adjustments.next_weekday is sched.adjustments.next_weekday
    assert is_weekday is sched.filters.is_weekday
    assert importlib.import_module("prefect.schedules.schedules").Schedule is sched.Schedule
    with pytest.raises(compat.OutOfScopeImport, match=r"RRuleSchedule is out of scope"):
        from prefect.schedules import RRuleSchedule  # noqa: F401


def test_a_bare_import_prefect_reaches_submodules_as_prefect_1_did(prefect: ModuleType) -> None:
    # Prefect 1's __init__ imported its submodules; attribute access works here too
    assert prefect.engine.state.Success is states.Success
    assert prefect.engine.signals.SKIP is signals.SKIP
    assert prefect.tasks.control_flow.merge is statecore.merge


def test_the_secret_api_paths(prefect: ModuleType) -> None:
    from prefect.client import Secret
    from prefect.tasks.secrets import EnvVarSecret, PrefectSecret

    assert Secret("X").name == "X"
    assert issubclass(PrefectSecret, statecore.Secret)  # a statecore Secret task
    assert issubclass(EnvVarSecret, statecore.Secret)
    assert importlib.import_module("prefect.client.secrets").Secret is Secret


def test_notifications_map_to_statecore_notifications(prefect: ModuleType) -> None:
    notifications = importlib.import_module("statecore.notifications")
    mod = importlib.import_module("prefect.utilities.notifications")
    for name in ("slack_notifier", "gmail_notifier"):
        assert getattr(mod, name) is getattr(notifications, name)


# -- out of scope: a message that says what to use instead ------------------------------


def test_the_client_is_a_clear_error(prefect: ModuleType) -> None:
    with pytest.raises(compat.OutOfScopeImport, match=r"Client is out of scope.*statecore"):
        from prefect import Client  # noqa: F401
    with pytest.raises(compat.OutOfScopeImport, match=r"Client is out of scope"):
        from prefect.client import Client as _
    with pytest.raises(compat.OutOfScopeAttribute, match=r"statecore runs"):
        _ = prefect.Client
    assert not hasattr(prefect, "Client")  # an AttributeError: hasattr behaves
    err = compat.OutOfScopeAttribute("x")
    assert isinstance(err, statecore.StatecoreError) and isinstance(err, compat.OutOfScope)


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("import prefect.storage", "statecore run"),
        ("from prefect.storage import GitHub", "statecore run"),
        ("import prefect.agent", "agents are out of scope"),
        ("from prefect.run_configs import LocalRun", "run configs are out of scope"),
        ("from prefect.executors import LocalDaskExecutor", "runner=statecore.runners"),
        ("from prefect.engine.results import LocalResult", "store"),
        ("from prefect.engine.state import Queued", "Cloud/Server state"),
        ("import prefect.tasks.aws", "task library"),
        ("from prefect.tasks.shell import ShellTask", "task library"),
        ("from prefect import apply_map", "task.map"),
        ("from prefect.utilities.tasks import pause_task", "PAUSE"),
        ("from prefect.engine import FlowRunner", "flow.run"),
    ],
)
def test_out_of_scope_imports_say_what_to_use(
    prefect: ModuleType, statement: str, says: str
) -> None:
    with pytest.raises(compat.OutOfScopeImport) as info:
        exec(statement, {})
    assert says in str(info.value)
    assert "out of scope" in str(info.value)


def test_an_unknown_name_names_the_module_and_the_closest_one(prefect: ModuleType) -> None:
    with pytest.raises(compat.OutOfScopeImport) as info:
        from prefect.engine.state import Sucess  # noqa: F401
    text = str(info.value)
    assert "prefect.engine.state" in text and "Success" in text and "statecore.states" in text
    with pytest.raises(
        compat.OutOfScopeAttribute, match=r"did you mean prefect.triggers.all_failed"
    ):
        _ = prefect.triggers.all_faled


def test_flow_cloud_methods_and_arguments_are_out_of_scope(prefect: ModuleType) -> None:
    flow = prefect.Flow("f")
    for name, says in [
        ("register", "statecore run"),
        ("deploy", "statecore run"),
        ("run_agent", "no agents"),
        ("visualize", "statecore graph"),
        ("serialize", "statecore export"),
    ]:
        with pytest.raises(compat.OutOfScopeAttribute, match=says):
            getattr(flow, name)
        assert not hasattr(flow, name)
    with pytest.raises(compat.OutOfScope, match=r"runner=statecore.runners"):
        prefect.Flow("f", executor=object())
    with pytest.raises(compat.OutOfScope, match=r"flow file is the deployment"):
        prefect.Flow("f", storage=object())
    with pytest.raises(compat.OutOfScope, match=r"runner=statecore.runners"):
        flow.run(executor=object(), store=MemoryStore())
    with pytest.raises(compat.OutOfScope, match=r"result= is out of scope"):
        prefect.task(result=object())
    with pytest.raises(compat.OutOfScopeAttribute, match=r"did you mean 'add_task'"):
        _ = flow.add_tsk


# -- running Prefect 1 code -----------------------------------------------------------


def test_a_prefect_1_flow_runs_with_prefect_arguments(prefect: ModuleType) -> None:
    from prefect import Flow, Parameter, task, unmapped
    from prefect.engine import signals as psignals
    from prefect.schedules import IntervalSchedule

    seen: dict[str, object] = {}

    @task
    def team() -> list[str]:
        return ["ann", "bob"]

    @task
    def needed(person: str, channel: str) -> str:
        if person == "bob":
            raise psignals.SKIP("bob posted")
        return f"{channel}:{person}"

    @task(skip_on_upstream_skip=False)
    def report(sent: list[str]) -> None:
        seen["sent"] = sent
        seen["flow_name"] = prefect.context.flow_name
        seen["today"] = prefect.context.today
        seen["marker"] = prefect.context.get("marker")

    sched = IntervalSchedule(interval=__import__("datetime").timedelta(hours=1))
    with Flow("reminders", schedule=sched) as flow:
        channel = Parameter("channel", default="#standup")
        sent = needed.map(team(), unmapped(channel))
        report(sent)
    # Prefect 1.4.1 refuses return_tasks (every task's state is returned)
    with pytest.raises(ValueError, match="`return_tasks` keyword cannot be provided"):
        flow.run(return_tasks=[sent], run_on_schedule=False, store=MemoryStore())
    state = flow.run(context={"marker": 7}, run_on_schedule=False, store=MemoryStore())
    assert state.is_successful()
    assert seen["flow_name"] == "reminders" and seen["marker"] == 7
    assert isinstance(seen["today"], str) and len(str(seen["today"])) == 10
    assert state.result[sent].map_states[1].is_skipped()


def test_prefect_context_is_a_mapping_and_a_context_manager(prefect: ModuleType) -> None:
    ctx = prefect.context
    with ctx(a=1, b={"x": 2}) as inner:
        assert inner is ctx and ctx.a == 1 and ctx["b"] == {"x": 2} and ctx.get("a") == 1
        with ctx({"a": 3}):
            assert ctx.a == 3
        assert ctx.a == 1
    assert ctx.get("a") is None
    with pytest.raises(compat.OutOfScopeAttribute):
        _ = ctx.a
    ctx.update(c=5)
    assert ctx.c == 5 and ctx.to_dict()["c"] == 5
    ctx.clear()
    assert "c" not in ctx


# -- turning it on, and never by accident ----------------------------------------------


def _fake_real_prefect(root: Path) -> Path:
    pkg = root / "site" / "prefect"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("REAL = True\n")
    return pkg


def test_a_real_prefect_is_never_shadowed_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = _prefect_modules()
    for name in saved:
        del sys.modules[name]
    compat.uninstall()
    pkg = _fake_real_prefect(tmp_path)
    monkeypatch.syspath_prepend(str(pkg.parent))
    try:
        assert compat.real_prefect() == str(pkg)
        with pytest.raises(compat.PrefectInstalled, match=r"force=True"):
            compat.install()
        assert not compat.installed()
        assert importlib.import_module("prefect").REAL is True  # the real one, untouched
        with pytest.raises(compat.PrefectInstalled):
            compat.install_if(True)
        compat.install(force=True)  # drops the imported real prefect
        assert importlib.import_module("prefect").Task is statecore.Task
    finally:
        compat.uninstall()
        for name in _prefect_modules():
            del sys.modules[name]
        sys.modules.update(saved)


def test_the_shim_is_not_taken_for_a_real_prefect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SHIM))
    assert compat.real_prefect() is None


def test_install_is_idempotent_and_uninstall_forgets(prefect: ModuleType) -> None:
    compat.install()
    assert sum(isinstance(f, type(compat._finder)) for f in sys.meta_path) == 1
    compat.uninstall()
    assert "prefect" not in sys.modules and not compat.installed()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("prefect")


def test_the_env_var_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    compat.uninstall()
    monkeypatch.delenv(compat.ENV_VAR, raising=False)
    assert compat.install_from_env() is False and not compat.installed()
    monkeypatch.setenv(compat.ENV_VAR, "1")
    try:
        assert compat.install_from_env() is True and compat.installed()
    finally:
        compat.uninstall()


FLOW_FILE = textwrap.dedent(
    """
    import prefect
    from prefect import task, Flow, Parameter
    from prefect.engine.signals import SKIP

    @task
    def greet(name):
        prefect.context.get("logger").info("hello %s", name)
        return "hi " + name

    @task
    def maybe(x):
        raise SKIP("not today")

    with Flow("p1") as flow:
        who = Parameter("who", default="ann")
        maybe(greet(who))

    if __name__ == "__main__":
        state = flow.run()
        print("STATE", state.is_successful())
    """
)


def _cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "statecore", *args],
        cwd=cwd,
        env=env_with_repo(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_statecore_run_prefect1_flag_and_env_var(tmp_path: Path) -> None:
    (tmp_path / "p1.py").write_text(FLOW_FILE)
    refused = _cli(["run", "p1.py:flow"], tmp_path)
    assert (
        refused.returncode == 2 and "No module named 'prefect'" in refused.stdout + refused.stderr
    )
    flagged = _cli(["run", "p1.py:flow", "--prefect1", "-p", "who=bob", "--run-id", "a"], tmp_path)
    assert flagged.returncode == 0, flagged.stdout + flagged.stderr
    by_env = _cli(["run", "p1.py:flow", "--run-id", "b"], tmp_path, STATECORE_PREFECT1="1")
    assert by_env.returncode == 0, by_env.stdout + by_env.stderr
    logs = _cli(["logs", "a"], tmp_path)
    assert "hello bob" in logs.stdout


def test_statecore_run_prefect1_refuses_beside_a_real_prefect(tmp_path: Path) -> None:
    (tmp_path / "p1.py").write_text(FLOW_FILE)
    pkg = _fake_real_prefect(tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(pkg.parent)])}
    out = _cli(["run", "p1.py:flow", "--prefect1"], tmp_path, **env)
    assert out.returncode == 2 and "a real Prefect is installed" in out.stdout + out.stderr


def test_python_m_statecore_compat_runs_a_prefect_1_script(tmp_path: Path) -> None:
    (tmp_path / "p1.py").write_text(FLOW_FILE)
    out = subprocess.run(
        [sys.executable, "-m", "statecore.compat", "p1.py"],
        cwd=tmp_path,
        env=env_with_repo(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "STATE True" in out.stdout
    assert (tmp_path / ".statecore" / "runs.db").is_file()  # the embedded default store


def test_the_shim_runs_a_prefect_1_file_unchanged(tmp_path: Path) -> None:
    (tmp_path / "p1.py").write_text(FLOW_FILE)
    env = env_with_repo()
    env["PYTHONPATH"] = os.pathsep.join([str(SHIM), env["PYTHONPATH"]])
    out = subprocess.run(
        [sys.executable, "p1.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "STATE True" in out.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import prefect, statecore.compat as c; "
         "print(prefect.__file__, c.installed(), prefect.Task is __import__('statecore').Task)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split()[1:] == ["True", "True"]
    assert probe.stdout.split()[0].startswith(str(SHIM))


@pytest.mark.filterwarnings("ignore:Support for `\\[tool.setuptools\\]`")
def test_the_shim_is_a_package_named_as_documented() -> None:
    """The shim's pyproject passes setuptools' own validation (offline: building a wheel
    needs the ``wheel`` package, not installed here) and ships ``prefect`` with its
    marker."""
    import tomllib

    from setuptools.config.pyprojecttoml import read_configuration

    project = tomllib.loads((SHIM / "pyproject.toml").read_text())
    assert project["project"]["name"] == "statecore-prefect1-shim"
    assert project["project"]["dependencies"] == ["statecore"]
    config = read_configuration(SHIM / "pyproject.toml")  # validates; raises on a bad file
    assert config["tool"]["setuptools"]["packages"] == ["prefect"]
    assert (SHIM / "prefect" / "__init__.py").is_file()
    assert (SHIM / "prefect" / "_statecore_shim.py").is_file()


def test_every_mapped_module_imports(prefect: ModuleType) -> None:
    for name in MODULES:
        mod = importlib.import_module(name)
        assert mod.__name__ == name and mod.__doc__


def test_prefect_utilities_debug_raise_on_exception_raises_after_the_run(
    prefect: ModuleType,
) -> None:
    from prefect import Flow, task
    from prefect.utilities.debug import raise_on_exception

    from statecore.backends import MemoryStore

    @task
    def boom() -> None:
        raise ZeroDivisionError("boom")

    with Flow("debug") as flow:
        boom()
    store = MemoryStore()
    with raise_on_exception(), pytest.raises(ZeroDivisionError, match="boom"):
        flow.run(store=store)
    # the run was logged whole before the error was raised
    (meta,) = store.list_runs()
    assert meta.state == "Failed"
    assert flow.run(store=MemoryStore()).is_failed()  # outside the block: a Failed state

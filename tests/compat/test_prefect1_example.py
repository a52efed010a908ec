"""examples/prefect1_standup.py: the post's standup and reminder flows, written for
Prefect 1, run unchanged on statecore (the compat layer on, the embedded SQLite store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..secret_canary import assert_absent, new_canary, scan_dir

REPO = Path(__file__).resolve().parent.parent.parent
EXAMPLE = REPO / "examples" / "prefect1_standup.py"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    for name in ("STATECORE_PREFECT1", "STATECORE_STORE", "MARVIN_TOKEN"):
        env.pop(name, None)
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_the_example_is_prefect_1_code() -> None:
    text = EXAMPLE.read_text()
    assert "from prefect import Flow, Parameter, task, unmapped" in text
    assert 'Secret("MARVIN_TOKEN").get()' in text
    code = text.split('"""', 2)[2]
    assert "import statecore" not in code and "from statecore" not in code


def test_the_example_runs_both_flows_unchanged(tmp_path: Path) -> None:
    token = new_canary("xoxb")
    out = _run(["-m", "statecore.compat", str(EXAMPLE)], tmp_path, MARVIN_TOKEN=token)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "standup: <Success" in out.stdout and "reminders: <Success" in out.stdout
    posted = [json.loads(line) for line in (tmp_path / ".statecore/slack_outbox.jsonl").open()]
    assert posted[0]["channel"] == "standup"
    assert sorted(m["channel"] for m in posted[1:]) == ["@jeremiah", "@josh"]
    assert "*chris*" in posted[0]["text"] and "*laura*" in posted[0]["text"]
    assert (tmp_path / ".statecore" / "runs.db").is_file()
    assert_absent(scan_dir(token, tmp_path))  # the token: nowhere in the store or outbox


def test_statecore_run_serves_the_example_with_prefect1(tmp_path: Path) -> None:
    token = new_canary("xoxb")
    ref = f"{EXAMPLE}:reminder_flow"
    env = {"PREFECT__CONTEXT__SECRETS__MARVIN_TOKEN": token}
    out = _run(["-m", "statecore", "run", ref, "--prefect1", "--run-id", "r1"], tmp_path, **env)
    assert out.returncode == 0, out.stdout + out.stderr
    logs = _run(["-m", "statecore", "logs", "r1"], tmp_path)
    assert "sent 2 reminders: jeremiah, josh" in logs.stdout
    exported = _run(["-m", "statecore", "export", "r1"], tmp_path)
    assert exported.returncode == 0 and '"flow_name": "standup-reminder"' in exported.stdout
    assert token not in exported.stdout + logs.stdout
    assert_absent(scan_dir(token, tmp_path))
    without_token = _run(["-m", "statecore", "run", ref, "--prefect1"], tmp_path)
    assert without_token.returncode == 1  # get_team: Secret "MARVIN_TOKEN" was not found
    assert 'Secret "MARVIN_TOKEN" was not found' in without_token.stdout

"""Fuzzing the readers: hostile payloads in a real SQLite log, read by every command.

Every case must end in a StatecoreError (a CLI message with its exit status), never in
another exception. CI runs a seeded subset; ``STATECORE_FUZZ_CASES=10000`` runs the full
set (tests/fuzzing.py draws them, and other readers such as ``statecore ui`` reuse it).
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner

from statecore.backends import SQLiteStore
from statecore.cli.main import cli
from statecore.errors import StatecoreError
from statecore.runners import replay

from .fuzzing import cases, hostile_log

COUNT = int(os.environ.get("STATECORE_FUZZ_CASES", "300"))
SEED = int(os.environ.get("STATECORE_FUZZ_SEED", "1515"))
COMMANDS = (["show"], ["show", "--children"], ["export"], ["verify"], ["logs"])


def test_hostile_payloads_give_statecore_errors_only(tmp_path: Path) -> None:
    db = tmp_path / "fuzz.db"
    url = f"sqlite:///{db}"
    store = SQLiteStore(db)
    runner = CliRunner()
    foreign: list[str] = []
    try:
        for case in cases(SEED, COUNT):
            run_id = f"fuzz-{case.number}"
            store.append(run_id, hostile_log(run_id, case), expected_seq=0)
            try:
                replay(store, run_id)
            except StatecoreError:
                pass
            except Exception:
                foreign.append(f"{run_id} replay ({case.how}): {traceback.format_exc(limit=-3)}")
            for args in COMMANDS:
                result = runner.invoke(cli, [*args, run_id, "--store", url])
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    tb = "".join(traceback.format_exception(result.exception, limit=-3))
                    foreign.append(f"{run_id} {args} ({case.how}, event {case.seq}): {tb}")
    finally:
        store.close()
    assert not foreign, f"{len(foreign)} foreign exceptions:\n" + "\n".join(foreign[:5])


@pytest.mark.parametrize("seed", [1, 2])
def test_the_generator_is_reproducible(seed: int) -> None:
    assert list(cases(seed, 20)) == list(cases(seed, 20))

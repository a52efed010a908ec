"""Golden logs: old logs keep their meaning.

Each file in ``tests/golden/`` is a run's log as recorded by an earlier statecore, with
the fold it had then (every TaskRun and State field, notes, logs, the timeline with
measured times). Folding the stored bytes again must give the same: a change to the fold
or the codec that reads an old log differently fails here. ``python -m
tests.golden.record`` re-records them, for a deliberate change only.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from statecore.backends import MemoryStore, SQLiteStore
from statecore.events import StoredEvent
from statecore.fold import fold
from statecore.runners import replay

from ..golden.record import summary

GOLDEN = sorted((Path(__file__).parent.parent / "golden").glob("*.json"))


def events_of(path: Path) -> tuple[list[StoredEvent], dict[str, Any]]:
    data = json.loads(path.read_text())
    events = [
        StoredEvent(
            e["run_id"],
            e["seq"],
            e["epoch"],
            base64.b64decode(e["prev_hash"]),
            e["kind"],
            e["ts"],
            base64.b64decode(e["payload"]),
        )
        for e in data["events"]
    ]
    return events, data["fold"]


def test_there_are_golden_logs() -> None:
    assert len(GOLDEN) >= 3


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_a_golden_log_folds_as_it_did(path: Path) -> None:
    events, expected = events_of(path)
    assert summary(fold(events)) == expected


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_a_golden_log_replays_from_every_store_as_it_did(path: Path, tmp_path: Path) -> None:
    events, expected = events_of(path)
    run_id = events[0].run_id
    for store in (MemoryStore(), SQLiteStore(tmp_path / f"{path.stem}.db")):
        try:
            store.append(run_id, events, expected_seq=0)
            assert summary(replay(store, run_id)) == expected
        finally:
            store.close()

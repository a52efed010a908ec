"""Drive a torture run in this process: ``python -m tests.torture.drive ...`` (from the
repository root).

Modes: ``full`` runs the run (or resumes it if its id is taken), then, if it stopped
with the gate paused, resumes it again approving the gate: one process takes a run from
nothing to the end, so a kill can land in either phase. ``resume`` and ``run`` do one
``resume(run_id)`` or one ``flow.run(run_id=R)``.

``--start-gate FILE`` waits for FILE before touching the store (to line racers up);
``--hold-before-lease FILE`` makes the first lease request of this process wait for
FILE, after writing ``FILE.reached`` once it got there, so a test can hold a resumer
between reading the log and taking the lease; ``--hold-after-refusal FILE`` holds a
refused lease request likewise before the refusal reaches the driver.

Exit status: 0 finished, 3 not finished, 4 lease held or store unavailable (the message,
naming the holder, on stderr), 5 lease lost, 6 a ConcurrencyError (a stale view's append
refused), 7 a ValueError (another run under that id).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from statecore.backends import open_store
from statecore.backends.base import Store
from statecore.errors import ConcurrencyError, LeaseHeld, LeaseLost, StoreUnavailable
from statecore.runners import LocalRunner, resume

from .flows import FLOWS, GATE_KEY


def wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.002)


def hold_first_lease(store: Store, gate: str) -> None:
    """Make the store's first ``acquire_lease`` in this process wait for ``gate``."""
    original = store.acquire_lease
    held = [False]

    def acquire(*args: Any, **kwargs: Any) -> Any:
        if not held[0]:
            held[0] = True
            Path(gate + ".reached").touch()
            wait_for(gate)
        return original(*args, **kwargs)

    store.acquire_lease = acquire  # type: ignore[method-assign]


def hold_after_refusal(store: Store, gate: str) -> None:
    """When the store refuses this process the lease, wait for ``gate`` (after writing
    ``gate.reached``) before the refusal reaches the driver."""
    original = store.acquire_lease

    def acquire(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        except LeaseHeld:
            Path(gate + ".reached").touch()
            wait_for(gate)
            raise

    store.acquire_lease = acquire  # type: ignore[method-assign]


def gate_paused(store: Store, run_id: str) -> bool:
    from statecore.runners import replay

    view = replay(store, run_id)
    if GATE_KEY not in view.by_key:
        return False
    state = view.state_of(view.by_key[GATE_KEY])
    return state is not None and state.is_paused()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--flow", choices=sorted(FLOWS), default="torture")
    parser.add_argument("--mode", choices=("full", "resume", "run"), default="full")
    parser.add_argument("--approve", action="store_true")
    parser.add_argument("--group-events", type=int, default=None)
    parser.add_argument("--group-delay", type=float, default=None)
    parser.add_argument("--max-workers", type=int, default=4)
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--lease-renew", type=float, default=0.5)
    parser.add_argument("--start-gate", default=None)
    parser.add_argument("--hold-before-lease", default=None)
    parser.add_argument("--hold-after-refusal", default=None)
    args = parser.parse_args(argv)
    flow = FLOWS[args.flow]
    options: dict[str, Any] = {}
    if args.group_events is not None:
        options["group_events"] = args.group_events
    if args.group_delay is not None:
        options["group_delay"] = args.group_delay
    runner = LocalRunner(
        max_workers=args.max_workers,
        lease_ttl=args.lease_ttl,
        lease_renew=args.lease_renew,
        **options,
    )
    if args.start_gate:
        wait_for(args.start_gate)
    store = open_store(args.store)
    if args.hold_before_lease:
        hold_first_lease(store, args.hold_before_lease)
    if args.hold_after_refusal:
        hold_after_refusal(store, args.hold_after_refusal)
    approve = [GATE_KEY] if args.approve else []
    try:
        if args.mode == "run":
            state = flow.run(store=store, run_id=args.run_id, runner=runner)
        elif args.mode == "resume":
            state = resume(args.run_id, flow, store=store, runner=runner, approve=approve)
        else:
            if store.head(args.run_id) > 0:
                state = resume(args.run_id, flow, store=store, runner=runner)
            else:
                state = flow.run(store=store, run_id=args.run_id, runner=runner)
            if not state.is_finished() and gate_paused(store, args.run_id):
                state = resume(args.run_id, flow, store=store, runner=runner, approve=[GATE_KEY])
    except (LeaseHeld, StoreUnavailable) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 4
    except LeaseLost as exc:
        print(f"LeaseLost: {exc}", file=sys.stderr)
        return 5
    except ConcurrencyError as exc:
        print(f"ConcurrencyError: {exc}", file=sys.stderr)
        return 6
    except ValueError as exc:
        print(f"ValueError: {exc}", file=sys.stderr)
        return 7
    finally:
        store.close()
    print(state.name, flush=True)
    return 0 if state.is_finished() else 3


if __name__ == "__main__":
    sys.exit(main())

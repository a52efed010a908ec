"""Drive one run in this process: ``python -m tests.crash_flows.drive ...``.

Run from the repository root. Exit status: 0 the flow finished, 3 it did not, 4 the
store was unavailable or the lease held, 5 the lease was lost; tests usually SIGKILL it
long before any of that.
"""

from __future__ import annotations

import argparse
import sys

from statecore.backends import open_store
from statecore.errors import LeaseHeld, LeaseLost, StoreUnavailable
from statecore.runners import LocalRunner, resume

from .flows import FLOWS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--flow", choices=sorted(FLOWS), default="crash")
    parser.add_argument("--mode", choices=("run", "resume"), default="run")
    parser.add_argument("--group-events", type=int, default=8)
    parser.add_argument("--group-delay", type=float, default=0.02)
    parser.add_argument("--max-workers", type=int, default=4)
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--lease-renew", type=float, default=10.0)
    args = parser.parse_args(argv)
    flow = FLOWS[args.flow]
    runner = LocalRunner(
        max_workers=args.max_workers,
        group_events=args.group_events,
        group_delay=args.group_delay,
        lease_ttl=args.lease_ttl,
        lease_renew=args.lease_renew,
    )
    store = open_store(args.store)
    try:
        if args.mode == "run":
            state = flow.run(store=store, run_id=args.run_id, runner=runner)
        else:
            state = resume(args.run_id, flow, store=store, runner=runner)
    except (LeaseHeld, StoreUnavailable) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 4
    except LeaseLost as exc:
        print(f"LeaseLost: {exc}", file=sys.stderr)
        return 5
    finally:
        store.close()
    print(state.name, flush=True)
    return 0 if state.is_finished() else 3


if __name__ == "__main__":
    sys.exit(main())

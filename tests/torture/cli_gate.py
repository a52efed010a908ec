"""``python -m tests.torture.cli_gate GATE ARGS...``: wait until the file GATE exists,
then run ``statecore ARGS...`` in this process, so that racing command lines are all
imported and ready when the race starts."""

from __future__ import annotations

import os
import sys
import time

from statecore.cli.main import cli


def main() -> None:
    gate, *args = sys.argv[1:]
    while not os.path.exists(gate):
        time.sleep(0.002)
    cli.main(args=args, prog_name="statecore")


if __name__ == "__main__":
    main()

"""``python -m statecore.compat FILE.py [ARGS...]``: run a Prefect 1 script on statecore.

Installs the import hook, then runs ``FILE.py`` as ``__main__`` with ``ARGS`` as its
``sys.argv[1:]``, so a script that says ``from prefect import ...`` and calls
``flow.run()`` runs unchanged.
"""

from __future__ import annotations

import runpy
import sys

from statecore.compat import PrefectInstalled, install


def main(argv: list[str]) -> int:
    """Run the script ``argv[0]`` with the layer on; the exit status."""
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__.strip().splitlines()[0] if __doc__ else "")
        return 0 if argv else 2
    try:
        install()
    except PrefectInstalled as exc:
        print(f"statecore.compat: {exc}", file=sys.stderr)
        return 2
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

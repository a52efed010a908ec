"""``python -m statecore``: the ``statecore`` command line."""

from statecore.runners.cli import main

if __name__ == "__main__":
    main()

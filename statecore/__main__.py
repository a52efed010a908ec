"""``python -m statecore``: the ``statecore`` command line."""

from statecore.cli.main import main

if __name__ == "__main__":
    main()

"""What every stage script runs: `d2v <command> <the script's arguments>` (d2v/cli.py).

DVC runs a stage's `python` from PATH. Where that Python cannot import d2v or a package it needs
(`dvc` run without the venv active), the stage ends with one line naming that interpreter, the
missing module and the fix, and exit code 2, as every expected failure does (d2v/failures.py).
"""

import sys


def stage(command: str) -> None:
    try:
        from d2v.cli import main
    except ModuleNotFoundError as err:
        print(
            f"error: {sys.executable} cannot import {err.name!r}: run `make setup`, then"
            " `source .venv/bin/activate` before `dvc` (or use `make run`)",
            file=sys.stderr,
        )
        sys.exit(2)
    main([command, *sys.argv[1:]])

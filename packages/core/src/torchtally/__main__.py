"""``python -m torchtally``: the ``torchtally`` command, which the torchtally-cli package provides.

This is an entry point, not a layer: it only hands over to the command line when it is installed.
"""

import importlib
import sys

try:
    command = importlib.import_module("torchtally_cli.cli")
except ModuleNotFoundError as error:
    if error.name != "torchtally_cli":
        raise
    print(
        "torchtally: error: the command line is in the torchtally-cli package, which is not "
        "installed; install it with: pip install torchtally-cli",
        file=sys.stderr,
    )
    sys.exit(5)
sys.exit(command.main())

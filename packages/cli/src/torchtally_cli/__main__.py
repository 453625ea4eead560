"""``python -m torchtally_cli``: the same as the ``torchtally`` command."""

import sys

from torchtally_cli.cli import main

sys.exit(main())

"""``python -m torchtally``: the same as the ``torchtally`` command."""

import sys

from torchtally.cli import main

sys.exit(main())

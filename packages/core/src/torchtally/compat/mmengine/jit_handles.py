"""``mmengine.analysis.jit_handles``: handles and the helpers to build them (torchtally's own)."""

from torchtally.compat.jit_handles import *  # noqa: F403
from torchtally.compat.jit_handles import __all__  # noqa: F401

"""``fvcore.nn.jit_analysis``: `JitModelAnalysis`, the base class for a statistic of your own."""

from torchtally.compat.jit_analysis import FVCORE_IGNORED_OPS, JitModelAnalysis

_IGNORED_OPS: set[str] = set(FVCORE_IGNORED_OPS)

__all__ = ["JitModelAnalysis"]

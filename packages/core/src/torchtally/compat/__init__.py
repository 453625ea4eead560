"""The fvcore and mmengine APIs on top of torchtally.

``torchtally.compat.fvcore`` is a drop-in for ``fvcore.nn`` and ``torchtally.compat.mmengine``
for ``mmengine.analysis``: the same names, fvcore-style handles on JIT-like values, the same
printouts. The names below (``FlopAnalyzer``, ``get_model_complexity_info``, ...) are
torchtally's own flavour, re-exported at the top level: their handlers take one recorded
`OpCall` and are keyed by the ops the dispatcher sees.
"""

from torchtally.compat.analyzers import (
    ActivationAnalyzer,
    ActivationCountAnalysis,
    FlopAnalyzer,
    FlopCountAnalysis,
    ModelAnalyzer,
    activation_count,
    flop_count,
    get_model_complexity_info,
    parameter_count_table,
)
from torchtally.compat.jit_analysis import CompatWarning

__all__ = [
    "ActivationAnalyzer",
    "ActivationCountAnalysis",
    "CompatWarning",
    "FlopAnalyzer",
    "FlopCountAnalysis",
    "ModelAnalyzer",
    "activation_count",
    "flop_count",
    "get_model_complexity_info",
    "parameter_count_table",
]

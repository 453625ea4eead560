"""A drop-in for ``mmengine.analysis``: change ``mmengine.analysis`` to
``torchtally.compat.mmengine`` in an import and the code keeps working, on torchtally's tracer.

Submodules mirror mmengine's (``.complexity_analysis``, ``.jit_analysis``, ``.jit_handles``,
``.print_helper``). Warnings go through mmengine's logger when mmengine is installed.
"""

from torchtally.compat.mmengine.complexity_analysis import (
    ActivationAnalyzer,
    FlopAnalyzer,
    activation_count,
    flop_count,
    parameter_count,
    parameter_count_table,
)
from torchtally.compat.mmengine.jit_analysis import JitModelAnalysis
from torchtally.compat.mmengine.print_helper import (
    complexity_stats_str,
    complexity_stats_table,
    get_model_complexity_info,
)

__all__ = [
    "ActivationAnalyzer",
    "FlopAnalyzer",
    "JitModelAnalysis",
    "activation_count",
    "complexity_stats_str",
    "complexity_stats_table",
    "flop_count",
    "get_model_complexity_info",
    "parameter_count",
    "parameter_count_table",
]

"""A drop-in for ``fvcore.nn``'s counting and printing: change ``fvcore.nn`` to
``torchtally.compat.fvcore`` in an import and the code keeps working, on torchtally's tracer.

Submodules mirror fvcore's (``torchtally.compat.fvcore.jit_handles``, ``.flop_count``,
``.activation_count``, ``.jit_analysis``, ``.parameter_count``, ``.print_model_statistics``), so
``from fvcore.nn.jit_handles import get_shape`` becomes
``from torchtally.compat.fvcore.jit_handles import get_shape``. The README's "Switching from
fvcore / mmengine" lists what differs and why.
"""

from torchtally.compat.fvcore.activation_count import ActivationCountAnalysis, activation_count
from torchtally.compat.fvcore.flop_count import FlopCountAnalysis, flop_count
from torchtally.compat.fvcore.parameter_count import parameter_count, parameter_count_table
from torchtally.compat.fvcore.print_model_statistics import flop_count_str, flop_count_table
from torchtally.compat.jit_analysis import JitModelAnalysis

__all__ = [
    "ActivationCountAnalysis",
    "FlopCountAnalysis",
    "JitModelAnalysis",
    "activation_count",
    "flop_count",
    "flop_count_str",
    "flop_count_table",
    "parameter_count",
    "parameter_count_table",
]

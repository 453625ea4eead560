"""``fvcore.nn.parameter_count``: parameters per module, and fvcore's table of them."""

from __future__ import annotations

from torch import nn

from torchtally.compat.printing import parameter_table
from torchtally.params import parameter_count


def parameter_count_table(model: nn.Module, max_depth: int = 3) -> str:
    """A pipe table of the model's parameters: modules down to `max_depth` name levels with
    their sizes (``1.2M``), parameters with their shapes."""
    return parameter_table(model, max_depth)


__all__ = ["parameter_count", "parameter_count_table"]

"""Parameter counts per module prefix (shared parameters once) and parameter shapes."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping

from torch import nn


def parameter_count(model: nn.Module) -> defaultdict[str, int]:
    """Parameters per name prefix, as fvcore: ``""`` is the whole model, ``"layer1"`` everything
    under it, ``"layer1.0.conv1.weight"`` one parameter.

    A parameter shared by several modules counts once, under its first name, as in fvcore.
    """
    return count_by_prefix(parameter_shapes(model))


def count_by_prefix(shapes: Mapping[str, tuple[int, ...]]) -> defaultdict[str, int]:
    """`parameter_count` from parameter shapes (a trace's: lazy modules materialised)."""
    counts: defaultdict[str, int] = defaultdict(int)
    for name, shape in shapes.items():
        size = math.prod(shape)
        parts = name.split(".")
        for depth in range(len(parts) + 1):
            counts[".".join(parts[:depth])] += size
    return counts


def parameter_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape by its (first) name, in definition order."""
    return {name: tuple(param.shape) for name, param in model.named_parameters()}

"""Turn what users pass (tensor, tuple, dict, mmengine's ``input_shape``) into call arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def build_inputs(
    model: nn.Module,
    inputs: Any = None,
    input_shape: tuple[Any, ...] | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments for ``model(...)`` from the forms users pass.

    `inputs`: a tensor (one argument), a tuple (positional arguments), a dict (keyword
    arguments), or any other object (one argument: wrap a list or dict in a tuple to pass it
    positionally). `input_shape` follows mmengine: a tuple of ints builds one random tensor with
    batch size 1 prepended, a tuple of such tuples builds several.
    """
    if inputs is not None and input_shape is not None:
        raise ValueError("give either input_shape or inputs, not both")
    keyword = dict(kwargs or {})
    if input_shape is not None:
        return _random_inputs(model, input_shape), keyword
    if inputs is None:
        if keyword:
            return (), keyword
        raise ValueError(
            "no inputs given: pass inputs= (a tensor, a tuple of positional arguments or a dict "
            "of keyword arguments) or input_shape= (e.g. (3, 224, 224))"
        )
    if isinstance(inputs, tuple):
        return inputs, keyword
    if isinstance(inputs, Mapping):
        overlap = set(inputs) & set(keyword)
        if overlap:
            raise ValueError(f"keyword arguments given twice: {', '.join(sorted(overlap))}")
        return (), {**inputs, **keyword}
    return (inputs,), keyword


def _random_inputs(model: nn.Module, input_shape: tuple[Any, ...]) -> tuple[torch.Tensor, ...]:
    if _is_shape(input_shape):
        shapes = [input_shape]
    elif isinstance(input_shape, tuple) and input_shape and all(map(_is_shape, input_shape)):
        shapes = list(input_shape)
    else:
        raise ValueError(
            "input_shape must be a tuple of ints, e.g. (3, 224, 224), to build one input, or a "
            f"tuple of such tuples to build several; got {input_shape!r}"
        )
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else None
    generator = torch.Generator().manual_seed(0)
    return tuple(
        torch.randn((1, *shape), generator=generator, dtype=dtype).to(device) for shape in shapes
    )


def _is_shape(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) for v in value)

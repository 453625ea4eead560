"""Resampling: upsampling (``F.interpolate``), ``grid_sample`` and ``affine_grid``.

One flop per input sample an output element reads (one multiply-add of a weight and a value);
computing the weights is not counted. That is fvcore's and mmengine's convention for the two ops
they count, nearest (1 per output element) and bilinear (4 = 2 x 2 taps per output element), carried
over to the other modes: linear 2, trilinear 8 (2 x 2 x 2), bicubic 16 (4 x 4). Anti-aliased
resizing (``antialias=True``) widens the filter when it shrinks a dimension, so it reads
``ceil(taps * max(1, in / out))`` samples along that dimension. Activations are 0: resampling is
not a convolution or matmul. README.md has the table.
"""

from __future__ import annotations

import math
from typing import Any

from torchtally.plugin import HandlerSet, OpCall, first_input, first_output, no_activations

NEAREST = 1
LINEAR = 2  # taps per dimension of (bi/tri)linear interpolation
CUBIC = 4  # taps per dimension of bicubic interpolation
LANCZOS = 6  # taps per dimension of Lanczos-3 interpolation (a window of 3 on each side)

# op -> samples read per output element
UPSAMPLE_TAPS: dict[str, int] = {
    "aten::upsample_nearest1d": NEAREST,
    "aten::upsample_nearest2d": NEAREST,
    "aten::upsample_nearest3d": NEAREST,
    "aten::_upsample_nearest_exact1d": NEAREST,
    "aten::_upsample_nearest_exact2d": NEAREST,
    "aten::_upsample_nearest_exact3d": NEAREST,
    "aten::upsample_linear1d": LINEAR,
    "aten::upsample_bilinear2d": LINEAR**2,
    "aten::upsample_trilinear3d": LINEAR**3,
    "aten::upsample_bicubic2d": CUBIC**2,
}

# op -> taps per resized dimension, before widening for downscaling
ANTIALIAS_TAPS: dict[str, int] = {
    "aten::_upsample_bilinear2d_aa": LINEAR,
    "aten::_upsample_bicubic2d_aa": CUBIC,
    "aten::_upsample_lanczos2d_aa": LANCZOS,
}

# grid_sampler's interpolation_mode argument -> taps per dimension
GRID_SAMPLER_MODES: dict[int, int] = {0: LINEAR, 1: NEAREST, 2: CUBIC}  # bilinear, nearest, bicubic
GRID_SAMPLERS: dict[str, int] = {
    "aten::grid_sampler_2d": 2,
    "aten::grid_sampler_3d": 3,
    "aten::_grid_sampler_2d_cpu_fallback": 2,
}

# fvcore and mmengine trace F.grid_sample as aten::grid_sampler and report it as "grid_sampler".
GRID_SAMPLER_NAME = "grid_sampler"
AFFINE_GRID_NAME = "affine_grid_generator"


def upsample_flops(call: OpCall) -> int:
    """Samples read per output element times output elements."""
    return UPSAMPLE_TAPS[call.op] * first_output(call).numel


def antialias_taps(taps: int, size_in: int, size_out: int) -> int:
    """Samples read along one dimension: the filter widens by the shrink factor when shrinking.

    An upper bound: at the borders ATen clips the window to the input.
    """
    return math.ceil(taps * max(1.0, size_in / size_out))


def antialias_flops(call: OpCall) -> int:
    """Output elements times the product of the samples read along each resized dimension."""
    x, out = first_input(call), first_output(call)
    taps = ANTIALIAS_TAPS[call.op]
    per_output = math.prod(
        antialias_taps(taps, size_in, size_out)
        for size_in, size_out in zip(x.shape[2:], out.shape[2:], strict=True)
    )
    return per_output * out.numel


def grid_sampler_flops(call: OpCall) -> Any:
    """Output elements times the samples each reads (bilinear 4 in 2d, 8 in 3d; nearest 1)."""
    mode = call.arg("interpolation_mode")
    if mode not in GRID_SAMPLER_MODES:
        return NotImplemented
    taps = GRID_SAMPLER_MODES[mode] ** GRID_SAMPLERS[call.op]
    return {GRID_SAMPLER_NAME: taps * first_output(call).numel}


def affine_grid_flops(call: OpCall) -> dict[str, int]:
    """Each output coordinate is a dot product of theta's row with (x, y[, z], 1)."""
    out = first_output(call)  # (N, H, W, 2) or (N, D, H, W, 3)
    return {AFFINE_GRID_NAME: (out.shape[-1] + 1) * out.numel}


def cudnn_grid_sampler_flops(call: OpCall) -> dict[str, int]:
    """cuDNN's grid sampler: bilinear in 2d, 4 samples per output element."""
    return {GRID_SAMPLER_NAME: LINEAR**2 * first_output(call).numel}


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(
        "aten::cudnn_grid_sampler", flops=cudnn_grid_sampler_flops, activations=no_activations
    )
    handlers.add_ops(UPSAMPLE_TAPS, flops=upsample_flops, activations=no_activations)
    handlers.add_ops(ANTIALIAS_TAPS, flops=antialias_flops, activations=no_activations)
    handlers.add_ops(GRID_SAMPLERS, flops=grid_sampler_flops, activations=no_activations)
    handlers.add_ops(
        ("aten::affine_grid_generator", "aten::cudnn_affine_grid_generator"),
        flops=affine_grid_flops,
        activations=no_activations,
    )

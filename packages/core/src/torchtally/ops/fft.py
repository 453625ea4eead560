"""Fast Fourier transforms: ``torch.fft.*`` and ``torch.stft`` run ``_fft_r2c``, ``_fft_c2r`` and
``_fft_c2c`` (the backward pass too: an FFT's gradient is an FFT).

A complex transform over M points (the product of the transformed dims' sizes, so an n-d
transform is counted as one of its whole size) costs ``5/2 * M * log2(M)`` per batch element: the
classic ``5 M log2 M`` real flops of a radix-2 FFT (``M/2 * log2 M`` butterflies of a complex
multiply and two complex adds, 10 real operations), halved because one multiply-add counts as one
flop here, as for matmuls. A transform whose input or output is real costs half of that
(``5/4 * M * log2(M)``), the usual figure for a real FFT (a half-size complex FFT plus a linear
pass). Normalisation (a scale per element) is not counted. Activations are 0 (not a convolution
or matmul). docs/conventions.md compares this with the figures papers use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torchtally.handlers import HandlerSet
from torchtally.ops.common import first_output, no_activations
from torchtally.records import OpCall, TensorMeta

COMPLEX_FFT = 5 / 2  # multiply-adds per point and per log2(points)
REAL_FFT = COMPLEX_FFT / 2


def fft_flops(points: int, batch: int, per_point: float) -> int:
    """``per_point * points * log2(points)`` for each of `batch` transforms, rounded."""
    if points <= 1:
        return 0
    return round(batch * per_point * points * math.log2(points))


def _transform(x: TensorMeta, dims: Sequence[int]) -> tuple[int, int]:
    """(points transformed together, number of transforms) of `x` over `dims`."""
    points = math.prod(x.shape[d] for d in dims)
    return points, x.numel // points if points else 0


def fft_r2c_flops(call: OpCall) -> int:
    """Real input: the transform's size is the input's (a onesided output keeps half of it)."""
    points, batch = _transform(call.arg("self"), call.arg("dim"))
    return fft_flops(points, batch, REAL_FFT)


def fft_c2r_flops(call: OpCall) -> int:
    """Real output: the transform's size is the output's (``last_dim_size`` on the last dim)."""
    points, batch = _transform(first_output(call), call.arg("dim"))
    return fft_flops(points, batch, REAL_FFT)


def fft_c2c_flops(call: OpCall) -> int:
    points, batch = _transform(call.arg("self"), call.arg("dim"))
    return fft_flops(points, batch, COMPLEX_FFT)


def register(handlers: HandlerSet) -> None:
    flops = {
        "aten::_fft_r2c": fft_r2c_flops,
        "aten::_fft_c2r": fft_c2r_flops,
        "aten::_fft_c2c": fft_c2c_flops,
    }
    for op, handler in flops.items():
        handlers.add_ops(op, flops=handler, activations=no_activations)

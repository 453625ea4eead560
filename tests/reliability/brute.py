"""Brute-force references for the property tests: each op computed from its definition with
plain Python loops over nested lists, counting the arithmetic the loops do.

Each function returns ``(result, count)``. The result is compared with torch's, which shows the
loops really are the op; the count is then compared with the handler's. Sizes are tiny."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch

Nested = Any  # nested Python lists of floats


def at(values: Nested, index: Sequence[int]) -> Any:
    for i in index:
        values = values[i]
    return values


def put(values: Nested, index: Sequence[int], value: float) -> None:
    for i in index[:-1]:
        values = values[i]
    values[index[-1]] = value


def zeros(shape: Sequence[int]) -> Nested:
    if not shape:
        return 0.0
    return [zeros(shape[1:]) for _ in range(shape[0])]


def tensor(values: Nested) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# --- matmul family -------------------------------------------------------------------------


def matmul(a: Nested, b: Nested) -> tuple[Nested, int]:
    """(m, k) @ (k, n): one multiply-add per (i, j, l)."""
    m, k, n = len(a), len(b), len(b[0]) if b else 0
    out = zeros((m, n))
    macs = 0
    for i, j in itertools.product(range(m), range(n)):
        total = 0.0
        for r in range(k):
            total += a[i][r] * b[r][j]
            macs += 1
        out[i][j] = total
    return out, macs


def batched_matmul(a: Nested, b: Nested) -> tuple[Nested, int]:
    results = [matmul(x, y) for x, y in zip(a, b, strict=True)]
    return [r for r, _ in results], sum(c for _, c in results)


def matvec(a: Nested, v: Nested) -> tuple[Nested, int]:
    out, macs = matmul(a, [[x] for x in v])
    return [row[0] for row in out], macs


# --- convolution ---------------------------------------------------------------------------


def conv(
    x: Nested,
    w: Nested,
    in_shape: Sequence[int],
    w_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> tuple[Nested, int]:
    """Cross-correlation over the zero-padded input: every kernel tap is a multiply-add,
    padding taps included (they multiply a zero, but the definition does the product)."""
    n, _, *spatial = in_shape
    c_out, c_group, *kernel = w_shape
    out_spatial = [
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, p, d, k, st in zip(spatial, padding, dilation, kernel, stride, strict=True)
    ]
    out = zeros((n, c_out, *out_spatial))
    macs = 0
    out_per_group = c_out // groups
    for b, co in itertools.product(range(n), range(c_out)):
        group = co // out_per_group
        for pos in itertools.product(*map(range, out_spatial)):
            total = 0.0
            for ci, tap in itertools.product(
                range(c_group), itertools.product(*map(range, kernel))
            ):
                src = [
                    o * st - p + t * d
                    for o, st, p, t, d in zip(pos, stride, padding, tap, dilation, strict=True)
                ]
                inside = all(0 <= s < size for s, size in zip(src, spatial, strict=True))
                value = at(x, (b, group * c_group + ci, *src)) if inside else 0.0
                total += value * at(w, (co, ci, *tap))
                macs += 1
            put(out, (b, co, *pos), total)
    return out, macs


def conv_transpose(
    x: Nested,
    w: Nested,
    in_shape: Sequence[int],
    w_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> tuple[Nested, int]:
    """Each input element scatters through every kernel tap (one multiply-add each) into an
    uncropped output, which is then cropped by `padding` (taps landing there still happened)."""
    n, c_in, *spatial = in_shape
    _, c_group_out, *kernel = w_shape  # (C_in, C_out / groups, *K)
    c_out = c_group_out * groups
    full = [
        (s - 1) * st + d * (k - 1) + 1 + op
        for s, st, d, k, op in zip(spatial, stride, dilation, kernel, output_padding, strict=True)
    ]
    buffer = zeros((n, c_out, *full))
    macs = 0
    in_per_group = c_in // groups
    for b, ci in itertools.product(range(n), range(c_in)):
        group = ci // in_per_group
        for pos in itertools.product(*map(range, spatial)):
            value = at(x, (b, ci, *pos))
            for co, tap in itertools.product(
                range(c_group_out), itertools.product(*map(range, kernel))
            ):
                dst = [
                    o * st + t * d for o, st, t, d in zip(pos, stride, tap, dilation, strict=True)
                ]
                index = (b, group * c_group_out + co, *dst)
                put(buffer, index, at(buffer, index) + value * at(w, (ci, co, *tap)))
                macs += 1
    out_spatial = [f - 2 * p for f, p in zip(full, padding, strict=True)]
    out = zeros((n, c_out, *out_spatial))
    for b, co in itertools.product(range(n), range(c_out)):
        for pos in itertools.product(*map(range, out_spatial)):
            src = [o + p for o, p in zip(pos, padding, strict=True)]
            put(out, (b, co, *pos), at(buffer, (b, co, *src)))
    return out, macs


# --- normalisation -------------------------------------------------------------------------


def normalize(
    groups: list[list[float]],
    affine: list[tuple[float, float]] | None,
    stats: list[tuple[float, float]] | None,
    eps: float,
) -> tuple[list[list[float]], int]:
    """Normalise each group of values, counting one step per element per pass, as the
    convention counts them (a fused multiply-add or one basic operation each):

    with statistics to compute: mean (1 add), variance (1 square-accumulate), subtract the mean
    (1), divide by the standard deviation (1); with given statistics: one fused
    ``(x - mean) * inv_std`` (1); then the affine ``y * weight + bias`` (1) when there is one.
    `affine` and `stats` are per group (weight, bias) and (mean, var).
    """
    steps = 0
    out = []
    for g, values in enumerate(groups):
        if stats is None:
            mean = 0.0
            for v in values:
                mean += v
                steps += 1
            mean /= len(values)
            var = 0.0
            for v in values:
                var += (v - mean) ** 2
                steps += 1
            var /= len(values)
            inv_std = 1 / math.sqrt(var + eps)
            normed = []
            for v in values:
                centred = v - mean
                steps += 1
                normed.append(centred * inv_std)
                steps += 1
        else:
            mean, var = stats[g]
            inv_std = 1 / math.sqrt(var + eps)
            normed = []
            for v in values:
                normed.append((v - mean) * inv_std)
                steps += 1
        if affine is not None:
            weight, bias = affine[g]
            scaled = []
            for v in normed:
                scaled.append(v * weight + bias)
                steps += 1
            normed = scaled
        out.append(normed)
    return out, steps


# --- pooling -------------------------------------------------------------------------------


def pool_output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def window_taps(o: int, size: int, k: int, s: int, p: int, d: int) -> list[int]:
    """Positions (in input coordinates) of output o's window taps that lie in the padded input."""
    start = o * s - p
    return [start + j * d for j in range(k) if start + j * d < size + p]


def window_pool(
    x: Nested,
    shape: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
    kind: str,
    count_include_pad: bool = True,
) -> tuple[Nested, int]:
    """Max or average pooling; counts one compare or add per window element (padding
    included, positions past the padded input excluded, as torch's windows are clipped)."""
    n, c, *spatial = shape
    out_spatial = [
        pool_output_size(*args, ceil_mode)
        for args in zip(spatial, kernel, stride, padding, dilation, strict=True)
    ]
    out = zeros((n, c, *out_spatial))
    reads = 0
    for b, ch in itertools.product(range(n), range(c)):
        for pos in itertools.product(*map(range, out_spatial)):
            taps = [
                window_taps(o, size, k, st, p, d)
                for o, size, k, st, p, d in zip(
                    pos, spatial, kernel, stride, padding, dilation, strict=True
                )
            ]
            window = list(itertools.product(*taps))
            reads += len(window)
            real = [
                at(x, (b, ch, *t))
                for t in window
                if all(0 <= i < size for i, size in zip(t, spatial, strict=True))
            ]
            if kind == "max":
                value = max(real)
            else:
                divisor = len(window) if count_include_pad else len(real)
                value = sum(real) / divisor
            put(out, (b, ch, *pos), value)
    return out, reads


def adaptive_bins(size: int, out: int) -> list[range]:
    return [range(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def adaptive_pool(
    x: Nested, shape: Sequence[int], out_spatial: Sequence[int], kind: str
) -> tuple[Nested, int]:
    """Adaptive max or average pooling: one compare or add per element of each bin."""
    n, c, *spatial = shape
    bins = [adaptive_bins(s, o) for s, o in zip(spatial, out_spatial, strict=True)]
    out = zeros((n, c, *out_spatial))
    reads = 0
    for b, ch in itertools.product(range(n), range(c)):
        for pos in itertools.product(*map(range, out_spatial)):
            window = list(itertools.product(*(bins[d][o] for d, o in enumerate(pos))))
            reads += len(window)
            values = [at(x, (b, ch, *t)) for t in window]
            put(out, (b, ch, *pos), max(values) if kind == "max" else sum(values) / len(values))
    return out, reads


# --- broadcasting --------------------------------------------------------------------------


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...]:
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for sizes in zip(*padded, strict=True):
        big = {s for s in sizes if s != 1}
        assert len(big) <= 1, f"not broadcastable: {shapes}"
        out.append(big.pop() if big else 1)
    return tuple(out)


def elements(shape: Sequence[int]) -> int:
    """Count the elements of `shape` one index at a time."""
    return sum(1 for _ in itertools.product(*map(range, shape)))

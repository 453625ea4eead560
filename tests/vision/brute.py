"""Brute-force references for the vision ops (resampling and torchvision's ops), from their
definitions in torch's and torchvision's CPU kernels. Each returns ``(result, count)`` like
brute.py: the result is checked against the library, the count against the handler."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

from reliability.brute import at, put, zeros

Taps = list[tuple[int, float]]  # (input index, weight) read for one output index

# --- interpolation -------------------------------------------------------------------------


def _scale(size_in: int, size_out: int, align_corners: bool) -> float:
    if align_corners:
        return (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    return size_in / size_out


def nearest_taps(o: int, size_in: int, size_out: int, exact: bool) -> Taps:
    scale = size_in / size_out
    src = math.floor((o + 0.5) * scale) if exact else math.floor(o * scale)
    return [(min(src, size_in - 1), 1.0)]


def linear_taps(o: int, size_in: int, size_out: int, align_corners: bool) -> Taps:
    scale = _scale(size_in, size_out, align_corners)
    src = o * scale if align_corners else max((o + 0.5) * scale - 0.5, 0.0)
    low = math.floor(src)
    high = low + 1 if low < size_in - 1 else low
    frac = src - low
    return [(low, 1 - frac), (high, frac)]


def cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """Keys' cubic convolution weights for the taps at -1, 0, 1, 2 around the sample."""

    def near(x: float) -> float:
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def cubic_taps(o: int, size_in: int, size_out: int, align_corners: bool) -> Taps:
    scale = _scale(size_in, size_out, align_corners)
    src = o * scale if align_corners else (o + 0.5) * scale - 0.5
    low = math.floor(src)
    weights = cubic_weights(src - low)
    return [(min(max(low - 1 + j, 0), size_in - 1), weights[j]) for j in range(4)]


def antialias_taps(o: int, size_in: int, size_out: int, cubic: bool) -> Taps:
    """torch's anti-aliased filter: as wide as the shrink factor, clipped to the input."""
    scale = size_in / size_out
    support = (2.0 if cubic else 1.0) * max(scale, 1.0)
    center = scale * (o + 0.5)
    inverse = 1.0 / scale if scale >= 1.0 else 1.0
    start = max(int(center - support + 0.5), 0)
    stop = min(int(center + support + 0.5), size_in)

    def bilinear(x: float) -> float:
        return max(0.0, 1.0 - abs(x))

    def bicubic(x: float) -> float:  # a = -0.5 for anti-aliasing, as PIL
        x, a = abs(x), -0.5
        if x < 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        return (((x - 5) * x + 8) * x - 4) * a if x < 2 else 0.0

    kernel = bicubic if cubic else bilinear
    weights = [kernel((j - center + 0.5) * inverse) for j in range(start, stop)]
    total = sum(weights)
    return [(j, w / total) for j, w in zip(range(start, stop), weights, strict=True)]


def separable(
    x: Any, shape: Sequence[int], out_spatial: Sequence[int], taps: Callable[[int, int], Taps]
) -> tuple[Any, int]:
    """Resample the spatial dims: each output element sums the product of its per-dim taps,
    one multiply-add per tap read."""
    n, c, *_ = shape
    per_dim = [[taps(d, o) for o in range(size)] for d, size in enumerate(out_spatial)]
    out = zeros((n, c, *out_spatial))
    reads = 0
    for b, ch in itertools.product(range(n), range(c)):
        for pos in itertools.product(*map(range, out_spatial)):
            total = 0.0
            for combo in itertools.product(*(per_dim[d][o] for d, o in enumerate(pos))):
                weight = math.prod(w for _, w in combo)
                total += weight * at(x, (b, ch, *(i for i, _ in combo)))
                reads += 1
            put(out, (b, ch, *pos), total)
    return out, reads


# --- grid sampling -------------------------------------------------------------------------


def unnormalize(coord: float, size: int, align_corners: bool) -> float:
    if align_corners:
        return (coord + 1) / 2 * (size - 1)
    return ((coord + 1) * size - 1) / 2


def grid_sample(
    x: Any, shape: Sequence[int], grid: Any, out_spatial: Sequence[int], mode: str, align: bool
) -> tuple[Any, int]:
    """grid_sample with zero padding: every tap of the interpolation is read (zero outside)."""
    n, c, *spatial = shape
    dims = len(spatial)
    out = zeros((n, c, *out_spatial))
    reads = 0
    for b in range(n):
        for pos in itertools.product(*map(range, out_spatial)):
            coords = at(grid, (b, *pos))  # (x, y[, z]): reversed spatial order
            src = [unnormalize(coords[dims - 1 - d], spatial[d], align) for d in range(dims)]
            if mode == "nearest":
                taps = [[(round(s), 1.0)] for s in src]  # round half to even, as nearbyint
            elif mode == "bilinear":
                taps = [
                    [
                        (math.floor(s), 1 - (s - math.floor(s))),
                        (math.floor(s) + 1, s - math.floor(s)),
                    ]
                    for s in src
                ]
            else:  # bicubic
                taps = [
                    [
                        (math.floor(s) - 1 + j, w)
                        for j, w in enumerate(cubic_weights(s - math.floor(s)))
                    ]
                    for s in src
                ]
            for ch in range(c):
                total = 0.0
                for combo in itertools.product(*taps):
                    index = [i for i, _ in combo]
                    inside = all(0 <= i < size for i, size in zip(index, spatial, strict=True))
                    value = at(x, (b, ch, *index)) if inside else 0.0
                    total += math.prod(w for _, w in combo) * value
                    reads += 1
                put(out, (b, ch, *pos), total)
    return out, reads


def affine_grid(theta: Any, size: Sequence[int], align: bool) -> tuple[Any, int]:
    """Each output coordinate is theta's row dotted with (x, y[, z], 1): one multiply-add per
    term."""
    n, _, *spatial = size
    dims = len(spatial)

    def base(index: int, length: int) -> float:
        if align:
            return -1.0 + 2.0 * index / (length - 1) if length > 1 else 0.0
        return (2 * index + 1) / length - 1

    out = zeros((n, *spatial, dims))
    macs = 0
    for b in range(n):
        for pos in itertools.product(*map(range, spatial)):
            point = [base(pos[dims - 1 - d], spatial[dims - 1 - d]) for d in range(dims)] + [1.0]
            for r in range(dims):
                total = 0.0
                for col in range(dims + 1):
                    total += theta[b][r][col] * point[col]
                    macs += 1
                put(out, (b, *pos, r), total)
    return out, macs


# --- torchvision ops -----------------------------------------------------------------------


def bilinear_read(plane: Any, height: int, width: int, y: float, x: float) -> tuple[float, int]:
    """roi_align's bilinear read: 4 weighted corners (weights 0 outside the map)."""
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0, 4  # the CPU kernel still accumulates 4 zero-weighted corners
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    value = (
        hy * hx * plane[y_low][x_low]
        + hy * lx * plane[y_low][x_high]
        + ly * hx * plane[y_high][x_low]
        + ly * lx * plane[y_high][x_high]
    )
    return value, 4


def roi_align(
    x: Any,
    shape: Sequence[int],
    rois: list[list[float]],
    pooled: tuple[int, int],
    scale: float,
    ratio: int,
    aligned: bool,
    position_sensitive: bool,
) -> tuple[Any, int]:
    _, channels, height, width = shape
    ph, pw = pooled
    out_channels = channels // (ph * pw) if position_sensitive else channels
    out = zeros((len(rois), out_channels, ph, pw))
    reads = 0
    offset = 0.5 if aligned else 0.0
    for k, (batch, x1, y1, x2, y2) in enumerate(rois):
        start_w, start_h = x1 * scale - offset, y1 * scale - offset
        roi_w, roi_h = x2 * scale - offset - start_w, y2 * scale - offset - start_h
        if not aligned and not position_sensitive:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        if position_sensitive:  # ps_roi_align: no alignment offset, sizes at least 0.1
            start_w, start_h = x1 * scale - 0.5, y1 * scale - 0.5
            roi_w = max(x2 * scale - 0.5 - start_w, 0.1)
            roi_h = max(y2 * scale - 0.5 - start_h, 0.1)
        bin_h, bin_w = roi_h / ph, roi_w / pw
        grid_h = ratio if ratio > 0 else math.ceil(roi_h / ph)
        grid_w = ratio if ratio > 0 else math.ceil(roi_w / pw)
        count = max(grid_h * grid_w, 1)
        for c, i, j in itertools.product(range(out_channels), range(ph), range(pw)):
            source = (c * ph + i) * pw + j if position_sensitive else c
            plane = x[int(batch)][source]
            total = 0.0
            for iy, ix in itertools.product(range(grid_h), range(grid_w)):
                y = start_h + i * bin_h + (iy + 0.5) * bin_h / grid_h
                xx = start_w + j * bin_w + (ix + 0.5) * bin_w / grid_w
                value, read = bilinear_read(plane, height, width, y, xx)
                total += value
                reads += read
            out[k][c][i][j] = total / count
    return out, reads


def roi_pool(
    x: Any,
    shape: Sequence[int],
    rois: list[list[float]],
    pooled: tuple[int, int],
    position_sensitive: bool,
) -> tuple[Any, int]:
    """Max (roi_pool) or average (ps_roi_pool) over each bin's cells: one compare or add per
    cell. Boxes are whole numbers and scale 1 here, so rounding plays no part. ps_roi_pool
    clips bins to height - 1 and width - 1 (torchvision's kernel never reads the last row and
    column); roi_pool to the map."""
    _, channels, height, width = shape
    ph, pw = pooled
    out_channels = channels // (ph * pw) if position_sensitive else channels
    out = zeros((len(rois), out_channels, ph, pw))
    reads = 0
    for k, (batch, x1, y1, x2, y2) in enumerate(rois):
        if position_sensitive:
            roi_h, roi_w = max(y2 - y1, 1), max(x2 - x1, 1)
        else:
            roi_h, roi_w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bin_h, bin_w = roi_h / ph, roi_w / pw
        last_row, last_col = (height - 1, width - 1) if position_sensitive else (height, width)
        for c, i, j in itertools.product(range(out_channels), range(ph), range(pw)):
            source = (c * ph + i) * pw + j if position_sensitive else c
            rows = range(
                min(max(math.floor(i * bin_h) + int(y1), 0), last_row),
                min(max(math.ceil((i + 1) * bin_h) + int(y1), 0), last_row),
            )
            cols = range(
                min(max(math.floor(j * bin_w) + int(x1), 0), last_col),
                min(max(math.ceil((j + 1) * bin_w) + int(x1), 0), last_col),
            )
            values = [x[int(batch)][source][r][s] for r in rows for s in cols]
            reads += len(values)
            if position_sensitive:
                out[k][c][i][j] = sum(values) / len(values) if values else 0.0
            else:
                out[k][c][i][j] = max(values) if values else 0.0
    return out, reads


def deform_read(plane: Any, height: int, width: int, y: float, x: float) -> float:
    """deform_conv2d's bilinear read (zero outside the map)."""
    if y <= -1 or height <= y or x <= -1 or width <= x:
        return 0.0
    y_low, x_low = math.floor(y), math.floor(x)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx

    def value(r: int, s: int) -> float:
        return plane[r][s] if 0 <= r < height and 0 <= s < width else 0.0

    return (
        hy * hx * value(y_low, x_low)
        + hy * lx * value(y_low, x_low + 1)
        + ly * hx * value(y_low + 1, x_low)
        + ly * lx * value(y_low + 1, x_low + 1)
    )


def deform_conv2d(
    x: Any,
    shape: Sequence[int],
    weight: Any,
    w_shape: Sequence[int],
    offset: Any,
    mask: Any | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    offset_groups: int,
) -> tuple[Any, int]:
    """Sample every column value (4 multiply-adds for the bilinear read, 1 for the mask), then
    convolve the columns (one multiply-add per weight element per output position)."""
    n, c_in, height, width = shape
    c_out, c_group, kh, kw = w_shape
    groups = c_in // c_group
    out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    per_offset_group = c_in // offset_groups
    out = zeros((n, c_out, out_h, out_w))
    flops = 0
    for b, oh, ow in itertools.product(range(n), range(out_h), range(out_w)):
        columns: dict[tuple[int, int, int], float] = {}
        for ci, i, j in itertools.product(range(c_in), range(kh), range(kw)):
            group, tap = ci // per_offset_group, i * kw + j
            dy = offset[b][2 * (group * kh * kw + tap)][oh][ow]
            dx = offset[b][2 * (group * kh * kw + tap) + 1][oh][ow]
            y = oh * stride[0] - padding[0] + i * dilation[0] + dy
            xx = ow * stride[1] - padding[1] + j * dilation[1] + dx
            value = deform_read(x[b][ci], height, width, y, xx)
            flops += 4
            if mask is not None:
                value *= mask[b][group * kh * kw + tap][oh][ow]
                flops += 1
            columns[ci, i, j] = value
        for co in range(c_out):
            group = co // (c_out // groups)
            total = 0.0
            for ci, i, j in itertools.product(range(c_group), range(kh), range(kw)):
                total += weight[co][ci][i][j] * columns[group * c_group + ci, i, j]
                flops += 1
            out[b][co][oh][ow] = total
    return out, flops


def nms(boxes: list[list[float]], scores: list[float], threshold: float) -> tuple[list[int], int]:
    """Greedy NMS in score order; counts the IoU tests (each kept box against every later box
    not yet suppressed)."""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    suppressed = [False] * len(boxes)
    keep: list[int] = []
    tests = 0

    def area(b: list[float]) -> float:
        return (b[2] - b[0]) * (b[3] - b[1])

    for rank, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[rank + 1 :]:
            if suppressed[j]:
                continue
            tests += 1
            a, b = boxes[i], boxes[j]
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = w * h
            if inter / (area(a) + area(b) - inter) > threshold:
                suppressed[j] = True
    return keep, tests

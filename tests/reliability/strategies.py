"""Hypothesis strategies shared by the property tests: valid convolution and pooling calls."""

from __future__ import annotations

from typing import Any

import pytest

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")
assume = hypothesis.assume


@st.composite
def conv_cases(draw: st.DrawFn, transposed: bool) -> dict[str, Any]:
    dims = draw(st.integers(1, 3))
    small = 3 if dims < 3 else 2  # keep 3d loops short
    groups = draw(st.integers(1, 2))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, small)) for _ in range(dims)]
    stride = [draw(st.integers(1, 2)) for _ in range(dims)]
    dilation = [draw(st.integers(1, 2)) for _ in range(dims)]
    padding = [draw(st.integers(0, 1)) for _ in range(dims)]
    spatial = [
        draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), small + 2))
        for k, d, p in zip(kernel, dilation, padding, strict=True)
    ]
    output_padding = [
        draw(st.integers(0, max(0, min(s, d) - 1))) for s, d in zip(stride, dilation, strict=True)
    ]
    if transposed:
        assume(
            all(
                d * (k - 1) + 1 + op > 2 * p
                for k, d, p, op in zip(kernel, dilation, padding, output_padding, strict=True)
            )
        )
    return {
        "n": draw(st.integers(1, 2)),
        "c_in": c_in,
        "c_out": c_out,
        "groups": groups,
        "kernel": kernel,
        "stride": stride,
        "dilation": dilation,
        "padding": padding,
        "spatial": spatial,
        "output_padding": output_padding,
    }


@st.composite
def pool_cases(draw: st.DrawFn, kind: str, ceil_mode: bool | None = None) -> dict[str, Any]:
    dims = draw(st.integers(2, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(dims)]
    stride = [draw(st.integers(1, 3)) for _ in range(dims)]
    dilation = [draw(st.integers(1, 2)) if kind == "max" else 1 for _ in range(dims)]
    padding = [draw(st.integers(0, k // 2)) for k in kernel]
    spatial = [
        draw(st.integers(d * (k - 1) + 1 - 2 * p, d * (k - 1) + 3))
        for k, d, p in zip(kernel, dilation, padding, strict=True)
    ]
    assume(all(s >= 1 for s in spatial))
    return {
        "shape": (draw(st.integers(1, 2)), draw(st.integers(1, 2)), *spatial),
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "ceil_mode": draw(st.booleans()) if ceil_mode is None else ceil_mode,
        "count_include_pad": draw(st.booleans()),
    }

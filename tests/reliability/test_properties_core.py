"""Property tests for every formula in core (torchtally.ops): on random valid small shapes and
arguments the handler's count equals a brute-force count from the op's definition (reliability/
brute.py computes each op with plain loops, checked against torch's result, and counts what the
loops do), the same count comes out in meta mode, and counting never raises."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from reliability import brute
from reliability.helpers import deterministic
from reliability.strategies import conv_cases, pool_cases
from torchtally_testing import Fn

import torchtally

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
_hypothesis = pytest.importorskip("hypothesis")
assume = _hypothesis.assume
given = _hypothesis.given
st = pytest.importorskip("hypothesis.strategies")

sizes = st.integers(1, 4)


def run(fn: Callable[..., Any], *inputs: Any, mode: str = "real", **kwargs: Any) -> Any:
    kwargs.setdefault("warn_unsupported", False)
    return torchtally.analyze(Fn(fn), inputs, mode=mode, **kwargs)


def counted(
    fn: Callable[..., Any], *inputs: torch.Tensor, op: str, metric: str = "flops", **kwargs: Any
) -> int:
    """The count of `metric` for one call of `fn`, which must run `op`; equal in meta mode."""
    analysis = run(fn, *inputs, strict=True, **kwargs)
    assert op in {call.op for call in analysis.trace.ops}, f"{op} did not run"
    assert analysis.unsupported_ops(metric) == {}, analysis.unsupported_ops(metric)
    meta = run(fn, *(x.to("meta") for x in inputs), mode="meta", strict=True, **kwargs)
    assert meta.total(metric) == analysis.total(metric), "meta mode counts differently"
    return analysis.total(metric)


def close(result: torch.Tensor, reference: Any) -> None:
    torch.testing.assert_close(result, brute.tensor(reference), rtol=1e-9, atol=1e-9)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


# --- matmul family -------------------------------------------------------------------------


@deterministic
@given(m=sizes, k=sizes, n=sizes, alpha=st.sampled_from([1.0, 0.5]), beta=st.sampled_from([1, 0]))
def test_mm_and_addmm(m: int, k: int, n: int, alpha: float, beta: float) -> None:
    a, b, bias = randn(m, k), randn(k, n, seed=1), randn(n, seed=2)
    product, macs = brute.matmul(a.tolist(), b.tolist())
    close(torch.mm(a, b), product)
    assert counted(torch.mm, a, b, op="aten::mm") == macs
    assert counted(torch.mm, a, b, op="aten::mm", metric="activations") == m * n
    # addmm: the bias add is not counted (fvcore's convention), only the product's multiply-adds
    addmm = lambda c, x, y: torch.addmm(c, x, y, beta=beta, alpha=alpha)  # noqa: E731
    assert counted(addmm, bias, a, b, op="aten::addmm") == macs
    fused = lambda c, x, y: torch._addmm_activation(c, x, y)  # noqa: E731
    assert counted(fused, bias, a, b, op="aten::_addmm_activation") == macs


@deterministic
@given(batch=sizes, m=sizes, k=sizes, n=sizes)
def test_bmm_baddbmm_addbmm(batch: int, m: int, k: int, n: int) -> None:
    a, b = randn(batch, m, k), randn(batch, k, n, seed=1)
    product, macs = brute.batched_matmul(a.tolist(), b.tolist())
    close(torch.bmm(a, b), product)
    assert counted(torch.bmm, a, b, op="aten::bmm") == macs
    assert counted(torch.bmm, a, b, op="aten::bmm", metric="activations") == batch * m * n
    assert counted(torch.baddbmm, randn(batch, m, n), a, b, op="aten::baddbmm") == macs
    # addbmm sums the batch of products into one (m, n): the same multiply-adds
    assert counted(torch.addbmm, randn(m, n), a, b, op="aten::addbmm") == macs


@deterministic
@given(m=sizes, k=sizes)
def test_mv_addmv_dot_vdot(m: int, k: int) -> None:
    a, v, w = randn(m, k), randn(k, seed=1), randn(k, seed=2)
    product, macs = brute.matvec(a.tolist(), v.tolist())
    close(torch.mv(a, v), product)
    assert counted(torch.mv, a, v, op="aten::mv") == macs
    assert counted(torch.addmv, randn(m), a, v, op="aten::addmv") == macs
    dot, dot_macs = brute.matvec([v.tolist()], w.tolist())
    close(torch.dot(v, w).reshape(1), dot)
    assert counted(torch.dot, v, w, op="aten::dot") == dot_macs
    assert counted(torch.vdot, v, w, op="aten::vdot") == dot_macs


@deterministic
@given(batch=st.lists(sizes, max_size=2), m=sizes, k=sizes, n=sizes, vector=st.booleans())
def test_matmul_and_linear_through_their_decompositions(
    batch: list[int], m: int, k: int, n: int, vector: bool
) -> None:
    """torch.matmul with any batch dims (broadcast) and F.linear: the multiply-adds of one
    (m, k) @ (k, n) product per batch element."""
    a = randn(*batch, m, k)
    b = randn(k, seed=1) if vector else randn(*batch, k, n, seed=1)
    per_product = m * k * (1 if vector else n)
    expected = math.prod(batch) * per_product
    analysis = run(torch.matmul, a, b, strict=True)
    assert analysis.total() == expected
    weight = randn(n, k, seed=2)
    assert run(F.linear, a, weight, strict=True).total() == math.prod(batch) * m * k * n


# --- convolution ---------------------------------------------------------------------------


@deterministic
@given(case=conv_cases(transposed=False))
def test_convolution(case: dict[str, Any]) -> None:
    shape = (case["n"], case["c_in"], *case["spatial"])
    w_shape = (case["c_out"], case["c_in"] // case["groups"], *case["kernel"])
    x, w, bias = randn(*shape), randn(*w_shape, seed=1), randn(case["c_out"], seed=2)
    conv = getattr(F, f"conv{len(case['spatial'])}d")
    args = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    result = conv(x, w, **args)
    reference, macs = brute.conv(x.tolist(), w.tolist(), shape, w_shape, **args)
    close(result, reference)
    call = lambda x, w, b: conv(x, w, b, **args)  # noqa: E731
    assert counted(call, x, w, bias, op="aten::convolution") == macs
    assert counted(call, x, w, bias, op="aten::convolution", metric="activations") == result.numel()


@deterministic
@given(case=conv_cases(transposed=True))
def test_transposed_convolution(case: dict[str, Any]) -> None:
    shape = (case["n"], case["c_in"], *case["spatial"])
    w_shape = (case["c_in"], case["c_out"] // case["groups"], *case["kernel"])
    x, w = randn(*shape), randn(*w_shape, seed=1)
    conv = getattr(F, f"conv_transpose{len(case['spatial'])}d")
    args = {k: case[k] for k in ("stride", "padding", "output_padding", "dilation", "groups")}
    result = conv(x, w, **args)
    reference, macs = brute.conv_transpose(x.tolist(), w.tolist(), shape, w_shape, **args)
    close(result, reference)
    call = lambda x, w: conv(x, w, **args)  # noqa: E731
    assert counted(call, x, w, op="aten::convolution") == macs


# --- normalisation -------------------------------------------------------------------------


def channel_groups(x: torch.Tensor, groups: int) -> list[list[float]]:
    """(N, C, *S) -> per (n, group) the list of values normalised together."""
    return x.reshape(x.shape[0] * groups, -1).tolist()


@deterministic
@given(
    n=st.integers(2, 3),
    c=sizes,
    spatial=st.lists(st.integers(1, 3), max_size=2),
    affine=st.booleans(),
    training=st.booleans(),
    track=st.booleans(),
)
def test_batch_norm(
    n: int, c: int, spatial: list[int], affine: bool, training: bool, track: bool
) -> None:
    """Eval with running statistics applies them; otherwise statistics are computed first."""
    x = randn(n, c, *spatial)
    norm = torch.nn.BatchNorm1d if len(spatial) < 2 else torch.nn.BatchNorm2d
    layer = norm(c, affine=affine, track_running_stats=track).double().train(training)
    if affine:
        with torch.no_grad():
            layer.weight.copy_(randn(c, seed=1))
            layer.bias.copy_(randn(c, seed=2))
    uses_batch_stats = training or not track
    # per channel: every (n, *spatial) value
    per_channel = x.transpose(0, 1).reshape(c, -1).tolist()
    stats = (
        None
        if uses_batch_stats
        else [
            (m, v)
            for m, v in zip(layer.running_mean.tolist(), layer.running_var.tolist(), strict=True)
        ]
    )
    weights = list(zip(layer.weight.tolist(), layer.bias.tolist(), strict=True)) if affine else None
    reference, steps = brute.normalize(per_channel, weights, stats, layer.eps)
    expected = brute.tensor(reference).reshape(c, n, *spatial).transpose(0, 1)
    layer_copy = norm(c, affine=affine, track_running_stats=track).double().train(training)
    layer_copy.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer_copy(x), expected)
    analysis = torchtally.analyze(layer, x, strict=True, warn_unsupported=False)
    assert analysis.total() == steps
    meta = torchtally.analyze(layer, x, mode="fake", strict=True, warn_unsupported=False)
    assert meta.total() == steps


BATCH_NORM_VARIANTS = {  # op -> training, from its arguments (None: its `training` argument)
    "aten::native_batch_norm": None,
    "aten::_native_batch_norm_legit": None,
    "aten::_native_batch_norm_legit_functional": None,
    "aten::cudnn_batch_norm": None,
    "aten::miopen_batch_norm": None,
    "aten::_native_batch_norm_legit_no_training": False,
    "aten::_batch_norm_with_update": True,
    "aten::_batch_norm_with_update_functional": True,
    "aten::_batch_norm_no_update": "no running stats",
}


@deterministic
@given(
    shape=st.lists(sizes, min_size=2, max_size=4),
    affine=st.booleans(),
    training=st.booleans(),
)
def test_batch_norm_variants_count_like_the_definition(
    shape: list[int], affine: bool, training: bool
) -> None:
    """The ops other backends and functionalised graphs run instead of native_batch_norm, called
    through their handlers on recorded calls with their own schemas' argument names."""
    from torchtally.ops import handlers
    from torchtally.records import OpCall, TensorMeta

    x = TensorMeta(tuple(shape), torch.float32)
    channel = TensorMeta((shape[1],), torch.float32)
    for op, mode in BATCH_NORM_VARIANTS.items():
        packet = getattr(torch.ops.aten, op.removeprefix("aten::"))
        schema = getattr(packet, packet.overloads()[0])._schema
        arguments: dict[str, Any] = {a.name: None for a in schema.arguments}
        arguments["input"] = x
        if "weight" in arguments:
            arguments["weight"] = channel if affine else None
            arguments["bias"] = channel if affine else None
        runs_training = training if mode is None else mode
        if mode == "no running stats":
            runs_training = training
            stats = None if training else channel
            arguments["running_mean"] = arguments["running_var"] = stats
        else:
            arguments["running_mean"] = arguments["running_var"] = channel
        if "training" in arguments:
            arguments["training"] = training
        call = OpCall(op, "default", arguments, (x,), None, ("",))
        groups = [[0.0] * (x.numel // shape[1]) for _ in range(shape[1])]
        weights = [(1.0, 0.0)] * shape[1] if affine else None
        stats_given = None if runs_training else [(0.0, 1.0)] * shape[1]
        _, steps = brute.normalize(groups, weights, stats_given, 1e-5)
        assert handlers.op_handlers("flops")[op](call, torchtally.CountOptions()) == steps, op


@deterministic
@given(
    n=sizes,
    groups=st.integers(1, 2),
    per_group=st.integers(1, 2),
    spatial=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    affine=st.booleans(),
)
def test_group_norm(n: int, groups: int, per_group: int, spatial: list[int], affine: bool) -> None:
    c = groups * per_group
    x = randn(n, c, *spatial)
    assume(x[0].numel() // groups > 1)  # one value per group has no variance
    layer = torch.nn.GroupNorm(groups, c, affine=affine).double()
    reference, steps = brute.normalize(channel_groups(x, groups), None, None, layer.eps)
    if affine:  # the affine is per channel, after normalising: one more step per element
        steps += x.numel()
    else:
        torch.testing.assert_close(layer(x), brute.tensor(reference).reshape(x.shape))
    assert counted(layer, x, op="aten::native_group_norm") == steps


@deterministic
@given(
    batch=st.lists(sizes, min_size=1, max_size=2),
    normalized=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    affine=st.booleans(),
)
def test_layer_norm(batch: list[int], normalized: list[int], affine: bool) -> None:
    x = randn(*batch, *normalized)
    layer = torch.nn.LayerNorm(normalized, elementwise_affine=affine).double()
    rows = x.reshape(-1, math.prod(normalized)).tolist()
    reference, steps = brute.normalize(rows, None, None, layer.eps)
    if affine:
        steps += x.numel()
    else:
        torch.testing.assert_close(layer(x), brute.tensor(reference).reshape(x.shape))
    assert counted(layer, x, op="aten::native_layer_norm") == steps


@deterministic
@given(
    n=sizes,
    c=sizes,
    spatial=st.lists(st.integers(2, 3), min_size=1, max_size=2),
    affine=st.booleans(),
)
def test_instance_norm(n: int, c: int, spatial: list[int], affine: bool) -> None:
    """Instance norm computes statistics per (sample, channel), in eval mode too."""
    x = randn(n, c, *spatial)
    norm = torch.nn.InstanceNorm1d if len(spatial) == 1 else torch.nn.InstanceNorm2d
    layer = norm(c, affine=affine).double().eval()
    reference, steps = brute.normalize(x.reshape(n * c, -1).tolist(), None, None, layer.eps)
    if affine:
        steps += x.numel()
    else:
        torch.testing.assert_close(layer(x), brute.tensor(reference).reshape(x.shape))
    analysis = torchtally.analyze(layer, x, strict=True, warn_unsupported=False)
    assert analysis.total() == steps


# --- pooling -------------------------------------------------------------------------------


def pooled(case: dict[str, Any], kind: str) -> tuple[torch.Tensor, Callable[..., Any], int]:
    if kind == "avg":
        case = {**case, "dilation": [1] * len(case["kernel"])}  # average pooling has none
    x = randn(*case["shape"])
    dims = len(case["shape"]) - 2
    args = {k: case[k] for k in ("stride", "padding", "ceil_mode")}
    if kind == "max":
        pool = getattr(F, f"max_pool{dims}d")
        args["dilation"] = case["dilation"]
    else:
        pool = getattr(F, f"avg_pool{dims}d")
        args["count_include_pad"] = case["count_include_pad"]
    call = lambda x: pool(x, case["kernel"], **args)  # noqa: E731
    reference, reads = brute.window_pool(
        x.tolist(),
        case["shape"],
        case["kernel"],
        case["stride"],
        case["padding"],
        case["dilation"],
        case["ceil_mode"],
        kind,
        case["count_include_pad"],
    )
    close(call(x), reference)
    return x, call, reads


@deterministic
@given(case=pool_cases("max", ceil_mode=False), kind=st.sampled_from(["max", "avg"]))
def test_window_pooling(case: dict[str, Any], kind: str) -> None:
    x, call, reads = pooled(case, kind)
    op = (
        f"aten::max_pool{x.ndim - 2}d_with_indices"
        if kind == "max"
        else f"aten::avg_pool{x.ndim - 2}d"
    )
    assert counted(call, x, op=op, elementwise=True) == reads
    assert run(call, x).total() == 0  # element-wise counting off: listed as unsupported
    assert run(call, x).unsupported_ops() == {op: 1}


@deterministic
@given(case=pool_cases("max", ceil_mode=True), kind=st.sampled_from(["max", "avg"]))
def test_window_pooling_with_ceil_mode(case: dict[str, Any], kind: str) -> None:
    x, call, reads = pooled(case, kind)
    assert run(call, x, elementwise=True, strict=True).total() == reads


@deterministic
@given(
    n=sizes,
    c=sizes,
    out=st.lists(st.integers(1, 3), min_size=2, max_size=3),
    factor=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    kind=st.sampled_from(["max", "avg"]),
)
def test_adaptive_pooling_with_bins_that_tile_the_input(
    n: int, c: int, out: list[int], factor: list[int], kind: str
) -> None:
    """One compare or add per input element when the output size divides the input size (then
    bins tile the input; otherwise they overlap and the convention counts each element once)."""
    spatial = [o * f for o, f in zip(out, factor, strict=False)]
    x = randn(n, c, *spatial)
    dims = len(out)
    pool = getattr(F, f"adaptive_{kind}_pool{dims}d")
    call = lambda x: pool(x, out)  # noqa: E731
    reference, reads = brute.adaptive_pool(x.tolist(), x.shape, out, kind)
    result = call(x)
    close(result[0] if kind == "max" and isinstance(result, tuple) else result, reference)
    assert reads == x.numel()
    if kind == "avg":
        ops = {f"aten::_adaptive_avg_pool{dims}d", "aten::mean"}  # mean for a 1x1 output
        analysis = run(call, x, strict=True)
        assert ops & {call.op for call in analysis.trace.ops}
        assert analysis.total() == reads  # counted with element-wise counting off too
        assert run(call, x.to("meta"), mode="meta").total() == reads
    else:
        assert counted(call, x, op=f"aten::adaptive_max_pool{dims}d", elementwise=True) == reads


# --- element-wise ops and reductions -------------------------------------------------------

# Costs per output element from conventions.md's two rules (a basic IEEE operation or a fused
# multiply-add is 1, a transcendental function call is 4), derived here from each textbook
# formula, independently of torchtally's catalog.
T = 4
UNARY: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], int]] = {
    "aten::abs": (torch.abs, 1),
    "aten::neg": (torch.neg, 1),
    "aten::sqrt": (lambda x: torch.sqrt(x.abs()), 1),
    "aten::rsqrt": (lambda x: torch.rsqrt(x.abs() + 1), 1),
    "aten::reciprocal": (torch.reciprocal, 1),
    "aten::floor": (torch.floor, 1),
    "aten::relu": (torch.relu, 1),  # compare, select
    "aten::leaky_relu": (F.leaky_relu, 1),  # compare, select of x or a * x
    "aten::hardtanh": (F.hardtanh, 1),  # a clamp
    "aten::exp": (torch.exp, T),
    "aten::log": (lambda x: torch.log(x.abs() + 1), T),
    "aten::tanh": (torch.tanh, T),
    "aten::erf": (torch.erf, T),
    "aten::sin": (torch.sin, T),
    "aten::hardsigmoid": (F.hardsigmoid, 2),  # x / 6 + 1/2 as one FMA, clamp
    "aten::hardswish": (F.hardswish, 3),  # FMA, clamp, multiply by x
    "aten::sigmoid": (torch.sigmoid, T + 2),  # 1 / (1 + exp(-x)): exp, add, divide
    "aten::silu": (F.silu, T + 3),  # x * sigmoid(x)
    "aten::gelu": (F.gelu, T + 3),  # x * (1 + erf(x / sqrt 2)) / 2: scale, erf, add, 2 mul
    "aten::elu": (F.elu, T + 2),  # x > 0 ? x : a * (exp(x) - 1): expm1, multiply, select
    "aten::softplus": (F.softplus, 2 * T + 3),  # log1p(exp(b x)) / b, linear past threshold
    "aten::mish": (F.mish, 3 * T + 2),  # x * tanh(softplus(x)): exp, log1p, tanh, multiply
    "aten::_softmax": (lambda x: torch.softmax(x, -1), T + 4),  # max, subtract, exp, sum, div
    "aten::_log_softmax": (lambda x: torch.log_softmax(x, -1), T + 4),  # max, sub, exp, sum, sub
}
BINARY: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], int]] = {
    "aten::add": (torch.add, 1),
    "aten::sub": (torch.sub, 1),
    "aten::mul": (torch.mul, 1),
    "aten::div": (torch.div, 1),
    "aten::maximum": (torch.maximum, 1),
    "aten::minimum": (torch.minimum, 1),
    "aten::gt": (torch.gt, 1),
    "aten::eq": (torch.eq, 1),
    "aten::pow": (lambda x, y: torch.pow(x.abs() + 1, 2), 1),  # a small constant exponent
    "aten::remainder": (lambda x, y: torch.remainder(x, y.abs() + 1), 3),  # div, floor, FMA
    "aten::fmod": (lambda x, y: torch.fmod(x, y.abs() + 1), 3),  # div, trunc, FMA
    "aten::atan2": (torch.atan2, T),
}
TERNARY: dict[str, tuple[Callable[..., torch.Tensor], int]] = {
    "aten::addcmul": (torch.addcmul, 2),  # self + v * a * b: multiply, FMA
    "aten::addcdiv": (lambda s, a, b: torch.addcdiv(s, a, b.abs() + 1), 2),  # divide, FMA
    "aten::lerp": (torch.lerp, 2),  # a + w * (b - a): subtract, FMA
}
# Costs per input element: one pass of compare or add; var/std three passes (mean, subtract,
# square-accumulate); logsumexp max, subtract, exp, add.
REDUCTIONS: dict[str, tuple[Callable[[torch.Tensor, int], Any], int]] = {
    "aten::sum": (lambda x, d: x.sum(d), 1),
    "aten::mean": (lambda x, d: x.mean(d), 1),
    "aten::amax": (lambda x, d: x.amax(d), 1),
    "aten::amin": (lambda x, d: x.amin(d), 1),
    "aten::max": (lambda x, d: x.max(d), 1),
    "aten::argmax": (lambda x, d: x.argmax(d), 1),
    "aten::prod": (lambda x, d: x.prod(d), 1),
    "aten::cumsum": (lambda x, d: x.cumsum(d), 1),
    "aten::any": (lambda x, d: (x > 0).any(d), 1),
    "aten::linalg_vector_norm": (lambda x, d: torch.linalg.vector_norm(x, dim=d), 1),
    "aten::var": (lambda x, d: x.var(d), 3),
    "aten::std": (lambda x, d: x.std(d), 3),
    "aten::logsumexp": (lambda x, d: x.logsumexp(d), T + 3),
}

shapes = st.lists(st.integers(1, 3), min_size=1, max_size=3)


@st.composite
def broadcastable(draw: st.DrawFn, count: int) -> list[tuple[int, ...]]:
    """`count` shapes that broadcast together: each keeps, drops or squeezes the base's dims."""
    base = draw(shapes)
    result = []
    for _ in range(count):
        keep = draw(st.integers(0, len(base)))
        dims = base[len(base) - keep :]
        result.append(tuple(s if draw(st.booleans()) else 1 for s in dims))
    return result


@deterministic
@given(op=st.sampled_from(sorted(UNARY)), shape=shapes)
def test_unary_elementwise_costs_per_output_element(op: str, shape: list[int]) -> None:
    fn, cost = UNARY[op]
    x = randn(*shape)
    assert counted(fn, x, op=op, elementwise=True) == cost * brute.elements(shape)


@deterministic
@given(op=st.sampled_from(sorted(BINARY)), pair=broadcastable(2))
def test_binary_elementwise_costs_per_broadcast_output_element(
    op: str, pair: list[tuple[int, ...]]
) -> None:
    fn, cost = BINARY[op]
    x, y = randn(*pair[0]), randn(*pair[1], seed=1)
    out_shape = brute.broadcast_shape(*pair)
    assert fn(x, y).shape == out_shape
    analysis = run(fn, x, y, elementwise=True, strict=True)
    counts = {call.op for call in analysis.trace.ops}
    assert op in counts
    own = [c for c in analysis.trace.ops if c.op == op]
    extra = analysis.total() - cost * brute.elements(out_shape) * len(own)
    # helpers (abs, add) that keep inputs in range cost one per element of their own output
    helpers = [c for c in analysis.trace.ops if c.op != op and c.op in ("aten::abs", "aten::add")]
    assert extra == sum(brute.elements(c.output_tensors[0].shape) for c in helpers)


@deterministic
@given(op=st.sampled_from(sorted(TERNARY)), shapes3=broadcastable(3))
def test_ternary_elementwise_costs_per_broadcast_output_element(
    op: str, shapes3: list[tuple[int, ...]]
) -> None:
    fn, cost = TERNARY[op]
    tensors = [randn(*s, seed=i) for i, s in enumerate(shapes3)]
    out_shape = brute.broadcast_shape(*shapes3)
    analysis = run(fn, *tensors, elementwise=True, strict=True)
    helpers = [c for c in analysis.trace.ops if c.op in ("aten::abs", "aten::add")]
    expected = cost * brute.elements(out_shape) + sum(
        brute.elements(c.output_tensors[0].shape) for c in helpers
    )
    assert analysis.total() == expected


@deterministic
@given(
    op=st.sampled_from(sorted(REDUCTIONS)),
    shape=st.lists(st.integers(2, 3), min_size=1, max_size=3),
    data=st.data(),
)
def test_reductions_cost_per_input_element(op: str, shape: list[int], data: st.DataObject) -> None:
    fn, cost = REDUCTIONS[op]
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = randn(*shape)
    analysis = run(lambda x: fn(x, dim), x, elementwise=True, strict=True)
    own = [c for c in analysis.trace.ops if c.op == op]
    assert own, f"{op} did not run: {[c.op for c in analysis.trace.ops]}"
    other = [c.op for c in analysis.trace.ops if c.op != op]
    expected = cost * brute.elements(shape)
    if op == "aten::any":  # the comparison that makes the booleans: one per element
        expected += brute.elements(shape)
        assert other == ["aten::gt"]
    assert analysis.total() == expected
    meta = run(lambda x: fn(x, dim), x.to("meta"), mode="meta", elementwise=True, strict=True)
    assert meta.total() == expected


@deterministic
@given(shape=shapes, elementwise=st.booleans())
def test_every_catalog_op_is_counted_from_its_output_or_input_never_raising(
    shape: list[int], elementwise: bool
) -> None:
    """Every pointwise and reduction entry, called directly through its handler on a recorded
    call of the right shape: never raises, and is cost x elements (or unsupported when off)."""
    from torchtally.handlers import CountOptions
    from torchtally.ops import catalog, handlers
    from torchtally.records import OpCall, TensorMeta

    meta = TensorMeta(tuple(shape), torch.float32)
    options = CountOptions(elementwise=elementwise)
    for table, per in ((catalog.POINTWISE_FLOPS, "out"), (catalog.REDUCTION_FLOPS, "in")):
        for op, cost in table.items():
            reduced = TensorMeta(tuple(shape[1:]), torch.float32)
            call = OpCall(
                op=op,
                overload="default",
                arguments={"self": meta},
                outputs=(meta if per == "out" else reduced,),
                function=None,
                scope=("",),
            )
            handler = handlers.op_handlers("flops")[op]
            value = handler(call, options)
            if op == "aten::mean":
                assert (
                    value is NotImplemented if not elementwise else value == brute.elements(shape)
                )
            elif not elementwise:
                assert value is NotImplemented, op
            elif op in ("aten::gelu", "aten::gelu_"):
                assert value == cost * brute.elements(shape)
            else:
                assert value == cost * brute.elements(shape), op
            assert handlers.op_handlers("activations")[op](call, options) == 0


FORWARD_FORMULAS = {
    "aten::mm", "aten::bmm", "aten::addmm", "aten::_addmm_activation", "aten::baddbmm",
    "aten::addbmm", "aten::mv", "aten::addmv", "aten::dot", "aten::vdot",
    "aten::convolution",
    *BATCH_NORM_VARIANTS, "aten::native_layer_norm", "aten::native_group_norm",
    "aten::max_pool2d_with_indices", "aten::max_pool3d_with_indices", "aten::avg_pool2d",
    "aten::avg_pool3d", "aten::adaptive_max_pool2d", "aten::adaptive_max_pool3d",
    "aten::_adaptive_avg_pool2d", "aten::_adaptive_avg_pool3d", "aten::mean",
}  # fmt: skip


def test_every_forward_formula_in_core_has_a_property_test() -> None:
    """A new core handler must come with a brute-force property here (or be a table entry);
    backward-pass handlers (ops/backward.py) are test_properties_backward.py's."""
    from torchtally.handlers import HandlerSet
    from torchtally.ops import backward, catalog, handlers

    backward_ops = HandlerSet()
    backward.register(backward_ops)
    tables = set(catalog.POINTWISE_FLOPS) | set(catalog.REDUCTION_FLOPS)
    formulas = set(handlers.op_handlers("flops")) - tables - set(backward_ops.op_handlers("flops"))
    assert formulas - FORWARD_FORMULAS - hand_counted() == set(), "add a property test"


def hand_counted() -> set[str]:
    """Handlers tested against hand counts in tests/core instead (one file per module, or
    test_inventory_handlers.py for the matmul, convolution, norm and pooling variants)."""
    from torchtally.handlers import HandlerSet
    from torchtally.ops import ctc, fft, linalg, losses, quantized, rnn, scatter

    ops: set[str] = set()
    for module in (ctc, fft, linalg, losses, quantized, rnn, scatter):
        registered = HandlerSet()
        module.register(registered)
        ops |= set(registered.op_handlers("flops"))
    return ops | {
        "aten::addmm_", "aten::baddbmm_", "aten::addbmm_", "aten::addmv_", "aten::addr",
        "aten::addr_", "aten::_sparse_addmm", "aten::hspmm", "aten::_sparse_sparse_matmul",
        "aten::_sparse_mm_reduce_impl", "aten::_cdist_forward", "aten::_euclidean_dist",
        "aten::_cdist_backward", "aten::_trilinear", "aten::_int_mm", "aten::_weight_int4pack_mm",
        "aten::_weight_int4pack_mm_for_cpu", "aten::_weight_int4pack_mm_with_scales_and_zeros",
        "aten::_weight_int8pack_mm", "aten::_dyn_quant_matmul_4bit", "aten::_mixed_dtypes_linear",
        "aten::_scaled_mm", "aten::_scaled_mm_v2", "aten::_cslt_sparse_mm",
        "aten::_sparse_semi_structured_addmm", "aten::_sparse_semi_structured_linear",
        "aten::_sparse_semi_structured_mm", "aten::sparse_sampled_addmm", "aten::mkldnn_linear",
        "aten::_compute_linear_combination", "aten::_pdist_forward", "aten::linear_backward",
        "aten::mkldnn_linear_backward", "aten::mkldnn_linear_backward_input",
        "aten::mkldnn_linear_backward_weights", "aten::matmul_backward", "aten::_pdist_backward",
        "aten::_sparse_mm_reduce_impl_backward", "aten::_convolution",
        "aten::convolution_overrideable", "aten::conv_tbc", "aten::_slow_conv2d_backward",
        "aten::mps_convolution_backward", "aten::mps_convolution_transpose_backward",
        *(f"aten::{op}" for op in (  # noqa: SIM905 (a word list)
            "_conv_depthwise2d conv_depthwise3d cudnn_convolution cudnn_convolution_add_relu "
            "cudnn_convolution_relu cudnn_convolution_transpose miopen_convolution "
            "miopen_convolution_add_relu miopen_convolution_relu miopen_convolution_transpose "
            "miopen_depthwise_convolution mkldnn_convolution _mps_convolution "
            "_mps_convolution_transpose _nnpack_spatial_convolution _slow_conv2d_forward "
            "slow_conv3d_forward slow_conv_dilated2d slow_conv_dilated3d slow_conv_transpose2d "
            "slow_conv_transpose3d batch_norm_stats batch_norm_update_stats "
            "batch_norm_backward_reduce batch_norm_backward_elemt batch_norm_elemt "
            "batch_norm_gather_stats batch_norm_gather_stats_with_counts "
            "_weight_norm_interface _weight_norm_interface_backward fractional_max_pool2d "
            "fractional_max_pool3d mkldnn_max_pool2d mkldnn_max_pool3d "
            "fractional_max_pool2d_backward fractional_max_pool3d_backward "
            "mkldnn_max_pool2d_backward mkldnn_max_pool3d_backward max_pool2d_backward "
            "mkldnn_adaptive_avg_pool2d mkldnn_adaptive_avg_pool2d_backward "
            "adaptive_avg_pool3d_backward"
        ).split()),
    }  # fmt: skip


def test_the_cost_table_agrees_with_the_catalog() -> None:
    """The costs derived above from the two rules are the catalog's."""
    from torchtally.ops import catalog

    table = {**catalog.POINTWISE_FLOPS, **catalog.REDUCTION_FLOPS}
    for costs in (UNARY, BINARY, TERNARY, REDUCTIONS):
        for op, (_, cost) in costs.items():
            assert table[op] == cost, op

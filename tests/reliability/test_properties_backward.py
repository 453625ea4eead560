"""Property tests for the backward-pass formulas (core's ops/backward.py and the vision
plugin's backward.py): each gradient computed by naive loops (checked against autograd),
counting its arithmetic, equals the backward phase's count."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from reliability import brute
from reliability.helpers import deterministic as _deterministic
from reliability.strategies import conv_cases
from torchtally_testing import Fn
from vision import brute as brute_vision

import torchtally
import torchtally_vision

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
_hypothesis = pytest.importorskip("hypothesis")
given = _hypothesis.given
settings = _hypothesis.settings
st = pytest.importorskip("hypothesis.strategies")


@pytest.fixture(autouse=True, scope="module")
def vision_plugin() -> None:
    manager = torchtally.get_plugin_manager()
    if manager.get_plugin("vision") is None:
        manager.register(torchtally_vision, name="vision")


# Each example runs a forward and a backward pass twice (real and meta): fewer examples.
deterministic = settings(_deterministic, max_examples=10)


def randn(*shape: int, seed: int = 0, grad: bool = False) -> torch.Tensor:
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return x.requires_grad_(grad)


def backward_count(
    fn: Callable[..., Any], *inputs: Any, op: str, elementwise: bool = False, **kwargs: Any
) -> int:
    """The backward phase's flops for one call of `fn` (gradient of ones), which runs `op`; the
    same in meta mode."""
    kwargs.setdefault("warn_unsupported", False)
    analysis = torchtally.analyze(
        Fn(fn), inputs, backward=True, elementwise=elementwise, strict=True, **kwargs
    )
    backward_ops = {call.op for call in analysis.trace.ops if call.phase == "backward"}
    assert op in backward_ops, f"{op} did not run: {sorted(backward_ops)}"
    meta_inputs = tuple(
        x.detach().to("meta").requires_grad_(x.requires_grad) if isinstance(x, torch.Tensor) else x
        for x in inputs
    )
    meta = torchtally.analyze(
        Fn(fn), meta_inputs, mode="meta", backward=True, elementwise=elementwise, **kwargs
    )
    counted = analysis.total(phase="backward")
    assert meta.total(phase="backward") == counted, "meta mode counts differently"
    return counted


def gradients(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> list[torch.Tensor]:
    out = fn(*inputs)
    wanted = [x for x in inputs if x.requires_grad]
    return list(torch.autograd.grad(out, wanted, torch.ones_like(out)))


# --- convolution ---------------------------------------------------------------------------


def conv_gradients(
    g: Any, x: Any, w: Any, shape: Any, w_shape: Any, stride: Any, padding: Any, dilation: Any,
    groups: int,
) -> tuple[Any, Any, int]:  # fmt: skip
    """grad_input and grad_weight of a convolution: every forward multiply-add (padding taps
    included) pairs with one multiply-add of each gradient."""
    n, _, *spatial = shape
    c_out, c_group, *kernel = w_shape
    out_spatial = [
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, p, d, k, st in zip(spatial, padding, dilation, kernel, stride, strict=True)
    ]
    grad_x, grad_w = brute.zeros(shape), brute.zeros(w_shape)
    input_macs = weight_macs = 0
    per_group = c_out // groups
    for b, co in itertools.product(range(n), range(c_out)):
        for pos in itertools.product(*map(range, out_spatial)):
            grad = brute.at(g, (b, co, *pos))
            for ci, tap in itertools.product(
                range(c_group), itertools.product(*map(range, kernel))
            ):
                src = [
                    o * st - p + t * d
                    for o, st, p, t, d in zip(pos, stride, padding, tap, dilation, strict=True)
                ]
                inside = all(0 <= s < size for s, size in zip(src, spatial, strict=True))
                channel = co // per_group * c_group + ci
                weight = brute.at(w, (co, ci, *tap))
                if inside:  # a padding tap's product lands outside the input: discarded
                    index = (b, channel, *src)
                    brute.put(grad_x, index, brute.at(grad_x, index) + grad * weight)
                input_macs += 1
                value = brute.at(x, (b, channel, *src)) if inside else 0.0
                index = (co, ci, *tap)
                brute.put(grad_w, index, brute.at(grad_w, index) + grad * value)
                weight_macs += 1
    return grad_x, grad_w, input_macs + weight_macs


@deterministic
@given(case=conv_cases(transposed=False), input_grad=st.booleans(), bias=st.booleans())
def test_convolution_backward(case: dict[str, Any], input_grad: bool, bias: bool) -> None:
    shape = (case["n"], case["c_in"], *case["spatial"])
    w_shape = (case["c_out"], case["c_in"] // case["groups"], *case["kernel"])
    x, w = randn(*shape, grad=input_grad), randn(*w_shape, seed=1, grad=True)
    b = randn(case["c_out"], seed=2, grad=True) if bias else None
    conv = getattr(F, f"conv{len(case['spatial'])}d")
    args = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}

    def call(x: torch.Tensor, w: torch.Tensor, *bias: torch.Tensor) -> torch.Tensor:
        return conv(x, w, *bias, **args)

    inputs = (x, w) + ((b,) if b is not None else ())
    out = call(*inputs)
    g = torch.ones_like(out)
    grad_x, grad_w, macs = conv_gradients(
        g.tolist(), x.tolist(), w.tolist(), shape, w_shape, **args
    )
    expected_w = torch.autograd.grad(out, w, g, retain_graph=True)[0]
    torch.testing.assert_close(expected_w, brute.tensor(grad_w))
    if input_grad:
        torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], brute.tensor(grad_x))
    else:
        macs //= 2  # only the weight's gradient is computed
    assert backward_count(call, *inputs, op="aten::convolution_backward") == macs
    if bias:  # the bias gradient (a sum of grad_output) is not counted, as the forward's bias
        with_sum = backward_count(call, *inputs, op="aten::convolution_backward", elementwise=True)
        assert with_sum == macs


# --- normalisation -------------------------------------------------------------------------


def norm_backward(
    groups: list[list[float]],
    grads: list[list[float]],
    weights: list[float] | None,
    batch_stats: bool,
    need_input: bool,
    need_weight: bool,
    eps: float,
) -> tuple[list[list[float]], list[float], list[float], int]:
    """Batch norm's gradients per channel group, counting one step per element per pass: the
    sums of g and of g * x_hat (each 1, when a gradient needs it), then grad_input as
    a * g + b * x + c (2 fused multiply-adds) after batch statistics, or a * g (1) after fixed
    ones. Fixed statistics here are mean 0, variance 1 (fresh running statistics)."""
    steps = 0
    grad_inputs, grad_weights, grad_biases = [], [], []
    for c, (values, g) in enumerate(zip(groups, grads, strict=True)):
        count = len(values)
        if batch_stats:
            mean = sum(values) / count
            var = sum((v - mean) ** 2 for v in values) / count
        else:
            mean, var = 0.0, 1.0
        inv_std = 1 / math.sqrt(var + eps)
        x_hat = [(v - mean) * inv_std for v in values]
        weight = weights[c] if weights is not None else 1.0
        sum_g = sum_gx = 0.0
        if need_weight or (batch_stats and need_input) or weights is not None:
            for gi in g:
                sum_g += gi
                steps += 1
        if need_weight or (batch_stats and need_input):
            for gi, xi in zip(g, x_hat, strict=True):
                sum_gx += gi * xi
                steps += 1
        grad_weights.append(sum_gx)
        grad_biases.append(sum_g)
        row = []
        if need_input:
            for gi, xi in zip(g, x_hat, strict=True):
                if batch_stats:
                    row.append(weight * inv_std * (gi - sum_g / count - xi * sum_gx / count))
                    steps += 2
                else:
                    row.append(weight * inv_std * gi)
                    steps += 1
        grad_inputs.append(row)
    return grad_inputs, grad_weights, grad_biases, steps


@deterministic
@given(
    n=st.integers(2, 3),
    c=st.integers(1, 3),
    spatial=st.integers(1, 3),
    affine=st.booleans(),
    training=st.booleans(),
    input_grad=st.booleans(),
)
def test_batch_norm_backward(
    n: int, c: int, spatial: int, affine: bool, training: bool, input_grad: bool
) -> None:
    if not (affine or input_grad):
        return  # nothing to differentiate
    layer = torch.nn.BatchNorm1d(c, affine=affine).double().train(training)
    x = randn(n, c, spatial, grad=input_grad)
    out = layer(x)
    wanted = ([x] if input_grad else []) + (list(layer.parameters()) if affine else [])
    autograd = torch.autograd.grad(out, wanted, torch.ones_like(out))
    per_channel = x.detach().transpose(0, 1).reshape(c, -1).tolist()
    ones = [[1.0] * (n * spatial) for _ in range(c)]
    weights = [1.0] * c if affine else None
    grad_x, grad_w, grad_b, steps = norm_backward(
        per_channel, ones, weights, training, input_grad, affine, layer.eps
    )
    if input_grad:
        expected = brute.tensor(grad_x).reshape(c, n, spatial).transpose(0, 1)
        torch.testing.assert_close(autograd[0], expected)
    if affine:
        torch.testing.assert_close(autograd[-2], brute.tensor(grad_w))
        torch.testing.assert_close(autograd[-1], brute.tensor(grad_b))
    layer_copy = torch.nn.BatchNorm1d(c, affine=affine).double().train(training)
    assert backward_count(layer_copy, x, op="aten::native_batch_norm_backward") == steps


@deterministic
@given(
    rows=st.integers(1, 3),
    width=st.integers(2, 4),
    affine=st.booleans(),
    input_grad=st.booleans(),
)
def test_layer_norm_backward(rows: int, width: int, affine: bool, input_grad: bool) -> None:
    """Layer norm's weight varies along the row: grad_input forms h = weight * g first (1, with a
    weight), sums h and h * x_hat per row (2) and combines them with 2 fused multiply-adds;
    grad_weight sums g * x_hat over rows (2: the product and the add), grad_bias sums g (1)."""
    if not (affine or input_grad):
        return
    layer = torch.nn.LayerNorm(width, elementwise_affine=affine).double()
    x = randn(rows, width, grad=input_grad)
    out = layer(x)
    wanted = ([x] if input_grad else []) + (list(layer.parameters()) if affine else [])
    autograd = torch.autograd.grad(out, wanted, torch.ones_like(out))
    steps = 0
    grad_w = [0.0] * width
    grad_b = [0.0] * width
    grad_x = []
    for values in x.detach().tolist():
        mean = sum(values) / width
        inv_std = 1 / math.sqrt(sum((v - mean) ** 2 for v in values) / width + layer.eps)
        x_hat = [(v - mean) * inv_std for v in values]
        g = [1.0] * width
        if input_grad:
            h = [gi * 1.0 for gi in g]  # weight * g (the weight is 1 here, but multiplied)
            steps += width if affine else 0
            sum_h = sum_hx = 0.0
            for hi, xi in zip(h, x_hat, strict=True):
                sum_h += hi
                sum_hx += hi * xi
                steps += 2
            row = []
            for hi, xi in zip(h, x_hat, strict=True):
                row.append(inv_std * (hi - sum_h / width - xi * sum_hx / width))
                steps += 2
            grad_x.append(row)
        if affine:
            for j in range(width):
                grad_w[j] += g[j] * x_hat[j]
                grad_b[j] += g[j]
                steps += 3
    if input_grad:
        torch.testing.assert_close(autograd[0], brute.tensor(grad_x))
    if affine:
        torch.testing.assert_close(autograd[-2], brute.tensor(grad_w))
        torch.testing.assert_close(autograd[-1], brute.tensor(grad_b))
    layer_copy = torch.nn.LayerNorm(width, elementwise_affine=affine).double()
    assert backward_count(layer_copy, x, op="aten::native_layer_norm_backward") == steps


@deterministic
@given(
    n=st.integers(1, 2),
    groups=st.integers(1, 2),
    per_group=st.integers(1, 2),
    spatial=st.integers(2, 3),
    affine=st.booleans(),
)
def test_group_norm_backward(
    n: int, groups: int, per_group: int, spatial: int, affine: bool
) -> None:
    """Statistics per (sample, group): the sums of g and g * x_hat per (sample, channel) serve
    every gradient, and grad_input takes 2 fused multiply-adds, as batch norm in training."""
    c = groups * per_group
    layer = torch.nn.GroupNorm(groups, c, affine=affine).double()
    x = randn(n, c, spatial, grad=True)
    elements = x.numel()
    steps = elements * (1 + 1 + 2)  # sum g, sum g * x_hat, grad_input
    assert backward_count(layer, x, op="aten::native_group_norm_backward") == steps


# --- pooling and embeddings ----------------------------------------------------------------


@deterministic
@given(
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=2),
    kernel=st.integers(1, 2),
    stride=st.integers(1, 2),
    kind=st.sampled_from(["max", "avg"]),
)
def test_window_pooling_backward(shape: list[int], kernel: int, stride: int, kind: str) -> None:
    """Max pooling sends each output's gradient to its maximum (1 add each); average pooling
    adds each scaled gradient to every element of its window (the forward's taps)."""
    if any(s < kernel for s in shape):
        return
    x = randn(1, 2, *shape, grad=True)
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d

    def call(x: torch.Tensor) -> torch.Tensor:
        return pool(x, kernel, stride)

    _, taps = brute.window_pool(
        x.tolist(), x.shape, [kernel] * 2, [stride] * 2, [0, 0], [1, 1], False, kind
    )
    outputs = call(x).numel()
    expected = outputs if kind == "max" else taps
    op = "aten::max_pool2d_with_indices_backward" if kind == "max" else "aten::avg_pool2d_backward"
    assert backward_count(call, x, op=op, elementwise=True) == expected


@deterministic
@given(out=st.lists(st.integers(1, 3), min_size=2, max_size=2), factor=st.integers(1, 2))
def test_adaptive_average_pooling_backward(out: list[int], factor: int) -> None:
    """Each input element receives its bin's gradient over the bin size: 1 per input element
    (bins tile the input when the output size divides it)."""
    x = randn(1, 2, out[0] * factor, out[1] * factor, grad=True)

    def call(x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, out)

    if out == [1, 1]:
        return  # a 1x1 output runs mean, whose backward is an expand and a divide
    _, reads = brute.adaptive_pool(x.tolist(), x.shape, out, "avg")
    assert backward_count(call, x, op="aten::_adaptive_avg_pool2d_backward") == reads


@deterministic
@given(
    tokens=st.lists(st.integers(0, 4), min_size=1, max_size=6),
    dim=st.integers(1, 4),
    scale=st.booleans(),
)
def test_embedding_backward(tokens: list[int], dim: int, scale: bool) -> None:
    """The weight's gradient adds each token's gradient row into its row (a scatter-add): one
    add per grad_output element, one more to scale by the inverse frequency when asked."""
    embedding = torch.nn.Embedding(5, dim, scale_grad_by_freq=scale).double()
    ids = torch.tensor(tokens)
    grad = torch.zeros(5, dim, dtype=torch.float64)
    adds = 0
    for t in tokens:
        for d in range(dim):
            grad[t, d] += 1.0 / (tokens.count(t) if scale else 1)
            adds += 2 if scale else 1
    out = embedding(ids)
    (autograd,) = torch.autograd.grad(out, embedding.weight, torch.ones_like(out))
    torch.testing.assert_close(autograd, grad)
    assert (
        backward_count(embedding, ids, op="aten::embedding_dense_backward", elementwise=True)
        == adds
    )


# --- element-wise gradients ----------------------------------------------------------------


def handler_count(analysis: torchtally.Analysis, call: torchtally.OpCall) -> int:
    """What the analysis' handler counts for this one call, whatever operator name it gets."""
    found = analysis.registry.lookup("flops", call.op)
    assert found.handler is not None, f"no handler for {call.op}"
    value = found.handler(call, analysis.options)
    return int(sum(value.values()) if isinstance(value, dict) else value)


T = 4  # a transcendental function call, as in conventions.md
LOSS_GRADIENTS: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], int]] = {
    # per element of grad_input: g * 2 (x - y) / n (constants folded): subtract, multiply
    "aten::mse_loss_backward": (lambda x, y: F.mse_loss(x, y), 2),
    # g * clamp((x - y) / beta, -1, 1): subtract, divide, clamp, multiply
    "aten::smooth_l1_loss_backward": (lambda x, y: F.smooth_l1_loss(x, y, beta=0.5), 4),
    # g * clamp(x - y, -delta, delta): subtract, clamp, multiply
    "aten::huber_loss_backward": (lambda x, y: F.huber_loss(x, y, delta=0.5), 3),
    # g * (x - y) / max(x (1 - x), eps): subtract, FMA, max, divide, multiply
    "aten::binary_cross_entropy_backward": (
        lambda x, y: F.binary_cross_entropy(torch.sigmoid(x), y.sigmoid()),
        5,
    ),
}


@deterministic
@given(
    op=st.sampled_from(sorted(LOSS_GRADIENTS)),
    shape=st.lists(st.integers(1, 3), min_size=1, max_size=3),
)
def test_loss_gradients_cost_per_element(op: str, shape: list[int]) -> None:
    loss, cost = LOSS_GRADIENTS[op]
    x, y = randn(*shape, grad=True), randn(*shape, seed=1)
    analysis = torchtally.analyze(
        Fn(loss), (x, y), backward=True, elementwise=True, strict=True, warn_unsupported=False
    )
    (call,) = [c for c in analysis.trace.ops if c.op == op and c.phase == "backward"]
    assert handler_count(analysis, call) == cost * brute.elements(shape)


@deterministic
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=2), classes=st.integers(2, 4))
def test_nll_loss_gradient_is_one_multiply_per_target(shape: list[int], classes: int) -> None:
    """-g * weight[t] / total: one multiply per target; the rest of grad_input stays 0."""
    x = randn(math.prod(shape), classes, grad=True)
    target = torch.randint(
        0, classes, (math.prod(shape),), generator=torch.Generator().manual_seed(0)
    )
    analysis = torchtally.analyze(
        Fn(lambda x, t: F.nll_loss(x, t)), (x, target), backward=True, elementwise=True,
        strict=True, warn_unsupported=False,
    )  # fmt: skip
    (call,) = [c for c in analysis.trace.ops if c.op == "aten::nll_loss_backward"]
    assert handler_count(analysis, call) == target.numel()


# --- vision: resampling and torchvision's ops ----------------------------------------------


@deterministic
@given(
    mode=st.sampled_from(["nearest", "bilinear", "bicubic"]),
    size_in=st.lists(st.integers(1, 4), min_size=2, max_size=2),
    size_out=st.lists(st.integers(1, 4), min_size=2, max_size=2),
)
def test_upsampling_backward_reads_the_forwards_taps(
    mode: str, size_in: list[int], size_out: list[int]
) -> None:
    """The gradient goes back along every tap the forward read, with its weight: one
    multiply-add per tap (the adjoint of the forward's loops)."""
    x = randn(1, 2, *size_in, grad=True)
    align = None if mode == "nearest" else False
    taps = {
        "nearest": lambda d, o: brute_vision.nearest_taps(o, size_in[d], size_out[d], False),
        "bilinear": lambda d, o: brute_vision.linear_taps(o, size_in[d], size_out[d], False),
        "bicubic": lambda d, o: brute_vision.cubic_taps(o, size_in[d], size_out[d], False),
    }[mode]

    def call(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=size_out, mode=mode, align_corners=align)

    grad = brute.zeros(x.shape)
    adds = 0
    for b, c in itertools.product(range(1), range(2)):
        for pos in itertools.product(*map(range, size_out)):
            for combo in itertools.product(*(taps(d, o) for d, o in enumerate(pos))):
                index = (b, c, *(i for i, _ in combo))
                brute.put(grad, index, brute.at(grad, index) + math.prod(w for _, w in combo))
                adds += 1
    (autograd,) = gradients(call, x)
    torch.testing.assert_close(autograd, brute.tensor(grad))
    op = (
        "aten::upsample_nearest2d_backward"
        if mode == "nearest"
        else f"aten::upsample_{mode}2d_backward"
    )
    assert backward_count(call, x, op=op) == adds


BACKWARD_COVERED = {
    "aten::convolution_backward", "aten::native_batch_norm_backward",
    "aten::native_layer_norm_backward", "aten::native_group_norm_backward",
    "aten::max_pool2d_with_indices_backward", "aten::avg_pool2d_backward",
    "aten::_adaptive_avg_pool2d_backward", "aten::embedding_dense_backward",
    *LOSS_GRADIENTS, "aten::nll_loss_backward",
    "aten::upsample_nearest2d_backward", "aten::upsample_bilinear2d_backward",
    "aten::upsample_bicubic2d_backward",
}  # fmt: skip
# Not property-tested here (the owners' hand-counted tests cover them): variants sharing a
# tested handler (3d, adaptive max, 1d/3d resampling), kernels a CPU never runs (cudnn, miopen,
# convolution_backward_overrideable, batch_norm_backward), activation gradients with textbook
# constants (mish, rrelu, prelu, glu, gelu), nll_loss2d, and the gradients of grid_sample,
# anti-aliased resizing and torchvision's ops.
BACKWARD_NOT_COVERED = {
    "aten::convolution_backward_overrideable", "aten::batch_norm_backward",
    "aten::cudnn_batch_norm_backward", "aten::miopen_batch_norm_backward",
    "aten::max_pool3d_with_indices_backward", "aten::avg_pool3d_backward",
    "aten::adaptive_max_pool2d_backward", "aten::adaptive_max_pool3d_backward",
    "aten::_adaptive_avg_pool3d_backward", "aten::mish_backward",
    "aten::rrelu_with_noise_backward", "aten::_prelu_kernel_backward", "aten::glu_backward",
    "aten::gelu_backward", "aten::nll_loss2d_backward",
    "aten::upsample_nearest1d_backward", "aten::upsample_nearest3d_backward",
    "aten::_upsample_nearest_exact1d_backward", "aten::_upsample_nearest_exact2d_backward",
    "aten::_upsample_nearest_exact3d_backward", "aten::upsample_linear1d_backward",
    "aten::upsample_trilinear3d_backward", "aten::_upsample_bilinear2d_aa_backward",
    "aten::_upsample_bicubic2d_aa_backward", "aten::grid_sampler_2d_backward",
    "aten::grid_sampler_3d_backward", "torchvision::_roi_align_backward",
    "torchvision::_ps_roi_align_backward", "torchvision::_roi_pool_backward",
    "torchvision::_ps_roi_pool_backward", "torchvision::_deform_conv2d_backward",
    # other backends' kernels (hand-counted from recorded calls in tests/core and tests/vision)
    "aten::_grid_sampler_2d_cpu_fallback_backward", "aten::cudnn_grid_sampler_backward",
    "aten::cudnn_affine_grid_generator_backward", "aten::_upsample_lanczos2d_aa_backward",
}  # fmt: skip


def test_every_backward_formula_is_listed() -> None:
    """A new backward handler lands in one of the two lists above (and ideally the first)."""
    from torchtally.handlers import HandlerSet
    from torchtally.ops import backward
    from torchtally_vision import backward as vision_backward

    registered = HandlerSet()
    backward.register(registered)
    vision_backward.register(registered)
    assert set(registered.op_handlers("flops")) == BACKWARD_COVERED | BACKWARD_NOT_COVERED

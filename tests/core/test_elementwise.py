"""Element-wise ops and reductions: unsupported (and 0) by default, counted from the catalog on.

With ``elementwise=True`` a pointwise op costs ``POINTWISE_FLOPS[op]`` per OUTPUT element and a
reduction ``REDUCTION_FLOPS[op]`` per INPUT element. Every case also hard-codes its per-element
cost, so a silent change to the catalog's table fails here. Ops that do no arithmetic never show
up anywhere, and standard CNNs are fully covered with element-wise counting on.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchtally_testing import Fn

import torchtally
from torchtally.ops.catalog import NO_ARITHMETIC_OPS, POINTWISE_FLOPS, REDUCTION_FLOPS

Shapes = tuple[tuple[int, ...], ...]
X = ((2, 3, 4),)  # the default input: 24 elements

# Ops that only count with element-wise counting on (besides the two tables).
POOL_OPS = {
    "aten::max_pool2d_with_indices",
    "aten::max_pool3d_with_indices",
    "aten::avg_pool2d",
    "aten::avg_pool3d",
    "aten::adaptive_max_pool2d",
    "aten::adaptive_max_pool3d",
}
ELEMENTWISE_ONLY = set(POINTWISE_FLOPS) | set(REDUCTION_FLOPS) | POOL_OPS


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def analyze(module: nn.Module, shapes: Shapes, *, elementwise: bool) -> torchtally.Analysis:
    inputs = tuple(torch.randn(shape) for shape in shapes)
    analysis = torchtally.analyze(module, inputs, elementwise=elementwise)
    assert not analysis.handler_failures, [str(f) for f in analysis.handler_failures]
    return analysis


# (module, input shapes, op, hard-coded flops per element, elements: output for pointwise ops)
POINTWISE_CASES = [
    pytest.param(Fn(torch.add), ((2, 3, 4), (2, 3, 4)), "aten::add", 1, 2 * 3 * 4, id="add"),
    pytest.param(  # broadcasting: output elements count, not input elements
        Fn(torch.add), ((2, 1, 4), (3, 1)), "aten::add", 1, 2 * 3 * 4, id="add-broadcast"
    ),
    pytest.param(Fn(lambda x: x + 1), X, "aten::add", 1, 2 * 3 * 4, id="add-scalar"),
    pytest.param(
        Fn(lambda x, y: x.add_(y)), ((2, 3, 4), (4,)), "aten::add_", 1, 2 * 3 * 4, id="add_"
    ),
    pytest.param(Fn(torch.sub), ((2, 3, 4), (2, 3, 4)), "aten::sub", 1, 2 * 3 * 4, id="sub"),
    pytest.param(Fn(lambda x: 1 - x), X, "aten::rsub", 1, 2 * 3 * 4, id="rsub"),
    pytest.param(Fn(torch.mul), ((2, 3, 4), (2, 3, 4)), "aten::mul", 1, 2 * 3 * 4, id="mul"),
    pytest.param(Fn(torch.div), ((2, 3, 4), (2, 3, 4)), "aten::div", 1, 2 * 3 * 4, id="div"),
    pytest.param(Fn(torch.neg), X, "aten::neg", 1, 2 * 3 * 4, id="neg"),
    pytest.param(Fn(torch.abs), X, "aten::abs", 1, 2 * 3 * 4, id="abs"),
    pytest.param(Fn(torch.sqrt), X, "aten::sqrt", 1, 2 * 3 * 4, id="sqrt"),
    pytest.param(Fn(torch.rsqrt), X, "aten::rsqrt", 1, 2 * 3 * 4, id="rsqrt"),
    pytest.param(Fn(lambda x: x**2), X, "aten::pow", 1, 2 * 3 * 4, id="pow"),
    pytest.param(Fn(lambda x: x.clamp(-1, 1)), X, "aten::clamp", 1, 2 * 3 * 4, id="clamp"),
    pytest.param(Fn(lambda x: x > 0), X, "aten::gt", 1, 2 * 3 * 4, id="gt"),
    pytest.param(
        Fn(torch.max), ((2, 3, 4), (2, 3, 4)), "aten::maximum", 1, 2 * 3 * 4, id="max-binary"
    ),
    pytest.param(
        Fn(torch.addcmul),
        ((2, 3, 4), (2, 3, 4), (2, 3, 4)),
        "aten::addcmul",
        2,
        2 * 3 * 4,
        id="addcmul",
    ),
    pytest.param(
        Fn(lambda a, b: torch.lerp(a, b, 0.5)),
        ((2, 3, 4), (2, 3, 4)),
        "aten::lerp",
        2,
        2 * 3 * 4,
        id="lerp",
    ),
    pytest.param(Fn(torch.exp), X, "aten::exp", 4, 2 * 3 * 4, id="exp"),
    pytest.param(Fn(torch.log), X, "aten::log", 4, 2 * 3 * 4, id="log"),
    pytest.param(Fn(torch.tanh), X, "aten::tanh", 4, 2 * 3 * 4, id="tanh"),
    pytest.param(nn.ReLU(), X, "aten::relu", 1, 2 * 3 * 4, id="relu"),
    pytest.param(nn.ReLU(inplace=True), X, "aten::relu_", 1, 2 * 3 * 4, id="relu_"),
    pytest.param(nn.ReLU6(), X, "aten::hardtanh", 1, 2 * 3 * 4, id="relu6"),
    pytest.param(nn.LeakyReLU(), X, "aten::leaky_relu", 1, 2 * 3 * 4, id="leaky-relu"),
    pytest.param(nn.PReLU(), X, "aten::_prelu_kernel", 1, 2 * 3 * 4, id="prelu"),
    pytest.param(nn.Sigmoid(), X, "aten::sigmoid", 4 + 2, 2 * 3 * 4, id="sigmoid"),
    pytest.param(nn.SiLU(), X, "aten::silu", 4 + 3, 2 * 3 * 4, id="silu"),
    pytest.param(nn.GELU(), X, "aten::gelu", 4 + 3, 2 * 3 * 4, id="gelu"),
    pytest.param(nn.ELU(), X, "aten::elu", 4 + 2, 2 * 3 * 4, id="elu"),
    pytest.param(nn.Softplus(), X, "aten::softplus", 2 * 4 + 3, 2 * 3 * 4, id="softplus"),
    pytest.param(nn.Mish(), X, "aten::mish", 3 * 4 + 2, 2 * 3 * 4, id="mish"),
    pytest.param(nn.Hardsigmoid(), X, "aten::hardsigmoid", 2, 2 * 3 * 4, id="hardsigmoid"),
    pytest.param(nn.Hardswish(), X, "aten::hardswish", 3, 2 * 3 * 4, id="hardswish"),
    pytest.param(nn.Softmax(-1), X, "aten::_softmax", 4 + 4, 2 * 3 * 4, id="softmax"),
    pytest.param(nn.LogSoftmax(-1), X, "aten::_log_softmax", 4 + 4, 2 * 3 * 4, id="log-softmax"),
    pytest.param(  # GLU halves the last dim: cost per OUTPUT element
        nn.GLU(-1), X, "aten::glu", 4 + 3, 2 * 3 * (4 // 2), id="glu"
    ),
]

# (module, input shapes, op, hard-coded flops per element, elements: input for reductions)
REDUCTION_CASES = [
    pytest.param(Fn(lambda x: x.sum(-1)), X, "aten::sum", 1, 2 * 3 * 4, id="sum-dim"),
    pytest.param(Fn(lambda x: x.sum()), X, "aten::sum", 1, 2 * 3 * 4, id="sum-all"),
    pytest.param(Fn(lambda x: x.mean(-1)), X, "aten::mean", 1, 2 * 3 * 4, id="mean-dim"),
    pytest.param(  # the same mean adaptive pooling to 1x1 issues, but not from adaptive pooling
        Fn(lambda x: x.mean((2, 3), keepdim=True)),
        ((2, 3, 8, 8),),
        "aten::mean",
        1,
        2 * 3 * 8 * 8,
        id="mean-spatial",
    ),
    pytest.param(Fn(lambda x: x.amax(-1)), X, "aten::amax", 1, 2 * 3 * 4, id="amax"),
    pytest.param(Fn(lambda x: x.amin(-1)), X, "aten::amin", 1, 2 * 3 * 4, id="amin"),
    pytest.param(Fn(lambda x: x.max(-1).values), X, "aten::max", 1, 2 * 3 * 4, id="max-dim"),
    pytest.param(Fn(lambda x: x.max()), X, "aten::max", 1, 2 * 3 * 4, id="max-all"),
    pytest.param(Fn(lambda x: x.argmax(-1)), X, "aten::argmax", 1, 2 * 3 * 4, id="argmax"),
    pytest.param(Fn(lambda x: x.prod(-1)), X, "aten::prod", 1, 2 * 3 * 4, id="prod"),
    pytest.param(Fn(lambda x: x.var(-1)), X, "aten::var", 3, 2 * 3 * 4, id="var"),
    pytest.param(Fn(lambda x: x.std(-1)), X, "aten::std", 3, 2 * 3 * 4, id="std"),
    pytest.param(
        Fn(lambda x: torch.var_mean(x, -1)), X, "aten::var_mean", 3, 2 * 3 * 4, id="var-mean"
    ),
    pytest.param(
        Fn(lambda x: x.norm(dim=-1)), X, "aten::linalg_vector_norm", 1, 2 * 3 * 4, id="norm"
    ),
    pytest.param(
        Fn(lambda x: x.logsumexp(-1)), X, "aten::logsumexp", 4 + 3, 2 * 3 * 4, id="logsumexp"
    ),
    pytest.param(Fn(lambda x: x.cumsum(-1)), X, "aten::cumsum", 1, 2 * 3 * 4, id="cumsum"),
    # histc: subtract the low edge, scale, add one to the bin
    pytest.param(Fn(lambda x: x.histc(bins=4)), X, "aten::histc", 3, 2 * 3 * 4, id="histc"),
]

ALL_CASES = [
    pytest.param(*case.values, POINTWISE_FLOPS, id=case.id) for case in POINTWISE_CASES
] + [pytest.param(*case.values, REDUCTION_FLOPS, id=case.id) for case in REDUCTION_CASES]
CASE_NAMES = ("module", "shapes", "op", "per_element", "elements", "table")


@pytest.mark.parametrize(CASE_NAMES, ALL_CASES)
def test_unsupported_without_elementwise(
    module: nn.Module,
    shapes: Shapes,
    op: str,
    per_element: int,
    elements: int,
    table: dict[str, int],
) -> None:
    analysis = analyze(module, shapes, elementwise=False)
    assert analysis.unsupported_ops() == {op: 1}
    assert analysis.total() == 0
    assert analysis.by_operator() == {}
    assert analysis.total("activations") == 0
    assert analysis.unsupported_ops("activations") == {}


@pytest.mark.parametrize(CASE_NAMES, ALL_CASES)
def test_counted_with_elementwise(
    module: nn.Module,
    shapes: Shapes,
    op: str,
    per_element: int,
    elements: int,
    table: dict[str, int],
) -> None:
    assert table[op] == per_element, f"the catalog's cost of {op} changed"
    analysis = analyze(module, shapes, elementwise=True)
    assert analysis.total() == per_element * elements
    assert analysis.total() == table[op] * elements
    assert analysis.by_operator() == {op.removeprefix("aten::"): per_element * elements}
    assert analysis.unsupported_ops() == {}
    assert analysis.total("activations") == 0
    assert analysis.unsupported_ops("activations") == {}


def test_catalog_spot_values() -> None:
    # The convention in numbers: IEEE basic ops 1, a transcendental call 4.
    assert POINTWISE_FLOPS["aten::relu"] == 1
    assert POINTWISE_FLOPS["aten::add"] == POINTWISE_FLOPS["aten::mul"] == 1
    assert POINTWISE_FLOPS["aten::exp"] == POINTWISE_FLOPS["aten::tanh"] == 4
    assert POINTWISE_FLOPS["aten::sigmoid"] == 6  # exp, add, div
    assert POINTWISE_FLOPS["aten::gelu"] == 7  # mul, erf, mul, FMA
    assert POINTWISE_FLOPS["aten::_softmax"] == 8  # max, sub, exp, sum, div
    assert REDUCTION_FLOPS["aten::sum"] == REDUCTION_FLOPS["aten::mean"] == 1
    assert REDUCTION_FLOPS["aten::var"] == 3  # add for the mean, then sub and FMA


def test_mean_after_adaptive_pool_is_a_reduction() -> None:
    # Adaptive pooling counts always (1 per input element); the mean after it is a reduction.
    module = Fn(lambda x: F.adaptive_avg_pool2d(x, 2).mean())
    off = analyze(module, ((2, 3, 8, 8),), elementwise=False)
    assert off.by_operator() == {"adaptive_avg_pool2d": 2 * 3 * 8 * 8}
    assert off.unsupported_ops() == {"aten::mean": 1}
    on = analyze(module, ((2, 3, 8, 8),), elementwise=True)
    assert on.by_operator() == {"adaptive_avg_pool2d": 2 * 3 * 8 * 8, "mean": 2 * 3 * 2 * 2}
    assert on.unsupported_ops() == {}


def test_dropout() -> None:
    # Training: x * mask / (1 - p), 2 per element whichever kernels run (drawing the mask is free).
    train = nn.Dropout(0.5).train()
    off = analyze(train, X, elementwise=False)
    assert off.total() == 0
    assert off.unsupported_ops()
    assert set(off.unsupported_ops()) <= ELEMENTWISE_ONLY
    on = analyze(train, X, elementwise=True)
    assert on.total() == 2 * (2 * 3 * 4)
    assert on.unsupported_ops() == {}
    # Eval: dropout is the identity and runs no op at all; alone, it is a model with nothing to
    # count, which is refused; inside a model it adds nothing.
    with pytest.raises(ValueError, match="has no parameters and its forward ran no ops"):
        analyze(nn.Dropout(0.5).eval(), X, elementwise=False)
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).eval()
    for elementwise in (False, True):
        analysis = analyze(model, X, elementwise=elementwise)
        assert analysis.by_module()["1"] == 0
        assert analysis.by_operator() == {"linear": 2 * 3 * 4 * 4}
        assert analysis.unsupported_ops() == {}


# --- ops with no arithmetic ---------------------------------------------------------------------

NO_ARITHMETIC_CASES = [
    # (module, input shapes, an op the computation must run)
    pytest.param(Fn(lambda x: x.view(6, 4)), X, "aten::view", id="view"),
    pytest.param(Fn(lambda x: x.reshape(6, 4)), X, "aten::view", id="reshape"),
    pytest.param(  # reshape of a non-contiguous tensor copies
        Fn(lambda x: x.transpose(0, 1).reshape(-1)), X, "aten::clone", id="reshape-copy"
    ),
    pytest.param(Fn(lambda x: torch.flatten(x, 1)), X, "aten::view", id="flatten"),
    pytest.param(Fn(lambda x: x.permute(2, 0, 1)), X, "aten::permute", id="permute"),
    pytest.param(Fn(lambda x: x.transpose(0, 2)), X, "aten::transpose", id="transpose"),
    pytest.param(Fn(lambda x: x.t()), ((3, 4),), "aten::t", id="t"),
    pytest.param(Fn(lambda x: x.expand(5, 2, 3, 4)), X, "aten::expand", id="expand"),
    pytest.param(Fn(lambda x: x.unsqueeze(0).squeeze(0)), X, "aten::unsqueeze", id="squeeze"),
    pytest.param(Fn(lambda x: x.clone()), X, "aten::clone", id="clone"),
    pytest.param(Fn(lambda x: x.transpose(0, 1).contiguous()), X, "aten::clone", id="contiguous"),
    pytest.param(Fn(lambda x, y: y.copy_(x)), ((2, 3, 4), (2, 3, 4)), "aten::copy_", id="copy_"),
    pytest.param(Fn(lambda x: x.to(torch.float64)), X, "aten::_to_copy", id="to-dtype"),
    pytest.param(Fn(lambda x: x.detach()), X, "aten::detach", id="detach"),
    pytest.param(Fn(lambda x: torch.cat([x, x], 1)), X, "aten::cat", id="cat"),
    pytest.param(Fn(lambda x: torch.stack([x, x])), X, "aten::stack", id="stack"),
    pytest.param(Fn(lambda x: x.chunk(2, -1)), X, "aten::split", id="chunk"),
    pytest.param(Fn(lambda x: x.split([1, 2], 1)), X, "aten::split_with_sizes", id="split"),
    pytest.param(Fn(lambda x: x.narrow(2, 1, 2)), X, "aten::slice", id="narrow"),
    pytest.param(Fn(lambda x: x[0, :, 1:3]), X, "aten::select", id="getitem"),
    pytest.param(Fn(lambda x: x.unbind(0)), X, "aten::unbind", id="unbind"),
    pytest.param(Fn(lambda x: x.repeat(2, 1, 1)), X, "aten::repeat", id="repeat"),
    pytest.param(Fn(lambda x: x.flip(0).roll(1, 1)), X, "aten::flip", id="flip-roll"),
    pytest.param(Fn(lambda x: F.pad(x, (1, 1))), X, "aten::constant_pad_nd", id="pad"),
    pytest.param(Fn(lambda x: x.tril()), ((4, 4),), "aten::tril", id="tril"),
    pytest.param(Fn(lambda x: x.diagonal()), ((4, 4),), "aten::diagonal", id="diagonal"),
    pytest.param(
        Fn(lambda x: F.pixel_shuffle(x, 2)), ((1, 4, 2, 2),), "aten::pixel_shuffle", id="shuffle"
    ),
    pytest.param(Fn(lambda x: torch.zeros(2, 3)), X, "aten::zeros", id="zeros"),
    pytest.param(Fn(lambda x: torch.ones_like(x)), X, "aten::ones_like", id="ones-like"),
    pytest.param(Fn(lambda x: torch.full((2, 3), 7.0)), X, "aten::full", id="full"),
    pytest.param(Fn(lambda x: torch.arange(5)), X, "aten::arange", id="arange"),
    pytest.param(
        Fn(lambda x: x.index_select(1, torch.arange(2))), X, "aten::index_select", id="index-select"
    ),
    pytest.param(Fn(lambda x: x[:, torch.arange(2)]), X, "aten::index", id="index"),
    pytest.param(
        Fn(lambda x: x.gather(2, torch.zeros(2, 3, 1, dtype=torch.long))),
        X,
        "aten::gather",
        id="gather",
    ),
    pytest.param(
        Fn(lambda x: F.embedding(torch.arange(2), x)), ((5, 3),), "aten::embedding", id="embedding"
    ),
    pytest.param(
        Fn(lambda x: x.masked_fill(torch.ones_like(x, dtype=torch.bool), 0.0)),
        X,
        "aten::masked_fill",
        id="masked-fill",
    ),
    pytest.param(
        Fn(lambda x, y: torch.where(torch.ones(2, 3, 4, dtype=torch.bool), x, y)),
        ((2, 3, 4), (2, 3, 4)),
        "aten::where",
        id="where",
    ),
    pytest.param(Fn(lambda x: x.sort(-1)), X, "aten::sort", id="sort"),
    pytest.param(Fn(lambda x: x.topk(2, -1)), X, "aten::topk", id="topk"),
]


@pytest.mark.parametrize("elementwise", [False, True], ids=["fvcore", "elementwise"])
@pytest.mark.parametrize(("module", "shapes", "op"), NO_ARITHMETIC_CASES)
def test_no_arithmetic_ops_never_appear(
    module: nn.Module, shapes: Shapes, op: str, elementwise: bool
) -> None:
    analysis = analyze(module, shapes, elementwise=elementwise)
    ran = {call.op for call in analysis.trace.ops}
    assert op in ran
    assert ran <= NO_ARITHMETIC_OPS, sorted(ran - NO_ARITHMETIC_OPS)
    for metric in ("flops", "activations"):
        assert analysis.total(metric) == 0
        assert analysis.by_operator(metric) == {}
        assert analysis.unsupported_ops(metric) == {}


# --- standard CNNs ------------------------------------------------------------------------------


def fvcore_by_hand(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, int], int]:
    """Conv, batch norm (eval), adaptive average pooling and linear flops, and activations, from
    module hooks and the textbook formulas, independently of torchtally."""
    flops = {"conv": 0, "batch_norm": 0, "adaptive_avg_pool2d": 0, "linear": 0}
    activations = [0]

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0]
            flops["conv"] += output.numel() * per_output * module.kernel_size[1]
            activations[0] += output.numel()
        elif isinstance(module, nn.BatchNorm2d):
            flops["batch_norm"] += inputs[0].numel() * 2
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            flops["adaptive_avg_pool2d"] += inputs[0].numel()
        elif isinstance(module, nn.Linear):
            flops["linear"] += inputs[0].numel() * module.out_features
            activations[0] += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return flops, activations[0]


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_standard_cnn(arch: str) -> None:
    models = pytest.importorskip("torchvision.models")
    model = getattr(models, arch)(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    expected, activations = fvcore_by_hand(model, x)

    off = torchtally.analyze(model, x, elementwise=False)
    on = torchtally.analyze(model, x, elementwise=True)
    for analysis in (off, on):
        assert not analysis.handler_failures
        assert analysis.unsupported_ops("activations") == {}
        assert analysis.total("activations") == activations
        for metric in ("flops", "activations"):  # no op without arithmetic shows up anywhere
            names = {f"aten::{name}" for name in analysis.by_operator(metric)}
            assert not names & NO_ARITHMETIC_OPS

    # Element-wise off: fvcore's numbers; only element-wise ops, reductions and pools missing.
    assert off.by_operator() == expected
    assert off.total() == sum(expected.values())
    assert off.unsupported_ops()
    assert set(off.unsupported_ops()) <= ELEMENTWISE_ONLY, set(off.unsupported_ops())

    # Element-wise on: nothing unsupported, and the fvcore operators cost the same.
    assert on.unsupported_ops() == {}
    assert {name: on.by_operator()[name] for name in expected} == expected
    assert on.total() > off.total()


def test_resnet18_elementwise_by_hand() -> None:
    models = pytest.importorskip("torchvision.models")
    model = models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    relu = [0]  # self.relu runs twice in each block: hooks see every call
    residual = [0]  # `out += identity` at the end of each of the 8 blocks
    max_pool = [0]

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.ReLU):
            relu[0] += output.numel()
        elif isinstance(module, models.resnet.BasicBlock):
            residual[0] += output.numel()
        elif isinstance(module, nn.MaxPool2d):
            max_pool[0] += output.numel() * 3 * 3

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()

    off = torchtally.analyze(model, x)
    # 1 stem relu + 2 per block x 8 blocks; 8 residual adds; 1 max pool.
    assert off.unsupported_ops() == {
        "aten::relu_": 1 + 2 * 8,
        "aten::add_": 8,
        "aten::max_pool2d_with_indices": 1,
    }
    on = torchtally.analyze(model, x, elementwise=True)
    assert on.by_operator()["relu_"] == 1 * relu[0]
    assert on.by_operator()["add_"] == 1 * residual[0]
    assert on.by_operator()["max_pool2d_with_indices"] == max_pool[0]
    assert on.total() == off.total() + relu[0] + residual[0] + max_pool[0]

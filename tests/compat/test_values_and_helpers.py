"""The ``jit_handles`` helpers (torchtally's own) and the JIT-like values they run on.

Each helper is checked against a hand count on real ``torch._C.Value``s from ``torch.jit.trace``
(and against fvcore's helper where fvcore is right), and the values built from recorded calls are
checked to answer what the helpers ask, in the JIT schema's argument order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchtally
import torchtally.compat.fvcore as fv
from torchtally.compat.fvcore import jit_handles as ours
from torchtally.compat.jit_analysis import with_units
from torchtally.compat.jit_values import UnitCall, call_values
from torchtally.tracer import run_traced

fvcore_handles = pytest.importorskip("fvcore.nn.jit_handles")


def jit_node(func: Callable[..., Any], inputs: tuple[Any, ...], kind: str) -> tuple[list, list]:
    """The inputs and outputs of the one node of `kind` that tracing ``func(*inputs)`` makes."""
    tensors = tuple(x for x in inputs if isinstance(x, torch.Tensor))

    def call(*_: torch.Tensor) -> Any:
        return func(*inputs)

    graph = torch.jit.trace(call, tensors, check_trace=False).graph
    (node,) = [n for n in graph.nodes() if n.kind() == kind]
    return list(node.inputs()), list(node.outputs())


vec = torch.rand(2)
X = torch.rand(2, 2, 2, 2)  # 16 elements

# (name, helper, function, inputs, JIT op, hand count)
CASES = [
    (
        "bn eval affine",
        "batchnorm_flop_jit",
        F.batch_norm,
        (X, vec, vec, vec, vec),
        "aten::batch_norm",
        2 * 16,
    ),
    (
        "bn eval",
        "batchnorm_flop_jit",
        F.batch_norm,
        (X, vec, vec, None, None),
        "aten::batch_norm",
        16,
    ),
    (
        "bn train",
        "batchnorm_flop_jit",
        F.batch_norm,
        (X, vec, vec, vec, vec, True),
        "aten::batch_norm",
        5 * 16,
    ),
    (
        "linear",
        "linear_flop_jit",
        F.linear,
        (torch.rand(5, 10), torch.rand(20, 10)),
        "aten::linear",
        5 * 10 * 20,
    ),
    (
        "addmm",
        "addmm_flop_jit",
        torch.addmm,
        (torch.rand(5), torch.rand(3, 4), torch.rand(4, 5)),
        "aten::addmm",
        3 * 4 * 5,
    ),
    (
        "bmm",
        "bmm_flop_jit",
        torch.bmm,
        (torch.rand(2, 3, 4), torch.rand(2, 4, 5)),
        "aten::bmm",
        2 * 3 * 4 * 5,
    ),
    ("mm", "matmul_flop_jit", torch.mm, (torch.rand(3, 4), torch.rand(4, 5)), "aten::mm", 60),
    (
        "matmul",
        "matmul_flop_jit",
        torch.matmul,
        (torch.rand(3, 4), torch.rand(4, 5)),
        "aten::matmul",
        60,
    ),
    (
        "einsum",
        "einsum_flop_jit",
        torch.einsum,
        ("nc,nchw->hw", torch.rand(3, 4), torch.rand(3, 4, 2, 3)),
        "aten::einsum",
        72,
    ),
    (
        "einsum bmm",
        "einsum_flop_jit",
        torch.einsum,
        ("nct,ncp->ntp", torch.rand(2, 5, 3), torch.rand(2, 5, 4)),
        "aten::einsum",
        2 * 5 * 3 * 4,
    ),
]


@pytest.mark.parametrize(
    ("helper", "func", "inputs", "kind", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_helpers_on_jit_values_count_by_hand(
    helper: str, func: Callable[..., Any], inputs: tuple[Any, ...], kind: str, expected: int
) -> None:
    node = jit_node(func, inputs, kind)
    assert getattr(ours, helper)(*node) == expected
    assert getattr(fvcore_handles, helper)(*node) == expected  # fvcore agrees on these


def test_norm_conv_upsample_and_activation_helpers() -> None:
    group = jit_node(F.group_norm, (X, 2, vec, vec), "aten::group_norm")
    assert ours.norm_flop_counter(2)(*group) == 5 * 16
    no_affine = jit_node(F.group_norm, (X, 2, None, None), "aten::group_norm")
    assert ours.norm_flop_counter(2)(*no_affine) == 4 * 16
    up = jit_node(F.interpolate, (X, None, 2, "bilinear", False), "aten::upsample_bilinear2d")
    assert ours.elementwise_flop_counter(0, 4)(*up) == 4 * (2 * 2 * 4 * 4)
    assert ours.elementwise_flop_counter(1, 0)(*up) == 16
    conv = jit_node(
        F.conv2d, (torch.rand(1, 3, 8, 8), torch.rand(4, 3, 3, 3)), "aten::_convolution"
    )
    assert ours.conv_flop_jit(*conv) == Counter({"conv": 1 * 4 * 3 * 3 * 3 * 6 * 6})
    assert ours.generic_activation_jit("conv")(*conv) == Counter({"conv": 4 * 6 * 6})
    assert ours.generic_activation_jit()(*conv) == 4 * 6 * 6
    transposed = jit_node(
        F.conv_transpose2d, (torch.rand(1, 3, 5, 5), torch.rand(3, 2, 3, 3)), "aten::_convolution"
    )
    assert ours.conv_flop_jit(*transposed) == Counter({"conv": 1 * 3 * 2 * 9 * 5 * 5})


def test_matmul_where_fvcores_formula_is_wrong() -> None:
    # A broadcast first operand: fvcore counts one batch, there are two.
    node = jit_node(torch.matmul, (torch.rand(1, 3, 4), torch.rand(2, 4, 5)), "aten::matmul")
    assert fvcore_handles.matmul_flop_jit(*node) == 3 * 4 * 5
    assert ours.matmul_flop_jit(*node) == 2 * 3 * 4 * 5
    # A vector second operand: fvcore fails, it is a matrix-vector product.
    node = jit_node(torch.matmul, (torch.rand(3, 4), torch.rand(4)), "aten::matmul")
    with pytest.raises(IndexError):
        fvcore_handles.matmul_flop_jit(*node)
    assert ours.matmul_flop_jit(*node) == 3 * 4


def test_einsum_counts_exactly_where_fvcore_rounds() -> None:
    # fvcore reads numpy's printed flop count, which has four significant digits.
    node = jit_node(
        torch.einsum, ("bqd,bkd->bqk", torch.rand(2, 64, 8), torch.rand(2, 64, 8)), "aten::einsum"
    )
    exact = 2 * 64 * 8 * 64
    assert ours.einsum_flop_jit(*node) == exact
    assert fvcore_handles.einsum_flop_jit(*node) != exact
    assert ours.einsum_flop_count("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]) == 24 + 40
    assert ours.einsum_flop_count("ij->i", [(2, 3)]) == 6  # a sum
    assert ours.einsum_flop_count("ij->ji", [(2, 3)]) == 0  # a permutation


def test_get_shape() -> None:
    inputs, outputs = jit_node(F.linear, (torch.rand(5, 10), torch.rand(20, 10)), "aten::linear")
    assert ours.get_shape(inputs[0]) == [5, 10]
    assert ours.get_shape(inputs[2]) is None  # bias=None: a constant
    assert ours.get_shape(outputs[0]) == [5, 20]


# --- values built from recorded calls -------------------------------------------------------


class Layers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(3, 4, 3, stride=2)
        self.bn = nn.BatchNorm2d(4).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return torch.einsum("bchw,bdhw->bcd", y, y)


def recorded() -> list[Any]:
    trace = run_traced(
        Layers(),
        (torch.rand(1, 3, 5, 5),),
        {},
        watch=frozenset({"batch_norm", "einsum"}),
    )
    return list(with_units(trace).ops)


def test_convolution_arguments_follow_the_jit_schema() -> None:
    (call,) = [c for c in recorded() if c.op == "aten::convolution"]
    inputs, outputs = call_values(call)
    assert len(inputs) == 13  # aten::_convolution: aten::convolution's nine, then cuDNN's four
    assert inputs[6].toIValue() is True  # transposed
    assert inputs[3].toIValue() == [2, 2]  # stride
    assert ours.get_shape(inputs[1]) == [3, 4, 3, 3]
    assert outputs[0].node().kind() == "aten::_convolution"
    assert outputs[0].node().scopeName() == "conv"
    assert ours.conv_flop_jit(inputs, outputs) == Counter({"conv": 3 * 4 * 9 * 5 * 5})


def test_a_watched_call_is_bound_to_its_jit_schema() -> None:
    (bn,) = [c for c in recorded() if isinstance(c, UnitCall) and c.op == "aten::batch_norm"]
    assert list(bn.arguments)[:6] == [
        "input",
        "weight",
        "bias",
        "running_mean",
        "running_var",
        "training",
    ]
    inputs, outputs = call_values(bn)
    assert inputs[5].toIValue() is False  # F.batch_norm(input, running_mean, ...) reordered
    assert ours.batchnorm_flop_jit(inputs, outputs) == 2 * 4 * 11 * 11
    (einsum,) = [c for c in recorded() if isinstance(c, UnitCall) and c.op == "aten::einsum"]
    inputs, outputs = call_values(einsum)
    assert inputs[0].toIValue() == "bchw,bdhw->bcd"
    operands = inputs[1].node()
    assert operands.kind() == "prim::ListConstruct"
    assert [ours.get_shape(v) for v in operands.inputs()] == [[1, 4, 11, 11]] * 2
    assert inputs[1].toIValue() is None  # a list of tensors is not a constant
    assert ours.einsum_flop_jit(inputs, outputs) == 4 * 11 * 11 * 4


def test_values_say_what_they_are_not() -> None:
    (call,) = [c for c in recorded() if c.op == "aten::convolution"]
    inputs, _ = call_values(call)
    tensor, constant = inputs[0], inputs[3]
    assert tensor.isCompleteTensor() and not constant.isCompleteTensor()
    assert tensor.type().scalarType() == "Float" and tensor.type().dim() == 4
    assert tensor.toIValue() is None
    assert constant.type().kind() == "ListType"
    with pytest.raises(RuntimeError, match="use toIValue"):
        constant.type().sizes()
    with pytest.raises(RuntimeError, match="not its strides"):
        tensor.type().strides()
    assert [v.debugName() for v in inputs[:2]] == ["0", "1"]


def test_a_handle_sees_an_autograd_functions_arguments() -> None:
    class Scale(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:
            return x * factor

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
            return grad, None

    class Model(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return Scale.apply(x, 3.0)

    trace = with_units(run_traced(Model(), (torch.rand(2, 3),), {}, autograd_functions=True))
    (unit,) = [c for c in trace.ops if isinstance(c, UnitCall)]
    assert unit.op == "prim::PythonOp.Scale"
    inputs, outputs = call_values(unit)
    assert ours.get_shape(inputs[0]) == [2, 3] and inputs[1].toIValue() == 3.0
    assert outputs[0].node().pyname() == "Scale"
    assert math.prod(ours.get_shape(outputs[0])) == 6
    assert torch.autograd.Function.apply.__func__ is not None  # put back after the run
    assert "apply" not in Scale.__dict__


def test_native_flavour_points_fvcore_handles_to_the_drop_in() -> None:
    analyzer = torchtally.FlopAnalyzer(Layers(), torch.rand(1, 3, 5, 5))
    with pytest.raises(torchtally.CompositeOpError, match=r"use torchtally\.compat\.fvcore"):
        analyzer.set_op_handle("aten::linear", lambda call: 1)

    def fvcore_style(inputs: list[Any], outputs: list[Any]) -> int:
        return 1

    with pytest.raises(TypeError, match=r"fvcore-style handle.*torchtally\.compat\.fvcore"):
        analyzer.set_op_handle("aten::addmm", fvcore_style)


def test_fake_mode_counts_as_the_real_run() -> None:
    model, x = Layers(), torch.rand(1, 3, 5, 5)
    real = fv.FlopCountAnalysis(model, x).unsupported_ops_warnings(False)
    fake = fv.FlopCountAnalysis(model, x, mode="fake").unsupported_ops_warnings(False)
    assert fake.by_module_and_operator() == real.by_module_and_operator()
    assert fake.analysis.mode == "fake"

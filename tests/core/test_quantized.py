"""Quantized models count as their float counterparts: the same multiply-adds under the same
operator names (docs/conventions.md, "Quantized models")."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torchtally_testing import T, count_calls, recorded

import torchtally
from torchtally.records import PackedMeta

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import torch.ao.quantization as tq


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():  # torch.ao's deprecation notes
        warnings.simplefilter("ignore")
        yield


def analyse(model: nn.Module, inputs: Any, mode: str, **kwargs: Any) -> torchtally.Analysis:
    return torchtally.analyze(model, inputs, mode=mode, warn_unsupported=False, **kwargs)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def test_a_dynamically_quantized_mlp_counts_its_float_linears_in_every_mode() -> None:
    """quantized::linear_dynamic counted 0 before; it runs on fake tensors too."""
    x = torch.randn(3, 8)
    quantized = tq.quantize_dynamic(mlp(), {nn.Linear}, dtype=torch.qint8)
    expected = {"linear": 3 * 8 * 16 + 3 * 16 * 4}
    for mode in ("real", "fake", "auto"):
        analysis = analyse(quantized, x, mode)
        assert analysis.by_operator() == expected
        assert analysis.total("activations") == 3 * 16 + 3 * 4
        assert analysis.unsupported_ops() == {"aten::relu": 1}
    assert analyse(mlp(), x, "fake").by_operator() == expected


def test_fp16_dynamic_quantization_too() -> None:
    quantized = tq.quantize_dynamic(mlp(), {nn.Linear}, dtype=torch.float16)
    assert analyse(quantized, torch.randn(3, 8), "fake").by_operator() == {
        "linear": 3 * 8 * 16 + 3 * 16 * 4
    }


class Small(nn.Module):
    """Conv + ReLU (fused when quantized), conv + batch norm (folded), linear."""

    def __init__(self) -> None:
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, groups=2)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 3 * 3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(self.quant(x)))
        x = self.bn(self.conv2(x))
        return self.dequant(self.fc(x.flatten(1)))


def statically_quantized() -> nn.Module:
    torch.manual_seed(0)
    model = Small().eval()
    model.qconfig = tq.get_default_qconfig("fbgemm")
    tq.fuse_modules(model, [["conv1", "relu"], ["conv2", "bn"]], inplace=True)
    prepared = tq.prepare(model)
    prepared(torch.randn(2, 3, 8, 8))
    return tq.convert(prepared)


def test_static_quantization_counts_its_float_convolutions_and_linear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """conv2d_relu and conv2d count as the float convolutions (the batch norm was folded into
    the second), linear as nn.Linear. Its quantize stub reads its scale as a number (data), so
    fake mode refuses it and auto runs it for real."""
    x = torch.randn(2, 3, 8, 8)
    conv1 = 2 * (8 * 3 * 3 * 3) * 8 * 8
    conv2 = 2 * (8 * 4 * 3 * 3) * 3 * 3
    linear = 2 * 72 * 10
    model = statically_quantized()
    real = analyse(model, x, "real")
    assert real.by_operator() == {"conv": conv1 + conv2, "linear": linear}
    assert real.total("activations") == 2 * 8 * 8 * 8 + 2 * 8 * 3 * 3 + 2 * 10
    with caplog.at_level(logging.WARNING, logger="torchtally"):
        auto = analyse(model, x, "auto")
    assert "running it for real" in caplog.text
    assert auto.by_operator() == real.by_operator()
    float_model = Small().eval()
    assert analyse(float_model, x, "fake").by_operator()["conv"] == conv1 + conv2
    # packed weights are recorded as shapes, never as the objects that hold them
    calls = [call for call in real.trace.ops if call.op.startswith("quantized::conv")]
    assert all(isinstance(call.arg("packed_weight"), PackedMeta) for call in calls)
    assert calls[0].arg("packed_weight").weight == T(8, 3, 3, 3, dtype=torch.qint8)


def packed(*shape: int, **geometry: Any) -> PackedMeta:
    kind = "Conv2dPackedParamsBase" if geometry else "LinearPackedParamsBase"
    return PackedMeta(kind, T(*shape, dtype=torch.qint8), **geometry)


Q = torch.ops.quantized


def test_recorded_quantized_kernels() -> None:
    x = T(2, 4, 5, 5, dtype=torch.quint8)
    transposed = recorded(
        Q.conv_transpose2d.default,
        x,
        packed(4, 6, 3, 3, stride=(2, 2), padding=(0, 0), dilation=(1, 1), transposed=True),
        0.1,
        0,
        outputs=(T(2, 6, 11, 11, dtype=torch.quint8),),
    )
    # transposed: input positions x weight elements, as the float one
    assert count_calls(transposed).by_operator() == {"conv": 2 * 4 * 6 * 9 * 25}
    add_relu = recorded(
        Q.conv2d_add_relu.default,
        x,
        x,
        packed(4, 4, 1, 1, stride=(1, 1), padding=(0, 0), dilation=(1, 1)),
        0.1,
        0,
        outputs=(x,),
    )
    assert count_calls(add_relu).total() == 2 * 16 * 25
    assert count_calls(add_relu, elementwise=True).total() == 2 * 16 * 25 + 2 * 2 * 4 * 25
    linear_relu = recorded(
        Q.linear_relu_dynamic.default, T(3, 8), packed(16, 8), outputs=(T(3, 16),)
    )
    assert count_calls(linear_relu).by_operator() == {"linear": 3 * 8 * 16}
    assert count_calls(linear_relu, elementwise=True).total() == 3 * 8 * 16 + 3 * 16
    matmul = recorded(Q.matmul.default, T(2, 3, 4), T(2, 4, 5), 0.1, 0, outputs=(T(2, 3, 5),))
    assert count_calls(matmul).by_operator() == {"matmul": 2 * 3 * 4 * 5}


def test_recorded_quantized_norms_pools_and_element_wise_kernels() -> None:
    x = T(2, 4, 6, 6, dtype=torch.quint8)
    bn = recorded(Q.batch_norm2d.default, x, T(4), T(4), T(4), T(4), 1e-5, 0.1, 0, outputs=(x,))
    assert count_calls(bn).by_operator() == {"batch_norm": 2 * x.numel}  # eval: scale, shift
    ln = recorded(Q.layer_norm.default, x, [6, 6], T(6, 6), T(6, 6), 1e-5, 0.1, 0, outputs=(x,))
    assert count_calls(ln).total() == 5 * x.numel
    add = recorded(Q.add.default, x, x, 0.1, 0, outputs=(x,))
    assert count_calls(add).unsupported_ops() == {"quantized::add": 1}
    assert count_calls(add, elementwise=True).total() == x.numel
    pool = recorded(
        Q.max_pool2d.default, x, [2, 2], [2, 2], [0, 0], [1, 1], False, outputs=(T(2, 4, 3, 3),)
    )
    assert count_calls(pool, elementwise=True).total() == 2 * 4 * 9 * 4
    cat = recorded(Q.cat.default, [x, x], 1, None, None, outputs=(T(2, 8, 6, 6),))
    assert count_calls(cat).total() == 0 and count_calls(cat).unsupported_ops() == {}


def test_recorded_dynamic_lstm_cell() -> None:
    cell = recorded(
        Q.quantized_lstm_cell_dynamic.default,
        T(3, 8),
        [T(3, 16), T(3, 16)],
        packed(64, 8),
        packed(64, 16),
        T(64),
        T(64),
        outputs=(T(3, 16), T(3, 16)),
    )
    assert count_calls(cell).by_operator() == {"lstm_cell": 3 * 64 * (8 + 16)}
    assert count_calls(cell, elementwise=True).total() == 3 * 64 * 24 + 3 * 16 * 34

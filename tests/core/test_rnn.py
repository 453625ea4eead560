"""Recurrent layers count the same on every backend, forward and backward, in every mode.

The hand counts below are the convention of docs/conventions.md ("Recurrent layers"), written out
independently of ops/rnn.py: per layer and direction, N tokens, G gates, H hidden units, P
projection units, R = P or H, I input features: ``N * (G*H*(I + R) + H*P)`` forward; backward the
weights' gradients (the same), the input's ``N*G*H*I`` above the first layer (the first layer's
input needs none here), the state's through time ``(N - B)*G*H*R`` and the projection's ``N*H*P``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import nn
from torchtally_testing import T, count_calls, recorded

import torchtally
from torchtally.ops import rnn
from torchtally.ops.catalog import POINTWISE_FLOPS, REDUCTION_FLOPS

ELEMENTWISE = set(POINTWISE_FLOPS) | set(REDUCTION_FLOPS)

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def build(kind: str, In: int, H: int, **options: Any) -> nn.Module:
    if kind == "lstm":
        return nn.LSTM(In, H, **options)
    if kind == "gru":
        return nn.GRU(In, H, **options)
    return nn.RNN(In, H, nonlinearity=kind.removeprefix("rnn_"), **options)


def hand(
    kind: str, In: int, H: int, layers: int, directions: int, P: int, N: int, B: int
) -> tuple[int, int]:
    """(forward, backward) multiply-adds of a whole recurrent module."""
    G, R = GATES[kind], P or H
    forward = backward = 0
    size = In
    for layer in range(layers):
        for _ in range(directions):
            weights = N * (G * H * (size + R) + H * P)
            forward += weights
            backward += weights + (N - B) * G * H * R + N * H * P
            if layer > 0:
                backward += N * G * H * size
        size = directions * R
    return forward, backward


@contextmanager
def unrolled() -> Iterator[None]:
    """oneDNN off: the LSTM runs unrolled, as in float64 (torch warns about TF32 here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def analyse(model: nn.Module, inputs: Any, mode: str, **kwargs: Any) -> torchtally.Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torchtally.analyze(model, inputs, mode=mode, warn_unsupported=False, **kwargs)


def totals(analysis: torchtally.Analysis) -> tuple[int, ...]:
    return (
        analysis.total(phase="forward"),
        analysis.total(phase="backward"),
        analysis.total("activations"),
    )


CASES = [  # kind, layers, bidirectional, proj_size, batch_first
    ("lstm", 1, False, 0, False),
    ("lstm", 2, True, 0, False),
    ("lstm", 2, True, 3, True),
    ("lstm", 1, False, 4, False),
    ("gru", 1, False, 0, True),
    ("gru", 2, True, 0, False),
    ("rnn_tanh", 2, True, 0, False),
    ("rnn_relu", 1, False, 0, True),
]


@pytest.mark.parametrize(("kind", "layers", "bidirectional", "proj", "batch_first"), CASES)
def test_every_mode_gives_the_hand_count(
    kind: str, layers: int, bidirectional: bool, proj: int, batch_first: bool
) -> None:
    In, H, steps, batch = 5, 6, 4, 3
    options: dict[str, Any] = {"num_layers": layers, "bidirectional": bidirectional}
    if proj:
        options["proj_size"] = proj
    model = build(kind, In, H, batch_first=batch_first, **options)
    x = torch.randn(batch, steps, In) if batch_first else torch.randn(steps, batch, In)
    expected = hand(kind, In, H, layers, 2 if bidirectional else 1, proj, steps * batch, batch)
    counted = {mode: totals(analyse(model, x, mode, backward=True)) for mode in ("real", "fake")}
    counted["auto"] = totals(analyse(model, x, "auto", backward=True))
    with torch.device("meta"):
        meta_model = build(kind, In, H, batch_first=batch_first, **options)
    counted["meta"] = totals(analyse(meta_model, x, "meta", backward=True))
    assert counted["real"][:2] == expected
    assert len(set(counted.values())) == 1, counted


@pytest.mark.parametrize("elementwise", [False, True])
@pytest.mark.parametrize(
    ("layers", "bidirectional", "batch_first", "bias"),
    [(1, False, False, True), (2, True, False, True), (2, True, True, False)],
)
def test_lstm_counts_the_same_on_onednn_unrolled_and_in_float64(
    layers: int, bidirectional: bool, batch_first: bool, bias: bool, elementwise: bool
) -> None:
    """float32 on CPU runs oneDNN's mkldnn_rnn_layer; mkldnn off and float64 unroll the steps
    into addmm and element-wise ops. Every count agrees, element-wise ones too."""
    model = nn.LSTM(5, 6, layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    x = torch.randn(3, 4, 5)
    onednn = analyse(model, x, "real", backward=True, elementwise=elementwise)
    assert "aten::mkldnn_rnn_layer" in {call.op for call in onednn.trace.ops}
    with unrolled():
        unrolled_path = analyse(model, x, "real", backward=True, elementwise=elementwise)
    as_double = analyse(model.double(), x.double(), "real", backward=True, elementwise=elementwise)
    assert "aten::mkldnn_rnn_layer" not in {call.op for call in unrolled_path.trace.ops}
    assert totals(onednn) == totals(unrolled_path) == totals(as_double)
    assert onednn.by_operator() == unrolled_path.by_operator() == {"lstm": onednn.total()}


def test_the_input_gradient_is_counted_when_the_input_needs_one() -> None:
    model = nn.LSTM(5, 6, 2, bidirectional=True)
    x = torch.randn(3, 4, 5, requires_grad=True)
    onednn = analyse(model, x, "real", backward=True)
    with unrolled():
        unrolled_path = analyse(model, x, "real", backward=True)
    _, backward = hand("lstm", 5, 6, 2, 2, 0, 12, 4)
    assert onednn.total(phase="backward") == unrolled_path.total(phase="backward")
    assert onednn.total(phase="backward") == backward + 2 * 12 * 4 * 6 * 5  # two directions


class IssueModel(nn.Module):
    """A bidirectional LSTM, a GRU, an RNN and an LSTMCell: the mix of the issue's example, in
    sizes that give both its figures (272,384 counted before, 487,424 analytic)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 32, bidirectional=True)
        self.gru = nn.GRU(64, 32)
        self.rnn = nn.RNN(32, 32)
        self.cell = nn.LSTMCell(8, 32)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, _ = self.lstm(x)
        y, _ = self.gru(y)
        y, _ = self.rnn(y)
        h, _ = self.cell(x[0])
        return y, h


def test_the_issue_model_counts_its_analytic_total_in_every_mode() -> None:
    steps, batch = 3, 7
    lstm = 2 * steps * batch * 4 * 32 * (8 + 32)  # 215,040: was 0 (mkldnn_rnn_layer)
    gru = steps * batch * 3 * 32 * (64 + 32)
    rnn_ = steps * batch * 32 * (32 + 32)
    cell = batch * 4 * 32 * (8 + 32)
    assert gru + rnn_ + cell == 272_384  # what the unrolled ops counted already
    x = torch.randn(steps, batch, 8)
    model = IssueModel()
    for mode in ("real", "fake", "auto"):
        analysis = analyse(model, x, mode)
        assert analysis.total() == 487_424 == lstm + gru + rnn_ + cell
        assert analysis.by_operator() == {
            "lstm": lstm,
            "gru": gru,
            "rnn_tanh": rnn_,
            "lstm_cell": cell,
        }
        assert set(analysis.unsupported_ops()) <= ELEMENTWISE  # the unrolled GRU's and RNN's
        assert analysis.recount(elementwise=True).unsupported_ops() == {}


def test_cells_count_their_two_matmuls() -> None:
    In, H, B = 5, 6, 3
    for cell, G in ((nn.LSTMCell(In, H), 4), (nn.GRUCell(In, H), 3), (nn.RNNCell(In, H), 1)):
        x = torch.randn(B, In, requires_grad=True)
        h = torch.randn(B, H)
        state = (h, torch.randn(B, H)) if G == 4 else h
        counted = {m: totals(analyse(cell, (x, state), m, backward=True)) for m in ("real", "fake")}
        macs = B * G * H * (In + H)
        assert counted["real"][:2] == (macs, 2 * macs - B * G * H * H)  # h needs no gradient
        assert counted["real"] == counted["fake"]


class Packed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(5, 6, 2, bidirectional=True, proj_size=3)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(out)[0]


def test_packed_sequences_count_their_tokens(caplog: pytest.LogCaptureFixture) -> None:
    """A packed batch runs sum(lengths) tokens. Its step sizes are data, so fake mode refuses it
    and auto runs it for real, saying so."""
    model, lengths = Packed(), torch.tensor([4, 2, 3])
    x = torch.randn(4, 3, 5)
    tokens = int(lengths.sum())
    forward, _ = hand("lstm", 5, 6, 2, 2, 3, tokens, 3)
    G, H, R = 4, 6, 3
    # the reverse direction starts on the last step's 1 row, the forward one on all 3
    backward = forward + 2 * (tokens * G * H * 2 * R) + 4 * tokens * H * 3
    backward += 2 * (2 * tokens - 3 - 1) * G * H * R
    real = analyse(model, (x, lengths), "real", backward=True)
    assert real.total(phase="forward") == forward
    assert real.total(phase="backward") == backward
    with pytest.raises(torchtally.TraceError, match="depends on the data"):
        analyse(model, (x, lengths), "fake")
    with caplog.at_level(logging.WARNING, logger="torchtally"):
        auto = analyse(model, (x, lengths), "auto", backward=True)
    assert "running it for real" in caplog.text
    assert totals(auto) == totals(real)


# -- cuDNN, MIOpen and the CUDA fused cells: their calls built from torch's schemas, counted
#    against the unrolled path that the same configuration runs on this CPU


def _unrolled(model: nn.Module, inputs: Any, elementwise: bool) -> tuple[int, ...]:
    with unrolled():
        return totals(analyse(model, inputs, "real", backward=True, elementwise=elementwise))


def _cudnn_calls(
    model: nn.RNNBase, x: torch.Tensor | nn.utils.rnn.PackedSequence, op: str
) -> tuple[Any, Any]:
    """The _cudnn_rnn (or miopen_rnn) call, and its backward, that `model(x)` makes on a GPU."""
    weights = [T(*w.shape) for w in model._flat_weights]
    D = 2 if model.bidirectional else 1
    R = model.proj_size or model.hidden_size
    batch_sizes: list[int] = []
    if isinstance(x, nn.utils.rnn.PackedSequence):
        batch_sizes = [int(b) for b in x.batch_sizes]
        data = T(*x.data.shape)
        batch = batch_sizes[0]
    else:
        data = T(*x.shape)
        batch = x.shape[0] if model.batch_first else x.shape[1]
    hx = T(model.num_layers * D, batch, R)
    cx = T(model.num_layers * D, batch, model.hidden_size) if model.mode == "LSTM" else None
    mode = {"RNN_RELU": 0, "RNN_TANH": 1, "LSTM": 2, "GRU": 3}[model.mode]
    common = {"hidden_size": model.hidden_size, "num_layers": model.num_layers}
    if op == "_cudnn_rnn":
        common["proj_size"] = model.proj_size
    flags = {
        "batch_first": model.batch_first,
        "dropout": 0.0,
        "train": True,
        "bidirectional": model.bidirectional,
        "batch_sizes": batch_sizes,
        "dropout_state": None,
    }
    forward_op = getattr(torch.ops.aten, op).default
    backward_op = getattr(torch.ops.aten, f"{op}_backward").default
    if op == "_cudnn_rnn":
        forward = recorded(forward_op, data, weights, 4, None, hx, cx, mode, **common, **flags)
    else:
        forward = recorded(forward_op, data, weights, 4, hx, cx, mode, **common, **flags)
    out = T(*data.shape[:-1], D * R)
    backward = recorded(
        backward_op,
        data,
        weights,
        4,
        T(1),
        hx,
        cx,
        out,
        out,
        hx,
        cx,
        mode,
        **common,
        **flags,
        reserve=T(1),
        output_mask=[False, False, False, True],
        phase="backward",
    )
    return forward, backward


FUSED_CASES = [  # kind, layers, bidirectional, proj_size, batch_first, packed
    ("lstm", 2, True, 0, False, False),
    ("lstm", 2, True, 3, True, False),
    ("lstm", 1, True, 0, False, True),
    ("gru", 2, True, 0, True, False),
    ("gru", 1, True, 0, False, True),
    ("rnn_tanh", 1, False, 0, False, False),
    ("rnn_relu", 2, True, 0, False, False),
]


@pytest.mark.parametrize("op", ["_cudnn_rnn", "miopen_rnn"])
@pytest.mark.parametrize("elementwise", [False, True])
@pytest.mark.parametrize(
    ("kind", "layers", "bidirectional", "proj", "batch_first", "packed"), FUSED_CASES
)
def test_cudnn_and_miopen_count_what_the_unrolled_path_counts(
    op: str,
    elementwise: bool,
    kind: str,
    layers: int,
    bidirectional: bool,
    proj: int,
    batch_first: bool,
    packed: bool,
) -> None:
    if op == "miopen_rnn" and proj:
        pytest.skip("MIOpen has no projections")
    options: dict[str, Any] = {"num_layers": layers, "bidirectional": bidirectional}
    if proj:
        options["proj_size"] = proj
    model = build(kind, 5, 6, batch_first=batch_first, **options)
    x: Any = torch.randn(3, 4, 5)
    if packed:
        x = nn.utils.rnn.pack_sequence([torch.randn(n, 5) for n in (4, 3, 1)])
    forward, backward = _cudnn_calls(model, x, op)
    fused = totals(count_calls(forward, backward, elementwise=elementwise))
    unrolled_path = _unrolled(model, (x,), elementwise)
    if elementwise and packed:
        # the unrolled path slices the packed steps, and adds up the slices' gradients
        assert fused[0] == unrolled_path[0]
        assert fused[1] < unrolled_path[1]
    elif elementwise and batch_first:
        # its first layer's input is not time-major, so linear adds the bias on its own
        bias_add = 3 * 4 * GATES[kind] * 6 * (2 if bidirectional else 1)
        assert fused == (unrolled_path[0] - bias_add, *unrolled_path[1:])
    else:
        assert fused == unrolled_path


def test_cudnn_backward_counts_only_the_gradients_asked_for() -> None:
    model = nn.LSTM(5, 6)
    _, backward = _cudnn_calls(model, torch.randn(3, 4, 5), "_cudnn_rnn")
    weights = count_calls(backward).total()
    everything = backward.arguments | {"output_mask": [True, True, True, True]}
    all_grads = count_calls(
        recorded(torch.ops.aten._cudnn_rnn_backward.default, **everything, phase="backward")
    ).total()
    N, G, H, In = 12, 4, 6, 5
    assert all_grads - weights == N * G * H * In + 4 * G * H * H  # the input's and hx's


def test_fused_cells_count_the_gate_math_of_the_unrolled_cells() -> None:
    """On CUDA an LSTMCell or GRUCell runs two matmuls and one fused kernel for the gates."""
    B, H = 3, 6
    for kind, op, outputs in (
        ("lstm", torch.ops.aten._thnn_fused_lstm_cell.default, 3),
        ("gru", torch.ops.aten._thnn_fused_gru_cell.default, 2),
    ):
        G = GATES[kind]
        gates = T(B, G * H)
        call = recorded(op, gates, gates, T(B, H), T(G * H), T(G * H))
        assert count_calls(call).total() == 0
        per_unit = {"lstm": 4 + 3 * 6 + 2 * 4 + 3 + 1, "gru": 3 + 2 * 6 + 4 + 2 + 1 + 1}[kind]
        assert count_calls(call, elementwise=True).total() == B * H * per_unit
        assert outputs  # the kernel's own outputs play no part


def test_fused_cell_backwards_count_the_gate_gradients() -> None:
    B, H = 3, 6
    lstm = recorded(
        torch.ops.aten._thnn_fused_lstm_cell_backward_impl.default,
        T(B, H),
        T(B, H),
        T(B, H),
        T(B, H),
        T(B, 4 * H),
        True,
        outputs=(T(B, 4 * H), T(B, H), T(4 * H)),
        phase="backward",
        needs_input_grad=(True, True, False, True, True),
    )
    # 2 adds, 6 multiplies, 2 tanh' (2), 3 sigmoid' (3), less the cell state's product
    assert count_calls(lstm, elementwise=True).total() == B * H * (2 + 6 + 4 + 9 - 1)
    gru = recorded(
        torch.ops.aten._thnn_fused_gru_cell_backward.default,
        T(B, H),
        T(B, 5 * H),
        True,
        outputs=(T(B, 3 * H), T(B, 3 * H), T(B, H), T(3 * H), T(3 * H)),
        phase="backward",
    )
    # 3 adds, 4 multiplies, a negation, tanh' (2), 2 sigmoid' (3); both biases' sums
    assert count_calls(gru, elementwise=True).total() == B * H * 16 + 2 * B * 3 * H
    assert count_calls(lstm, gru).total() == 0


def test_the_convention_is_written_down() -> None:
    assert rnn.CELL_FLOPS == {"lstm": 34, "gru": 23, "rnn_tanh": 5, "rnn_relu": 2}
    assert rnn.CELL_BACKWARD_FLOPS == {"lstm": 20, "gru": 15, "rnn_tanh": 2, "rnn_relu": 1}

"""Recurrent layers (``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` and their cells), one convention for
every backend.

``torch.lstm`` and its kin decompose before the dispatcher. What reaches it depends on the backend:
oneDNN's ``mkldnn_rnn_layer`` (CPU float32 LSTM), cuDNN's ``_cudnn_rnn``, MIOpen's ``miopen_rnn``,
the CUDA fused cells (``_thnn_fused_lstm_cell``, ``_thnn_fused_gru_cell``, after matmuls of their
own), or the unrolled path (``addmm`` per step plus element-wise gate ops: float64, mkldnn off,
projections, packed sequences, GRU and RNN on CPU). The unrolled path is counted by the matmul and
element-wise handlers; the fused kernels here are charged exactly what it counts, so a model
counts the same on every backend.

Per layer and direction, with N tokens (time steps x batch, or a packed batch's total), G gates
(LSTM 4, GRU 3, RNN 1), H hidden units, P projection units (``proj_size``), R = P or H the size of
the recurrent state, I input features, in multiply-adds:

- forward: ``N * (G*H*(I + R) + H*P)``; biases ignored, as for ``nn.Linear``;
- backward: the weights' gradients (the forward's count), the input's ``N*G*H*I`` when the input
  needs a gradient, the state's through time ``(N - B0)*G*H*R`` (B0 rows start the recurrence,
  plus ``B0*G*H*R`` when the initial state needs a gradient) and, with a projection, ``N*H*P``.

With ``elementwise=True`` the gate math is added, per token and hidden unit, as the unrolled path's
ops cost in the element-wise table (``CELL_FLOPS``, ``CELL_BACKWARD_FLOPS``). docs/conventions.md
gives the reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torchtally.handlers import CountOptions, HandlerSet
from torchtally.ops.catalog import POINTWISE_FLOPS, REDUCTION_FLOPS
from torchtally.ops.common import no_activations
from torchtally.records import OpCall, TensorMeta

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
# The mode numbers of cuDNN, MIOpen and oneDNN's RNN kernels.
MODES = {0: "rnn_relu", 1: "rnn_tanh", 2: "lstm", 3: "gru"}

_P = POINTWISE_FLOPS
# Forward gate math per token and hidden unit, as the unrolled cells compute it (ATen's
# LSTMCell/GRUCell/SimpleCell); a bias is added by its matmul (addmm), so costs nothing here.
CELL_FLOPS = {
    # gates = ih + hh (4 adds); i, f, o = sigmoid; g = tanh; c' = f*c + i*g; h' = o * tanh(c')
    "lstm": 4 * _P["aten::add"]
    + 3 * _P["aten::sigmoid"]
    + 2 * _P["aten::tanh"]
    + 3 * _P["aten::mul"]
    + _P["aten::add"],
    # r, z = sigmoid(ih + hh); n = tanh(ih_n + r * hh_n); h' = n + z * (h - n)
    "gru": 3 * _P["aten::add"]
    + 2 * _P["aten::sigmoid"]
    + _P["aten::tanh"]
    + _P["aten::mul"] * 2
    + _P["aten::sub"]
    + _P["aten::add"],
    "rnn_tanh": _P["aten::add"] + _P["aten::tanh"],  # h' = tanh(ih + hh)
    "rnn_relu": _P["aten::add"] + _P["aten::relu"],
}
# Backward gate math per token and hidden unit: the unrolled path's gradient ops. Each step also
# adds the state's gradient from the output to the one from the next step: 1 per state unit.
CELL_BACKWARD_FLOPS = {
    # do, dc (2 mul), tanh' (2), dc += (1), df, dc_prev, di, dg (4 mul), 3 sigmoid', tanh'
    "lstm": _P["aten::add"]
    + _P["aten::mul"] * 6
    + _P["aten::tanh_backward"] * 2
    + _P["aten::sigmoid_backward"] * 3,
    # dn, dz, dh_prev, dr through h' = n + z * (h - n) and n = tanh(ih_n + r * hh_n)
    "gru": _P["aten::add"] * 2
    + _P["aten::mul"] * 4
    + _P["aten::neg"]
    + _P["aten::tanh_backward"]
    + _P["aten::sigmoid_backward"] * 2,
    "rnn_tanh": _P["aten::tanh_backward"],
    "rnn_relu": _P["aten::threshold_backward"],
}
# The first step's gradient for the initial state is skipped when that state needs none: the
# cell (LSTM) or hidden (GRU) state's product with the forget (update) gate, 1 per element.
FIRST_STEP_SAVING = {"lstm": 1, "gru": 1, "rnn_tanh": 0, "rnn_relu": 0}
_SUM = REDUCTION_FLOPS["aten::sum"]


@dataclass(frozen=True)
class Recurrence:
    """One direction of one layer, run over a whole sequence."""

    kind: str
    input_size: int
    hidden: int
    proj: int  # 0 without a projection
    rows: int  # tokens
    steps: int  # time steps
    first_rows: int  # rows of the first step the direction runs (B0)
    bias: bool

    @property
    def gates(self) -> int:
        return GATES[self.kind]

    @property
    def state(self) -> int:
        return self.proj or self.hidden

    def weight_macs(self) -> int:
        gh = self.gates * self.hidden
        return self.rows * (gh * (self.input_size + self.state) + self.hidden * self.proj)

    def forward(self, options: CountOptions) -> int:
        flops = self.weight_macs()
        if options.elementwise:
            flops += self.rows * self.hidden * CELL_FLOPS[self.kind]
        return flops

    def backward(
        self, options: CountOptions, input_grad: bool, state_grad: bool, weight_grad: bool
    ) -> int:
        gh = self.gates * self.hidden
        flops = self.weight_macs() if weight_grad else 0
        if input_grad:
            flops += self.rows * gh * self.input_size
        time_rows = self.rows if state_grad else self.rows - self.first_rows
        flops += time_rows * gh * self.state + self.rows * self.hidden * self.proj
        if options.elementwise:
            flops += self._backward_elementwise(state_grad, weight_grad)
        return flops

    def _backward_elementwise(self, state_grad: bool, weight_grad: bool) -> int:
        gh = self.gates * self.hidden
        flops = self.rows * self.hidden * CELL_BACKWARD_FLOPS[self.kind]
        flops += self.rows * self.state * _P["aten::add"]  # the state's two gradients
        if not state_grad:
            flops -= self.first_rows * self.hidden * FIRST_STEP_SAVING[self.kind]
        if weight_grad:  # per-step weight gradients added up over the steps
            accumulated = gh * self.state + self.hidden * self.proj + (gh if self.bias else 0)
            flops += (self.steps - 1) * accumulated * _P["aten::add"]
            if self.bias:  # both biases' gradients: sums over the tokens
                flops += 2 * self.rows * gh * _SUM
        return flops


def _sequence(
    x: TensorMeta, hx: TensorMeta, batch_sizes: Sequence[int], reverse: bool
) -> tuple[int, int, int]:
    """(tokens, steps, rows of the first step run) of an RNN input, padded or packed. The batch
    is read from the initial state (its rows), whatever the input's layout (``batch_first``)."""
    if batch_sizes:
        sizes = [int(b) for b in batch_sizes]
        return sum(sizes), len(sizes), sizes[-1] if reverse else sizes[0]
    rows = x.numel // x.shape[-1]
    batch = hx.shape[-2] if hx.ndim >= 2 else 1
    return rows, rows // max(batch, 1), batch


def _layers(call: OpCall) -> list[Recurrence]:
    """Every layer and direction of a cuDNN or MIOpen call."""
    x: TensorMeta = call.arg("input")
    kind = MODES[int(call.arg("mode"))]
    hidden = int(call.arg("hidden_size"))
    proj = int(call.arguments.get("proj_size") or 0)
    directions = 2 if call.arg("bidirectional") else 1
    weights = call.arg("weight")
    per_layer = len(weights) // (int(call.arg("num_layers")) * directions)
    bias = per_layer >= 4  # w_ih, w_hh, b_ih, b_hh (, w_hr)
    batch_sizes = call.arg("batch_sizes")
    layers = []
    size = x.shape[-1]
    for _ in range(int(call.arg("num_layers"))):
        for direction in range(directions):
            rows, steps, first = _sequence(x, call.arg("hx"), batch_sizes, direction == 1)
            layers.append(Recurrence(kind, size, hidden, proj, rows, steps, first, bias))
        size = directions * (proj or hidden)
    return layers


def _mps_layers(call: OpCall) -> list[Recurrence]:
    """Every layer and direction of MPS's LSTM (``_lstm_mps``, ``lstm_mps_backward``)."""
    x: TensorMeta = call.arg("input")
    hx: TensorMeta = call.arg("hx")[0]
    hidden, directions = hx.shape[-1], 2 if call.arg("bidirectional") else 1
    size, layers = x.shape[-1], []
    rows, steps, first = _sequence(x, hx, [], False)
    for _ in range(int(call.arg("num_layers"))):
        for _ in range(directions):
            bias = bool(call.arg("has_biases"))
            layers.append(Recurrence("lstm", size, hidden, 0, rows, steps, first, bias))
        size = directions * hidden
    return layers


def mps_lstm_flops(call: OpCall, options: CountOptions) -> int:
    return sum(layer.forward(options) for layer in _mps_layers(call))


def mps_lstm_backward_flops(call: OpCall, options: CountOptions) -> int:
    """MPS computes every gradient; the input's is counted when autograd needs it."""
    needs = call.needs_input_grad or (True,)
    directions = 2 if call.arg("bidirectional") else 1
    return sum(
        layer.backward(
            options, input_grad=needs[0] or i >= directions, state_grad=False, weight_grad=True
        )
        for i, layer in enumerate(_mps_layers(call))
    )


def fused_rnn_flops(call: OpCall, options: CountOptions) -> int:
    """``_cudnn_rnn``, ``miopen_rnn``: every layer and direction."""
    return sum(layer.forward(options) for layer in _layers(call))


def fused_rnn_backward_flops(call: OpCall, options: CountOptions) -> int:
    """``_cudnn_rnn_backward``, ``miopen_rnn_backward``: output_mask is (input, hx, cx, weight).
    A layer above the first always needs its input's gradient (for the layers below)."""
    input_grad, hx_grad, cx_grad, weight_grad = (bool(m) for m in call.arg("output_mask"))
    directions = 2 if call.arg("bidirectional") else 1
    flops = 0
    for i, layer in enumerate(_layers(call)):
        needs_input = input_grad or i >= directions
        flops += layer.backward(
            options,
            input_grad=needs_input,
            state_grad=_state_grad(layer.kind, hx_grad, cx_grad),
            weight_grad=weight_grad,
        )
        if options.elementwise and needs_input and i % directions:
            # both directions' input gradients added (autograd's add between per-layer kernels)
            flops += layer.rows * layer.input_size * _P["aten::add"]
    return flops


def _state_grad(kind: str, hx_grad: bool, cx_grad: bool) -> bool:
    """Whether the first step's state gradient is computed (the hidden one for the matmul)."""
    return hx_grad or (kind == "lstm" and cx_grad)


def _mkldnn_layer(call: OpCall) -> Recurrence:
    x: TensorMeta = call.arg("input")
    w_ih: TensorMeta = call.arguments.get("weight0") or call.arg("weight1")
    hidden = int(call.arg("hidden_size"))
    rows, steps, first = _sequence(
        x, call.arg("hx_"), call.arg("batch_sizes"), bool(call.arg("reverse"))
    )
    kind = MODES[int(call.arg("mode"))]
    return Recurrence(kind, w_ih.shape[-1], hidden, 0, rows, steps, first, call.arg("has_biases"))


def mkldnn_rnn_layer_flops(call: OpCall, options: CountOptions) -> int:
    """``mkldnn_rnn_layer``: one layer, one direction."""
    return _mkldnn_layer(call).forward(options)


def mkldnn_rnn_layer_backward_flops(call: OpCall, options: CountOptions) -> int:
    """oneDNN computes every gradient; the ones counted are those autograd needs (the node's
    inputs: input, 4 weights, hx, cx), as for the other backends."""
    needs = call.needs_input_grad or (True,) * 7
    layer = _mkldnn_layer(call)
    return layer.backward(
        options,
        input_grad=needs[0],
        state_grad=_state_grad(layer.kind, needs[5], needs[6]),
        weight_grad=any(needs[1:5]),
    )


def _cell(call: OpCall, kind: str, gates: TensorMeta) -> Recurrence:
    hidden = gates.shape[-1] // GATES[kind]
    rows = gates.numel // gates.shape[-1]
    return Recurrence(kind, 0, hidden, 0, rows, 1, rows, False)


def fused_cell_flops(call: OpCall, options: CountOptions) -> int:
    """``_thnn_fused_lstm_cell``, ``_thnn_fused_gru_cell`` (CUDA): the gate math after the two
    matmuls, which ran as ops of their own. Its bias additions are not counted (the unrolled
    path adds the biases in its addmm)."""
    if not options.elementwise:
        return 0
    kind = "lstm" if "lstm" in call.op else "gru"
    cell = _cell(call, kind, call.arg("input_gates"))
    return cell.rows * cell.hidden * CELL_FLOPS[kind]


def fused_cell_backward_flops(call: OpCall, options: CountOptions) -> int:
    """The gate math's gradient; the GRU kernel also sums both biases' gradients (the LSTM one
    leaves that to a ``sum`` op of its own)."""
    if not options.elementwise:
        return 0
    kind = "lstm" if "lstm" in call.op else "gru"
    grads = call.output_tensors[0]  # grad of the input gates
    cell = _cell(call, kind, grads)
    needs = call.needs_input_grad
    state_grad = needs is None or (len(needs) > 2 and needs[2])
    flops = cell.rows * cell.hidden * (CELL_BACKWARD_FLOPS[kind] + _P["aten::add"])
    if not state_grad:
        flops -= cell.rows * cell.hidden * FIRST_STEP_SAVING[kind]
    if kind == "gru" and call.arg("has_bias"):
        flops += 2 * grads.numel * _SUM
    return flops


FUNCTIONS = {
    "lstm": "lstm",
    "gru": "gru",
    "rnn_tanh": "rnn_tanh",
    "rnn_relu": "rnn_relu",
    "lstm_cell": "lstm_cell",
    "gru_cell": "gru_cell",
    "rnn_tanh_cell": "rnn_tanh_cell",
    "rnn_relu_cell": "rnn_relu_cell",
}


def fused_rnn_activations(call: OpCall) -> int:
    """The unrolled path's matmul outputs: the input's and the state's gates (N*G*H each) and
    the projection's N*P, per layer and direction."""
    if call.op == "aten::mkldnn_rnn_layer":
        layers = [_mkldnn_layer(call)]
    elif call.op == "aten::_lstm_mps":
        layers = _mps_layers(call)
    else:
        layers = _layers(call)
    return sum(r.rows * (2 * r.gates * r.hidden + r.proj) for r in layers)


def register(handlers: HandlerSet) -> None:
    forward = {
        "aten::_cudnn_rnn": fused_rnn_flops,
        "aten::miopen_rnn": fused_rnn_flops,
        "aten::mkldnn_rnn_layer": mkldnn_rnn_layer_flops,
        "aten::_lstm_mps": mps_lstm_flops,
        "aten::_thnn_fused_lstm_cell": fused_cell_flops,
        "aten::_thnn_fused_gru_cell": fused_cell_flops,
    }
    backward = {
        "aten::_cudnn_rnn_backward": fused_rnn_backward_flops,
        "aten::miopen_rnn_backward": fused_rnn_backward_flops,
        "aten::mkldnn_rnn_layer_backward": mkldnn_rnn_layer_backward_flops,
        "aten::lstm_mps_backward": mps_lstm_backward_flops,
        "aten::_thnn_fused_lstm_cell_backward_impl": fused_cell_backward_flops,
        "aten::_thnn_fused_gru_cell_backward": fused_cell_backward_flops,
    }
    for op, handler in forward.items():
        handlers.add_ops(op, flops=handler, activations=fused_rnn_activations)
    cells = ("aten::_thnn_fused_lstm_cell", "aten::_thnn_fused_gru_cell")
    handlers.add_ops(cells, activations=no_activations)
    for op, handler in backward.items():
        handlers.add_ops(op, flops=handler, activations=no_activations)
    handlers.name_functions(FUNCTIONS)

"""Quantized models (``torch.ao.quantization``: dynamic and static, eager mode) count as their
float counterparts: the same multiply-adds, whatever the integer arithmetic or the requantising
costs, reported under the float operator's name (``linear``, ``conv``, ``batch_norm``, ...).

Their kernels take packed weights, which the trace records as `PackedMeta` (the unpacked
weight's shape, a convolution's geometry). Fused activations (``linear_relu``, ``conv2d_relu``)
and element-wise kernels (``quantized::add``, ``hardswish``, ...) cost what the float ops cost in
the element-wise table, with element-wise counting on. Packing, unpacking, ``cat`` and embedding
lookups do no arithmetic.
"""

from __future__ import annotations

import math
from typing import Any

from torchtally.handlers import CountOptions, HandlerSet
from torchtally.ops.catalog import POINTWISE_FLOPS
from torchtally.ops.common import first_output, no_activations, output_numel
from torchtally.ops.norm import affine_norm_flops
from torchtally.ops.pooling import window_taps
from torchtally.ops.rnn import CELL_FLOPS
from torchtally.records import OpCall, PackedMeta, TensorMeta

_P = POINTWISE_FLOPS
# The float op each fused activation stands for (its cost per output element).
_FUSED = {
    "relu": _P["aten::relu"],
    "leaky_relu": _P["aten::leaky_relu"],
    "tanh": _P["aten::tanh"],
}


def _fused_activation(call: OpCall, options: CountOptions) -> int:
    """A fused activation's element-wise flops (``linear_relu``, ``conv2d_add_relu``)."""
    if not options.elementwise:
        return 0
    name = call.op.removeprefix("quantized::")
    per_element = sum(cost for act, cost in _FUSED.items() if act in name.split("_"))
    if "_add" in name:
        per_element += _P["aten::add"]
    return per_element * first_output(call).numel


def _weight(call: OpCall, *names: str) -> TensorMeta:
    for name in names:
        value = call.arguments.get(name)
        if isinstance(value, PackedMeta) and value.weight is not None:
            return value.weight
        if isinstance(value, TensorMeta):
            return value
    raise ValueError(f"{call.op} recorded no weight in {', '.join(names)}")


def linear_flops(call: OpCall, options: CountOptions) -> dict[str, int]:
    """As ``nn.Linear``: rows x out x in."""
    x: TensorMeta = call.input_tensors[0]
    weight = _weight(call, "W_prepack", "weight")
    rows = x.numel // x.shape[-1]
    counts = {"linear": rows * weight.numel}
    extra = _fused_activation(call, options)
    return counts | ({call.op.removeprefix("quantized::"): extra} if extra else {})


def conv_flops(call: OpCall, options: CountOptions) -> dict[str, int]:
    """As a float convolution: batch x weight elements x output positions (input positions for
    a transposed one)."""
    x: TensorMeta = call.arg("qx")
    packed = call.arguments.get("packed_weight") or call.arguments.get("weight")
    weight = _weight(call, "packed_weight", "weight")
    transposed = isinstance(packed, PackedMeta) and packed.transposed
    spatial = (x if transposed else first_output(call)).shape[2:]
    counts = {"conv": x.shape[0] * weight.numel * math.prod(spatial)}
    extra = _fused_activation(call, options)
    return counts | ({call.op.removeprefix("quantized::"): extra} if extra else {})


def matmul_flops(call: OpCall) -> dict[str, int]:
    a: TensorMeta = call.arg("qa")
    return {"matmul": first_output(call).numel * a.shape[-1]}


def batch_norm_flops(call: OpCall, options: CountOptions) -> dict[str, int]:
    """Quantized batch norm runs on running statistics: eval batch norm's 2 per element (1
    without a weight), and a fused relu."""
    x: TensorMeta = call.input_tensors[0]
    per_element = 2 if call.arguments.get("weight") is not None else 1
    counts = {"batch_norm": x.numel * per_element}
    extra = _fused_activation(call, options)
    return counts | ({call.op.removeprefix("quantized::"): extra} if extra else {})


def statistics_norm_flops(call: OpCall) -> dict[str, int]:
    """Layer, group and instance norm: their float versions' 5 per element (4 without a
    weight)."""
    name = call.op.removeprefix("quantized::")
    return {name: affine_norm_flops(call.arg("input"), call.arguments.get("weight") is not None)}


# Element-wise kernels: the float op whose cost each has per output element.
POINTWISE = {
    "quantized::add": "aten::add",
    "quantized::add_relu": "aten::_add_relu",
    "quantized::add_scalar": "aten::add",
    "quantized::add_scalar_relu": "aten::_add_relu",
    "quantized::mul": "aten::mul",
    "quantized::mul_relu": "aten::_add_relu",  # a multiply and a max
    "quantized::mul_scalar": "aten::mul",
    "quantized::mul_scalar_relu": "aten::_add_relu",
    "quantized::relu6": "aten::hardtanh",
    "quantized::sigmoid": "aten::sigmoid",
    "quantized::hardswish": "aten::hardswish",
    "quantized::elu": "aten::elu",
    "quantized::celu": "aten::celu",
    "quantized::leaky_relu": "aten::leaky_relu",
    "quantized::threshold": "aten::threshold",
    "quantized::clamp": "aten::clamp",
    "quantized::prelu": "aten::_prelu_kernel",
    "quantized::softmax": "aten::_softmax",
    "quantized::cat_relu": "aten::relu",
}


def pointwise_flops(call: OpCall, options: CountOptions) -> Any:
    if not options.elementwise:
        return NotImplemented
    return _P[POINTWISE[call.op]] * first_output(call).numel


def max_pool_flops(call: OpCall, options: CountOptions) -> Any:
    """As float max pooling, with element-wise counting: one compare per window tap."""
    if not options.elementwise:
        return NotImplemented
    x: TensorMeta = call.input_tensors[0]
    dims = len(call.arg("kernel_size"))
    return window_taps(call, dims, x, first_output(call))


def embedding_bag_flops(call: OpCall, options: CountOptions) -> Any:
    """As ``nn.EmbeddingBag``: 1 per index and embedding dim (element-wise counting)."""
    if not options.elementwise:
        return NotImplemented
    indices: TensorMeta = call.arg("indices")
    return indices.numel * first_output(call).shape[-1]


def cell_flops(call: OpCall, options: CountOptions) -> dict[str, int]:
    """Dynamically quantized RNN cells, as their float cells: the two matmuls, and the gate math
    with element-wise counting."""
    x: TensorMeta = call.arg("input")
    w_ih, w_hh = _weight(call, "w_ih"), _weight(call, "w_hh")
    rows = x.numel // x.shape[-1]
    kind = next(k for k in ("lstm", "gru", "rnn_tanh", "rnn_relu") if k in call.op)
    flops = rows * (w_ih.numel + w_hh.numel)
    if options.elementwise:
        flops += rows * w_hh.shape[-1] * CELL_FLOPS[kind]
    return {f"{kind}_cell": flops}


def _names(*names: str) -> tuple[str, ...]:
    return tuple(f"quantized::{name}" for name in names)


LINEARS = _names(
    "linear",
    "linear_relu",
    "linear_dynamic",
    "linear_relu_dynamic",
    "linear_dynamic_fp16",
    "linear_relu_dynamic_fp16",
    "linear_dynamic_fp16_unpacked_weight",
    "linear_leaky_relu",
    "linear_tanh",
    "linear_with_input_q_dq_qweight_dq_output_fp32",
    "linear_with_input_q_dq_qweight_dq_relu_output_fp32",
)
CONVS = _names(
    "conv1d",
    "conv2d",
    "conv3d",
    "conv1d_relu",
    "conv2d_relu",
    "conv3d_relu",
    "conv2d_add",
    "conv2d_add_relu",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "conv1d_dynamic",
    "conv2d_dynamic",
    "conv3d_dynamic",
    "conv_transpose1d_dynamic",
    "conv_transpose2d_dynamic",
    "conv_transpose3d_dynamic",
)
BATCH_NORMS = (
    *_names(
        "batch_norm",
        "batch_norm_relu",
        "batch_norm1d",
        "batch_norm1d_relu",
        "batch_norm2d",
        "batch_norm2d_relu",
        "batch_norm3d",
        "batch_norm3d_relu",
    ),
    "aten::quantized_batch_norm",
)
STATISTICS_NORMS = _names("layer_norm", "group_norm", "instance_norm")
MAX_POOLS = (
    *_names("max_pool1d", "max_pool2d"),
    "aten::quantized_max_pool1d",
    "aten::quantized_max_pool2d",
    "aten::quantized_max_pool3d",
)
EMBEDDING_BAGS = _names(
    "embedding_bag_byte_rowwise_offsets",
    "embedding_bag_4bit_rowwise_offsets",
    "embedding_bag_2bit_rowwise_offsets",
)
CELLS = _names(
    "quantized_lstm_cell_dynamic",
    "quantized_gru_cell_dynamic",
    "quantized_rnn_tanh_cell_dynamic",
    "quantized_rnn_relu_cell_dynamic",
)
# Packing and unpacking (done once, when a model is converted), joins, lookups, identity.
NO_ARITHMETIC = _names(
    "cat",
    "dropout",
    "embedding_byte",
    "embedding_4bit",
    "linear_prepack",
    "linear_prepack_fp16",
    "linear_prepack_legacy",
    "linear_prepack_fp16_legacy",
    "linear_unpack",
    "linear_unpack_fp16",
    "conv_prepack",
    "conv1d_prepack",
    "conv2d_prepack",
    "conv3d_prepack",
    "conv_transpose1d_prepack",
    "conv_transpose2d_prepack",
    "conv_transpose3d_prepack",
    "embedding_bag_prepack",
    "embedding_bag_byte_prepack",
    "embedding_bag_byte_unpack",
    "embedding_bag_4bit_prepack",
    "embedding_bag_4bit_unpack",
    "embedding_bag_2bit_prepack",
    "embedding_bag_2bit_unpack",
    "make_quantized_cell_params",
    "make_quantized_cell_params_dynamic",
)


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(LINEARS, flops=linear_flops, activations=output_numel)
    handlers.add_ops(CONVS, flops=conv_flops, activations=output_numel)
    handlers.add_ops("quantized::matmul", flops=matmul_flops, activations=output_numel)
    handlers.add_ops(BATCH_NORMS, flops=batch_norm_flops, activations=no_activations)
    handlers.add_ops(STATISTICS_NORMS, flops=statistics_norm_flops, activations=no_activations)
    handlers.add_ops(tuple(POINTWISE), flops=pointwise_flops, activations=no_activations)
    handlers.add_ops(MAX_POOLS, flops=max_pool_flops, activations=no_activations)
    handlers.add_ops(EMBEDDING_BAGS, flops=embedding_bag_flops, activations=no_activations)
    handlers.add_ops(CELLS, flops=cell_flops, activations=no_activations)
    handlers.ignore(*NO_ARITHMETIC)

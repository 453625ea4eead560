"""Convolution in every dimension, transposed and grouped, as fvcore counts it.

flops = batch * prod(weight.shape) * prod(spatial), with the output's spatial size for a
convolution and the input's for a transposed one (the weight shape already divides by groups).

Eager models reach the dispatcher as ``aten::convolution``; TorchScript runs ``aten::_convolution``
(the same arguments first, then backend flags), which counts the same.
"""

from __future__ import annotations

import math

from torchtally.handlers import HandlerSet
from torchtally.ops.common import no_activations, output_numel
from torchtally.records import OpCall, TensorMeta


def convolution_flops(call: OpCall) -> dict[str, int]:
    x, w = call.arg("input"), call.arg("weight")
    out = call.output_tensors[0]
    spatial = (x if call.arg("transposed") else out).shape[2:]
    return {"conv": x.shape[0] * w.numel * math.prod(spatial)}


def convolution_activations(call: OpCall) -> dict[str, int]:
    return {"conv": output_numel(call)}


def backend_convolution_flops(call: OpCall) -> dict[str, int]:
    """A backend's own convolution op (cuDNN, MIOpen, oneDNN, MPS, NNPACK, the slow CPU ones),
    when it is called directly: the same formula; transposed ones are named so."""
    x: TensorMeta = call.arguments.get("self") or call.arg("input")
    w: TensorMeta = call.arg("weight")
    transposed = "transpose" in call.op
    spatial = (x if transposed else call.output_tensors[0]).shape[2:]
    return {"conv": x.shape[0] * w.numel * math.prod(spatial)}


def conv_tbc_flops(call: OpCall) -> dict[str, int]:
    """``conv_tbc`` (time, batch, channels) with a (kernel, in, out) weight: every output
    element a dot product over kernel x in."""
    w: TensorMeta = call.arg("weight")
    return {"conv": call.output_tensors[0].numel * w.shape[0] * w.shape[1]}


def backend_convolution_backward_flops(call: OpCall) -> dict[str, int]:
    """The input's and the weight's gradients, each the forward's multiply-adds (as
    ``convolution_backward``)."""
    x: TensorMeta = call.arg("self")
    w: TensorMeta = call.arg("weight")
    grad: TensorMeta = call.arg("grad_output")
    spatial = (x if "transpose" in call.op else grad).shape[2:]
    macs = x.shape[0] * w.numel * math.prod(spatial)
    mask = call.arguments.get("output_mask") or [True, True]
    return {"conv": macs * (bool(mask[0]) + bool(mask[1]))}


BACKEND_CONVOLUTIONS = (
    "aten::_conv_depthwise2d",
    "aten::conv_depthwise3d",
    "aten::cudnn_convolution",
    "aten::cudnn_convolution_add_relu",
    "aten::cudnn_convolution_relu",
    "aten::cudnn_convolution_transpose",
    "aten::miopen_convolution",
    "aten::miopen_convolution_add_relu",
    "aten::miopen_convolution_relu",
    "aten::miopen_convolution_transpose",
    "aten::miopen_depthwise_convolution",
    "aten::mkldnn_convolution",
    "aten::_mps_convolution",
    "aten::_mps_convolution_transpose",
    "aten::_nnpack_spatial_convolution",
    "aten::_slow_conv2d_forward",
    "aten::slow_conv3d_forward",
    "aten::slow_conv_dilated2d",
    "aten::slow_conv_dilated3d",
    "aten::slow_conv_transpose2d",
    "aten::slow_conv_transpose3d",
)
BACKEND_CONVOLUTION_BACKWARDS = (
    "aten::_slow_conv2d_backward",
    "aten::mps_convolution_backward",
    "aten::mps_convolution_transpose_backward",
)


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(
        ("aten::convolution", "aten::_convolution", "aten::convolution_overrideable"),
        flops=convolution_flops,
        activations=convolution_activations,
    )
    handlers.add_ops(
        BACKEND_CONVOLUTIONS,
        flops=backend_convolution_flops,
        activations=convolution_activations,
    )
    handlers.add_ops("aten::conv_tbc", flops=conv_tbc_flops, activations=convolution_activations)
    handlers.add_ops(
        BACKEND_CONVOLUTION_BACKWARDS,
        flops=backend_convolution_backward_flops,
        activations=no_activations,
    )

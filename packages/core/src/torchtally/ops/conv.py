"""Convolution in every dimension, transposed and grouped, as fvcore counts it.

flops = batch * prod(weight.shape) * prod(spatial), with the output's spatial size for a
convolution and the input's for a transposed one (the weight shape already divides by groups).

Eager models reach the dispatcher as ``aten::convolution``; TorchScript runs ``aten::_convolution``
(the same arguments first, then backend flags), which counts the same.
"""

from __future__ import annotations

import math

from torchtally.handlers import HandlerSet
from torchtally.ops.common import output_numel
from torchtally.records import OpCall


def convolution_flops(call: OpCall) -> dict[str, int]:
    x, w = call.arg("input"), call.arg("weight")
    out = call.output_tensors[0]
    spatial = (x if call.arg("transposed") else out).shape[2:]
    return {"conv": x.shape[0] * w.numel * math.prod(spatial)}


def convolution_activations(call: OpCall) -> dict[str, int]:
    return {"conv": output_numel(call)}


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(
        ("aten::convolution", "aten::_convolution"),
        flops=convolution_flops,
        activations=convolution_activations,
    )

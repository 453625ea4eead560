"""Convolution in every dimension, transposed and grouped, as fvcore counts it.

flops = batch * prod(weight.shape) * prod(spatial), with the output's spatial size for a
convolution and the input's for a transposed one (the weight shape already divides by groups).
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


def register(handlers: HandlerSet) -> None:
    handlers.add("flops", "aten::convolution", convolution_flops)
    handlers.add("activations", "aten::convolution", lambda call: {"conv": output_numel(call)})

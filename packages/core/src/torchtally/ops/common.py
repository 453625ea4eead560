"""Helpers handlers share (core's and plugins'): reading recorded calls, zero activations."""

from __future__ import annotations

from torchtally.records import OpCall, TensorMeta


def first_output(call: OpCall) -> TensorMeta:
    outputs = call.output_tensors
    if not outputs:
        raise ValueError(f"{call.op} recorded no tensor output")
    return outputs[0]


def first_input(call: OpCall) -> TensorMeta:
    inputs = call.input_tensors
    if not inputs:
        raise ValueError(f"{call.op} recorded no tensor input")
    return inputs[0]


def output_numel(call: OpCall) -> int:
    """Elements of the first output: the activations of a convolution or matmul.

    Activations are what the forward pass produces; a matmul the backward pass runs has none."""
    return 0 if call.phase == "backward" else first_output(call).numel


def no_activations(call: OpCall) -> int:
    """Activations are the outputs of convolutions and matmuls: every other op produces none."""
    return 0

"""Grouped matmuls: one matmul per expert (mixture of experts) in a single op.

``torch._grouped_mm(a, b, offs)`` multiplies groups of rows (or columns) of `a` by one matrix of
`b` each; Hugging Face's MoE layers (Mixtral, Qwen-MoE, ...) run their experts through it by
default. Every output element is a dot product over the contraction dimension, as for core's
matmuls, except in the 2d x 2d form, where the groups split the contraction itself:

- 2d x 3d: a (M, K) rows grouped by `offs`, b (G, K, N) -> (M, N): ``M * K * N``
- 3d x 2d: a (G, M, K), b (K, N) columns grouped -> (M, N): ``M * K * N``
- 3d x 3d: a (G, M, K), b (G, K, N) -> (G, M, N): ``G * M * K * N``
- 2d x 2d: a (M, K), b (K, N), K grouped -> (G, M, N): ``M * K * N``

Rows past ``offs[-1]`` (padding) are not computed, but `offs` is data the trace does not keep:
every row is counted. Activations are the output elements, as for core's matmuls, in the forward
pass; gradients are not activations (core's convention), so backward calls have none.
"""

from __future__ import annotations

from torchtally.plugin import HandlerSet, OpCall, TensorMeta, first_output


def grouped_mm_flops(call: OpCall) -> int:
    a: TensorMeta = call.arg("self")
    b: TensorMeta = call.arg("mat2")
    if a.ndim == 2 and b.ndim == 2:
        return a.numel * b.shape[-1]  # the groups share out the contraction
    return first_output(call).numel * a.shape[-1]


def grouped_mm_activations(call: OpCall) -> int:
    return first_output(call).numel if call.phase == "forward" else 0


GROUPED_MMS = ("aten::_grouped_mm", "aten::_scaled_grouped_mm")


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(GROUPED_MMS, flops=grouped_mm_flops, activations=grouped_mm_activations)

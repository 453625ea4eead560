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

Bytes (the forward's 2d x 3d form): a kernel reads the weights of the experts that got rows, not
all G of them, and which did is routing data the trace does not keep. With the option
``moe_top_k`` (``generation`` sets it from the configuration) the rows are ``T * k`` of T tokens
routed uniformly to k distinct experts each, which touches ``G * (1 - (1 - k / G) ** T)`` experts
on average (exactly k for one token: a decode step at batch 1); without it, at most
``min(G, M)`` of them. Every other tensor is read and written whole, core's rule.
"""

from __future__ import annotations

from torchtally.plugin import (
    CountOptions,
    HandlerSet,
    OpCall,
    TensorMeta,
    bytes_moved,
    first_output,
)

TOP_K_OPTION = "moe_top_k"


def grouped_mm_flops(call: OpCall) -> int:
    a: TensorMeta = call.arg("self")
    b: TensorMeta = call.arg("mat2")
    if a.ndim == 2 and b.ndim == 2:
        return a.numel * b.shape[-1]  # the groups share out the contraction
    return first_output(call).numel * a.shape[-1]


def grouped_mm_activations(call: OpCall) -> int:
    return first_output(call).numel if call.phase == "forward" else 0


def experts_touched(groups: int, rows: int, top_k: int | None) -> float:
    """Experts whose weights `rows` routed rows read: under uniform top-k routing of
    ``rows / top_k`` tokens the expected number, else the most there can be."""
    if not top_k or top_k > groups or rows % top_k:
        return min(groups, rows)
    return groups * (1 - (1 - top_k / groups) ** (rows // top_k))


def grouped_mm_bytes(call: OpCall, options: CountOptions) -> int:
    a: TensorMeta = call.arg("self")
    b: TensorMeta = call.arg("mat2")
    moved = bytes_moved(call)
    if call.phase != "forward" or a.ndim != 2 or b.ndim != 3:
        return moved
    top_k = options.get(TOP_K_OPTION)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"option {TOP_K_OPTION!r} must be a whole number of at least 1")
    groups = b.shape[0]
    weights = b.numel * b.dtype.itemsize
    touched = experts_touched(groups, a.shape[0], top_k)
    return moved - weights + round(weights * touched / groups)


GROUPED_MMS = ("aten::_grouped_mm", "aten::_scaled_grouped_mm", "aten::_scaled_grouped_mm_v2")


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(
        GROUPED_MMS,
        flops=grouped_mm_flops,
        activations=grouped_mm_activations,
        bytes=grouped_mm_bytes,
    )

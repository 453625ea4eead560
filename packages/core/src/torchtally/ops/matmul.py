"""The matmul family. One multiply-add per (output element x reduced element); bias ignored.

torch.matmul, nn.Linear and torch.einsum decompose into these before the dispatcher, so counting
these counts them (fvcore's convention: ``prod(a.shape) * b.shape[-1]``). A sparse operand
counts its stored elements only. Matmul-like products count the same way: ``torch.cdist`` (one
multiply-add per pair of rows and feature), ``nn.Bilinear``'s ``_trilinear`` (its two staged
products).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torchtally.handlers import HandlerSet
from torchtally.ops.common import first_output, output_numel
from torchtally.records import OpCall, TensorMeta


def matmul_macs(left: TensorMeta, right: TensorMeta) -> int:
    """(m, k) @ (k, n) -> m*k*n; batched (B, m, k) @ (B, k, n) -> B*m*k*n.

    A sparse operand multiplies only what it stores: each stored element of a sparse left
    operand meets a row of n, each of a sparse right operand a column of m. Two sparse operands:
    ``nnz(a) * nnz(b) / k``, the expected products when the stored elements are spread evenly.
    """
    if left.nnz is None and right.nnz is None:
        return left.numel * right.shape[-1]
    if right.nnz is None:
        return left.stored * right.shape[-1]
    if left.nnz is None:
        return math.prod(left.shape[:-1]) * right.stored
    return round(left.stored * right.stored / max(left.shape[-1], 1))


def _mm(call: OpCall, a: str, b: str) -> int:
    return matmul_macs(call.arg(a), call.arg(b))


def _mv(call: OpCall, a: str) -> int:
    """(m, k) @ (k,) -> m*k."""
    matrix: TensorMeta = call.arg(a)
    return matrix.numel


def cdist_flops(call: OpCall) -> int:
    """``_cdist_forward``, ``_euclidean_dist``: (..., P, M) and (..., R, M) give (..., P, R)
    distances, one multiply-add per pair and feature, whatever p and path (the matmul path for
    p=2 multiplies exactly these; the direct one subtracts first)."""
    x1: TensorMeta = call.arg("x1")
    return first_output(call).numel * x1.shape[-1]


def cdist_backward_flops(call: OpCall) -> int:
    """``_cdist_backward``: one operand's gradient, one multiply-add per pair and feature (as the
    matmul path's gradient ``grad @ x2``)."""
    x1: TensorMeta = call.arg("x1")
    distances: TensorMeta = call.arg("cdist")
    return distances.numel * x1.shape[-1]


def _expanded(shape: Sequence[int], expand: Sequence[int]) -> list[int]:
    """`shape` with a 1 inserted at each dim of `expand` (ascending), as _trilinear unsqueezes."""
    result = list(shape)
    for dim in sorted(expand):
        result.insert(dim, 1)
    return result


def trilinear_flops(call: OpCall) -> int:
    """``_trilinear`` (``nn.Bilinear``, and its gradients): i1 * i2 first, summed over the sum
    dims i3 lacks, then that times i3; each stage one multiply-add per element of its operands'
    broadcast shape. ``nn.Bilinear`` (N, in1) x (out, in1, in2) x (N, in2):
    ``N * out * in2 * (in1 + 1)``."""
    i1, i2, i3 = (
        _expanded(call.arg(t).shape, call.arg(e))
        for t, e in (("i1", "expand1"), ("i2", "expand2"), ("i3", "expand3"))
    )
    sumdim = set(call.arg("sumdim"))
    first = [max(a, b) for a, b in zip(i1, i2, strict=True)]
    partial = [1 if d in sumdim and i3[d] == 1 else n for d, n in enumerate(first)]
    second = [max(a, b) for a, b in zip(partial, i3, strict=True)]
    return math.prod(first) + math.prod(second)


def register(handlers: HandlerSet) -> None:
    flops = {
        "aten::mm": lambda call: _mm(call, "self", "mat2"),
        "aten::bmm": lambda call: _mm(call, "self", "mat2"),
        "aten::addmm": lambda call: _mm(call, "mat1", "mat2"),
        "aten::_addmm_activation": lambda call: _mm(call, "mat1", "mat2"),
        "aten::baddbmm": lambda call: _mm(call, "batch1", "batch2"),
        "aten::addbmm": lambda call: _mm(call, "batch1", "batch2"),
        "aten::mv": lambda call: _mv(call, "self"),
        "aten::addmv": lambda call: _mv(call, "mat"),
        "aten::dot": lambda call: _mv(call, "self"),
        "aten::vdot": lambda call: _mv(call, "self"),
        "aten::_sparse_addmm": lambda call: _mm(call, "mat1", "mat2"),
        "aten::hspmm": lambda call: _mm(call, "mat1", "mat2"),
        "aten::_sparse_sparse_matmul": lambda call: _mm(call, "self", "other"),
        "aten::_sparse_mm_reduce_impl": lambda call: _mm(call, "self", "other"),
        "aten::_cdist_forward": cdist_flops,
        "aten::_euclidean_dist": cdist_flops,
        "aten::_trilinear": trilinear_flops,
    }
    for op, handler in flops.items():
        handlers.add_ops(op, flops=handler, activations=output_numel)
    handlers.add_ops("aten::_cdist_backward", flops=cdist_backward_flops, activations=output_numel)
    handlers.name_functions(
        {
            "linear": "linear",
            "matmul": "matmul",
            "__matmul__": "matmul",
            "__rmatmul__": "matmul",
            "einsum": "einsum",
            "mm": "mm",
            "bmm": "bmm",
            "addmm": "addmm",
            "baddbmm": "baddbmm",
            "cdist": "cdist",
            "bilinear": "bilinear",
            # nn.MultiheadAttention's slow path: projections are F.linear calls inside it.
            "multi_head_attention_forward": {
                "aten::mm": "linear",
                "aten::addmm": "linear",
                "aten::bmm": "bmm",
                "aten::baddbmm": "baddbmm",
            },
        }
    )

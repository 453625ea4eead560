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
from torchtally.ops.common import first_output, no_activations, output_numel
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


def product_flops(call: OpCall) -> int:
    """Output elements x the first operand's last dim (the contraction): integer, fp8 and
    low-bit weight matmuls, whose weights come packed (``_int_mm``, ``_scaled_mm``,
    ``_weight_int4pack_mm``, ...)."""
    return first_output(call).numel * call.input_tensors[0].shape[-1]


def outer_flops(call: OpCall) -> int:
    """``addr``: an outer product added to a matrix, 1 multiply-add per output element."""
    return first_output(call).numel


def semi_structured_flops(call: OpCall) -> int:
    """2:4 semi-structured sparse matmuls multiply the stored half of the sparse operand: its
    compressed (m, k / 2) shape counts as a dense one."""
    if call.op == "aten::_cslt_sparse_mm":
        dense: TensorMeta = call.arg("dense_B")
        return first_output(call).numel * dense.shape[0] // 2
    if call.op == "aten::_sparse_semi_structured_linear":
        weight: TensorMeta = call.arg("weight")
        x: TensorMeta = call.arg("input")
        return x.numel // x.shape[-1] * weight.numel
    mat1: TensorMeta = call.arg("mat1")
    return first_output(call).numel * mat1.shape[-1]


def sampled_addmm_flops(call: OpCall) -> int:
    """``sparse_sampled_addmm``: mat1 @ mat2 only where the sparse `self` stores an element."""
    sparse: TensorMeta = call.arg("self")
    mat1: TensorMeta = call.arg("mat1")
    return sparse.stored * mat1.shape[-1]


def linear_flops(call: OpCall) -> int:
    """``mkldnn_linear``: as ``nn.Linear``, rows x out x in."""
    x: TensorMeta = call.arg("self")
    weight: TensorMeta = call.arg("weight")
    return x.numel // x.shape[-1] * weight.numel


def linear_backward_flops(call: OpCall) -> int:
    """``linear_backward``, ``mkldnn_linear_backward``: the input's and the weight's gradients,
    each the forward's rows x out x in (the bias's is a sum, ignored with the bias)."""
    grad: TensorMeta = call.arg("grad_output")
    weight: TensorMeta = call.arg("weight")
    grad_input, grad_weight = (bool(m) for m in call.arg("output_mask")[:2])
    return grad.numel // grad.shape[-1] * weight.numel * (grad_input + grad_weight)


def mkldnn_linear_backward_part_flops(call: OpCall) -> int:
    grad: TensorMeta = call.arg("grad_output")
    weight: TensorMeta = call.arg("weight")
    return grad.numel // grad.shape[-1] * weight.numel


def matmul_backward_flops(call: OpCall) -> int:
    """``matmul_backward``: each gradient the forward's output elements x contraction."""
    grad: TensorMeta = call.arg("grad")
    x: TensorMeta = call.arg("self")
    return grad.numel * x.shape[-1] * sum(bool(m) for m in call.arg("mask"))


def linear_combination_flops(call: OpCall) -> int:
    """``_compute_linear_combination``: each output a combination of `coefficients.shape[-1]`
    inputs."""
    coefficients: TensorMeta = call.arg("coefficients")
    return first_output(call).numel * coefficients.shape[-1]


def pdist_flops(call: OpCall) -> int:
    """``_pdist_forward`` (``F.pdist``) and its gradient: one multiply-add per pair and feature,
    as ``torch.cdist``."""
    x: TensorMeta = call.arg("self")
    pairs = x.shape[0] * (x.shape[0] - 1) // 2
    return pairs * x.shape[-1]


def sparse_mm_reduce_backward_flops(call: OpCall) -> int:
    sparse: TensorMeta = call.arg("self")
    grad: TensorMeta = call.arg("grad_out")
    return sparse.stored * grad.shape[-1] * sum(bool(m) for m in call.arg("output_mask"))


PRODUCTS = (
    "aten::_int_mm",
    "aten::_weight_int4pack_mm",
    "aten::_weight_int4pack_mm_for_cpu",
    "aten::_weight_int4pack_mm_with_scales_and_zeros",
    "aten::_weight_int8pack_mm",
    "aten::_dyn_quant_matmul_4bit",
    "aten::_mixed_dtypes_linear",
    "aten::_scaled_mm",
    "aten::_scaled_mm_v2",
)
SEMI_STRUCTURED = (
    "aten::_cslt_sparse_mm",
    "aten::_sparse_semi_structured_addmm",
    "aten::_sparse_semi_structured_linear",
    "aten::_sparse_semi_structured_mm",
)


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(PRODUCTS, flops=product_flops, activations=output_numel)
    handlers.add_ops(SEMI_STRUCTURED, flops=semi_structured_flops, activations=output_numel)
    more = {
        "aten::addr": outer_flops,
        "aten::addr_": outer_flops,
        "aten::sparse_sampled_addmm": sampled_addmm_flops,
        "aten::mkldnn_linear": linear_flops,
        "aten::_compute_linear_combination": linear_combination_flops,
        "aten::_pdist_forward": pdist_flops,
    }
    for op, handler in more.items():
        handlers.add_ops(op, flops=handler, activations=output_numel)
    gradients = {
        "aten::linear_backward": linear_backward_flops,
        "aten::mkldnn_linear_backward": linear_backward_flops,
        "aten::mkldnn_linear_backward_input": mkldnn_linear_backward_part_flops,
        "aten::mkldnn_linear_backward_weights": mkldnn_linear_backward_part_flops,
        "aten::matmul_backward": matmul_backward_flops,
        "aten::_pdist_backward": pdist_flops,
        "aten::_sparse_mm_reduce_impl_backward": sparse_mm_reduce_backward_flops,
    }
    for op, handler in gradients.items():
        handlers.add_ops(op, flops=handler, activations=no_activations)
    flops = {
        "aten::mm": lambda call: _mm(call, "self", "mat2"),
        "aten::bmm": lambda call: _mm(call, "self", "mat2"),
        "aten::addmm": lambda call: _mm(call, "mat1", "mat2"),
        "aten::addmm_": lambda call: _mm(call, "mat1", "mat2"),
        "aten::_addmm_activation": lambda call: _mm(call, "mat1", "mat2"),
        "aten::baddbmm": lambda call: _mm(call, "batch1", "batch2"),
        "aten::baddbmm_": lambda call: _mm(call, "batch1", "batch2"),
        "aten::addbmm": lambda call: _mm(call, "batch1", "batch2"),
        "aten::addbmm_": lambda call: _mm(call, "batch1", "batch2"),
        "aten::mv": lambda call: _mv(call, "self"),
        "aten::addmv": lambda call: _mv(call, "mat"),
        "aten::addmv_": lambda call: _mv(call, "mat"),
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

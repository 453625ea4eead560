"""The matmul family. One multiply-add per (output element x reduced element); bias ignored.

torch.matmul, nn.Linear and torch.einsum decompose into these before the dispatcher, so counting
these counts them (fvcore's convention: ``prod(a.shape) * b.shape[-1]``).
"""

from __future__ import annotations

from torchtally.handlers import HandlerSet
from torchtally.ops.common import output_numel
from torchtally.records import OpCall, TensorMeta


def _mm(call: OpCall, a: str, b: str) -> int:
    """(m, k) @ (k, n) -> m*k*n; batched (B, m, k) @ (B, k, n) -> B*m*k*n."""
    left: TensorMeta = call.arg(a)
    right: TensorMeta = call.arg(b)
    return left.numel * right.shape[-1]


def _mv(call: OpCall, a: str) -> int:
    """(m, k) @ (k,) -> m*k."""
    matrix: TensorMeta = call.arg(a)
    return matrix.numel


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
    }
    for op, handler in flops.items():
        handlers.add_ops(op, flops=handler, activations=output_numel)
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
            # nn.MultiheadAttention's slow path: projections are F.linear calls inside it.
            "multi_head_attention_forward": {
                "aten::mm": "linear",
                "aten::addmm": "linear",
                "aten::bmm": "bmm",
                "aten::baddbmm": "baddbmm",
            },
        }
    )

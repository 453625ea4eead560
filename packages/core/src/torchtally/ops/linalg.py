"""Linear algebra (``torch.linalg``): factorisations, solves, inverses, eigen and singular value
decompositions, counted in multiply-adds with their textbook leading terms (Golub and Van Loan,
*Matrix Computations*; LAPACK's operation counts), halved from flops to multiply-adds as
everywhere in torchtally. For an m x n matrix (m >= n after transposing), batched, and k
right-hand sides:

- LU: ``m n^2 / 2 - n^3 / 6`` (``n^3 / 3`` square); Cholesky and LDL: ``n^3 / 6``;
  Householder QR: ``m n^2 - n^3 / 3``, forming Q as much again; applying Q: ``m n k``;
- triangular solve: ``n^2 k / 2``; a solve from a factorisation: two of them, ``n^2 k``;
- inverse: ``n^3`` (LU, then the inverse from it); determinant: the LU;
- symmetric eigendecomposition: ``2 n^3 / 3`` for the values (tridiagonal reduction), ``4.5 n^3``
  with the vectors; general eigendecomposition: ``5 n^3``, ``12.5 n^3`` with the vectors;
- SVD: ``2 m n^2 - 2 n^3 / 3`` for the values, ``3 m n^2 + 5.5 n^3`` with U and V (R-SVD);
- matrix exponential: a [13/13] Pade approximant, 6 matrix products and a solve (``7.33 n^3``);
  its squarings depend on the matrix's norm (data) and are not counted.

The iterative parts (eigenvalue and SVD iterations) converge in a data-dependent number of
steps; the figures are the usual estimates. Counted always: they are matrix products in disguise.
Activations are 0.
"""

from __future__ import annotations

import math

from torchtally.handlers import HandlerSet
from torchtally.ops.common import no_activations
from torchtally.records import OpCall, TensorMeta


def _matrix(x: TensorMeta) -> tuple[int, int, int]:
    """(batch, rows, columns) of a (batched) matrix, rows >= columns."""
    m, n = x.shape[-2], x.shape[-1]
    return math.prod(x.shape[:-2]), max(m, n), min(m, n)


def _columns(b: TensorMeta, left: bool = True) -> int:
    """Right-hand sides of a solve: B's columns (its rows when solving on the right)."""
    if b.ndim == 1:
        return 1
    return b.shape[-1] if left else b.shape[-2]


def lu_macs(x: TensorMeta) -> float:
    batch, m, n = _matrix(x)
    return batch * (m * n * n / 2 - n**3 / 6)


def _square(x: TensorMeta) -> tuple[int, int]:
    return math.prod(x.shape[:-2]), x.shape[-1]


def cholesky_flops(call: OpCall) -> int:
    batch, n = _square(call.input_tensors[0])
    return round(batch * n**3 / 6)


def lu_flops(call: OpCall) -> int:
    return round(lu_macs(call.input_tensors[0]))


def inverse_flops(call: OpCall) -> int:
    batch, n = _square(call.input_tensors[0])
    return batch * n**3


def cholesky_inverse_flops(call: OpCall) -> int:
    """The triangular factor's inverse (n^3 / 6) and its product with its transpose (n^3 / 6)."""
    batch, n = _square(call.arg("self"))
    return round(batch * n**3 / 3)


def triangular_solve_flops(call: OpCall) -> int:
    """``linalg_solve_triangular(A, B)``, ``triangular_solve(B, A)``: n^2 k / 2."""
    names = ("A", "self") if call.op == "aten::triangular_solve" else ("self", "B")
    a: TensorMeta = call.arg(names[0])
    b: TensorMeta = call.arg(names[1])
    batch = math.prod(b.shape[:-2]) if b.ndim > 2 else 1
    n = a.shape[-1]
    return round(batch * n * n * _columns(b, bool(call.arguments.get("left", True))) / 2)


# (factor, right-hand sides) of the solves from a factorisation
_SOLVE_ARGUMENTS = {
    "aten::linalg_lu_solve": ("LU", "B"),
    "aten::linalg_ldl_solve": ("LD", "B"),
    "aten::cholesky_solve": ("input2", "self"),
    "aten::_cholesky_solve_helper": ("A", "self"),
}


def factored_solve_flops(call: OpCall) -> int:
    """A solve from a factorisation (LU, Cholesky, LDL): two triangular solves, n^2 k."""
    factor_name, b_name = _SOLVE_ARGUMENTS[call.op]
    factor: TensorMeta = call.arg(factor_name)
    b: TensorMeta = call.arg(b_name)
    batch = math.prod(b.shape[:-2]) if b.ndim > 2 else 1
    n = factor.shape[-1]
    return batch * n * n * _columns(b, bool(call.arguments.get("left", True)))


def solve_flops(call: OpCall) -> int:
    """``_linalg_solve_ex``: the LU (n^3 / 3), then the two triangular solves (n^2 k)."""
    a, b = call.arg("A"), call.arg("B")
    batch, n = _square(a)
    k = _columns(b, bool(call.arguments.get("left", True)))
    return round(lu_macs(a) + batch * n * n * k)


def qr_flops(call: OpCall) -> int:
    """Householder QR: m n^2 - n^3 / 3; forming the reduced or complete Q about as much again
    (``mode="r"`` does not form it)."""
    x = call.input_tensors[0]
    batch, m, n = _matrix(x)
    factor = batch * (m * n * n - n**3 / 3)
    forms_q = call.op == "aten::linalg_qr" and call.arguments.get("mode", "reduced") != "r"
    return round(factor * (2 if forms_q else 1))


def householder_product_flops(call: OpCall) -> int:
    """Forming Q from k reflectors (``orgqr``): m n^2 - n^3 / 3 for k = n."""
    return round(_householder(call.arg("input")))


def _householder(x: TensorMeta) -> float:
    batch, m, n = _matrix(x)
    return batch * (m * n * n - n**3 / 3)


def ormqr_flops(call: OpCall) -> int:
    """Applying Q (m x m, from n reflectors) to C (m x k): m n k."""
    reflectors: TensorMeta = call.arg("self")
    c: TensorMeta = call.arg("input3")
    batch, _, n = _matrix(reflectors)
    return batch * c.shape[-2] * c.shape[-1] * n


def eigh_flops(call: OpCall) -> int:
    batch, n = _square(call.arg("A"))
    per_matrix = 4.5 * n**3 if call.arguments.get("compute_v", True) else 2 * n**3 / 3
    return round(batch * per_matrix)


def eig_flops(call: OpCall) -> int:
    batch, n = _square(call.input_tensors[0])
    per_matrix = 5 * n**3 if call.op == "aten::_linalg_eigvals" else 12.5 * n**3
    return round(batch * per_matrix)


def svd_flops(call: OpCall) -> int:
    batch, m, n = _matrix(call.arg("A"))
    if call.arguments.get("compute_uv", True):
        return round(batch * (3 * m * n * n + 5.5 * n**3))
    return round(batch * (2 * m * n * n - 2 * n**3 / 3))


def pinv_flops(call: OpCall) -> int:
    """Through the SVD (with vectors), then V S^+ U^T: m n^2 more."""
    batch, m, n = _matrix(call.arg("self"))
    return round(batch * (3 * m * n * n + 5.5 * n**3 + m * n * n))


def lstsq_flops(call: OpCall) -> int:
    """QR of A (m n^2 - n^3 / 3), Q^T B (m n k), the triangular solve (n^2 k / 2)."""
    a: TensorMeta = call.arg("self")
    b: TensorMeta = call.arg("b")
    batch, m, n = _matrix(a)
    k = _columns(b)
    return round(batch * (m * n * n - n**3 / 3 + m * n * k + n * n * k / 2))


def matrix_exp_flops(call: OpCall) -> int:
    batch, n = _square(call.arg("self"))
    return round(batch * (6 + 4 / 3) * n**3)


FLOPS = {
    "aten::cholesky": cholesky_flops,
    "aten::linalg_cholesky_ex": cholesky_flops,
    "aten::linalg_ldl_factor_ex": cholesky_flops,
    "aten::linalg_lu": lu_flops,
    "aten::linalg_lu_factor_ex": lu_flops,
    "aten::_linalg_det": lu_flops,
    "aten::_linalg_slogdet": lu_flops,
    "aten::linalg_inv_ex": inverse_flops,
    "aten::cholesky_inverse": cholesky_inverse_flops,
    "aten::linalg_solve_triangular": triangular_solve_flops,
    "aten::triangular_solve": triangular_solve_flops,
    "aten::linalg_lu_solve": factored_solve_flops,
    "aten::linalg_ldl_solve": factored_solve_flops,
    "aten::cholesky_solve": factored_solve_flops,
    "aten::_cholesky_solve_helper": factored_solve_flops,
    "aten::_linalg_solve_ex": solve_flops,
    "aten::geqrf": qr_flops,
    "aten::linalg_qr": qr_flops,
    "aten::linalg_householder_product": householder_product_flops,
    "aten::ormqr": ormqr_flops,
    "aten::_linalg_eigh": eigh_flops,
    "aten::linalg_eig": eig_flops,
    "aten::_linalg_eigvals": eig_flops,
    "aten::_linalg_svd": svd_flops,
    "aten::linalg_pinv": pinv_flops,
    "aten::linalg_lstsq": lstsq_flops,
    "aten::linalg_matrix_exp": matrix_exp_flops,
}


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(tuple(FLOPS), activations=no_activations)
    for op, handler in FLOPS.items():
        handlers.add_ops(op, flops=handler)

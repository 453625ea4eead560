"""fvcore-style handles and the helpers research code builds them from.

A handle is ``handle(inputs, outputs) -> number or Counter``, where `inputs` and `outputs` are
JIT values: ``torch._C.Value`` from a JIT trace, or torchtally's `JitValue` built from a recorded
call. These helpers only ask what both answer (``isCompleteTensor()``, ``type().sizes()``,
``toIValue()``, ``node().inputs()``), so they work on either. One fused multiply-add counts as
one flop, as in fvcore; where fvcore's formula is wrong for some shapes (a 1-D or broadcast
``matmul``, an einsum without summed indices) these give the count the op really does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

Handle = Callable[[list[Any], list[Any]], "Counter[str] | int | float"]
"""``handle(inputs, outputs)``: a count, or a Counter of counts by operator name."""


def get_shape(val: Any) -> list[int] | None:
    """The sizes of a tensor value; None for anything else (a constant, an absent optional)."""
    if val.isCompleteTensor():
        return list(val.type().sizes())
    return None


def _shape(val: Any, what: str) -> list[int]:
    shape = get_shape(val)
    if shape is None:
        raise ValueError(f"expected a tensor for {what}, got {val!r}")
    return shape


def generic_activation_jit(op_name: str | None = None) -> Handle:
    """A handle counting the elements of the op's first output (its activations), under
    `op_name` when given, else under the op's own name."""

    def activation_count(inputs: list[Any], outputs: list[Any]) -> Counter[str] | int:
        count = math.prod(_shape(outputs[0], "the output"))
        return count if op_name is None else Counter({op_name: count})

    return activation_count


def addmm_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::addmm(bias, a, b)``: ``a`` is (n, k), ``b`` (k, m): n * k * m (the bias add is
    not counted)."""
    rows, inner = _shape(inputs[1], "addmm's first matrix")
    columns = _shape(inputs[2], "addmm's second matrix")[-1]
    return rows * inner * columns


def linear_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::linear(input, weight, bias)``: every input element times each output feature."""
    features = _shape(inputs[1], "linear's weight")[0]
    return math.prod(_shape(inputs[0], "linear's input")) * features


def bmm_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::bmm``: (b, n, k) @ (b, k, m) is b * n * k * m."""
    batch, rows, inner = _shape(inputs[0], "bmm's first operand")
    return batch * rows * inner * _shape(inputs[1], "bmm's second operand")[-1]


def matmul_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::matmul`` and ``aten::mm``, with ``torch.matmul``'s rules: a 1-D operand is a row
    (first) or a column (second), and batch dimensions broadcast."""
    first = _shape(inputs[0], "the first operand")
    second = _shape(inputs[1], "the second operand")
    if len(first) == 1:
        first = [1, *first]
    if len(second) == 1:
        second = [*second, 1]
    if first[-1] != second[-2]:
        raise ValueError(f"matmul of {first} and {second}: inner dimensions differ")
    batch = _broadcast(first[:-2], second[:-2])
    return math.prod(batch) * first[-2] * first[-1] * second[-1]


def _broadcast(first: Sequence[int], second: Sequence[int]) -> list[int]:
    width = max(len(first), len(second))
    padded = [[1] * (width - len(s)) + list(s) for s in (first, second)]
    return [max(a, b) for a, b in zip(*padded, strict=True)]


def conv_flop_count(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    out_shape: Sequence[int],
    transposed: bool = False,
) -> int:
    """Multiply-adds of a convolution: batch x weight elements x positions, the positions being
    the output's (the input's for a transposed convolution). The bias is not counted."""
    positions = (x_shape if transposed else out_shape)[2:]
    return x_shape[0] * math.prod(w_shape) * math.prod(positions)


def conv_flop_jit(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    """``aten::_convolution(input, weight, bias, stride, padding, dilation, transposed, ...)``,
    reported as ``conv``."""
    transposed = bool(inputs[6].toIValue()) if len(inputs) > 6 else False
    count = conv_flop_count(
        _shape(inputs[0], "the input"),
        _shape(inputs[1], "the weight"),
        _shape(outputs[0], "the output"),
        transposed=transposed,
    )
    return Counter({"conv": count})


def einsum_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::einsum(equation, tensors, path)``: operands contracted pairwise, left to right;
    each contraction costs the product of the sizes of every index it involves (one
    multiply-add per combination). One operand alone costs its elements if it sums over any."""
    equation = str(inputs[0].toIValue()).replace(" ", "")
    shapes = [_shape(v, "an einsum operand") for v in inputs[1].node().inputs()]
    return einsum_flop_count(equation, shapes)


def einsum_flop_count(equation: str, shapes: Sequence[Sequence[int]]) -> int:
    """The multiply-adds of ``torch.einsum(equation, *operands of these shapes)``."""
    if "..." in equation:
        raise ValueError(f"einsum equations with '...' are not supported: {equation!r}")
    terms, _, result = equation.partition("->")
    operands = terms.split(",")
    if len(operands) != len(shapes):
        raise ValueError(f"einsum {equation!r} names {len(operands)} operands, got {len(shapes)}")
    if not result and "->" not in equation:  # implicit output: the indices seen once, sorted
        letters = "".join(operands)
        result = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    sizes: dict[str, int] = {}
    for operand, shape in zip(operands, shapes, strict=True):
        sizes.update(zip(operand, shape, strict=True))
    if len(operands) == 1:
        summed = set(operands[0]) - set(result)
        return math.prod(shapes[0]) if summed else 0
    total, current = 0, operands[0]
    for position, operand in enumerate(operands[1:], start=2):
        involved = set(current) | set(operand)
        total += math.prod(sizes[c] for c in involved)
        later = set(result).union(*operands[position:])
        current = "".join(c for c in sorted(involved) if c in later)
    return total


def norm_flop_counter(affine_arg_index: int) -> Handle:
    """A handle for a normalisation op: 5 flops per input element with an affine weight
    (``inputs[affine_arg_index]`` is a tensor), 4 without."""

    def norm_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
        affine = get_shape(inputs[affine_arg_index]) is not None
        return math.prod(_shape(inputs[0], "the input")) * (5 if affine else 4)

    return norm_flop_jit


def batchnorm_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::batch_norm(input, weight, bias, running_mean, running_var, training, ...)``:
    training normalises with batch statistics (as `norm_flop_counter`); eval costs 1 flop per
    element, 2 with an affine weight."""
    training = inputs[5].toIValue()
    if not isinstance(training, bool):
        raise ValueError(
            f"expected aten::batch_norm's training flag at inputs[5], got {training!r}"
        )
    if training:
        return norm_flop_counter(1)(inputs, outputs)  # type: ignore[return-value]
    affine = get_shape(inputs[1]) is not None
    return math.prod(_shape(inputs[0], "the input")) * (2 if affine else 1)


def elementwise_flop_counter(input_scale: float = 1, output_scale: float = 0) -> Handle:
    """A handle counting ``input_scale`` flops per element of the first input plus
    ``output_scale`` per element of the first output."""

    def elementwise_flop(inputs: list[Any], outputs: list[Any]) -> int | float:
        count: int | float = 0
        if input_scale:
            count += input_scale * math.prod(_shape(inputs[0], "the first input"))
        if output_scale:
            count += output_scale * math.prod(_shape(outputs[0], "the first output"))
        return count

    return elementwise_flop


__all__ = [
    "Handle",
    "addmm_flop_jit",
    "batchnorm_flop_jit",
    "bmm_flop_jit",
    "conv_flop_count",
    "conv_flop_jit",
    "einsum_flop_count",
    "einsum_flop_jit",
    "elementwise_flop_counter",
    "generic_activation_jit",
    "get_shape",
    "linear_flop_jit",
    "matmul_flop_jit",
    "norm_flop_counter",
]

"""JIT-like values built from recorded calls, so that fvcore-style handles run unchanged.

An fvcore handle is ``handle(inputs, outputs)`` where both are lists of ``torch._C.Value`` from a
JIT trace. `call_values` gives it values that answer what such handles ask, from one recorded op
or watched function call: ``type().sizes()``, ``type().scalarType()``, ``isCompleteTensor()``,
``toIValue()`` for constants, ``node().inputs()`` for lists of tensors (einsum's operands),
``node().kind()``, ``debugName()``. Arguments come in the order of the op's JIT schema, which
for a few ops is not the dispatcher's: ``aten::_convolution`` (what a JIT trace records for a
convolution) has the dispatcher's ``aten::convolution`` arguments followed by ``benchmark``,
``deterministic``, ``cudnn_enabled`` and ``allow_tf32``; a watched function call (``linear``,
``F.batch_norm``, ``torch.einsum``) is bound to the schema of its ATen op by argument name.

What a recorded call does not hold (tensor data, strides, devices) is not offered: asking for
it raises, and the op is then reported as unsupported, never counted as 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from torchtally.records import FunctionCall, OpCall, TensorMeta

# torch dtype -> the JIT's scalar type name (``type().scalarType()``)
_SCALAR_TYPES = {
    torch.float32: "Float",
    torch.float64: "Double",
    torch.float16: "Half",
    torch.bfloat16: "BFloat16",
    torch.int64: "Long",
    torch.int32: "Int",
    torch.int16: "Short",
    torch.int8: "Char",
    torch.uint8: "Byte",
    torch.bool: "Bool",
    torch.complex64: "ComplexFloat",
    torch.complex128: "ComplexDouble",
}
_CONSTANT_TYPES = {
    bool: "BoolType",
    int: "IntType",
    float: "FloatType",
    str: "StringType",
    type(None): "NoneType",
    torch.dtype: "ScalarTypeType",
    torch.device: "DeviceObjType",
}


_NOT_RECORDED = (
    "torchtally's trace keeps a tensor's shape and dtype, not its {what}: count from "
    "type().sizes() and type().scalarType()"
)


class JitType:
    """The type of a `JitValue`: a tensor's sizes and scalar type, or a constant's kind."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def kind(self) -> str:
        value = self._value
        if isinstance(value, TensorMeta):
            return "TensorType"
        if isinstance(value, list):
            return "ListType"
        if isinstance(value, tuple):
            return "TupleType"
        return _CONSTANT_TYPES.get(type(value), "AnyType")

    def sizes(self) -> list[int]:
        return list(self._tensor("sizes").shape)

    def varyingSizes(self) -> list[int]:
        return self.sizes()

    def dim(self) -> int:
        return self._tensor("dim").ndim

    def scalarType(self) -> str:
        dtype = self._tensor("scalarType").dtype
        return _SCALAR_TYPES.get(dtype, str(dtype).removeprefix("torch."))

    def dtype(self) -> torch.dtype:
        return self._tensor("dtype").dtype

    def numel(self) -> int:
        return math.prod(self._tensor("numel").shape)

    def strides(self) -> list[int]:
        raise RuntimeError(_NOT_RECORDED.format(what="strides"))

    def device(self) -> Any:
        raise RuntimeError(_NOT_RECORDED.format(what="devices"))

    def getElementType(self) -> JitType:
        value = self._value
        if not isinstance(value, list):
            raise RuntimeError(f"getElementType() is for lists; this value is a {self.kind()}")
        return JitType(value[0] if value else None)

    def _tensor(self, method: str) -> TensorMeta:
        if not isinstance(self._value, TensorMeta):
            raise RuntimeError(
                f"type().{method}() is for tensors; this value is a {self.kind()} "
                f"({self._value!r}): use toIValue() for constants"
            )
        return self._value

    def __str__(self) -> str:
        value = self._value
        if isinstance(value, TensorMeta):
            return f"{self.scalarType()}({', '.join(map(str, value.shape))})"
        return self.kind().removesuffix("Type")

    __repr__ = __str__


class JitNode:
    """The node a value comes from: the op itself for its outputs, ``prim::Constant`` for a
    constant argument, ``prim::ListConstruct`` / ``prim::TupleConstruct`` for a list of values,
    ``prim::Param`` for a tensor argument (its producer is not recorded)."""

    def __init__(
        self,
        kind: str,
        inputs: Sequence[JitValue] = (),
        outputs: Sequence[JitValue] = (),
        scope: Sequence[str] = (),
    ) -> None:
        self._kind = kind
        self._inputs = list(inputs)
        self._outputs = list(outputs)
        self._scope = tuple(scope)

    def kind(self) -> str:
        return self._kind

    def inputs(self) -> list[JitValue]:
        return list(self._inputs)

    def outputs(self) -> list[JitValue]:
        return list(self._outputs)

    def output(self) -> JitValue:
        if len(self._outputs) != 1:
            raise RuntimeError(f"{self._kind} has {len(self._outputs)} outputs, not one")
        return self._outputs[0]

    def scopeName(self) -> str:
        """The module scopes the op ran in, separated by ``/`` as in a JIT trace."""
        return "/".join(self._scope[1:]) if self._scope[:1] == ("",) else "/".join(self._scope)

    def pyname(self) -> str:
        """The autograd Function's class name, for a ``prim::PythonOp``."""
        if not self._kind.startswith("prim::PythonOp"):
            raise RuntimeError(f"pyname() is for prim::PythonOp nodes, not {self._kind}")
        return self._kind.partition(".")[2]

    def __repr__(self) -> str:
        return f"JitNode({self._kind})"


class JitValue:
    """One input or output of a recorded call, as a ``torch._C.Value`` presents it."""

    def __init__(self, value: Any, name: str, node: JitNode | None = None) -> None:
        self._value = value
        self._name = name
        self._node = node

    def type(self) -> JitType:
        return JitType(self._value)

    def isCompleteTensor(self) -> bool:
        return isinstance(self._value, TensorMeta)

    def toIValue(self) -> Any:
        """The value of a constant (int, float, bool, str, None, a list of them); None for a
        tensor or a list holding tensors, as for a JIT value computed at run time."""
        return None if _holds_tensor(self._value) else _plain(self._value)

    def node(self) -> JitNode:
        if self._node is None:
            self._node = _source_node(self)
        return self._node

    def debugName(self) -> str:
        return self._name

    def unique(self) -> int:
        return int(self._name) if self._name.isdigit() else hash(self._name)

    def requires_grad(self) -> bool:
        return False  # counting runs without autograd

    def __repr__(self) -> str:
        return f"{self._name} : {self.type()}"


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, TensorMeta):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(v) for v in value)
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]  # a JIT int[] constant is a list
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _source_node(value: JitValue) -> JitNode:
    raw = value._value
    if isinstance(raw, (list, tuple)) and _holds_tensor(raw):
        kind = "prim::ListConstruct" if isinstance(raw, list) else "prim::TupleConstruct"
        items = [JitValue(v, f"{value.debugName()}.{i}") for i, v in enumerate(raw)]
        return JitNode(kind, items, [value])
    kind = "prim::Param" if isinstance(raw, TensorMeta) else "prim::Constant"
    return JitNode(kind, [], [value])


def make_values(
    kind: str, arguments: Sequence[Any], outputs: Sequence[Any], scope: Sequence[str] = ()
) -> tuple[list[JitValue], list[JitValue]]:
    """The ``(inputs, outputs)`` a handle for op `kind` gets: values for `arguments` (in JIT
    schema order) and `outputs`, the outputs produced by a node of that kind."""
    inputs = [JitValue(v, str(i)) for i, v in enumerate(arguments)]
    results = [JitValue(v, str(len(inputs) + i)) for i, v in enumerate(outputs)]
    node = JitNode(kind, inputs, results, scope)
    for result in results:
        result._node = node
    return inputs, results


# --- arguments in JIT schema order ------------------------------------------------------------

# The dispatcher op a JIT op name stands for, when they differ (a JIT trace records a
# convolution as aten::_convolution; the dispatcher runs aten::convolution).
JIT_TO_DISPATCHER = {"aten::_convolution": "aten::convolution"}
DISPATCHER_TO_JIT = {v: k for k, v in JIT_TO_DISPATCHER.items()}

# aten::_convolution's arguments after aten::convolution's nine: cuDNN settings.
_CONVOLUTION_TAIL = {
    "benchmark": False,
    "deterministic": False,
    "cudnn_enabled": True,
    "allow_tf32": True,
}


@dataclass(frozen=True)
class UnitCall(OpCall):
    """A watched function call (``linear``, ``F.batch_norm``, a custom autograd Function)
    counted as one op, as a JIT trace records it: `op` is the JIT op name (``aten::linear``,
    ``prim::PythonOp.MyFunction``), `arguments` follow its JIT schema, `unit` is the
    `FunctionCall`'s id. The ops the call issued stay in the trace after it."""

    unit: int = -1


def unit_call(call: FunctionCall, kind: str) -> UnitCall:
    """The `UnitCall` of op `kind` for a watched function call."""
    return UnitCall(
        op=kind,
        overload="",
        arguments=function_arguments(call, kind),
        outputs=call.outputs,
        function=call.name,
        scope=call.scope,
        calls=call.calls,
        unit=call.id,
    )


def op_arguments(call: OpCall) -> dict[str, Any]:
    """A recorded op's arguments in the order of its JIT schema."""
    if call.op == "aten::convolution":
        return {**call.arguments, **_CONVOLUTION_TAIL}
    return dict(call.arguments)


# Other names an argument goes by between a Python function and its ATen schema.
_ALIASES = {
    "self": ("input",),
    "input": ("self",),
    "train": ("training",),
    "interpolation_mode": ("mode",),
}
# Arguments of ATen schemas that no Python function passes, and have no default there.
_FILLED = {"cudnn_enabled": True, "cudnn_enable": True}
_GRID_MODES = {"bilinear": 0, "nearest": 1, "bicubic": 2}
_PADDING_MODES = {"zeros": 0, "border": 1, "reflection": 2}


def function_arguments(call: FunctionCall, kind: str) -> dict[str, Any]:
    """A watched function call's arguments in the order of the JIT schema of `kind`
    (``aten::batch_norm`` for ``F.batch_norm``); a custom autograd Function's as it was called."""
    if kind == "aten::einsum":
        return _einsum_arguments(call)
    schema = None if kind.startswith("prim::") else _schema(kind)
    if schema is None:
        return {**{str(i): v for i, v in enumerate(call.args)}, **call.kwargs}
    given: dict[str, Any] = dict(zip((a.name for a in schema.arguments), call.args, strict=False))
    given.update(call.kwargs)
    values: dict[str, Any] = {}
    for argument in schema.arguments:
        names = (argument.name, *_ALIASES.get(argument.name, ()))
        found = next((name for name in names if name in given), None)
        if found is not None:
            values[argument.name] = given[found]
        elif argument.has_default_value():
            values[argument.name] = argument.default_value
        else:
            values[argument.name] = _FILLED.get(argument.name)
    if kind == "aten::grid_sampler":
        mode, padding = values["interpolation_mode"], values["padding_mode"]
        values["interpolation_mode"] = _GRID_MODES.get(mode, mode)
        values["padding_mode"] = _PADDING_MODES.get(padding, padding)
        values["align_corners"] = bool(values["align_corners"])
    return values


def _einsum_arguments(call: FunctionCall) -> dict[str, Any]:
    """``torch.einsum(equation, *operands)`` as ``aten::einsum(equation, tensors, path)``."""
    given = list(call.kwargs.get("args", call.args))
    equation, operands = (given[0], given[1:]) if given else ("", [])
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    return {"equation": equation, "tensors": list(operands), "path": None}


def _schema(kind: str) -> Any:
    """The JIT schema of op `kind`: its default overload, else the first functional one."""
    try:
        schemas = torch._C._jit_get_schemas_for_operator(kind)
    except RuntimeError:
        return None
    functional = [s for s in schemas if not any(a.is_out for a in s.arguments)]
    for schema in functional:
        if schema.overload_name == "":
            return schema
    return functional[0] if functional else None


def jit_name(op: str) -> str:
    """The name a JIT trace gives dispatcher op `op` (``aten::convolution`` -> ``_convolution``)."""
    return DISPATCHER_TO_JIT.get(op, op)


def call_values(call: OpCall) -> tuple[list[JitValue], list[JitValue]]:
    """``(inputs, outputs)`` for a handle, from a recorded op or a `UnitCall`."""
    arguments = call.arguments if isinstance(call, UnitCall) else op_arguments(call)
    return make_values(jit_name(call.op), list(arguments.values()), call.outputs, call.scope)

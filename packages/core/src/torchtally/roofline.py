"""Time per op and per module: estimated on a device by the roofline, or measured.

The roofline gives each recorded op ``max(2 * MACs / peak FLOP/s, bytes / bandwidth)`` on a
`Hardware`: compute-bound when the first is larger, memory-bound otherwise. It is a pass over the
trace's records with the analysis' own handlers; the model does not run again. Conventions
(which peak an op gets, ops without a flop handler, missing dtypes) are in docs/conventions.md,
"Roofline".
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from torchtally.counting import HandlerWarning, module_ancestors, operator_name, per_op
from torchtally.devices import Hardware, dtype_key
from torchtally.records import Measurement, OpCall, iter_tensor_metas

if TYPE_CHECKING:
    from torchtally.analysis import Analysis

COMPUTE = "compute"
MEMORY = "memory"

# Ops that run on matrix units (Tensor Cores, Matrix Cores, AMX) when the device has them, by the
# name after the namespace; any op whose name contains one of MATRIX_PARTS does too (convolutions,
# attention kernels, grouped and scaled matmuls, quantized linear layers, recurrent layers).
MATRIX_NAMES = frozenset(
    {"mm", "bmm", "addmm", "baddbmm", "addbmm", "_addmm_activation", "matmul", "einsum", "linear"}
)
MATRIX_PARTS = ("conv", "attention", "_mm", "linear", "rnn", "lstm", "gru")


def is_matrix_op(op: str) -> bool:
    """Whether `op` (``aten::mm``) runs on matrix units: matmuls, convolutions, attention."""
    name = op.rpartition("::")[2]
    return name in MATRIX_NAMES or any(part in name for part in MATRIX_PARTS)


def op_dtype(call: OpCall, matrix: bool) -> str:
    """The dtype an op computes in, as device tables name it: its first floating-point tensor
    argument's (else its first output's); a matmul of 8-bit integers ``int8``; any other
    integer or boolean work ``float32`` (it runs on the same units)."""
    tensors = [*iter_tensor_metas(tuple(call.arguments.values())), *iter_tensor_metas(call.outputs)]
    for meta in tensors:
        if meta.dtype.is_floating_point or meta.dtype.is_complex:
            return dtype_key(meta.dtype)
    if matrix and any(meta.dtype in (torch.int8, torch.uint8) for meta in tensors):
        return "int8"
    return "float32"


@dataclass(frozen=True)
class OpTime:
    """One op's time: estimated (with both roofline terms and the bound) or measured."""

    index: int  # position in the trace
    op: str
    operator: str  # the by_operator name
    scope: tuple[str, ...]
    phase: str
    seconds: float
    macs: float = 0
    bytes: float = 0
    dtype: str = ""
    matrix: bool = False
    compute_seconds: float = 0.0
    memory_seconds: float = 0.0

    @property
    def bound(self) -> str | None:
        """``"compute"`` or ``"memory"``: the larger roofline term (None for an op that does
        and moves nothing)."""
        if not self.compute_seconds and not self.memory_seconds:
            return None
        return COMPUTE if self.compute_seconds >= self.memory_seconds else MEMORY


class Times:
    """Seconds per op, summed per module (as counts are: owner or caller mode) and operator."""

    def __init__(self, ops: Sequence[OpTime], modules: Iterable[str], ancestor_mode: str) -> None:
        self.ops = tuple(ops)
        self._modules = tuple(modules)
        self._mode = ancestor_mode
        self._owners: dict[tuple[str, ...], tuple[str, ...]] = {}

    def _owners_of(self, scope: tuple[str, ...]) -> tuple[str, ...]:
        owners = self._owners.get(scope)
        if owners is None:
            if self._mode == "caller":
                owners = tuple(dict.fromkeys(("", *scope)))
            else:
                owners = module_ancestors(scope[-1] if scope else "")
            self._owners[scope] = owners
        return owners

    def _selected(self, phase: str | None) -> list[OpTime]:
        return [t for t in self.ops if phase is None or t.phase == phase]

    def total(self, module: str = "", phase: str | None = None) -> float:
        """Seconds of `module` (the whole model by default)."""
        return sum(t.seconds for t in self._selected(phase) if module in self._owners_of(t.scope))

    def by_module(self, phase: str | None = None) -> dict[str, float]:
        """Seconds per module, in module order."""
        result = dict.fromkeys(self._modules, 0.0)
        for t in self._selected(phase):
            for owner in self._owners_of(t.scope):
                result[owner] = result.get(owner, 0.0) + t.seconds
        return result

    def by_operator(self, module: str = "", phase: str | None = None) -> dict[str, float]:
        """Seconds of `module` per operator name, largest first."""
        result: dict[str, float] = {}
        for t in self._selected(phase):
            if module in self._owners_of(t.scope) and t.seconds:
                result[t.operator] = result.get(t.operator, 0.0) + t.seconds
        return dict(sorted(result.items(), key=lambda item: -item[1]))

    def by_module_and_operator(self, phase: str | None = None) -> dict[str, dict[str, float]]:
        result: dict[str, dict[str, float]] = {name: {} for name in self._modules}
        for t in self._selected(phase):
            if t.seconds:
                for owner in self._owners_of(t.scope):
                    ops = result.setdefault(owner, {})
                    ops[t.operator] = ops.get(t.operator, 0.0) + t.seconds
        return result

    def top_ops(self, k: int = 10, phase: str | None = None) -> list[OpTime]:
        """The `k` slowest ops."""
        return sorted(self._selected(phase), key=lambda t: -t.seconds)[:k]


class Roofline(Times):
    """Estimated seconds of every op of an analysis on `hardware` (see the module docstring).

    Queries as for counts: `total`, `by_module`, `by_operator`, `by_module_and_operator`, each
    with ``phase=``; `bound_by_module` and `bound_share` say which ops are compute-bound.
    `notes` lists the stand-ins the estimate used (a dtype the device has no figure for).
    """

    def __init__(
        self,
        hardware: Hardware,
        ops: Sequence[OpTime],
        modules: Iterable[str],
        ancestor_mode: str,
        notes: Iterable[str] = (),
        tf32: bool = False,
    ) -> None:
        super().__init__(ops, modules, ancestor_mode)
        self.hardware = hardware
        self.notes = tuple(notes)
        self.tf32 = tf32

    def bound_share(self, module: str = "", phase: str | None = None) -> dict[str, float]:
        """The fraction of `module`'s estimated time in compute-bound and in memory-bound ops."""
        times = {COMPUTE: 0.0, MEMORY: 0.0}
        for t in self._selected(phase):
            if t.bound is not None and module in self._owners_of(t.scope):
                times[t.bound] += t.seconds
        total = sum(times.values())
        return {bound: (value / total if total else 0.0) for bound, value in times.items()}

    def bound_by_module(self, phase: str | None = None) -> dict[str, str | None]:
        """Per module, the bound of the ops that take most of its time (None: no time)."""
        times: dict[str, dict[str, float]] = {}
        for t in self._selected(phase):
            if t.bound is None:
                continue
            for owner in self._owners_of(t.scope):
                shares = times.setdefault(owner, {COMPUTE: 0.0, MEMORY: 0.0})
                shares[t.bound] += t.seconds
        result: dict[str, str | None] = dict.fromkeys(self._modules)
        for name, shares in times.items():
            result[name] = COMPUTE if shares[COMPUTE] >= shares[MEMORY] else MEMORY
        return result

    def calibrate(self, measured: Times) -> Hardware:
        """The device with effective figures fitted to one measured run (`Analysis.measured`
        of the same model and inputs on it): its FLOP/s scaled by the time the compute-bound
        ops were estimated at over the time they took, its bandwidth likewise with the
        memory-bound ops (`Hardware.calibrated` efficiency factors). Estimates made with the
        result match that run in total per bound."""
        if len(measured.ops) != len([t for t in self.ops if t.phase == "forward"]):
            raise ValueError(
                "the measured run has a different number of forward ops than this roofline; "
                "calibrate with a measurement of the same model and inputs"
            )
        estimated = {COMPUTE: 0.0, MEMORY: 0.0}
        taken = {COMPUTE: 0.0, MEMORY: 0.0}
        for estimate, measurement in zip(self.ops, measured.ops, strict=False):
            if estimate.bound is not None and measurement.seconds > 0:
                estimated[estimate.bound] += estimate.seconds
                taken[estimate.bound] += measurement.seconds
        factor = {
            bound: (estimated[bound] / taken[bound] if taken[bound] else 1.0)
            for bound in (COMPUTE, MEMORY)
        }
        return self.hardware.calibrated(compute=factor[COMPUTE], memory=factor[MEMORY])

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready data: totals per phase, per module (seconds and bound),
        per operator, and the hardware."""
        phases = sorted({t.phase for t in self.ops}, key=lambda p: p != "forward")
        return {
            "hardware": self.hardware.to_dict(),
            "tf32": self.tf32,
            "total_seconds": self.total(),
            "phases": {phase: self.total(phase=phase) for phase in phases},
            "bound_share": self.bound_share(),
            "by_module": {
                name: {"seconds": seconds, "bound": bound}
                for (name, seconds), bound in zip(
                    self.by_module().items(), self.bound_by_module().values(), strict=True
                )
            },
            "by_operator": self.by_operator(),
            "notes": list(self.notes),
        }


class Measured(Times):
    """Measured seconds of the forward pass (``analyze(..., measure=True)``): every op's alone
    (`ops`, `by_operator`, `by_module_and_operator`, `ops_total`), every module's calls whole
    (`by_module`, `total`: its ops and the Python code between them, so the top-level modules
    add up to the forward pass), the time of a plain forward pass (`forward_seconds`), the
    FLOP/s achieved (`achieved_flops`) and the fraction of a device's peak (`mfu`)."""

    def __init__(
        self,
        ops: Sequence[OpTime],
        modules: Iterable[str],
        ancestor_mode: str,
        measurement: Measurement,
    ) -> None:
        super().__init__(ops, modules, ancestor_mode)
        self.measurement = measurement
        self.forward_seconds = measurement.forward_seconds
        self.device = measurement.device

    def total(self, module: str = "", phase: str | None = None) -> float:
        """Seconds of `module`'s calls, whole (the whole model by default); `phase` is
        "forward" or None: only the forward pass is timed."""
        return self.by_module(phase).get(module, 0.0)

    def by_module(self, phase: str | None = None) -> dict[str, float]:
        """Seconds of every module's calls, whole, in module order. A module that is never
        called (a `ModuleList`) has those of its outermost descendants that are."""
        called = self.measurement.module_seconds if phase in (None, "forward") else {}
        result = {name: called.get(name, 0.0) for name in self._modules}
        for name, seconds in called.items():
            for ancestor in reversed(module_ancestors(name)[:-1]):
                if ancestor in called:
                    break
                result[ancestor] = result.get(ancestor, 0.0) + seconds
        return result

    def ops_total(self, module: str = "") -> float:
        """Seconds of `module`'s ops alone: `total` less the code between them."""
        return super().total(module)

    def macs(self, module: str = "") -> float:
        """Multiply-adds of `module`'s forward ops (the ``flops`` metric)."""
        return sum(t.macs for t in self.ops if module in self._owners_of(t.scope))

    def achieved_flops(self, module: str = "") -> float:
        """FLOP/s `module` reached, two per multiply-add as vendors count: ``2 * MACs /
        measured seconds`` (0 when it took no time)."""
        seconds = self.total(module)
        return 2 * self.macs(module) / seconds if seconds else 0.0

    def mfu(self, hardware: Hardware, module: str = "") -> float:
        """`achieved_flops` over the device's matrix-unit peak for the dtype that carries most of
        `module`'s multiply-adds (model FLOP/s utilisation)."""
        by_dtype: dict[str, float] = {}
        for t in self.ops:
            if t.macs and module in self._owners_of(t.scope):
                by_dtype[t.dtype] = by_dtype.get(t.dtype, 0.0) + t.macs
        if not by_dtype:
            return 0.0
        dtype = max(by_dtype, key=lambda key: by_dtype[key])
        return self.achieved_flops(module) / hardware.rate(dtype, matrix=True).flops

    def to_dict(self) -> dict[str, Any]:
        """The measurement as JSON-ready data: per module seconds and achieved FLOP/s."""
        return {
            "device": self.device,
            "timer": self.measurement.timer,
            "repeats": self.measurement.repeats,
            "warmup": self.measurement.warmup,
            "forward_seconds": self.forward_seconds,
            "total_seconds": self.total(),
            "ops_seconds": self.ops_total(),
            "by_module": {
                name: {"seconds": seconds, "achieved_flops": self.achieved_flops(name)}
                for name, seconds in self.by_module().items()
            },
            "by_operator": self.by_operator(),
        }


def _per_op_counts(
    analysis: Analysis,
) -> tuple[list[dict[str, Any] | None], list[dict[str, Any] | None]]:
    """Each op's flops and bytes with the analysis' handlers (failures were reported when the
    analysis counted, so they are not again)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HandlerWarning)
        flops = per_op(analysis.trace, analysis.registry, analysis.options, "flops")
        moved = per_op(analysis.trace, analysis.registry, analysis.options, "bytes")
    return flops, moved


def measured(analysis: Analysis) -> Measured:
    """The measured times of `analysis` (see `Analysis.measured`)."""
    measurement = analysis.trace.measurement
    if measurement is None:
        raise ValueError(
            "this analysis was not timed: analyse with measure=True (the model runs for real, "
            "mode='real' or 'auto'), or --measure on the command line"
        )
    flops, moved = _per_op_counts(analysis)
    names = analysis.registry.operator_names
    forward = [(i, call) for i, call in enumerate(analysis.trace.ops) if call.phase == "forward"]
    ops = []
    for (index, call), seconds in zip(forward, measurement.op_seconds, strict=True):
        matrix = is_matrix_op(call.op)
        ops.append(
            OpTime(
                index=index,
                op=call.op,
                operator=_operator(call, flops[index], moved[index], names),
                scope=call.scope,
                phase=call.phase,
                seconds=seconds,
                macs=sum((flops[index] or {}).values()),
                bytes=sum((moved[index] or {}).values()),
                dtype=op_dtype(call, matrix),
                matrix=matrix,
            )
        )
    return Measured(ops, analysis.modules, analysis.ancestor_mode, measurement)


def roofline(analysis: Analysis, hardware: Hardware, tf32: bool = False) -> Roofline:
    """Estimate every op of `analysis` on `hardware`; see `Analysis.roofline`."""
    flops, moved = _per_op_counts(analysis)
    names = analysis.registry.operator_names
    notes: dict[str, None] = {}
    ops = []
    for index, call in enumerate(analysis.trace.ops):
        macs = sum((flops[index] or {}).values())
        traffic = sum((moved[index] or {}).values())
        matrix = is_matrix_op(call.op)
        dtype = op_dtype(call, matrix)
        if matrix and tf32 and dtype == "float32":
            dtype = "tf32"
        compute = memory = 0.0
        if macs:
            rate = hardware.rate(dtype, matrix)
            if rate.note:
                notes[rate.note] = None
            compute = 2 * macs / rate.flops
        if traffic:
            memory = traffic / hardware.bandwidth
        ops.append(
            OpTime(
                index=index,
                op=call.op,
                operator=_operator(call, flops[index], moved[index], names),
                scope=call.scope,
                phase=call.phase,
                seconds=max(compute, memory),
                macs=macs,
                bytes=traffic,
                dtype=dtype,
                matrix=matrix,
                compute_seconds=compute,
                memory_seconds=memory,
            )
        )
    return Roofline(hardware, ops, analysis.modules, analysis.ancestor_mode, notes, tf32)


def _operator(
    call: OpCall,
    flops: Mapping[str, Any] | None,
    moved: Mapping[str, Any] | None,
    names: Mapping[str, Any],
) -> str:
    """One operator name per op: the flop handler's (``conv``), else the bytes handler's."""
    for named in (flops, moved):
        if named and len(named) == 1:
            return next(iter(named))
    return operator_name(call, names)

"""Memory footprint: parameters, buffers and inputs by dtype, and the peak of the tensor storage
the run itself allocated, from the storage lifetimes a trace records.

While the model runs, every storage an op creates (a new result, not a view or an in-place
write) is noted with its size and the op that made it, and a weak reference to it says when it is
freed: after which op the last tensor using it went away. Saved tensors live until the backward
pass frees them, so a trace with a backward pass accounts for them; gradients of the parameters
live to the end. The peak is then a sweep over the ops, with no rerun.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sized
from typing import Any

import torch
from torch.nn.parameter import is_lazy

from torchtally.records import StorageLife, TensorMeta, Trace, iter_tensor_metas


class StorageTracker:
    """Notes the storages ops create and when they are freed, while a model runs.

    `ops` is the list the recorder appends each op to: its length says where the run is.
    Storages of `existing` tensors (the inputs) are not the run's own and are never counted;
    parameters and buffers are never an op's new result (an op that returns one declares it as
    an alias in its schema), so they need no check.
    """

    def __init__(self, ops: Sized, existing: Iterable[Any] = ()) -> None:
        self._ops = ops
        self._known = {_key(t) for t in existing if _countable(t)}
        self._live: dict[int, list[Any]] = {}  # storage key -> its life, while alive
        self._refs: dict[int, tuple[weakref.ref[Any], list[Any]]] = {}  # id(reference) -> both
        self._lives: list[list[Any]] = []  # [nbytes, created, freed, key]
        self._closed = False

    def track(self, value: Any) -> None:
        """Note the new storages of an op's result (a tensor, or a tuple or list of them)."""
        if type(value) in (tuple, list):
            for item in value:
                if isinstance(item, torch.Tensor):
                    self._one(item)
        elif isinstance(value, torch.Tensor):
            self._one(value)

    def _one(self, tensor: torch.Tensor) -> None:
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # a sparse or nested tensor: not tracked
            return
        key = storage._cdata
        if key in self._live or key in self._known:
            return
        life = [storage.nbytes(), len(self._ops), None, key]
        self._lives.append(life)
        self._live[key] = life
        ref = weakref.ref(storage, self._freed)
        self._refs[id(ref)] = (ref, life)

    def _freed(self, ref: weakref.ref[Any]) -> None:
        if not self._closed:
            _, life = self._refs.pop(id(ref))
            del self._live[life[3]]
            life[2] = len(self._ops)

    def close(self) -> tuple[StorageLife, ...]:
        """Stop tracking; what was noted."""
        self._closed = True
        self._live.clear()
        self._refs.clear()
        return tuple(
            StorageLife(nbytes, created, freed) for nbytes, created, freed, _ in self._lives
        )


def _countable(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and not is_lazy(value) and value.layout == torch.strided


def _key(tensor: torch.Tensor) -> int:
    return int(tensor.untyped_storage()._cdata)


def live_bytes(trace: Trace) -> list[int]:
    """Bytes of the run's own storage alive while each op runs (its results included)."""
    count = len(trace.ops)
    allocated = [0] * (count + 1)
    freed = [0] * (count + 2)
    for life in trace.storages:
        allocated[life.created] += life.nbytes
        if life.freed is not None:  # a result dropped at once is alive during its op only
            freed[max(life.freed, life.created + 1)] += life.nbytes
    live, result = 0, []
    for position in range(count + 1):
        live += allocated[position] - freed[position]
        result.append(live)
    return result


def by_dtype(tensors: Iterable[TensorMeta]) -> dict[str, int]:
    """Bytes per dtype name (``float32``), largest first."""
    totals: dict[str, int] = {}
    for meta in tensors:
        name = str(meta.dtype).removeprefix("torch.")
        totals[name] = totals.get(name, 0) + meta.numel * meta.dtype.itemsize
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def memory_summary(trace: Trace) -> dict[str, Any]:
    """The footprint of a traced run; see `Analysis.memory`."""
    params = [
        TensorMeta(shape, trace.param_dtypes.get(name, torch.float32))
        for name, shape in trace.param_shapes.items()
    ]
    sizes = {
        name: TensorMeta(shape, torch.float32).numel for name, shape in trace.param_shapes.items()
    }
    frozen = sum(sizes[name] for name in trace.frozen_params if name in sizes)
    live = live_bytes(trace)
    ops = trace.ops
    peaks: dict[str, int] = {}
    modules: dict[str, int] = {}
    for position, call in enumerate(ops):
        value = live[position]
        if value > peaks.get(call.phase, -1):
            peaks[call.phase] = value
        inner = call.scope[-1] if call.scope else ""
        if call.phase == "forward" and inner:
            top = inner.split(".", 1)[0]
            if value > modules.get(top, -1):
                modules[top] = value
    params_bytes = by_dtype(params)
    buffers_bytes = by_dtype(trace.buffers.values())
    inputs = sum(meta.nbytes for meta in iter_tensor_metas(trace.input_shapes))
    peak = max(live, default=0)
    return {
        "params_bytes": params_bytes,
        "buffers_bytes": buffers_bytes,
        "trainable_params": sum(sizes.values()) - frozen,
        "frozen_params": frozen,
        "input_bytes": inputs,
        "peak_activation_bytes": peak,
        "peak_activation_bytes_by_phase": peaks,
        "peak_activation_bytes_by_module": modules,
        "peak_bytes": sum(params_bytes.values()) + sum(buffers_bytes.values()) + inputs + peak,
    }

"""Measured time: the model's forward pass timed per op on its own device (``measure=True``).

After warm-up, with cyclic garbage collection paused, the model runs `repeats` times plainly (the
forward pass's time) and `repeats` times under a dispatch mode that times each op alone:
``time.perf_counter`` around the op on a CPU, a pair of CUDA events around it on a GPU (read
after the pass synchronises). The op times kept are those of the median timed pass (by total),
so that they add up to a real pass: medians taken op by op would drop every op's outliers and
add up to less than any pass took. With ``statistic="min"`` the fastest pass of each kind is
kept instead, steadier on a busy machine. A third set of `repeats` passes times every module
call whole, from a global forward pre-hook to a forward hook (so the model's own hooks are not
touched): a module's time is what its calls took, its ops and the Python code between them; the
op times leave that code out, and the timer's own work. The ops are the ones the trace recorded,
in the same order: the times line up with the trace's records, so operators add them up as they
add counts. Every pass runs under a torch-function mode that does nothing, as the traced one did,
so that code taking another path under such a mode (`nn.MultiheadAttention`'s fused inference
path) runs what was traced.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from torchtally.records import Measurement, Trace, iter_tensors
from torchtally.state import preserve_model_state
from torchtally.tracer import _Schema, gc_paused

STATISTICS: dict[str, Callable[[list[float]], float]] = {"median": statistics.median, "min": min}


class _SamePath(TorchFunctionMode):
    """A torch-function mode that does nothing, as the tracer has one: code that takes another
    path when such a mode is on (`nn.MultiheadAttention`'s fused inference path) runs the ops the
    trace recorded."""

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        return func(*args, **(kwargs or {}))


class _OpTimer(TorchDispatchMode):
    """Times every op (the ops the tracer records: not ``prim::``), saving what an op is about
    to write that the model owns, as the tracer does."""

    supports_higher_order_operators = True

    def __init__(self, guard: Any, cuda: bool, sync: Callable[[], None]) -> None:
        super().__init__()
        self.guard = guard
        self.cuda = cuda
        self.sync = sync
        self.names: list[str] = []
        self.marks: list[Any] = []
        self._schemas: dict[Any, _Schema] = {}

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func.namespace == "prim":
            return func(*args, **kwargs)
        schema = self._schemas.get(func)
        if schema is None:
            schema = self._schemas[func] = _Schema(func)
        if schema.writes or schema.stats:
            for value in schema.written(args, kwargs):
                self.guard.before_write(value)
        self.names.append(schema.op)
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = func(*args, **kwargs)
            end.record()
            self.marks.append((start, end))
            return out
        started = time.perf_counter()
        out = func(*args, **kwargs)
        self.sync()
        self.marks.append(time.perf_counter() - started)
        return out

    def seconds(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [start.elapsed_time(end) / 1e3 for start, end in self.marks]
        return list(self.marks)


def model_device(model: nn.Module, inputs: Any) -> torch.device:
    """Where the model runs: its first parameter's device, else its first input's, else CPU."""
    for tensor in (*model.parameters(), *model.buffers(), *iter_tensors(inputs)):
        return tensor.device
    return torch.device("cpu")


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def measure_forward(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    trace: Trace,
    repeats: int = 5,
    warmup: int = 2,
    statistic: str = "median",
) -> Measurement:
    """Time `model`'s forward pass per op and whole (see the module docstring); `trace` is the
    real-mode trace of the same call, whose forward ops the times must match. The model is left
    as it was, and the inputs (its buffers are saved first; what an op writes is saved before
    it does, in a first pass under the op timer)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"measure needs repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    if statistic not in STATISTICS:
        raise ValueError(
            f"the measure statistic is 'median' or 'min' (steadier on a busy machine), "
            f"got {statistic!r}"
        )
    expected = [call.op for call in trace.ops if call.phase == "forward"]
    device = model_device(model, (args, kwargs))
    cuda = device.type == "cuda"
    sync = _synchronizer(device)
    plain: list[float] = []
    per_op: list[list[float]] = []
    per_module: list[tuple[float, dict[str, float]]] = []  # per pass: its time, its modules'
    clock = _ModuleClock(model, cuda)
    gc.collect()  # then none during the passes: a collection would land in one pass's time
    with (
        preserve_model_state(model, (args, dict(kwargs))) as guard,
        torch.no_grad(),
        gc_paused(),
        _SamePath(),
    ):
        for buffer in model.buffers():
            guard.before_write(buffer)  # a plain pass may update running statistics
        # the first pass saves what the forward writes (weights, inputs) before it writes it;
        # every pass runs the same ops, so the passes after write nothing else
        _timed_ops(model, args, kwargs, guard, cuda, sync)
        for _ in range(warmup):
            model(*args, **kwargs)
            _timed_ops(model, args, kwargs, guard, cuda, sync)
        sync()
        for _ in range(repeats):
            plain.append(_timed_call(model, args, kwargs, cuda, sync))
            names, seconds = _timed_ops(model, args, kwargs, guard, cuda, sync)
            if names != expected:
                raise ValueError(
                    f"the model ran {len(names)} ops when timed but {len(expected)} when traced"
                    f"{_first_difference(names, expected)}: measure=True needs a forward pass "
                    "that runs the same ops every time"
                )
            per_op.append(seconds)
            per_module.append(clock.timed_call(args, kwargs))
    chosen = _pick(per_op, sum, statistic)
    modules = _pick(per_module, lambda timed: timed[0], statistic)[1]
    return Measurement(
        op_seconds=tuple(chosen),
        module_seconds=modules,
        forward_seconds=STATISTICS[statistic](plain),
        repeats=repeats,
        warmup=warmup,
        device=str(device),
        timer="CUDA events" if cuda else "time.perf_counter",
        statistic=statistic,
        plain_passes=tuple(plain),
        timed_passes=tuple(sum(seconds) for seconds in per_op),
    )


def _pick(passes: list[Any], key: Callable[[Any], float], statistic: str) -> Any:
    """The median pass by `key` (the lower of the two middle ones), or the fastest."""
    ranked = sorted(passes, key=key)
    return ranked[(len(ranked) - 1) // 2] if statistic == "median" else ranked[0]


class _ModuleClock:
    """Times every call of the model's modules, whole, with global module hooks (the model's
    own hook dictionaries stay as they are): a module's seconds add up over its calls, a call
    inside a call of the same module (recursion) counted once."""

    def __init__(self, model: nn.Module, cuda: bool) -> None:
        self.model = model
        self.cuda = cuda
        self.names = {id(module): name for name, module in model.named_modules()}
        # id(module) -> (how many of its calls are open, when the outermost one started)
        self._open: dict[int, tuple[int, Any]] = {}
        self._spans: list[tuple[str, Any, Any]] = []

    def _now(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _before(self, module: nn.Module, args: Any) -> None:
        key = id(module)
        if key in self.names:
            depth, start = self._open.get(key) or (0, None)
            self._open[key] = (depth + 1, start if depth else self._now())

    def _after(self, module: nn.Module, args: Any, output: Any) -> None:
        key = id(module)
        opened = self._open.get(key)
        if opened is None:
            return
        depth, start = opened
        if depth > 1:
            self._open[key] = (depth - 1, start)
        else:
            del self._open[key]
            self._spans.append((self.names[key], start, self._now()))

    def timed_call(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[float, dict[str, float]]:
        """One pass: its seconds (the root module's) and every module's."""
        self._spans.clear()
        before = nn.modules.module.register_module_forward_pre_hook(self._before)
        after = nn.modules.module.register_module_forward_hook(self._after)
        try:
            self.model(*args, **kwargs)
        finally:
            before.remove()
            after.remove()
            self._open.clear()
        if self.cuda:
            torch.cuda.synchronize()
        seconds: dict[str, float] = {}
        for name, start, end in self._spans:
            spent = start.elapsed_time(end) / 1e3 if self.cuda else end - start
            seconds[name] = seconds.get(name, 0.0) + spent
        return seconds.get("", 0.0), seconds


def _timed_call(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    cuda: bool,
    sync: Callable[[], None],
) -> float:
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        model(*args, **kwargs)
        end.record()
        torch.cuda.synchronize()
        return float(start.elapsed_time(end)) / 1e3
    started = time.perf_counter()
    model(*args, **kwargs)
    sync()
    return time.perf_counter() - started


def _timed_ops(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    guard: Any,
    cuda: bool,
    sync: Callable[[], None],
) -> tuple[list[str], list[float]]:
    timer = _OpTimer(guard, cuda, sync)
    with timer:
        model(*args, **kwargs)
    return timer.names, timer.seconds()


def _first_difference(names: list[str], expected: list[str]) -> str:
    for index, (got, want) in enumerate(zip(names, expected, strict=False)):
        if got != want:
            return f" (op {index}: {got} timed, {want} traced)"
    return ""

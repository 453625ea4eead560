"""The native API: `analyze` a model, `trace` it, `register_handler` for a custom op."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from torch import nn
from torch.export import ExportedProgram

from torchtally.analysis import Analysis, set_hardware_finder
from torchtally.artefacts import as_program
from torchtally.counting import warn_unused_handlers
from torchtally.devices import Hardware, find_hardware
from torchtally.fake import (
    NEEDS_REAL_DATA,
    FakeUnsupportedError,
    check_mode,
    is_meta_model,
    rejected_inputs,
)
from torchtally.handlers import METRICS, CountOptions, HandlerRegistry, HandlerSet, OpHandler
from torchtally.inputs import build_inputs, check_not_empty
from torchtally.plugins import handler_registry, hardware_devices
from torchtally.records import Trace
from torchtally.timing import measure_forward
from torchtally.tracer import LossFn, Runner, Setup, TraceError, gc_paused, run_traced

logger = logging.getLogger("torchtally")

F = TypeVar("F", bound=Callable[..., Any])

_user_handlers = HandlerSet()

Handlers = Mapping[str, OpHandler | None] | HandlerSet | None
Model = nn.Module | ExportedProgram
"""An eager `nn.Module`, a TorchScript module, an FX `GraphModule`, or a `torch.export` program."""


def register_handler(*ops: str, metric: str = "flops") -> Callable[[F], F]:
    """Decorator: count `ops` with the decorated function in every later analysis.

    >>> @torchtally.register_handler("mylib::fused_gelu")
    ... def fused_gelu(call):
    ...     return 8 * call.output_tensors[0].numel
    """
    return _user_handlers.handler(*ops, metric=metric)


def unregister_handler(*ops: str, metric: str = "flops") -> None:
    """Forget handlers added with `register_handler`."""
    _user_handlers.remove(*ops, metric=metric)


def trace(
    model: Model,
    inputs: Any = None,
    *,
    input_shape: tuple[Any, ...] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    mode: str = "auto",
    backward: bool = False,
    loss_fn: LossFn | None = None,
    autograd_functions: bool = False,
    measure: bool = False,
    measure_repeats: int = 5,
    measure_statistic: str = "median",
) -> Trace:
    """Run the model once and return every op it ran (``.ops``) with its module scope.

    Arguments as for `analyze`; ``trace.mode`` says which mode ran. With `autograd_functions`,
    each call of a custom ``torch.autograd.Function`` is recorded too (``trace.functions``).
    With `measure`, the forward pass is then timed per op (``trace.measurement``).
    """
    check_mode(mode)
    program = as_program(model)
    if measure:
        mode = _measured_mode(model, mode, backward, type(program.runner) is not Runner)
    if inputs is None and input_shape is None and not kwargs and program.example_inputs:
        inputs, kwargs = program.example_inputs  # an exported program's own example inputs
    # input_shape builds shape-only (meta) inputs unless the model runs for real; auto builds
    # real ones only if it falls back to a real run
    build = partial(build_inputs, program.module, inputs, input_shape, kwargs)
    args, keyword = build(shape_only=mode != "real")
    if program.check_inputs is not None:
        program.check_inputs(args, keyword)
    recorded = trace_call(
        program.module,
        args,
        keyword,
        mode=mode,
        backward=backward,
        loss_fn=loss_fn,
        runner=program.runner,
        autograd_functions=autograd_functions,
        real_inputs=build if input_shape is not None and mode == "auto" else None,
    )
    if measure:
        timed = measure_forward(
            program.module,
            args,
            keyword,
            recorded,
            repeats=measure_repeats,
            statistic=measure_statistic,
        )
        recorded = replace(recorded, measurement=timed)
    return recorded


def _measured_mode(model: Model, mode: str, backward: bool, runner: bool) -> str:
    """The mode a measured analysis runs in (real), or ValueError saying why it cannot be."""
    if mode in ("fake", "meta") or is_meta_model(as_program(model).module):
        raise ValueError(
            "measure=True times the model running for real: use mode='real' or 'auto' with "
            "real weights (a model on the meta device has none to run)"
        )
    if backward:
        raise ValueError(
            "measure=True times the forward pass; analyse without backward=True to time it"
        )
    if runner:
        raise ValueError("measure=True times eager modules, not exported or scripted programs")
    return "real"


def trace_call(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    mode: str = "auto",
    backward: bool = False,
    loss_fn: LossFn | None = None,
    setup: Setup | None = None,
    runner: Runner | None = None,
    autograd_functions: bool = False,
    real_inputs: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]] | None = None,
) -> Trace:
    """`trace` for arguments already built; `setup` prepares the call first (see `Setup`), and
    `runner` runs what is not eager code (see `torchtally.artefacts`); `real_inputs` builds
    the arguments of auto mode's real run when `args` are shape-only (``input_shape``)."""
    run = partial(
        run_traced,
        model,
        args,
        kwargs,
        backward=backward,
        loss_fn=loss_fn,
        setup=setup,
        runner=runner,
        autograd_functions=autograd_functions,
    )
    if mode == "auto":
        run_real = None
        if real_inputs is not None:  # built only if the real run happens

            def run_real(mode: str) -> Trace:
                return run_traced(model, *real_inputs(), mode=mode, **run.keywords)

        recorded = _trace_auto(model, run, run_real)
    elif mode == "real" and is_meta_model(model):
        raise ValueError(
            "mode='real' cannot run a model whose weights are on the meta device: "
            "use mode='meta' (or 'auto'), which counts from shapes alone"
        )
    else:
        recorded = run(mode=mode)
    check_not_empty(model, recorded)
    return recorded


def _trace_auto(
    model: nn.Module, run: Callable[..., Trace], run_real: Callable[..., Trace] | None = None
) -> Trace:
    """Fake tensors where they suffice; the real model (run by `run_real` when given) when an
    op needs real data."""
    if is_meta_model(model):
        return run(mode="meta")
    try:
        return run(mode="fake")
    except TraceError as error:
        op = error.failed_op or "an op"
        cause = error.__cause__
        first_line = (str(cause).splitlines() or [type(cause).__name__])[0]
        if len(first_line) > 240:  # PyTorch's "could not run" lists every dispatch key
            first_line = first_line[:240].rsplit(" ", 1)[0] + " ..."
        if cause is not None and rejected_inputs(cause):
            _raise_unless_real_kernel_accepts(error, op)
            reason = f"the fake kernel of {op} rejects what its real kernel accepts: {first_line}"
        elif isinstance(cause, NEEDS_REAL_DATA):
            reason = f"{op} needs real data"
        elif isinstance(cause, FakeUnsupportedError):  # the model, before any op
            reason = first_line.rstrip(".")
        else:  # possibly a real error, which the real run will then raise with its own message
            reason = f"{op} failed on fake tensors: {first_line}"
        logger.warning(
            "fake tensors could not run this model (%s); running it for real instead (pass "
            "mode='real' to skip the attempt)",
            reason,
        )
    return (run_real or run)(mode="real")


def _raise_unless_real_kernel_accepts(error: TraceError, op: str) -> None:
    """A fake kernel refused the op's arguments: ask the real kernel (on zeros of the same
    shapes). Wrong inputs are raised at once, as a real run would fail the same way, later."""
    verdict = error.failed_call.real_kernel_accepts() if error.failed_call else None
    if verdict:
        return
    message = str(error).split("\n")[0]
    if verdict is False:
        advice = (
            "Its real kernel rejects these arguments too: check that the inputs have the "
            "shapes and dtypes this model expects."
        )
    else:
        advice = (
            "Check that the inputs have the shapes and dtypes this model expects. If they do, "
            f"the fake kernel of {op} rejects what its real kernel accepts (a gap in PyTorch's "
            "fake kernels, which could not be tried here): pass mode='real'."
        )
    raise TraceError(f"{message}\n{advice}", error.failed_op, error.failed_call) from (
        error.__cause__
    )


def registry_with(handlers: Handlers = None, strict: bool = False) -> HandlerRegistry:
    """Core and plugin handlers, then `register_handler` ones, then `handlers` for this call.

    With `strict`, a broken plugin raises `PluginError` instead of a warning."""
    registry = handler_registry(strict=strict).with_layer("user", _user_handlers)
    if handlers is None:
        return registry
    if not isinstance(handlers, HandlerSet):
        handlers = HandlerSet.from_mapping(handlers)
    return registry.with_layer("call", handlers)


def analyze(
    model: Model,
    inputs: Any = None,
    *,
    input_shape: tuple[Any, ...] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    mode: str = "auto",
    backward: bool = False,
    loss_fn: LossFn | None = None,
    handlers: Handlers = None,
    elementwise: bool = False,
    options: Mapping[str, Any] | None = None,
    metrics: tuple[str, ...] = METRICS,
    ancestor_mode: str = "owner",
    strict: bool = False,
    warn_unsupported: bool = True,
    measure: bool = False,
    measure_repeats: int = 5,
    measure_statistic: str = "median",
) -> Analysis:
    """Analyse `model` on `inputs`: parameters, and flops and activations per module and operator.

    The model runs once (forward under ``torch.no_grad()`` unless `backward`) and is left exactly
    as it was. It may be an eager module or a deployed artefact (a `torch.export` program, an FX
    `GraphModule`, a TorchScript module): modules and counts are then the original model's, from
    the artefact's metadata (see `torchtally.artefacts`).

    :param inputs: a tensor, a tuple of positional arguments, or a dict of keyword arguments
        (default for an exported program: the example inputs it was exported with).
    :param input_shape: instead of inputs, mmengine-style shapes without the batch dimension.
    :param mode: ``"real"`` runs the model as given; ``"fake"`` runs it on fake tensors (shapes
        only: no real memory or compute); ``"meta"`` is for a model built on the meta device;
        ``"auto"`` picks meta or fake, and falls back to real when an op needs real data.
    :param backward: also run the backward pass and count it (``phase="backward"`` in queries).
    :param loss_fn: with `backward`, the scalar to differentiate, from the model's outputs
        (default: every floating-point output, each with a gradient of ones).
    :param handlers: ``{"op": handler or None}`` for this call only (flops); or a `HandlerSet`.
    :param elementwise: also count element-wise ops and reductions (off: fvcore-compatible totals).
    :param options: extra settings for plugin handlers, e.g. ``{"causal": "half"}``.
    :param ancestor_mode: ``"owner"`` or ``"caller"``, as in fvcore.
    :param strict: raise when a handler fails instead of reporting the op as unsupported.
    :param measure: also time the forward pass on the model's device, per op (``mode`` real;
        `Analysis.measured`): after warm-up, the median of `measure_repeats` passes (the
        fastest with ``measure_statistic="min"``, steadier on a busy machine).
    """
    if handlers is not None and not isinstance(handlers, HandlerSet):
        handlers = HandlerSet.from_mapping(handlers)  # names checked before the model runs
    registry = registry_with(handlers, strict=strict)
    recorded = trace(
        model,
        inputs,
        input_shape=input_shape,
        kwargs=kwargs,
        mode=mode,
        backward=backward,
        loss_fn=loss_fn,
        autograd_functions=registry.has_function_handlers(),
        measure=measure,
        measure_repeats=measure_repeats,
        measure_statistic=measure_statistic,
    )
    warn_unused_handlers(_user_handlers, recorded, similar_only=True)
    if handlers is not None:
        warn_unused_handlers(handlers, recorded)
    with gc_paused():  # counting makes many small objects (see tracer.gc_paused)
        analysis = Analysis(
            trace=recorded,
            registry=registry,
            options=CountOptions(elementwise=elementwise, extra=dict(options or {})),
            ancestor_mode=ancestor_mode,
            metrics=tuple(metrics),
            strict=strict,
        )
    if warn_unsupported:
        log_unsupported(analysis)
    return analysis


def log_unsupported(analysis: Analysis, metrics: tuple[str, ...] = ("flops",)) -> None:
    """One warning line per op that no handler counted (for flops, unless told otherwise)."""
    reported: set[str] = set()
    for metric in metrics:
        if metric not in analysis.metrics:
            continue
        for op, times in sorted(analysis.unsupported_ops(metric).items()):
            if op in reported:
                continue
            reported.add(op)
            logger.warning(
                "unsupported operator %s ran %d time(s) and is not counted in %s "
                "(register a handler, or pass elementwise=True for element-wise ops)",
                op,
                times,
                metric,
            )


def hardware(name: str | Hardware) -> Hardware:
    """The device called `name` (``"h100-sxm"``, ``"a100"``, ``"H100 SXM"``): core's table and
    the devices plugins add. A `Hardware` is returned as it is. An unknown name raises
    `torchtally.UnknownHardwareError` naming the close matches."""
    if isinstance(name, Hardware):
        return name
    return find_hardware(name, (device for device, _ in hardware_devices().values()))


def hardware_table() -> list[Hardware]:
    """Every known device: core's table (``data/hardware.json``) first, then plugins'."""
    return [device for device, _ in hardware_devices().values()]


set_hardware_finder(hardware)

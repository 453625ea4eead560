"""The process around an analysis: torch's global switches, the mode stacks, global module hooks
and random number generators are put back as they were; signals that arrive while they are put
back wait until that is done; analyses run one at a time, and the model is refused to other
threads while it is being analysed."""

from __future__ import annotations

import random
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import torch
import torch.utils._python_dispatch as python_dispatch
from torch import nn

# --- torch's global switches ------------------------------------------------------------------


def _anomaly() -> tuple[bool, bool]:
    return torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()


def _set_anomaly(value: tuple[bool, bool]) -> None:
    torch.set_anomaly_enabled(*value)


def _deterministic() -> tuple[bool, bool]:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )


def _set_deterministic(value: tuple[bool, bool]) -> None:
    torch.use_deterministic_algorithms(value[0], warn_only=value[1])


def _attribute(owner: Any, name: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    return (lambda: getattr(owner, name)), (lambda value: setattr(owner, name, value))


def _autocast(device: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    def get() -> Any:
        return torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)

    def put(value: Any) -> None:
        torch.set_autocast_enabled(device, value[0])
        torch.set_autocast_dtype(device, value[1])

    return get, put


_cuda_matmul = torch.backends.cuda.matmul
# name -> (read, write): every switch a forward can flip for the rest of the process.
SWITCHES: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
    "grad mode": (torch.is_grad_enabled, lambda value: torch._C._set_grad_enabled(value)),
    "anomaly detection": (_anomaly, _set_anomaly),
    "default dtype": (torch.get_default_dtype, torch.set_default_dtype),
    "deterministic algorithms": (_deterministic, _set_deterministic),
    "float32 matmul precision": (
        torch.get_float32_matmul_precision,
        torch.set_float32_matmul_precision,
    ),
    "number of threads": (torch.get_num_threads, torch.set_num_threads),
    "cudnn.enabled": _attribute(torch.backends.cudnn, "enabled"),
    "cudnn.benchmark": _attribute(torch.backends.cudnn, "benchmark"),
    "cudnn.deterministic": _attribute(torch.backends.cudnn, "deterministic"),
    "cudnn.allow_tf32": _attribute(torch.backends.cudnn, "allow_tf32"),
    "mkldnn.enabled": _attribute(torch.backends.mkldnn, "enabled"),
    "cuda.matmul.allow_tf32": _attribute(_cuda_matmul, "allow_tf32"),
    "cuda.matmul.allow_fp16_reduced_precision_reduction": _attribute(
        _cuda_matmul, "allow_fp16_reduced_precision_reduction"
    ),
    "cuda.matmul.allow_bf16_reduced_precision_reduction": _attribute(
        _cuda_matmul, "allow_bf16_reduced_precision_reduction"
    ),
    "autocast (cpu)": _autocast("cpu"),
    "autocast (cuda)": _autocast("cuda"),
    "autocast cache": (torch.is_autocast_cache_enabled, torch.set_autocast_cache_enabled),
}

# Module-level dicts of torch.nn.modules.module that hold global module hooks.
GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_hooks_always_called",
    "_global_forward_hooks_with_kwargs",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_buffer_registration_hooks",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
)
# Global backward hooks are user hooks an analysis must not run (see `suspended_global_hooks`).
GLOBAL_BACKWARD_HOOK_DICTS = ("_global_backward_hooks", "_global_backward_pre_hooks")

_MODE_KEYS = tuple(torch._C._TorchDispatchModeKey.__members__.values())
_DISPATCH_FLAGS = (
    "_is_in_torch_dispatch_mode",
    "_is_in_non_infra_torch_dispatch_mode",
    "_is_in_any_mode_without_ignore_compile_internals",
)


class ModeStacks:
    """The torch function and dispatch mode stacks (infra modes such as fake mode included) and
    the default-device context, by identity, so that they can be put back exactly."""

    def __init__(self) -> None:
        self.functions = _function_stack()
        self.infra = {key: torch._C._get_dispatch_mode(key) for key in _MODE_KEYS}
        self.dispatch = _user_dispatch_stack()
        self.flags = {name: getattr(python_dispatch, name, None) for name in _DISPATCH_FLAGS}
        self.lift_cpu = torch._C._only_lift_cpu_tensors()
        self.device_context = getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None)

    def same(self) -> bool:
        """Whether the stacks are as they were (identity, not equality)."""
        infra_now = {key: torch._C._get_dispatch_mode(key) for key in _MODE_KEYS}
        return (
            _same_items(_function_stack(), self.functions)
            and _same_items(_user_dispatch_stack(), self.dispatch)
            and all(infra_now[key] is mode for key, mode in self.infra.items())
        )

    def restore(self) -> None:
        """Pop whatever is on the stacks now and push back what was there."""
        if not self.same():
            while torch._C._len_torch_function_stack():
                torch._C._pop_torch_function_stack()
            for mode in self.functions:
                torch._C._push_on_torch_function_stack(mode)
            while len(_user_dispatch_stack()):
                torch._C._pop_torch_dispatch_stack(None)
            for key, mode in self.infra.items():
                if torch._C._get_dispatch_mode(key) is not mode:
                    torch._C._unset_dispatch_mode(key)
                    if mode is not None:
                        torch._C._set_dispatch_mode(mode)
            for mode in self.dispatch:
                torch._C._push_on_torch_dispatch_stack(mode)
        for name, value in self.flags.items():
            if value is not None:
                setattr(python_dispatch, name, value)
        if torch._C._only_lift_cpu_tensors() != self.lift_cpu:
            torch._C._set_only_lift_cpu_tensors(self.lift_cpu)
        if getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None) is not self.device_context:
            torch._GLOBAL_DEVICE_CONTEXT.device_context = self.device_context


def _function_stack() -> list[Any]:
    return [torch._C._get_function_stack_at(i) for i in range(torch._C._len_torch_function_stack())]


def _user_dispatch_stack() -> list[Any]:
    """The dispatch modes above the infra ones (``_get_dispatch_stack_at`` lists infra first)."""
    infra = sum(torch._C._get_dispatch_mode(key) is not None for key in _MODE_KEYS)
    return [
        torch._C._get_dispatch_stack_at(i)
        for i in range(infra, torch._C._len_torch_dispatch_stack())
    ]


def _same_items(now: list[Any], before: list[Any]) -> bool:
    return len(now) == len(before) and all(a is b for a, b in zip(now, before, strict=True))


class RandomStates:
    """torch's CPU and CUDA generators, Python's `random` and NumPy's global generator (when
    NumPy is imported): a model that draws random numbers leaves no trace."""

    def __init__(self) -> None:
        self.cpu = torch.random.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.python = random.getstate()
        numpy = sys.modules.get("numpy")
        self.numpy = (numpy, numpy.random.get_state()) if numpy is not None else None

    def restore(self) -> list[str]:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("the CPU random generator", lambda: torch.random.set_rng_state(self.cpu)),
            ("Python's random generator", lambda: random.setstate(self.python)),
        ]
        if self.cuda is not None:
            cuda = self.cuda
            steps.append(("the CUDA random generators", lambda: torch.cuda.set_rng_state_all(cuda)))
        if self.numpy is not None:
            numpy, state = self.numpy
            steps.append(("NumPy's random generator", lambda: numpy.random.set_state(state)))
        return run_steps(steps)


def run_steps(steps: list[tuple[str, Callable[[], None]]]) -> list[str]:
    """Run every step, whatever the others do; say which failed and how."""
    failures = []
    for what, step in steps:
        try:
            step()
        except Exception as error:
            failures.append(f"{what}: {type(error).__name__}: {error}")
    return failures


class ProcessState:
    """Everything process-wide an analysis (or the model it runs) could leave changed."""

    def __init__(self) -> None:
        self.modes = ModeStacks()
        self.switches = {name: read() for name, (read, _) in SWITCHES.items()}
        hooks = nn.modules.module
        self.hooks = {name: dict(getattr(hooks, name)) for name in GLOBAL_HOOK_DICTS}
        self.random = RandomStates()

    def restore(self) -> list[str]:
        """Put everything back; returns what could not be (each step runs whatever the others
        do)."""
        failures = run_steps([("the torch mode stacks", self.modes.restore)])
        steps = [(name, partial_set(name, value)) for name, value in self.switches.items()]
        steps += [
            (f"global module hooks ({name})", self._hook_restorer(name)) for name in self.hooks
        ]
        failures += run_steps(steps)
        return failures + self.random.restore()

    def _hook_restorer(self, name: str) -> Callable[[], None]:
        def restore() -> None:
            current = getattr(nn.modules.module, name)
            saved = self.hooks[name]
            if list(current.items()) != list(saved.items()):
                current.clear()
                current.update(saved)

        return restore


def partial_set(name: str, value: Any) -> Callable[[], None]:
    read, write = SWITCHES[name]

    def put() -> None:
        if read() != value:
            write(value)

    return put


class RestoreError(RuntimeError):
    """Part of the model or the process could not be put back as it was after an analysis."""


@contextmanager
def preserved_process() -> Iterator[ProcessState]:
    """Put back every switch, mode, global hook and generator on exit, whatever happened;
    anomaly detection is off inside (it makes fake backward passes fail)."""
    state = ProcessState()
    try:
        torch.set_anomaly_enabled(False)
        yield state
    finally:
        failures = state.restore()
        if failures:
            raise RestoreError(
                "torchtally could not put back the process state after the analysis:\n  "
                + "\n  ".join(failures)
            )


@contextmanager
def suspended_global_hooks(names: tuple[str, ...] = GLOBAL_BACKWARD_HOOK_DICTS) -> Iterator[None]:
    """Global module backward hooks are taken out for the analysis (`ProcessState` puts them
    back): a user's hook must not run on the analysis' gradients."""
    for name in names:
        getattr(nn.modules.module, name).clear()
    yield


# --- signals ----------------------------------------------------------------------------------

DEFERRED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)


class DeferredSignals:
    """Holds back signals with a Python handler (Ctrl-C's KeyboardInterrupt among them) from
    `start` until the context exits, then delivers them in order, to the handlers they had.

    Only in the main thread, where Python runs signal handlers; elsewhere it does nothing.
    """

    def __init__(self) -> None:
        self.saved: dict[int, Any] = {}
        self.pending: list[tuple[int, FrameType | None]] = []

    def start(self) -> None:
        if self.saved or threading.current_thread() is not threading.main_thread():
            return
        for signum in DEFERRED_SIGNALS:
            try:
                handler = signal.getsignal(signum)
                if callable(handler):
                    signal.signal(signum, self._hold)
                    self.saved[signum] = handler
            except (ValueError, OSError):  # not settable here
                continue

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append((signum, frame))

    def deliver(self) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        saved, self.saved = self.saved, {}
        pending, self.pending = self.pending, []
        for signum, frame in pending:
            saved[signum](signum, frame)


@contextmanager
def deferred_signals() -> Iterator[DeferredSignals]:
    """A `DeferredSignals` whose held signals are delivered on exit."""
    held = DeferredSignals()
    try:
        yield held
    finally:
        held.deliver()


# --- one analysis at a time -------------------------------------------------------------------

_lock = threading.Lock()
_active = threading.local()


class AnalysisError(RuntimeError):
    """An analysis that cannot run now (one already runs in this thread), or a model call that
    another thread made while the model was being analysed."""


class Session:
    """One analysis: holds the process-wide analysis lock (a second thread's analysis waits for
    it) and refuses calls of the model's modules from other threads while it runs (they would
    meet fake weights or see their own updates undone)."""

    def __init__(self, model: nn.Module) -> None:
        self.model_name = type(model).__name__
        self.module_ids = {id(m) for m in model.modules()}
        self.thread = threading.get_ident()
        self.modes: tuple[Any, ...] = ()  # the analysis' own modes, once entered

    def __enter__(self) -> Session:
        if getattr(_active, "session", None) is not None:
            raise AnalysisError(
                "torchtally.analyze was called while an analysis is running in this thread "
                "(from a model's forward or a hook): analyses cannot nest; analyse the model "
                "after the running analysis returns"
            )
        _lock.acquire()
        _active.session = self
        self._sentry = nn.modules.module.register_module_forward_pre_hook(self._refuse_others)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._sentry.remove()
        finally:
            _active.session = None
            _lock.release()

    def _refuse_others(self, module: nn.Module, args: Any) -> None:
        if id(module) not in self.module_ids or threading.get_ident() == self.thread:
            return
        if self.modes and _runs_under(self.modes):  # autograd's worker threads (recomputation)
            return
        raise AnalysisError(
            f"this {type(module).__name__} is part of a {self.model_name} that torchtally is "
            "analysing in another thread: its modules cannot run until torchtally.analyze "
            "returns there (run the model before or after the analysis, or analyse a copy)"
        )


def _runs_under(modes: tuple[Any, ...]) -> bool:
    """Whether this thread runs under one of `modes` (autograd threads inherit the caller's)."""
    stack = _function_stack() + _user_dispatch_stack()
    return any(mode is ours for mode in stack for ours in modes)

"""Issue 13, classes 1-7: the model is left exactly as it was, whatever its forward does to its
tensors (views of one storage, ``.data =``, ``resize_``, ``set_``), whatever mode torch is in
(inference mode, TorchScript), whatever signal arrives while it is restored, and whatever
backward hooks the user registered. Every case is checked with `Snapshot`: state_dict bitwise,
storages, hooks, flags, everything reachable from the model and the inputs, the process."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
import torch
from reliability.helpers import MODES, Snapshot, unchanged_after
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

import torchtally
from torchtally import state

X = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))


def tally(model: nn.Module, inputs: Any = X, **options: Any) -> Any:
    """Analyse; check that the model, the inputs and the process are as they were; return the
    analysis (or the exception raised)."""
    options.setdefault("warn_unsupported", False)
    return unchanged_after(lambda: torchtally.analyze(model, inputs, **options), model, inputs)


# --- 1. tensors that share one storage -------------------------------------------------------


class FlatViews(nn.Module):
    """Parameters that are views of one flat buffer (as FSDP, DeepSpeed and apex make them);
    the forward writes through `target` in the way `how` says."""

    def __init__(self, how: str, target: int = 0) -> None:
        super().__init__()
        flat = torch.randn(12, generator=torch.Generator().manual_seed(1))
        self.a = nn.Parameter(flat[0:4])
        self.b = nn.Parameter(flat[4:8])
        self.register_buffer("c", flat[8:12])
        self.how, self.target = how, target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        view = (self.a, self.b, self.c)[self.target]
        with torch.no_grad():
            if self.how == "add_":
                view.add_(1.0)
            elif self.how == "copy_":
                view.copy_(torch.zeros(4))
            elif self.how == "out=":
                torch.mul(x[0], 3.0, out=view)
            elif self.how == "fresh view":  # a view made in forward, over the whole flat buffer
                torch.as_strided(view, (12,), (1,), 0).zero_()
            elif self.how == "data":
                view.data.mul_(-1)
        return x * self.a + self.b + self.c


@pytest.mark.parametrize("how", ["add_", "copy_", "out=", "fresh view", "data"])
@pytest.mark.parametrize("target", [0, 1, 2], ids=["first", "second", "buffer"])
@pytest.mark.parametrize("mode", ["real", "fake", "auto"])
def test_writes_through_one_view_restore_every_view_of_the_storage(
    mode: str, target: int, how: str
) -> None:
    model = FlatViews(how, target)
    analysis = tally(model, mode=mode)
    assert not isinstance(analysis, Exception), analysis


class BufferOverParameter(nn.Module):
    """A buffer registered as a view of a parameter (a transposed copy kept in sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3))
        self.register_buffer("weight_t", self.weight.detach().t())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.weight_t.mul_(2.0)  # writes the parameter's memory
        return x @ self.weight


@pytest.mark.parametrize("mode", MODES)
def test_a_buffer_over_a_parameter_writes_are_undone(mode: str) -> None:
    assert not isinstance(tally(BufferOverParameter(), mode=mode), Exception)


# --- 2. .data = inside forward ---------------------------------------------------------------


class DataSwap(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("scale", torch.ones(4))
        self.how = how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.fc.weight
        if self.how == "same shape":
            weight.data = torch.zeros_like(weight)
        elif self.how == "other shape":
            weight.data = torch.zeros(2, 2)
            weight.data = torch.zeros(4, 4)
        elif self.how == "other dtype":
            weight.data = weight.data.double()
            weight.data = weight.data.float()
        elif self.how == "own view":
            weight.data = weight.data[:, :4].t()
        elif self.how == "buffer":
            self.scale.data = torch.full((4,), 5.0)
        elif self.how == "bias":
            self.fc.bias.data = self.fc.bias.data + 1
        return self.fc(x) * self.scale


@pytest.mark.parametrize(
    "how", ["same shape", "other shape", "other dtype", "own view", "buffer", "bias"]
)
@pytest.mark.parametrize("mode", MODES)
def test_data_swaps_in_forward_are_undone(mode: str, how: str) -> None:
    model = DataSwap(how)
    weight, ptr = model.fc.weight, model.fc.weight.data_ptr()
    assert not isinstance(tally(model, mode=mode), Exception)
    assert model.fc.weight is weight and weight.data_ptr() == ptr


# --- 3. resize_ and set_ inside forward ------------------------------------------------------


class Rebinding(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4))
        self.register_buffer("buf", torch.randn(4))
        self.how = how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x * self.weight + self.buf
        with torch.no_grad():
            if self.how == "grow":
                self.buf.resize_(64)
            elif self.how == "shrink":
                self.buf.resize_(2)
            elif self.how == "grow a view":  # reallocates the parameter's storage
                self.weight.data[:2].resize_(1024)
                self.buf.view(-1).resize_(4096)
            elif self.how == "set_ same shape":
                self.weight.set_(torch.zeros(4))
            elif self.how == "set_ other shape":
                self.weight.set_(torch.zeros(3, 3))
            elif self.how == "set_ empty":
                self.buf.set_()
            elif self.how == "set_ storage":
                self.buf.set_(torch.zeros(8).untyped_storage(), 2, (3,), (1,))
        torch.set_default_dtype(torch.float64)  # the restore of what follows must happen too
        return out


@pytest.mark.parametrize(
    "how",
    [
        "grow",
        "shrink",
        "grow a view",
        "set_ same shape",
        "set_ other shape",
        "set_ empty",
        "set_ storage",
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_resize_and_set_in_forward_are_undone(mode: str, how: str) -> None:
    model = Rebinding(how)
    ptrs = [model.weight.data_ptr(), model.buf.data_ptr()]
    result = tally(model, torch.randn(4), mode=mode)
    assert not isinstance(result, Exception), result
    assert [model.weight.data_ptr(), model.buf.data_ptr()] == ptrs


class Everything(nn.Module):
    """Changes the default dtype, batch-norm statistics, a list it holds and the RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.set_default_dtype(torch.float64)
        self.seen.append(x)
        torch.rand(1)
        return self.body(x)


@pytest.mark.parametrize("broken", ["default dtype", "a list"])
@pytest.mark.parametrize("mode", ["real", "fake"])
def test_a_restore_step_that_fails_does_not_stop_the_others(
    monkeypatch: pytest.MonkeyPatch, mode: str, broken: str
) -> None:
    """One step cannot be put back: the error says which, and everything else still is."""
    from torchtally import process

    def fail(*args: Any) -> None:
        raise RuntimeError("cannot do it")

    model, x = Everything(), torch.randn(3, 4)
    before = Snapshot.take(model, x)
    if broken == "default dtype":
        read, _ = process.SWITCHES["default dtype"]
        monkeypatch.setitem(process.SWITCHES, "default dtype", (read, fail))
        message = "default dtype: RuntimeError: cannot do it"
    else:
        monkeypatch.setattr(state._SavedList, "restore", fail)
        message = "contents of a list: RuntimeError: cannot do it"
    try:
        with pytest.raises(process.RestoreError, match=message):
            torchtally.analyze(model, x, mode=mode, warn_unsupported=False)
    finally:
        monkeypatch.undo()
        torch.set_default_dtype(torch.float32)  # what the broken step did not put back
        model.seen.clear()
    before.assert_unchanged()  # BN statistics, RNG, modes, hooks: all restored


# --- 4. backups are real: TorchScript modules and attribute views in fake mode ----------------


class Attributes(nn.Module):
    """Real tensors the fake run does not swap: a plain scalar attribute, a plain attribute that
    is the parameter itself, and a scripted batch norm in training."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = torch.ones(())  # a one-element tensor: fake mode runs ops on it for real
        self.weight_alias = self.fc.weight
        self.bn = torch.jit.script(nn.BatchNorm1d(4)).train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.scale.mul_(2.0)
        with torch.no_grad():
            self.weight_alias.add_(1.0)
        return self.bn(self.fc(x)) * self.scale


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_tensors_the_fake_run_does_not_swap_are_restored(mode: str, backward: bool) -> None:
    model = Attributes()
    result = tally(model, mode=mode, backward=backward)
    assert not isinstance(result, Exception), result
    assert model.bn.num_batches_tracked.item() == 0


@pytest.mark.parametrize("mode", ["fake", "auto", "real"])
def test_scripted_batch_norm_in_training_keeps_its_statistics(mode: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), torch.jit.script(nn.BatchNorm2d(4))).train()
    result = tally(model, torch.randn(2, 3, 8, 8), mode=mode)
    assert not isinstance(result, Exception), result
    assert model[1].num_batches_tracked.item() == 0


class ScriptedCounter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("total", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        self.total += x.sum(0)
        return x * 2


@pytest.mark.parametrize("mode", MODES)
def test_scripted_module_buffers_written_in_place_are_restored(mode: str) -> None:
    model = nn.Sequential(torch.jit.script(ScriptedCounter()), nn.Linear(4, 2))
    assert not isinstance(tally(model, mode=mode), Exception)


# --- 5. analysis inside torch.inference_mode() -----------------------------------------------


def _convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 2))


IMAGES = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_inference_mode_counts_as_outside_and_changes_nothing(
    mode: str, backward: bool, training: bool
) -> None:
    model = _convnet().train(training)
    outside = torchtally.analyze(
        model, IMAGES, mode=mode, backward=backward, warn_unsupported=False
    )
    with torch.inference_mode():
        inside = tally(model, IMAGES, mode=mode, backward=backward)
        assert torch.is_inference_mode_enabled()
    assert not isinstance(inside, Exception), inside
    assert inside.total() > 0
    for phase in outside.phases:
        assert inside.by_operator(phase=phase) == outside.by_operator(phase=phase)
    assert inside.unsupported_ops() == outside.unsupported_ops()


@pytest.mark.parametrize("mode", MODES)
def test_inputs_made_in_inference_mode_count_as_others(mode: str) -> None:
    model = _convnet().train()
    with torch.inference_mode():
        images = IMAGES.clone()  # an inference tensor
    outside = torchtally.analyze(model, IMAGES, mode=mode, backward=True, warn_unsupported=False)
    inside = tally(model, images, mode=mode, backward=True)
    assert not isinstance(inside, Exception), inside
    assert inside.by_operator(phase="backward") == outside.by_operator(phase="backward")


# --- 6. signals while the model is being restored --------------------------------------------


def _fake_bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()


def _signal_during(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, signum: int) -> None:
    """`owner.name` sends `signum` to this process, then does its work."""
    original = getattr(owner, name)

    def send_then_run(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, send_then_run)


@pytest.mark.parametrize(
    "where",
    ["model restore", "generator restore"],
)
@pytest.mark.parametrize("mode", ["real", "fake", "auto"])
def test_ctrl_c_while_restoring_is_delivered_after_the_restore(
    monkeypatch: pytest.MonkeyPatch, mode: str, where: str
) -> None:
    model, x = _fake_bn_model(), torch.randn(3, 4)
    before = Snapshot.take(model, x)
    if where == "model restore":
        _signal_during(monkeypatch, state.ModelGuard, "restore", signal.SIGINT)
    else:
        _signal_during(monkeypatch, torch.random, "set_rng_state", signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        torchtally.analyze(model, x, mode=mode, backward=True)
    monkeypatch.undo()
    before.assert_unchanged()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1])
@pytest.mark.parametrize("mode", ["real", "fake"])
def test_a_signal_handler_runs_after_the_model_is_restored(
    monkeypatch: pytest.MonkeyPatch, mode: str, signum: int
) -> None:
    """A handler that saves a checkpoint on SIGTERM must see the real model, not fakes."""
    model = _fake_bn_model()
    seen: list[tuple[bool, float]] = []

    def handler(number: int, frame: Any) -> None:
        weight = model[0].weight
        seen.append((isinstance(weight, FakeTensor), float(model[1].running_mean.sum())))

    previous = signal.signal(signum, handler)
    try:
        _signal_during(monkeypatch, state.ModelGuard, "restore", signum)
        result = tally(model, torch.randn(3, 4), mode=mode)
        assert not isinstance(result, Exception), result
    finally:
        signal.signal(signum, previous)
    assert seen == [(False, 0.0)]


# --- 7. the user's backward hooks do not run ---------------------------------------------------


class Hooked:
    """A linear model with every kind of backward hook a user registers, and an optimizer that
    one of them steps (an 'optimizer step in backward')."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.5, momentum=0.9)
        self.calls: list[str] = []

    def step(self, param: torch.Tensor) -> None:
        self.calls.append("post-accumulate")
        self.optimizer.step()
        self.optimizer.zero_grad()

    def add(self, kind: str) -> Callable[..., None]:
        def hook(*args: Any) -> None:
            self.calls.append(kind)

        return hook


HOOKS = ["post-accumulate", "tensor", "module", "module pre", "global", "grad accumulator", "input"]


@pytest.mark.parametrize("kind", HOOKS)
@pytest.mark.parametrize("mode", ["real", "fake", "auto"])
def test_user_backward_hooks_do_not_run(
    monkeypatch: pytest.MonkeyPatch, mode: str, kind: str
) -> None:
    hooked = Hooked()
    model, handles = hooked.model, []
    x = torch.randn(3, 4, requires_grad=True)
    plain = torchtally.analyze(model, x, mode=mode, backward=True, warn_unsupported=False)
    if kind == "post-accumulate":
        handles = [p.register_post_accumulate_grad_hook(hooked.step) for p in model.parameters()]
    elif kind == "tensor":
        handles = [p.register_hook(hooked.add(kind)) for p in model.parameters()]
    elif kind == "module":
        handles = [model[0].register_full_backward_hook(hooked.add(kind))]
    elif kind == "module pre":
        handles = [model[2].register_full_backward_pre_hook(hooked.add(kind))]
    elif kind == "global":
        handles = [nn.modules.module.register_module_full_backward_hook(hooked.add(kind))]
    elif kind == "grad accumulator":  # as DistributedDataParallel registers them
        accumulators = [p.view_as(p).grad_fn.next_functions[0][0] for p in model.parameters()]
        handles = [a.register_hook(hooked.add(kind)) for a in accumulators]
    elif kind == "input":
        handles = [x.register_hook(hooked.add(kind))]
    try:
        optimizer_state = dict(hooked.optimizer.state)
        analysis = tally(model, x, mode=mode, backward=True)
        assert not isinstance(analysis, Exception), analysis
        assert hooked.calls == []
        assert dict(hooked.optimizer.state) == optimizer_state == {}
        assert analysis.by_operator(phase="backward") == plain.by_operator(phase="backward")
        model(x).sum().backward()  # the hooks are still there, and run in the user's backward
        assert hooked.calls
    finally:
        for handle in handles:
            handle.remove()

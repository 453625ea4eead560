"""Issue 13, classes 11-15: the process is left as it was (mode stacks by identity, global
hooks, grad and anomaly mode, every switch and generator), whatever the model leaves behind; the
model's description is read outside the run; ``input_shape`` builds no real input for a
shape-only run; sparse and subclass weights are analysed. Every case is checked with
`Snapshot` (the model, what it and the inputs hold, the process)."""

from __future__ import annotations

import random
from typing import Any

import numpy
import pytest
import torch
from reliability.helpers import MODES, unchanged_after
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

import torchtally

X = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
LINEAR = 2 * 4 * 4  # one Linear(4, 4) on X


def tally(model: nn.Module, inputs: Any = X, **options: Any) -> Any:
    options.setdefault("warn_unsupported", False)
    return unchanged_after(lambda: torchtally.analyze(model, inputs, **options), model, inputs)


class PassDispatch(TorchDispatchMode):
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


class PassFunction(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


# --- 11. modes, hooks and switches the model leaves behind --------------------------------------


class LeavesThings(nn.Module):
    """Its forward leaves `what` changed for the rest of the process, then maybe raises."""

    def __init__(self, what: str, fail: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.what, self.fail = what, fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        what = self.what
        if what == "dispatch mode":
            PassDispatch().__enter__()
        elif what == "function mode":
            PassFunction().__enter__()
        elif what == "both modes":
            PassFunction().__enter__()
            PassDispatch().__enter__()
        elif what == "pops a mode":
            torch._C._pop_torch_function_stack()  # torchtally's own, or the user's
        elif what == "default device":
            torch.set_default_device("meta")
        elif what == "global hooks":
            nn.modules.module.register_module_forward_hook(lambda *args: None)
            nn.modules.module.register_module_forward_pre_hook(lambda *args: None)
        elif what == "grad mode":
            torch.set_grad_enabled(True)
        elif what == "switches":
            torch.set_float32_matmul_precision("medium")
            torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.set_autocast_enabled("cpu", True)
            torch.set_num_threads(torch.get_num_threads() + 1)
        elif what == "generators":
            random.seed(1)
            numpy.random.seed(1)
            torch.manual_seed(1)
        y = self.fc(x)
        if self.fail:
            raise RuntimeError("failed after changing things")
        return y


THINGS = [
    "dispatch mode",
    "function mode",
    "both modes",
    "pops a mode",
    "default device",
    "global hooks",
    "grad mode",
    "switches",
    "generators",
]


@pytest.mark.parametrize("fail", [False, True], ids=["succeeds", "fails"])
@pytest.mark.parametrize("what", THINGS)
@pytest.mark.parametrize("mode", ["real", "fake", "auto"])
def test_what_the_model_leaves_behind_is_put_back(mode: str, what: str, fail: bool) -> None:
    model = LeavesThings(what, fail)
    result = tally(model, mode=mode, backward=what == "grad mode")
    if fail:
        assert isinstance(result, torchtally.TraceError), result
    else:
        assert not isinstance(result, Exception), result
        assert result.total(phase="forward") == LINEAR
    after = torch.ones(2) + 1  # nothing of the analysis is active any more
    assert torch._C._len_torch_dispatch_stack() == 0 and type(after) is torch.Tensor


@pytest.mark.parametrize("what", ["dispatch mode", "both modes", "pops a mode"])
def test_the_users_own_modes_stay_as_they_were(what: str) -> None:
    """Analysing inside a user's own modes: the model's leftovers are removed, the user's kept."""
    model = LeavesThings(what, fail=True)
    with PassFunction() as outer_function, PassDispatch() as outer_dispatch:
        result = tally(model, mode="real")
        assert isinstance(result, torchtally.TraceError)
        assert torch._C._get_function_stack_at(0) is outer_function
        assert torch._C._get_dispatch_stack_at(0) is outer_dispatch
        assert torch._C._len_torch_function_stack() == 1
        assert torch._C._len_torch_dispatch_stack() == 1


# --- 12. anomaly detection ---------------------------------------------------------------------


class Anomalous(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.how = how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "turns it on":
            torch.set_anomaly_enabled(True)
        elif self.how == "with nan check":
            torch.set_anomaly_enabled(True, check_nan=True)
        elif self.how == "context left open":
            torch.autograd.detect_anomaly().__enter__()
        return self.fc(x)


@pytest.mark.parametrize(
    "how", ["turns it on", "with nan check", "context left open", "user had it on"]
)
@pytest.mark.parametrize("mode", MODES)
def test_anomaly_detection_is_off_for_the_analysis_and_restored(mode: str, how: str) -> None:
    model = Anomalous(how)
    was = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    if how == "user had it on":
        torch.set_anomaly_enabled(True)
    try:
        result = tally(model, mode=mode, backward=True)
        assert not isinstance(result, Exception), result
        assert result.total(phase="backward") == LINEAR  # the weight gradient only
    finally:
        torch.set_anomaly_enabled(*was)


# --- 13. the model's description is read outside the run -------------------------------------


class Described(nn.Linear):
    """An extra_repr that computes from the weights (or fails), as dynamically quantized
    modules' do."""

    how = "item"

    def extra_repr(self) -> str:
        if self.how == "item":
            return f"norm={(self.weight @ self.weight.t()).sum().item():.3f}"
        if self.how == "raises":
            raise ValueError("no description today")
        if self.how == "changes state":
            self.described = getattr(self, "described", 0) + 1
            return "described"
        return "plain"


@pytest.mark.parametrize("how", ["item", "raises", "changes state"])
@pytest.mark.parametrize("mode", MODES)
def test_extra_repr_is_not_part_of_the_run(mode: str, how: str) -> None:
    model = nn.Sequential(Described(4, 4), nn.ReLU())
    model[0].how = how
    if mode == "meta":
        model = model.to("meta")
        model[0].how = "plain" if how == "item" else how
    result = tally(model, mode=mode)
    assert not isinstance(result, Exception), result
    assert result.total() == LINEAR  # nothing extra_repr computes is counted
    description = result.trace.modules["0"].extra_repr
    if how == "item" and mode != "meta":
        expected = (model[0].weight @ model[0].weight.t()).sum().item()
        assert description == f"norm={expected:.3f}"  # of the user's weights, not fakes
    elif how == "raises":
        assert description == ""


@pytest.mark.parametrize("mode", ["real", "fake", "auto"])
def test_a_dynamically_quantized_model_can_be_analysed(mode: str) -> None:
    float_model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.warns(Warning):
        model = torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)
    result = tally(model, mode=mode)
    assert not isinstance(result, Exception), result
    assert result.total() == LINEAR + 2 * 4 * 2  # the quantized linears are counted
    assert "in_features=4" in result.trace.modules["0"].extra_repr


# --- 14. input_shape builds no real input for a shape-only run --------------------------------


def _no_real_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    real_randn = torch.randn

    def randn(*args: Any, **kwargs: Any) -> torch.Tensor:
        device = kwargs.get("device")
        if device is None or torch.device(device).type != "meta":
            raise AssertionError("a real input was built for a shape-only run")
        return real_randn(*args, **kwargs)

    monkeypatch.setattr(torch, "randn", randn)


def _conv(meta: bool) -> nn.Module:
    with torch.device("meta" if meta else "cpu"):
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))


@pytest.mark.parametrize(
    ("mode", "meta"),
    [("meta", True), ("auto", True), ("fake", False), ("auto", False)],
)
@pytest.mark.parametrize("shape", [(3, 32, 32), ((3, 32, 32),), (3, 12000, 12000)])
def test_input_shape_builds_no_real_input_in_shape_only_runs(
    monkeypatch: pytest.MonkeyPatch, mode: str, meta: bool, shape: Any
) -> None:
    model = _conv(meta)
    _no_real_inputs(monkeypatch)
    analysis = torchtally.analyze(model, input_shape=shape, mode=mode, warn_unsupported=False)
    side = 32 if shape != (3, 12000, 12000) else 12000
    first = 8 * 27 * (side - 2) ** 2
    assert analysis.total() == first + 4 * 8 * (side - 2) ** 2
    assert analysis.mode == ("meta" if meta else "fake")
    info = torchtally.get_model_complexity_info  # the mmengine form, in real mode, still builds
    monkeypatch.undo()
    if not meta and side == 32:
        assert info(model, input_shape=(3, 32, 32), show_table=False, show_arch=False)["flops"]


class NeedsData(nn.Module):
    """Its forward needs real values (nonzero): auto falls back to a real run."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return y[y.nonzero(as_tuple=True)]


def test_auto_builds_a_real_input_only_when_it_falls_back() -> None:
    analysis = torchtally.analyze(NeedsData(), input_shape=(4,), warn_unsupported=False)
    assert analysis.mode == "real" and analysis.total() == 4 * 4


# --- 15. sparse and subclass weights ------------------------------------------------------------


class Scaled(torch.Tensor):
    """A float8-style wrapper subclass: int8 data and a scale; ops see the dequantised value."""

    @staticmethod
    def __new__(cls, data: torch.Tensor, scale: float) -> Scaled:
        return torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined,no-any-return]
            cls, data.shape, dtype=torch.float32, device=data.device
        )

    def __init__(self, data: torch.Tensor, scale: float) -> None:
        self._data, self._scale = data, scale

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in (torch.ops.aten.detach.default, torch.ops.aten.alias.default):
            return Scaled(args[0]._data, args[0]._scale)

        def unwrap(t: Any) -> Any:
            return t._data.float() * t._scale if isinstance(t, Scaled) else t

        return func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs or {}))


class Opaque(Scaled):
    """A traceable subclass that cannot be rebuilt around fake tensors (its unflatten wants
    real int8 data), so fake tensors cannot stand for it."""

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in (torch.ops.aten.detach.default, torch.ops.aten.alias.default):
            return Opaque(args[0]._data, args[0]._scale)
        return super().__torch_dispatch__(func, types, args, kwargs)

    def __tensor_flatten__(self) -> tuple[list[str], float]:
        return ["_data"], self._scale

    @staticmethod
    def __tensor_unflatten__(inner: dict[str, Any], scale: float, size: Any, stride: Any) -> Opaque:
        if type(inner["_data"]) is not torch.Tensor:
            raise TypeError("Opaque needs its real int8 data")
        return Opaque(inner["_data"], scale)


class Weighted(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.kind = kind
        eye = torch.eye(4)
        if kind == "sparse buffer":
            self.register_buffer("adj", eye.to_sparse())
        elif kind == "sparse csr buffer":
            self.register_buffer("adj", eye.to_sparse_csr())
        elif kind == "written sparse buffer":
            self.register_buffer("adj", eye.to_sparse())
        elif kind == "sparse parameter":
            self.adj = nn.Parameter(eye.to_sparse())
        elif kind in ("wrapper subclass", "opaque subclass"):
            wrapper = Scaled if kind == "wrapper subclass" else Opaque
            self.fc.weight = nn.Parameter(
                wrapper(torch.ones(4, 4, dtype=torch.int8), 0.5), requires_grad=False
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        if "sparse" in self.kind:
            if self.kind == "written sparse buffer":
                self.adj.mul_(2.0)
            y = (self.adj @ y.t()).t()
        return y


SPARSE = ["sparse buffer", "sparse csr buffer", "written sparse buffer", "sparse parameter"]


@pytest.mark.parametrize("kind", [*SPARSE, "wrapper subclass"])
@pytest.mark.parametrize("mode", ["real", "fake", "auto"])
def test_sparse_and_subclass_weights_are_analysed(mode: str, kind: str) -> None:
    if kind == "sparse csr buffer" and mode != "real":
        pytest.skip("fake tensors have no sparse CSR kernels: see the opaque case")
    result = tally(Weighted(kind), mode=mode)
    assert not isinstance(result, Exception), result
    assert result.by_operator()["linear"] == LINEAR


@pytest.mark.parametrize("mode", ["fake", "auto", "real"])
def test_a_subclass_fake_tensors_cannot_stand_for_is_refused_or_run_for_real(mode: str) -> None:
    result = tally(Weighted("opaque subclass"), mode=mode)
    if mode == "fake":
        assert isinstance(result, torchtally.TraceError), result
        assert "parameter 'weight' of a Linear is a Opaque" in str(result)
        assert "mode='real'" in str(result)
    else:
        assert not isinstance(result, Exception), result
        assert result.mode == "real" and result.total() == LINEAR


def test_dtensor_weights_are_analysed() -> None:
    dist = pytest.importorskip("torch.distributed")
    from torch.distributed.tensor import DeviceMesh, Replicate, distribute_module, distribute_tensor
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=1)
    try:
        mesh = DeviceMesh("cpu", [0])
        model = distribute_module(nn.Sequential(nn.Linear(4, 4)), mesh)
        x = distribute_tensor(X, mesh, [Replicate()])
        for mode in ("real", "fake", "auto"):
            result = tally(model, x, mode=mode)
            assert not isinstance(result, Exception), result
            assert result.total() == LINEAR
    finally:
        dist.destroy_process_group()

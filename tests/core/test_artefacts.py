"""Deployed models: TorchScript modules, exported programs, FX graphs count as the eager model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import torchtally
from torchtally.records import TensorMeta


class Convs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.up = nn.ConvTranspose2d(8, 3, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.conv(x))


# conv: batch 2 x weight (8, 2, 3, 3) x output 6x6; transposed: 2 x (8, 3, 2, 2) x input 6x6
CONVS = 2 * 8 * 2 * 3 * 3 * 36 + 2 * 8 * 3 * 2 * 2 * 36


def test_torchscript_convolution_counts_as_convolution() -> None:
    """TorchScript runs aten::_convolution (traced) at the dispatcher: it counts as convolution."""
    model = Convs().eval()
    x = torch.randn(2, 4, 6, 6)
    traced = torch.jit.trace(model, x)
    ops = {call.op for call in torchtally.trace(traced, x).ops}
    assert "aten::_convolution" in ops
    for mode in ("real", "fake"):
        analysis = torchtally.analyze(traced, x, mode=mode)
        assert analysis.by_operator() == {"conv": CONVS}
        assert analysis.total("activations") == 2 * 8 * 36 + 2 * 3 * 144
        assert analysis.unsupported_ops() == {}


# --- ResNet-18 as every kind of artefact ----------------------------------------------------------

RESNET18 = 1_819_065_856  # eager, 224x224: conv, batch norm, adaptive average pooling, linear


def _export(strict: bool) -> Callable[[nn.Module, torch.Tensor], Any]:
    return lambda model, x: torch.export.export(model, (x,), strict=strict)


ARTEFACTS: dict[str, Callable[[nn.Module, torch.Tensor], Any]] = {
    "export-strict": _export(True),
    "export-non-strict": _export(False),
    # core ATen: adaptive_avg_pool2d is a mean, linear a permute and addmm, batch norm functional
    "export-decomposed": lambda model, x: _export(False)(model, x).run_decompositions(),
    "export-module": lambda model, x: _export(False)(model, x).module(),  # a GraphModule
    "fx-symbolic-trace": lambda model, x: torch.fx.symbolic_trace(model),
    "torchscript-script": lambda model, x: torch.jit.script(model),
    "torchscript-trace": lambda model, x: torch.jit.trace(model, x),
}


@pytest.fixture(scope="module")
def resnet18() -> tuple[nn.Module, torch.Tensor, torchtally.Analysis]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 224, 224)
    return model, x, torchtally.analyze(model, x, warn_unsupported=False)


SLOW = {"export-strict", "export-decomposed"}  # dynamo's first run; decomposing: 6-14 s


@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=[pytest.mark.slow] if k in SLOW else []) for k in ARTEFACTS]
)
def test_resnet18_artefacts_count_and_tabulate_as_eager(
    kind: str, resnet18: tuple[nn.Module, torch.Tensor, torchtally.Analysis]
) -> None:
    model, x, eager = resnet18
    artefact = ARTEFACTS[kind](model, x)
    analysis = torchtally.analyze(artefact, x, warn_unsupported=False)
    assert eager.total() == RESNET18
    assert analysis.total() == RESNET18
    assert analysis.by_operator() == eager.by_operator()
    assert analysis.by_module() == eager.by_module()
    assert analysis.by_module("activations") == eager.by_module("activations")
    assert dict(analysis.params) == dict(eager.params)
    assert {n: i.type_name for n, i in analysis.modules.items()} == {
        n: i.type_name for n, i in eager.modules.items()
    }
    assert analysis.render("table", max_depth=3) == eager.render("table", max_depth=3)
    assert analysis.uncalled_modules == eager.uncalled_modules
    # FX and core ATen graphs are functional: add and relu instead of add_ and relu_
    assert _functional(analysis.unsupported_ops()) == _functional(eager.unsupported_ops())


def _functional(ops: dict[str, int]) -> dict[str, int]:
    return {op.rstrip("_"): count for op, count in ops.items()}


@pytest.mark.parametrize("kind", ["export-non-strict", "torchscript-script", "torchscript-trace"])
def test_backward_of_artefacts_is_the_eager_backward(kind: str) -> None:
    model = SmallNet().eval()
    x = torch.randn(2, 3, 16, 16)
    eager = torchtally.analyze(model, x, backward=True, warn_unsupported=False)
    analysis = torchtally.analyze(
        ARTEFACTS[kind](model, x), x, backward=True, warn_unsupported=False
    )
    for phase in ("forward", "backward"):
        assert analysis.by_module(phase=phase) == eager.by_module(phase=phase)
        assert analysis.by_operator(phase=phase) == eager.by_operator(phase=phase)
    assert analysis.total(phase="backward") > 0


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.stem(x)).flatten(1))


# conv 2 x (8*3*3*3) x 14*14, batch norm 2 per element, pool 1 per element, linear 2 x 8 x 5
SMALL = 2 * 216 * 196 + 2 * 2 * 8 * 196 + 2 * 8 * 196 + 2 * 8 * 5


def test_exported_program_is_analysed_at_its_example_inputs_by_default() -> None:
    model = SmallNet().eval()
    program = torch.export.export(model, (torch.randn(2, 3, 16, 16),))
    analysis = torchtally.analyze(program)
    assert analysis.total() == SMALL
    assert analysis.input_shapes == ((TensorMeta((2, 3, 16, 16), torch.float32),), {})


def test_dynamic_shapes_are_analysed_at_the_shapes_given() -> None:
    model = SmallNet().eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        model, (torch.randn(2, 3, 16, 16),), dynamic_shapes={"x": {0: batch}}
    )
    for size in (1, 5):
        x = torch.randn(size, 3, 16, 16)
        assert torchtally.analyze(program, x).total() == torchtally.analyze(model, x).total()


def test_inputs_an_exported_program_cannot_take_are_refused_before_running() -> None:
    program = torch.export.export(SmallNet().eval(), (torch.randn(2, 3, 16, 16),))
    message = r"do not fit this exported program \(exported for inputs \(2, 3, 16, 16\)\): "
    with pytest.raises(ValueError, match=message + r"Expected input at \*args\[0\]\.shape\[0\]"):
        torchtally.analyze(program, torch.randn(3, 3, 16, 16))
    with pytest.raises(ValueError, match=message):
        torchtally.analyze(program, (torch.randn(2, 3, 16, 16), torch.randn(1)))


def test_artefacts_are_left_as_they_were() -> None:
    model = SmallNet().train()
    x = torch.randn(2, 3, 16, 16)
    program = torch.export.export(model, (x,))
    graph_module = torch.fx.symbolic_trace(model)
    # in training, fake mode leaves a scripted BatchNorm's num_batches_tracked at 1 (issue 13)
    scripted = torch.jit.script(SmallNet().eval())
    before = {
        "program": {k: v.clone() for k, v in program.state_dict.items()},
        "graph": (graph_module.code, dict(vars(graph_module)), graph_module.state_dict()),
        "script": {k: v.clone() for k, v in scripted.state_dict().items()},
    }
    for artefact in (program, graph_module, scripted):
        for mode in ("real", "fake"):
            torchtally.analyze(artefact, x, mode=mode, backward=True, warn_unsupported=False)
    assert all(torch.equal(v, before["program"][k]) for k, v in program.state_dict.items())
    code, attributes, state = before["graph"]
    assert graph_module.code == code and dict(vars(graph_module)) == attributes
    assert all(torch.equal(v, state[k]) for k, v in graph_module.state_dict().items())
    assert all(torch.equal(v, before["script"][k]) for k, v in scripted.state_dict().items())
    assert all(p.grad is None for p in scripted.parameters())


class Shared(nn.Module):
    """One block under two names; TorchScript's hierarchy names it by the path it was called by."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(4, 4)
        self.again = self.block
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.again(self.block(x)))


@pytest.mark.parametrize("kind", ["export-non-strict", "saved-and-loaded", "torchscript-script"])
def test_a_shared_module_is_one_module_per_name_with_parameters_counted_once(
    kind: str, tmp_path: Path
) -> None:
    """Export and TorchScript make a module shared under two names one module per name (sharing
    the parameters): each name is reported with its own calls. Parameters and totals are the
    eager model's, also once saved and loaded (which unties the parameters: they are tied
    again by storage)."""
    model = Shared().eval()
    x = torch.randn(3, 4)
    eager = torchtally.analyze(model, x)
    assert eager.by_module() == {"": 3 * 16 * 2 + 3 * 8, "block": 3 * 16 * 2, "out": 3 * 8}
    if kind == "saved-and-loaded":
        torch.export.save(torch.export.export(model, (x,)), tmp_path / "shared.pt2")
        artefact = torch.export.load(tmp_path / "shared.pt2")
    else:
        artefact = ARTEFACTS[kind](model, x)
    analysis = torchtally.analyze(artefact, x)
    assert analysis.by_module() == {"": 120, "block": 48, "again": 48, "out": 24}
    assert dict(analysis.params) == dict(eager.params)


def test_torchscript_free_functions_name_operators_as_eager_code() -> None:
    """A scripted helper function is not a torch function: the op keeps the name of the torch
    function the helper calls (linear), as the function mode names eager code's ops."""
    model = torch.jit.script(Helper())
    analysis = torchtally.analyze(model, torch.randn(2, 4))
    assert analysis.by_operator() == {"linear": 2 * 4 * 3}
    assert analysis.by_module() == {"": 24, "inner": 24}


@torch.jit.script
def project(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return nn.functional.linear(x, weight).relu()


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return project(x, self.weight)


class Helper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_the_profiler_that_finds_torchscript_modules_prints_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    scripted = torch.jit.script(SmallNet().eval())
    torchtally.analyze(scripted, torch.randn(1, 3, 16, 16), warn_unsupported=False)
    assert capfd.readouterr().err == ""


def test_fvcore_and_mmengine_entry_points_take_artefacts() -> None:
    model = SmallNet().eval()
    x = torch.randn(2, 3, 16, 16)
    eager = torchtally.FlopAnalyzer(model, x).by_module()
    assert torchtally.FlopAnalyzer(torch.jit.script(model), x).by_module() == eager
    info = torchtally.get_model_complexity_info(torch.fx.symbolic_trace(model), inputs=(x,))
    assert info["flops"] == SMALL
    from torchtally.compat.fvcore import FlopCountAnalysis

    program = torch.export.export(model, (x,))
    for artefact in (program, torch.jit.script(model), torch.fx.symbolic_trace(model)):
        assert FlopCountAnalysis(artefact, x).by_module() == FlopCountAnalysis(model, x).by_module()


def test_a_torch_compile_wrapper_is_analysed_as_the_module_it_compiles(
    recwarn: pytest.WarningsRecorder,
) -> None:
    from torchtally.compat.fvcore import FlopCountAnalysis

    model = SmallNet().eval()
    x = torch.randn(2, 3, 16, 16)
    compiled = torch.compile(model)
    expected = torchtally.analyze(model, x, warn_unsupported=False)
    for mode in ("auto", "real"):
        analysis = torchtally.analyze(compiled, x, mode=mode, warn_unsupported=False)
        assert analysis.by_module() == expected.by_module()  # the model's names, not _orig_mod.
        assert analysis.modules[""].type_name == "SmallNet"
    assert FlopCountAnalysis(compiled, x).by_module() == FlopCountAnalysis(model, x).by_module()
    assert torchtally.FlopAnalyzer(compiled, x).total() == SMALL
    # the wrapper itself never ran: PyTorch warns when it runs under global module hooks
    assert not [w for w in recwarn if "global hooks on modules" in str(w.message)]


def test_a_pt2_file_loads_without_its_weights_and_counts_the_same(tmp_path: Path) -> None:
    model = SmallNet().eval()
    x = torch.randn(2, 3, 16, 16)
    path = tmp_path / "small.pt2"
    torch.export.save(torch.export.export(model, (x,)), path)
    program = torchtally.load_exported(path)
    assert {t.device.type for t in program.state_dict.values()} == {"meta"}
    analysis = torchtally.analyze(program)
    assert analysis.mode == "meta"
    assert analysis.total() == SMALL
    assert dict(analysis.params) == dict(torchtally.analyze(model, x).params)
    with_weights = torchtally.load_exported(path, weights=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in with_weights.state_dict.items())
    assert torchtally.analyze(with_weights, mode="real").total() == SMALL


def _two() -> int:
    return 2


def _two_again() -> int:  # no inputs, and its first instruction is a call
    return _two()


def _sizes(x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor([x.shape[-2], x.shape[-1]], dtype=torch.float32)  # memory written


class ListBuilt(nn.Module):
    """TorchScript writes `torch.tensor([...])` into memory directly: no fake tensor can take it;
    and a function without inputs that calls another, which crashed the profiler's hierarchy."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x) * _two_again()
        return y * torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1) + _sizes(x).sum()


class HoldsAScriptedPart(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 1)
        self.part = torch.jit.script(ListBuilt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.part(self.stem(x))


class CallsAFunctionWithoutInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * _two_again()


def test_torchscript_calling_a_function_without_inputs_runs_under_the_profiler() -> None:
    """PyTorch's module hierarchy read before the start of `_two_again`'s frame (its first
    instruction a call) and crashed the process; the profiler now records no function frames."""
    scripted = torch.jit.script(CallsAFunctionWithoutInputs())  # compiled on its first run
    analysis = torchtally.analyze(scripted, torch.randn(2, 4), mode="real", elementwise=True)
    assert analysis.by_module() == {"": 2 * 16 + 2 * 4, "linear": 2 * 16}


def test_torchscript_that_builds_tensors_from_lists_runs_for_real_not_on_fake_tensors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = ListBuilt().eval()
    x = torch.randn(2, 3, 8, 8)
    scripted = torch.jit.script(model)
    expected = torchtally.analyze(model, x, warn_unsupported=False)
    for mode in ("fake", "meta"):
        with pytest.raises(torchtally.TraceError, match="builds a tensor from a list") as error:
            torchtally.analyze(scripted, x, mode=mode)
        assert 'test_artefacts.py", line' in str(error.value)  # where, in the model's code
        assert "mode='real'" in str(error.value)
    analysis = torchtally.analyze(scripted, x, warn_unsupported=False)  # auto: real, said why
    assert analysis.mode == "real"
    assert "builds a tensor from a list" in caplog.text and "running it for real" in caplog.text
    assert analysis.by_module() == expected.by_module() == {"": 2 * 4 * 27 * 36, "conv": 7776}
    held = torchtally.analyze(HoldsAScriptedPart(), x, warn_unsupported=False)
    assert held.mode == "real"  # a scripted submodule of an eager model is looked through too
    harmless = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    assert torchtally.analyze(harmless, torch.randn(2, 4)).mode == "fake"


@pytest.mark.parametrize("mode", ["meta", "fake", "auto"])
@pytest.mark.parametrize("on", ["meta", "cpu"])
def test_torchscript_loaded_on_the_meta_device_counts_as_eager(
    tmp_path: Path, mode: str, on: str
) -> None:
    """``torch.jit.load(path, map_location="meta")``: a TorchScript file counted without its
    weights. Its weights stay in C++; their fakes claim the inputs' device, as an eager
    model's meta weights do (batch norm's saved statistics then have the CPU's sizes)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 5)
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(model), path)
    scripted = torch.jit.load(path, map_location="meta")
    analysis = torchtally.analyze(scripted, x.to(on), mode=mode, warn_unsupported=False)
    expected = torchtally.analyze(model, x, warn_unsupported=False)
    assert analysis.mode == ("meta" if mode == "auto" else mode)
    for metric in ("flops", "activations", "bytes"):
        assert analysis.by_module(metric) == expected.by_module(metric), metric
    assert analysis.memory() == expected.memory()
    assert dict(analysis.params) == dict(expected.params)
    assert {t.device.type for t in scripted.parameters()} == {"meta"}  # left as they were
    with pytest.raises(ValueError, match="weights are on the meta device"):
        torchtally.analyze(scripted, x, mode="real")


def test_torchscript_inside_a_profiler_session_is_refused_and_the_session_left_alone() -> None:
    """TorchScript is analysed under the profiler, and one profiler runs at a time."""
    scripted = torch.jit.script(SmallNet().eval())
    x = torch.randn(2, 3, 16, 16)
    with torch.profiler.profile() as session:
        with pytest.raises(RuntimeError, match="a profiler session is running: analyse the"):
            torchtally.analyze(scripted, x)
        scripted(x)
    assert any(event.name == "aten::linear" for event in session.events())


def test_the_packages_a_saved_file_calls_ops_of_are_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import zipfile

    from torchtally.artefacts import import_op_libraries

    for name, body in (("tt_oplib", "LOADED = True\n"), ("tt_broken", "raise ImportError('no')\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    code = (
        "def forward(self, x):\n"
        "  y = ops.tt_oplib.scale(x)\n"  # a custom op: its package is imported
        "  z = __torch__.torchvision.ops.tt_not_a_package.f(y)\n"  # a module path: not an op
        "  return ops.tt_broken.g(z) + ops.aten.add(z, z)\n"  # broken: warned; aten: no package
    )
    archive = tmp_path / "model.pt"
    with zipfile.ZipFile(archive, "w") as file:
        file.writestr("model/code/__torch__.py", code)
        file.writestr("model/data/0", b"\0" * 16)
    for name in ("tt_oplib", "tt_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.warns(UserWarning, match="importing tt_broken, whose ops .* calls, failed"):
        assert import_op_libraries(archive) == ["tt_oplib"]
    assert sys.modules["tt_oplib"].LOADED
    with pytest.warns(UserWarning, match="tt_broken"):  # the broken one is tried again
        assert import_op_libraries(archive) == []  # tt_oplib imported already
    not_an_archive = tmp_path / "model.pt2"
    not_an_archive.write_bytes(b"not a zip")
    assert import_op_libraries(not_an_archive) == []

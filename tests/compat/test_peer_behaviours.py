"""What fvcore's and mmengine's own analysis tests check, checked here on the drop-ins.

fvcore's ``tests/test_flop_count.py``, ``test_activation_count.py``, ``test_jit_model_analysis.py``,
``test_param_count.py``, ``test_print_model_statistics.py`` and mmengine's ``test_analysis``
(which repeats them for its names, plus ``get_model_complexity_info``): each behaviour they test
has a test of ours below, written for this project with hand-computed counts and run against
``torchtally.compat.fvcore`` and ``torchtally.compat.mmengine`` alike. Not ported: fvcore's
private printing helpers (``_pretty_statistics``, ``_model_stats_table``, ...), which are not
provided. Where the peers' behaviour cannot or should not hold (a TracerWarning, a scripted
function counted as 0), the test says what happens instead.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

import torchtally.compat.fvcore as fv
import torchtally.compat.mmengine as mm
from torchtally.compat.fvcore import jit_handles

PEERS = {
    "fvcore": SimpleNamespace(
        flops=fv.FlopCountAnalysis,
        acts=fv.ActivationCountAnalysis,
        flop_count=fv.flop_count,
        activation_count=fv.activation_count,
        jit=fv.JitModelAnalysis,
        parameter_count=fv.parameter_count,
        parameter_count_table=fv.parameter_count_table,
    ),
    "mmengine": SimpleNamespace(
        flops=mm.FlopAnalyzer,
        acts=mm.ActivationAnalyzer,
        flop_count=mm.flop_count,
        activation_count=mm.activation_count,
        jit=mm.JitModelAnalysis,
        parameter_count=mm.parameter_count,
        parameter_count_table=mm.parameter_count_table,
    ),
}


@pytest.fixture(params=list(PEERS))
def lib(request: pytest.FixtureRequest) -> SimpleNamespace:
    return PEERS[request.param]


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)


def gflops(lib: SimpleNamespace, model: nn.Module, *inputs: Any, **ops: Any) -> dict[str, float]:
    counts, _ = lib.flop_count(model, inputs, ops or None)
    return dict(counts)


# --- flop counting (test_flop_count.py) ----------------------------------------------------------


class LinearSigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x))


def test_customized_handles_add_and_replace(lib: SimpleNamespace) -> None:
    x = torch.rand(10, 5)
    counts = gflops(lib, LinearSigmoid(), x, **{"aten::sigmoid": lambda i, o: Counter(sigmoid=10)})
    assert counts == {"linear": 10 * 5 * 4 / 1e9, "sigmoid": 10 / 1e9}
    counts = gflops(lib, LinearSigmoid(), x, **{"aten::linear": lambda i, o: Counter(linear=400)})
    assert counts == {"linear": 400 / 1e9}


def test_unsupported_ops_are_returned(lib: SimpleNamespace) -> None:
    _, unsupported = lib.flop_count(LinearSigmoid(), (torch.rand(10, 5),))
    assert unsupported == Counter({"aten::sigmoid": 1})


@pytest.mark.parametrize(
    ("shape", "flops"), [((5, 10), 5 * 10 * 20), ((5, 3, 10), 5 * 3 * 10 * 20)]
)
def test_linear(lib: SimpleNamespace, shape: tuple[int, ...], flops: int) -> None:
    assert gflops(lib, nn.Linear(10, 20), torch.randn(*shape)) == {"linear": flops / 1e9}


# (dims, batch, in, out, size, kernel, padding, stride, groups, transposed, output_padding)
CONVS = {
    "2d": (2, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    "strided": (2, 2, 10, 6, 20, 3, 1, 2, 1, False, 0),
    "grouped": (2, 5, 16, 8, 15, 5, 2, 1, 4, False, 0),
    "depthwise": (2, 5, 16, 8, 15, 3, 1, 1, 8, False, 0),
    "1d": (1, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    "3d": (3, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    "transposed": (2, 5, 10, 3, 15, 3, 1, 1, 1, True, 0),
    "strided transposed": (2, 5, 10, 3, 15, 3, 1, 2, 1, True, 0),
    "output padding": (2, 5, 10, 3, 15, 3, 1, 3, 1, True, 2),
}


@pytest.mark.parametrize("case", list(CONVS))
def test_convolutions(lib: SimpleNamespace, case: str) -> None:
    dims, batch, cin, cout, size, kernel, pad, stride, groups, transposed, out_pad = CONVS[case]
    layers = {
        (False, 1): nn.Conv1d,
        (False, 2): nn.Conv2d,
        (False, 3): nn.Conv3d,
        (True, 2): nn.ConvTranspose2d,
    }
    extra = {"output_padding": out_pad} if transposed else {}
    conv = layers[transposed, dims](cin, cout, kernel, stride, pad, groups=groups, **extra)
    x = torch.randn(batch, cin, *[size] * dims)
    # every output position (every input position, transposed) takes in/groups x kernel^d
    # inputs for each of the out channels
    positions = size if transposed else (size + 2 * pad - kernel) // stride + 1
    flops = batch * cin * cout * kernel**dims * positions**dims // groups
    assert gflops(lib, conv, x) == {"conv": flops / 1e9}


class MatmulNet(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, y)


@pytest.mark.parametrize(
    ("a", "b", "batches"),
    [
        ((20, 10), (10, 100), 1),
        ((1, 20, 10), (1, 10, 100), 1),
        ((2, 2, 20, 10), (2, 2, 10, 100), 4),
        ((1, 20, 10), (10, 100), 1),
        ((2, 20, 10), (10, 100), 2),
    ],
)
def test_matmul(lib: SimpleNamespace, a: tuple[int, ...], b: tuple[int, ...], batches: int) -> None:
    counts = gflops(lib, MatmulNet(), torch.randn(*a), torch.randn(*b))
    assert counts == {"matmul": batches * 20 * 10 * 100 / 1e9}


class BMMNet(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, y)


def test_bmm(lib: SimpleNamespace) -> None:
    counts = gflops(lib, BMMNet(), torch.randn(2, 5, 2), torch.randn(2, 2, 12))
    assert counts == {"bmm": 2 * 5 * 2 * 12 / 1e9}


class EinsumNet(nn.Module):
    def __init__(self, equation: str) -> None:
        super().__init__()
        self.equation = equation

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.einsum(self.equation, x, y)


@pytest.mark.parametrize(
    ("equation", "a", "b"),
    [("nct,ncp->ntp", (1, 5, 2), (1, 5, 12)), ("ntg,ncg->nct", (1, 2, 6), (1, 5, 6))],
)
def test_einsum(
    lib: SimpleNamespace, equation: str, a: tuple[int, ...], b: tuple[int, ...]
) -> None:
    counts = gflops(lib, EinsumNet(equation), torch.randn(*a), torch.randn(*b))
    every_index = {"nct,ncp->ntp": 1 * 5 * 2 * 12, "ntg,ncg->nct": 1 * 2 * 6 * 5}[equation]
    assert counts == {"einsum": every_index / 1e9}


def test_batch_norm(lib: SimpleNamespace) -> None:
    eval_1d = nn.BatchNorm1d(10, affine=False).eval()
    assert gflops(lib, eval_1d, torch.randn(10, 10)) == {"batch_norm": 100 / 1e9}
    training_2d = nn.BatchNorm2d(10, affine=False)
    counts = gflops(lib, training_2d, torch.randn(10, 10, 5, 5))
    assert counts == {"batch_norm": 4 * 2500 / 1e9}
    training_3d = nn.BatchNorm3d(10, affine=False)
    counts = gflops(lib, training_3d, torch.randn(10, 10, 5, 5, 5))
    assert counts == {"batch_norm": 4 * 12500 / 1e9}


class ThreeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 5, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear1 = nn.Linear(5, 3)
        self.linear2 = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.linear1(torch.flatten(self.pool(self.conv(x)), 1)))


def test_three_layers_and_by_module(lib: SimpleNamespace) -> None:
    x = torch.randn(4, 2, 10, 10)
    conv, pool = 4 * 5 * 2 * 100, 4 * 5 * 100  # pooling: one per input element
    linear = 4 * 5 * 3 + 4 * 3 * 1
    counts = gflops(lib, ThreeNet(), x)
    assert counts == {"conv": conv / 1e9, "linear": linear / 1e9, "adaptive_avg_pool2d": pool / 1e9}
    by_module = lib.flops(ThreeNet(), (x,)).by_module()
    expected = {"conv": conv, "pool": pool, "linear1": 60, "linear2": 12}
    assert by_module == Counter({"": sum(expected.values()), **expected})


class Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(grad)


def test_custom_autograd_function(lib: SimpleNamespace) -> None:
    class Mod(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return Identity.apply(x)

    flops = lib.flops(Mod(), (torch.rand(4, 5),)).set_op_handle(
        "prim::PythonOp.Identity", lambda *args, **kwargs: 42
    )
    assert flops.total() == 42


def test_scripted_function_is_counted(lib: SimpleNamespace) -> None:
    # fvcore cannot see into it and reports prim::CallFunction; here its ops are counted.
    def square(x: torch.Tensor) -> torch.Tensor:
        return x @ x

    class Mod(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.jit.script(square)(x * x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        flops = lib.flops(Mod(), (torch.rand(5, 5),))
        assert flops.by_operator() == Counter({"mm": 125})
    assert flops.unsupported_ops() == Counter({"aten::mul": 1})


# --- activations (test_activation_count.py) ---------------------------------------------------


class SmallConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 1, 1)
        self.conv2 = nn.Conv2d(8, 4, 1, 2)
        self.conv3 = nn.Conv2d(4, 2, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x)))


OUTPUTS = (8 * 32 * 32, 4 * 16 * 16, 2 * 8 * 8)  # SmallConvNet on 1 x 3 x 32 x 32


def test_activations_of_convolutions_and_linear(lib: SimpleNamespace) -> None:
    x = torch.randn(1, 3, 32, 32)
    counts, _ = lib.activation_count(SmallConvNet(), (x,))
    assert dict(counts) == {"conv": sum(OUTPUTS) / 1e6}
    counts, _ = lib.activation_count(nn.Linear(10, 20), (torch.randn(1, 10),))
    assert dict(counts) == {"linear": 20 / 1e6}


def test_activation_handles(lib: SimpleNamespace) -> None:
    x = torch.randn(1, 3, 32, 32)
    ops = {"aten::_convolution": lambda i, o: Counter({"conv": 100})}
    counts, _ = lib.activation_count(SmallConvNet(), (x,), ops)
    assert dict(counts) == {"conv": 300 / 1e6}


def test_activation_analysis_by_module(lib: SimpleNamespace) -> None:
    x = torch.randn(1, 3, 32, 32)
    assert lib.acts(nn.Linear(10, 20), (torch.randn(1, 10),)).by_module() == Counter({"": 20})
    expected = dict(zip(("conv1", "conv2", "conv3"), OUTPUTS, strict=True))
    assert lib.acts(SmallConvNet(), (x,)).by_module() == {"": sum(OUTPUTS), **expected}


# --- the analysis class (test_jit_model_analysis.py) --------------------------------------------


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 1)  # 5 positions x 2 x 2 = 20
        self.fc = nn.Linear(10, 10)  # 100

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(x.reshape(-1, 2, 5)), 1)
        return 3 * self.fc(x) + 1


class NestedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.submod = Inner()
        self.fc = nn.Linear(20, 10)  # 200
        self.conv = nn.Conv1d(4, 4, 3, padding=1)  # 5 positions x 3 x 4 x 4 = 240

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.submod(self.fc(torch.flatten(self.conv(x), 1))) ** 2


NESTED = {
    "": Counter({"conv": 260, "linear": 300}),
    "fc": Counter({"linear": 200}),
    "conv": Counter({"conv": 240}),
    "submod": Counter({"conv": 20, "linear": 100}),
    "submod.fc": Counter({"linear": 100}),
    "submod.conv": Counter({"conv": 20}),
}


def nested(lib: SimpleNamespace) -> Any:
    return lib.flops(NestedNet(), (torch.randn(1, 4, 5),)).unsupported_ops_warnings(False)


def nested_jit(lib: SimpleNamespace) -> Any:
    """A bare analysis of NestedNet with fvcore's addmm and linear handles only."""
    handles = {
        "aten::addmm": jit_handles.addmm_flop_jit,
        "aten::linear": jit_handles.linear_flop_jit,
    }
    analyzer = lib.jit(NestedNet(), (torch.randn(1, 4, 5),)).set_op_handle(**handles)
    return analyzer.unsupported_ops_warnings(False)


def test_total_by_module_and_by_operator(lib: SimpleNamespace) -> None:
    analyzer = nested(lib)
    for name, counts in NESTED.items():
        assert analyzer.total(name) == sum(counts.values())
        assert analyzer.by_operator(name) == counts
    assert analyzer.by_module() == {name: sum(c.values()) for name, c in NESTED.items()}
    assert analyzer.by_module_and_operator() == NESTED


def test_unused_module(lib: SimpleNamespace) -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.unused = nn.Linear(10, 10), nn.Linear(10, 1), nn.Linear(20, 20)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.act(self.fc1(x)))

    analyzer = lib.flops(Unused(), (torch.randn(1, 10),))
    assert (analyzer.total("unused"), analyzer.by_operator("unused")) == (0, Counter())
    assert analyzer.total() == 110
    assert analyzer.uncalled_modules() == {"unused"}


def test_repeated_module(lib: SimpleNamespace) -> None:
    class Repeated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(10, 10), nn.Linear(10, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.fc2(self.fc1(self.fc1(self.fc1(x)))))

    analyzer = lib.flops(Repeated(), (torch.randn(1, 10),))
    assert (analyzer.total("fc1"), analyzer.total("fc2"), analyzer.total()) == (300, 200, 500)
    assert analyzer.by_operator("fc1") == Counter({"linear": 300})
    assert analyzer.uncalled_modules() == set()


def test_calls_through_other_methods(lib: SimpleNamespace) -> None:
    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(10, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

        def other(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.submod, self.fc = Holder(), nn.Linear(10, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.submod.other(self.fc(x))

    x = (torch.randn(1, 10),)
    caller = lib.flops(Model(), x).ancestor_mode("caller")
    assert (caller.total("submod"), caller.total("submod.fc"), caller.total()) == (0, 10, 110)
    assert caller.uncalled_modules() == {"submod"}
    owner = lib.flops(Model(), x).ancestor_mode("owner")
    assert (owner.total("submod"), owner.total("submod.fc"), owner.total()) == (10, 10, 110)
    assert owner.uncalled_modules() == set()


def test_shared_modules_and_aliases(lib: SimpleNamespace) -> None:
    class Wrapper(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.submod = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.submod(x)

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            inner = nn.Linear(10, 10)  # 100 a call
            self.submod1, self.submod2 = Wrapper(inner), Wrapper(inner)
            self.multiname1 = self.multiname2 = nn.Linear(10, 1)  # 10 a call

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.submod1(x) + self.submod2(x)
            return self.multiname1(x) + self.multiname2(x)

    analyzer = lib.flops(Shared(), (torch.randn(1, 10),)).ancestor_mode("caller")
    expected = {"": 220, "submod1": 100, "submod1.submod": 200, "submod2": 100, "multiname1": 20}
    assert analyzer.by_module() == expected
    assert analyzer.total("submod2.submod") == 200 and analyzer.total("multiname2") == 20
    assert analyzer.canonical_module_name("multiname2") == "multiname1"
    assert analyzer.canonical_module_name("submod2.submod") == "submod1.submod"
    assert analyzer.uncalled_modules() == set()


def test_recursive_scope_counts_once(lib: SimpleNamespace) -> None:
    class Recursive(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(10, 1)

        def forward(self, x: torch.Tensor, count: int = 3) -> torch.Tensor:
            return self(x, count - 1) if count > 0 else self.fc(x)

    analyzer = lib.flops(Recursive(), (torch.randn(1, 10),))
    assert (analyzer.total(), analyzer.total("fc")) == (10, 10)
    assert analyzer.uncalled_modules() == set()


def test_data_parallel(lib: SimpleNamespace) -> None:
    model = nn.DataParallel(NestedNet()).cpu()
    analyzer = lib.flops(model, (torch.randn(1, 4, 5),)).unsupported_ops_warnings(False)
    expected = {f"module.{n}" if n else "module": c for n, c in NESTED.items()}
    assert analyzer.by_module_and_operator() == {"": NESTED[""], **expected}
    assert analyzer.uncalled_modules() == set()
    for mode in ("caller", "owner"):
        root = lib.flops(nn.DataParallel(nn.Linear(10, 10)).cpu(), (torch.randn(10, 10),))
        assert root.ancestor_mode(mode).total() == 1000


def test_unsupported_ops_per_module(lib: SimpleNamespace) -> None:
    analyzer = nested_jit(lib)
    inner = Counter({"aten::_convolution": 1, "aten::mul": 1, "aten::add": 1})
    assert analyzer.unsupported_ops("submod") == inner
    assert analyzer.unsupported_ops("submod.conv") == Counter({"aten::_convolution": 1})
    assert analyzer.unsupported_ops("fc") == Counter()
    assert analyzer.unsupported_ops() == inner + Counter({"aten::_convolution": 1, "aten::pow": 1})


def test_changing_handles(lib: SimpleNamespace) -> None:
    analyzer = nested_jit(lib)
    analyzer.total()
    analyzer.set_op_handle("aten::_convolution", jit_handles.conv_flop_jit)
    assert analyzer.by_module_and_operator() == NESTED
    analyzer.set_op_handle("aten::linear", lambda i, o: Counter({"dummy_op": 1000}))
    dummy = analyzer.by_module_and_operator()
    assert dummy[""] == Counter({"conv": 260, "dummy_op": 2000})
    assert dummy["submod.fc"] == Counter({"dummy_op": 1000})
    analyzer.clear_op_handles()
    assert analyzer.by_module_and_operator() == {name: Counter() for name in NESTED}


def test_copy(lib: SimpleNamespace) -> None:
    handles = {"aten::linear": jit_handles.linear_flop_jit}
    analyzer = lib.jit(NestedNet(), (torch.randn(1, 4, 5),)).set_op_handle(**handles)
    analyzer.unsupported_ops_warnings(False).tracer_warnings("none")
    copy = analyzer.copy()
    assert copy.by_module_and_operator() == analyzer.by_module_and_operator()
    assert (copy._enable_warn_unsupported_ops, copy._warn_trace) == (False, "none")
    copy.unsupported_ops_warnings(True)
    assert analyzer._enable_warn_unsupported_ops is False
    other = analyzer.copy(new_model=nn.Linear(10, 10), new_inputs=(torch.randn(5, 10),))
    assert other.total() == 500 and analyzer.total() == 300


def test_warnings_and_their_switches(
    lib: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    # fvcore's model also warns from its JIT trace (TracerWarning); there is none here.
    class Warns(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(10, 1), nn.Linear(10, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            warnings.warn("Dummy RuntimeWarning.", RuntimeWarning, stacklevel=1)
            return self.fc1(x) + 2  # fc2 never called

    analyzer = lib.flops(Warns(), (torch.randn(1, 10),))
    with pytest.warns(RuntimeWarning):
        analyzer.tracer_warnings("all").total()
    analyzer._stats = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analyzer.tracer_warnings("none").total()
    messages = _logged(lib, caplog, analyzer)
    assert any("Unsupported operator aten::add encountered 1 time(s)" in m for m in messages)
    assert any("never called" in m and m.endswith("fc2") for m in messages)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert _logged(lib, caplog, analyzer) == []


def _logged(lib: SimpleNamespace, caplog: pytest.LogCaptureFixture, analyzer: Any) -> list[str]:
    """The warnings one analysis run logs (through mmengine's logger for its names)."""
    analyzer._stats = None
    if lib is PEERS["mmengine"]:
        mmengine = pytest.importorskip("mmengine")
        logger = mmengine.MMLogger.get_current_instance()
        records: list[str] = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
        logger.addHandler(handler)
        filters = [(h, list(h.filters)) for h in logger.handlers]
        for h, _ in filters:  # mmengine drops a warning it has shown once
            h.filters = []
        try:
            analyzer.tracer_warnings("none").total()
        finally:
            logger.removeHandler(handler)
            for h, saved in filters:
                h.filters = saved
        return records
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        analyzer.tracer_warnings("none").total()
    return [r.getMessage() for r in caplog.records]


def test_uncalled_containers_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    class A(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.submod = nn.ModuleList([nn.Linear(3, 3)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.submod[0](x) + 1

    with caplog.at_level(logging.WARNING):
        fv.FlopCountAnalysis(A(), torch.rand(1, 3)).unsupported_ops_warnings(False).total()
    assert not any("never called" in r.getMessage() for r in caplog.records)


# --- parameters (test_param_count.py) ------------------------------------------------------------


class Convs(nn.Module):
    def __init__(self, reuse: bool = False, name: str = "conv2") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(100, 100, 3)
        setattr(self, name, nn.Conv2d(100, 100, 3))
        if reuse:
            self.conv2.weight = self.conv1.weight


def test_parameters_counted_once(lib: SimpleNamespace) -> None:
    counts = lib.parameter_count(Convs())
    assert (counts[""], counts["conv2"]) == (180200, 90100)
    counts = lib.parameter_count(Convs(reuse=True))
    assert (counts[""], counts["conv2"]) == (90200, 100)


def test_parameter_table_rows_by_name_not_prefix(lib: SimpleNamespace) -> None:
    table = lib.parameter_count_table(Convs(name="conv111"))
    assert sum("conv111.weight" in line for line in table.split("\n")) == 1


# --- printing (test_print_model_statistics.py) ------------------------------------------------


class Leaf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.d1, self.d2 = nn.Linear(10, 10), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d1(self.d2(x))


class A1(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b1 = nn.Module()
        self.b1.c1 = Leaf()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b1.c1.forward(x)  # c1 is not called: its counts go to a1


class A2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b1 = nn.Sequential()
        self.b1.c1, self.b1.c2 = nn.Linear(10, 10), nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b1(x)


class TestNet(nn.Module):
    __test__ = False

    def __init__(self) -> None:
        super().__init__()
        self.a1, self.a2 = A1(), A2()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a1(self.a2(x))


def test_flop_count_table() -> None:
    model, x = TestNet(), (torch.randn(1, 10),)
    table = fv.flop_count_table(fv.FlopCountAnalysis(model, x))
    assert " a1 " not in table  # a1 -> a1.b1 -> a1.b1.c1 -> a1.b1.c1.d1 merged into one row
    assert "a1.b1.c1.d1.bias" in table and "a2.b1.c1.weight" in table and "(10, 10)" in table
    assert " a2.b1 " in table  # two children: kept
    assert "#activations" not in table and "#parameters or shape" in table
    assert " 0.33K" in table and "  0.33K" not in table  # the model row is not indented
    table = fv.flop_count_table(
        fv.FlopCountAnalysis(model, x),
        activations=fv.ActivationCountAnalysis(model, x),
        show_param_shapes=False,
    )
    assert "#activations" in table and "#parameters " in table
    assert "#parameters or shape" not in table and "a2.b1.c1.weight" not in table
    assert "(10, 10)" not in table and "  20" in table


def test_flop_count_str() -> None:
    model, x = TestNet(), (torch.randn(1, 10),)
    text = fv.flop_count_str(fv.FlopCountAnalysis(model, x).ancestor_mode("caller"))
    assert "N/A indicates a possibly missing statistic" in text
    assert "#params: 0.11K, #flops: 100" in text
    assert "(d2): ReLU()" in text  # nothing to show
    assert "#params: 0.11K, #flops: N/A" in text  # c1, never called
    text = fv.flop_count_str(
        fv.FlopCountAnalysis(model, x).ancestor_mode("caller"),
        activations=fv.ActivationCountAnalysis(model, x).ancestor_mode("caller"),
    )
    assert "#params: 0.33K, #flops: 0.3K, #acts: 30" in text
    assert "#params: 0.11K, #flops: N/A, #acts: N/A" in text


def test_printing_a_model_with_nothing_to_count() -> None:
    model, x = nn.ReLU(), (torch.randn(1, 10),)
    assert fv.flop_count_table(fv.FlopCountAnalysis(model, x))
    assert fv.flop_count_str(fv.FlopCountAnalysis(model, x))
    assert mm.complexity_stats_table(mm.FlopAnalyzer(model, x))


# --- mmengine's get_model_complexity_info (test_print_helper.py) -------------------------------


class Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(5, 6), nn.Linear(7, 6)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor | float) -> torch.Tensor:
        if isinstance(x2, torch.Tensor):
            return self.l1(x1) + self.l2(x2)
        return x2 * self.l1(x1) + (1 - x2) * self.l1(x1)


def test_complexity_info_inputs_and_shapes() -> None:
    model, x1, x2 = Two(), torch.randn(1, 9, 5), torch.randn(1, 9, 7)
    linear1, linear2 = 9 * 5 * 6, 9 * 7 * 6
    info = mm.get_model_complexity_info(model.l1, inputs=x1)
    assert (info["flops"], info["params"]) == (linear1, 36)
    assert mm.get_model_complexity_info(model.l1, input_shape=(9, 5))["flops"] == linear1
    info = mm.get_model_complexity_info(model, inputs=(x1, x2))
    assert (info["flops"], info["params"]) == (linear1 + linear2, 36 + 48)
    assert mm.get_model_complexity_info(model, input_shape=((9, 5), (9, 7)))["flops"] == 648
    assert mm.get_model_complexity_info(model, inputs=(x1, 0.3))["flops"] == 2 * linear1
    with pytest.raises(ValueError, match="should be set"):
        mm.get_model_complexity_info(model)
    with pytest.raises(ValueError, match="cannot be both set"):
        mm.get_model_complexity_info(model, inputs=x1, input_shape=(9, 5))

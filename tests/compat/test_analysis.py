"""`JitModelAnalysis` and its subclasses in ``torchtally.compat.fvcore`` / ``.mmengine``: how
fvcore-style handles are matched to what ran, the defaults, the settings, the warnings, and the
printouts' layouts. Every expected count is worked out by hand in the test."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchtally.compat.fvcore as fv
import torchtally.compat.mmengine as mm
from torchtally.compat.fvcore.flop_count import _DEFAULT_SUPPORTED_OPS
from torchtally.compat.fvcore.jit_handles import get_shape
from torchtally.compat.jit_analysis import CompatWarning
from torchtally.compat.mmengine.complexity_analysis import _DEFAULT_SUPPORTED_FLOP_OPS
from torchtally.counting import HandlerWarning

from .models import Counting

X = torch.randn(2, 4)  # Counting: linear 2 x 4 x 3 = 24 flops, 6 activations


def quiet(analyzer: fv.JitModelAnalysis) -> Any:
    return analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


class Mixed(nn.Module):
    """Every way a matrix product is issued: nn.Linear, torch.matmul, torch.mm, einsum."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)  # (2, 4) @ (4, 3): 24

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        z = torch.matmul(y, torch.ones(3, 5))  # 2 * 3 * 5 = 30
        w = torch.mm(z, torch.ones(5, 2))  # 2 * 5 * 2 = 20
        return torch.einsum("ij,jk->ik", w, torch.ones(2, 7))  # 2 * 2 * 7 = 28


def test_defaults_count_each_product_under_fvcores_name() -> None:
    flops = quiet(fv.FlopCountAnalysis(Mixed(), X))
    assert flops.by_operator() == Counter({"linear": 24, "matmul": 30, "mm": 20, "einsum": 28})
    assert flops.unsupported_ops() == Counter()


def test_a_composite_handle_counts_the_call_once_instead_of_its_parts() -> None:
    seen = []

    def linear(inputs: list[Any], outputs: list[Any]) -> int:
        seen.append([get_shape(v) for v in inputs])
        return 7

    flops = quiet(fv.FlopCountAnalysis(Mixed(), X)).set_op_handle("aten::linear", linear)
    assert flops.by_operator() == Counter({"linear": 7, "matmul": 30, "mm": 20, "einsum": 28})
    assert seen == [[[2, 4], [3, 4], [3]]]  # input, weight, bias: aten::linear's arguments
    flops.set_op_handle("aten::einsum", lambda i, o: Counter({"contraction": 1}))
    assert flops.by_operator("")["contraction"] == 1 and "einsum" not in flops.by_operator()
    flops.set_op_handle("aten::matmul", None)  # ignored: nothing counted, nothing reported
    assert "matmul" not in flops.by_operator() and flops.unsupported_ops() == Counter()


def test_an_op_handle_leaves_the_calls_of_composite_functions_alone() -> None:
    # As in fvcore: aten::mm counts torch.mm, not the mm that torch.matmul or nn.Linear issue.
    flops = quiet(fv.FlopCountAnalysis(Mixed(), X)).set_op_handle("aten::mm", lambda i, o: 1)
    assert flops.by_operator() == Counter({"linear": 24, "matmul": 30, "mm": 1, "einsum": 28})
    flops.set_op_handle("aten::addmm", lambda i, o: 1000)
    assert flops.by_operator()["linear"] == 24
    # Without a handle for a composite op, its call is reported as that op, not counted by the
    # handles of what it runs.
    bare = quiet(fv.JitModelAnalysis(Mixed(), X)).set_op_handle("aten::mm", lambda i, o: 1)
    assert bare.by_operator() == Counter({"mm": 1})
    assert bare.unsupported_ops() == Counter(
        {"aten::linear": 1, "aten::matmul": 1, "aten::einsum": 1}
    )


def test_the_convolution_handle_gets_jit_arguments() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 2, 3, stride=2))
    flags = []

    def conv(inputs: list[Any], outputs: list[Any]) -> int:
        flags.append((len(inputs), inputs[6].toIValue(), inputs[8].toIValue()))
        return 1

    flops = quiet(fv.FlopCountAnalysis(model, torch.randn(1, 3, 8, 8)))
    # conv: 4 x 27 x 36 = 3888; transposed: 4 x 2 x 9 x 36 positions of its input = 2592
    assert flops.by_operator() == Counter({"conv": 3888 + 2592})
    flops.set_op_handle("aten::_convolution", conv)
    assert flops.by_operator() == Counter({"_convolution": 2})
    assert flags == [(13, False, 1), (13, True, 1)]


def test_a_custom_autograd_function_counts_as_one_unit() -> None:
    class Twice(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return torch.mm(x, x.t())  # 2 x 4 x 2 = 16 flops inside

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            return grad

    class Model(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return Twice.apply(x)

    flops = quiet(fv.FlopCountAnalysis(Model(), X))
    assert flops.by_operator() == Counter({"mm": 16})  # fvcore would see an opaque PythonOp
    flops.set_op_handle("prim::PythonOp.Twice", lambda i, o: 42)
    assert flops.by_operator() == Counter({"PythonOp.Twice": 42})


def test_none_ignores_an_op_that_has_a_default_handle() -> None:
    # fvcore's comment says set_op_handle("aten::batch_norm", None) ignores batch norm; in fvcore
    # the default handle still wins. Here it does what it says.
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
    flops = quiet(fv.FlopCountAnalysis(model, torch.randn(1, 3, 2, 2)))
    assert flops.by_operator() == Counter({"conv": 48, "batch_norm": 2 * 16})
    flops.set_op_handle("aten::batch_norm", None)
    assert flops.by_operator() == Counter({"conv": 48})
    assert "aten::batch_norm" in flops._ignored_ops and "aten::batch_norm" not in flops._op_handles


def test_a_bare_analysis_counts_nothing_and_reports_in_fvcores_names() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Softmax(1), nn.Flatten())
    model.append(nn.Linear(16, 2))
    analysis = quiet(fv.JitModelAnalysis(model.eval(), torch.randn(1, 3, 2, 2)))
    assert analysis.total() == 0
    assert analysis.unsupported_ops() == Counter(
        {"aten::_convolution": 1, "aten::batch_norm": 1, "aten::softmax": 1, "aten::linear": 1}
    )
    analysis.set_op_handle(**_DEFAULT_SUPPORTED_OPS)
    flops = quiet(fv.FlopCountAnalysis(model, torch.randn(1, 3, 2, 2)))
    assert analysis.by_module_and_operator() == flops.by_module_and_operator()
    assert analysis.unsupported_ops() == Counter({"aten::softmax": 1})


def test_a_subclass_counts_a_statistic_of_its_own() -> None:
    class OutputBytes(fv.JitModelAnalysis):
        def __init__(self, model: nn.Module, inputs: Any) -> None:
            super().__init__(model, inputs)
            self.set_op_handle("aten::linear", self.bytes_out, "aten::sigmoid", self.bytes_out)

        @staticmethod
        def bytes_out(inputs: list[Any], outputs: list[Any]) -> int:
            return 4 * int(torch.tensor(get_shape(outputs[0])).prod())

    stats = quiet(OutputBytes(Counting(), X))
    assert stats.by_operator() == Counter({"linear": 24, "sigmoid": 24})
    assert stats.unsupported_ops() == Counter({"aten::mul": 1})
    copy = stats.copy(new_inputs=torch.randn(5, 4))
    assert type(copy) is OutputBytes and copy.total() == 2 * 4 * 15
    assert stats.total() == 48  # unchanged


def test_the_default_maps_copy_and_extend() -> None:
    handles = dict(_DEFAULT_SUPPORTED_OPS)
    handles["aten::sigmoid"] = lambda i, o: 6
    flops = quiet(fv.FlopCountAnalysis(Counting(), X)).clear_op_handles().set_op_handle(**handles)
    assert flops.by_operator() == Counter({"linear": 24, "sigmoid": 6})
    assert _DEFAULT_SUPPORTED_FLOP_OPS is not _DEFAULT_SUPPORTED_OPS
    assert _DEFAULT_SUPPORTED_FLOP_OPS == _DEFAULT_SUPPORTED_OPS


def test_changes_to_the_default_map_apply_to_later_analyzers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(_DEFAULT_SUPPORTED_OPS, "aten::sigmoid", lambda i, o: 6)
    assert quiet(fv.FlopCountAnalysis(Counting(), X)).by_operator()["sigmoid"] == 6
    assert "sigmoid" not in quiet(mm.FlopAnalyzer(Counting(), X)).by_operator()


def test_clear_copy_and_settings() -> None:
    model = Counting()
    flops = quiet(fv.FlopCountAnalysis(model, X))
    assert flops.total() == 24
    flops.clear_op_handles()
    assert flops.total() == 0
    assert flops.unsupported_ops() == Counter(
        {"aten::linear": 1, "aten::sigmoid": 1, "aten::mul": 1}
    )
    flops.set_op_handle("aten::linear", lambda i, o: 5)
    copy = flops.copy()
    copy.set_op_handle("aten::linear", lambda i, o: 6)
    assert (flops.total(), copy.total()) == (5, 6)
    assert model.calls == 2  # one run each; changing handles recounts without running
    with pytest.raises(ValueError, match="Unrecognized ancestor mode"):
        flops.ancestor_mode("parent")
    with pytest.raises(ValueError, match="Unrecognized tracer warning mode"):
        flops.tracer_warnings("some")
    with pytest.raises(TypeError, match="pairs of names and handles"):
        flops.set_op_handle("aten::mm")
    with pytest.raises(TypeError, match="handle\\(inputs, outputs\\) or None"):
        flops.set_op_handle("aten::mm", 3)


def test_forgetting_the_results_runs_the_model_again() -> None:
    model = Counting()
    flops = quiet(fv.FlopCountAnalysis(model, X))
    flops.total()
    flops._stats = None  # what fvcore's tests do to trace again
    flops.total()
    assert model.calls == 2


def test_warnings_keep_fvcores_wording_and_switches(caplog: pytest.LogCaptureFixture) -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.used(x))

    with caplog.at_level(logging.WARNING):
        fv.FlopCountAnalysis(Model(), X).total()
    messages = [r.getMessage() for r in caplog.records]
    assert "Unsupported operator aten::sigmoid encountered 1 time(s)" in messages
    (uncalled,) = [m for m in messages if "never called" in m]
    assert uncalled.startswith("The following submodules of the model were never called")
    assert uncalled.endswith("parent calling module.\nunused")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        quiet(fv.FlopCountAnalysis(Model(), X)).total()
    assert caplog.records == []


def test_mmengine_logs_through_its_logger() -> None:
    mmengine = pytest.importorskip("mmengine")
    logger = mmengine.MMLogger.get_current_instance()
    with _Recorded(logger) as records:
        mm.FlopAnalyzer(Counting(), X).uncalled_modules_warnings(False).total()
    assert any("Unsupported operator aten::sigmoid encountered 1 time(s)" in r for r in records)


class _Recorded:
    """Records the warnings a logger emits (mmengine's logger does not propagate)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger, self.records = logger, []

    def __enter__(self) -> list[str]:
        self.handler = logging.Handler(logging.WARNING)
        self.handler.emit = lambda record: self.records.append(record.getMessage())  # type: ignore[method-assign]
        self.logger.addHandler(self.handler)
        return self.records

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self.handler)


def test_tracer_warnings_mode_filters_what_the_model_warns() -> None:
    class Warns(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            warnings.warn("from the model", RuntimeWarning, stacklevel=1)
            return x * 2

    with pytest.warns(RuntimeWarning, match="from the model"):
        quiet(fv.FlopCountAnalysis(Warns(), X)).total()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet(fv.FlopCountAnalysis(Warns(), X)).tracer_warnings("none").total()


def test_a_failing_handle_is_reported_never_a_silent_zero() -> None:
    def strided(inputs: list[Any], outputs: list[Any]) -> int:
        return inputs[0].type().strides()[0]

    flops = quiet(fv.FlopCountAnalysis(Counting(), X)).set_op_handle("aten::sigmoid", strided)
    with pytest.warns(HandlerWarning, match="aten::sigmoid .*not its strides"):
        assert flops.total() == 24
    assert flops.unsupported_ops()["aten::sigmoid"] == 1


@pytest.mark.parametrize(
    ("op", "advice"),
    [
        ("prim::CallFunction", "scripted function runs its ops"),
        ("aten::size", "Python ints"),
        ("prim::ListConstruct", "graph plumbing"),
    ],
)
def test_handles_for_jit_only_nodes_warn(op: str, advice: str) -> None:
    flops = fv.FlopCountAnalysis(Counting(), X)
    with pytest.warns(CompatWarning, match=f"{op} never runs.*{advice}"):
        flops.set_op_handle(op, lambda i, o: 1)


def test_counts_in_gflops_and_mega_activations() -> None:
    gflops, unsupported = fv.flop_count(Counting(), (X,))
    assert gflops == {"linear": 24 / 1e9} and unsupported == Counter(
        {"aten::sigmoid": 1, "aten::mul": 1}
    )
    macts, _ = fv.activation_count(Counting(), (X,))
    assert macts == {"linear": 6 / 1e6}
    gflops, _ = mm.flop_count(Counting(), (X,), {"aten::sigmoid": lambda i, o: 6})
    assert gflops == {"linear": 24 / 1e9, "sigmoid": 6 / 1e9}


def test_activations_are_output_elements() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    acts = quiet(fv.ActivationCountAnalysis(model, torch.randn(2, 3, 8, 8)))
    assert acts.by_operator() == Counter({"conv": 2 * 4 * 6 * 6, "linear": 2 * 5})
    assert acts.by_module()["2"] == 10


# --- printing ---------------------------------------------------------------------------------


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(10, 10))
        self.head = nn.Linear(10, 2)
        self.spare = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.inner(x)))


def test_fvcore_table_is_a_pipe_table() -> None:
    model = Nested()
    flops = fv.FlopCountAnalysis(model, torch.randn(1, 10))
    table = fv.flop_count_table(
        flops, max_depth=1, activations=fv.ActivationCountAnalysis(model, torch.randn(1, 10))
    )
    assert table.splitlines() == [
        "| module   | #parameters or shape   | #flops   | #activations   |",
        "|:---------|:-----------------------|:---------|:---------------|",
        "| model    | 0.138K                 | 0.12K    | 12             |",
        "|  inner.0 |  0.11K                 |  100     |  10            |",
        "|  head    |  22                    |  20      |  2             |",
        "|  spare   |  6                     |          |                |",
    ]
    assert flops._enable_warn_unsupported_ops is False  # the printers silence, as fvcore's do


def test_fvcore_module_tree_marks_uncalled_modules() -> None:
    text = fv.flop_count_str(fv.FlopCountAnalysis(Nested(), torch.randn(1, 10)))
    lines = text.splitlines()
    assert lines[0] == (
        "N/A indicates a possibly missing statistic due to how the module was called. "
        "Missing values are still included in the parent's total."
    )
    assert lines[1:3] == ["Nested(", "  #params: 0.14K, #flops: 0.12K"]
    assert "    #params: 6, #flops: N/A" in lines


def test_mmengine_tables_are_boxed_and_end_with_a_newline() -> None:
    model = Nested()
    table = mm.complexity_stats_table(mm.FlopAnalyzer(model, torch.randn(1, 10)), max_depth=1)
    assert table.startswith("+----------+----------------------+--------+\n| module   |")
    assert table.endswith("+\n")
    # mmengine 0.10.7's output
    assert mm.parameter_count_table(nn.Linear(2, 2)) == (
        "   parameter count of Linear    \n+---------+--------------------+\n"
        "| name    | #elements or shape |\n+---------+--------------------+\n"
        "| model   | 6                  |\n|  weight |  (2, 2)            |\n"
        "|  bias   |  (2,)              |\n+---------+--------------------+\n"
    )


def test_a_long_title_wraps_as_rich_wraps_it() -> None:
    class AVeryLongModelClassNameForTestingTitleWrapping(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(2, 2)

    # mmengine 0.10.7's output for this model (rich 14)
    assert mm.parameter_count_table(AVeryLongModelClassNameForTestingTitleWrapping()) == (
        "        parameter count of         \nAVeryLongModelClassNameForTestingTi\n"
        "            tleWrapping            \n+------------+--------------------+\n"
        "| name       | #elements or shape |\n+------------+--------------------+\n"
        "| model      | 6                  |\n|  a         |  6                 |\n"
        "|   a.weight |   (2, 2)           |\n|   a.bias   |   (2,)             |\n"
        "+------------+--------------------+\n"
    )


def test_printing_two_analyzers_needs_one_model_and_mode() -> None:
    flops = fv.FlopCountAnalysis(Nested(), torch.randn(1, 10))
    with pytest.raises(ValueError, match="another model"):
        fv.flop_count_table(
            flops, activations=fv.ActivationCountAnalysis(Nested(), torch.randn(1, 10))
        )
    acts = fv.ActivationCountAnalysis(flops._model, torch.randn(1, 10)).ancestor_mode("caller")
    with pytest.raises(ValueError, match="set the same ancestor_mode"):
        fv.flop_count_str(flops, activations=acts)


def test_complexity_info_runs_the_model_once() -> None:
    model = Counting()
    info = mm.get_model_complexity_info(model, input_shape=(4,))
    assert (info["flops"], info["activations"], info["params"]) == (12, 3, 15)
    assert (info["flops_str"], info["params_str"]) == ("12", "15")
    assert info["out_table"].startswith("\n+---") and info["out_arch"].startswith("\nCounting(")
    assert model.calls == 1
    with pytest.raises(ValueError, match="should be set"):
        mm.get_model_complexity_info(model)
    with pytest.raises(ValueError, match="cannot be both set"):
        mm.get_model_complexity_info(model, input_shape=(4,), inputs=X)

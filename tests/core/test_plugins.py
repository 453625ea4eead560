"""Plugins: discovery through entry points, failures, listing, user handlers and their errors."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torchtally_testing import FakeDist, FakeEntryPoint

import torchtally
from torchtally import plugins

# A custom op the dispatcher sees as `torchtally_test::scale`, with a fake kernel for meta/fake.
lib = torch.library.Library("torchtally_test", "DEF")
lib.define("scale(Tensor x, float factor) -> Tensor")
lib.impl("scale", lambda x, factor: x * factor, "CompositeExplicitAutograd")


class Scale(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchtally_test.scale(x, 2.0)


def scale_plugin(flops_per_element: int) -> object:
    handlers = torchtally.HandlerSet()
    handlers.add("flops", "torchtally_test::scale", lambda call: flops_per_element * 1)

    class Plugin:
        @torchtally.hookimpl
        def torchtally_handlers(self) -> torchtally.HandlerSet:
            return handlers

    return Plugin()


def test_core_alone_counts_without_any_plugin(
    entry_points: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD_ENV, "1")
    entry_points.append(FakeEntryPoint("scale", scale_plugin(7), FakeDist("scale-dist", "1.0")))
    analysis = torchtally.analyze(nn.Linear(3, 2), torch.randn(4, 3))
    assert analysis.total() == 4 * 3 * 2
    assert [info.name for info in torchtally.list_plugins()] == [plugins.CORE]


def test_plugin_from_entry_point_counts_its_op(entry_points: list[FakeEntryPoint]) -> None:
    x = torch.randn(5)
    assert torchtally.analyze(Scale(), x).unsupported_ops() == {"torchtally_test::scale": 1}
    plugins.reset_plugins()
    entry_points.append(FakeEntryPoint("scale", scale_plugin(7), FakeDist("scale-dist", "1.0")))
    analysis = torchtally.analyze(Scale(), x)
    assert analysis.by_operator() == {"torchtally_test::scale": 7}
    assert analysis.unsupported_ops() == {}


def test_broken_plugin_is_named_and_the_rest_keeps_working(
    entry_points: list[FakeEntryPoint],
) -> None:
    entry_points.append(
        FakeEntryPoint("broken", ImportError("no module named nowhere"), FakeDist("tt-bad", "9.9"))
    )
    entry_points.append(FakeEntryPoint("scale", scale_plugin(3), FakeDist("scale-dist", "1.0")))
    with pytest.warns(torchtally.PluginWarning) as warned:
        analysis = torchtally.analyze(Scale(), torch.randn(5))
    message = str(warned[0].message)
    assert (
        "'broken'" in message and "tt-bad 9.9" in message and "no module named nowhere" in message
    )
    assert analysis.total() == 3
    failures = torchtally.plugin_failures()
    assert [(f.name, f.distribution, f.version) for f in failures] == [("broken", "tt-bad", "9.9")]


def test_list_plugins_says_what_each_registered(entry_points: list[FakeEntryPoint]) -> None:
    entry_points.append(FakeEntryPoint("scale", scale_plugin(3), FakeDist("scale-dist", "1.2")))
    listed = {info.name: info for info in torchtally.list_plugins()}
    core = listed[plugins.CORE]
    assert "aten::convolution" in core.registers["flops handlers"]
    assert "aten::view" in core.registers["ignored (*)"]
    scale = listed["scale"]
    assert (scale.distribution, scale.version) == ("scale-dist", "1.2")
    assert scale.registers == {"flops handlers": ["torchtally_test::scale"]}


def test_two_plugins_claiming_one_op_are_both_named(entry_points: list[FakeEntryPoint]) -> None:
    entry_points.append(FakeEntryPoint("alpha", scale_plugin(1), FakeDist("alpha", "1")))
    entry_points.append(FakeEntryPoint("beta", scale_plugin(2), FakeDist("beta", "1")))
    with pytest.warns(torchtally.PluginWarning, match="alpha and beta both handle"):
        analysis = torchtally.analyze(Scale(), torch.randn(5))
    assert analysis.total() == 2  # the later one (by name) wins, and says so


def test_plugin_registered_by_hand(entry_points: list[FakeEntryPoint]) -> None:
    torchtally.get_plugin_manager().register(scale_plugin(4), name="by-hand")
    assert torchtally.analyze(Scale(), torch.randn(5)).total() == 4


def test_register_handler_decorator(entry_points: list[FakeEntryPoint]) -> None:
    @torchtally.register_handler("torchtally_test::scale")
    def scale_flops(call: torchtally.OpCall) -> int:
        return int(call.arg("x").numel)

    try:
        assert torchtally.analyze(Scale(), torch.randn(6)).total() == 6
    finally:
        torchtally.unregister_handler("torchtally_test::scale")
    assert torchtally.analyze(Scale(), torch.randn(6), warn_unsupported=False).total() == 0


def test_per_call_handlers_and_none_ignores(
    entry_points: list[FakeEntryPoint], caplog: pytest.LogCaptureFixture
) -> None:
    x = torch.randn(6)
    counted = torchtally.analyze(Scale(), x, handlers={"torchtally_test::scale": lambda c: 11})
    assert counted.total() == 11
    with caplog.at_level(logging.WARNING, logger="torchtally"):
        ignored = torchtally.analyze(Scale(), x, handlers={"torchtally_test::scale": None})
    assert ignored.total() == 0 and ignored.unsupported_ops() == {}
    assert ignored.unsupported_ops("activations") == {}  # None ignores the op for every metric
    assert not caplog.records


def test_handler_taking_options(entry_points: list[FakeEntryPoint]) -> None:
    def scale_flops(call: torchtally.OpCall, options: torchtally.CountOptions) -> int:
        return int(options.get("cost", 1)) * call.output_tensors[0].numel

    handlers = {"torchtally_test::scale": scale_flops}
    x = torch.randn(6)
    assert torchtally.analyze(Scale(), x, handlers=handlers, options={"cost": 3}).total() == 18


@pytest.mark.parametrize(
    ("op", "instead"),
    [
        ("aten::linear", "aten::addmm, aten::mm or aten::bmm"),
        ("aten::matmul", "aten::mm or aten::bmm"),
        ("aten::conv2d", "aten::convolution"),
        ("aten::layer_norm", "aten::native_layer_norm"),
    ],
)
def test_composite_op_is_refused_with_the_op_to_use(op: str, instead: str) -> None:
    with pytest.raises(torchtally.CompositeOpError, match=f"Register a handler for {instead}"):
        torchtally.analyze(nn.Linear(2, 2), torch.randn(1, 2), handlers={op: lambda c: 1})


def test_bad_op_name_is_refused() -> None:
    with pytest.raises(ValueError, match="expected an op name like 'aten::convolution'"):
        torchtally.HandlerSet().add("flops", "convolution", lambda c: 1)


def test_module_handler_replaces_the_ops_inside(entry_points: list[FakeEntryPoint]) -> None:
    class Blackbox(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ x.T  # pretend this is a kernel the dispatcher cannot see

    model = nn.Sequential(nn.Linear(4, 4), Blackbox())
    handlers = torchtally.HandlerSet()

    @handlers.module(Blackbox)
    def blackbox_flops(call: torchtally.ModuleCall) -> int:
        (x,) = call.inputs
        return 1000 * x.shape[0]

    analysis = torchtally.analyze(model, torch.randn(3, 4), handlers=handlers)
    assert analysis.by_module_and_operator()["1"] == {"Blackbox": 3000}
    assert analysis.total() == 3 * 4 * 4 + 3000


def test_without_reporters_the_error_names_the_package(
    entry_points: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD_ENV, "1")
    analysis = torchtally.analyze(nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(torchtally.UnknownFormatError, match="pip install torchtally-reporters"):
        analysis.render("table")
    with pytest.raises(torchtally.UnknownFormatError, match="pip install torchtally-reporters"):
        torchtally.get_model_complexity_info(nn.Linear(2, 2), input_shape=(2,))
    info = torchtally.get_model_complexity_info(
        nn.Linear(2, 2), input_shape=(2,), show_table=False, show_arch=False
    )
    assert (info["flops"], info["params"]) == (4, 6)

"""Handlers the user registers are never silently ignored: a name no loaded library defines is
refused when it is registered (with the names it may have meant), and a handler whose op never
ran is named after the analysis, with the ops of similar names that did run."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch
from torch import nn

import torchtally
from torchtally.handlers import HandlerSet


class Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


X = torch.randn(1, 3, 8, 8)
CONV = 4 * 3 * 9 * 36


def unused_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if w.category is torchtally.UnusedHandlerWarning]


@pytest.fixture
def record() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def test_a_handler_for_the_jit_name_warns_and_names_the_dispatcher_one(
    record: list[warnings.WarningMessage],
) -> None:
    """fvcore users know aten::_convolution; an eager model runs aten::convolution."""
    analysis = torchtally.analyze(Conv(), X, handlers={"aten::_convolution": lambda call: 1})
    assert analysis.total() == CONV  # the built-in handler counted the convolution
    (message,) = unused_warnings(record)
    assert "aten::_convolution never ran" in message
    assert "did you mean aten::convolution?" in message


def test_a_misspelt_op_is_refused_before_the_model_runs() -> None:
    class Exploding(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("the model must not run")

    with pytest.raises(torchtally.UnknownOpError, match=r"did you mean aten::addmm"):
        torchtally.analyze(Exploding(), X, handlers={"aten::adddmm": lambda call: 1})
    with pytest.raises(torchtally.UnknownOpError, match="torchvision::roi_align"):
        import torchvision  # noqa: F401  (loads the namespace)

        HandlerSet().add("flops", "torchvision::roi_alig", lambda call: 1)


def test_register_handler_refuses_a_misspelling_and_warns_for_a_near_miss(
    record: list[warnings.WarningMessage],
) -> None:
    with pytest.raises(torchtally.UnknownOpError):
        torchtally.register_handler("aten::convolutoin")(lambda call: 1)
    torchtally.register_handler("aten::_convolution")(lambda call: 1)
    torchtally.register_handler("aten::_fft_c2c")(lambda call: 1)  # for other models: no match
    try:
        torchtally.analyze(Conv(), X)
    finally:
        torchtally.unregister_handler("aten::_convolution", "aten::_fft_c2c")
    (message,) = unused_warnings(record)
    assert "aten::_convolution" in message and "aten::convolution" in message


def test_a_per_call_handler_that_never_ran_warns_even_without_a_match(
    record: list[warnings.WarningMessage],
) -> None:
    torchtally.analyze(Conv(), X, handlers={"aten::_fft_c2c": lambda call: 1})
    (message,) = unused_warnings(record)
    assert message.startswith("the handler registered for aten::_fft_c2c never ran")
    assert "did you mean" not in message


def test_handlers_that_ran_and_ignored_ops_do_not_warn(
    record: list[warnings.WarningMessage],
) -> None:
    analysis = torchtally.analyze(
        Conv(), X, handlers={"aten::convolution": lambda call: 7, "aten::_fft_c2c": None}
    )
    assert analysis.total() == 7
    assert unused_warnings(record) == []


def test_recount_with_handlers_warns_too(record: list[warnings.WarningMessage]) -> None:
    analysis = torchtally.analyze(Conv(), X)
    analysis.recount(handlers={"aten::_convolution": lambda call: 1})
    assert len(unused_warnings(record)) == 1


def test_namespaces_not_loaded_yet_and_custom_ops_once_defined() -> None:
    HandlerSet().add("flops", "tt_not_imported_lib::fused", lambda call: 1)  # checked later
    library = torch.library.Library("tt_unused_handlers", "DEF")
    library.define("fused_gelu(Tensor x) -> Tensor")
    HandlerSet().add("flops", "tt_unused_handlers::fused_gelu", lambda call: 1)
    with pytest.raises(torchtally.UnknownOpError, match="tt_unused_handlers::fused_gelu"):
        HandlerSet().add("flops", "tt_unused_handlers::fused_gleu", lambda call: 1)


def test_every_handler_core_and_the_plugins_register_names_an_op() -> None:
    """Checked as they register: the registry loads without an UnknownOpError."""
    from torchtally.api import registry_with

    registry = registry_with(strict=True)
    assert registry.lookup("flops", "aten::mkldnn_rnn_layer").handler is not None

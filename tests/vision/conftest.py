"""Shared helpers for the vision plugin's tests: a module around one function, and its analysis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torchtally_testing import Fn

import torchtally
import torchtally_vision

Tally = Callable[..., torchtally.Analysis]


def _tally(fn: Callable[..., Any], *inputs: Any, **kwargs: Any) -> torchtally.Analysis:
    return torchtally.analyze(Fn(fn), tuple(inputs), warn_unsupported=False, **kwargs)


@pytest.fixture
def tally() -> Tally:
    """``tally(fn, *inputs, **analyze_options)``: the analysis of one call of `fn`."""
    return _tally


@pytest.fixture(autouse=True, scope="session")
def vision_plugin() -> None:
    """The plugin as installed (entry point `vision`), or registered by hand when it is not."""
    manager = torchtally.get_plugin_manager()
    if manager.get_plugin("vision") is None:
        manager.register(torchtally_vision, name="vision")


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

"""Fixtures for the transformer plugin's tests: the plugin, and the analysis of one call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from torchtally_testing import Fn

import torchtally
import torchtally_transformer

Tally = Callable[..., torchtally.Analysis]


def _tally(fn: Callable[..., Any], *inputs: Any, **kwargs: Any) -> torchtally.Analysis:
    kwargs.setdefault("warn_unsupported", False)
    return torchtally.analyze(Fn(fn), tuple(inputs), **kwargs)


@pytest.fixture
def tally() -> Tally:
    """``tally(fn, *inputs, **analyze_options)``: the analysis of one call of `fn`."""
    return _tally


@pytest.fixture(autouse=True, scope="session")
def transformer_plugin() -> None:
    """The plugin as installed (entry point `transformer`), or registered by hand when it is not."""
    manager = torchtally.get_plugin_manager()
    if manager.get_plugin("transformer") is None:
        manager.register(torchtally_transformer, name="transformer")

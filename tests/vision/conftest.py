"""Shared helpers for the vision plugin's tests: a module around one function, and its analysis;
each zoo model with its analysis."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torchtally_testing import Fn
from zoo import ZOO, ZooModel

import torchtally
import torchtally_vision

Tally = Callable[..., torchtally.Analysis]


@dataclass(frozen=True)
class ZooRun:
    """A zoo model, built, and its analysis (the `zoo` fixture)."""

    spec: ZooModel
    model: torch.nn.Module
    analysis: torchtally.Analysis


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


@contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Silence these loggers for a while (auto mode's fallback note, the peers' op lists)."""
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session", params=list(ZOO))
def zoo(request: pytest.FixtureRequest) -> ZooRun:
    """Each zoo model, built and analysed once for test_zoo.py and test_vs_fvcore.py together
    (session scope: pytest runs every test of one model, then drops it for the next)."""
    spec = ZOO[request.param]
    model = spec.build()
    with quiet("torchtally"):
        analysis = torchtally.analyze(model, spec.inputs(), warn_unsupported=False)
    return ZooRun(spec, model, analysis)

"""Helpers shared by the test packages (on sys.path through pytest's ``pythonpath``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn


class Fn(nn.Module):
    """A module whose forward calls `fn`: torchtally analyses modules, not bare functions."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)

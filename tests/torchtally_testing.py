"""Helpers shared by the test packages (on sys.path through pytest's ``pythonpath``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


class Fn(nn.Module):
    """A module whose forward calls `fn`: torchtally analyses modules, not bare functions."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


# Stand-ins for importlib.metadata objects, to feed the plugin manager fake plugins.


@dataclass
class FakeDist:
    name: str
    version: str
    metadata: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.metadata = {"Name": self.name}


@dataclass
class FakeEntryPoint:
    name: str
    target: Any
    dist: FakeDist

    def load(self) -> Any:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


# A Llama small enough for any test: 2 layers, hidden 64, 4 query heads of 16, 2 KV heads.
TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 100,
}

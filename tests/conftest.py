"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from torchtally_testing import FakeEntryPoint

from torchtally import plugins


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeEntryPoint]]:
    """The plugin manager sees only the entry points a test appends here (no installed ones);
    the plugins are reset before and after."""
    found: list[FakeEntryPoint] = []
    monkeypatch.setattr(plugins.importlib_metadata, "entry_points", lambda group: list(found))
    plugins.reset_plugins()
    yield found
    plugins.reset_plugins()

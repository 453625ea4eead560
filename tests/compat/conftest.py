"""Fixtures for the fvcore / mmengine drop-in tests: the peers' printouts made comparable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import tabulate


@pytest.fixture
def peer_layout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The peers' printouts as their authors lay them out.

    fvcore sets ``tabulate.PRESERVE_WHITESPACE`` to keep its tables' indentation, which
    tabulate >= 0.10 no longer reads (it takes a ``preserve_whitespace`` argument): passed here
    from the switch, fvcore's tables are indented as its documentation and tests show. mmengine's
    tables are drawn by rich, which squeezes them to the terminal's width: a wide one is set.
    """
    original = tabulate.tabulate

    def honouring_the_switch(*args: Any, **kwargs: Any) -> str:
        kwargs.setdefault("preserve_whitespace", tabulate.PRESERVE_WHITESPACE)
        text: str = original(*args, **kwargs)
        return text

    monkeypatch.setattr(tabulate, "tabulate", honouring_the_switch)
    monkeypatch.setenv("COLUMNS", "1000")
    yield

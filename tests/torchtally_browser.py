"""Headless Chromium for the HTML report's tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download cannot be reached from the project's machines, so the tests use
the system Chromium (``apt-get install chromium``). Without it they skip, saying what to install,
except in CI (``CI=true``), where a missing browser fails the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

INSTALL = (
    "the HTML report's browser tests need Debian's Chromium and Playwright: "
    "apt-get install chromium chromium-driver (as root) and pip install -r requirements-dev.txt"
)
# Flags that keep Chromium off the network and out of first-run work (a closed machine refuses
# its background connections, many at a time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> str:
    """The Chromium executable; skips (fails in CI) when it or Playwright is missing."""
    path = chromium_path()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Chromium or Playwright is missing: {INSTALL}")
        pytest.skip(INSTALL)
    return path


@contextmanager
def launched_browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Page:
    """A report opened from disk, with every console error and uncaught exception kept."""

    def __init__(self, browser: Any, path: Path, width: int = 1400, height: int = 900) -> None:
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", self._no_network)
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("html[data-ready]", timeout=15000)

    def _no_network(self, request: Any) -> None:
        if not request.url.startswith(("file:", "data:", "about:")):
            self.errors.append(f"the page asked the network for {request.url}")

    def close(self) -> None:
        self.page.close()

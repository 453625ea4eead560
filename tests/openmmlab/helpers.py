"""Helpers for the OpenMMLab source's tests: the codebases are test-only dependencies, and a test
that needs one is skipped when it is missing."""

from __future__ import annotations

import importlib.util

import pytest


def needs(module: str) -> pytest.MarkDecorator:
    """Skip unless the codebase `module` (``mmpretrain``, ``mmdet``, ``mmseg``) is installed."""
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(missing, reason=f"{module} is not installed")

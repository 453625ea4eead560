"""``mmengine.analysis.jit_analysis``: `JitModelAnalysis`, logging through mmengine's logger."""

from __future__ import annotations

import logging
from typing import Any

from torchtally.compat.jit_analysis import JitModelAnalysis as _FvcoreJitModelAnalysis


class MMEngineLogging:
    """Warnings go to mmengine's current logger (``print_log``) when mmengine is installed,
    else to the ``torchtally.compat.mmengine`` logger."""

    _logger_name = "torchtally.compat.mmengine"

    def _log_warning(self, message: str) -> None:
        try:
            from mmengine.logging import print_log
        except ImportError:
            logging.getLogger(self._logger_name).warning(message)
            return
        print_log(message, "current", logging.WARNING)


class JitModelAnalysis(MMEngineLogging, _FvcoreJitModelAnalysis):
    """mmengine's ``JitModelAnalysis``: fvcore's, logging through mmengine."""

    def __init__(self, model: Any, inputs: Any, **options: Any) -> None:
        super().__init__(model, inputs, **options)


__all__ = ["JitModelAnalysis"]

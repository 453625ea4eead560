"""mmcv's compiled ops for mmcv-lite, the build of mmcv without them.

mmdet and mmseg import ``mmcv.ops`` when their models are imported, and ``mmcv.ops`` loads the
compiled extension ``mmcv._ext``, which only the full mmcv (a C++/CUDA build) has. With mmcv-lite,
`provide_missing_ops` puts a stand-in ``mmcv._ext`` in its place: ``nms`` and
``roi_align_forward`` (what two-stage detectors run in tensor mode) run on torchvision's ops, so
they are counted as ``torchvision::nms`` and ``torchvision::roi_align``; any other compiled op
raises `MissingCompiledOpError` naming it when the model calls it. Nothing is done when the full
mmcv is installed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from typing import Any, NoReturn

import torch

STAND_IN_DOC = "torchtally's stand-in for mmcv's compiled ops (mmcv-lite is installed)"


class MissingCompiledOpError(RuntimeError):
    """The model called one of mmcv's compiled ops, which mmcv-lite does not have."""


def provide_missing_ops() -> bool:
    """Install the stand-in ``mmcv._ext`` if mmcv is installed without its compiled ops; True
    if the stand-in is (now) in use."""
    current = sys.modules.get("mmcv._ext")
    if current is not None:
        return getattr(current, "__doc__", None) == STAND_IN_DOC
    if importlib.util.find_spec("mmcv") is None:
        return False
    try:
        importlib.import_module("mmcv._ext")
        return False  # the full mmcv
    except ImportError:
        pass
    module: Any = types.ModuleType("mmcv._ext", STAND_IN_DOC)
    # No loader: mmengine's mmcv_full_available() still says False, as it should.
    module.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)
    module.nms = nms
    module.roi_align_forward = roi_align_forward
    module.__getattr__ = _missing
    sys.modules["mmcv._ext"] = module
    return True


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, offset: int = 0) -> Any:
    """mmcv's ``nms`` on torchvision's (the same boxes kept for ``offset=0``, mmcv's default)."""
    from torchvision.ops import nms as torchvision_nms

    if offset != 0:
        _unsupported("nms with offset=1")
    return torchvision_nms(boxes, scores, iou_threshold)


def roi_align_forward(
    features: torch.Tensor,
    rois: torch.Tensor,
    output: torch.Tensor,
    argmax_y: torch.Tensor,
    argmax_x: torch.Tensor,
    *,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    pool_mode: int,
    aligned: bool,
) -> None:
    """mmcv's average RoIAlign, written into `output`, on torchvision's ``roi_align`` (same
    ``(batch index, x1, y1, x2, y2)`` boxes, sampling and alignment)."""
    from torchvision.ops import roi_align

    if pool_mode != 1:
        _unsupported("roi_align_forward with pool_mode='max'")
    size = (aligned_height, aligned_width)
    output.copy_(roi_align(features, rois, size, spatial_scale, sampling_ratio, aligned))


def _missing(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)

    def op(*args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(name)

    return op


def _unsupported(what: str) -> NoReturn:
    raise MissingCompiledOpError(
        f"this model runs mmcv's compiled op {what}, which mmcv-lite does not have (torchtally "
        "stands in for nms and average roi_align only); install the full mmcv, built with its "
        "ops, to analyse it"
    )

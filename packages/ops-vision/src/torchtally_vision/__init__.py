"""torchtally-vision: handlers for vision ops, registered as the torchtally plugin ``vision``.

torchvision's custom ops (``torchvision::roi_align``, ``roi_pool``, ``ps_roi_align``,
``ps_roi_pool``, ``deform_conv2d``, ``nms``) and ATen's resampling ops (``upsample_*``,
``grid_sampler_2d/3d``, ``affine_grid_generator``). Handlers are keyed by op name, so this module
imports no torchvision and works whether or not it is installed. ``pixel_shuffle`` and
``pixel_unshuffle`` only move data: core already ignores them. Formulas: README.md.
"""

from __future__ import annotations

from torchtally.plugin import HandlerSet, hookimpl
from torchtally_vision import backward, resampling, torchvision_ops

__all__ = ["handlers", "torchtally_handlers"]

handlers = HandlerSet()
for _module in (resampling, torchvision_ops, backward):
    _module.register(handlers)


@hookimpl
def torchtally_handlers() -> HandlerSet:
    return handlers

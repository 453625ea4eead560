"""Core's handlers, registered as the plugin ``torchtally.core`` exactly like a third-party one.

Conventions are fvcore's and mmengine's (one fused multiply-add is one flop), so totals agree with
numbers in papers that used them; docs/conventions.md lists every formula.
"""

from __future__ import annotations

from torchtally.handlers import HandlerSet
from torchtally.hookspecs import hookimpl
from torchtally.ops import (
    backward,
    conv,
    ctc,
    elementwise,
    fft,
    linalg,
    losses,
    matmul,
    norm,
    pooling,
    quantized,
    rnn,
    scatter,
    traffic,
)

handlers = HandlerSet()
# Order matters only where one op appears twice: later modules refine elementwise's generic
# rules (pooling's aten::mean under adaptive average pooling, backward's gelu_backward).
for module in (
    elementwise,
    matmul,
    conv,
    norm,
    pooling,
    backward,
    rnn,
    fft,
    scatter,
    ctc,
    quantized,
    linalg,
    losses,
    traffic,
):
    module.register(handlers)


@hookimpl
def torchtally_handlers() -> HandlerSet:
    return handlers

"""torchtally-transformer: handlers for transformer ops, registered as the plugin ``transformer``.

Attention in every backend, forward and backward (``attention``): the math path's ops are core's,
every fused kernel is counted here with the same formulas, and all are reported as
``scaled_dot_product_attention``. PyTorch's fused multi-head attention and encoder layer
(``mha``), RMSNorm's fused kernel (``norm``) and MoE grouped matmuls (``moe``). Embeddings are
lookups: core ignores ``aten::embedding`` (0 flops, 0 activations). Handlers are keyed by op name,
so nothing here imports transformers. Formulas: README.md.
"""

from __future__ import annotations

from torchtally.plugin import HandlerSet, hookimpl
from torchtally_transformer import attention, mha, moe, norm

__all__ = ["handlers", "torchtally_handlers"]

handlers = HandlerSet()
for _module in (attention, mha, norm, moe):
    _module.register(handlers)


@hookimpl
def torchtally_handlers() -> HandlerSet:
    return handlers

"""What the peers count for attention, next to what we count (one multiply-add = one flop).

fvcore and mmengine trace with torch.jit, see ``aten::scaled_dot_product_attention`` and have no
handler for it. PyTorch's FlopCounterMode (2 flops per multiply-add) has formulas for the CUDA
backends but none for the CPU kernel, and reads the flash kernel's (B, L, H, E) layout as
(B, H, L, E).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

import torchtally

pytestmark = pytest.mark.slow  # peer cross-check

ATTENTION = "scaled_dot_product_attention"
# B=2, H=4, L=8, E=16: Q K^T and P V, 2*4*8*8*16 multiply-adds each
MACS = 2 * (2 * 4 * 8 * 8 * 16)


class Attend(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 16)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.proj(F.scaled_dot_product_attention(q, k, v))


def qkv() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(2, 4, 8, 16, generator=g) for _ in range(3))


def test_ours() -> None:
    analysis = torchtally.analyze(Attend(), qkv(), warn_unsupported=False)
    assert analysis.by_operator() == {ATTENTION: MACS, "linear": 2 * 4 * 8 * 16 * 16}


@pytest.mark.parametrize("peer", ["fvcore.nn", "mmengine.analysis"])
def test_fvcore_and_mmengine_leave_attention_out(peer: str) -> None:
    module = pytest.importorskip(peer)
    analyzer = getattr(module, "FlopCountAnalysis", None) or module.FlopAnalyzer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counted = analyzer(Attend(), qkv())
        counted.unsupported_ops_warnings(False)
        assert dict(counted.by_operator()) == {"linear": 2 * 4 * 8 * 16 * 16}
        assert dict(counted.unsupported_ops()) == {"aten::scaled_dot_product_attention": 1}


def test_flop_counter_mode_counts_nothing_for_the_cpu_kernel() -> None:
    q, k, v = qkv()
    with FlopCounterMode(display=False) as counter:
        F.scaled_dot_product_attention(q, k, v)
    assert counter.get_total_flops() == 0


def test_flop_counter_mode_agrees_on_the_sdpa_level_cuda_ops() -> None:
    with FakeTensorMode():
        q, k, v = (torch.empty(2, 4, 8, 16) for _ in range(3))
        with FlopCounterMode(display=False) as counter:
            torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, False)
    assert counter.get_total_flops() == 2 * MACS  # two flops per multiply-add


def test_flop_counter_mode_misreads_the_flash_kernels_layout() -> None:
    with FakeTensorMode():
        # the kernel takes (B, L, H, E): 2 sequences of 8 tokens, 4 heads of 16
        q, k, v = (torch.empty(2, 8, 4, 16) for _ in range(3))
        with FlopCounterMode(display=False) as counter:
            torch.ops.aten._flash_attention_forward(q, k, v, None, None, 8, 8, 0.0, False, False)
    # read as 8 heads of 4 tokens: 2 * (2*8*4*4*16) multiply-adds instead of 2 * (2*4*8*8*16)
    assert counter.get_total_flops() == 2 * (2 * (2 * 8 * 4 * 4 * 16)) == MACS

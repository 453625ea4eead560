"""Models for the drop-in tests: what research code runs through fvcore, traceable by its JIT."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ScaleGrad(torch.autograd.Function):
    """A custom autograd Function (a JIT trace records it as prim::PythonOp.ScaleGrad)."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x * 2

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad * 2


class Attention(nn.Module):
    """Self-attention three ways: einsum scores, matmul values, and scaled_dot_product."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * self.scale
        mixed = scores.softmax(dim=-1) @ v
        fused = F.scaled_dot_product_attention(q, k, v)
        out = (mixed + fused).transpose(1, 2).reshape(b, n, c)
        return x + self.proj(out)


class ResearchNet(nn.Module):
    """A small hybrid network: convolutions, batch norm, GELU, upsampling, attention, a custom
    autograd Function, pooling and a classifier; `unused` is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.GELU())
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="bicubic", align_corners=False)
        self.mix = nn.Conv2d(32, 32, 1, bias=False)
        self.attention = Attention(32, heads=4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, 10)
        self.unused = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(self.stem(x))
        x = self.mix(self.up(x))[:, :, ::2, ::2]
        b, c, h, w = x.shape
        tokens = self.attention(x.flatten(2).transpose(1, 2))
        x = ScaleGrad.apply(tokens.transpose(1, 2).reshape(b, c, h, w))
        return self.head(self.pool(x).flatten(1))


_CALLS: dict[int, int] = {}  # outside the model: an analysis puts back what the model holds


class Counting(nn.Module):
    """Linear, then sigmoid and a scaling: 24 flops of linear on a (2, 4) input. Counts its
    forward calls in a table outside the model."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    @property
    def calls(self) -> int:
        return _CALLS.get(id(self), 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _CALLS[id(self)] = self.calls + 1
        return torch.sigmoid(self.fc(x)) * 2


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class SmallCNN(nn.Module):
    """A ResNet-like network of the layers fvcore and mmengine count by default, with a block
    used twice (a shared module), a GELU, a matmul head and a module that is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16))
        self.act = nn.GELU()
        self.block = Block(16)
        self.layers = nn.Sequential(self.block, nn.Conv2d(16, 32, 1), self.block2())
        self.norm = nn.GroupNorm(4, 32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = nn.Parameter(torch.randn(32, 24))
        self.fc = nn.Linear(24, 10)
        self.spare = nn.Conv2d(32, 32, 1)

    @staticmethod
    def block2() -> nn.Module:
        return Block(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.act(self.stem(x)))
        x = self.pool(self.norm(x)).flatten(1)
        return self.fc(torch.matmul(x, self.proj))

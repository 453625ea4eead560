"""The op catalog: real, dispatcher-visible, disjoint ops that cover what common CNNs run."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from torchtally.handlers import _is_composite
from torchtally.ops.catalog import NO_ARITHMETIC_OPS, POINTWISE_FLOPS, REDUCTION_FLOPS

TABLES: dict[str, set[str]] = {
    "NO_ARITHMETIC_OPS": set(NO_ARITHMETIC_OPS),
    "POINTWISE_FLOPS": set(POINTWISE_FLOPS),
    "REDUCTION_FLOPS": set(REDUCTION_FLOPS),
}
ALL_NAMES = sorted(set().union(*TABLES.values()))

# Ops with their own handlers elsewhere in core (matmul, conv, norm, pooling).
COUNTED_ELSEWHERE = {
    "aten::convolution",
    "aten::convolution_backward",
    "aten::addmm",
    "aten::mm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::native_batch_norm",
    "aten::native_batch_norm_backward",
    "aten::_native_batch_norm_legit",
    "aten::_native_batch_norm_legit_no_training",
    "aten::native_layer_norm",
    "aten::native_layer_norm_backward",
    "aten::native_group_norm",
    "aten::native_group_norm_backward",
    "aten::_adaptive_avg_pool2d",
    "aten::_adaptive_avg_pool2d_backward",
    "aten::max_pool2d_with_indices",
    "aten::max_pool2d_with_indices_backward",
    "aten::avg_pool2d",
}


def _packet(name: str) -> Any:
    namespace, op = name.split("::")
    return getattr(getattr(torch.ops, namespace), op)


def _dispatcher_overloads(name: str) -> dict[str, bool]:
    """{overload: is CompositeImplicitAutograd} for the overloads the dispatcher knows.

    Some packets also list TorchScript-only overloads (``aten::erf.int``) that the dispatcher
    has never heard of; those are skipped.
    """
    packet = _packet(name)
    result = {}
    for overload in packet.overloads():
        try:
            op = getattr(packet, overload)
            composite = torch._C._dispatch_has_kernel_for_dispatch_key(
                op.name(), "CompositeImplicitAutograd"
            )
        except RuntimeError:
            continue
        result[overload] = composite
    return result


def test_every_name_is_a_real_op() -> None:
    bad = []
    for name in ALL_NAMES:
        try:
            packet = _packet(name)
        except (AttributeError, RuntimeError):
            bad.append(name)
            continue
        if not isinstance(packet, torch._ops.OpOverloadPacket) or not _dispatcher_overloads(name):
            bad.append(name)
    assert not bad, f"not ops the dispatcher knows: {bad}"


def test_no_name_is_composite_only() -> None:
    # If every overload is CompositeImplicitAutograd (with no kernel on any backend), the op
    # decomposes before a TorchDispatchMode sees it, so listing it would be dead weight (or a
    # wrong name). aten::native_channel_shuffle decomposes on CPU but has an MPS kernel.
    composite = [name for name in ALL_NAMES if _is_composite(name)]
    assert not composite, f"CompositeImplicitAutograd-only: {composite}"


def test_tables_are_disjoint() -> None:
    items = list(TABLES.items())
    for i, (name_a, a) in enumerate(items):
        for name_b, b in items[i + 1 :]:
            assert not a & b, f"in both {name_a} and {name_b}: {sorted(a & b)}"
    assert not COUNTED_ELSEWHERE & set(ALL_NAMES), sorted(COUNTED_ELSEWHERE & set(ALL_NAMES))


def test_costs_are_small_positive_ints() -> None:
    for table in (POINTWISE_FLOPS, REDUCTION_FLOPS):
        for name, cost in table.items():
            assert isinstance(cost, int) and 1 <= cost <= 32, (name, cost)


def test_inplace_variant_costs_like_its_op() -> None:
    for table in (POINTWISE_FLOPS, REDUCTION_FLOPS):
        for name, cost in table.items():
            base = name.removesuffix("_")
            if name.endswith("_") and not name.endswith("__") and base in table:
                assert table[base] == cost, name


class _OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops.add(func._schema.name)
        return func(*args, **(kwargs or {}))


def _ops_run(model: torch.nn.Module, x: torch.Tensor, train: bool) -> set[str]:
    recorder = _OpRecorder()
    if train:
        model.train()
        with recorder:
            out = model(x)
            leaves, _ = tree_flatten(out)
            loss = torch.zeros(())
            for t in leaves:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    loss = loss + t.float().sum()
            loss.backward()
    else:
        model.eval()
        with torch.no_grad(), recorder:
            model(x)
    return recorder.ops


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet50", "mobilenet_v3_large", "efficientnet_b0"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_catalog_covers_cnn_ops(arch: str, train: bool) -> None:
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    model = getattr(models, arch)(weights=None)
    x = torch.randn(2, 3, 64, 64)
    seen = _ops_run(model, x, train)
    assert "aten::convolution" in seen
    missing = seen - set(ALL_NAMES) - COUNTED_ELSEWHERE
    assert not missing, f"{arch} ({'train' if train else 'eval'}) ran unclassified ops: {missing}"

"""The inventory: every op PyTorch registers in ``torch.ops.aten`` has a decision.

An op is handled (a flops handler, core's or a plugin's), catalogued as element-wise or a
reduction (catalog.py's tables: counted with element-wise counting), on the reviewed list of ops
that do no arithmetic (no_arithmetic.py), on the reviewed list of ops counted nowhere and reported
as unsupported whenever they run, or can never reach torchtally's tracer: a composite op
decomposes before the dispatcher (its parts are counted), a TorchScript builtin (``aten::len``,
``aten::__getitem__``) is not a dispatcher op at all. A PyTorch upgrade that adds an op fails
`test_every_aten_op_has_a_decision` until someone decides where it belongs.
"""

from __future__ import annotations

from functools import cache

import pytest
import torch
import torchvision  # noqa: F401  (its ops load with it)

from torchtally.api import registry_with
from torchtally.handlers import _is_composite
from torchtally.ops.catalog import LOSS_FLOPS, POINTWISE_FLOPS, REDUCTION_FLOPS
from torchtally.ops.losses import FOREACH_OPS
from torchtally.ops.no_arithmetic import NO_ARITHMETIC_OPS, UNCOUNTED_OPS

ELEMENTWISE = {*POINTWISE_FLOPS, *REDUCTION_FLOPS, *LOSS_FLOPS, *FOREACH_OPS}


def _dispatcher_ops() -> set[str]:
    return {name.split(".", 1)[0] for name in torch._C._dispatch_get_all_op_names()}


@cache
def inventory() -> dict[str, list[str]]:
    """Every aten op packet, by decision."""
    dispatcher = _dispatcher_ops()
    schemas = {schema.name for schema in torch._C._jit_get_all_schemas()}
    names = sorted(n for n in dispatcher | schemas if n.startswith("aten::"))
    registry = registry_with(strict=True)
    decided: dict[str, list[str]] = {
        "element-wise": [],
        "handled": [],
        "no arithmetic": [],
        "uncounted, reported": [],
        "composite": [],
        "TorchScript only": [],
        "undecided": [],
    }
    for op in names:
        found = registry.lookup("flops", op)
        if op in ELEMENTWISE:
            kind = "element-wise"
        elif op in NO_ARITHMETIC_OPS:
            kind = "no arithmetic"
        elif op in UNCOUNTED_OPS:
            kind = "uncounted, reported"
        elif found.handler is not None:
            kind = "handled"
        elif op not in dispatcher:
            kind = "TorchScript only"
        elif _is_composite(op):
            kind = "composite"
        else:
            kind = "undecided"
        decided[kind].append(op)
    return decided


def test_every_aten_op_has_a_decision() -> None:
    decided = inventory()
    assert decided["undecided"] == [], (
        "decide for each new op: a handler, an entry in catalog.py's element-wise tables, or "
        "no_arithmetic.py's lists: " + ", ".join(decided["undecided"])
    )
    counts = {kind: len(ops) for kind, ops in decided.items()}
    print("aten inventory:", counts)  # the closing note's figures
    assert counts["handled"] > 250 and counts["element-wise"] > 350


def test_the_reviewed_lists_name_real_ops_and_do_not_overlap() -> None:
    known = _dispatcher_ops() | {s.name for s in torch._C._jit_get_all_schemas()}
    for table in (NO_ARITHMETIC_OPS, UNCOUNTED_OPS, ELEMENTWISE):
        assert set(table) <= known, sorted(set(table) - known)
    assert not NO_ARITHMETIC_OPS & ELEMENTWISE
    assert not UNCOUNTED_OPS & (NO_ARITHMETIC_OPS | ELEMENTWISE)
    registry = registry_with(strict=True)
    handled_and_ignored = {
        op for op in NO_ARITHMETIC_OPS if registry.lookup("flops", op).handler is not None
    }
    assert handled_and_ignored == set()


def test_uncounted_ops_are_reported_when_they_run() -> None:
    registry = registry_with(strict=True)
    for op in UNCOUNTED_OPS:
        found = registry.lookup("flops", op)
        assert found.handler is None and not found.ignored


@pytest.mark.parametrize(
    "op",
    [
        "aten::addmm_",
        "aten::mkldnn_rnn_layer",
        "aten::_fft_c2c",
        "aten::linalg_inv_ex",
        "aten::cudnn_convolution",
        "aten::batch_norm_stats",
    ],
)
def test_ops_that_counted_zero_before_are_handled(op: str) -> None:
    assert op in inventory()["handled"]

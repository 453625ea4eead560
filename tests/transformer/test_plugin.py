"""The plugin: found through its entry point, light to import, keyed by ops this torch has."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import importlib_metadata
import pytest
import torch.nn.attention.varlen  # registers the torch_attn:: ops; binds torch

import torchtally
import torchtally_transformer
from torchtally.handlers import _is_composite
from torchtally_transformer.attention import BACKWARD_OPS, FORWARD_OPS


def test_entry_point_names_the_module() -> None:
    entry_points = importlib_metadata.entry_points(group="torchtally", name="transformer")
    if not entry_points:
        pytest.skip(
            "torchtally-transformer is not installed (pip install -e packages/ops-transformer)"
        )
    (entry_point,) = entry_points
    assert entry_point.value == "torchtally_transformer"
    assert entry_point.load() is torchtally_transformer


def test_list_plugins_shows_what_it_registers() -> None:
    (info,) = [p for p in torchtally.list_plugins() if p.name == "transformer"]
    flops = set(info.registers["flops handlers"])
    assert {
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_efficient_attention_backward",
        "aten::_native_multi_head_attention",
        "aten::_grouped_mm",
        "aten::_fused_rms_norm",
        "higher_order::flex_attention",
    } <= flops
    assert flops == set(info.registers["activations handlers"])


def _schema_ops() -> list[str]:
    return [op for op in {**FORWARD_OPS, **BACKWARD_OPS} if not op.startswith("higher_order::")]


@pytest.mark.parametrize("op", _schema_ops())
def test_every_attention_op_exists_and_takes_query_key_value(op: str) -> None:
    namespace, name = op.split("::")
    packet = getattr(getattr(torch.ops, namespace), name)
    for overload in packet.overloads():
        arguments = {a.name for a in getattr(packet, overload)._schema.arguments}
        assert {"query", "key", "value"} <= arguments, (op, overload)


def test_no_handler_is_for_a_composite_op() -> None:
    for ops in (
        torchtally_transformer.handlers.op_handlers(m)
        for m in torchtally_transformer.handlers.metrics()
    ):
        for op in ops:
            assert not _is_composite(op), op


@pytest.mark.slow
def test_the_plugin_imports_no_transformers() -> None:
    code = """
        import sys
        import torchtally, torchtally_transformer
        torchtally.list_plugins()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("transformers", "torchvision")))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"

"""A zoo of torchvision, timm and Hugging Face models, each exported with ``torch.export`` (strict
and non-strict) and scripted (traced for Hugging Face, whose models do not script), counted as the
eager model: totals, operators, modules, activations, parameters and module types.

What differs, and why (README, "Deployed models"):

- a module that runs no op (``Identity``, a ``ModuleList``, dropout or stochastic depth in eval, a
  ``Linear`` whose weight another module uses) leaves nothing in an exported graph: its type is
  unknown (``Module``);
- exported and FX graphs are functional (``add`` where eager code ran ``add_``);
- Hugging Face models make their attention masks differently when exported (BERT: two more
  ``add`` and a ``ge``), and a traced model records shape arithmetic (``x.shape[-1] // 2``) as
  ops on scalars (Llama: ``floor_divide``, ``mul``): element-wise ops, which count only with
  ``elementwise=True``.

Only ResNet-18 (in test_artefacts.py) and two fast cases run by default; the rest are slow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import timm
import torch
import torchvision
import transformers
from torch import nn

import torchtally

Case = tuple[nn.Module, tuple[Any, ...], dict[str, Any]]


def _torchvision(name: str, size: int = 224, **kwargs: Any) -> Callable[[], Case]:
    def build() -> Case:
        model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
        return model, (torch.randn(1, 3, size, size),), {}

    return build


def _timm(name: str, size: int = 224) -> Callable[[], Case]:
    def build() -> Case:
        model = timm.create_model(name, pretrained=False).eval()
        return model, (torch.randn(1, 3, size, size),), {}

    return build


def _hf(model_class: str, config_class: str, **config: Any) -> Callable[[], Case]:
    def build() -> Case:
        settings = getattr(transformers, config_class)(**config, use_cache=False)
        model = getattr(transformers, model_class)(settings).eval()
        ids = torch.randint(0, 100, (1, 16), generator=torch.Generator().manual_seed(0))
        return model, (), {"input_ids": ids, "return_dict": False}

    return build


ZOO: dict[str, Callable[[], Case]] = {
    "resnet18": _torchvision("resnet18"),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small"),
    "efficientnet_b0": _torchvision("efficientnet_b0"),
    "convnext_tiny": _torchvision("convnext_tiny"),
    "swin_t": _torchvision("swin_t"),
    "vit_b_16": _torchvision("vit_b_16"),
    "shufflenet_v2_x0_5": _torchvision("shufflenet_v2_x0_5"),
    "regnet_y_400mf": _torchvision("regnet_y_400mf"),
    "densenet121": _torchvision("densenet121", 64),
    "deeplabv3_mobilenet_v3_large": _torchvision(
        "deeplabv3_mobilenet_v3_large", 128, weights_backbone=None
    ),
    "timm/vit_tiny_patch16_224": _timm("vit_tiny_patch16_224"),
    "timm/convnext_atto": _timm("convnext_atto"),
    "timm/efficientnet_b0": _timm("efficientnet_b0"),
    "timm/mobilevitv2_050": _timm("mobilevitv2_050", 256),
    "hf/bert": _hf(
        "BertModel",
        "BertConfig",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
    ),
    "hf/gpt2": _hf("GPT2LMHeadModel", "GPT2Config", n_embd=32, n_layer=2, n_head=2, vocab_size=100),
    "hf/llama": _hf(
        "LlamaForCausalLM",
        "LlamaConfig",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    ),
    "hf/t5-encoder": _hf(
        "T5EncoderModel",
        "T5Config",
        d_model=32,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        d_kv=16,
        vocab_size=100,
    ),
}
KINDS = ("export-strict", "export-non-strict", "torchscript")
FAST = {("hf/llama", "torchscript"), ("timm/vit_tiny_patch16_224", "torchscript")}


def _artefact(kind: str, name: str, case: Case) -> tuple[Any, dict[str, Any]]:
    """The artefact of `kind`, and the keyword inputs it takes."""
    model, args, kwargs = case
    if kind.startswith("export"):
        return torch.export.export(model, args, kwargs, strict=kind == "export-strict"), kwargs
    if name.startswith("hf/"):  # Hugging Face models do not script: traced, on token ids alone
        ids = {"input_ids": kwargs["input_ids"]}
        return torch.jit.trace(model, example_kwarg_inputs=ids, strict=False), ids
    return torch.jit.script(model), kwargs


def _functional(ops: dict[str, int]) -> dict[str, int]:
    return {op.rstrip("_"): count for op, count in ops.items()}


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        pytest.param(n, k, marks=[] if (n, k) in FAST else [pytest.mark.slow])
        for n in ZOO
        for k in KINDS
    ],
)
def test_artefact_counts_as_the_eager_model(name: str, kind: str) -> None:
    torch.manual_seed(0)
    case = ZOO[name]()
    model, args, kwargs = case
    eager = torchtally.analyze(model, args, kwargs=kwargs, warn_unsupported=False)
    artefact, artefact_kwargs = _artefact(kind, name, case)
    analysis = torchtally.analyze(artefact, args, kwargs=artefact_kwargs, warn_unsupported=False)
    assert analysis.total() == eager.total() > 0
    assert analysis.by_operator() == eager.by_operator()
    assert analysis.by_module() == eager.by_module()
    assert analysis.by_module("activations") == eager.by_module("activations")
    assert dict(analysis.params) == dict(eager.params)
    assert set(analysis.modules) == set(eager.modules)
    types = {n: i.type_name for n, i in analysis.modules.items()}
    eager_types = {n: i.type_name for n, i in eager.modules.items()}
    if kind == "torchscript":
        assert types == eager_types
    else:  # a module that runs no op leaves no node: its type is unknown, "Module"
        known = {n for n, t in types.items() if t != "Module"}
        assert {n: types[n] for n in known} == {n: eager_types[n] for n in known}
    if not name.startswith("hf/"):  # Hugging Face: other mask code when exported, traced sizes
        assert _functional(analysis.unsupported_ops()) == _functional(eager.unsupported_ops())

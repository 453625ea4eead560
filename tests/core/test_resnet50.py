"""The headline numbers: torchvision ResNet-50 at 1x3x224x224, against the reference figures and
mmengine itself, in eval and in training mode."""

from __future__ import annotations

import pytest
import torch
import torchvision

import torchtally

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
_mmengine_analysis = pytest.importorskip("mmengine.analysis")
mmengine_complexity_info = _mmengine_analysis.get_model_complexity_info

pytestmark = pytest.mark.slow  # ResNet-50 through torchtally and mmengine

REFERENCE = {  # mmengine 0.10.7 (DESIGN.md); the seed document's 4.145G is the training figure
    "eval": (4_111_512_576, 11_114_984),
    "train": (4_144_854_528, 11_114_984),
}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_resnet50_matches_the_reference_and_mmengine(mode: str) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).train(mode == "train")
    flops, activations = REFERENCE[mode]
    ours = torchtally.get_model_complexity_info(
        model, input_shape=(3, 224, 224), show_table=False, show_arch=False
    )
    assert (ours["flops"], ours["activations"], ours["params"]) == (flops, activations, 25_557_032)
    assert ours["flops_str"] == {"eval": "4.112G", "train": "4.145G"}[mode]
    theirs = mmengine_complexity_info(
        model, input_shape=(3, 224, 224), show_table=False, show_arch=False
    )
    assert {k: ours[k] for k in ("flops", "activations", "params")} == {
        k: theirs[k] for k in ("flops", "activations", "params")
    }

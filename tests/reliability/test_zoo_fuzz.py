"""Fuzz: torchvision's zoo in every mode. Each model is analysed in real, fake, auto and meta
mode; every run either counts, or (fake and meta only) refuses with a TraceError caused by an op
whose output depends on the data (detection's nonzero and nms). No other outcome is allowed, the
counts agree between modes, and the model is left as it was.

The whole zoo (121 models x 4 modes) takes several minutes on 2 cores, so by default a model of
every family runs; ``TORCHTALLY_ZOO_FUZZ=1`` runs them all.
"""

from __future__ import annotations

import logging
import os
import warnings

import pytest
import torch
import zoo
from reliability.helpers import Snapshot

import torchtally
from torchtally.fake import NEEDS_REAL_DATA

pytestmark = pytest.mark.slow  # zoo models in every mode

SAMPLE = (
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "googlenet",
    "inception_v3",
    "mnasnet0_5",
    "mobilenet_v3_small",
    "regnet_y_400mf",
    "resnet18",
    "shufflenet_v2_x0_5",
    "squeezenet1_0",
    "swin_t",
    "vgg11",
    "vit_b_32",
    "quantized_mobilenet_v2",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "ssdlite320_mobilenet_v3_large",
    "r3d_18",
    "raft_small",
)
MODELS = zoo.ALL if os.environ.get("TORCHTALLY_ZOO_FUZZ") else SAMPLE
MODES = ("real", "fake", "auto", "meta")


def analyse(model: torch.nn.Module, case: zoo.ZooModel, mode: str) -> torchtally.Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's and torchvision's own notes
        return torchtally.analyze(
            model, case.inputs(), kwargs=case.kwargs, mode=mode, warn_unsupported=False
        )


def test_the_sample_has_a_model_of_every_family() -> None:
    assert set(SAMPLE) <= set(zoo.ALL)
    assert {zoo.kind(name) for name in SAMPLE} == {zoo.kind(name) for name in zoo.ALL}


@pytest.mark.parametrize("name", MODELS)
def test_every_mode_counts_or_refuses_for_data(name: str, caplog: pytest.LogCaptureFixture) -> None:
    case = zoo.case(name)
    model = case.build()
    before = Snapshot.take(model)
    counted: dict[str, tuple[int, int, int]] = {}
    refused: dict[str, str] = {}
    caplog.set_level(logging.ERROR, logger="torch._subclasses.fake_tensor")
    for mode in MODES:
        if mode == "meta":
            before.assert_unchanged()
            model = model.to("meta")  # last: the weights are gone after this
        try:
            analysis = analyse(model, case, mode)
        except torchtally.TraceError as error:
            assert mode in ("fake", "meta"), f"{mode}: {error}"
            assert isinstance(error.__cause__, NEEDS_REAL_DATA), f"{mode}: {error}"
            assert error.failed_op, "the refusal names the op that needs data"
            refused[mode] = error.failed_op
            continue
        counted[mode] = (
            analysis.total(),
            analysis.total("activations"),
            analysis.params[""],
        )
        assert analysis.total() > 0 and analysis.params[""] > 0
    assert "real" in counted and "auto" in counted
    assert len(set(counted.values())) == 1, counted  # every mode that counted agrees
    if refused:  # a model that needs its data: refused in both shape-only modes
        assert set(refused) == {"fake", "meta"}, refused


def test_a_refusal_for_data_says_which_mode_to_use() -> None:
    case = zoo.case("fasterrcnn_mobilenet_v3_large_320_fpn")
    with pytest.raises(torchtally.TraceError) as raised:
        analyse(case.build(), case, "fake")
    message = str(raised.value)
    assert "mode='real'" in message or "mode='auto'" in message
    assert "Check that the inputs have the shapes" not in message

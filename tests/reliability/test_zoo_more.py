"""Fuzz: more models in every mode (reliability/zoo_more.py: timm families, Hugging Face
architectures from small configurations, our own modules with the ops that used to count 0).

Each model is analysed in real, fake, auto and meta mode (meta when it can be built on the meta
device): every mode that runs counts the same flops, activations and parameters (fake and meta
may refuse only for an op whose output depends on the data), nothing but element-wise ops is left
unsupported (element-wise counting leaves nothing), and the model is left as it was.

A quick model of each kind runs by default; ``TORCHTALLY_ZOO_MORE=1`` runs them all (about 50,
several minutes on 2 cores).
"""

from __future__ import annotations

import logging
import os
import warnings

import pytest
import torch
from reliability import zoo_more
from reliability.helpers import Snapshot

import torchtally
from torchtally.fake import NEEDS_REAL_DATA

ALL = os.environ.get("TORCHTALLY_ZOO_MORE")
CASES = [case for case in zoo_more.CASES if ALL or case.quick]


def analyse(
    model: torch.nn.Module, case: zoo_more.Case, inputs: object, mode: str
) -> torchtally.Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchtally.analyze(
            model,
            inputs if isinstance(inputs, (tuple, dict)) else (inputs,),
            mode=mode,
            handlers=case.handlers,
            warn_unsupported=False,
        )


def test_the_zoo_has_thirty_models_beyond_torchvisions_and_a_quick_one_of_each_kind() -> None:
    assert len(zoo_more.CASES) >= 30
    assert {"sequencer2d_s", "levit_128s", "volo_d1_224"} <= set(zoo_more.BY_NAME)
    assert {"qwen2_moe", "qwen3_moe", "fnet", "wav2vec2", "mamba", "gemma"} <= set(zoo_more.BY_NAME)
    quick = {case.name for case in zoo_more.CASES if case.quick}
    assert quick & set(zoo_more.TIMM) and quick & set(zoo_more.HF) and len(quick) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_mode_counts_the_same_and_only_element_wise_ops_go_uncounted(
    case: zoo_more.Case, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="torch._subclasses.fake_tensor")
    model, inputs = case.model(), case.arguments()
    before = Snapshot.take(model, inputs)
    counted: dict[str, tuple[int, int, int]] = {}
    refused: dict[str, str] = {}
    for mode in ("real", "fake", "auto", "meta"):
        if mode == "meta":
            if not case.meta:
                continue
            with torch.device("meta"):
                model = case.model()
        try:
            analysis = analyse(model, case, inputs, mode)
        except torchtally.TraceError as error:
            assert mode in ("fake", "meta"), f"{mode}: {error}"
            assert isinstance(error.__cause__, NEEDS_REAL_DATA), f"{mode}: {error}"
            refused[mode] = str(error.failed_op)
            continue
        if mode == "real":
            before.assert_unchanged()
            unsupported = analysis.recount(elementwise=True).unsupported_ops()
            assert unsupported == {}, f"not even element-wise counting counts {unsupported}"
        params = analysis.params.get("", 0)  # a quantized model keeps its weights packed
        counted[mode] = (analysis.total(), analysis.total("activations"), params)
        assert analysis.total() > 0
    assert "real" in counted and "auto" in counted
    assert len(set(counted.values())) == 1, counted

"""The OpenMMLab source's parts without building a codebase's model: which texts it claims, the
config read with --cfg-options, pretrained entries dropped, the errors, and mmcv-lite's stand-in
ops."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torchtally_testing import FakeDist, FakeEntryPoint

import torchtally_reporters
from torchtally_cli.cli import EXIT_MISSING, EXIT_MODEL, EXIT_USAGE, main
from torchtally_cli.sources import FACTORY, find_source, model_sources

mmengine = pytest.importorskip("mmengine")

from torchtally_openmmlab import source as openmmlab  # noqa: E402
from torchtally_openmmlab.mmcv_ops import (  # noqa: E402
    MissingCompiledOpError,
    nms,
    provide_missing_ops,
    roi_align_forward,
)

CONFIG = {
    "default_scope": "mmdet",
    "model": {
        "type": "RetinaNet",
        "backbone": {
            "type": "ResNet",
            "depth": 50,
            "init_cfg": {"type": "Pretrained", "checkpoint": "torchvision://resnet50"},
        },
        "neck": {"type": "FPN", "init_cfg": [{"type": "Xavier"}, {"type": "Pretrained"}]},
        "head": {"pretrained": "open-mmlab://x", "layers": [{"init_cfg": {"type": "Pretrained"}}]},
    },
}


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "retina.json"
    path.write_text(json.dumps(CONFIG))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_config_files_are_claimed_and_factories_are_not() -> None:
    assert "openmmlab" in [source.name for source in model_sources()]
    for text in ("configs/a.py", "b.json", "c.yaml", "d.yml", "mmdet::retinanet/r.py"):
        assert find_source(text).name == "openmmlab", text
    assert find_source("configs/a.py:build") is FACTORY
    assert find_source("torchvision:resnet18").name == "torchvision"


def test_cfg_options_are_read_as_mmengine_tools_read_them(config: str) -> None:
    options = ["model.backbone.depth=18", "model.neck.out=[1,2]", "default_scope=mmseg"]
    cfg = openmmlab.read_config(config, options, mmengine)
    assert cfg.model.backbone.depth == 18
    assert cfg.model.neck.out == [1, 2]
    assert cfg.default_scope == "mmseg"
    with pytest.raises(openmmlab.InputSpecError, match="write KEY=VALUE"):
        openmmlab.parse_cfg_options(["depth"], mmengine)


def test_pretrained_entries_are_dropped(config: str) -> None:
    cfg = openmmlab.read_config(config, [], mmengine)
    model = openmmlab.without_pretrained(cfg.model)
    assert model.backbone.init_cfg is None
    assert model.neck.init_cfg == [{"type": "Xavier"}]
    assert model.head.pretrained is None
    assert model.head.layers[0].init_cfg is None
    assert cfg.model.backbone.init_cfg.type == "Pretrained"  # the config itself is unchanged


def test_config_errors_say_what_to_do(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, str(tmp_path / "missing.py"))
    assert code == EXIT_MODEL and "no config file" in err
    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps({"default_scope": "mmpose", "model": {}}))
    code, _, err = run(capsys, str(pose))
    assert code == EXIT_MODEL
    assert "default_scope 'mmpose'; torchtally builds the models of mmpretrain, mmdet, mmseg" in err
    code, _, err = run(capsys, config, "--set", "depth=18")
    assert code == EXIT_USAGE and "override config values with --cfg-options" in err
    code, _, err = run(capsys, "torchvision:resnet18", "--cfg-options", "a=1")
    assert code == EXIT_USAGE and "--cfg-options is for CONFIG.py sources" in err


def test_a_missing_codebase_names_what_to_install(
    config: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def find(name: str, *args: Any) -> Any:
        return None if name in ("mmdet", "mmcv") else real(name, *args)

    monkeypatch.setattr(openmmlab.importlib.util, "find_spec", find)
    code, _, err = run(capsys, config)
    assert code == EXIT_MISSING
    assert "needs mmcv and mmdet, which is not installed: pip install mmcv-lite==2.1.0 mmdet" in err


def test_without_the_plugin_a_config_file_says_which_plugin_reads_it(
    entry_points: list[FakeEntryPoint], capsys: pytest.CaptureFixture[str]
) -> None:
    dist = FakeDist("torchtally-reporters", "0.1.0")
    entry_points.append(FakeEntryPoint("reporters", torchtally_reporters, dist))
    code, _, err = run(capsys, "configs/resnet/resnet50_8xb32_in1k.py")
    assert code == EXIT_USAGE
    assert "an OpenMMLab config file needs the source plugin torchtally-openmmlab" in err


# --- mmcv-lite's stand-in ops ----------------------------------------------------------------


def test_the_stand_in_ops_are_torchvisions() -> None:
    pytest.importorskip("torchvision")
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(20, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + 5 + torch.rand(20, 2, generator=generator) * 30], 1)
    scores = torch.rand(20, generator=generator)
    from torchvision.ops import nms as tv_nms
    from torchvision.ops import roi_align

    assert torch.equal(nms(boxes, scores, 0.5), tv_nms(boxes, scores, 0.5))
    features = torch.rand(2, 4, 16, 16, generator=generator)
    rois = torch.tensor([[0, 1.0, 1.0, 9.0, 12.0], [1, 0.0, 2.0, 15.0, 15.0]])
    output = torch.zeros(2, 4, 7, 7)
    options = {"spatial_scale": 0.5, "sampling_ratio": 2, "aligned": True}
    roi_align_forward(
        features, rois, output, torch.empty(0), torch.empty(0),
        aligned_height=7, aligned_width=7, pool_mode=1, **options,
    )  # fmt: skip
    assert torch.equal(output, roi_align(features, rois, (7, 7), 0.5, 2, True))
    with pytest.raises(MissingCompiledOpError, match="nms with offset=1"):
        nms(boxes, scores, 0.5, offset=1)


@pytest.mark.skipif(importlib.util.find_spec("mmcv") is None, reason="needs mmcv-lite")
def test_mmcv_ops_import_and_a_missing_op_is_named() -> None:
    if not provide_missing_ops():
        pytest.skip("the full mmcv is installed: nothing stands in")
    from mmcv.ops import DeformConv2d

    conv = DeformConv2d(4, 4, 3)
    with pytest.raises(MissingCompiledOpError, match="compiled op deform_conv_forward"):
        conv(torch.rand(1, 4, 8, 8), torch.zeros(1, 18, 6, 6))
    assert sys.modules["mmcv._ext"].__spec__.loader is None

"""The seed's example: ``get_flops.py configs/resnet/resnet50_8xb32_in1k.py`` (mmpretrain), run as
``torchtally CONFIG --shape 224``, prints the seed's summary block and its table row for row.

``seed_get_flops.txt`` holds the block and the table as the seed shows them; the seed's text has
its runs of spaces collapsed (the rows' indentation is lost), so table rows are compared cell by
cell with the spaces around each cell stripped. The exact layout, spaces included, is compared
with mmengine's own table in ``test_openmmlab_peers.py``.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
from openmmlab.helpers import needs

from torchtally_cli.cli import main

SEED = Path(__file__).with_name("seed_get_flops.txt").read_text().splitlines()
CONFIG = "resnet/resnet50_8xb32_in1k.py"


def cells(row: str) -> list[str]:
    """A table row's cells without their padding; a border line as it is."""
    if not row.startswith("|"):
        return [row]
    return [cell.strip() for cell in row.strip("|").split("|")]


@pytest.mark.slow
@needs("mmpretrain")
def test_the_seed_example_prints_the_seeds_block_and_table(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # The config file inside the installed package, as a user in mmpretrain's folder names it.
    spec = importlib.util.find_spec("mmpretrain")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / ".mim" / "configs" / CONFIG
    assert main([str(path), "--shape", "224"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:6] == SEED[:6]  # the summary block, exactly
    assert [cells(row) for row in out[6:]] == [cells(row) for row in SEED[6:]]
    logged = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert [message.split(" ran ")[0] for message in logged] == [
        f"unsupported operator aten::{op}" for op in ("add_", "max_pool2d_with_indices", "relu_")
    ]
    # The same config named inside the package, and the default shape (224) too.
    assert main([f"mmpretrain::{CONFIG}", "-q"]) == 0
    assert capsys.readouterr().out.splitlines() == out


@pytest.mark.slow
@needs("mmpretrain")
def test_a_yaml_config_with_a_base_and_cfg_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.find_spec("mmpretrain")
    assert spec is not None and spec.origin is not None
    base = Path(spec.origin).parent / ".mim" / "configs" / CONFIG
    config = tmp_path / "resnet18.yaml"
    config.write_text(f"_base_: ['{base}']\nmodel:\n  head:\n    in_channels: 512\n")
    argv = [str(config), "--cfg-options", "model.backbone.depth=18", "--units", "raw", "-q"]
    assert main([*argv, "--shape", "224", "256", "--max-depth", "0"]) == 0
    block = capsys.readouterr().out.splitlines()[:6]
    # ResNet-18's features on 224 x 256 (mmengine's count on the same config: 2,078,347,264); its
    # head (513,000 of the parameters) is not run.
    assert block[1:4] == ["Input shape: (3, 224, 256)", "Flops: 2078347264", "Params: 11689512"]
    assert main([str(config), "--mode", "meta"]) == 2
    assert "cannot be built on the meta device" in capsys.readouterr().err

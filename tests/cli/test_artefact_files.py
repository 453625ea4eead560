"""The command on saved models: ``torchtally model.pt2`` (torch.export) and ``model.pt``
(TorchScript), counted as the eager model they were made from."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torchtally
from torchtally_cli.cli import EXIT_MODEL, EXIT_USAGE, main

Run = Callable[..., tuple[int, str, str]]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.stem(x)).flatten(1))


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Embedding(10, 3)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(ids).sum(1)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def report(run: Run, *argv: str) -> dict[str, Any]:
    code, out, err = run(*argv, "--format", "json", "-q")
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def eager(model: nn.Module, *inputs: Any) -> dict[str, Any]:
    return torchtally.analyze(model, inputs, warn_unsupported=False).to_dict()


@pytest.fixture
def pt2(tmp_path: Path) -> Path:
    """Net exported at batch 2, 16x16, the batch dynamic."""
    path = tmp_path / "net.pt2"
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        Net().eval(), (torch.randn(2, 3, 16, 16),), dynamic_shapes={"x": {0: batch}}
    )
    torch.export.save(program, path)
    return path


def test_pt2_is_counted_at_its_example_inputs_without_reading_its_weights(
    run: Run, pt2: Path
) -> None:
    document = report(run, str(pt2))
    expected = eager(Net().eval(), torch.randn(2, 3, 16, 16))
    assert document["mode"] == "meta"  # the weights were made on the meta device, not read
    assert document["inputs"] == expected["inputs"]
    for metric in ("flops", "activations"):
        assert document["metrics"][metric]["by_module"] == expected["metrics"][metric]["by_module"]
    assert document["params"] == expected["params"]
    assert document["modules"] == expected["modules"]
    real = report(run, str(pt2), "--mode", "real")
    assert real["mode"] == "real"
    assert real["metrics"] == document["metrics"]


def test_pt2_at_other_sizes(run: Run, pt2: Path) -> None:
    document = report(run, str(pt2), "--shape", "3", "16", "16", "--batch", "5")
    expected = eager(Net().eval(), torch.randn(5, 3, 16, 16))
    assert document["inputs"] == expected["inputs"]
    assert document["metrics"]["flops"]["total"] == expected["metrics"]["flops"]["total"]


def test_pt2_table_names_the_original_modules(run: Run, pt2: Path) -> None:
    code, out, _ = run(str(pt2), "--max-depth", "1", "-q")
    assert code == 0
    assert "Input shape: (2, 3, 16, 16)" in out
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert rows == ["module", "model", "stem", "head", "pool"]  # as for eager: no parameters last


def test_pt2_sizes_outside_what_it_was_exported_for_are_refused(
    run: Run, pt2: Path, tmp_path: Path
) -> None:
    static = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(Net().eval(), (torch.randn(2, 3, 16, 16),)), static)
    code, _, err = run(str(static), "--batch", "3")
    assert code != 0
    assert "do not fit this exported program (exported for inputs (2, 3, 16, 16))" in err


def test_pt2_with_several_inputs_takes_one_shape_each(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "two.pt2"
    x, ids = torch.randn(2, 4), torch.zeros(2, 6, dtype=torch.long)
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        TwoInputs().eval(), (x, ids), dynamic_shapes=({0: batch}, {0: batch})
    )
    torch.export.save(program, path)
    assert report(run, str(path))["metrics"]["flops"]["total"] == 2 * 4 * 3
    document = report(run, str(path), "--shape", "4,", "6,", "--batch", "7")
    assert document["inputs"][0][1] == {"shape": [7, 6], "dtype": "int64"}  # dtype kept
    assert document["metrics"]["flops"]["total"] == 7 * 4 * 3
    code, _, err = run(str(path), "--shape", "4,")
    assert code == EXIT_USAGE
    assert "takes 2 tensor input(s), without the batch (4,), (6,): give one shape each" in err


def test_pt2_exported_with_keyword_inputs(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "kw.pt2"
    inputs = {"x": torch.randn(2, 4), "ids": torch.zeros(2, 6, dtype=torch.long)}
    batch = torch.export.Dim("batch")
    dynamic = {"x": {0: batch}, "ids": {0: batch}}
    torch.export.save(
        torch.export.export(TwoInputs().eval(), (), inputs, dynamic_shapes=dynamic), path
    )
    assert report(run, str(path))["metrics"]["flops"]["total"] == 2 * 4 * 3
    assert report(run, str(path), "--batch", "3")["metrics"]["flops"]["total"] == 3 * 4 * 3


def test_torchscript_file_needs_a_shape_and_counts_as_eager(run: Run, tmp_path: Path) -> None:
    model = Net().eval()
    x = torch.randn(1, 3, 16, 16)
    for kind, artefact in (
        ("script", torch.jit.script(model)),
        ("trace", torch.jit.trace(model, x)),
    ):
        path = tmp_path / f"{kind}.pt"
        torch.jit.save(artefact, path)
        code, _, err = run(str(path))
        assert code == EXIT_USAGE
        assert "does not record the inputs it takes" in err
        document = report(run, str(path), "--shape", "3", "16", "16")
        expected = eager(model, x)
        assert document["mode"] == "meta"  # loaded on the meta device: its weights not read
        assert document["metrics"] == expected["metrics"]
        assert document["modules"] == expected["modules"]
        assert document["params"] == expected["params"]
        real = report(run, str(path), "--shape", "3", "16", "16", "--mode", "real")
        assert real["mode"] == "real" and real["metrics"] == expected["metrics"]
        code, _, err = run(str(path), "--shape", "3", "16", "16", "--measure")
        assert code == EXIT_USAGE
        assert "--measure times eager modules, not a saved exported program (.pt2) or" in err


class Positives(nn.Module):
    """Data-dependent: how many elements `y[y > 0]` keeps depends on the values."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return y[y > 0].sum()


def test_a_torchscript_file_that_needs_real_data_is_loaded_with_its_weights_and_run(
    run: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "positives.pt"
    torch.jit.save(torch.jit.script(Positives().eval()), path)
    code, out, err = run(str(path), "--shape", "4,", "--format", "json")
    assert code == 0, err
    warned = caplog.text  # on stderr outside pytest
    assert "from its weights' sizes failed" in warned and "running it for real instead" in warned
    document = json.loads(out)
    assert document["mode"] == "real"
    assert document["metrics"]["flops"]["total"] == 4 * 4
    caplog.clear()
    code, _, _ = run(str(path), "--shape", "4,", "--mode", "meta")
    assert code != 0 and "running it for real" not in caplog.text  # --mode meta: shapes alone


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (("--train",), EXIT_USAGE, "--train does not apply to an exported program"),
        (("--set", "width=2"), EXIT_USAGE, "--set does not apply to a saved exported program"),
        (("--dtype", "float16"), EXIT_USAGE, "--dtype does not apply to a saved exported"),
        (("--seq-len", "8"), EXIT_USAGE, "--seq-len does not apply to an exported program"),
        (("--measure",), EXIT_USAGE, "--measure times eager modules, not a saved exported"),
    ],
)
def test_options_that_do_not_apply_to_a_saved_program(
    run: Run, pt2: Path, argv: tuple[str, ...], code: int, message: str
) -> None:
    result, _, err = run(str(pt2), *argv)
    assert result == code
    assert message in err


def test_files_that_are_not_saved_programs(run: Run, tmp_path: Path) -> None:
    pickled = tmp_path / "model.pt"
    torch.save(Net(), pickled)
    code, _, err = run(str(pickled), "--shape", "3", "16", "16")
    assert code == EXIT_MODEL
    assert "a model saved with torch.save is Python objects: load it in a factory" in err
    code, _, err = run(str(tmp_path / "missing.pt2"))
    assert code == EXIT_MODEL
    assert "missing.pt2: no such file" in err


class RoiAlign(nn.Module):
    def forward(self, x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        torchvision = pytest.importorskip("torchvision")
        return torchvision.ops.roi_align(x, boxes, (2, 2))


def test_a_saved_file_gets_the_package_that_registers_its_ops_imported(tmp_path: Path) -> None:
    """A fresh interpreter has not imported torchvision, whose ops (``torchvision::roi_align``)
    a saved program calls: loading it imports the package first."""
    pytest.importorskip("torchvision")
    path = tmp_path / "roi.pt2"
    x, boxes = torch.randn(1, 3, 8, 8), torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
    torch.export.save(torch.export.export(RoiAlign(), (x, boxes)), path)
    script = (
        "import sys; from torchtally_cli.cli import main; "
        "before = 'torchvision' in sys.modules; code = main(sys.argv[1:]); "
        "print(before, 'torchvision' in sys.modules, code, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), "--format", "json", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stderr.splitlines()[-1] == "False True 0", done.stderr[-2000:]
    document = json.loads(done.stdout)
    # 1 box, 3 channels, 2 x 2 bins, each 2 x 2 samples (a 4-pixel box over 2 bins) of 4 MACs
    assert document["metrics"]["flops"]["by_operator"] == {"roi_align": 1 * 3 * 4 * 4 * 4}


@pytest.mark.slow
def test_a_scripted_detection_model_file_counts_as_eager(run: Run, tmp_path: Path) -> None:
    """torchvision's Faster R-CNN, scripted: its forward takes a list of images, its transform
    builds tensors from lists (never on fake tensors), `nms` calls functions without inputs; it
    is loaded without weights, then with them to run for real."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    detection = torchvision.models.detection
    model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None)
    path = tmp_path / "frcnn.pt"
    torch.jit.save(torch.jit.script(model.eval()), path)
    document = report(run, str(path), "--shape", "3", "320", "320", "--batch", "2")
    assert document["mode"] == "real"
    expected = torchtally.analyze(
        model, ([torch.randn(3, 320, 320), torch.randn(3, 320, 320)],), warn_unsupported=False
    )
    by_module = document["metrics"]["flops"]["by_module"]
    for name in ("backbone", "backbone.body", "backbone.fpn", "rpn.head", "transform"):
        assert by_module[name] == expected.by_module()[name], name  # not data-dependent
    assert by_module["roi_heads"] > 0 and set(by_module) == set(expected.by_module())

"""The ``torchtally`` command: every flag and source, exit codes and error messages.

Counts are checked against hand arithmetic on tiny models, or against ``torchtally.analyze`` on
the same model and input where the model is a zoo model. Models come from a factory file written
per test (``path/to/file.py:factory`` and ``module:factory``), torchvision, timm and transformers
(tiny configurations: one or two layers, hidden size 32 to 64).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torchtally_testing import TINY_LLAMA

import torchtally
from torchtally_cli.cli import (
    EXIT_ANALYSIS,
    EXIT_MISSING,
    EXIT_MODEL,
    EXIT_USAGE,
    main,
)
from torchtally_reporters.summary import describe_inputs

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
timm = pytest.importorskip("timm")

MODELS = """
import torch
from torch import nn


def linear():
    return nn.Linear(10, 4)


def norm():
    return nn.BatchNorm1d(4)


def relu_linear():
    return nn.Sequential(nn.Linear(10, 4), nn.ReLU())


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(6, 3)

    def forward(self, x, y):
        return self.a(x) + self.b(y)


def language_model():
    return nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 5))


class KeepsPositive(nn.Module):
    '''Its output's size depends on the data: fake tensors cannot run it.'''

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 4)

    def forward(self, x):
        y = self.fc(x)
        return y[y > 0]


class Broken(nn.Module):
    def forward(self, x):
        raise ValueError("bad input width")


def raises():
    raise RuntimeError("out of widgets")


def with_inputs():
    return nn.Linear(3, 2), torch.ones(5, 3)
"""

# Tiny Llama, 8 tokens: per layer q 8*64*64, k and v 8*64*32 (2 KV heads of 16), o 8*64*64, and
# gate, up, down 8*64*128 each; 2 layers; the LM head 8*64*100.
LLAMA_LINEAR_FLOPS = 2 * (2 * 8 * 64 * 64 + 2 * 8 * 64 * 32 + 3 * 8 * 64 * 128) + 8 * 64 * 100
TINY_BERT = [
    "num_hidden_layers=1",
    "hidden_size=32",
    "num_attention_heads=2",
    "intermediate_size=64",
    "vocab_size=100",
]
# Tiny BERT, 16 tokens: q, k, v, o 16*32*32 each; the FFN 16*32*64 twice; the pooler, on the
# first token only, 1*32*32.
BERT_LINEAR_FLOPS = 4 * 16 * 32 * 32 + 2 * 16 * 32 * 64 + 32 * 32

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(*argv)`` -> (exit code, stdout, stderr)."""

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


@pytest.fixture
def run_json(run: Run) -> Callable[..., dict[str, Any]]:
    """``run_json(*argv)``: the JSON document the command prints (it must succeed)."""

    def call(*argv: str) -> dict[str, Any]:
        code, out, err = run(*argv, "--format", "json", "-q")
        assert code == 0, err
        document: dict[str, Any] = json.loads(out)
        return document

    return call


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The factory file's path; it is importable as ``tt_cli_models`` too."""
    path = tmp_path / "tt_cli_models.py"
    path.write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tt_cli_models", raising=False)
    return str(path)


@pytest.fixture
def llama_json(tmp_path: Path) -> str:
    path = tmp_path / "llama.json"
    path.write_text(json.dumps(TINY_LLAMA))
    return str(path)


def flops(document: dict[str, Any], phase: str | None = None) -> int:
    section = document["phases"][phase] if phase else document["metrics"]
    total: int = section["flops"]["total"]
    return total


# --- help, version, usage ----------------------------------------------------------------------


def test_help_has_examples_sources_and_exit_codes(run: Run) -> None:
    code, out, _ = run("--help")
    assert code == 0
    for text in (
        "examples:",
        "torchtally torchvision:resnet50 --shape 3 224 224",
        "transformers:LlamaForCausalLM --config LlamaConfig",
        "model sources:",
        "timm:NAME",
        "exit codes:",
        "--seq-len",
        "--mode {auto,real,fake,meta}",
        "--backward",
        "--dtype {float32,float16,bfloat16,float64}",
    ):
        assert text in out, text


def test_version(run: Run) -> None:
    assert run("--version")[:2] == (0, f"torchtally {torchtally.__version__}\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "the following arguments are required: model"),
        (("x:y", "--bogus"), "unrecognized arguments: --bogus"),
        (("x:y", "--mode", "dream"), "invalid choice: 'dream'"),
        (("x:y", "--dtype", "int8"), "invalid choice: 'int8'"),
        (("x:y", "--batch", "two"), "invalid int value: 'two'"),
        (("resnet50",), "use torchvision:NAME or package.module:factory"),
        (("x:y", "--max-depth", "-1"), "--max-depth must be 0 or more"),
        (("x:y", "--device", "toaster"), "--device toaster"),
    ],
)
def test_usage_errors(run: Run, argv: tuple[str, ...], message: str) -> None:
    code, out, err = run(*argv)
    assert code == EXIT_USAGE
    assert out == ""
    assert err.startswith("torchtally: error: ")
    assert message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda(run: Run, models: str) -> None:
    code, _, err = run(f"{models}:linear", "--device", "cuda")
    assert code == EXIT_USAGE
    assert "CUDA is not available on this machine" in err


def test_unknown_format_fails_before_the_model_is_built(run: Run) -> None:
    # the source does not exist: reaching it would exit with EXIT_MODEL
    code, _, err = run("no_such_package:build", "--format", "yaml")
    assert code == EXIT_USAGE
    assert "unknown output format 'yaml'; installed formats: arch, csv, html, json, markdown" in err


# --- counts through the command ---------------------------------------------------------------


def test_factory_file_counts(run_json: Callable[..., dict[str, Any]], models: str) -> None:
    document = run_json(f"{models}:linear", "--shape", "10,")
    assert flops(document) == 1 * 10 * 4  # one sample: (1, 10) @ (10, 4)
    assert document["metrics"]["activations"]["total"] == 4
    assert document["params"]["total"] == 10 * 4 + 4
    assert document["inputs"][0] == [{"shape": [1, 10], "dtype": "float32"}]


def test_module_factory_and_batch(run_json: Callable[..., dict[str, Any]], models: str) -> None:
    assert flops(run_json("tt_cli_models:linear", "--shape", "10,", "--batch", "3")) == 3 * 10 * 4


def test_several_inputs(run_json: Callable[..., dict[str, Any]], models: str) -> None:
    document = run_json("tt_cli_models:TwoInputs", "--shape", "4,", "6,", "--batch", "2")
    assert flops(document) == 2 * 4 * 3 + 2 * 6 * 3


def test_factory_inputs(run: Run, models: str) -> None:
    code, out, _ = run("tt_cli_models:with_inputs", "--units", "raw", "-q")
    assert code == 0
    assert "Input shape: (5, 3)" in out
    assert "Flops: 30" in out  # (5, 3) @ (3, 2)


def test_seq_len_makes_token_ids(run_json: Callable[..., dict[str, Any]], models: str) -> None:
    document = run_json("tt_cli_models:language_model", "--seq-len", "7", "--batch", "2")
    assert flops(document) == 2 * 7 * 8 * 5  # the linear after the embedding
    assert document["inputs"][0] == [{"shape": [2, 7], "dtype": "int64"}]


def test_table_summary_units_and_flop_unit(run: Run, models: str) -> None:
    code, out, _ = run(f"{models}:linear", "--shape", "10,", "--units", "raw", "-q")
    assert code == 0
    assert out.splitlines()[:6] == [
        "=" * 30,
        "Input shape: (1, 10)",
        "Flops: 40",
        "Params: 44",
        "Activation: 4",
        "=" * 30,
    ]
    code, out, _ = run(f"{models}:linear", "--shape", "10,", "--flop-unit", "flop", "-q")
    assert "Flops: 80" in out  # two flops per multiply-add, in the block and the table
    assert "| model   | 44                   | 80     | 4            |" in out
    code, out, _ = run(f"{models}:linear", "--shape", "10,", "--batch", "1000", "-q")
    assert "Flops: 40K" in out  # human units by default
    code, out, _ = run(f"{models}:linear", "--shape", "10,", "--batch", "1000", "--units", "raw")
    assert "Flops: 40000" in out


def test_train_mode(run_json: Callable[..., dict[str, Any]], models: str) -> None:
    # batch norm with affine over 2 x 4 elements: 2 flops each in eval, 5 in training
    assert flops(run_json(f"{models}:norm", "--shape", "4,", "--batch", "2")) == 2 * 8
    assert flops(run_json(f"{models}:norm", "--shape", "4,", "--batch", "2", "--train")) == 5 * 8


def test_elementwise_and_quiet(
    run: Run,
    run_json: Callable[..., dict[str, Any]],
    models: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert flops(run_json(f"{models}:relu_linear", "--shape", "10,")) == 40
    assert flops(run_json(f"{models}:relu_linear", "--shape", "10,", "--elementwise")) == 40 + 4
    caplog.clear()
    assert run(f"{models}:relu_linear", "--shape", "10,")[0] == 0
    assert "unsupported operator aten::relu ran 1 time(s)" in caplog.text  # stderr, outside pytest
    caplog.clear()
    assert run(f"{models}:relu_linear", "--shape", "10,", "-q")[0] == 0
    assert "unsupported" not in caplog.text


def test_backward(run: Run, run_json: Callable[..., dict[str, Any]], models: str) -> None:
    document = run_json(f"{models}:linear", "--shape", "10,", "--backward")
    # forward (1, 10) @ (10, 4); backward: the weight's gradient (4, 1) @ (1, 10), and no input
    # gradient (the input needs none)
    assert flops(document, "forward") == 1 * 10 * 4
    assert flops(document, "backward") == 4 * 1 * 10
    assert flops(document) == 80
    code, out, _ = run(f"{models}:linear", "--shape", "10,", "--backward", "--units", "raw", "-q")
    assert code == 0
    assert "Flops: 80 (forward 40, backward 40)" in out
    assert "#flops (forward) | #flops (backward) | #flops (total)" in out


@pytest.mark.parametrize("mode", ["real", "fake", "meta"])
def test_modes(run_json: Callable[..., dict[str, Any]], models: str, mode: str) -> None:
    document = run_json(f"{models}:linear", "--shape", "10,", "--mode", mode)
    assert document["mode"] == mode
    assert flops(document) == 40


def test_auto_mode_falls_back_to_real(
    run: Run, models: str, caplog: pytest.LogCaptureFixture
) -> None:
    code, out, err = run(f"{models}:KeepsPositive", "--shape", "10,", "--format", "json")
    assert code == 0
    assert json.loads(out)["mode"] == "real"
    assert "running it for real instead" in caplog.text
    code, _, err = run(f"{models}:KeepsPositive", "--shape", "10,", "--mode", "fake")
    assert code == EXIT_ANALYSIS
    assert "analysing" in err


# --- sources -----------------------------------------------------------------------------------


def test_torchvision_matches_the_api(run_json: Callable[..., dict[str, Any]]) -> None:
    document = run_json("torchvision:resnet18", "--shape", "32", "--mode", "real")
    expected = torchtally.analyze(
        torchvision.models.resnet18().eval(), torch.randn(1, 3, 32, 32), warn_unsupported=False
    )
    assert flops(document) == expected.total()
    assert document["params"]["total"] == expected.params[""] == 11_689_512


def test_torchvision_detection(run: Run) -> None:
    small = ["min_size=64", "max_size=64"]
    small += ["rpn_pre_nms_top_n_test=10", "rpn_post_nms_top_n_test=10"]  # 10 proposals
    code, out, err = run(
        "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
        *("--set", *small),
        *("--shape", "3", "64", "64", "--batch", "2", "--mode", "real", "--format", "json"),
        "-q",
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["inputs"][0] == [[{"shape": [3, 64, 64], "dtype": "float32"}] * 2]
    assert document["metrics"]["flops"]["by_operator"]["roi_align"] > 0


def test_torchvision_video(run_json: Callable[..., dict[str, Any]]) -> None:
    document = run_json("torchvision:r3d_18", "--shape", "3", "4", "16", "16")
    # the stem: Conv3d(3, 64, (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3)) on 4 x 16 x 16
    # gives 64 x 4 x 8 x 8: N * prod(weight) * prod(output spatial)
    assert document["metrics"]["flops"]["by_module"]["stem.0"] == 1 * (64 * 3 * 3 * 7 * 7) * (
        4 * 8 * 8
    )


def test_timm_matches_the_api(run_json: Callable[..., dict[str, Any]]) -> None:
    document = run_json("timm:test_resnet", "--shape", "64", "--mode", "real")
    torch.manual_seed(0)
    expected = torchtally.analyze(
        timm.create_model("test_resnet", pretrained=False).eval(),
        torch.randn(1, 3, 64, 64),
        warn_unsupported=False,
    )
    assert flops(document) == expected.total()


def test_timm_default_shape(run: Run) -> None:
    code, out, _ = run("timm:test_vit", "-q", "--max-depth", "0")
    assert code == 0
    assert "Input shape: (1, 3, 160, 160)" in out


@pytest.mark.parametrize("mode", ["real", "fake", "meta"])
def test_transformers_llama_in_every_mode(
    run_json: Callable[..., dict[str, Any]], llama_json: str, mode: str
) -> None:
    document = run_json(
        "transformers:LlamaForCausalLM", "--config", llama_json, "--seq-len", "8", "--mode", mode
    )
    assert document["mode"] == mode
    assert document["metrics"]["flops"]["by_operator"]["linear"] == LLAMA_LINEAR_FLOPS == 641_024


def test_transformers_config_class_and_set(run_json: Callable[..., dict[str, Any]]) -> None:
    document = run_json(
        "transformers:BertModel", "--config", "BertConfig", "--set", *TINY_BERT, "--seq-len", "16"
    )
    assert document["metrics"]["flops"]["by_operator"]["linear"] == BERT_LINEAR_FLOPS
    assert document["inputs"][1]["input_ids"] == {"shape": [1, 16], "dtype": "int64"}


def test_transformers_meta_builds_a_large_config_without_memory(run: Run) -> None:
    # LlamaConfig's defaults are Llama-2-7B's shape (6.7B parameters, 27 GB in float32): on the
    # meta device it takes no memory. 16 tokens through every linear: per layer q, k, v, o
    # 4096 x 4096 and gate, up, down 4096 x 11008; 32 layers; the LM head 4096 x 32000.
    per_layer = 4 * 4096 * 4096 + 3 * 4096 * 11008
    linear = 16 * (32 * per_layer + 4096 * 32000)
    code, out, err = run(
        "transformers:LlamaForCausalLM",
        *("--config", "LlamaConfig", "--seq-len", "16", "--mode", "meta"),
        *("--format", "json", "--metrics", "flops", "-q"),
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["metrics"]["flops"]["by_operator"]["linear"] == linear == 105_713_238_016
    assert document["mode"] == "meta"


def test_transformers_encoder_decoder_vision_and_audio(run: Run) -> None:
    t5 = ["num_layers=1", "num_decoder_layers=1", "d_model=32", "d_ff=64", "num_heads=2"]
    code, out, err = run(
        "transformers:T5ForConditionalGeneration",
        *("--set", *t5, "d_kv=16", "vocab_size=100", "--seq-len", "8", "-q"),
    )
    assert code == 0, err
    assert "Input shape: input_ids (1, 8), decoder_input_ids (1, 8)" in out
    vit = ["num_hidden_layers=1", "hidden_size=32", "num_attention_heads=2", "patch_size=8"]
    code, out, err = run(
        "transformers:ViTModel", *("--set", *vit, "intermediate_size=64", "image_size=32", "-q")
    )
    assert code == 0, err
    assert "Input shape: pixel_values (1, 3, 32, 32)" in out
    whisper = [
        "encoder_layers=1",
        "decoder_layers=1",
        "d_model=32",
        "encoder_attention_heads=2",
        "decoder_attention_heads=2",
        "encoder_ffn_dim=64",
        "decoder_ffn_dim=64",
        "max_source_positions=16",
        "max_target_positions=32",
        "num_mel_bins=8",
    ]
    code, out, err = run(
        "transformers:WhisperForConditionalGeneration", "--set", *whisper, "--seq-len", "4", "-q"
    )
    assert code == 0, err
    assert "Input shape: input_features (1, 8, 32), decoder_input_ids (1, 4)" in out


def test_dtype(run_json: Callable[..., dict[str, Any]], models: str) -> None:
    document = run_json(f"{models}:linear", "--shape", "10,", "--dtype", "float64")
    assert document["inputs"][0] == [{"shape": [1, 10], "dtype": "float64"}]
    assert flops(document) == 40
    document = run_json(f"{models}:linear", "--shape", "10,", "--dtype", "bfloat16")
    assert document["inputs"][0] == [{"shape": [1, 10], "dtype": "bfloat16"}]


def test_device_cpu(run_json: Callable[..., dict[str, Any]], models: str) -> None:
    assert flops(run_json(f"{models}:linear", "--shape", "10,", "--device", "cpu")) == 40


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_cuda(run_json: Callable[..., dict[str, Any]], models: str) -> None:
    document = run_json(f"{models}:linear", "--shape", "10,", "--device", "cuda", "--mode", "real")
    assert flops(document) == 40


# --- output ------------------------------------------------------------------------------------


def test_output_file_format_from_suffix(run: Run, models: str, tmp_path: Path) -> None:
    source = (f"{models}:relu_linear", "--shape", "10,", "-q")
    for name, starts in (
        ("report.json", "{"),
        ("report.md", "**Totals:** 44 parameters, 40 flops, 4 activations"),
        ("report.txt", "=" * 30),
    ):
        code, out, _ = run(*source, "-o", str(tmp_path / name))
        assert code == 0
        assert out.startswith("wrote ")
        assert (tmp_path / name).read_text().startswith(starts), name
    assert json.loads((tmp_path / "report.json").read_text())["metrics"]["flops"]["total"] == 40
    code, _, _ = run(*source, "--format", "arch", "-o", str(tmp_path / "arch.json"))
    assert (tmp_path / "arch.json").read_text().startswith("Sequential(")  # --format wins


def test_output_to_a_missing_folder(run: Run, models: str, tmp_path: Path) -> None:
    code, _, err = run(f"{models}:linear", "--shape", "10,", "-o", str(tmp_path / "no/r.txt"))
    assert code == EXIT_USAGE
    assert "cannot write" in err


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (("--format", "arch"), "Sequential("),
        (("--format", "parameters"), "| name"),
        (("--format", "markdown"), "**Totals:**"),
    ],
)
def test_formats(run: Run, models: str, argv: tuple[str, ...], first_line: str) -> None:
    code, out, _ = run(f"{models}:relu_linear", "--shape", "10,", "-q", *argv)
    assert code == 0
    assert out.startswith(first_line)


def test_max_depth_and_metrics(run: Run, models: str) -> None:
    two = (f"{models}:TwoInputs", "--shape", "4,", "6,", "-q")
    names = [line.split("|")[1].strip() for line in run(*two)[1].splitlines() if "|" in line]
    assert names == ["module", "model", "a", "a.weight", "a.bias", "b", "b.weight", "b.bias"]
    code, out, _ = run(*two, "--max-depth", "0")
    assert code == 0
    assert [line.split("|")[1].strip() for line in out.splitlines() if "|" in line] == [
        "module",
        "model",
    ]
    code, out, _ = run(f"{models}:relu_linear", "--shape", "10,", "-q", "--metrics", "flops")
    assert "| module | #flops |" in out
    code, _, err = run(f"{models}:linear", "--shape", "10,", "--metrics", "latency")
    assert code == EXIT_USAGE
    assert "--metrics latency: no such metric" in err


def test_option_a_format_does_not_take(run: Run, models: str) -> None:
    code, _, err = run(f"{models}:linear", "--shape", "10,", "--format", "json", "--max-depth", "2")
    assert code == EXIT_USAGE
    assert "the 'json' format got unexpected option(s) max_depth" in err


# --- errors a shell user can act on ------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (("torchvision:resnet5",), EXIT_MODEL, "did you mean resnet50"),
        (("timm:test_resnot",), EXIT_MODEL, "timm has no model 'test_resnot'"),
        (("transformers:BertModle",), EXIT_MODEL, "did you mean BertModel"),
        (("no_such_package.models:build",), EXIT_MODEL, "no module named 'no_such_package'"),
        (("{models}:missing",), EXIT_MODEL, "has no attribute 'missing'"),
        (("{models}:raises",), EXIT_MODEL, "failed: RuntimeError: out of widgets"),
        (("torchvision:resnet18", "--set", "colour=red"), EXIT_MODEL, "colour"),
        (("torchvision:resnet18", "--set", "colour"), EXIT_USAGE, "write NAME=VALUE"),
        (("torchvision:resnet18", "--config", "x.json"), EXIT_USAGE, "--config is for"),
        (("transformers:AutoModel",), EXIT_USAGE, "AutoModel needs --config"),
        (("transformers:BertModel", "--config", "Bert"), EXIT_USAGE, "configuration class"),
        (("torchvision:resnet18", "--shape", "3", "x"), EXIT_USAGE, "whole numbers"),
        (("torchvision:resnet18", "--seq-len", "8"), EXIT_USAGE, "--seq-len does not apply"),
        (("torchvision:resnet18", "--batch", "0"), EXIT_USAGE, "--batch must be at least 1"),
        (("{models}:Broken", "--shape", "10,"), EXIT_ANALYSIS, "bad input width"),
    ],
)
def test_errors(run: Run, models: str, argv: tuple[str, ...], code: int, message: str) -> None:
    got, out, err = run(*(arg.format(models=models) for arg in argv))
    assert (got, out) == (code, "")
    assert err.startswith("torchtally: error: ")
    assert message in err
    assert "Traceback" not in err


def test_a_shape_that_does_not_fit(run: Run, models: str) -> None:
    code, _, err = run(f"{models}:linear", "--shape", "7,", "--mode", "real")
    assert code == EXIT_ANALYSIS
    assert f"analysing {models}:linear failed" in err
    assert "(inputs: (1, 7); set them with --shape or --seq-len)" in err


def test_missing_package(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)
    code, _, err = run("timm:resnet50")
    assert code == EXIT_MISSING
    assert "timm:resnet50 needs timm, which is not installed: pip install timm" in err


@pytest.mark.slow
def test_the_installed_command_returns_the_exit_code() -> None:
    command = Path(sys.executable).with_name("torchtally")
    for argv in ([str(command)], [sys.executable, "-m", "torchtally_cli"]):
        done = subprocess.run(
            [*argv, "resnet50"], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == EXIT_USAGE, done.stderr
        assert done.stderr.startswith("torchtally: error: cannot read the model source")


@pytest.mark.slow
def test_a_closed_pipe_is_not_an_error() -> None:
    # `torchtally ... | head -1`: the reader goes away before the report is written
    command = [sys.executable, "-m", "torchtally", "plugins", "--all"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


# --- plugins -----------------------------------------------------------------------------------


def test_plugins(run: Run) -> None:
    code, out, _ = run("plugins")
    assert code == 0
    assert "torchtally.core (torchtally-core" in out
    assert (
        "  formats: 9: arch, csv, html, json, markdown, operators, parameters, summary ..." in out
    )
    assert "flops handlers: " in out and " ..." in out  # the first few of each
    code, out, _ = run("plugins", "--all")
    assert "    table: mmengine's complexity table" in out
    assert " ..." not in out
    assert run("plugins", "--bogus")[0] == EXIT_USAGE


def test_describe_inputs() -> None:
    assert describe_inputs(torch.ones(1, 3, 8, 8)) == "(1, 3, 8, 8)"
    assert describe_inputs((torch.ones(2), torch.ones(3, 4))) == "(2,), (3, 4)"
    assert describe_inputs(([torch.ones(3, 8, 8)] * 2,)) == "[(3, 8, 8), (3, 8, 8)]"
    assert (
        describe_inputs({"input_ids": torch.ones(1, 4), "use_cache": False}) == "input_ids (1, 4)"
    )


def test_main_returns_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resnet50"]) == EXIT_USAGE
    assert "use torchvision:NAME or package.module:factory" in capsys.readouterr().err
    assert main(["torchvision:no_such_net"]) == EXIT_MODEL
    assert "torchvision has no model 'no_such_net'" in capsys.readouterr().err
    assert main(["plugins"]) == 0
    assert "torchtally.core (torchtally-core" in capsys.readouterr().out


def test_main_writes_the_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "resnet.md"
    code = main(["torchvision:resnet18", "--shape", "64", "--format", "markdown", "-o", str(out)])
    assert code == 0
    assert "wrote markdown report to" in capsys.readouterr().out
    assert "| `model`" in out.read_text()
    assert main(["torchvision:resnet18", "--shape", "64", "--format", "nope"]) == EXIT_USAGE
    assert "unknown output format 'nope'; installed formats:" in capsys.readouterr().err


# --- --generate: prefill and decode ------------------------------------------------------------

# Tiny Llama (see LLAMA_LINEAR_FLOPS), per token and layer: q, o 64*64, k, v 64*32, MLP 3*64*128
# = 36,864; attention 2 * 4 heads * 16 per key and layer. A prompt of 8 tokens: the prefill's LM
# head on one position; decode step i attends to 8 + i keys.
LLAMA_PER_TOKEN = 2 * 36_864


def test_generate_json_counts_prefill_and_decode(run: Run, llama_json: str) -> None:
    code, out, err = run(
        "transformers:LlamaForCausalLM",
        *("--config", llama_json, "--seq-len", "8", "--generate", "4", "--batch", "2"),
        *("--mode", "meta", "--format", "json", "-q"),
    )
    assert code == 0, err
    document = json.loads(out)
    flops_ = document["metrics"]["flops"]
    assert flops_["prefill"] == 2 * (8 * LLAMA_PER_TOKEN + 2 * 2 * 4 * 16 * 8 * 8 + 64 * 100)
    steps = [2 * (LLAMA_PER_TOKEN + 2 * 2 * 4 * 16 * (8 + i) + 64 * 100) for i in (1, 2, 3)]
    assert flops_["decode_steps"] == steps
    assert flops_["decode"] == sum(steps)
    assert (document["prompt_tokens"], document["new_tokens"], document["batch"]) == (8, 4, 2)


def test_generate_table_prints_the_summary_and_modules(run: Run, llama_json: str) -> None:
    code, out, err = run(
        "transformers:LlamaForCausalLM",
        *("--config", llama_json, "--seq-len", "8", "--generate", "4", "--units", "raw", "-q"),
        *("--metrics", "flops"),
    )
    assert code == 0, err
    assert "prompt 8 tokens, 4 new tokens, batch 1" in out
    assert (
        f"Decode (flops): {sum(LLAMA_PER_TOKEN + 256 * (8 + i) + 6400 for i in (1, 2, 3))}" in out
    )
    assert "| module " in out and "#flops (decode)" in out and "lm_head" in out
    assert "#activations" not in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--generate", "0"), "--generate must be 1 or more"),
        (
            ("--generate", "2", "--format", "markdown"),
            "--generate prints the formats table and json",
        ),
        (("--generate", "2", "--backward"), "drop --backward"),
        (("--generate", "2", "--shape", "8"), "prompt length from --seq-len"),
    ],
)
def test_generate_usage_errors(
    run: Run, llama_json: str, extra: tuple[str, ...], message: str
) -> None:
    code, _, err = run("transformers:LlamaForCausalLM", "--config", llama_json, *extra)
    assert code == EXIT_USAGE
    assert message in err


def test_generate_needs_a_language_model(run: Run, models: str) -> None:
    code, _, err = run(f"{models}:linear", "--generate", "4")
    assert code == EXIT_USAGE
    assert "not a Hugging Face model that generates" in err


def test_backward_of_a_language_model_compares_with_6n(run: Run, llama_json: str) -> None:
    code, out, err = run(
        "transformers:LlamaForCausalLM",
        *("--config", llama_json, "--seq-len", "8", "--backward", "--units", "raw", "-q"),
    )
    assert code == 0, err
    # N = 86,848 parameters: 6N is 3N = 260,544 per token in multiply-adds
    assert "6N rule: 260544 per token" in out
    assert "a token multiplies 80128 of the 86848 parameters" in out
    assert "6400 in embeddings (looked up) and 320 others" in out


# --- hardware ----------------------------------------------------------------------------------


def test_hardware_lists_the_devices(run: Run) -> None:
    code, out, _ = run("hardware")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "device", "bf16", "peak"]
    (h100,) = [line for line in lines if line.startswith("h100-sxm ")]
    assert "989.4 TFLOP/s" in h100 and "66.9 TFLOP/s" in h100 and "3350 GB/s" in h100
    assert "80 GB" in h100
    code, out, _ = run("hardware", "H100 SXM")
    assert code == 0 and "source (memory_bandwidth): NVIDIA H100 datasheet" in out
    code, out, _ = run("hardware", "--json")
    assert json.loads(out)[0]["name"] == "h100-sxm"
    code, _, err = run("hardware", "h10")
    assert code == EXIT_USAGE and "did you mean 'h100'" in err


def test_generate_on_hardware(run: Run, llama_json: str) -> None:
    argv = ("transformers:LlamaForCausalLM", "--config", llama_json, "--seq-len", "8")
    code, out, err = run(*argv, "--generate", "4", "--hardware", "h100-sxm", "-q")
    assert code == 0, err
    assert "On h100-sxm (roofline estimate): time to first token" in out
    assert "Time per output token" in out and "largest batch" in out
    code, out, err = run(*argv, "--generate", "4", "--hardware", "h100-sxm", "--format", "json")
    assert code == 0, err
    timed = json.loads(out)["hardware"]
    assert timed["hardware"] == "h100-sxm"
    assert len(timed["decode_step_s"]) == 3
    assert timed["time_per_output_token_s"] == pytest.approx(sum(timed["decode_step_s"]) / 3)
    code, _, err = run(*argv, "--generate", "4", "--hardware", "h100x")
    assert code == EXIT_USAGE and "did you mean" in err
    code, out, err = run(*argv, "--hardware", "h100-sxm", "-q")  # one forward pass
    assert code == 0 and "time (h100-sxm)" in out, err


def test_hardware_option_adds_time_columns(run: Run) -> None:
    code, out, _ = run("torchvision:resnet18", "--mode", "meta", "--hardware", "a100", "-q")
    assert code == 0
    assert "time (a100-80gb)" in out and "bound" in out
    assert out.splitlines()[-1].startswith("estimated time on a100-80gb: ")
    code, _, err = run("torchvision:resnet18", "--hardware", "a10O", "-q")
    assert code == EXIT_USAGE and "--hardware: no device named 'a10O'" in err
    code, _, err = run("torchvision:resnet18", "--hardware", "a100", "--format", "arch", "-q")
    assert code == EXIT_USAGE and "(not arch)" in err


def test_generate_table_lists_operators(run: Run, llama_json: str) -> None:
    code, out, err = run(
        "transformers:LlamaForCausalLM",
        *("--config", llama_json, "--seq-len", "8", "--generate", "3", "-q"),
    )
    assert code == 0, err
    assert "| operator " in out and "| linear " in out and "scaled_dot_product_attention" in out
    assert "#bytes" not in out  # on request only, as in the table format


def test_backward_measure_times_a_language_models_training_step(
    run: Run, llama_json: str, models: str
) -> None:
    argv = ("transformers:LlamaForCausalLM", "--config", llama_json, "--seq-len", "8")
    code, out, err = run(*argv, "--backward", "--measure", "--hardware", "h100-sxm", "-q")
    assert code == 0, err
    assert "Measured step: " in out and "TFLOP/s achieved" in out
    assert "MFU on h100-sxm: " in out and "by 6N + attention" in out
    code, _, err = run(f"{models}:linear", "--shape", "10,", "--backward", "--measure")
    assert code == EXIT_USAGE and "times a language model's training step" in err

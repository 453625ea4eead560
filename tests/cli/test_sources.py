"""Model sources and example inputs (torchtally.sources), without running the models.

Every transformers model here is tiny (one or two layers, hidden size 32 to 64), so building one
takes milliseconds; nothing is downloaded (a test makes any download attempt fail).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torchtally_testing import TINY_LLAMA

from torchtally_cli.sources import (
    InputSpecError,
    LoadedModel,
    MissingPackageError,
    SourceError,
    building_context,
    example_inputs,
    load_model,
    parse_key_values,
    parse_shapes,
    split_source,
)

TINY_BERT = {
    "num_hidden_layers": 1,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 100,
}


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to fetch weights fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"tried to download {args} {kwargs}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def shapes(value: Any) -> Any:
    """Tensors replaced by their shapes, in the same nesting."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, dict):
        return {k: shapes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(shapes(v) for v in value)
    return value


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "default", "expected"),
    [
        (None, (3, 224, 224), None),
        (["224"], (3, 224, 224), ((3, 224, 224),)),
        (["224", "256"], (3, 224, 224), ((3, 224, 256),)),
        (["1", "28", "28"], (3, 224, 224), ((1, 28, 28),)),
        ([1, 28, 28], (3, 224, 224), ((1, 28, 28),)),
        # one size replaces the last two of the model's default: a video keeps its frames
        (["112"], (3, 16, 224, 224), ((3, 16, 112, 112),)),
        (["160"], (1, 64, 64), ((1, 160, 160),)),
        # commas: literal shapes, one input per word
        (["10,"], (3, 224, 224), ((10,),)),
        (["4,10"], (3, 224, 224), ((4, 10),)),
        (["3,64,64", "3,64,64"], (3, 224, 224), ((3, 64, 64), (3, 64, 64))),
    ],
)
def test_parse_shapes(
    words: list[str] | None, default: tuple[int, ...], expected: tuple[tuple[int, ...], ...]
) -> None:
    assert parse_shapes(words, default) == expected


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["3", "a", "224"], "sizes must be whole numbers"),
        (["3", "0", "224"], "sizes must be positive"),
        (["-3"], "sizes must be positive"),
        (["3,64", "64"], "either give sizes separated by spaces"),
        (["1,,2"], "sizes must be whole numbers"),
    ],
)
def test_parse_shapes_rejects(words: list[str], message: str) -> None:
    with pytest.raises(InputSpecError, match=message):
        parse_shapes(words)


def test_image_size_on_a_one_dimensional_default_is_refused() -> None:
    with pytest.raises(InputSpecError, match=r"give the whole shape with commas, e.g. --shape 10,"):
        parse_shapes(["224"], (10,))


def test_parse_key_values() -> None:
    parsed = parse_key_values(
        ["layers=2", "act=gelu", "flag=true", "none=null", "sizes=[1, 2]", "rate=0.5"], "--set"
    )
    assert parsed == {
        "layers": 2,
        "act": "gelu",
        "flag": True,
        "none": None,
        "sizes": [1, 2],
        "rate": 0.5,
    }
    with pytest.raises(InputSpecError, match="write NAME=VALUE"):
        parse_key_values(["layers"], "--set")
    with pytest.raises(InputSpecError, match="write NAME=VALUE"):
        parse_key_values(["2x=1"], "--set")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("torchvision:resnet50", ("torchvision", "resnet50")),
        ("pkg.models:build.small", ("pkg.models", "build.small")),
        ("models/net.py:make", ("models/net.py", "make")),
    ],
)
def test_split_source(source: str, expected: tuple[str, str]) -> None:
    assert split_source(source) == expected


@pytest.mark.parametrize("source", ["resnet50", ":resnet50", "torchvision:", ""])
def test_split_source_rejects(source: str) -> None:
    with pytest.raises(InputSpecError, match=r"use torchvision:NAME or package.module:factory"):
        split_source(source)


# --- torchvision ---------------------------------------------------------------------------------


def test_torchvision_classifier() -> None:
    loaded = load_model("torchvision:resnet18")
    assert (loaded.kind, loaded.task, loaded.default_shape) == (
        "torchvision",
        "image",
        (3, 224, 224),
    )
    assert not loaded.model.training  # built for evaluation
    inputs = example_inputs(loaded, shape=["32"], batch=2)
    assert shapes(inputs) == (2, 3, 32, 32)


def test_torchvision_detection_takes_a_list_of_images() -> None:
    loaded = load_model(
        "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", settings={"num_classes": 5}
    )
    assert loaded.task == "detection"
    assert loaded.model.roi_heads.box_predictor.cls_score.out_features == 5  # settings applied
    assert shapes(example_inputs(loaded, shape=["48", "64"], batch=2)) == (
        [(3, 48, 64), (3, 48, 64)],
    )
    with pytest.raises(InputSpecError, match="takes one image of 3 sizes"):
        example_inputs(loaded, shape=["1", "3", "64", "64"])


def test_torchvision_video_default_clip() -> None:
    # r3d_18's weights crop to 112 x 112; mvit_v2_s needs 224 x 224 and 16 frames
    assert load_model("torchvision:r3d_18").default_shape == (3, 16, 112, 112)
    loaded = load_model("torchvision:mvit_v2_s", device="meta")
    assert (loaded.task, loaded.default_shape) == ("video", (3, 16, 224, 224))
    video = load_model("torchvision:r3d_18")
    assert shapes(example_inputs(video, shape=["64"])) == (1, 3, 16, 64, 64)
    assert shapes(example_inputs(video, shape=["3", "4", "32", "32"], batch=2)) == (2, 3, 4, 32, 32)
    with pytest.raises(InputSpecError, match="takes one video clip of 4 sizes"):
        example_inputs(video, shape=["3", "32", "32"])


def test_torchvision_optical_flow_takes_two_frames() -> None:
    loaded = load_model("torchvision:raft_small")
    assert loaded.task == "optical_flow"
    assert shapes(example_inputs(loaded, shape=["128"])) == ((1, 3, 128, 128), (1, 3, 128, 128))


def test_torchvision_segmentation_builds_without_its_backbone_weights() -> None:
    loaded = load_model("torchvision:deeplabv3_mobilenet_v3_large")  # would fetch its backbone
    assert loaded.task == "image"
    with pytest.raises(InputSpecError, match=r"weights_backbone=None itself .*drop it from --set"):
        load_model(  # refused before anything is built or downloaded
            "torchvision:deeplabv3_mobilenet_v3_large", settings={"weights_backbone": "DEFAULT"}
        )


def test_torchvision_unknown_name_suggests() -> None:
    with pytest.raises(SourceError, match=r"no model 'resnet5'; did you mean resnet50"):
        load_model("torchvision:resnet5")


def test_torchvision_bad_builder_argument() -> None:
    with pytest.raises(SourceError, match=r"building torchvision:resnet18 with \(.*colour"):
        load_model("torchvision:resnet18", settings={"colour": "red"})


def test_seq_len_does_not_apply_to_images() -> None:
    with pytest.raises(InputSpecError, match=r"--seq-len does not apply .* use --shape"):
        example_inputs(load_model("torchvision:resnet18"), seq_len=16)


# --- timm ----------------------------------------------------------------------------------------


def test_timm_default_input_from_its_config() -> None:
    loaded = load_model("timm:test_vit")
    assert loaded.kind == "timm"
    assert loaded.default_shape == tuple(loaded.model.pretrained_cfg["input_size"]) == (3, 160, 160)
    assert shapes(example_inputs(loaded, batch=2)) == (2, 3, 160, 160)


def test_timm_settings_and_unknown_names() -> None:
    assert load_model("timm:test_resnet", settings={"num_classes": 7}).model.num_classes == 7
    with pytest.raises(SourceError, match="timm has no model 'test_resnot'; did you mean"):
        load_model("timm:test_resnot")


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(MissingPackageError, match=r"timm:resnet50 needs timm.*: pip install timm"):
        load_model("timm:resnet50")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingPackageError, match="pip install transformers") as error:
        load_model("transformers:BertModel")
    assert error.value.pip == "pip install transformers"


# --- transformers -------------------------------------------------------------------------------


def test_transformers_config_class_with_settings() -> None:
    loaded = load_model("transformers:BertModel", config="BertConfig", settings=TINY_BERT)
    assert loaded.model.config.num_hidden_layers == 1
    assert loaded.model.config.hidden_size == 32
    inputs = example_inputs(loaded, seq_len=16, batch=2)
    assert shapes(inputs) == {"input_ids": (2, 16), "use_cache": False}
    assert inputs["input_ids"].dtype == torch.long
    assert int(inputs["input_ids"].max()) < 100  # within the vocabulary


def test_transformers_default_config_is_the_class_own() -> None:
    loaded = load_model("transformers:BertModel", settings=TINY_BERT)
    assert type(loaded.model.config).__name__ == "BertConfig"
    assert shapes(example_inputs(loaded)) == {"input_ids": (1, 128), "use_cache": False}


def test_transformers_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_LLAMA))
    for config in (str(path), str(tmp_path)):  # the file, or its folder
        loaded = load_model("transformers:LlamaForCausalLM", config=config)
        assert loaded.model.config.num_key_value_heads == 2
    settings = {"num_hidden_layers": 1}  # --set overrides the file
    loaded = load_model("transformers:AutoModelForCausalLM", config=str(path), settings=settings)
    assert type(loaded.model).__name__ == "LlamaForCausalLM"
    assert len(loaded.model.model.layers) == 1
    # head_dim is derived from the values given, not left from the file's
    loaded = load_model(
        "transformers:LlamaForCausalLM", config=str(path), settings={"hidden_size": 128}
    )
    assert loaded.model.model.layers[0].self_attn.head_dim == 128 // 4


def test_transformers_config_errors(tmp_path: Path) -> None:
    with pytest.raises(InputSpecError, match="no such file"):
        load_model("transformers:BertModel", config=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputSpecError, match="is not valid JSON"):
        load_model("transformers:BertModel", config=str(bad))
    with pytest.raises(InputSpecError, match="not downloaded from the Hub"):
        load_model("transformers:LlamaForCausalLM", config="meta-llama/Llama-2-7b-hf")
    with pytest.raises(InputSpecError, match="AutoModel needs --config"):
        load_model("transformers:AutoModel")
    no_type = tmp_path / "no_type.json"
    no_type.write_text(json.dumps({"hidden_size": 32}))
    with pytest.raises(InputSpecError, match="has no model_type"):
        load_model("transformers:AutoModel", config=str(no_type))
    with pytest.raises(SourceError, match="no model 'BertModle'; did you mean BertModel"):
        load_model("transformers:BertModle")
    with pytest.raises(InputSpecError, match="--config is for transformers"):
        load_model("torchvision:resnet18", config="bert.json")


def test_encoder_decoder_gets_decoder_token_ids() -> None:
    settings = {
        "num_layers": 1,
        "num_decoder_layers": 1,
        "d_model": 32,
        "d_ff": 64,
        "num_heads": 2,
        "d_kv": 16,
        "vocab_size": 100,
    }
    loaded = load_model("transformers:T5ForConditionalGeneration", settings=settings)
    assert shapes(example_inputs(loaded, seq_len=12)) == {
        "input_ids": (1, 12),
        "decoder_input_ids": (1, 12),
        "use_cache": False,
    }


def test_vit_takes_pixel_values_from_shape_or_config() -> None:
    settings = {**TINY_BERT, "image_size": 32, "patch_size": 8, "num_channels": 1}
    settings.pop("vocab_size")
    loaded = load_model("transformers:ViTModel", settings=settings)
    assert loaded.default_shape == (1, 32, 32)
    assert shapes(example_inputs(loaded)) == {"pixel_values": (1, 1, 32, 32)}
    assert shapes(example_inputs(loaded, shape=["48"], batch=2)) == {"pixel_values": (2, 1, 48, 48)}
    with pytest.raises(InputSpecError, match=r"--seq-len does not apply .* takes pixel_values"):
        example_inputs(loaded, seq_len=8)


def test_shape_does_not_apply_to_text_models() -> None:
    loaded = load_model("transformers:BertModel", settings=TINY_BERT)
    with pytest.raises(InputSpecError, match=r"--shape does not apply .* use --seq-len"):
        example_inputs(loaded, shape=["3", "32", "32"])


def test_whisper_features_from_its_config() -> None:
    settings = {
        "encoder_layers": 1,
        "decoder_layers": 1,
        "d_model": 32,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "max_source_positions": 16,
        "max_target_positions": 32,
        "num_mel_bins": 8,
    }
    loaded = load_model("transformers:WhisperForConditionalGeneration", settings=settings)
    # 8 mel bins, 2 frames per encoder position (its convolutions have stride 2): 32 frames;
    # the decoder's 32 positions are fewer than the default 128 tokens
    assert shapes(example_inputs(loaded)) == {
        "input_features": (1, 8, 32),
        "decoder_input_ids": (1, 32),
        "use_cache": False,
    }
    assert shapes(example_inputs(loaded, seq_len=4)) == {
        "input_features": (1, 8, 32),
        "decoder_input_ids": (1, 4),
        "use_cache": False,
    }


def test_clip_gets_text_and_image() -> None:
    text = {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64}
    text["num_attention_heads"] = 2
    vision = {**text, "image_size": 32, "patch_size": 8}
    loaded = load_model(
        "transformers:CLIPModel",
        config="CLIPConfig",
        settings={"text_config": text, "vision_config": vision},
    )
    assert shapes(example_inputs(loaded, seq_len=8)) == {
        "input_ids": (1, 8),
        "pixel_values": (1, 3, 32, 32),
    }


def test_audio_samples_for_input_values() -> None:
    settings = {
        "num_hidden_layers": 1,
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_dim": [8, 8],
        "conv_stride": [5, 2],
        "conv_kernel": [10, 3],
        "num_feat_extract_layers": 2,
        "num_conv_pos_embeddings": 4,
    }
    loaded = load_model("transformers:Wav2Vec2Model", settings=settings)
    assert shapes(example_inputs(loaded)) == {"input_values": (1, 16000)}
    assert shapes(example_inputs(loaded, seq_len=400)) == {"input_values": (1, 400)}


# --- factories -----------------------------------------------------------------------------------

FACTORY_MODULE = """
import torch
from torch import nn


def mlp(width=4):
    return nn.Sequential(nn.Linear(10, width), nn.ReLU())


def with_inputs():
    return nn.Linear(3, 2), torch.ones(5, 3)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)

    def forward(self, ids):
        return self.embed(ids)


class Builders:
    @staticmethod
    def small():
        return nn.Linear(2, 2)


not_callable = 3
broken_layer = nn.Linear(2, 2)


def raises():
    raise RuntimeError("out of widgets")


def returns_number():
    return 3
"""


@pytest.fixture
def factory_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "tt_factories.py"
    path.write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tt_factories", raising=False)
    return path


def test_factory_by_module_and_by_file(factory_file: Path) -> None:
    by_module = load_model("tt_factories:mlp", settings={"width": 6})
    assert by_module.kind == "factory"
    assert by_module.model[0].out_features == 6
    by_file = load_model(f"{factory_file}:mlp")
    assert by_file.model[0].out_features == 4
    assert isinstance(load_model("tt_factories:Builders.small").model, nn.Linear)  # dotted
    assert isinstance(load_model("tt_factories:Net").model, nn.Module)  # a class
    assert load_model("tt_factories:broken_layer").model.in_features == 2  # a module object


def test_factory_inputs(factory_file: Path) -> None:
    loaded = load_model("tt_factories:with_inputs")
    assert shapes(example_inputs(loaded)) == (5, 3)  # as the factory returned them
    assert shapes(example_inputs(loaded, shape=["3,"], batch=2)) == (2, 3)  # asked for
    with pytest.raises(InputSpecError, match="returned its own inputs, so --batch does not"):
        example_inputs(loaded, batch=2)
    mlp = load_model("tt_factories:mlp")
    assert shapes(example_inputs(mlp)) == (1, 3, 224, 224)  # mmpretrain's default
    assert shapes(example_inputs(mlp, shape=["10,", "4,10"])) == ((1, 10), (1, 4, 10))


def test_factory_token_ids_from_the_embedding(factory_file: Path) -> None:
    loaded = load_model("tt_factories:Net")
    ids = example_inputs(loaded, seq_len=7, batch=3)
    assert shapes(ids) == (3, 7)
    assert int(ids.max()) < 50
    with pytest.raises(InputSpecError, match=r"no vocab_size in a config and no nn.Embedding"):
        example_inputs(load_model("tt_factories:mlp"), seq_len=7)
    with pytest.raises(InputSpecError, match="either --shape or --seq-len"):
        example_inputs(loaded, seq_len=7, shape=["7,"])


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("tt_factories:missing", SourceError, "tt_factories has no attribute 'missing'"),
        ("tt_factories:not_callable", SourceError, "is a int, not a model factory"),
        ("tt_factories:raises", SourceError, "failed: RuntimeError: out of widgets"),
        ("tt_factories:returns_number", SourceError, "returned int; a factory must return"),
        ("no_such_package.models:build", SourceError, "no module named 'no_such_package'"),
        ("missing_file.py:build", SourceError, "no such file missing_file.py"),
        ("torchvision.models:nope", SourceError, r"for models by name use torchvision:NAME"),
    ],
)
def test_factory_errors(factory_file: Path, source: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        load_model(source)


def test_module_object_takes_no_settings(factory_file: Path) -> None:
    with pytest.raises(InputSpecError, match="takes no --set values"):
        load_model("tt_factories:broken_layer", settings={"width": 2})


# --- devices and dtypes --------------------------------------------------------------------------


def test_meta_device_builds_without_memory() -> None:
    loaded = load_model("transformers:LlamaForCausalLM", config="LlamaConfig", device="meta")
    params = list(loaded.model.parameters())
    assert all(p.device.type == "meta" for p in params)
    # LlamaConfig's defaults are a 6.7B model: 4096 hidden, 32 layers, 11008 MLP, 32000 tokens
    hidden, layers, mlp, vocab = 4096, 32, 11008, 32000
    per_layer = 4 * hidden * hidden + 3 * hidden * mlp + 2 * hidden  # attention, MLP, 2 norms
    assert sum(p.numel() for p in params) == layers * per_layer + 2 * vocab * hidden + hidden
    # inputs for a meta model: meta unless a device is given
    assert example_inputs(loaded, seq_len=4)["input_ids"].device.type == "meta"
    assert example_inputs(loaded, seq_len=4, device="cpu")["input_ids"].device.type == "cpu"


def test_dtype_applies_to_model_and_float_inputs() -> None:
    loaded = load_model("torchvision:resnet18", dtype=torch.float64)
    assert next(loaded.model.parameters()).dtype == torch.float64
    assert example_inputs(loaded, shape=["16"]).dtype == torch.float64
    assert example_inputs(loaded, shape=["16"], dtype=torch.bfloat16).dtype == torch.bfloat16
    assert torch.get_default_dtype() == torch.float32  # restored after building


def test_building_context_restores_the_default_dtype() -> None:
    with pytest.raises(RuntimeError), building_context(dtype=torch.float16):
        assert torch.get_default_dtype() == torch.float16
        raise RuntimeError
    assert torch.get_default_dtype() == torch.float32


def test_inputs_are_seeded() -> None:
    loaded = LoadedModel(nn.Linear(4, 2), "x:y", "factory")
    first = example_inputs(loaded, shape=["4,"])
    assert torch.equal(first, example_inputs(loaded, shape=["4,"]))
    assert not torch.equal(first, example_inputs(loaded, shape=["4,"], seed=1))


@pytest.mark.parametrize(("batch", "seq_len"), [(0, None), (1, 0)])
def test_batch_and_seq_len_must_be_positive(batch: int, seq_len: int | None) -> None:
    loaded = LoadedModel(nn.Embedding(5, 2), "x:y", "factory")
    with pytest.raises(InputSpecError, match="must be at least 1"):
        example_inputs(loaded, batch=batch, seq_len=seq_len)

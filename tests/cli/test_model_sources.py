"""Model sources are plugins: the ``torchtally_sources`` hook, the built-in sources, a third-party
zoo registered through an entry point, and broken source plugins named."""

from __future__ import annotations

import types
from typing import Any

import pytest
import torch
from torch import nn
from torchtally_testing import FakeDist, FakeEntryPoint

import torchtally
import torchtally_reporters
from torchtally import plugins
from torchtally_cli.cli import main
from torchtally_cli.sources import (
    BUILTIN_PLUGIN,
    FACTORY,
    InputSpecError,
    LoadedModel,
    ModelSource,
    SourceRequest,
    example_inputs,
    find_source,
    load_model,
    model_sources,
)


def zoo_plugin(*sources: Any) -> Any:
    """A plugin module whose ``torchtally_sources`` hook gives `sources`."""
    module = types.ModuleType("zoo_plugin")

    @torchtally.hookimpl
    def torchtally_sources() -> list[Any]:
        return list(sources)

    module.torchtally_sources = torchtally_sources  # type: ignore[attr-defined]
    return module


def build_zoo(request: SourceRequest) -> LoadedModel:
    """``zoo:WIDTH``: a linear layer WIDTH wide, built on the requested device."""
    width = int(request.source.partition(":")[2])
    model = nn.Linear(width, 2 * width, **dict(request.settings))
    return LoadedModel(model, request.source, "zoo", "generic", (width,))


ZOO = ModelSource("zoo", "zoo:WIDTH", "a linear layer WIDTH wide", build_zoo, prefix="zoo")


@pytest.fixture
def with_reporters(entry_points: list[FakeEntryPoint]) -> list[FakeEntryPoint]:
    """The entry points with the reporters plugin, for tests that print a table."""
    dist = FakeDist("torchtally-reporters", "0.1.0")
    entry_points.append(FakeEntryPoint("reporters", torchtally_reporters, dist))
    return entry_points


def test_builtin_sources_come_first_and_keep_their_forms(
    entry_points: list[FakeEntryPoint],
) -> None:
    entry_points.append(FakeEntryPoint("zoo", zoo_plugin(ZOO), FakeDist("zoo-dist", "1.0")))
    names = [source.name for source in model_sources()]
    assert names == [
        "torchvision",
        "timm",
        "transformers",
        "exported program",
        "TorchScript",
        "factory",
        "zoo",
    ]
    assert find_source("torchvision:resnet18").name == "torchvision"
    assert find_source("pkg.models:make") is FACTORY
    assert find_source("models/net.py:make") is FACTORY
    assert find_source("zoo:4") is ZOO
    with pytest.raises(InputSpecError, match=r"use torchvision:NAME .*, or zoo:WIDTH"):
        find_source("resnet50")


def test_plugins_lists_the_sources(
    with_reporters: list[FakeEntryPoint], capsys: pytest.CaptureFixture[str]
) -> None:
    with_reporters.append(FakeEntryPoint("zoo", zoo_plugin(ZOO), FakeDist("zoo-dist", "1.0")))
    assert main(["plugins"]) == 0  # first thing in the process: the built-ins are listed too
    listed = capsys.readouterr().out
    assert "zoo (zoo-dist 1.0)\n  sources: 1: zoo:WIDTH" in listed
    builtin = (
        "sources: 6: torchvision:NAME, timm:NAME, transformers:CLASS, path/to/model.pt2, "
        "path/to/model.pt, package.module:factory"
    )
    assert f"{BUILTIN_PLUGIN} (torchtally-cli " in listed and builtin in listed


def test_a_third_party_source_builds_and_is_analysed(
    with_reporters: list[FakeEntryPoint], capsys: pytest.CaptureFixture[str]
) -> None:
    with_reporters.append(FakeEntryPoint("zoo", zoo_plugin(ZOO), FakeDist("zoo-dist", "1.0")))
    loaded = load_model("zoo:4", settings={"bias": False})
    assert loaded.model.weight.shape == (8, 4) and loaded.model.bias is None
    assert not loaded.model.training
    assert example_inputs(loaded).shape == (1, 4)
    assert main(["zoo:4", "--units", "raw", "-q"]) == 0
    out = capsys.readouterr().out
    assert "Flops: 32\nParams: 40\n" in out  # 4 x 8 multiply-adds; 32 weights and 8 biases
    assert main(["plugins"]) == 0
    listed = capsys.readouterr().out
    assert "zoo (zoo-dist 1.0)\n  sources: 1: zoo:WIDTH" in listed
    assert (
        "sources: 6: torchvision:NAME, timm:NAME, transformers:CLASS, path/to/model.pt2, "
        "path/to/model.pt, package.module:factory" in listed
    )


def test_a_source_making_its_own_inputs_and_input_text(
    with_reporters: list[FakeEntryPoint], capsys: pytest.CaptureFixture[str]
) -> None:
    def load(request: SourceRequest) -> LoadedModel:
        def make(**options: Any) -> Any:
            size = int(options["shape"][0]) if options["shape"] else 3
            return {"input": torch.ones(options["batch"], size)}

        model = nn.Linear(3, 3)
        return LoadedModel(
            model, request.source, "own", make_inputs=make, describe_inputs=lambda _: "three"
        )

    own = ModelSource("own", "own:X", "own inputs", load, prefix="own")
    with_reporters.append(FakeEntryPoint("own", zoo_plugin(own), FakeDist("own", "1")))
    assert main(["own:x", "-q"]) == 0
    assert "Input shape: three\nFlops: 9\n" in capsys.readouterr().out
    assert example_inputs(load_model("own:x"), shape=["3"], batch=2)["input"].shape == (2, 3)


def test_options_a_source_does_not_read_are_refused(entry_points: list[FakeEntryPoint]) -> None:
    entry_points.append(FakeEntryPoint("zoo", zoo_plugin(ZOO), FakeDist("zoo-dist", "1.0")))
    with pytest.raises(InputSpecError, match="--config is for transformers:CLASS sources, not zoo"):
        load_model("zoo:4", config="x.json")
    with pytest.raises(InputSpecError, match=r"--cfg-options is for config files .*, not zoo:4"):
        load_model("zoo:4", cfg_options=["a=1"])


@pytest.mark.parametrize(
    ("provided", "problem"),
    [
        (
            ["zoo:NAME"],
            "torchtally_sources\\(\\) gave str, expected torchtally_cli.sources.ModelSource",
        ),
        (
            [ModelSource("tv", "torchvision:X", "", build_zoo, prefix="torchvision")],
            "claims the prefix 'torchvision', which 'torchtally_cli.sources' provides already",
        ),
    ],
    ids=["wrong-type", "taken-prefix"],
)
def test_a_broken_source_plugin_is_named_and_the_rest_work(
    entry_points: list[FakeEntryPoint], provided: list[Any], problem: str
) -> None:
    entry_points.append(FakeEntryPoint("broken", zoo_plugin(*provided), FakeDist("bad", "0.1")))
    with pytest.warns(
        torchtally.PluginWarning, match=f"'broken' \\(distribution bad 0.1\\).*{problem}"
    ):
        sources = model_sources()
    assert [source.name for source in sources][:6] == [
        "torchvision",
        "timm",
        "transformers",
        "exported program",
        "TorchScript",
        "factory",
    ]
    assert find_source("torchvision:resnet18").name == "torchvision"
    assert plugins.get_plugin_manager().get_plugin(BUILTIN_PLUGIN) is not None


def test_a_source_hook_that_raises_is_named(entry_points: list[FakeEntryPoint]) -> None:
    module = types.ModuleType("raising")

    @torchtally.hookimpl
    def torchtally_sources() -> list[Any]:
        raise RuntimeError("zoo offline")

    module.torchtally_sources = torchtally_sources  # type: ignore[attr-defined]
    entry_points.append(FakeEntryPoint("raising", module, FakeDist("raising", "1")))
    with pytest.warns(
        torchtally.PluginWarning, match="torchtally_sources\\(\\) raised RuntimeError"
    ):
        assert find_source("timm:resnet18").name == "timm"

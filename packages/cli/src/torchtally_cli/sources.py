"""Models by name, with example inputs that fit them: what the ``torchtally`` command analyses.

A source names a model and where it comes from:

- ``torchvision:NAME``: a torchvision model (classification, segmentation, detection, video,
  optical flow), built with ``weights=None`` (and ``weights_backbone=None``).
- ``timm:NAME``: a timm model, ``pretrained=False``.
- ``transformers:CLASS``: a Hugging Face model class built from a configuration (a config.json
  file, a configuration class name, or the class' default configuration), random weights.
- ``package.module:factory`` or ``path/to/file.py:factory``: anything callable that returns an
  ``nn.Module``, or a ``(module, inputs)`` pair.
- ``path/to/model.pt2``: an exported program (``torch.export.save``), its weights made on the meta
  device unless they are needed (counting needs their shapes only); ``path/to/model.pt``: a
  TorchScript module (``torch.jit.save``), loaded on the meta device the same way.

These are the built-in `ModelSource` objects. Plugins add others through the ``torchtally_sources``
hook (torchtally-openmmlab reads OpenMMLab config files); `model_sources` lists them all and
`find_source` picks the one for a MODEL text.

Nothing is downloaded. `load_model` builds the model (on the meta device when asked, so that a
70B configuration takes no memory); `example_inputs` makes random inputs for it from a shape, a
sequence length and a batch size.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export import ExportedProgram
from torch.utils import _pytree as pytree

from torchtally.hookspecs import hookimpl
from torchtally.plugins import hook_results, register_plugin, report_plugin_problem

NAMED_SOURCES = ("torchvision", "timm", "transformers")
DEFAULT_IMAGE_SHAPE: tuple[int, ...] = (3, 224, 224)
DEFAULT_VIDEO_FRAMES = 16
DEFAULT_SEQ_LEN = 128
DEFAULT_AUDIO_SAMPLES = 16000
# The package each named source needs, as pip installs it.
PIP_NAMES = {"torchvision": "torchvision", "timm": "timm", "transformers": "transformers"}


class SourceError(Exception):
    """The model could not be built: unknown name, bad configuration, or the builder raised."""


class MissingPackageError(SourceError):
    """A source needs a package that is not installed; the message has the pip command."""

    def __init__(self, package: str, needed_for: str, pip: str | None = None) -> None:
        self.package = package
        self.pip = pip or f"pip install {PIP_NAMES.get(package, package)}"
        super().__init__(f"{needed_for} needs {package}, which is not installed: {self.pip}")


class InputSpecError(ValueError):
    """Inputs cannot be made as asked: a bad shape, or an option that does not fit the model."""


@dataclass(frozen=True)
class LoadedModel:
    """A built model and what is known about the inputs it takes.

    `task` says what `example_inputs` makes: ``"image"`` (one ``(N, *shape)`` tensor),
    ``"video"`` (the same, with frames), ``"detection"`` (a list of ``N`` images ``(C, H, W)``),
    ``"optical_flow"`` (two images), ``"transformers"`` (keyword inputs that the model's forward
    names), or ``"generic"`` (one tensor per shape, or token ids). `default_shape` is the input
    shape without the batch when none is given. `inputs` are inputs the factory returned with the
    model, used when no shape or sequence length is asked for.

    A plugin's source that makes its own inputs sets `make_inputs`, which `example_inputs` then
    calls with the same keywords (``shape`` words or None, ``seq_len``, ``batch``, ``dtype``,
    ``device``); `describe_inputs` gives the ``Input shape:`` text of the summary block for them
    (default: the shapes of the tensors, batch included).
    """

    model: nn.Module | ExportedProgram
    source: str
    kind: str
    task: str = "generic"
    default_shape: tuple[int, ...] = DEFAULT_IMAGE_SHAPE
    inputs: Any = None
    make_inputs: Callable[..., Any] | None = None
    describe_inputs: Callable[[Any], str] | None = None
    # a saved file loaded without its weights' values (their sizes on the meta device)
    weightless: bool = False


@dataclass(frozen=True)
class SourceRequest:
    """What `load_model` passes a source: the MODEL text and the options given for it.

    `settings` are ``--set NAME=VALUE`` values read as JSON; `config` is ``--config``;
    `cfg_options` are ``--cfg-options KEY=VALUE`` words, unread (mmengine's syntax).
    """

    source: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    config: str | None = None
    cfg_options: tuple[str, ...] = ()
    # accept --set names the model's configuration does not know (--set-unknown)
    unknown_settings: bool = False
    # whether the weights' values are needed (--mode real); a source reading a file may skip them
    weights: bool = True


@dataclass(frozen=True)
class ModelSource:
    """A kind of model the ``torchtally MODEL`` argument names; plugins provide them through the
    ``torchtally_sources`` hook.

    `prefix` claims ``PREFIX:NAME``; otherwise `matches` says which MODEL texts the source reads
    (``CONFIG.py``, say). `load` builds the model with random weights, downloading nothing: it runs
    inside `building_context` (``--device``, ``--dtype``), returns a `LoadedModel`, and raises
    `SourceError`, `MissingPackageError` (with the pip command) or `InputSpecError`. `options` are
    the options beyond ``--set`` it reads (``"config"``, ``"cfg_options"``); giving it another is
    an error. `usage` and `description` are shown by ``torchtally --help`` and ``plugins``.
    """

    name: str
    usage: str
    description: str
    load: Callable[[SourceRequest], LoadedModel]
    prefix: str | None = None
    matches: Callable[[str], bool] | None = None
    options: frozenset[str] = frozenset()

    def claims(self, text: str) -> bool:
        if self.prefix is not None:
            return text.partition(":")[0] == self.prefix
        return self.matches is not None and bool(self.matches(text))


# --- parsing -------------------------------------------------------------------------------------


def split_source(source: str) -> tuple[str, str]:
    """``"torchvision:resnet50"`` -> ``("torchvision", "resnet50")``; raises on a malformed one."""
    where, sep, name = source.partition(":")
    if not sep or not where or not name:
        raise InputSpecError(
            f"cannot read the model source {source!r}: use torchvision:NAME or "
            "package.module:factory, or timm:NAME, transformers:CLASS, path/to/file.py:factory "
            f"(e.g. torchvision:resnet50){_plugin_usages(source)}"
        )
    return where, name


def _plugin_usages(source: str) -> str:
    """The other forms installed plugins read, or what to install for a config file."""
    usages = [s.usage for s in model_sources() if s.name not in BUILTIN_NAMES]
    if usages:
        return f", or {', '.join(usages)}"
    if Path(source).suffix in (".py", ".json", ".yaml", ".yml"):
        return (
            "; an OpenMMLab config file needs the source plugin torchtally-openmmlab "
            "(pip install packages/openmmlab from torchtally's repository)"
        )
    return ""


def parse_key_values(items: Sequence[str], what: str) -> dict[str, Any]:
    """``["depth=2", "name=x", "flag=true"]`` -> ``{"depth": 2, "name": "x", "flag": True}``.

    Values are read as JSON (numbers, true/false, null, lists), anything else as a string.
    """
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise InputSpecError(f"cannot read {what} {item!r}: write NAME=VALUE, e.g. depth=2")
        try:
            parsed[key] = json.loads(text)
        except json.JSONDecodeError:
            parsed[key] = text
    return parsed


def parse_shapes(
    tokens: Sequence[str | int] | None, default: tuple[int, ...] = DEFAULT_IMAGE_SHAPE
) -> tuple[tuple[int, ...], ...] | None:
    """Input shapes without the batch, one per input, from ``--shape`` words.

    Sizes separated by spaces are one input in mmpretrain's forms: one size ``S`` replaces the last
    two sizes of `default` by ``S, S`` (``224`` -> ``3 224 224``), two sizes ``H W`` replace them
    by ``H, W``, three or more are the shape as given. Words written with commas are shapes taken
    literally, one input each: ``10,`` is ``(10,)``, ``3,64,64 3,64,64`` two inputs.
    """
    if not tokens:
        return None
    words = [str(t) for t in tokens]
    if any("," in w for w in words):
        if not all("," in w for w in words):
            raise InputSpecError(
                f"cannot read --shape {' '.join(words)}: either give sizes separated by spaces "
                "(one input: 3 224 224) or shapes with commas (one per input: 3,64,64 10,)"
            )
        return tuple(_sizes(w.strip(",").split(","), " ".join(words)) for w in words)
    sizes = _sizes(words, " ".join(words))
    if len(sizes) <= 2:
        if len(default) < 2:
            raise InputSpecError(
                f"--shape {' '.join(words)} is an image size, but this model's input is "
                f"{default}: give the whole shape with commas, e.g. --shape {_comma(default)}"
            )
        spatial = sizes * 2 if len(sizes) == 1 else sizes
        return ((*default[:-2], *spatial),)
    return (sizes,)


def _sizes(words: Sequence[str], given: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(w) for w in words)
    except ValueError:
        raise InputSpecError(
            f"cannot read --shape {given}: sizes must be whole numbers, e.g. --shape 3 224 224"
        ) from None
    if not sizes or any(s <= 0 for s in sizes):
        raise InputSpecError(f"cannot read --shape {given}: sizes must be positive")
    return sizes


def _comma(shape: tuple[int, ...]) -> str:
    return ",".join(map(str, shape)) + ("," if len(shape) == 1 else "")


# --- building -------------------------------------------------------------------------------------


@contextlib.contextmanager
def building_context(
    device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> Iterator[None]:
    """Build tensors on `device` and floating tensors in `dtype` (the meta device: no memory)."""
    with contextlib.ExitStack() as stack:
        if device is not None:
            stack.enter_context(torch.device(device))
        if dtype is not None and dtype.is_floating_point:
            previous = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            stack.callback(torch.set_default_dtype, previous)
        yield


def load_model(
    source: str,
    *,
    config: str | None = None,
    settings: Mapping[str, Any] | None = None,
    cfg_options: Sequence[str] = (),
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    unknown_settings: bool = False,
    weights: bool = True,
) -> LoadedModel:
    """Build the model `source` names, with random weights (or load the file it names).

    :param config: ``transformers:`` only: a config.json file (or a folder holding one) or a
        configuration class name (``LlamaConfig``); default: the model class' own configuration.
    :param settings: keyword arguments of the builder (torchvision, timm, factory), or
        configuration values (transformers), e.g. ``{"num_hidden_layers": 2}``.
    :param cfg_options: ``KEY=VALUE`` overrides of a config file, for sources that read one
        (OpenMMLab configs: ``model.backbone.depth=101``).
    :param device: where to build; ``"meta"`` builds without allocating any memory.
    :param dtype: floating dtype of the parameters.
    :param unknown_settings: accept `settings` a transformers configuration does not know (by
        default they are refused with the close matches: a typo would build the full model).
    :param weights: whether the weights' values are needed (to run the model for real); a
        ``.pt2`` file's are made on the meta device when not.
    """
    found = find_source(source)
    request = SourceRequest(
        source, dict(settings or {}), config, tuple(cfg_options), unknown_settings, weights
    )
    for option, given in (("config", config is not None), ("cfg_options", bool(cfg_options))):
        if given and option not in found.options:
            takers = " and ".join(s.usage for s in model_sources() if option in s.options)
            flag = "--" + option.replace("_", "-")
            what = f"{takers} sources" if takers else "config files (with torchtally-openmmlab)"
            raise InputSpecError(f"{flag} is for {what}, not {source}")
    if found.name in ("exported program", "TorchScript"):  # saved: neither built nor converted
        return _load_saved(found, request, device, dtype)
    with building_context(device, dtype):
        loaded = found.load(request)
    model = loaded.model
    assert isinstance(model, nn.Module)
    if device is not None:
        model = model.to(device)
    if dtype is not None:
        model = model.to(dtype)
    return replace(loaded, model=model.eval())


def find_source(source: str) -> ModelSource:
    """The source that reads the MODEL text `source`: the one whose prefix it starts with, else
    the first plugin source that matches it, else ``module:factory``."""
    sources = model_sources()
    for candidate in sources:
        if candidate.prefix is not None and candidate.claims(source):
            return candidate
    for candidate in sources:
        if candidate.prefix is None and candidate is not FACTORY and candidate.claims(source):
            return candidate
    split_source(source)  # raises, saying what forms are read
    return FACTORY


BUILTIN_PLUGIN = "torchtally_cli.sources"


class _BuiltinSources:
    """The plugin that provides the built-in sources, registered on first use."""

    @hookimpl
    def torchtally_sources(self) -> list[ModelSource]:
        return list(BUILTIN_SOURCES)


def model_sources() -> list[ModelSource]:
    """Every installed model source: built-in ones first, then plugins' (prefixes unique)."""
    register_plugin(_BuiltinSources(), BUILTIN_PLUGIN, "torchtally-cli")
    found: list[ModelSource] = []
    owners: dict[str, str] = {}
    results = hook_results("torchtally_sources")
    results.sort(key=lambda item: item[0] != BUILTIN_PLUGIN)
    for plugin, provided in results:
        items = provided if isinstance(provided, (list, tuple)) else [provided]
        for item in items:
            if not isinstance(item, ModelSource):
                report_plugin_problem(
                    plugin,
                    f"torchtally_sources() gave {type(item).__name__}, expected "
                    "torchtally_cli.sources.ModelSource objects; it is not used",
                )
                continue
            if item.prefix is not None and item.prefix in owners:
                report_plugin_problem(
                    plugin,
                    f"its source {item.usage} claims the prefix {item.prefix!r}, which "
                    f"{owners[item.prefix]!r} provides already; it is not used",
                )
                continue
            if item.prefix is not None:
                owners[item.prefix] = plugin
            found.append(item)
    return found


def _settings(source: str, fixed: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The builder's keyword arguments: what torchtally sets (random weights, nothing downloaded)
    and the --set values, which may not change those."""
    taken = sorted(set(fixed) & set(settings))
    if taken:
        given = ", ".join(f"{key}={fixed[key]!r}" for key in taken)
        raise InputSpecError(
            f"--set {' '.join(taken)}: torchtally builds {source} with {given} itself (random "
            "weights, nothing downloaded); drop it from --set"
        )
    return {**fixed, **settings}


def _build(source: str, builder: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Call a model builder; what it raises (or a sys.exit in it) becomes a `SourceError`."""
    try:
        return builder(**kwargs)
    except SystemExit as error:
        raise SourceError(f"building {source} failed: it called sys.exit({error.code!r})") from None
    except TypeError as error:
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise SourceError(f"building {source} with ({given}) failed: {error}") from error
    except Exception as error:
        raise SourceError(f"building {source} failed: {type(error).__name__}: {error}") from error


def _unknown(kind: str, name: str, known: Sequence[str], how_to_list: str) -> SourceError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return SourceError(f"{kind} has no model {name!r}{hint} ({how_to_list} lists them)")


def _torchvision(source: str, name: str, settings: dict[str, Any]) -> LoadedModel:
    try:
        import torchvision
        from torchvision import models
    except ImportError as error:
        raise MissingPackageError("torchvision", source) from error
    known = models.list_models()
    if name not in known:
        raise _unknown("torchvision", name, known, "torchvision.models.list_models()")
    builder = models.get_model_builder(name)
    kwargs: dict[str, Any] = {"weights": None}
    if "weights_backbone" in inspect.signature(builder).parameters:
        kwargs["weights_backbone"] = None  # detection and segmentation default to downloading it
    model = _build(source, builder, **_settings(source, kwargs, settings))
    task, shape = "image", DEFAULT_IMAGE_SHAPE
    if name in models.list_models(module=torchvision.models.detection):
        task = "detection"
    elif name in models.list_models(module=torchvision.models.optical_flow):
        task = "optical_flow"
    elif name in models.list_models(module=torchvision.models.video):
        task, shape = "video", _video_shape(models.get_model_weights(name).DEFAULT)
    return LoadedModel(model, source, "torchvision", task, shape)


def _video_shape(weights: Any) -> tuple[int, ...]:
    """3 channels, 16 frames (or the model's minimum), and the crop size its weights expect."""
    crop = weights.transforms.keywords.get("crop_size", DEFAULT_IMAGE_SHAPE[1:])
    frames = max(DEFAULT_VIDEO_FRAMES, weights.meta.get("min_temporal_size") or 0)
    return (3, frames, *crop)


def _timm(source: str, name: str, settings: dict[str, Any]) -> LoadedModel:
    try:
        import timm
    except ImportError as error:
        raise MissingPackageError("timm", source) from error
    if not timm.is_model(name.split(".")[0]):
        raise _unknown("timm", name, timm.list_models(), "timm.list_models()")
    fixed = {"model_name": name, "pretrained": False}
    model = _build(source, timm.create_model, **_settings(source, fixed, settings))
    input_size = getattr(model, "pretrained_cfg", {}).get("input_size", DEFAULT_IMAGE_SHAPE)
    return LoadedModel(model, source, "timm", "image", tuple(input_size))


def _transformers(
    source: str,
    class_name: str,
    config: str | None,
    settings: dict[str, Any],
    unknown_settings: bool = False,
) -> LoadedModel:
    try:
        import transformers
    except ImportError as error:
        raise MissingPackageError("transformers", source) from error
    model_class: Any = getattr(transformers, class_name, None)
    auto = class_name.startswith("Auto") and hasattr(model_class, "from_config")
    builder = model_class.from_config if auto else model_class
    if not (inspect.isclass(model_class) and (auto or hasattr(model_class, "config_class"))):
        names = [n for n in dir(transformers) if n.endswith("Model") or "For" in n]
        raise _unknown("transformers", class_name, names, "dir(transformers)")
    configuration = _transformers_config(transformers, model_class, config, settings, auto)
    if not unknown_settings:
        _check_settings(configuration, settings)
    model = _build(source, builder, config=configuration)
    return LoadedModel(model, source, "transformers", "transformers", _pixel_shape(configuration))


def _check_settings(configuration: Any, settings: Mapping[str, Any]) -> None:
    """Refuse --set names the configuration's class does not know: transformers keeps any name
    as an attribute, so a typo (num_hidden_layerz) would silently build the full model."""
    try:
        default = type(configuration)()
    except Exception:  # a class without defaults: nothing to compare with
        return
    known = set(default.to_dict()) | set(getattr(default, "attribute_map", {}))
    unknown = [key for key in settings if key not in known and not hasattr(default, key)]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputSpecError(
            f"--set {key}: {type(configuration).__name__} has no setting {key!r}{hint} "
            "(--set-unknown accepts it anyway)"
        )


def _transformers_config(
    transformers: Any, model_class: Any, config: str | None, settings: dict[str, Any], auto: bool
) -> Any:
    """A configuration from a file, a class name, or the model class' default, with `settings`."""
    if config is None:
        if auto:
            raise InputSpecError(
                f"{model_class.__name__} needs --config: a config.json file or a configuration "
                "class name such as LlamaConfig"
            )
        return _make_config(model_class.config_class, settings, model_class.__name__)
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists():
        return _config_from_file(transformers, model_class, path, settings, auto)
    config_class = getattr(transformers, config, None)
    if not (inspect.isclass(config_class) and hasattr(config_class, "model_type")):
        raise InputSpecError(
            f"--config {config}: not a config.json file here, nor a transformers configuration "
            "class (e.g. LlamaConfig); configurations are not downloaded from the Hub, save the "
            "model's config.json and pass its path"
        )
    return _make_config(config_class, settings, config)


def _config_from_file(
    transformers: Any, model_class: Any, path: Path, settings: dict[str, Any], auto: bool
) -> Any:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputSpecError(f"--config {path}: no such file") from None
    except json.JSONDecodeError as error:
        raise InputSpecError(f"--config {path} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise InputSpecError(f"--config {path} must hold a JSON object, as config.json does")
    values = {**values, **settings}
    if auto:
        model_type = values.pop("model_type", None)
        if model_type is None:
            raise InputSpecError(
                f"--config {path} has no model_type, which {model_class.__name__} needs to "
                "choose the model; add it or use the model's own class"
            )
        return _make_config(
            lambda **kw: transformers.AutoConfig.for_model(model_type, **kw), values, str(path)
        )
    values.pop("model_type", None)
    return _make_config(model_class.config_class, values, str(path))


def _make_config(config_class: Callable[..., Any], values: Mapping[str, Any], what: str) -> Any:
    try:
        return config_class(**values)
    except Exception as error:
        raise SourceError(f"cannot make a configuration from {what}: {error}") from error


def _pixel_shape(configuration: Any) -> tuple[int, ...]:
    """(channels, size, size) of the image a vision configuration expects (224 if it says none)."""
    vision = getattr(configuration, "vision_config", None) or configuration
    size = getattr(vision, "image_size", DEFAULT_IMAGE_SHAPE[1:])
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return (getattr(vision, "num_channels", 3), height, width)


def _factory(source: str, where: str, name: str, settings: dict[str, Any]) -> LoadedModel:
    module = _import_source_module(source, where)
    target: Any = module
    for part in name.split("."):
        if not hasattr(target, part):
            raise SourceError(
                f"cannot load {source}: {where} has no attribute {name!r}"
                + (
                    f" (for models by name use {', '.join(f'{s}:NAME' for s in NAMED_SOURCES)})"
                    if where.split(".")[0] in NAMED_SOURCES
                    else ""
                )
            )
        target = getattr(target, part)
    if isinstance(target, nn.Module):
        if settings:
            raise InputSpecError(f"{source} is a module object already: it takes no --set values")
        result: Any = target
    elif callable(target):
        result = _build(source, target, **settings)
    else:
        raise SourceError(f"{source} is a {type(target).__name__}, not a model factory")
    inputs = None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module):
        result, inputs = result
    if not isinstance(result, nn.Module):
        raise SourceError(
            f"{source} returned {type(result).__name__}; a factory must return an nn.Module "
            "or a (module, inputs) pair"
        )
    return LoadedModel(result, source, "factory", "generic", DEFAULT_IMAGE_SHAPE, inputs)


def _import_source_module(source: str, where: str) -> Any:
    if where.endswith(".py"):
        path = Path(where)
        try:
            found = path.is_file()
        except OSError as error:  # a name too long for the file system, say
            shown = source if len(source) <= 80 else f"{source[:60]}...{source[-12:]}"
            raise InputSpecError(f"cannot load {shown}: {error.strerror or error}") from None
        spec = importlib.util.spec_from_file_location(path.stem, path) if found else None
        if spec is None or spec.loader is None:
            raise SourceError(f"cannot load {source}: no such file {where}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as error:
            raise _import_failed(where, error) from error
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as `python -m` does: modules of the current folder
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as error:
        prefixes = [s.prefix for s in model_sources() if s.prefix]
        close = difflib.get_close_matches(where, prefixes, n=1, cutoff=0.7)
        if close and error.name == where:
            usages = ", ".join(s.usage for s in model_sources())
            raise InputSpecError(
                f"cannot load {source}: there is no source or module {where!r}; did you mean "
                f"{close[0]}:{source.partition(':')[2]}? (sources: {usages})"
            ) from error
        raise SourceError(
            f"cannot load {source}: no module named {error.name!r} (is its package installed, "
            "and the module importable from this folder?)"
        ) from error
    except (Exception, SystemExit) as error:
        raise _import_failed(where, error) from error


def _import_failed(where: str, error: BaseException) -> SourceError:
    if isinstance(error, SystemExit):
        return SourceError(
            f"importing {where} failed: it called sys.exit({error.code!r}) (a model file should "
            "keep its script part under `if __name__ == '__main__':`)"
        )
    return SourceError(f"importing {where} failed: {type(error).__name__}: {error}")


# --- saved models -------------------------------------------------------------------------------


def _is_file_source(text: str, suffixes: tuple[str, ...]) -> bool:
    return Path(text).suffix in suffixes and (":" not in text or Path(text).exists())


def _load_saved(
    found: ModelSource,
    request: SourceRequest,
    device: str | torch.device | None,
    dtype: torch.dtype | None,
) -> LoadedModel:
    """A saved model is loaded as it was saved: --set and --dtype do not apply, and a .pt2
    file runs on the device it was exported for."""
    for flag, given in (("--set", request.settings), ("--dtype", dtype)):
        if given:
            raise InputSpecError(f"{flag} does not apply to a saved {found.name}: it is built")
    where = torch.device(device) if device is not None else None
    if where is not None and where.type not in ("cpu", "meta") and found.name != "TorchScript":
        raise InputSpecError(
            "--device does not apply to a .pt2 file: it runs on the device it was exported for"
        )
    if not Path(request.source).is_file():
        raise SourceError(f"{request.source}: no such file")
    if found.name == "TorchScript":  # its weights' values are read only to run it for real
        keep = request.weights or (where is not None and where.type not in ("cpu", "meta"))
        return _load_torchscript(request, where if keep else torch.device("meta"))
    return found.load(request)


def _load_exported(request: SourceRequest) -> LoadedModel:
    from torchtally.artefacts import load_exported

    try:
        program = load_exported(request.source, weights=request.weights)
    except Exception as error:
        raise SourceError(
            f"loading {request.source} failed: {type(error).__name__}: {error} (a .pt2 file is "
            "what torch.export.save writes)"
        ) from error
    example = program.example_inputs
    first = next(iter(_tensors(example)), None) if example is not None else None
    shape = tuple(first.shape[1:]) if first is not None else DEFAULT_IMAGE_SHAPE
    loaded = LoadedModel(
        program, request.source, "export", "exported", shape, weightless=not request.weights
    )
    return replace(loaded, make_inputs=partial(_exported_inputs, loaded))


def _load_torchscript(request: SourceRequest, device: torch.device | None = None) -> LoadedModel:
    from torchtally.artefacts import import_op_libraries

    try:
        import_op_libraries(request.source)  # torchvision's ops in a scripted detection model
        module = torch.jit.load(request.source, map_location=device or "cpu")
    except Exception as error:
        raise SourceError(
            f"loading {request.source} failed: {type(error).__name__}: {error} (a .pt file is "
            "read as a TorchScript module, what torch.jit.save writes; a model saved with "
            "torch.save is Python objects: load it in a factory, package.module:factory)"
        ) from error
    weightless = device is not None and device.type == "meta"
    return LoadedModel(
        module.eval(), request.source, "torchscript", "torchscript", weightless=weightless
    )


def _tensors(value: Any) -> list[torch.Tensor]:
    return [leaf for leaf in pytree.tree_leaves(value) if isinstance(leaf, torch.Tensor)]


def _exported_inputs(
    loaded: LoadedModel,
    *,
    shape: Sequence[str | int] | None,
    seq_len: int | None,
    batch: int,
    dtype: torch.dtype | None,
    device: str | torch.device | None,
    seed: int = 0,
) -> Any:
    """An exported program's example inputs, or inputs like them at other sizes: each tensor
    gets a shape from `shape` (one per tensor, with commas), `batch` as its first size, and
    keeps its dtype. None where the program takes positional and keyword inputs and no size is
    asked for: `analyze` then takes its example inputs itself."""
    program = loaded.model
    assert isinstance(program, ExportedProgram)
    if seq_len is not None:
        raise InputSpecError(
            "--seq-len does not apply to an exported program: give each input's shape without "
            "the batch with --shape, e.g. --shape 512, for token ids of 512"
        )
    if program.example_inputs is None:
        if shape is None and batch == 1:
            return None
        raise InputSpecError(f"{loaded.source} keeps no example inputs to make others like")
    args, kwargs = program.example_inputs
    if shape is None and batch == 1:
        return None if args and kwargs else (kwargs or tuple(args))
    examples = _tensors((args, kwargs))
    shapes = parse_shapes(shape, loaded.default_shape) or tuple(
        tuple(t.shape[1:]) for t in examples
    )
    if len(shapes) != len(examples):
        given = ", ".join(str(tuple(t.shape[1:])) for t in examples)
        raise InputSpecError(
            f"{loaded.source} takes {len(examples)} tensor input(s), without the batch {given}: "
            "give one shape each, with commas (e.g. --shape 3,224,224 10,)"
        )
    generator = torch.Generator().manual_seed(seed)
    made = iter(
        _like(example, (batch, *size), generator, device)
        for example, size in zip(examples, shapes, strict=True)
    )
    args, kwargs = pytree.tree_map_only(torch.Tensor, lambda _: next(made), (args, kwargs))
    if kwargs and args:
        raise InputSpecError(
            f"{loaded.source} takes positional and keyword inputs: analyse it at its example "
            "inputs (no --shape), or from Python with torchtally.analyze(program, args, kwargs=...)"
        )
    return kwargs or tuple(args)


def _like(
    example: torch.Tensor,
    shape: tuple[int, ...],
    generator: torch.Generator,
    device: str | torch.device | None,
) -> torch.Tensor:
    """A tensor of `shape` with `example`'s dtype: random floats, zeros for integers (valid
    token ids and indices), ones for booleans (masks that keep everything)."""
    where = torch.device(device) if device is not None else example.device
    if where.type == "meta":
        where = torch.device("cpu")
    if example.is_floating_point():
        values = torch.randn(shape, generator=generator).to(example.dtype)
    elif example.dtype == torch.bool:
        values = torch.ones(shape, dtype=torch.bool)
    else:
        values = torch.zeros(shape, dtype=example.dtype)
    return values.to(where)


def _named(load: Callable[[str, str, dict[str, Any]], LoadedModel]) -> Callable[..., LoadedModel]:
    def loader(request: SourceRequest) -> LoadedModel:
        return load(request.source, split_source(request.source)[1], dict(request.settings))

    return loader


def _load_transformers(request: SourceRequest) -> LoadedModel:
    _, name = split_source(request.source)
    return _transformers(
        request.source, name, request.config, dict(request.settings), request.unknown_settings
    )


def _load_factory(request: SourceRequest) -> LoadedModel:
    where, name = split_source(request.source)
    return _factory(request.source, where, name, dict(request.settings))


FACTORY = ModelSource(
    "factory",
    "package.module:factory",
    "any callable returning an nn.Module or a (module, inputs) pair; also "
    "path/to/file.py:factory (the current folder is importable)",
    _load_factory,
)
BUILTIN_SOURCES = (
    ModelSource(
        "torchvision",
        "torchvision:NAME",
        "a torchvision model, random weights (detection models get a list of --batch images, "
        "video models a clip, optical flow two frames)",
        _named(_torchvision),
        prefix="torchvision",
    ),
    ModelSource(
        "timm",
        "timm:NAME",
        "a timm model, pretrained=False (needs: pip install timm)",
        _named(_timm),
        prefix="timm",
    ),
    ModelSource(
        "transformers",
        "transformers:CLASS",
        "a transformers model class, random weights, configured by --config (config.json file "
        "or configuration class name) and --set",
        _load_transformers,
        prefix="transformers",
        options=frozenset({"config"}),
    ),
    ModelSource(
        "exported program",
        "path/to/model.pt2",
        "an exported program (torch.export.save), analysed at its example inputs unless --shape "
        "is given; its weights are not read (counting needs only their shapes) unless --mode real",
        _load_exported,
        matches=lambda text: _is_file_source(text, (".pt2",)),
    ),
    ModelSource(
        "TorchScript",
        "path/to/model.pt",
        "a TorchScript module (torch.jit.save; also .pth); give --shape or --seq-len; its "
        "weights are not read unless --mode real",
        _load_torchscript,
        matches=lambda text: _is_file_source(text, (".pt", ".pth")),
    ),
    FACTORY,
)
BUILTIN_NAMES = frozenset(source.name for source in BUILTIN_SOURCES)


# --- inputs -----------------------------------------------------------------------------------


def example_inputs(
    loaded: LoadedModel,
    *,
    shape: Sequence[str | int] | None = None,
    seq_len: int | None = None,
    batch: int = 1,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> Any:
    """Random inputs for `loaded.model`, in a form `torchtally.analyze` takes.

    :param shape: ``--shape`` words (see `parse_shapes`); the model's default input otherwise.
    :param seq_len: the number of tokens (text models; audio samples for ``input_values``).
    :param batch: images, sequences or samples per batch.
    :param dtype: the floating dtype of image and audio inputs (default: the model's).
    :param device: where the inputs live (default: where the model's parameters are).
    """
    if batch < 1:
        raise InputSpecError(f"--batch must be at least 1, got {batch}")
    if seq_len is not None and seq_len < 1:
        raise InputSpecError(f"--seq-len must be at least 1, got {seq_len}")
    if loaded.make_inputs is not None:
        return loaded.make_inputs(
            shape=shape, seq_len=seq_len, batch=batch, dtype=dtype, device=device
        )
    if loaded.inputs is not None and shape is None and seq_len is None:
        if batch != 1:
            raise InputSpecError(
                f"{loaded.source} returned its own inputs, so --batch does not apply; "
                "give --shape or --seq-len to have inputs made instead"
            )
        return loaded.inputs
    if loaded.task == "torchscript" and shape is None and seq_len is None:
        raise InputSpecError(
            f"{loaded.source} does not record the inputs it takes (TorchScript keeps no example): "
            "give --shape (e.g. --shape 3 224 224) or --seq-len for token ids"
        )
    assert isinstance(loaded.model, nn.Module)
    maker = _InputMaker(loaded.model, dtype, device, seed)
    shapes = parse_shapes(shape, loaded.default_shape)
    if loaded.task == "transformers":
        return _transformers_inputs(loaded, maker, shapes, seq_len, batch)
    if seq_len is not None:
        if shapes is not None:
            raise InputSpecError("give either --shape or --seq-len, not both")
        if loaded.task != "generic":
            raise InputSpecError(
                f"--seq-len does not apply to {loaded.source}, which takes images: use --shape"
            )
        return maker.token_ids((batch, seq_len), _vocab_size(loaded.model, loaded.source))
    shapes = shapes or (loaded.default_shape,)
    if loaded.task == "torchscript" and _takes_a_list(loaded.model):
        # forward(images: List[Tensor]), as torchvision's detection models: --batch images each
        return ([maker.floats(s) for s in shapes for _ in range(batch)],)
    if loaded.task in ("detection", "optical_flow", "video", "image"):
        (image,) = _one_shape(shapes, loaded)
        if loaded.task == "detection":  # a list of (C, H, W) images
            return ([maker.floats(image) for _ in range(batch)],)
        if loaded.task == "optical_flow":  # two frames
            return (maker.floats((batch, *image)), maker.floats((batch, *image)))
        return maker.floats((batch, *image))
    tensors = tuple(maker.floats((batch, *s)) for s in shapes)
    return tensors[0] if len(tensors) == 1 else tensors


def _takes_a_list(model: Any) -> bool:
    """Whether a TorchScript module's forward takes a list of tensors first."""
    arguments = model.forward.schema.arguments[1:]  # after self
    return bool(arguments) and str(arguments[0].type) == "List[Tensor]"


def _one_shape(shapes: tuple[tuple[int, ...], ...], loaded: LoadedModel) -> tuple[tuple[int, ...]]:
    expected = len(loaded.default_shape)
    if len(shapes) != 1 or len(shapes[0]) != expected:
        what = "video clip" if loaded.task == "video" else "image"
        raise InputSpecError(
            f"{loaded.source} takes one {what} of {expected} sizes without the batch "
            f"(e.g. --shape {' '.join(map(str, loaded.default_shape))}); got "
            f"{' '.join(_comma(s) for s in shapes)}"
        )
    return (shapes[0],)


class _InputMaker:
    """Seeded random tensors on the model's device, floating ones in the model's dtype."""

    def __init__(
        self,
        model: nn.Module,
        dtype: torch.dtype | None,
        device: str | torch.device | None,
        seed: int,
    ) -> None:
        param = next(iter(model.parameters()), None)
        self.device = torch.device(device) if device is not None else _device_of(param)
        if dtype is None and param is not None and param.is_floating_point():
            dtype = param.dtype
        self.dtype = dtype or torch.get_default_dtype()
        self.generator = torch.Generator().manual_seed(seed)

    def floats(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.device.type == "meta":
            return torch.empty(shape, dtype=self.dtype, device="meta")
        values = torch.randn(shape, generator=self.generator)
        return values.to(device=self.device, dtype=self.dtype)

    def token_ids(self, shape: tuple[int, ...], vocab_size: int) -> torch.Tensor:
        if self.device.type == "meta":
            return torch.empty(shape, dtype=torch.long, device="meta")
        ids = torch.randint(0, vocab_size, shape, generator=self.generator)
        return ids.to(self.device)


def _device_of(param: torch.Tensor | None) -> torch.device:
    return param.device if param is not None else torch.device("cpu")


def _vocab_size(model: nn.Module, source: str) -> int:
    """The vocabulary of a text model: its config's vocab_size, or its first embedding's size."""
    config = getattr(model, "config", None)
    size = getattr(config, "vocab_size", None) or getattr(
        getattr(config, "text_config", None), "vocab_size", None
    )
    if isinstance(size, int):
        return size
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            return module.num_embeddings
    raise InputSpecError(
        f"--seq-len makes token ids, but {source} has no vocab_size in a config and no "
        "nn.Embedding to take it from; give --shape instead"
    )


def _transformers_inputs(
    loaded: LoadedModel,
    maker: _InputMaker,
    shapes: tuple[tuple[int, ...], ...] | None,
    seq_len: int | None,
    batch: int,
) -> dict[str, Any]:
    """Keyword inputs a Hugging Face model's forward names: token ids, decoder token ids for
    encoder-decoder models, pixel values, audio features (Whisper) or samples (wav2vec2)."""
    model = loaded.model
    assert isinstance(model, nn.Module)
    config = model.config
    takes = inspect.signature(model.forward).parameters
    main = getattr(model, "main_input_name", "input_ids")
    inputs: dict[str, Any] = {}
    tokens = seq_len or _default_tokens(config)
    wants_ids = main == "input_ids" or (
        "input_ids" in takes and getattr(config, "text_config", None) is not None
    )
    if wants_ids:
        inputs["input_ids"] = maker.token_ids((batch, tokens), _vocab_size(model, loaded.source))
    wants_pixels = main == "pixel_values" or (
        "pixel_values" in takes and getattr(config, "vision_config", None) is not None
    )
    if wants_pixels:
        (image,) = _one_shape(shapes or (loaded.default_shape,), loaded)
        inputs["pixel_values"] = maker.floats((batch, *image))
    elif shapes is not None and main not in ("input_features",):
        raise InputSpecError(
            f"--shape does not apply to {loaded.source}, which takes {main}: use --seq-len"
        )
    if main == "input_features":  # Whisper: mel bins x 2 frames per encoder position
        features = shapes[0] if shapes else _whisper_features(config, loaded.source)
        inputs["input_features"] = maker.floats((batch, *features))
    elif main == "input_values":  # raw audio samples
        inputs["input_values"] = maker.floats((batch, seq_len or DEFAULT_AUDIO_SAMPLES))
    elif not inputs:
        raise InputSpecError(
            f"cannot make inputs for {loaded.source}, whose forward takes {main}; write a "
            "factory (package.module:factory) that returns (model, inputs)"
        )
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in takes:
        decoder_tokens = seq_len or _default_tokens(config, decoder=True)
        inputs["decoder_input_ids"] = maker.token_ids(
            (batch, decoder_tokens), _vocab_size(model, loaded.source)
        )
    elif seq_len is not None and not wants_ids and main != "input_values":
        raise InputSpecError(
            f"--seq-len does not apply to {loaded.source}, which takes {main}: use --shape"
        )
    if "use_cache" in takes:
        inputs["use_cache"] = False  # count the forward pass, not the building of a cache
    return inputs


def _default_tokens(config: Any, decoder: bool = False) -> int:
    """128 tokens, or fewer if the model's position table is shorter."""
    names = ("max_target_positions",) if decoder else ()
    for name in (*names, "max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return min(DEFAULT_SEQ_LEN, value)
    return DEFAULT_SEQ_LEN


def _whisper_features(config: Any, source: str) -> tuple[int, int]:
    bins = getattr(config, "num_mel_bins", None)
    positions = getattr(config, "max_source_positions", None)
    if not isinstance(bins, int) or not isinstance(positions, int):
        raise InputSpecError(
            f"cannot tell the input_features shape of {source}: give --shape BINS,FRAMES"
        )
    return (bins, 2 * positions)  # two conv frames per encoder position (stride 2)

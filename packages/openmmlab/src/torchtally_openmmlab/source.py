"""OpenMMLab config files as a model source: the model their get_flops.py analyses, with its input.

``torchtally CONFIG.py`` reads the config with mmengine (``.py``, ``.json`` or ``.yaml``, with
``_base_`` inheritance; ``PACKAGE::path`` names a config shipped inside an installed codebase),
applies ``--cfg-options``, and builds ``model`` through the registry of the config's
``default_scope`` with random weights: ``init_cfg`` pretrained entries and ``pretrained`` paths are
dropped, nothing is loaded or downloaded. Then, as each codebase's ``tools/analysis_tools/
get_flops.py`` does:

- mmpretrain: the model's forward is its ``extract_feat``, on ``(1, 3, H, W)``: the head is listed
  (its parameters count) but not run. Default shape ``3 224 224``.
- mmdet: synchronized batch norm reverted; a random image of the shape and its ``DetDataSample``
  go through the model's data preprocessor (normalised, padded to its size divisor), and the model
  runs in ``tensor`` mode with those data samples. Default shape ``3 1280 800``.
- mmseg: the auxiliary head removed and synchronized batch norm reverted; a random image and its
  ``SegDataSample`` go through the data preprocessor, and the model runs in ``tensor`` mode.
  Default shape ``3 2048 1024``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchtally_cli.sources import (
    InputSpecError,
    LoadedModel,
    MissingPackageError,
    ModelSource,
    SourceError,
    SourceRequest,
    parse_shapes,
)
from torchtally_openmmlab.mmcv_ops import provide_missing_ops

CONFIG_SUFFIXES = (".py", ".json", ".yaml", ".yml")
# The mmcv the OpenMMLab 3.x codebases accept without their compiled ops (mmdet and mmseg ask for
# mmcv < 2.2.0).
MMCV_LITE = "mmcv-lite==2.1.0"
log = logging.getLogger("torchtally")


@dataclass(frozen=True)
class Codebase:
    """An OpenMMLab codebase: its config scope, import and pip names, and get_flops' default."""

    scope: str
    module: str
    pip: str
    default_shape: tuple[int, int, int]


MMPRETRAIN = Codebase("mmpretrain", "mmpretrain", "mmpretrain", (3, 224, 224))
MMDET = Codebase("mmdet", "mmdet", "mmdet", (3, 1280, 800))
MMSEG = Codebase("mmseg", "mmseg", "mmsegmentation", (3, 2048, 1024))
CODEBASES = {codebase.scope: codebase for codebase in (MMPRETRAIN, MMDET, MMSEG)}


def is_config(text: str) -> bool:
    """Whether the MODEL text names a config file (``a/b.py``, ``mmdet::faster_rcnn/x.py``),
    not a factory (``a/b.py:make``)."""
    return Path(text).suffix.lower() in CONFIG_SUFFIXES


def load(request: SourceRequest) -> LoadedModel:
    """Build the model of the config file `request.source` as its codebase's get_flops does."""
    source = request.source
    if request.settings:
        raise InputSpecError(
            f"--set does not apply to the config file {source}: override config values with "
            "--cfg-options, e.g. --cfg-options model.backbone.depth=101"
        )
    if torch.empty(()).device.type == "meta":  # --mode meta builds under torch.device("meta")
        raise InputSpecError(
            f"{source}: OpenMMLab models cannot be built on the meta device (their builders and "
            "data preprocessors need real tensors); use --mode fake, which computes nothing, or "
            "the default --mode auto"
        )
    with _quiet_imports():
        mmengine = _import("mmengine", "mmengine", source)
    cfg = read_config(source, request.cfg_options, mmengine)
    scope = cfg.get("default_scope")
    codebase = CODEBASES.get(scope) if isinstance(scope, str) else None
    if codebase is None:
        raise SourceError(
            f"{source} has default_scope {scope!r}; torchtally builds the models of "
            f"{', '.join(CODEBASES)} configs (set it with --cfg-options default_scope=mmdet)"
        )
    if "model" not in cfg:
        raise SourceError(f"{source} has no model: it is not a model config")
    registry = _import_codebase(codebase, source)
    model = _build(codebase, registry, cfg, source)
    return LoadedModel(
        model,
        source,
        "openmmlab",
        codebase.scope,
        codebase.default_shape,
        make_inputs=lambda **options: make_inputs(model, codebase, source, **options),
        describe_inputs=describe_inputs,
    )


OPENMMLAB_SOURCE = ModelSource(
    "openmmlab",
    "CONFIG.py",
    "an OpenMMLab config file (.py, .json, .yaml; PACKAGE::path for one an installed codebase "
    "ships) built through its default_scope's registry (mmpretrain, mmdet, mmseg), random "
    "weights, analysed as the codebase's get_flops.py does; --cfg-options overrides values",
    load,
    matches=is_config,
    options=frozenset({"cfg_options"}),
)


# --- the config ------------------------------------------------------------------------------


def read_config(source: str, cfg_options: Sequence[str], mmengine: Any) -> Any:
    """The config of `source` (a path, or ``PACKAGE::path`` inside an installed codebase) with the
    ``--cfg-options`` words merged in, read as mmengine's tools read them."""
    path = config_path(source)
    if not path.is_file():
        raise SourceError(f"no config file {path}")
    try:
        cfg = mmengine.Config.fromfile(str(path))
    except Exception as error:
        raise SourceError(f"cannot read {source}: {type(error).__name__}: {error}") from error
    if cfg_options:
        cfg.merge_from_dict(parse_cfg_options(cfg_options, mmengine))
    return cfg


def config_path(source: str) -> Path:
    """``mmpretrain::resnet/x.py`` -> the file in the installed package's configs; else as given."""
    package, sep, relative = source.partition("::")
    if not sep:
        return Path(source)
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or spec.origin is None:
        raise MissingPackageError(package, source)
    root = Path(spec.origin).parent
    for folder in (root / ".mim" / "configs", root / "configs"):
        if (folder / relative).is_file():
            return folder / relative
    return root / ".mim" / "configs" / relative


def parse_cfg_options(words: Sequence[str], mmengine: Any) -> dict[str, Any]:
    """``["model.backbone.depth=101", "a=[1,2]"]`` read by mmengine's ``DictAction``, as the
    codebases' tools read ``--cfg-options``."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--cfg-options", nargs="+", action=mmengine.DictAction)
    for word in words:
        if "=" not in word or word.startswith("="):
            raise InputSpecError(
                f"cannot read --cfg-options {word!r}: write KEY=VALUE, e.g. "
                "model.backbone.depth=101"
            )
    try:
        options: dict[str, Any] = parser.parse_args(["--cfg-options", *words]).cfg_options
    except (argparse.ArgumentError, ValueError) as error:
        raise InputSpecError(f"cannot read --cfg-options {' '.join(words)}: {error}") from None
    return options


def without_pretrained(cfg: Any) -> Any:
    """`cfg` with every ``init_cfg`` entry of type ``Pretrained`` and every ``pretrained`` path
    removed (a copy): the model gets random weights and nothing is fetched."""
    cfg = copy.deepcopy(cfg)
    _strip(cfg)
    return cfg


def _strip(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _strip(item)
        return
    if not isinstance(node, dict):
        return
    for key in list(node):
        value = node[key]
        if key == "init_cfg":
            node[key] = _no_pretrained(value)
        elif key == "pretrained" and isinstance(value, str):
            node[key] = None
        else:
            _strip(value)


def _no_pretrained(init_cfg: Any) -> Any:
    def pretrained(entry: Any) -> bool:
        return isinstance(entry, dict) and str(entry.get("type", "")).lower() == "pretrained"

    if isinstance(init_cfg, list):
        kept = [entry for entry in init_cfg if not pretrained(entry)]
        return kept or None
    return None if pretrained(init_cfg) else init_cfg


# --- the model -------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_imports() -> Iterator[None]:
    """The codebases' own chatter while importing and building (mmcv-lite lacks compiled attention
    ops, deprecated builders, loss defaults): none of it is about the counts."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mm(cv|engine|det|seg)")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mmpretrain")
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        yield


def _import(module: str, pip: str, source: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingPackageError(pip, source) from error


def _import_codebase(codebase: Codebase, source: str) -> Any:
    """The codebase's ``MODELS`` registry, its models registered; says what to install if the
    codebase or mmcv is missing."""
    needs_mmcv = importlib.util.find_spec("mmcv") is None
    if importlib.util.find_spec(codebase.module) is None or needs_mmcv:
        packages = f"{MMCV_LITE} {codebase.pip}" if needs_mmcv else codebase.pip
        missing = codebase.pip if not needs_mmcv else f"mmcv and {codebase.pip}"
        raise MissingPackageError(missing, source, pip=f"pip install {packages}")
    with _quiet_imports():
        if provide_missing_ops():
            log.info("mmcv-lite: nms and roi_align run on torchvision's ops")
        _skip_old_multimodal_models()  # mmdet and mmseg import mmpretrain's models if they can
        try:
            registry = importlib.import_module(f"{codebase.module}.registry")
            importlib.import_module(f"{codebase.module}.models")
        except Exception as error:
            raise SourceError(
                f"importing {codebase.module} for {source} failed: {type(error).__name__}: {error}"
            ) from error
    return registry.MODELS


def _skip_old_multimodal_models() -> None:
    """mmpretrain 1.2 registers its multimodal models (BLIP, Flamingo, ...) when transformers is
    installed, and they import names transformers 5 removed: register them as placeholders, as
    mmpretrain does when transformers is missing."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major = int(version("transformers").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return
    if major >= 5 and importlib.util.find_spec("mmpretrain") is not None:
        dependency: Any = importlib.import_module("mmpretrain.utils.dependency")
        dependency.WITH_MULTIMODAL = False


def _build(codebase: Codebase, registry: Any, cfg: Any, source: str) -> nn.Module:
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope

    init_default_scope(codebase.scope)
    try:
        with _quiet_imports():
            model: nn.Module = registry.build(without_pretrained(cfg.model))
    except Exception as error:
        raise SourceError(
            f"building the model of {source} failed: {type(error).__name__}: {error}"
        ) from error
    if codebase is MMPRETRAIN:
        extract_feat = getattr(model, "extract_feat", None)
        if extract_feat is None:
            raise SourceError(
                f"{source} builds a {type(model).__name__}, which has no extract_feat; "
                "mmpretrain's get_flops counts only models that have one"
            )
        model.forward = extract_feat
        return model
    if codebase is MMSEG and hasattr(model, "auxiliary_head"):
        # mmseg's get_flops drops it: it only serves training
        model.auxiliary_head = None  # type: ignore[assignment]
    result: nn.Module = revert_sync_batchnorm(model)
    return result


# --- inputs ----------------------------------------------------------------------------------


def make_inputs(
    model: nn.Module,
    codebase: Codebase,
    source: str,
    *,
    shape: Sequence[str | int] | None = None,
    seq_len: int | None = None,
    batch: int = 1,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> Any:
    """What the codebase's get_flops feeds the model: ``(N, 3, H, W)`` for mmpretrain; for mmdet
    and mmseg the data preprocessor's output (and data samples for mmdet)."""
    if seq_len is not None:
        raise InputSpecError(f"--seq-len does not apply to {source}, which takes images: --shape")
    (image,) = parse_shapes(shape, codebase.default_shape) or (codebase.default_shape,)
    if len(image) != 3:
        raise InputSpecError(
            f"{source} takes one image: --shape 224, --shape 224 256 or --shape 3 224 224; got "
            f"{' '.join(map(str, image))}"
        )
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(image, generator=generator) for _ in range(batch)]
    param = next(iter(model.parameters()), None)
    target = torch.device(device) if device is not None else _device(param)
    if codebase is MMPRETRAIN:
        return torch.stack(images).to(target, dtype or _dtype(param))
    height, width = image[1:]
    preprocessor: Callable[..., Any] = model.data_preprocessor  # type: ignore[assignment]
    samples = [_data_sample(codebase, height, width) for _ in images]
    data = preprocessor({"inputs": [i * 255 for i in images], "data_samples": samples}, False)
    inputs = data["inputs"].to(target, dtype or _dtype(param))
    if codebase is MMSEG:
        return inputs  # mmseg's get_flops passes no data samples
    return {"inputs": inputs, "data_samples": data["data_samples"]}


def _data_sample(codebase: Codebase, height: int, width: int) -> Any:
    if codebase is MMSEG:
        from mmseg.structures import SegDataSample

        return SegDataSample(metainfo={"ori_shape": (height, width), "pad_shape": (height, width)})
    from mmdet.structures import DetDataSample

    size = (height, width)
    return DetDataSample(metainfo={"img_shape": size, "ori_shape": size, "scale_factor": (1, 1)})


def _device(param: torch.Tensor | None) -> torch.device:
    return param.device if param is not None else torch.device("cpu")


def _dtype(param: torch.Tensor | None) -> torch.dtype:
    if param is not None and param.is_floating_point():
        return param.dtype
    return torch.get_default_dtype()


def describe_inputs(inputs: Any) -> str:
    """The image the model gets, as get_flops prints it: ``(3, 224, 224)`` for one image (after
    padding for mmdet and mmseg), the whole batch's shape for several."""
    tensor = inputs["inputs"] if isinstance(inputs, dict) else inputs
    shape = tuple(tensor.shape)
    return str(shape[1:] if shape[0] == 1 else shape)

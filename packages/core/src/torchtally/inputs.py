"""Turn what users pass (tensor, tuple, dict, mmengine's ``input_shape``) into call arguments,
and refuse what cannot be analysed with a message that says what was expected."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

if TYPE_CHECKING:
    from torchtally.records import Trace

_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


def build_inputs(
    model: nn.Module,
    inputs: Any = None,
    input_shape: tuple[Any, ...] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    shape_only: bool = False,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments for ``model(...)`` from the forms users pass.

    `inputs`: a tensor (one argument), a tuple (positional arguments), a dict (keyword
    arguments), or any other object (one argument: wrap a list or dict in a tuple to pass it
    positionally). `input_shape` follows mmengine: a tuple of ints builds one random tensor with
    batch size 1 prepended, a tuple of such tuples builds several; with `shape_only` (fake and
    meta runs) they are built on the meta device, so that no real memory is used.

    Raises `TypeError` for a model that cannot be called and `ValueError` for inputs that cannot
    be analysed (see `check_model` and `check_inputs`).
    """
    check_model(model)
    if inputs is not None and input_shape is not None:
        raise ValueError(
            "give either input_shape or inputs, not both: input_shape builds random inputs of "
            "those shapes, inputs are the arguments themselves"
        )
    keyword = dict(kwargs or {})
    if input_shape is not None:
        args: tuple[Any, ...] = _random_inputs(model, input_shape, shape_only)
    elif inputs is None:
        if not keyword:
            raise ValueError(
                "no inputs given: pass inputs= (a tensor, a tuple of positional arguments or a "
                "dict of keyword arguments) or input_shape= (e.g. (3, 224, 224))"
            )
        args = ()
    elif isinstance(inputs, tuple):
        args = inputs
    elif isinstance(inputs, Mapping):
        overlap = set(inputs) & set(keyword)
        if overlap:
            raise ValueError(f"keyword arguments given twice: {', '.join(sorted(overlap))}")
        args, keyword = (), {**inputs, **keyword}
    else:
        args = (inputs,)
    check_inputs(model, args, keyword)
    return args, keyword


def check_model(model: Any) -> None:
    """Refuse what is not a callable ``nn.Module`` instance, saying what to pass instead."""
    if isinstance(model, type) and issubclass(model, nn.Module):
        raise TypeError(
            f"expected a torch.nn.Module instance to analyse, got the class {model.__name__}; "
            f"create the model first, e.g. {model.__name__}(...)"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(not_a_module(model))
    if not has_forward(model):
        raise TypeError(
            f"{type(model).__name__} has no forward(), so it cannot be run: analyse the module "
            "whose forward calls it (a ModuleList or ModuleDict only holds layers)"
        )


def not_a_module(model: Any) -> str:
    """What to say when `model` is not something torchtally can run."""
    return (
        f"expected a torch.nn.Module to analyse, got {type(model).__name__}; wrap a plain "
        "function in an nn.Module whose forward calls it (a torch.export ExportedProgram, an FX "
        "GraphModule and a TorchScript module are accepted too)"
    )


def has_forward(module: nn.Module) -> bool:
    """Whether calling `module` runs code of its own (containers and bare Modules do not)."""
    if "forward" in vars(module):  # torch.compile's wrapper sets forward on the instance
        return True
    cls = type(module)
    found = _FORWARD_BY_CLASS.get(cls)
    if found is None:
        found = _FORWARD_BY_CLASS[cls] = _class_has_forward(cls)
    return found


_FORWARD_BY_CLASS: dict[type, bool] = {}


def _class_has_forward(cls: type) -> bool:
    if issubclass(cls, _CONTAINERS):
        return False
    if cls.__call__ is not nn.Module.__call__:
        return True
    # read statically: a scripted module's forward is a descriptor that raises on the class
    return inspect.getattr_static(cls, "forward", None) is not nn.Module.forward


def check_inputs(model: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse empty tensor arguments and inputs on no device the model's weights are on."""
    for where, value in _arguments(args, kwargs):
        if isinstance(value, torch.Tensor) and value.numel() == 0:
            raise ValueError(
                f"{where} has shape {tuple(value.shape)}, which has no elements: the model would "
                "do no work and every count would be 0. Pass a tensor with at least one element "
                "in every dimension (a batch size of at least 1)"
            )
    message = device_mismatch(
        _real_devices(_model_tensors(model)), _real_devices(_tensors(args, kwargs))
    )
    if message:
        raise ValueError(message)


def device_mismatch(
    model_devices: Iterable[torch.device], input_devices: Iterable[torch.device]
) -> str | None:
    """Why inputs on `input_devices` cannot meet weights on `model_devices`, or None if they can.

    The check is loose on purpose: a model spread over several devices accepts inputs on any of
    them, and meta or fake tensors (shape-only runs) are never checked.
    """
    model_set, input_set = set(model_devices), set(input_devices)
    if not model_set or not input_set or not model_set.isdisjoint(input_set):
        return None
    model_names = ", ".join(sorted(map(str, model_set)))
    input_names = ", ".join(sorted(map(str, input_set)))
    target = sorted(map(str, model_set))[0]
    return (
        f"the inputs are on {input_names} but the model's parameters and buffers are on "
        f"{model_names}: move the inputs to the model's device (e.g. x.to({target!r})) or the "
        "model to the inputs' device (model.to(...))"
    )


def check_not_empty(model: nn.Module, trace: Trace) -> None:
    """Refuse a model that has no parameters and ran no ops: there is nothing to count."""
    if trace.ops or any(True for _ in model.parameters()):
        return
    raise ValueError(
        f"the model ({type(model).__name__}) has no parameters and its forward ran no ops, so "
        "there is nothing to count: check that forward calls the model's layers and that the "
        "model is the one you meant to analyse"
    )


def _random_inputs(
    model: nn.Module, input_shape: tuple[Any, ...], shape_only: bool = False
) -> tuple[torch.Tensor, ...]:
    if _is_shape(input_shape):
        shapes = [input_shape]
    elif isinstance(input_shape, tuple) and input_shape and all(map(_is_shape, input_shape)):
        shapes = list(input_shape)
    else:
        raise ValueError(
            "input_shape must be a tuple of ints, e.g. (3, 224, 224), to build one input, or a "
            f"tuple of such tuples to build several; got {input_shape!r}"
        )
    for shape in shapes:
        if any(size <= 0 for size in shape):
            raise ValueError(
                f"input_shape {shape!r} has a size that is not positive: every size must be at "
                "least 1 (the batch size 1 is added in front)"
            )
    _refuse_float_ids(model, shapes)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else None
    if shape_only:
        return tuple(torch.empty((1, *shape), dtype=dtype, device="meta") for shape in shapes)
    generator = torch.Generator().manual_seed(0)
    return tuple(
        torch.randn((1, *shape), generator=generator, dtype=dtype).to(device) for shape in shapes
    )


def _refuse_float_ids(model: nn.Module, shapes: list[tuple[int, ...]]) -> None:
    """input_shape builds float tensors; a model that starts with an embedding needs token ids."""
    first = next(
        (
            (name, m)
            for name, m in model.named_modules()
            if next(m.parameters(False), None) is not None
        ),
        None,
    )
    if first is None or not isinstance(first[1], _EMBEDDINGS):
        return
    name, embedding = first
    shape = (1, *shapes[0])
    raise ValueError(
        f"input_shape builds random float inputs, but this model starts with an embedding "
        f"(module {name or '<root>'!r}: {type(embedding).__name__}({embedding.extra_repr()})), "
        "which takes integer token ids: pass them as inputs instead, e.g. "
        f"inputs=torch.randint(0, {embedding.num_embeddings}, {shape})"
    )


def _is_shape(value: Any) -> bool:
    return isinstance(value, tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def _arguments(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for index, value in enumerate(args):
        yield f"input {index}", value
    for name, value in kwargs.items():
        yield f"input {name!r}", value


def _tensors(*values: Any) -> Iterator[torch.Tensor]:
    """Every tensor nested in lists, tuples and dicts."""
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _tensors(*value)
        elif isinstance(value, Mapping):
            yield from _tensors(*value.values())


def _model_tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    yield from model.parameters()
    yield from model.buffers()


def _real_devices(tensors: Iterable[torch.Tensor]) -> set[torch.device]:
    return {t.device for t in tensors if t.device.type != "meta" and not isinstance(t, FakeTensor)}

"""The ``summary`` format: mmpretrain's get_flops block (input shape and the totals).

``Flops`` and ``Activation`` show each phase's share when the backward pass counted something
(``Flops: 1.1K (forward 400, backward 700)``), with the same number text as the tables.
``input_shape`` replaces the recorded inputs on the first line with a caller's own words (the
OpenMMLab source prints get_flops' ``(3, 224, 224)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from torchtally.plugin import Analysis, TensorMeta
from torchtally_reporters.options import PARAMS, parse_options
from torchtally_reporters.stats import format_number, model_total, phases_text

SUMMARY_OPTIONS: Mapping[str, Any] = {
    "units": "human",
    "flop_unit": "mac",
    "split_phases": None,
    "input_shape": None,
}
RULE = "=" * 30
LINES = (("Flops", "flops"), ("Params", PARAMS), ("Activation", "activations"))


def render_summary(analysis: Analysis, **given: Any) -> str:
    shown = given.pop("input_shape", None)
    if shown is not None and not isinstance(shown, str):
        raise TypeError(f"input_shape must be text such as '(3, 224, 224)', got {shown!r}")
    options = parse_options("summary", analysis, given, SUMMARY_OPTIONS)
    lines = [f"Input shape: {describe_inputs(analysis.input_shapes) if shown is None else shown}"]
    for label, metric in LINES:
        if metric != PARAMS and metric not in analysis.metrics:
            continue
        total = format_number(model_total(analysis, metric, options), options)
        split = phases_text(analysis, metric, options)
        if metric == PARAMS:
            split = _frozen_text(analysis, options)
        lines.append(f"{label}: {total} {split}".rstrip())
    return "\n".join([RULE, *lines, RULE])


def describe_inputs(recorded: Any) -> str:
    """Inputs as get_flops prints them: ``(1, 3, 224, 224)`` for one tensor, ``input_ids (1, 128),
    attention_mask (1, 128)`` for keyword inputs. `recorded` is a trace's ``(args, kwargs)`` or
    the inputs themselves (tensors or their `TensorMeta` records, in tuples, lists and dicts)."""
    args, kwargs = recorded if _is_call(recorded) else (recorded, {})
    if kwargs:
        return _describe(kwargs)
    return _describe(args[0] if isinstance(args, tuple) and len(args) == 1 else args)


def _is_call(recorded: Any) -> bool:
    return (
        isinstance(recorded, tuple)
        and not isinstance(recorded, TensorMeta)
        and len(recorded) == 2
        and isinstance(recorded[1], Mapping)
    )


def _describe(value: Any) -> str:
    if _is_tensor(value):
        return str(tuple(value.shape))
    if isinstance(value, Mapping):
        return ", ".join(
            f"{key} {_describe(item)}" for key, item in value.items() if _has_tensor(item)
        )
    if isinstance(value, (list, tuple)):
        parts = ", ".join(_describe(item) for item in value)
        return f"[{parts}]" if isinstance(value, list) else parts
    return repr(value)


def _is_tensor(value: Any) -> bool:
    return isinstance(value, (TensorMeta, torch.Tensor))


def _has_tensor(value: Any) -> bool:
    if _is_tensor(value):
        return True
    if isinstance(value, Mapping):
        return any(_has_tensor(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(item) for item in value)
    return False


def _frozen_text(analysis: Analysis, options: Any) -> str:
    """``(trainable 1.2M, frozen 23.5M)`` when some parameters do not require grad; else ``""``
    (mmpretrain's block as it is)."""
    memory = analysis.memory()
    if not memory["frozen_params"]:
        return ""
    trainable = format_number(memory["trainable_params"], options)
    frozen = format_number(memory["frozen_params"], options)
    return f"(trainable {trainable}, frozen {frozen})"

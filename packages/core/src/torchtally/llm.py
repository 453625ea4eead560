"""Language models as they are used: the prefill, then one decode step per new token, each
through the model's own KV cache, as Hugging Face ``generate`` runs them.

`generation` traces the prefill and a few decode steps and derives the others. A decode step's
cost depends on how many tokens the cache holds; between two steps a model whose work grows by
the same amount each step is linear in the step number, and one whose shapes change (a sliding
window filling up, a chunk boundary) is not. So the decode is cut into segments, each of which is
accepted as linear only when (1) at least three traced steps, its two ends and one inside, ran
the same ops in the same modules with every size either constant or growing by the same whole
number per step, and (2) every count (per metric, module and operator) lies on one line with a
whole-number slope through those steps. Any segment that fails is split in two and each half
checked again, down to steps traced one by one; the window and chunk sizes in the model's
configuration are segment ends from the start. Each step's count is then exact: the traced
value, or the line's value at that step, which the checks above make the traced value.
"""

from __future__ import annotations

import inspect
import itertools
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from torchtally.analysis import Analysis
from torchtally.api import Handlers, log_unsupported, registry_with, trace_call
from torchtally.fake import check_mode
from torchtally.handlers import METRICS, ON_REQUEST_METRICS, CountOptions
from torchtally.records import TensorMeta, Trace, record_value
from torchtally.tracer import gc_paused
from torchtally.units import format_count

CACHES = ("dynamic", "static")
FILLS = ("direct", "model")
# Configuration values that change a decode step's shapes when the cache reaches them.
_WINDOW_KEYS = ("sliding_window", "attention_chunk_size")
_MAX_BREAKPOINTS = 256
_PERIODIC_KEYS = ("attention_chunk_size",)

# (table, metric, module, operator); table "counts", or "unsupported" (an op's number of calls)
Key = tuple[str, str, str, str]


# --- summed counts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """Counts summed over several runs (the decode steps, or prefill and decode), with the query
    surface of `Analysis`: ``total``, ``by_module``, ``by_operator``, ``by_module_and_operator``,
    ``unsupported_ops``, each per metric."""

    values: Mapping[Key, int] = field(repr=False)
    modules: tuple[str, ...] = field(repr=False)
    metrics: tuple[str, ...]

    def total(self, metric: str = "flops", module: str = "") -> int:
        return sum(self.by_operator(metric, module).values())

    def by_module(self, metric: str = "flops") -> dict[str, int]:
        self._check(metric)
        result = dict.fromkeys(self.modules, 0)
        for (table, m, module, _), value in self.values.items():
            if table == "counts" and m == metric:
                result[module] += value
        return result

    def by_operator(self, metric: str = "flops", module: str = "") -> dict[str, int]:
        self._check(metric, module)
        return {
            op: value
            for (table, m, name, op), value in self.values.items()
            if table == "counts" and m == metric and name == module and value
        }

    def by_module_and_operator(self, metric: str = "flops") -> dict[str, dict[str, int]]:
        self._check(metric)
        result: dict[str, dict[str, int]] = {name: {} for name in self.modules}
        for (table, m, module, op), value in self.values.items():
            if table == "counts" and m == metric and value:
                result[module][op] = value
        return result

    def unsupported_ops(self, metric: str = "flops", module: str = "") -> dict[str, int]:
        self._check(metric, module)
        return {
            op: value
            for (table, m, name, op), value in self.values.items()
            if table == "unsupported" and m == metric and name == module and value
        }

    def _check(self, metric: str, module: str = "") -> None:
        if metric not in self.metrics:
            raise KeyError(
                f"this generation has no metric {metric!r}; it counted {', '.join(self.metrics)}"
            )
        if module not in self.modules:
            raise KeyError(f"{module!r} is not a module of the analysed model")


def flatten(analysis: Analysis) -> dict[Key, int]:
    """Every count of `analysis` (and every unsupported op's number of calls) by key."""
    values: dict[Key, int] = {}
    for metric in analysis.metrics:
        for module, ops in analysis.by_module_and_operator(metric).items():
            for op, value in ops.items():
                if value:
                    values["counts", metric, module, op] = value
        table = analysis._table(analysis._unsupported, metric, None)
        for module, ops in table.items():
            for op, times in ops.items():
                values["unsupported", metric, module, op] = times
    return values


def _sum(*tables: Mapping[Key, int]) -> dict[Key, int]:
    total: Counter[Key] = Counter()
    for table in tables:
        total.update(table)
    return dict(total)


# --- segments of the decode ------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Decode steps ``first..last``, whose counts are ``start + slope * (step - first)``.

    `traced` are the steps traced to establish it (all of them when it is one step)."""

    first: int
    last: int
    traced: tuple[int, ...]
    start: Mapping[Key, int] = field(repr=False)
    slope: Mapping[Key, int] = field(repr=False)
    _lines: dict[tuple[str, str], tuple[int, int]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def steps(self) -> int:
        return self.last - self.first + 1

    def total(self, step: int, metric: str, module: str) -> int:
        """The count of `metric` for `module` at `step` (one line per metric and module)."""
        line = self._lines.get((metric, module))
        if line is None:
            start = sum(v for k, v in self.start.items() if k[:3] == ("counts", metric, module))
            slope = sum(v for k, v in self.slope.items() if k[:3] == ("counts", metric, module))
            line = self._lines[metric, module] = (start, slope)
        return line[0] + line[1] * (step - self.first)

    def at(self, step: int) -> dict[Key, int]:
        offset = step - self.first
        keys = set(self.start) | set(self.slope)
        return {k: self.start.get(k, 0) + self.slope.get(k, 0) * offset for k in keys}

    def summed(self) -> dict[Key, int]:
        n = self.steps
        keys = set(self.start) | set(self.slope)
        return {k: n * self.start.get(k, 0) + self.slope.get(k, 0) * n * (n - 1) // 2 for k in keys}


def _signature(trace: Trace) -> tuple[list[tuple[Any, ...]], list[int]]:
    """What must match between two steps for their ops to be the same ops: per op its name,
    module, function and every argument that is not an integer; and every integer (sizes,
    integer arguments) in one list, which may grow with the step."""
    keys: list[tuple[Any, ...]] = []
    ints: list[int] = []
    for call in trace.ops:
        others: list[Any] = []
        _split(call.arguments, ints, others)
        _split(call.outputs, ints, others)
        keys.append((call.op, call.overload, call.function, call.scope, tuple(others)))
    return keys, ints


def _split(value: Any, ints: list[int], others: list[Any]) -> None:
    if isinstance(value, TensorMeta):
        ints.extend(value.shape)
        others.append(value.dtype)
    elif isinstance(value, int) and not isinstance(value, bool):
        ints.append(value)
    elif isinstance(value, (list, tuple)):
        others.append(len(value))
        for v in value:
            _split(v, ints, others)
    elif isinstance(value, Mapping):
        others.append(tuple(value))
        for v in value.values():
            _split(v, ints, others)
    else:
        others.append(value if isinstance(value, (float, bool, str, type(None))) else repr(value))


def _same_shape_rule(samples: list[tuple[int, tuple[list[Any], list[int]]]]) -> bool:
    """Whether the traced steps ran the same ops, each size constant or growing by one whole
    number per step, the same between every pair of them."""
    first_step, (first_keys, first_ints) = samples[0]
    second_step, (_, second_ints) = samples[1]
    for _, (keys, ints) in samples[1:]:
        if keys != first_keys or len(ints) != len(first_ints):
            return False
    span = second_step - first_step
    rates = []
    for a, b in zip(first_ints, second_ints, strict=True):
        if (b - a) % span:
            return False
        rates.append((b - a) // span)
    for step, (_, ints) in samples[2:]:
        offset = step - first_step
        if any(x != a + r * offset for x, a, r in zip(ints, first_ints, rates, strict=True)):
            return False
    return True


def _line(
    samples: list[tuple[int, Mapping[Key, int]]],
) -> tuple[dict[Key, int], dict[Key, int]] | None:
    """Start and whole-number slope of every count through the samples, or None if one is off."""
    first_step, first = samples[0]
    last_step, last = samples[-1]
    keys = set().union(*(values for _, values in samples))
    slope: dict[Key, int] = {}
    for key in keys:
        rise = last.get(key, 0) - first.get(key, 0)
        rate = Fraction(rise, last_step - first_step)
        if rate.denominator != 1:
            return None
        if rate:
            slope[key] = int(rate)
    for step, values in samples[1:-1]:
        offset = step - first_step
        if any(values.get(k, 0) != first.get(k, 0) + slope.get(k, 0) * offset for k in keys):
            return None
    return dict(first), slope


# --- the model's generate, step by step --------------------------------------------------------


def _accepts(model: nn.Module, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    if param is None or param.device.type == "meta":
        return torch.device("cpu")  # a meta model's fakes claim the CPU
    return param.device


class _Steps:
    """Builds what ``generate`` passes the model: the prefill's inputs, and a decode step's
    inputs with the cache filled to the length it has at that step (filled by the model itself,
    in the setup of the step's trace, unrecorded)."""

    def __init__(
        self, model: nn.Module, prompt: int, new: int, batch: int, cache: str, cache_fill: str
    ) -> None:
        import transformers

        self.transformers = transformers
        self.model: Any = model  # a transformers PreTrainedModel
        self.config: Any = model.config
        self.prompt, self.new, self.batch, self.cache_kind = prompt, new, batch, cache
        self.encoder_decoder = bool(getattr(self.config, "is_encoder_decoder", False))
        self.keep_logits = _accepts(model, "logits_to_keep")
        # state-space models (Mamba) take their cache as cache_params
        takes_params = _accepts(model, "cache_params") and not _accepts(model, "past_key_values")
        self.cache_name = "cache_params" if takes_params else "past_key_values"
        self.positions = not self.encoder_decoder and _accepts(model, "position_ids")
        self.device = _device(model)
        self.last_cache: Any = None  # the cache of the last traced run, for its size
        self._inputs: dict[str, Any] = {}  # the last run's inputs, until described
        self._held = 0
        self.cache_fill = cache_fill
        self.layout: list[tuple[tuple[int, ...], tuple[int, ...], torch.dtype]] | None = None

    def base(self) -> int:
        """Tokens the cache holds before decode step 1."""
        return 1 if self.encoder_decoder else self.prompt

    def _ids(self, length: int) -> torch.Tensor:
        return torch.zeros(self.batch, length, dtype=torch.long, device=self.device)

    def _new_cache(self) -> Any:
        t = self.transformers
        text = self.config.get_text_config(decoder=True)
        if self.cache_kind == "static":
            total = (1 if self.encoder_decoder else self.prompt) + self.new - 1
            cache = t.StaticCache(config=text, max_cache_len=total)
        else:
            cache = t.DynamicCache(config=text)
        if self.encoder_decoder:
            cross = (
                t.StaticCache(config=text, max_cache_len=self.prompt)
                if self.cache_kind == "static"
                else t.DynamicCache(config=text)
            )
            cache = t.EncoderDecoderCache(cache, cross)
        return cache

    def _cache_argument(self, cache: Any) -> dict[str, Any]:
        """The cache under the name the model takes it by, as generate passes it."""
        return {self.cache_name: cache}

    def _common(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"use_cache": True}
        if self.keep_logits:
            kwargs["logits_to_keep"] = 1
        return kwargs

    def _prepare(self, ids: torch.Tensor, **kwargs: Any) -> dict[str, Any]:
        inputs = self.model.prepare_inputs_for_generation(ids, **kwargs)
        return {**inputs, "return_dict": True}

    def _positions(self, length: int) -> dict[str, Any]:
        if not self.positions:
            return {}
        positions = torch.arange(length, device=self.device).repeat(self.batch, 1)
        return {"position_ids": positions}

    def prefill(self, model: nn.Module, args: Any, kwargs: Any) -> tuple[tuple[()], dict[str, Any]]:
        """The first forward: the prompt (or the encoder input and the decoder's start token)."""
        cache = self._new_cache()
        if self.encoder_decoder:
            encoder = self._encoder_inputs()
            inputs = self._prepare(
                self._ids(1),
                **self._cache_argument(cache),
                is_first_iteration=True,
                **encoder,
                **self._common(),
            )
            inputs.update(self._encoder_ids())
        else:
            inputs = self._prepare(
                self._ids(self.prompt),
                **self._cache_argument(cache),
                is_first_iteration=True,
                **self._positions(self.prompt),
                **self._common(),
            )
        return self._called_with(cache, inputs, 0)

    def step(self, step: int) -> Callable[..., tuple[tuple[()], dict[str, Any]]]:
        """Decode step `step` (1-based): it feeds token `step` and produces token `step + 1`."""

        def setup(model: nn.Module, args: Any, kwargs: Any) -> tuple[tuple[()], dict[str, Any]]:
            cache = self._new_cache()
            held = self.base() + step - 1  # tokens in the cache before this step
            if self.encoder_decoder:
                encoder = self._encoder_inputs()
                first = self._prepare(
                    self._ids(held),
                    **self._cache_argument(cache),
                    is_first_iteration=True,
                    **encoder,
                    **self._common(),
                )
                first.update(self._encoder_ids())
                out = model(**first)
                encoder_outputs = self.transformers.modeling_outputs.BaseModelOutput(
                    last_hidden_state=out.encoder_last_hidden_state
                )
                inputs = self._prepare(
                    self._ids(held + 1),
                    next_sequence_length=1,
                    **self._cache_argument(cache),
                    encoder_outputs=encoder_outputs,
                    **encoder,
                    **self._common(),
                )
            else:
                if self.layout is not None:
                    self._fill(cache, held)
                else:
                    model(
                        **self._prepare(
                            self._ids(held),
                            **self._cache_argument(cache),
                            is_first_iteration=True,
                            **self._positions(held),
                            **self._common(),
                        )
                    )
                inputs = self._prepare(
                    self._ids(held + 1),
                    next_sequence_length=1,
                    **self._cache_argument(cache),
                    **self._positions(held + 1),
                    **self._common(),
                )
            return self._called_with(cache, inputs, held)

        return setup

    def learn_layout(self, cache: Any) -> None:
        """After the prefill: per layer the shapes and dtype of the keys and values it cached,
        when every layer is a plain attention layer (full, sliding-window, static) that
        `_fill` can fill; otherwise decode steps fill the cache with the model's prefill."""
        from transformers import cache_utils

        plain = (
            cache_utils.DynamicLayer,
            cache_utils.DynamicSlidingWindowLayer,
            cache_utils.StaticLayer,
            cache_utils.StaticSlidingWindowLayer,
        )
        self.layout = None
        if self.cache_fill != "direct" or type(cache) not in (
            cache_utils.DynamicCache,
            cache_utils.StaticCache,
        ):
            return
        layout = []
        for layer in cache.layers:
            if type(layer) not in plain or not layer.is_initialized:
                return
            layout.append((tuple(layer.keys.shape), tuple(layer.values.shape), layer.keys.dtype))
        self.layout = layout

    def _fill(self, cache: Any, held: int) -> None:
        """Put `held` tokens' keys and values in each layer through the cache's own ``update``,
        as the model's prefill over them does (a sliding-window layer keeps its window)."""
        assert self.layout is not None
        for index, (keys, values, dtype) in enumerate(self.layout):
            k = torch.zeros((*keys[:-2], held, keys[-1]), dtype=dtype, device=self.device)
            v = torch.zeros((*values[:-2], held, values[-1]), dtype=dtype, device=self.device)
            cache.update(k, v, index)

    def _encoder_inputs(self) -> dict[str, Any]:
        """What generate passes the encoder besides its input: the attention mask (all ones)."""
        mask = torch.ones(self.batch, self.prompt, dtype=torch.long, device=self.device)
        return {"attention_mask": mask}

    def _encoder_ids(self) -> dict[str, Any]:
        return {"input_ids": self._ids(self.prompt)}

    def _called_with(
        self, cache: Any, inputs: dict[str, Any], held: int
    ) -> tuple[tuple[()], dict[str, Any]]:
        self.last_cache, self._inputs, self._held = cache, inputs, held
        return (), inputs

    def describe_inputs(self) -> dict[str, Any]:
        """The last run's inputs as a trace records them (the cache by its kind and the tokens it
        held before the call; encoder outputs by their shape), and let go of them."""
        described: dict[str, Any] = {}
        for name, value in self._inputs.items():
            if name == self.cache_name:
                described[name] = f"{type(value).__name__}({self._held} tokens)"
            elif name == "encoder_outputs":
                described[name] = record_value(value.last_hidden_state)
            else:
                described[name] = record_value(value)
        self._inputs = {}
        return described


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """Every tensor a transformers cache holds (keys, values, states), each once; not its
    bookkeeping scalars (lengths, window sizes)."""
    found: dict[int, torch.Tensor] = {}

    def visit(value: Any, depth: int) -> None:
        if isinstance(value, torch.Tensor):
            if value.dim():
                found.setdefault(id(value), value)
        elif depth > 6:
            return
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v, depth + 1)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v, depth + 1)
        elif type(value).__module__.startswith("transformers.cache_utils"):
            for v in vars(value).values():
                visit(v, depth + 1)

    visit(cache, 0)
    return list(found.values())


def _tensor_bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


# --- mixture of experts ------------------------------------------------------------------------

_EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
_TOP_K_KEYS = ("num_experts_per_tok", "moe_topk", "top_k", "num_selected_experts")


def routed_experts(config: Any) -> tuple[int, int] | None:
    """(experts, experts per token) of a mixture-of-experts configuration, or None."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    experts = next((getattr(text, k) for k in _EXPERT_COUNT_KEYS if getattr(text, k, None)), None)
    top_k = next((getattr(text, k) for k in _TOP_K_KEYS if getattr(text, k, None)), None)
    if not isinstance(experts, int) or not isinstance(top_k, int) or experts <= top_k:
        return None
    return experts, top_k


# The option torchtally-transformer's grouped-matmul bytes handler reads: experts per token.
MOE_TOP_K_OPTION = "moe_top_k"


def with_routing(model: nn.Module, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """`options`, with the experts per token of a mixture of experts (``moe_top_k``), so that a
    grouped matmul's bytes count the experts its tokens touch under uniform routing."""
    extra = dict(options or {})
    moe = routed_experts(getattr(model, "config", None)) if hasattr(model, "config") else None
    if moe is not None:
        extra.setdefault(MOE_TOP_K_OPTION, moe[1])
    return extra


def active_parameters(model: nn.Module) -> int:
    """Parameters one token runs through: all of them, less the routed experts it skips.

    A routed expert is a parameter under a module path with an ``experts`` component (one per
    expert, or the experts stacked in a leading dimension); shared experts always run. With E
    experts and top-k routing a token uses k/E of their parameters."""
    total = sum(p.numel() for p in model.parameters())
    moe = routed_experts(getattr(model, "config", None)) if hasattr(model, "config") else None
    if moe is None:
        return total
    experts, top_k = moe
    routed = sum(
        p.numel() for name, p in model.named_parameters() if "experts" in name.split(".")[:-1]
    )
    return total - routed * (experts - top_k) // experts


# --- the result ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generation:
    """What generating `new_tokens` tokens after a `prompt_tokens`-token prompt costs, for a
    batch of `batch` sequences, as ``generate`` runs it (greedy, one sequence per prompt).

    `prefill` is the first forward pass (it produces token 1; the LM head runs on the last
    position only, as ``generate`` asks with ``logits_to_keep=1``), an `Analysis`. `decode` sums
    the ``new_tokens - 1`` decode steps (step i feeds token i and produces token i + 1, over a
    cache of ``prompt_tokens + i - 1`` tokens), a `Tally`. The queries (``total``, ``by_module``,
    ``by_operator``, ...) sum both. `segments` say how each step's counts were obtained.
    """

    prefill: Analysis
    decode: Tally
    prompt_tokens: int
    new_tokens: int
    batch: int
    cache: str
    segments: tuple[Segment, ...]
    kv_cache_bytes: int
    weight_bytes: int
    params: int
    active_params: int
    model_name: str
    encoder_decoder: bool
    _steps: dict[int, Analysis] = field(repr=False)
    _retrace: Callable[[int], Analysis] = field(repr=False)
    _whole: Tally = field(repr=False)

    @property
    def mode(self) -> str:
        return self.prefill.mode

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.prefill.metrics

    @property
    def decode_steps(self) -> int:
        return self.new_tokens - 1

    @property
    def traced_steps(self) -> tuple[int, ...]:
        """The decode steps traced to count the decode; the others' counts are derived (see
        `segments`). Steps traced later by `decode_step` are not added."""
        return tuple(sorted({step for s in self.segments for step in s.traced}))

    # --- per step ---

    def decode_step(self, step: int) -> Analysis:
        """The `Analysis` of decode step `step` (1 to ``new_tokens - 1``), traced if it was not."""
        self._check_step(step)
        if step not in self._steps:
            self._steps[step] = self._retrace(step)
        return self._steps[step]

    def step(self, step: int) -> Tally:
        """Decode step `step`'s counts from its segment (exact, see `segments`; no tracing)."""
        self._check_step(step)
        segment = next(s for s in self.segments if s.first <= step <= s.last)
        return Tally(MappingProxyType(segment.at(step)), self.decode.modules, self.metrics)

    def step_total(self, step: int, metric: str = "flops", module: str = "") -> int:
        """Decode step `step`'s count of `metric` (``step(step).total(metric, module)``)."""
        self._check_step(step)
        self.decode._check(metric, module)
        segment = next(s for s in self.segments if s.first <= step <= s.last)
        return segment.total(step, metric, module)

    def step_totals(self, metric: str = "flops", module: str = "") -> list[int]:
        """Every decode step's count of `metric`, step 1 first."""
        return [self.step_total(i, metric, module) for i in range(1, self.new_tokens)]

    def _check_step(self, step: int) -> None:
        if not 1 <= step < self.new_tokens:
            raise ValueError(
                f"decode steps run from 1 to {self.new_tokens - 1} (new_tokens - 1: the prefill "
                f"produces the first token), got {step}"
            )

    # --- the whole generation ---

    def total(self, metric: str = "flops", module: str = "") -> int:
        return self._whole.total(metric, module)

    def by_module(self, metric: str = "flops") -> dict[str, int]:
        return self._whole.by_module(metric)

    def by_operator(self, metric: str = "flops", module: str = "") -> dict[str, int]:
        return self._whole.by_operator(metric, module)

    def by_module_and_operator(self, metric: str = "flops") -> dict[str, dict[str, int]]:
        return self._whole.by_module_and_operator(metric)

    def unsupported_ops(self, metric: str = "flops", module: str = "") -> dict[str, int]:
        return self._whole.unsupported_ops(metric, module)

    @property
    def kv_cache_bytes_per_sequence(self) -> int:
        """The KV cache after the last step, per sequence of the batch."""
        return self.kv_cache_bytes // self.batch

    @property
    def peak_activation_bytes(self) -> int:
        """The larger activation peak of the prefill and the last decode step (`Analysis.memory`:
        what the run allocated, the KV cache it builds or extends included)."""
        peaks = [self.prefill.memory()["peak_activation_bytes"]]
        if self.decode_steps:
            peaks.append(self.decode_step(self.decode_steps).memory()["peak_activation_bytes"])
        return int(max(peaks))

    def memory_per_sequence(self) -> int:
        """What one more sequence of the batch needs: its share of the activation peak (which
        holds its KV cache), at least its KV cache after the last step."""
        return max(self.peak_activation_bytes // self.batch, self.kv_cache_bytes_per_sequence)

    def max_batch(self, memory_bytes: int, reserved_bytes: int = 0) -> int:
        """The largest batch that fits in `memory_bytes`, less `reserved_bytes` (workspace, the
        framework's own): ``(memory - reserved - weights) // memory_per_sequence()``; 0 when the
        weights alone do not fit. Kernels' scratch memory is not seen (see `Analysis.memory`)."""
        free = memory_bytes - reserved_bytes - self.weight_bytes
        if free <= 0:
            return 0
        per_sequence = self.memory_per_sequence()
        return free // per_sequence if per_sequence else 2**63 - 1

    def per_token(self, metric: str = "flops") -> dict[str, float]:
        """Per token: the prefill per prompt token, a decode step per sequence, and the whole
        generation per generated token (``batch * new_tokens`` of them)."""
        prefill = self.prefill.total(metric)
        decode = self.decode.total(metric)
        steps = self.decode_steps
        return {
            "prefill_per_prompt_token": prefill / (self.batch * self.prompt_tokens),
            "decode_per_token": decode / (self.batch * steps) if steps else 0.0,
            "per_generated_token": (prefill + decode) / (self.batch * self.new_tokens),
        }

    def to_dict(self) -> dict[str, Any]:
        """Every number, JSON-ready."""
        metrics = {}
        for metric in self.metrics:
            prefill_by_module = self.prefill.by_module(metric)
            metrics[metric] = {
                "prefill": self.prefill.total(metric),
                "decode": self.decode.total(metric),
                "total": self.total(metric),
                "per_token": self.per_token(metric),
                "decode_steps": self.step_totals(metric),
                "by_module": {
                    name: {"prefill": prefill_by_module.get(name, 0), "decode": decode}
                    for name, decode in self.decode.by_module(metric).items()
                },
                "by_operator": {
                    "prefill": dict(sorted(self.prefill.by_operator(metric).items())),
                    "decode": dict(sorted(self.decode.by_operator(metric).items())),
                },
                "unsupported_ops": dict(sorted(self.unsupported_ops(metric).items())),
            }
        return {
            "model": self.model_name,
            "mode": self.mode,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "batch": self.batch,
            "cache": self.cache,
            "conventions": {
                "flop": "one fused multiply-add counts as one flop",
                "elementwise": self.prefill.options.elementwise,
                "options": {k: repr(v) for k, v in sorted(self.prefill.options.extra.items())},
            },
            "params": self.params,
            "active_params": self.active_params,
            "weight_bytes": self.weight_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "traced_steps": list(self.traced_steps),
            "segments": [
                {"first": s.first, "last": s.last, "traced": list(s.traced)} for s in self.segments
            ],
            "metrics": metrics,
        }

    def summary(self, metrics: tuple[str, ...] | None = None, units: str = "human") -> str:
        """A few lines: per metric (default flops, and bytes if counted) the prefill, decode and
        total with per-token figures; the model's size; how the decode was counted."""
        fmt = _formatter(units)
        lines = [
            f"Generation: {self.model_name}, prompt {self.prompt_tokens} tokens, "
            f"{self.new_tokens} new tokens, batch {self.batch} ({self.mode} mode, "
            f"{self.cache} cache)"
        ]
        shown = metrics or tuple(m for m in ("flops", "bytes") if m in self.metrics)
        for metric in shown:
            per = self.per_token(metric)
            steps = self.step_totals(metric)
            lines.append(
                f"Prefill ({metric}): {fmt(self.prefill.total(metric))} "
                f"({fmt(per['prefill_per_prompt_token'])} per prompt token)"
            )
            if steps:
                lines.append(
                    f"Decode ({metric}): {fmt(self.decode.total(metric))} over {len(steps)} "
                    f"steps (step 1 {fmt(steps[0])}, step {len(steps)} {fmt(steps[-1])}; "
                    f"{fmt(per['decode_per_token'])} per token)"
                )
            lines.append(
                f"Total ({metric}): {fmt(self.total(metric))} "
                f"({fmt(per['per_generated_token'])} per generated token)"
            )
        active = (
            f", {fmt(self.active_params)} active per token"
            if self.active_params != self.params
            else ""
        )
        lines.append(
            f"Params: {fmt(self.params)}{active}; weights "
            f"{_bytes(self.weight_bytes)}, KV cache {_bytes(self.kv_cache_bytes)} after the last "
            "step"
        )
        segments = ", ".join(
            f"{s.first}-{s.last}" if s.first != s.last else str(s.first) for s in self.segments
        )
        lines.append(
            f"Decode steps traced: {', '.join(map(str, self.traced_steps)) or 'none'}; "
            f"segments: {segments or 'none'}"
        )
        return "\n".join(lines)

    def table(
        self, max_depth: int = 1, metrics: tuple[str, ...] | None = None, units: str = "human"
    ) -> str:
        """Per module down to `max_depth` levels: parameters, then each metric (by default those
        the table format shows unasked: not bytes) for the prefill, the decode and both."""
        fmt = _formatter(units)
        shown = self._shown(metrics)
        header = ["module", "#parameters"]
        for metric in shown:
            header += [f"#{metric} ({part})" for part in ("prefill", "decode", "total")]
        columns = [
            (self.prefill.by_module(metric), self.decode.by_module(metric), metric)
            for metric in shown
        ]
        params = self.prefill.params
        rows = []
        for name in self.decode.modules:
            depth = name.count(".") + 1 if name else 0
            counts = [(p[name], d[name]) for p, d, _ in columns]
            if depth > max_depth or (name and not params.get(name) and not any(map(any, counts))):
                continue
            row = [" " * depth + (name or "model"), fmt(params.get(name, 0))]
            for prefill, decode in counts:
                row += [fmt(prefill), fmt(decode), fmt(prefill + decode)]
            rows.append(row)
        return _grid(header, rows)

    def operator_table(self, metrics: tuple[str, ...] | None = None, units: str = "human") -> str:
        """Per operator, largest first: each metric for the prefill, the decode and both."""
        fmt = _formatter(units)
        shown = self._shown(metrics)
        header = ["operator"]
        for metric in shown:
            header += [f"#{metric} ({part})" for part in ("prefill", "decode", "total")]
        parts = [(self.prefill.by_operator(m), self.decode.by_operator(m)) for m in shown]
        names = sorted(
            set().union(*(set(p) | set(d) for p, d in parts)),
            key=lambda op: (-(parts[0][0].get(op, 0) + parts[0][1].get(op, 0)), op),
        )
        rows = []
        for op in names:
            row = [op]
            for prefill, decode in parts:
                a, b = prefill.get(op, 0), decode.get(op, 0)
                row += [fmt(a), fmt(b), fmt(a + b)]
            rows.append(row)
        return _grid(header, rows)

    def _shown(self, metrics: tuple[str, ...] | None) -> tuple[str, ...]:
        shown = tuple(metrics or (m for m in self.metrics if m not in ON_REQUEST_METRICS))
        for metric in shown:
            self.decode._check(metric)
        return shown

    def on(self, hardware: Any, *, tf32: bool = False) -> GenerationTime:
        """Estimated time on `hardware` (a name such as ``"h100-sxm"``, or a `Hardware`), by the
        roofline of every op (`Analysis.roofline`): time to first token, per decode step and per
        output token, tokens per second, and the largest batch that fits its memory."""
        prefill = self.prefill.roofline(hardware, tf32=tf32)
        steps: dict[int, Any] = {}
        lines = []
        for segment in self.segments:
            for step in segment.traced:
                if step not in steps:
                    steps[step] = self._steps[step].roofline(prefill.hardware, tf32=tf32)
            lines.append(_time_line(segment, [(s, steps[s]) for s in segment.traced]))
        return GenerationTime(self, prefill, tuple(lines), tf32)


@dataclass(frozen=True)
class _TimeLine:
    """A segment's decode-step time: ``base + slope * (step - first)`` from the ops whose bound
    stays the same over the segment, plus, for each op whose bound changes inside it, the larger
    of its two roofline terms at that step (each term a line)."""

    first: int
    last: int
    base: float
    slope: float
    switching: tuple[tuple[float, float, float, float], ...]  # compute, its slope, memory, slope

    def at(self, step: int) -> float:
        offset = step - self.first
        return (
            self.base
            + self.slope * offset
            + sum(max(c + dc * offset, m + dm * offset) for c, dc, m, dm in self.switching)
        )


def _time_line(segment: Segment, rooflines: list[tuple[int, Any]]) -> _TimeLine:
    """The decode-step time of a segment from the rooflines of its traced steps: each op's two
    terms (compute and memory seconds) are lines through the traced steps, as its counts are."""
    first_step, first = rooflines[0]
    if len(rooflines) == 1:
        return _TimeLine(segment.first, segment.last, first.total(), 0.0, ())
    last_step, last = rooflines[-1]
    span = last_step - first_step
    base = slope = 0.0
    switching = []
    for a, b in zip(first.ops, last.ops, strict=True):
        dc = (b.compute_seconds - a.compute_seconds) / span
        dm = (b.memory_seconds - a.memory_seconds) / span
        c0 = a.compute_seconds + dc * (segment.first - first_step)
        m0 = a.memory_seconds + dm * (segment.first - first_step)
        end = segment.last - segment.first
        if (c0 >= m0) == (c0 + dc * end >= m0 + dm * end):
            # one term is the larger at both ends, so over the whole segment (both are lines)
            base, slope = (base + c0, slope + dc) if c0 >= m0 else (base + m0, slope + dm)
        else:
            switching.append((c0, dc, m0, dm))
    return _TimeLine(segment.first, segment.last, base, slope, tuple(switching))


class GenerationTime:
    """A `Generation` on one device, by the roofline (`Generation.on`). Seconds throughout.

    - `time_to_first_token`: the prefill's estimated time (for an encoder-decoder model, the
      encoder's too);
    - `step_seconds(i)` / `step_times()`: each decode step's; `decode_seconds` their sum;
    - `time_per_output_token`: a decode step's mean, the time between tokens of a sequence;
    - `tokens_per_second`: the decode's throughput, ``batch`` tokens per step;
      `end_to_end_tokens_per_second` counts the prefill in: ``batch * new_tokens`` over the
      whole time;
    - `max_batch`: `Generation.max_batch` with the device's memory (None when it has no figure).

    The roofline is an estimate: every op alone at the device's peak or bandwidth, no overlap,
    no launch overhead (docs/conventions.md, "Roofline").
    """

    def __init__(
        self, generation: Generation, prefill: Any, lines: tuple[_TimeLine, ...], tf32: bool
    ) -> None:
        self.generation = generation
        self.prefill = prefill  # the prefill's Roofline
        self.hardware = prefill.hardware
        self.tf32 = tf32
        self._lines = lines

    @property
    def time_to_first_token(self) -> float:
        return float(self.prefill.total())

    def step_seconds(self, step: int) -> float:
        self.generation._check_step(step)
        line = next(t for t in self._lines if t.first <= step <= t.last)
        return line.at(step)

    def step_times(self) -> list[float]:
        return [self.step_seconds(i) for i in range(1, self.generation.new_tokens)]

    @property
    def decode_seconds(self) -> float:
        return sum(self.step_times())

    @property
    def total_seconds(self) -> float:
        return self.time_to_first_token + self.decode_seconds

    @property
    def time_per_output_token(self) -> float:
        steps = self.generation.decode_steps
        return self.decode_seconds / steps if steps else 0.0

    @property
    def tokens_per_second(self) -> float:
        tpot = self.time_per_output_token
        return self.generation.batch / tpot if tpot else 0.0

    @property
    def end_to_end_tokens_per_second(self) -> float:
        g = self.generation
        return g.batch * g.new_tokens / self.total_seconds if self.total_seconds else 0.0

    @property
    def max_batch(self) -> int | None:
        memory = self.hardware.memory
        return None if memory is None else self.generation.max_batch(int(memory))

    def to_dict(self) -> dict[str, Any]:
        return {
            "hardware": self.hardware.name,
            "tf32": self.tf32,
            "time_to_first_token_s": self.time_to_first_token,
            "time_per_output_token_s": self.time_per_output_token,
            "tokens_per_second": self.tokens_per_second,
            "end_to_end_tokens_per_second": self.end_to_end_tokens_per_second,
            "decode_s": self.decode_seconds,
            "total_s": self.total_seconds,
            "decode_step_s": self.step_times(),
            "prefill_bound_share": self.prefill.bound_share(),
            "memory_bytes": self.hardware.memory,
            "weight_bytes": self.generation.weight_bytes,
            "kv_cache_bytes": self.generation.kv_cache_bytes,
            "memory_per_sequence_bytes": self.generation.memory_per_sequence(),
            "max_batch": self.max_batch,
            "notes": list(self.prefill.notes),
        }

    def summary(self) -> str:
        g = self.generation
        steps = self.step_times()
        share = self.prefill.bound_share()
        lines = [
            f"On {self.hardware.name} (roofline estimate): time to first token "
            f"{_seconds(self.time_to_first_token)} ({share.get('compute', 0):.0%} of it in "
            "compute-bound ops)"
        ]
        if steps:
            lines.append(
                f"Time per output token {_seconds(self.time_per_output_token)} (step 1 "
                f"{_seconds(steps[0])}, step {len(steps)} {_seconds(steps[-1])}); "
                f"{self.tokens_per_second:,.1f} tokens/s at batch {g.batch}, "
                f"{self.end_to_end_tokens_per_second:,.1f} with the prefill"
            )
        memory = self.hardware.memory
        if memory is not None:
            lines.append(
                f"Memory {_bytes(int(memory))}: weights {_bytes(g.weight_bytes)}, "
                f"{_bytes(g.memory_per_sequence())} per sequence (KV cache "
                f"{_bytes(g.kv_cache_bytes_per_sequence)}); largest batch {self.max_batch}"
            )
        return "\n".join(lines)


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale or unit == "µs":
            return f"{value / scale:.4g} {unit}"
    return f"{value} s"


def _formatter(units: str) -> Callable[[float], str]:
    if units not in ("human", "raw"):
        raise ValueError(f"units must be 'human' (4.112G) or 'raw' (4111512576), got {units!r}")
    if units == "raw":
        return lambda value: str(round(value))
    return lambda value: format_count(round(value))


def _grid(header: list[str], rows: list[list[str]]) -> str:
    """A ``+---+`` grid, text left-aligned, as the table format draws one."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([rule, line(header), rule, *map(line, rows), rule])


def _bytes(value: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.4g} {unit}" if unit != "B" else f"{value} B"
        value /= 1024  # type: ignore[assignment]
    return f"{value} B"


# --- the entry point ---------------------------------------------------------------------------


def generation(
    model: nn.Module,
    prompt_tokens: int,
    new_tokens: int,
    batch: int = 1,
    *,
    mode: str = "auto",
    cache: str | None = None,
    handlers: Handlers = None,
    elementwise: bool = False,
    options: Mapping[str, Any] | None = None,
    metrics: tuple[str, ...] = METRICS,
    ancestor_mode: str = "owner",
    strict: bool = False,
    warn_unsupported: bool = True,
    trace_every_step: bool = False,
    cache_fill: str = "direct",
) -> Generation:
    """What ``model.generate(prompt, max_new_tokens=new_tokens)`` costs, greedy, for a batch of
    `batch` prompts of `prompt_tokens` tokens: the prefill and every decode step, through the
    model's own cache.

    The model is a Hugging Face model with a language-model head (decoder-only, or
    encoder-decoder: then the prompt is the encoder's input and the decoder starts from its start
    token). It runs as `analyze` runs it (`mode`, on fake tensors by default; a model built on the
    meta device in ``"meta"`` mode), a few decode steps only: see the module's docstring for how
    the others are derived, exactly. `trace_every_step` traces them all instead.

    :param cache_fill: how a traced decode step's cache gets the tokens it holds, unrecorded:
        ``"direct"`` puts keys and values of the shapes the prefill cached into each layer through
        the cache's own ``update`` (what the model's prefill over those tokens leaves); ``"model"``
        runs the model's prefill over them (slower), which is also what ``"direct"`` falls back
        to for caches other than plain attention layers (encoder-decoder, linear attention).
    :param cache: ``"dynamic"`` (``DynamicCache``, sliding-window layers where the configuration
        has them) or ``"static"`` (``StaticCache``); default: what the model's
        ``generation_config.cache_implementation`` asks for, else dynamic.
    Other arguments as for `analyze`.
    """
    check_mode(mode)
    _check_arguments(model, prompt_tokens, new_tokens, batch)
    cache = _cache_kind(model, cache)
    if cache_fill not in FILLS:
        raise ValueError(
            f"cache_fill must be 'direct' (the cache's own update, the default) or 'model' (the "
            f"model's prefill over the cached tokens), got {cache_fill!r}"
        )
    steps = _Steps(model, prompt_tokens, new_tokens, batch, cache, cache_fill)
    count_options = CountOptions(elementwise=elementwise, extra=with_routing(model, options))
    registry = registry_with(handlers, strict=strict)

    def run(setup: Callable[..., Any]) -> Analysis:
        recorded = trace_call(model, (), {}, mode=mode, setup=setup)
        recorded = replace(recorded, input_shapes=((), steps.describe_inputs()))
        with gc_paused():
            return Analysis(
                trace=recorded,
                registry=registry,
                options=count_options,
                ancestor_mode=ancestor_mode,
                metrics=tuple(metrics),
                strict=strict,
            )

    prefill = run(steps.prefill)
    steps.learn_layout(steps.last_cache)
    traced: dict[int, Analysis] = {}
    signatures: dict[int, tuple[list[Any], list[int]]] = {}
    values: dict[int, dict[Key, int]] = {}
    kv_bytes = [0]

    def sample(step: int) -> None:
        if step in traced:
            return
        traced[step] = run(steps.step(step))
        signatures[step] = _signature(traced[step].trace)
        values[step] = flatten(traced[step])
        if step == new_tokens - 1:
            kv_bytes[0] = _tensor_bytes(cache_tensors(steps.last_cache))
        steps.last_cache = None

    segments: list[Segment] = []

    def exact(step: int) -> None:
        sample(step)
        segments.append(Segment(step, step, (step,), values[step], {}))

    def settle(first: int, last: int) -> None:
        if trace_every_step or last - first < 3:
            for step in range(first, last + 1):
                exact(step)
            return
        middle = (first + last) // 2
        points = (first, middle, last)
        for step in points:
            sample(step)
        line = None
        if _same_shape_rule([(s, signatures[s]) for s in points]):
            line = _line([(s, values[s]) for s in points])
        if line is None:
            settle(first, middle)
            settle(middle + 1, last)
            return
        start, slope = line
        segments.append(Segment(first, last, points, start, slope))

    last = new_tokens - 1
    if last >= 1:
        bounds = [1, *_breakpoints(model, steps.base(), last), last + 1]
        for lo, hi in itertools.pairwise(bounds):
            if lo < hi:
                settle(lo, hi - 1)
        segments.sort(key=lambda s: s.first)
    else:
        kv_bytes[0] = _tensor_bytes(cache_tensors(steps.last_cache))
    steps.last_cache = None
    # the prefill's cache: the run's cache when there is no decode step
    modules = tuple(prefill.modules)
    decode_values = _sum(*(s.summed() for s in segments))
    decode = Tally(MappingProxyType(decode_values), modules, prefill.metrics)
    whole = Tally(MappingProxyType(_sum(flatten(prefill), decode_values)), modules, prefill.metrics)
    result = Generation(
        prefill=prefill,
        decode=decode,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        batch=batch,
        cache=cache,
        segments=tuple(segments),
        kv_cache_bytes=kv_bytes[0],
        weight_bytes=_tensor_bytes(list(_unique(model.parameters()))),
        params=sum(p.numel() for p in _unique(model.parameters())),
        active_params=active_parameters(model),
        model_name=type(model).__name__,
        encoder_decoder=steps.encoder_decoder,
        _steps=traced,
        _retrace=lambda step: run(steps.step(step)),
        _whole=whole,
    )
    if warn_unsupported:
        log_unsupported(prefill)
    return result


def _unique(tensors: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    seen: set[int] = set()
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            yield t


def _check_arguments(model: nn.Module, prompt_tokens: int, new_tokens: int, batch: int) -> None:
    for name, value in (
        ("prompt_tokens", prompt_tokens),
        ("new_tokens", new_tokens),
        ("batch", batch),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a Hugging Face model (an nn.Module), got {type(model).__name__}")
    if not hasattr(model, "prepare_inputs_for_generation") or not hasattr(model, "config"):
        raise TypeError(
            f"{type(model).__name__} is not a Hugging Face model that generates (it has no "
            "prepare_inputs_for_generation): use a transformers class with a language-model "
            "head, e.g. LlamaForCausalLM or T5ForConditionalGeneration, or analyze() for one "
            "forward pass"
        )
    config = model.config
    main_input = getattr(model, "main_input_name", "input_ids")
    if getattr(config, "is_encoder_decoder", False) and main_input != "input_ids":
        raise TypeError(
            f"{type(model).__name__} encodes {main_input}, not token ids: generation() counts "
            "text models (decoder-only, or encoder-decoder with a text encoder such as T5 or "
            "BART); analyze() its forward pass instead"
        )
    try:
        import transformers  # noqa: F401
    except ImportError as error:  # pragma: no cover - a transformers model implies it
        raise ImportError("generation() needs transformers: pip install transformers") from error


def _cache_kind(model: nn.Module, cache: str | None) -> str:
    if cache is None:
        config = getattr(model, "generation_config", None)
        wanted = getattr(config, "cache_implementation", None)
        cache = (
            "static"
            if wanted in ("static", "hybrid", "sliding_window", "hybrid_chunked")
            else "dynamic"
        )
    if cache not in CACHES:
        raise ValueError(
            f"cache must be 'dynamic' (DynamicCache, the default of generate) or 'static' "
            f"(StaticCache), got {cache!r}"
        )
    return cache


def _breakpoints(model: nn.Module, base: int, last: int) -> list[int]:
    """Steps where a window or chunk size of the configuration may change a step's shapes: each
    starts a segment (the checks find any others)."""
    config: Any = model.config
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    sizes: set[tuple[str, int]] = set()
    for key in _WINDOW_KEYS:
        value = getattr(text, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            sizes.add((key, value))
    starts: set[int] = set()
    for key, size in sizes:
        multiples = range(size, base + last + 2, size) if key in _PERIODIC_KEYS else (size,)
        for boundary in multiples:
            # the step whose cache first holds boundary - 1 tokens (a sliding-window cache keeps
            # that many), and the step after it, the first to attend to more than the window
            for offset in (0, 1):
                step = boundary - base + offset
                if 1 < step <= last:
                    starts.add(step)
            if len(starts) > _MAX_BREAKPOINTS:
                break
    return sorted(starts)


# --- a training step against the 6N rule --------------------------------------------------------

# Operators whose count is a weight's elements times the tokens (matmuls of every kind).
MATMUL_OPERATORS = frozenset(
    {
        "linear",
        "addmm",
        "mm",
        "bmm",
        "baddbmm",
        "addbmm",
        "matmul",
        "einsum",
        "mv",
        "addmv",
        "conv",
        "_grouped_mm",
        "_scaled_grouped_mm",
    }
)
ATTENTION_OPERATOR = "scaled_dot_product_attention"


@dataclass(frozen=True)
class TrainingStep:
    """A training step of a language model (forward and backward over `tokens` tokens) against
    the rule of thumb that it costs 6N FLOPs per token (2 per multiply-add, so 3N in torchtally's
    unit: N forward, 2N backward), and PaLM's attention term ``12 * L * H * Q * T`` FLOPs (6 in
    torchtally's unit) for L layers of H heads of size Q over T tokens.

    `analysis` is the counted step (``backward=True``). The counted flops split into matmuls,
    attention and the rest; the matmuls are 3x the parameters a token multiplies, which is N less
    what no multiply-add uses: embedding lookups, norm scales, biases (element-wise), and the
    routed experts a token skips."""

    analysis: Analysis
    tokens: int
    seq_len: int
    params: int
    active_params: int
    embedding_params: int  # looked up only (an embedding not tied to a matmul's weight)
    layers: int | None
    heads: int | None
    head_dim: int | None
    dtype: torch.dtype = torch.float32  # the model's (its first floating-point parameter's)
    measured_seconds: float | None = None  # one real step's time, with measure=True
    measured_on: str | None = None

    def _split(self) -> dict[str, int]:
        parts = {"matmul": 0, "attention": 0, "other": 0}
        for op, value in self.analysis.by_operator().items():
            if op in MATMUL_OPERATORS:
                parts["matmul"] += value
            elif op == ATTENTION_OPERATOR:
                parts["attention"] += value
            else:
                parts["other"] += value
        return parts

    def comparison(self) -> dict[str, float]:
        """Per token, in torchtally's unit (one multiply-add is one flop)."""
        parts = self._split()
        forward_matmul = sum(
            v
            for op, v in self.analysis.by_operator(phase="forward").items()
            if op in MATMUL_OPERATORS
        )
        multiplied = forward_matmul / self.tokens
        rule = 3 * self.active_params
        attention_rule = (
            6 * self.layers * self.heads * self.head_dim * self.seq_len
            if self.layers and self.heads and self.head_dim
            else None
        )
        result: dict[str, float] = {
            "flops_per_token": self.analysis.total() / self.tokens,
            "forward_per_token": self.analysis.total(phase="forward") / self.tokens,
            "backward_per_token": self.analysis.total(phase="backward") / self.tokens,
            "rule_6n": rule,
            "matmul_per_token": parts["matmul"] / self.tokens,
            "attention_per_token": parts["attention"] / self.tokens,
            "other_per_token": parts["other"] / self.tokens,
            "params_multiplied_per_token": multiplied,
            "embedding_params": self.embedding_params,
            "other_params_not_multiplied": self.active_params - self.embedding_params - multiplied,
        }
        if attention_rule is not None:
            result["rule_attention"] = attention_rule
            result["rule_6n_with_attention"] = rule + attention_rule
        return result

    def mfu(
        self, hardware: Any, seconds: float | None = None, dtype: Any = None
    ) -> dict[str, float]:
        """Model FLOPs utilisation of a step that took `seconds` (default: the measured step's)
        on `hardware` (a `Hardware`, or a name): the FLOP/s achieved over the device's dense
        matrix peak for `dtype` (default:
        the dtype of the model's first floating-point parameter), with FLOPs at 2 per
        multiply-add as vendors count them. ``counted`` uses this step's count, ``rule_6n`` and
        ``rule_6n_with_attention`` the rules' (PaLM's MFU is the last)."""
        from torchtally.api import hardware as find

        device = find(hardware) if isinstance(hardware, str) else hardware
        if seconds is None:
            seconds = self.measured_seconds
        if seconds is None:
            raise ValueError("no step time: pass seconds=, or count with measure=True")
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds!r}")
        if dtype is None:
            dtype = self.dtype
        peak = device.rate(dtype, True).flops
        c = self.comparison()
        result = {"counted": 2 * self.analysis.total() / seconds / peak}
        result["rule_6n"] = 2 * c["rule_6n"] * self.tokens / seconds / peak
        if "rule_6n_with_attention" in c:
            result["rule_6n_with_attention"] = (
                2 * c["rule_6n_with_attention"] * self.tokens / seconds / peak
            )
        return result

    def explain(self, units: str = "human") -> str:
        """The comparison in words: what was counted, the rule, and each reason they differ."""
        fmt = _formatter(units)
        c = self.comparison()
        routed = self.active_params != self.params
        n_name = "active parameters" if routed else "parameters"
        lines = [
            f"Training step, {self.tokens} tokens: {fmt(c['flops_per_token'])} flops per token "
            f"(forward {fmt(c['forward_per_token'])}, backward {fmt(c['backward_per_token'])}; "
            "one multiply-add is one flop)",
            f"6N rule: {fmt(c['rule_6n'])} per token (6N FLOPs at 2 per multiply-add is 3N; "
            f"N = {fmt(self.active_params)} {n_name})",
        ]
        if "rule_attention" in c:
            lines.append(
                f"6N + attention (PaLM's 12*L*H*Q*T FLOPs, 6*L*H*Q*T here, L={self.layers} "
                f"H={self.heads} Q={self.head_dim} T={self.seq_len}): "
                f"{fmt(c['rule_6n_with_attention'])} per token"
            )
        lines.append("Why the count differs from 6N:")
        lines.append(
            f"- matmuls {fmt(c['matmul_per_token'])} per token: each weight a token multiplies "
            f"costs 3 (forward, and the gradients of input and weight); a token multiplies "
            f"{fmt(c['params_multiplied_per_token'])} of the {fmt(self.active_params)} "
            f"{n_name}. The rest do no multiply-add: {fmt(self.embedding_params)} in embeddings "
            f"(looked up) and {fmt(c['other_params_not_multiplied'])} others (norm scales, "
            "biases: element-wise)"
        )
        if routed:
            lines.append(
                f"- mixture of experts: N is the {fmt(self.active_params)} parameters a token runs "
                f"through, of {fmt(self.params)} (the routed experts it skips do nothing)"
            )
        if c["attention_per_token"]:
            lines.append(
                f"- attention {fmt(c['attention_per_token'])} per token, which 6N leaves out: "
                f"Q K^T and P V over all {self.seq_len} keys of every query (the full square, as "
                "in PaLM's term; a causal flash kernel computes about half of it)"
            )
        if c["other_per_token"]:
            lines.append(
                f"- other counted ops {fmt(c['other_per_token'])} per token (norms and such; "
                "element-wise ops only with elementwise=True)"
            )
        return "\n".join(lines)


def training_step(
    model: nn.Module,
    seq_len: int,
    batch: int = 1,
    *,
    mode: str = "auto",
    measure: bool = False,
    measure_repeats: int = 5,
    **options: Any,
) -> TrainingStep:
    """Count one training step of a Hugging Face language model on `batch` sequences of
    `seq_len` tokens (the model's own loss on its inputs as labels) and compare it with the 6N
    rule (see `TrainingStep`). `options` go to `analyze` (``elementwise``, ``options``, ...).

    With `measure`, the step (forward, loss and backward) also runs for real on the model's
    device, timed (`time_training_step`), so that `TrainingStep.mfu` has a time."""
    _check_arguments(model, seq_len, 1, batch)
    ids = torch.zeros(batch, seq_len, dtype=torch.long, device=_device(model))
    inputs: dict[str, Any] = {"input_ids": ids, "labels": ids}
    if _accepts(model, "use_cache"):
        inputs["use_cache"] = False
    from torchtally.api import analyze

    options["options"] = with_routing(model, options.get("options"))
    analysis = analyze(model, inputs, mode=mode, backward=True, loss_fn=_loss, **options)
    step = training_comparison(analysis, model, batch * seq_len, seq_len)
    if measure:
        seconds = time_training_step(model, inputs, _loss, repeats=measure_repeats)
        device = str(next(iter(model.parameters())).device)
        step = replace(step, measured_seconds=seconds, measured_on=device)
    return step


def sum_of_outputs(outputs: Any) -> torch.Tensor:
    """The sum of every floating-point output that has a gradient: what ``backward=True``
    differentiates without a ``loss_fn``."""
    from torchtally.records import iter_tensors

    parts = [t.float().sum() for t in iter_tensors(outputs) if t.is_floating_point() and t.grad_fn]
    if not parts:
        raise ValueError("the model's outputs have no floating-point tensor with a gradient")
    return torch.stack(parts).sum()


def _loss(outputs: Any) -> torch.Tensor:
    loss: torch.Tensor = outputs.loss
    return loss


def time_training_step(
    model: nn.Module,
    inputs: Mapping[str, Any],
    loss_fn: Callable[[Any], torch.Tensor],
    repeats: int = 5,
    warmup: int = 2,
) -> float:
    """The median time of `repeats` real training steps (forward, ``loss_fn``, backward) after
    `warmup` ones, synchronised on a GPU. The model is left as it was: gradients are set aside
    and put back, as when it is analysed."""
    from torchtally.state import preserve_model_state
    from torchtally.timing import _synchronizer, model_device

    if any(p.device.type == "meta" for p in model.parameters()):
        raise ValueError("measuring runs the model for real: build it with weights, not on meta")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"measuring needs repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    sync = _synchronizer(model_device(model, inputs))
    params = [p for p in model.parameters() if p.requires_grad]
    times = []
    with preserve_model_state(model), gc_paused():  # no optimizer: no weight is written
        for index in range(warmup + repeats):
            for p in params:
                p.grad = None
            sync()
            start = time.perf_counter()
            loss_fn(model(**inputs)).backward()
            sync()
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_comparison(
    analysis: Analysis, model: nn.Module, tokens: int, seq_len: int
) -> TrainingStep:
    """`TrainingStep` for an analysis with a backward pass of `model` over `tokens` tokens."""
    if "backward" not in analysis.phases:
        raise ValueError(
            "the 6N comparison needs a training step: analyse with backward=True (--backward)"
        )
    config: Any = getattr(model, "config", None)
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    heads = getattr(text, "num_attention_heads", None)
    hidden = getattr(text, "hidden_size", None)
    head_dim = getattr(text, "head_dim", None) or (hidden // heads if hidden and heads else None)
    return TrainingStep(
        analysis=analysis,
        tokens=tokens,
        seq_len=seq_len,
        params=sum(p.numel() for p in model.parameters()),
        active_params=active_parameters(model),
        embedding_params=_embedding_only(model),
        layers=getattr(text, "num_hidden_layers", None),
        heads=heads,
        head_dim=head_dim,
        dtype=next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32),
    )


def _embedding_only(model: nn.Module) -> int:
    """Parameters of embedding modules that no linear layer shares (a tied LM head multiplies)."""
    multiplied = {
        id(m.weight) for m in model.modules() if isinstance(m, nn.Linear) and m.weight is not None
    }
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            weight = module.weight
            if id(weight) not in multiplied and id(weight) not in seen:
                seen.add(id(weight))
                total += weight.numel()
    return total

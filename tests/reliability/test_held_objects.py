"""Issue 13, classes 8-10: what the model and its inputs hold comes back as it was (caches filled
in forward, containers at any depth, dataclasses, a Hugging Face ``Cache`` passed as input), in
every mode; and a model shared between threads is never corrupted by an analysis. Every case is
checked with `Snapshot` (everything reachable from the model and the inputs, by identity)."""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from reliability.helpers import MODES, Snapshot, unchanged_after
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

import torchtally

X = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))


def tally(model: nn.Module, inputs: Any = X, **options: Any) -> Any:
    options.setdefault("warn_unsupported", False)
    result = unchanged_after(lambda: torchtally.analyze(model, inputs, **options), model, inputs)
    assert not isinstance(result, Exception), result
    return result


# --- 8. caches and containers the forward fills -----------------------------------------------


@dataclass
class Stats:
    last: torch.Tensor | None = None
    history: list[torch.Tensor] = field(default_factory=list)
    calls: int = 0


class Slotted:
    __slots__ = ("cached", "count")

    def __init__(self) -> None:
        self.cached: torch.Tensor | None = None
        self.count = 0


class Cached(nn.Module):
    """Fills, in forward, the kind of cache `kind` names (as timm's attention_bias_cache, a
    running list, a dataclass of statistics...)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.kind = kind
        self.bias_cache: dict[str, torch.Tensor] = {}
        self.seen: list[torch.Tensor] = []
        self.stats = Stats()
        self.slotted = Slotted()
        self.deep: dict[str, Any] = {"a": [{"b": [{"c": [Stats()]}]}]}
        self.keys: set[str] = set()
        self.window: deque[torch.Tensor] = deque(maxlen=3)
        self.ordered: OrderedDict[str, torch.Tensor] = OrderedDict(first=torch.ones(2))
        self.counter = 0
        self.name = "cached"

    def cached_bias(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self.bias_cache:  # timm's pattern: computed once, reused forever
            self.bias_cache[key] = self.fc.bias * 2
        return self.bias_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        kind = self.kind
        if kind == "dict cache":
            y = y + self.cached_bias(x.device)
        elif kind == "list":
            self.seen.append(y)
        elif kind == "dataclass":
            self.stats.last = y
            self.stats.history.append(y)
            self.stats.calls += 1
        elif kind == "slots":
            self.slotted.cached = y
            self.slotted.count += 1
        elif kind == "deep":
            self.deep["a"][0]["b"][0]["c"][0].history.append(y)
            self.deep["a"][0]["b"].append({"new": y})
        elif kind == "set and deque":
            self.keys.add("seen")
            self.window.append(y)
        elif kind == "ordered dict":
            self.ordered.move_to_end("first")
            self.ordered["second"] = y
        elif kind == "plain values":
            self.counter += 1
            self.name = "changed"
        elif kind == "rebound":
            self.bias_cache = {"fresh": y}
            self.stats = Stats(last=y)
        elif kind == "tensor attribute":
            self.fc.weight.cached = y  # an attribute set on a parameter
        return y


KINDS = [
    "dict cache",
    "list",
    "dataclass",
    "slots",
    "deep",
    "set and deque",
    "ordered dict",
    "plain values",
    "rebound",
    "tensor attribute",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_caches_filled_in_forward_are_put_back(mode: str, kind: str) -> None:
    torch.manual_seed(0)
    model = Cached(kind)
    torch.manual_seed(0)
    twin = Cached(kind)
    tally(model, mode=mode)
    out = model(X)  # a plain forward afterwards: real tensors, as from an untouched model
    assert not isinstance(out, FakeTensor)
    assert torch.equal(out, twin(X))


def test_a_cache_shared_by_two_modules_is_put_back() -> None:
    shared: dict[str, torch.Tensor] = {}

    class User(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.cache = shared

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.cache.setdefault("w", self.fc.weight.t() * 1)
            return x @ self.cache["w"]

    model = nn.Sequential(User(), User())
    for mode in MODES:
        tally(model, mode=mode)
        assert shared == {}


TIMM_MODELS = ["levit_128s", "efficientvit_m0", "tiny_vit_5m_224", "efficientformerv2_s0"]


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM_MODELS)
def test_timm_attention_bias_caches_hold_no_fakes(name: str) -> None:
    """timm fills attention_bias_cache in forward; after `analyze` (auto: fake tensors) a plain
    forward returns real tensors, equal to those before."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
    analysis = tally(model, x)
    assert analysis.mode == "fake" and analysis.total() > 0
    with torch.no_grad():
        after = model(x)
    assert type(after) is torch.Tensor and torch.equal(after, before)


# --- 9. inputs ---------------------------------------------------------------------------------


@dataclass
class Carry:
    step: int = 0
    states: list[torch.Tensor] = field(default_factory=list)


class InputMutator(nn.Module):
    """Changes its inputs the way `how` says."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.how = how

    def forward(self, x: Any, extra: Any = None) -> torch.Tensor:
        how = self.how
        if how == "list appended":
            x.append(self.fc(x[0]))
            return x[-1]
        if how == "dict changed":
            x["added"] = self.fc(x["x"])
            x.pop("other")
            return x["added"]
        if how == "tensor written":
            x.mul_(2)
            return self.fc(x)
        if how == "tensor rebound":
            y = self.fc(x)
            x.data = torch.zeros(7)
            x.requires_grad_(False)
            return y
        if how == "object":
            extra.step += 1
            extra.states.append(self.fc(x))
            return extra.states[-1]
        if how == "nested":
            x[0]["inner"][0].append(x[0]["inner"][0][0] * 2)
            x[1].clear()
            return self.fc(x[0]["inner"][0][0])
        raise AssertionError(how)


def _inputs(how: str) -> Any:
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(3))
    if how == "list appended":
        return ([x],)
    if how == "dict changed":
        return ({"x": x, "other": 1},)
    if how in ("tensor written", "tensor rebound"):
        return (x.clone().requires_grad_(how == "tensor rebound"),)
    if how == "object":
        return {"x": x, "extra": Carry()}
    if how == "nested":
        return (({"inner": [[x]]}, [x, x]),)
    raise AssertionError(how)


INPUT_CHANGES = [
    "list appended",
    "dict changed",
    "tensor written",
    "tensor rebound",
    "object",
    "nested",
]


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("how", INPUT_CHANGES)
@pytest.mark.parametrize("mode", MODES)
def test_inputs_come_back_as_they_went_in(mode: str, how: str, backward: bool) -> None:
    if backward and how in ("dict changed", "nested", "tensor rebound"):
        pytest.skip("forward only")
    tally(InputMutator(how), _inputs(how), mode=mode, backward=backward)


def _llama() -> tuple[nn.Module, Any]:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    return model, config


@pytest.mark.parametrize("mode", MODES)
def test_a_hugging_face_cache_input_comes_back_as_it_was(mode: str) -> None:
    transformers = pytest.importorskip("transformers")
    model, config = _llama()
    prompt = torch.randint(0, 100, (1, 5), generator=torch.Generator().manual_seed(0))
    token = torch.randint(0, 100, (1, 1), generator=torch.Generator().manual_seed(1))
    cache = transformers.DynamicCache(config=config)
    with torch.no_grad():
        model(input_ids=prompt, past_key_values=cache, use_cache=True)
        before = model(input_ids=token, past_key_values=copy.deepcopy(cache)).logits
    if mode == "meta":
        with torch.device("meta"):
            model = transformers.LlamaForCausalLM(config).eval()
    analysis = tally(model, {"input_ids": token, "past_key_values": cache}, mode=mode)
    assert analysis.total() > 0
    assert cache.get_seq_length() == 5
    held = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    assert all(type(t) is torch.Tensor for t in held)
    if mode != "meta":
        with torch.no_grad():
            after = model(input_ids=token, past_key_values=cache).logits
        assert torch.equal(after, before)


# --- 10. threads -------------------------------------------------------------------------------


class Slow(nn.Module):
    """Training-mode batch norm with a forward that takes a while (threads overlap)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.hits: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.hits.append(1)
        time.sleep(0.05)
        return self.bn(self.fc(x))


def _in_threads(count: int, work: Any) -> list[Any]:
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as error:  # reported to the test
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.parametrize("mode", ["real", "fake", "auto"])
def test_concurrent_analyses_of_one_model_are_safe(mode: str) -> None:
    model = Slow().train()
    x = torch.randn(3, 4)
    before = Snapshot.take(model, x)
    results = _in_threads(
        4,
        lambda i: torchtally.analyze(
            model, x, mode=mode, backward=i % 2 == 1, warn_unsupported=False
        ),
    )
    expected = 3 * 4 * 4 + 5 * 3 * 4
    assert [r.total(phase="forward") for r in results] == [expected] * 4, results
    before.assert_unchanged()


def test_concurrent_analyses_of_different_models_are_safe() -> None:
    models = [Slow().train(), nn.Sequential(Slow(), nn.Linear(4, 2)).train()]
    x = torch.randn(3, 4)
    befores = [Snapshot.take(m, x) for m in models]
    results = _in_threads(
        4, lambda i: torchtally.analyze(models[i % 2], x, mode="fake", warn_unsupported=False)
    )
    assert [r.total() for r in results] == [108, 132, 108, 132], results
    for before in befores:
        before.assert_unchanged()


class Waiting(nn.Module):
    """Its forward signals that it started, then waits for the other thread."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.started = threading.Event()
        self.proceed = threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.started.is_set():
            self.started.set()
            self.proceed.wait(10)
        return self.bn(self.fc(x))


@pytest.mark.parametrize("mode", ["real", "fake"])
@pytest.mark.parametrize("call", ["model", "submodule"])
def test_running_the_model_in_another_thread_during_an_analysis_is_refused(
    mode: str, call: str
) -> None:
    model = Waiting().train()
    x = torch.randn(3, 4)
    before = Snapshot.take(model, x)
    outcome: list[Any] = []

    def train_step() -> None:
        model.started.wait(10)
        try:
            out = (model if call == "model" else model.fc)(x)
            outcome.append(type(out))
        except RuntimeError as error:
            outcome.append(error)
        finally:
            model.proceed.set()

    other = threading.Thread(target=train_step)
    other.start()
    analysis = torchtally.analyze(model, x, mode=mode, warn_unsupported=False)
    other.join(10)
    assert analysis.total() == 3 * 4 * 4 + 5 * 3 * 4
    (error,) = outcome
    assert isinstance(error, torchtally.AnalysisError), error
    assert "torchtally is analysing in another thread" in str(error)
    model.started.clear()
    model.proceed.clear()
    before.assert_unchanged()
    assert type(model(x)) is torch.Tensor  # after the analysis the other thread may run it


def test_an_analysis_inside_an_analysis_is_refused() -> None:
    class Nested(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torchtally.analyze(self.fc, x)
            return self.fc(x)

    model = Nested()
    error = unchanged_after(lambda: torchtally.analyze(model, X, mode="real"), model, X)
    assert isinstance(error, torchtally.TraceError)
    assert isinstance(error.__cause__, torchtally.AnalysisError)
    assert "analyses cannot nest" in str(error)

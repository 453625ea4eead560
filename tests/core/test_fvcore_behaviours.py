"""fvcore's behaviours, reproduced by torchtally's compat API, on small hand-built models.

Every expected number is computed by hand in the test (a Linear(i, o) on a (b, i) input costs
b * i * o flops and gives b * o activations). Where fvcore runs on the same model, its answer is
asserted too, so each test also shows that the behaviour is fvcore's.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

import torchtally as tt

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
fv = pytest.importorskip("fvcore.nn")
mm = pytest.importorskip("mmengine.analysis")

TT_LOGGER = "torchtally"


def ours(model: nn.Module, inputs: Any, mode: str = "owner") -> tt.FlopAnalyzer:
    analyzer = tt.FlopAnalyzer(model, inputs).ancestor_mode(mode)
    return analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def theirs(model: nn.Module, inputs: Any, mode: str = "owner") -> fv.FlopCountAnalysis:
    analyzer = fv.FlopCountAnalysis(model, inputs).ancestor_mode(mode)
    return analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def ours_acts(model: nn.Module, inputs: Any) -> tt.ActivationAnalyzer:
    analyzer = tt.ActivationAnalyzer(model, inputs)
    return analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def theirs_acts(model: nn.Module, inputs: Any) -> fv.ActivationCountAnalysis:
    analyzer = fv.ActivationCountAnalysis(model, inputs)
    return analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == TT_LOGGER]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- fvcore's own docstring example ------------------------------------------------------------


class DocModel(nn.Module):
    """The model of FlopCountAnalysis' and ActivationCountAnalysis' docstrings."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features=1000, out_features=10)
        self.conv = nn.Conv2d(in_channels=3, out_channels=10, kernel_size=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).flatten(1))


def test_docstring_example_flops() -> None:
    inputs = (torch.randn((1, 3, 10, 10)),)
    flops = ours(DocModel(), inputs)
    assert flops.total() == 13000
    assert flops.total("fc") == 10000
    # (the docstring predates aten::linear in traces and says "addmm"; fvcore now says "linear")
    assert flops.by_operator() == Counter({"linear": 10000, "conv": 3000})
    assert flops.by_module() == Counter({"": 13000, "fc": 10000, "conv": 3000, "act": 0})
    expected = {
        "": {"linear": 10000, "conv": 3000},
        "fc": {"linear": 10000},
        "conv": {"conv": 3000},
        "act": {},
    }
    assert {k: dict(v) for k, v in flops.by_module_and_operator().items()} == expected
    found = theirs(DocModel(), inputs).by_module_and_operator()
    assert {k: dict(v) for k, v in found.items()} == expected


def test_docstring_example_activations() -> None:
    inputs = (torch.randn((1, 3, 10, 10)),)
    acts = ours_acts(DocModel(), inputs)
    assert acts.total() == 1010
    assert acts.total("fc") == 10
    assert acts.by_module() == Counter({"": 1010, "fc": 10, "conv": 1000, "act": 0})
    expected = {"": {"conv": 1000, "linear": 10}, "fc": {"linear": 10}, "conv": {"conv": 1000}}
    found = theirs_acts(DocModel(), inputs).by_module_and_operator()
    assert {k: dict(v) for k, v in found.items()} == {**expected, "act": {}}
    # fvcore's docstring: `"act" : Counter()`. The ReLU has no activations, so no operator.
    assert {k: dict(v) for k, v in acts.by_module_and_operator().items()} == {
        **expected,
        "act": {},
    }


def test_operators_that_count_nothing_are_not_keys() -> None:
    # fvcore adds each op's count with `Counter +=`, which drops counts of 0: an operator whose
    # handler gave 0 never becomes a key of by_operator() or by_module_and_operator().
    model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())
    inputs = (torch.randn(2, 4),)
    assert list(theirs_acts(model, inputs).by_operator()) == ["linear"]
    assert list(ours_acts(model, inputs).by_operator()) == ["linear"]
    assert dict(ours_acts(model, inputs).by_module_and_operator()["1"]) == {}

    zero_theirs = theirs(model, inputs).set_op_handle("aten::linear", lambda i, o: 0)
    assert dict(zero_theirs.by_operator()) == {}
    zero_ours = ours(model, inputs).set_op_handle("aten::addmm", lambda call: 0)
    assert dict(zero_ours.by_operator()) == {}


# --- module hierarchy --------------------------------------------------------------------------


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.inner = nn.Sequential(nn.Linear(8, 6), nn.Sequential(nn.Linear(6, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.a(x))


def test_nested_modules() -> None:
    inputs = (torch.randn(3, 4),)
    # a: 3*4*8 = 96, inner.0: 3*8*6 = 144, inner.1.0: 3*6*2 = 36
    expected = {"": 276, "a": 96, "inner": 180, "inner.0": 144, "inner.1": 36, "inner.1.0": 36}
    flops = ours(Nested(), inputs)
    assert dict(flops.by_module()) == expected
    assert list(flops.by_module()) == list(expected)  # named_modules() order
    assert flops.total() == 276
    assert flops.total("inner.1") == 36
    assert flops.by_operator("inner") == {"linear": 180}
    assert dict(theirs(Nested(), inputs).by_module()) == expected
    # activations: 3*8, 3*6, 3*2
    acts = ours_acts(Nested(), inputs)
    assert dict(acts.by_module()) == {
        "": 48,
        "a": 24,
        "inner": 24,
        "inner.0": 18,
        "inner.1": 6,
        "inner.1.0": 6,
    }
    assert flops.uncalled_modules() == set()
    with pytest.raises(KeyError):
        flops.total("nope")
    with pytest.raises(KeyError):
        theirs(Nested(), inputs).total("nope")


class Repeated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = self.block(x)
        return x


@pytest.mark.parametrize("mode", ["owner", "caller"])
def test_module_called_several_times_accumulates(mode: str) -> None:
    inputs = (torch.randn(2, 4),)
    expected = {"": 3 * 32, "block": 3 * 32}  # three calls of 2*4*4
    assert dict(ours(Repeated(), inputs, mode).by_module()) == expected
    assert dict(theirs(Repeated(), inputs, mode).by_module()) == expected
    assert dict(ours_acts(Repeated(), inputs).by_module()) == {"": 3 * 8, "block": 3 * 8}


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = self.a  # one module, two names
        self.c = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(x) + self.a(x))


def test_shared_module_reported_under_its_first_name() -> None:
    inputs = (torch.randn(2, 4),)
    flops = ours(Shared(), inputs)
    # a (alias b) runs twice: 2 * (2*4*3) = 48; c: 2*3*2 = 12
    expected = {"": 60, "a": 48, "c": 12}
    assert dict(flops.by_module()) == expected
    assert list(flops.by_module_and_operator()) == ["", "a", "c"]  # "b" is not listed
    assert dict(theirs(Shared(), inputs).by_module()) == expected
    assert flops.canonical_module_name("b") == "a"
    assert flops.canonical_module_name("a") == "a"
    assert flops.total("b") == 48 == flops.total("a")
    assert flops.by_operator("b") == {"linear": 48}
    assert flops.total() == flops.total("a") + flops.total("c")  # never counted twice
    assert dict(flops.unsupported_ops("b")) == {}
    assert dict(flops.unsupported_ops()) == {"aten::add": 1}
    assert flops.analysis.modules["a"].aliases == ("b",)
    assert theirs(Shared(), inputs).canonical_module_name("b") == "a"
    with pytest.raises(TypeError):
        flops.canonical_module_name(Shared().a)  # type: ignore[arg-type]


class TwoParents(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(4, 4)
        self.p1 = nn.Sequential(shared)
        self.p2 = nn.Sequential(shared, nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.p2(self.p1(x))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # owner: the shared module belongs to its first parent only, whoever calls it
        ("owner", {"": 120, "p1": 96, "p1.0": 96, "p2": 24, "p2.1": 24}),
        # caller: each call counts for the modules that were running it
        ("caller", {"": 120, "p1": 48, "p1.0": 96, "p2": 72, "p2.1": 24}),
    ],
)
def test_shared_module_with_two_parents(mode: str, expected: dict[str, int]) -> None:
    inputs = (torch.randn(3, 4),)  # shared: 3*4*4 = 48 per call; p2.1: 3*4*2 = 24
    flops = ours(TwoParents(), inputs, mode)
    assert dict(flops.by_module()) == expected
    assert flops.total("p2.0") == 96  # the alias
    assert dict(theirs(TwoParents(), inputs, mode).by_module()) == expected


# --- uncalled modules, .forward(), ancestor mode -----------------------------------------------


class WithLists(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(5, 5), nn.Linear(5, 5)])
        self.spare = nn.ModuleList([nn.Linear(5, 5)])
        self.unused = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


@pytest.mark.parametrize(
    ("mode", "uncalled", "layers"),
    [
        # owner: a ModuleList is never called, but it is the parent of called modules
        ("owner", {"spare", "spare.0", "unused"}, 100),
        # caller: only modules whose __call__ ran count as called
        ("caller", {"layers", "spare", "spare.0", "unused"}, 0),
    ],
)
def test_uncalled_modules_and_module_lists(
    mode: str, uncalled: set[str], layers: int, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = (torch.randn(2, 5),)
    flops = ours(WithLists(), inputs, mode)
    assert flops.uncalled_modules() == uncalled
    assert dict(flops.by_module()) == {
        "": 100,
        "layers": layers,
        "layers.0": 50,
        "layers.1": 50,
        "spare": 0,
        "spare.0": 0,
        "unused": 0,
    }
    fvcore = theirs(WithLists(), inputs, mode)
    assert fvcore.uncalled_modules() == uncalled
    assert dict(fvcore.by_module()) == dict(flops.by_module())

    # The warning names uncalled modules that have a forward: not the ModuleLists.
    with caplog.at_level(logging.WARNING, logger=TT_LOGGER):
        tt.FlopAnalyzer(WithLists(), inputs).ancestor_mode(mode).total()
    (message,) = records(caplog)
    assert message.endswith(": spare.0, unused")
    assert "\n" not in message


class Direct(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.other = nn.Linear(5, 5)
        self.sub = nn.Linear(5, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sub.forward(self.other(x))  # not through __call__


@pytest.mark.parametrize("mode", ["owner", "caller"])
def test_submodule_called_through_forward(mode: str) -> None:
    inputs = (torch.randn(2, 5),)
    flops = ours(Direct(), inputs, mode)
    # sub's 2*5*6 = 60 flops go to its caller, the root; sub itself shows 0 and is uncalled
    assert dict(flops.by_module()) == {"": 110, "other": 50, "sub": 0}
    assert flops.by_operator() == {"linear": 110}
    assert flops.uncalled_modules() == {"sub"}
    fvcore = theirs(Direct(), inputs, mode)
    assert dict(fvcore.by_module()) == {"": 110, "other": 50, "sub": 0}
    assert fvcore.uncalled_modules() == {"sub"}


class User(nn.Module):
    def __init__(self, target: nn.Module) -> None:
        super().__init__()
        self.target = [target]  # a reference, not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.target[0](x) * 2


class Siblings(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.owner = nn.Sequential(nn.Linear(4, 5))
        self.user = User(self.owner[0])  # calls its sibling's submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.user(x)


@pytest.mark.parametrize(
    ("mode", "expected", "uncalled"),
    [
        # "owner": an op belongs to the module running it and that module's parents by name
        ("owner", {"": 40, "owner": 40, "owner.0": 40, "user": 0}, set()),
        # "caller": it belongs to every module whose forward is running
        ("caller", {"": 40, "owner": 0, "owner.0": 40, "user": 40}, {"owner"}),
    ],
)
def test_ancestor_mode(mode: str, expected: dict[str, int], uncalled: set[str]) -> None:
    inputs = (torch.randn(2, 4),)  # owner.0: 2*4*5 = 40
    flops = ours(Siblings(), inputs, mode)
    assert dict(flops.by_module()) == expected
    assert flops.uncalled_modules() == uncalled
    # the multiplication by 2 runs in user's forward, in either mode
    assert {m: dict(flops.unsupported_ops(m)) for m in expected} == {
        "": {"aten::mul": 1},
        "owner": {},
        "owner.0": {},
        "user": {"aten::mul": 1},
    }
    fvcore = theirs(Siblings(), inputs, mode)
    assert dict(fvcore.by_module()) == expected
    assert fvcore.uncalled_modules() == uncalled
    # the native API gives the same, and recounting in the other mode matches a fresh analysis
    native = tt.analyze(Siblings(), inputs, ancestor_mode=mode, warn_unsupported=False)
    assert native.by_module() == expected
    other = "caller" if mode == "owner" else "owner"
    assert native.recount(ancestor_mode=other).by_module() == dict(
        ours(Siblings(), inputs, other).by_module()
    )


def test_ancestor_mode_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError):
        ours(Nested(), (torch.randn(3, 4),)).ancestor_mode("parent")
    with pytest.raises(ValueError):
        tt.analyze(Nested(), (torch.randn(3, 4),), ancestor_mode="parent")


def test_called_identity_is_not_uncalled() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Identity())
    inputs = (torch.randn(2, 4),)
    # Legitimate difference: fvcore finds called modules in the JIT graph, where an Identity
    # leaves no node, so it lists it as uncalled (its source notes that forward hooks would be
    # the proper way). torchtally sees the call through its module hooks.
    assert theirs(model, inputs).uncalled_modules() == {"1"}
    assert ours(model, inputs).uncalled_modules() == set()


# --- unsupported ops ---------------------------------------------------------------------------


class Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.sub = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.sub(x) * 2 * 3)


UNSUPPORTED = {
    "": {"aten::sigmoid": 1, "aten::mul": 2, "aten::exp": 1},
    "sub": {"aten::sigmoid": 1},
    "sub.0": {},
    "sub.1": {"aten::sigmoid": 1},
}


def test_unsupported_ops_per_module() -> None:
    inputs = (torch.randn(2, 4),)
    flops = ours(Unsupported(), inputs)
    assert {m: dict(flops.unsupported_ops(m)) for m in UNSUPPORTED} == UNSUPPORTED
    assert flops.total() == 2 * 4 * 4  # unsupported ops add nothing
    fvcore = theirs(Unsupported(), inputs)
    fvcore.total()  # fvcore's unsupported_ops() needs the analysis done first
    assert {m: dict(fvcore.unsupported_ops(m)) for m in UNSUPPORTED} == UNSUPPORTED
    native = tt.analyze(Unsupported(), inputs, warn_unsupported=False)
    assert {m: native.unsupported_ops(module=m) for m in UNSUPPORTED} == UNSUPPORTED


def test_unsupported_ops_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    inputs = (torch.randn(2, 4),)
    analyzer = tt.FlopAnalyzer(Unsupported(), inputs)
    with caplog.at_level(logging.WARNING, logger=TT_LOGGER):
        analyzer.total()
        analyzer.by_module()  # results are cached: no second round of warnings
    messages = records(caplog)
    assert len(messages) == 3
    for op, times in UNSUPPORTED[""].items():
        (line,) = [m for m in messages if f"{op} " in m]
        assert f"{times} time(s)" in line
        assert "\n" not in line
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == TT_LOGGER)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=TT_LOGGER):
        tt.analyze(Unsupported(), inputs)
    assert len(records(caplog)) == 3

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=TT_LOGGER):
        tt.FlopAnalyzer(Unsupported(), inputs).unsupported_ops_warnings(False).total()
        tt.analyze(Unsupported(), inputs, warn_unsupported=False)
    assert records(caplog) == []


# --- changing handlers -------------------------------------------------------------------------


_SHAPES: dict[int, list[list[tuple[int, ...]]]] = {}
_RECEIVED: dict[int, list[tuple[int, list[str]]]] = {}
_CALLS: dict[int, int] = {}  # outside the model: an analysis puts back what the model holds


class Counting(nn.Module):
    """Counts its forward calls, in a table outside the model."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    @property
    def calls(self) -> int:
        return _CALLS.get(id(self), 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _CALLS[id(self)] = self.calls + 1
        return torch.sigmoid(self.fc(x) * 2)


X = torch.randn(2, 4)  # fc: 2*4*3 = 24 flops, 6 activations; mul and sigmoid: 6 elements each


def test_setters_return_self() -> None:
    analyzer = tt.FlopAnalyzer(Counting(), X)
    assert analyzer.set_op_handle("aten::addmm", lambda call: 1) is analyzer
    assert analyzer.set_op_handle("aten::mm", None, "aten::bmm", None) is analyzer
    assert analyzer.clear_op_handles() is analyzer
    assert analyzer.ancestor_mode("caller") is analyzer
    assert analyzer.unsupported_ops_warnings(False) is analyzer
    assert analyzer.uncalled_modules_warnings(False) is analyzer
    assert analyzer.tracer_warnings("none") is analyzer
    with pytest.raises(TypeError):
        analyzer.set_op_handle("aten::addmm")  # not a pair
    with pytest.raises(ValueError):
        analyzer.tracer_warnings("some")


def test_custom_handler_replaces_builtin() -> None:
    model = Counting()
    seen = []

    def addmm(call: tt.OpCall) -> int:
        seen.append((call.op, call.arg("mat1").shape, call.arg("mat2").shape))
        return 1000

    flops = ours(model, X).set_op_handle("aten::addmm", addmm)
    assert flops.by_operator() == {"linear": 1000}  # named after the issuing function
    assert seen == [("aten::addmm", (2, 4), (4, 3))]
    # a handler may name its counts itself; keyword form, chained
    flops.set_op_handle(**{"aten::addmm": lambda call: {"dense": 7}}).set_op_handle(
        "aten::sigmoid", lambda call, options: 6 * call.output_tensors[0].numel
    )
    assert flops.by_operator() == {"dense": 7, "sigmoid": 36}
    assert dict(flops.unsupported_ops()) == {"aten::mul": 1}
    assert model.calls == 1


def test_none_ignores_an_op() -> None:
    flops = ours(Counting(), X)
    assert dict(flops.unsupported_ops()) == {"aten::mul": 1, "aten::sigmoid": 1}
    flops.set_op_handle("aten::sigmoid", None)
    assert flops.total() == 24
    assert dict(flops.unsupported_ops()) == {"aten::mul": 1}
    flops.set_op_handle("aten::addmm", None)  # a built-in one
    assert flops.total() == 0
    assert dict(flops.by_operator()) == {}
    assert dict(flops.unsupported_ops()) == {"aten::mul": 1}


def test_clear_op_handles() -> None:
    model = Counting()
    flops = ours(model, X).set_op_handle("aten::sigmoid", lambda call: 5)
    assert flops.total() == 24 + 5
    flops.clear_op_handles()
    assert flops.total() == 0
    # every op that does arithmetic is now unsupported; views (aten::t) stay ignored
    assert dict(flops.unsupported_ops()) == {"aten::addmm": 1, "aten::mul": 1, "aten::sigmoid": 1}
    flops.set_op_handle("aten::mul", lambda call: 3)
    assert flops.by_operator() == {"mul": 3}
    assert dict(flops.unsupported_ops()) == {"aten::addmm": 1, "aten::sigmoid": 1}
    assert model.calls == 1


def test_copy_keeps_handlers() -> None:
    def rows(call: tt.OpCall) -> int:
        return call.arg("mat1").shape[0]

    original = ours(Counting(), X).set_op_handle("aten::addmm", rows, "aten::sigmoid", None)
    assert original.total() == 2
    on_new_inputs = original.copy(new_inputs=(torch.randn(5, 4),))
    assert on_new_inputs.total() == 5
    assert dict(on_new_inputs.unsupported_ops()) == {"aten::mul": 1}
    other = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 3))
    on_new_model = original.copy(new_model=other)
    assert on_new_model.by_module() == {"": 4, "0": 2, "1": 2}
    assert type(on_new_model) is tt.FlopAnalyzer


def test_copy_is_independent_of_the_original() -> None:
    # fvcore's copy() hands its handlers to a new analysis: changing the copy's handlers leaves
    # the original alone.
    model = nn.Sequential(nn.Linear(4, 3))
    fv_original = theirs(model, X)
    fv_copy = fv_original.copy()
    fv_copy.set_op_handle("aten::linear", lambda i, o: 7)
    assert (fv_original.total(), fv_copy.total()) == (24, 7)

    original = ours(model, X)
    copy = original.copy()
    copy.set_op_handle("aten::addmm", lambda call: 7)
    assert copy.total() == 7
    assert original.total() == 24
    original.set_op_handle("aten::mm", None)
    assert copy.total() == 7
    assert original.total() == 24


def test_changing_handlers_does_not_rerun_the_model() -> None:
    model = Counting()
    flops = ours(model, X)
    assert flops.total() == 24
    flops.set_op_handle("aten::addmm", lambda call: 1)
    assert flops.total() == 1
    flops.set_op_handle("aten::addmm", None)
    assert flops.total() == 0
    flops.clear_op_handles().set_op_handle("aten::sigmoid", lambda call: 2)
    assert flops.by_module() == {"": 2, "fc": 0}
    flops.ancestor_mode("caller")
    assert flops.by_module_and_operator() == {"": {"sigmoid": 2}, "fc": {}}
    assert model.calls == 1

    acts = ours_acts(model, X)
    assert acts.total() == 6
    acts.set_op_handle("aten::addmm", lambda call: 100)
    assert acts.total() == 100
    assert model.calls == 2


def test_recount_does_not_rerun_the_model() -> None:
    model = Counting()
    analysis = tt.analyze(model, X, warn_unsupported=False)
    assert (analysis.total(), analysis.total("activations")) == (24, 6)
    handlers = tt.HandlerSet()
    handlers.add("flops", "aten::addmm", lambda call: 1)
    handlers.add("flops", "aten::sigmoid", lambda call: 2)
    recounted = analysis.recount(handlers)
    assert recounted.by_operator() == {"linear": 1, "sigmoid": 2}
    assert analysis.total() == 24  # the original analysis is unchanged
    elementwise = analysis.recount(elementwise=True)
    assert elementwise.by_operator()["mul"] == 6  # one flop per element
    assert elementwise.unsupported_ops() == {}
    caller = analysis.recount(ancestor_mode="caller")
    assert caller.by_module() == {"": 24, "fc": 24}
    assert model.calls == 1


@pytest.mark.parametrize("analyzer", [tt.FlopAnalyzer, tt.ActivationAnalyzer])
def test_composite_op_name_is_refused(analyzer: type[tt.FlopAnalyzer]) -> None:
    with pytest.raises(tt.CompositeOpError, match="aten::addmm"):
        analyzer(Counting(), X).set_op_handle("aten::linear", lambda call: 1)
    with pytest.raises(tt.CompositeOpError, match="aten::addmm"):
        tt.analyze(Counting(), X, handlers={"aten::linear": lambda call: 1})
    assert issubclass(tt.CompositeOpError, ValueError)


# --- inputs, outputs, train and eval mode ------------------------------------------------------


class KeywordOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    @property
    def received(self) -> list[tuple[int, list[str]]]:
        return _RECEIVED.setdefault(id(self), [])  # outside the model, as _CALLS

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        self.received.append((len(args), sorted(kwargs)))
        return self.fc(kwargs["x"]) * kwargs["y"]


def test_dict_inputs_are_keyword_arguments() -> None:
    x, y = torch.randn(2, 4), torch.randn(2, 3)
    model = KeywordOnly()
    assert ours(model, {"x": x, "y": y}).total() == 24
    assert ours_acts(model, {"x": x, "y": y}).total() == 6
    analysis = tt.analyze(model, {"x": x, "y": y}, warn_unsupported=False)
    assert analysis.total() == 24
    assert analysis.unsupported_ops() == {"aten::mul": 1}
    assert tt.analyze(model, kwargs={"x": x, "y": y}, warn_unsupported=False).total() == 24
    assert tt.analyze(model, {"x": x}, kwargs={"y": y}, warn_unsupported=False).total() == 24
    assert model.received == [(0, ["x", "y"])] * 5
    with pytest.raises(ValueError, match="x"):
        tt.analyze(model, {"x": x, "y": y}, kwargs={"x": x})


def test_positional_and_keyword_inputs_together() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, a: torch.Tensor, *, scale: torch.Tensor) -> torch.Tensor:
            return self.fc(a) * scale

    found = tt.analyze(
        Mixed(), (torch.randn(5, 4),), kwargs={"scale": torch.ones(1)}, warn_unsupported=False
    )
    assert found.total() == 5 * 4 * 3
    # one tensor is one positional argument
    assert ours(nn.Linear(4, 3), torch.randn(5, 4)).total() == 5 * 4 * 3


@dataclass
class Pair:
    first: torch.Tensor
    second: torch.Tensor


def _structure(kind: str, a: torch.Tensor, b: torch.Tensor) -> Any:
    return {
        "tuple": lambda: (a, b),
        "list": lambda: [a, b],
        "dict": lambda: {"a": a, "b": b},
        "dataclass": lambda: Pair(a, b),
        "nested": lambda: {"pair": Pair(a, b), "list": [(a,), {"b": b}]},
    }[kind]()


class Structured(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 3), "b": nn.Linear(4, 2)})

    def forward(self, x: torch.Tensor) -> Any:
        return _structure(self.kind, self.heads["a"](x), self.heads["b"](x))


class Wrapper(nn.Module):
    """Submodules with structured outputs inside a model with a plain output."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.inner = Structured(kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inner(x)
        return x


@pytest.mark.parametrize("kind", ["tuple", "list", "dict", "dataclass", "nested"])
def test_structured_outputs(kind: str) -> None:
    x = torch.randn(2, 4)  # heads: 2*4*3 + 2*4*2 = 40 flops, 6 + 4 activations
    for model, prefix in ((Structured(kind), ""), (Wrapper(kind), "inner.")):
        flops = ours(model, x)
        assert flops.total() == 40
        assert flops.total(prefix + "heads.a") == 24
        assert flops.total(prefix + "heads.b") == 16
        assert ours_acts(model, x).total() == 10
        assert tt.analyze(model, x).total("activations") == 10


class WithNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


@pytest.mark.parametrize(
    ("training", "bn", "unsupported"),
    [
        (False, 2 * 72, {}),  # eval: a precomputed scale and shift per element
        # train: statistics too, 5 per element; and `num_batches_tracked += 1`
        (True, 5 * 72, {"aten::add_": 1}),
    ],
)
def test_train_and_eval_mode(training: bool, bn: int, unsupported: dict[str, int]) -> None:
    model = WithNorm().train(training)
    x = torch.randn(2, 3, 3, 3)  # conv: 2 * (4*3) * 9 = 216; bn input: 2*4*9 = 72 elements
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flops = ours(model, x)
    expected = {
        "": {"conv": 216, "batch_norm": bn},
        "conv": {"conv": 216},
        "bn": {"batch_norm": bn},
    }
    assert {k: dict(v) for k, v in flops.by_module_and_operator().items()} == expected
    assert dict(flops.unsupported_ops()) == unsupported
    # the model is left as it was: mode, running statistics, num_batches_tracked
    assert model.training is training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    fvcore = theirs(model, x)
    assert {k: dict(v) for k, v in fvcore.by_module_and_operator().items()} == expected
    assert dict(fvcore.unsupported_ops()) == unsupported


def test_dropout_in_train_mode() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    # Legitimate difference: fvcore's trace shows aten::dropout, which it ignores; the dispatcher
    # sees what dropout computes, a random mask (no arithmetic), a scaling by 1 / (1 - p) and a
    # multiplication, which torchtally counts as element-wise ops (with elementwise=True).
    fvcore, flops = theirs(model, X), ours(model, X)
    assert flops.total() == fvcore.total() == 2 * 4 * 4
    assert dict(fvcore.unsupported_ops()) == {}
    assert dict(flops.unsupported_ops("1")) == {"aten::div_": 1, "aten::mul": 1}
    assert ours(model.eval(), X).unsupported_ops() == Counter()


# --- get_model_complexity_info -----------------------------------------------------------------


class Recording(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    @property
    def shapes(self) -> list[list[tuple[int, ...]]]:
        return _SHAPES.setdefault(id(self), [])  # outside the model, as _CALLS

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        self.shapes.append([tuple(x.shape) for x in xs])
        return self.fc(xs[0])


KEYS = [
    "flops",
    "flops_str",
    "activations",
    "activations_str",
    "params",
    "params_str",
    "out_table",
    "out_arch",
]


def _info(model: nn.Module, **kwargs: Any) -> dict[str, Any]:
    return tt.get_model_complexity_info(model, show_table=False, show_arch=False, **kwargs)


def test_complexity_info_keys_and_values() -> None:
    model = Recording()
    info = _info(model, input_shape=(4,))
    assert list(info) == KEYS
    assert model.shapes == [[(1, 4)]]  # batch size 1 prepended
    assert info == {
        "flops": 12,  # 1*4*3
        "flops_str": "12",
        "activations": 3,
        "activations_str": "3",
        "params": 15,
        "params_str": "15",
        "out_table": "",
        "out_arch": "",
    }
    assert info == mm.get_model_complexity_info(
        model, input_shape=(4,), show_table=False, show_arch=False
    )


def test_complexity_info_several_inputs() -> None:
    model = Recording()
    info = _info(model, input_shape=((4,), (2, 5)))
    assert model.shapes == [[(1, 4), (1, 2, 5)]]
    assert info["flops"] == 12
    x = torch.randn(6, 4)
    assert _info(model, inputs=x)["flops"] == 6 * 4 * 3
    assert _info(model, inputs=(x, torch.randn(1)))["flops"] == 6 * 4 * 3
    assert model.shapes[-2:] == [[(6, 4)], [(6, 4), (1,)]]


def test_complexity_info_strings() -> None:
    model = nn.Sequential(nn.Linear(1000, 1000), nn.Linear(1000, 10))
    info = _info(model, input_shape=(1000,))
    # 1e6 + 1e4 flops; 1010 activations; 1001000 + 10010 parameters
    assert (info["flops"], info["flops_str"]) == (1010000, "1.01M")
    assert (info["activations"], info["activations_str"]) == (1010, "1.01K")
    assert (info["params"], info["params_str"]) == (1011010, "1.011M")
    mm_info = mm.get_model_complexity_info(
        model, input_shape=(1000,), show_table=False, show_arch=False
    )
    assert info == mm_info


def test_complexity_info_needs_exactly_one_of_shape_and_inputs() -> None:
    with pytest.raises(ValueError):
        _info(Recording())
    with pytest.raises(ValueError):
        _info(Recording(), input_shape=(4,), inputs=torch.randn(1, 4))
    with pytest.raises(ValueError):
        _info(Recording(), input_shape=((4,), 5))


# --- the functional API ------------------------------------------------------------------------


def test_flop_count_returns_gflops_and_unsupported() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())
    gflops, unsupported = tt.flop_count(model, (X,))
    assert isinstance(gflops, defaultdict)
    assert gflops.default_factory is float
    assert dict(gflops) == {"linear": 24 / 1e9}
    assert isinstance(unsupported, Counter)
    assert unsupported == Counter({"aten::sigmoid": 1})
    fv_gflops, fv_unsupported = fv.flop_count(model, (X,))
    assert (dict(gflops), unsupported) == (dict(fv_gflops), fv_unsupported)
    custom, _ = tt.flop_count(model, (X,), supported_ops={"aten::sigmoid": lambda call: 6e9})
    assert dict(custom) == {"linear": 24 / 1e9, "sigmoid": 6.0}


def test_activation_count_returns_mega_activations_and_unsupported() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Conv1d(2, 5, 1))
    x = torch.randn(1, 2, 4)
    macts, unsupported = tt.activation_count(model, (x,))
    assert isinstance(macts, defaultdict)
    assert macts.default_factory is float
    # linear: 1*2*3 = 6; conv: 1*5*3 = 15
    assert dict(macts) == {"linear": 6 / 1e6, "conv": 15 / 1e6}
    assert isinstance(unsupported, Counter)
    assert unsupported == Counter()
    fv_macts, fv_unsupported = fv.activation_count(model, (x,))
    assert (dict(macts), unsupported) == (dict(fv_macts), fv_unsupported)


def test_parameter_count_matches_fvcore() -> None:
    model = Shared()  # a and b share their parameters: counted once
    counts = tt.parameter_count(model)
    assert isinstance(counts, defaultdict)
    assert counts[""] == (4 * 3 + 3) + (3 * 2 + 2)
    assert counts["a"] == 15
    assert "b" not in counts
    # fvcore's keys are module names and parameter names
    expected = {"": 23, "a": 15, "a.weight": 12, "a.bias": 3, "c": 8, "c.weight": 6, "c.bias": 2}
    assert dict(fv.parameter_count(model)) == expected
    assert dict(mm.parameter_count(model)) == expected
    assert dict(counts) == expected

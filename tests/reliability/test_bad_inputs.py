"""Bad input gets a clear error that says what was expected and what to do.

tests/core/test_api.py already checks "no inputs given", "either input_shape or inputs" and a
malformed input_shape; tests/core/test_state.py the plain non-module and a failing view.
"""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch
from reliability.helpers import MODES
from torch import nn

import torchtally
from torchtally.inputs import check_not_empty, device_mismatch
from torchtally.tracer import run_traced

CPU = torch.device("cpu")
CUDA0 = torch.device("cuda", 0)
CUDA1 = torch.device("cuda", 1)


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


# --- wrong shapes: the module, the op and torch's own explanation ----------------------------


@pytest.mark.parametrize("mode", MODES)
def test_wrong_channel_count_names_the_conv_and_its_op(mode: str) -> None:
    with pytest.raises(torchtally.TraceError) as raised:
        torchtally.analyze(Classifier(), torch.randn(1, 5, 8, 8), mode=mode)
    message = str(raised.value)
    assert "module 'features.0' (Conv2d)" in message
    assert "op aten::convolution" in message
    assert "expected input[1, 5, 8, 8] to have 3 channels" in message
    assert isinstance(raised.value.__cause__, RuntimeError)


@pytest.mark.parametrize("mode", MODES)
def test_wrong_feature_count_names_the_linear(mode: str) -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Sequential(nn.Linear(3, 3), nn.Linear(5, 2)))
    with pytest.raises(torchtally.TraceError, match=r"module '1\.1' \(Linear\) at op aten::"):
        torchtally.analyze(model, torch.randn(2, 4), mode=mode)


def test_auto_mode_does_not_blame_fake_tensors_for_a_shape_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="torchtally"),
        pytest.raises(torchtally.TraceError, match="aten::convolution"),
    ):
        torchtally.analyze(Classifier(), torch.randn(1, 5, 8, 8), mode="auto")
    assert "needs real data" not in caplog.text


# --- what is not a model ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (nn.Linear, r"got the class Linear; create the model first, e\.g\. Linear\(\.\.\.\)"),
        (lambda x: x, r"expected a torch\.nn\.Module to analyse, got function; wrap a plain"),
        (nn.ModuleList([nn.Linear(2, 2)]), r"ModuleList has no forward\(\)"),
        (nn.ModuleDict({"a": nn.Linear(2, 2)}), r"ModuleDict has no forward\(\)"),
        (nn.Module(), r"Module has no forward\(\), so it cannot be run"),
    ],
    ids=["class", "function", "module-list", "module-dict", "no-forward"],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda model: torchtally.analyze(model, torch.randn(1, 2)),
        lambda model: torchtally.analyze(model, input_shape=(2,)),  # touches model.parameters()
        lambda model: torchtally.trace(model, torch.randn(1, 2)),
        lambda model: torchtally.FlopAnalyzer(model, torch.randn(1, 2)).total(),
        lambda model: torchtally.get_model_complexity_info(model, input_shape=(2,)),
    ],
    ids=["analyze", "input_shape", "trace", "FlopAnalyzer", "complexity_info"],
)
def test_what_is_not_a_runnable_module_is_refused(
    model: object, message: str, call: object
) -> None:
    with pytest.raises(TypeError, match=message):
        call(model)  # type: ignore[operator]


# --- a forward that raises -------------------------------------------------------------------


class ConfigError(Exception):
    """The user's own exception type."""


class Deep(nn.Module):
    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.encoder = nn.ModuleDict(
            {"layers": nn.ModuleList([Block(i == fail_at) for i in range(3)])}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder["layers"]:
            x = layer(x)
        return x


class Block(nn.Module):
    def __init__(self, fail: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.fail = fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        if self.fail:
            raise ConfigError("block misconfigured: expected 8 heads")
        return x


@pytest.mark.parametrize("mode", MODES)
def test_a_forward_that_raises_is_chained_with_the_module_path(mode: str) -> None:
    with pytest.raises(torchtally.TraceError) as raised:
        torchtally.analyze(Deep(fail_at=1), torch.randn(2, 4), mode=mode)
    message = str(raised.value)
    assert "ConfigError in module 'encoder.layers.1' (Block)" in message
    assert "block misconfigured: expected 8 heads" in message
    assert " at op " not in message  # no op failed: the model's own code did
    assert isinstance(raised.value.__cause__, ConfigError)


def test_an_op_error_the_model_caught_is_not_blamed() -> None:
    class Probing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with contextlib.suppress(RuntimeError):
                x.view(3, 7)  # probes a layout; the model expects this to fail sometimes
            x = self.fc(x)
            raise ConfigError("unsupported configuration")

    with pytest.raises(torchtally.TraceError) as raised:
        torchtally.analyze(Probing(), torch.randn(2, 4), mode="real")
    assert "aten::view" not in str(raised.value)


# --- devices ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_devices", "input_devices", "expected"),
    [
        ({CPU}, {CPU}, None),
        ({CUDA0}, {CUDA0}, None),
        ({CUDA0, CUDA1}, {CUDA1}, None),  # a model spread over devices: any of them will do
        (set(), {CUDA0}, None),  # no weights (or only meta ones): nothing to compare
        ({CPU}, set(), None),  # no tensor inputs
        ({CUDA0}, {CPU}, "the inputs are on cpu but the model's parameters and buffers are on "),
        ({CPU}, {CUDA0}, "move the inputs to the model's device (e.g. x.to('cpu'))"),
        ({CUDA0}, {CUDA1}, "or the model to the inputs' device (model.to(...))"),
    ],
)
def test_device_mismatch_says_where_each_is_and_what_to_do(
    model_devices: set[torch.device], input_devices: set[torch.device], expected: str | None
) -> None:
    message = device_mismatch(model_devices, input_devices)
    if expected is None:
        assert message is None
    else:
        assert message is not None and expected in message


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inputs_on_another_device_are_refused_before_running() -> None:
    model = Classifier().cuda()
    with pytest.raises(ValueError, match="the inputs are on cpu but the model's parameters"):
        torchtally.analyze(model, torch.randn(1, 3, 8, 8), mode="real")


@pytest.mark.parametrize("mode", ["meta", "auto"])
def test_meta_weights_with_cpu_inputs_are_not_a_device_mismatch(mode: str) -> None:
    with torch.device("meta"):
        model = nn.Linear(4, 3)
    analysis = torchtally.analyze(model, torch.randn(2, 4), mode=mode)
    assert analysis.total() == 2 * 4 * 3


# --- empty models and empty tensors ----------------------------------------------------------


def test_check_not_empty_refuses_a_model_with_no_parameters_and_no_ops() -> None:
    model = nn.Sequential()
    recorded = run_traced(model, (torch.randn(2, 4),), {})
    assert recorded.ops == ()
    with pytest.raises(ValueError, match="has no parameters and its forward ran no ops"):
        check_not_empty(model, recorded)
    check_not_empty(nn.ReLU(), torchtally.trace(nn.ReLU(), torch.randn(2), mode="real"))


@pytest.mark.parametrize("model", [nn.Sequential(), nn.Identity()], ids=["sequential", "identity"])
def test_an_empty_model_is_an_error(model: nn.Module) -> None:
    with pytest.raises(ValueError, match="has no parameters and its forward ran no ops"):
        torchtally.analyze(model, torch.randn(2, 4))


@pytest.mark.parametrize(
    ("inputs", "kwargs", "message"),
    [
        (torch.randn(0, 4), None, r"input 0 has shape \(0, 4\), which has no elements"),
        ((torch.randn(2, 4), torch.randn(2, 0)), None, r"input 1 has shape \(2, 0\)"),
        (None, {"x": torch.randn(0, 4)}, r"input 'x' has shape \(0, 4\)"),
    ],
    ids=["batch-0", "second-input", "keyword"],
)
def test_zero_size_inputs_are_refused(inputs: object, kwargs: object, message: str) -> None:
    class TwoOptional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            return self.fc(x)

    with pytest.raises(ValueError, match=message):
        torchtally.analyze(TwoOptional(), inputs, kwargs=kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(0, 4), (4, -1)])
def test_input_shape_sizes_must_be_positive(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="has a size that is not positive"):
        torchtally.analyze(nn.Linear(4, 4), input_shape=shape)


def test_empty_tensors_inside_a_list_are_allowed() -> None:
    """Detection targets with no boxes are normal: only the arguments themselves are checked."""

    class Boxes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, boxes: list[torch.Tensor]) -> list[torch.Tensor]:
            return [self.fc(b) for b in boxes]

    analysis = torchtally.analyze(Boxes(), ([torch.randn(3, 4), torch.randn(0, 4)],))
    assert analysis.total() == 3 * 4 * 2 + 0 * 4 * 2


# --- embeddings ------------------------------------------------------------------------------


class TokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 8)
        self.proj = nn.Linear(8, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embed(ids))


def test_input_shape_for_an_embedding_model_says_to_pass_token_ids() -> None:
    with pytest.raises(ValueError) as raised:
        torchtally.analyze(TokenModel(), input_shape=(16,))
    message = str(raised.value)
    assert "this model starts with an embedding (module 'embed': Embedding(100, 8))" in message
    assert "takes integer token ids" in message
    assert "inputs=torch.randint(0, 100, (1, 16))" in message


@pytest.mark.parametrize("mode", MODES)
def test_float_inputs_to_an_embedding_name_the_embedding(mode: str) -> None:
    with pytest.raises(torchtally.TraceError) as raised:
        torchtally.analyze(TokenModel(), torch.randn(1, 16), mode=mode)
    message = str(raised.value)
    assert "module 'embed' (Embedding) at op aten::embedding" in message
    assert "Long, Int" in message  # torch's own words: the index dtypes it expected


@pytest.mark.parametrize("mode", MODES)
def test_token_ids_count_the_projection_only(mode: str) -> None:
    ids = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(0))
    analysis = torchtally.analyze(TokenModel(), ids, mode=mode)
    assert analysis.total() == (2 * 16) * 8 * 4  # the embedding is a lookup: no flops
    assert analysis.unsupported_ops() == {}

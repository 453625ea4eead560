"""``measure=True``: the forward pass timed per op and per module on the model's device."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

import torchtally
from torchtally.timing import measure_forward


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(),
        nn.Linear(16 * 16 * 16, 10),
    )  # fmt: skip


def test_times_line_up_with_the_trace() -> None:
    model = small().eval()
    analysis = torchtally.analyze(
        model, torch.randn(2, 3, 16, 16), measure=True, measure_repeats=3, warn_unsupported=False
    )
    measured = analysis.measured()
    assert analysis.mode == "real"
    assert [t.op for t in measured.ops] == [call.op for call in analysis.trace.ops]
    assert all(t.seconds >= 0 for t in measured.ops)
    by_module = measured.by_module()
    # a module's calls are timed whole, in one pass: the children inside the root's call (the
    # ops come from other passes, so a module and its ops are not compared here: see the slow test)
    assert by_module[""] >= sum(by_module[name] for name in "01234") > 0
    assert measured.ops_total() == pytest.approx(sum(t.seconds for t in measured.ops))
    assert all(measured.ops_total(name) > 0 for name in "01234")
    assert measured.total("0") == by_module["0"] and measured.total() == by_module[""]
    assert measured.forward_seconds > 0 and measured.device == "cpu"
    assert measured.measurement.repeats == 3 and len(measured.measurement.plain_passes) == 3
    assert measured.macs() == analysis.total()
    assert measured.achieved_flops() == pytest.approx(2 * analysis.total() / measured.total())
    assert measured.achieved_flops("0") == pytest.approx(
        2 * analysis.total(module="0") / measured.total("0")
    )
    assert 0 < measured.mfu(torchtally.hardware("cpu")) < 1
    assert set(measured.by_operator()) >= {"conv", "batch_norm", "linear"}
    document = json.loads(analysis.render("json"))
    assert document["measured"]["by_module"]["0"]["seconds"] == pytest.approx(by_module["0"])


def test_the_model_is_left_as_it_was() -> None:
    model = small().train()  # batch norm updates its running statistics in every pass
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torchtally.analyze(model, torch.randn(2, 3, 16, 16), measure=True, measure_repeats=2)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


class WritesWhatItHolds(nn.Module):
    """Writes its weight and its input in place, every call."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.linear.weight.data.mul_(2)
        return self.linear(x.relu_())


def test_weights_and_inputs_written_in_forward_are_put_back() -> None:
    torch.manual_seed(0)
    model = WritesWhatItHolds()
    x = torch.randn(3, 4)
    weight, inputs = model.linear.weight.detach().clone(), x.clone()
    analysis = torchtally.analyze(model, x, measure=True, measure_repeats=2)
    assert torch.equal(model.linear.weight, weight) and torch.equal(x, inputs)
    trace = analysis.trace
    measure_forward(model, (x,), {}, trace, repeats=1, warmup=0)  # no warm-up pass first
    assert torch.equal(model.linear.weight, weight) and torch.equal(x, inputs)


def test_calibrating_a_device_from_a_measured_run() -> None:
    analysis = torchtally.analyze(
        small().eval(), torch.randn(8, 3, 16, 16), measure=True, measure_repeats=2,
        warn_unsupported=False,
    )  # fmt: skip
    estimate = analysis.roofline("cpu")
    calibrated = estimate.calibrate(analysis.measured())
    assert calibrated.compute_efficiency > 0 and calibrated.memory_efficiency > 0
    again = analysis.roofline(calibrated)
    measured = analysis.measured()
    for bound in ("compute", "memory"):  # each bound's ops now take what they took
        ops = [t.index for t in estimate.ops if t.bound == bound]
        if ops:
            assert sum(again.ops[i].seconds for i in ops) == pytest.approx(
                sum(measured.ops[i].seconds for i in ops)
            )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "fake"}, "measure=True times the model running for real"),
        ({"backward": True}, "measure=True times the forward pass"),
        ({"measure_statistic": "mean"}, "'median' or 'min'"),
    ],
)
def test_what_cannot_be_measured(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        torchtally.analyze(nn.Linear(4, 4), torch.randn(2, 4), measure=True, **kwargs)


def test_meta_models_and_unmeasured_analyses() -> None:
    with torch.device("meta"):
        model = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="real weights"):
        torchtally.analyze(model, torch.randn(2, 4), measure=True)
    with pytest.raises(ValueError, match="analyse with measure=True"):
        torchtally.analyze(nn.Linear(4, 4), torch.randn(2, 4)).measured()


@pytest.mark.slow
def test_module_times_add_up_to_a_plain_forward_pass() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet50().eval()
    analysis = torchtally.analyze(
        model, torch.randn(1, 3, 224, 224), measure=True, measure_repeats=7,
        measure_statistic="min", warn_unsupported=False,
    )  # fmt: skip
    measured = analysis.measured()
    top = [name for name in analysis.modules if name and "." not in name]
    added = sum(measured.by_module()[name] for name in top)
    assert added <= measured.total()  # the root's call holds its children's and flatten
    ratio = added / measured.forward_seconds
    if abs(ratio - 1) > 0.1 and os.getloadavg()[0] > (os.cpu_count() or 1):
        pytest.skip(f"too busy to time: load {os.getloadavg()[0]:.1f}, ratio {ratio:.2f}")
    assert abs(ratio - 1) <= 0.1, ratio


def test_fused_fast_paths_run_what_was_traced() -> None:
    # nn.MultiheadAttention takes a fused kernel in inference unless a torch-function mode is on
    # (the tracer's is): the timed passes run the traced, unfused ops
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True).eval()
    analysis = torchtally.analyze(
        layer, torch.randn(2, 5, 32), measure=True, measure_repeats=2, warn_unsupported=False
    )
    assert len(analysis.measured().ops) == len(analysis.trace.ops)


def test_module_times_come_from_their_calls_and_leave_the_model_hooks_alone() -> None:
    shared = nn.ReLU()
    model = nn.Sequential(nn.Linear(8, 8), shared, nn.Linear(8, 8), shared).eval()
    calls: list[str] = []
    model[0].register_forward_hook(lambda m, a, o: calls.append("hook"))
    hooks = (dict(model[0]._forward_hooks), dict(model._forward_pre_hooks))
    analysis = torchtally.analyze(
        model, torch.randn(4, 8), measure=True, measure_repeats=3, warn_unsupported=False
    )
    measured = analysis.measured()
    assert (dict(model[0]._forward_hooks), dict(model._forward_pre_hooks)) == hooks
    # traced; a first pass per op (saving what it writes); warm-up: plain, per op; then the
    # timed passes: plain, per op, by module
    assert len(calls) == 1 + 1 + 2 * 2 + 3 * 3
    by_module = measured.by_module()
    assert set(by_module) == set(analysis.modules)
    assert by_module["1"] > 0 and measured.ops_total("1") > 0  # both calls
    assert measured.total(phase="backward") == 0.0


def test_a_container_that_is_never_called_has_its_childrens_times() -> None:
    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x)
            return x

    analysis = torchtally.analyze(
        Stack(), torch.randn(4, 8), measure=True, measure_repeats=2, warn_unsupported=False
    )
    by_module = analysis.measured().by_module()
    assert "layers" not in analysis.trace.measurement.module_seconds
    assert by_module["layers"] == pytest.approx(by_module["layers.0"] + by_module["layers.1"])
    assert 0 < by_module["layers"] <= by_module[""]

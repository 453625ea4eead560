"""torchtally's fvcore API against fvcore itself (and mmengine) on real models.

Every count is compared exactly: totals, every module, every operator, every module x operator.
Where torchtally legitimately differs from fvcore (it sees the ops the dispatcher runs, fvcore
sees the ops the JIT tracer records), the difference is asserted op by op, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import torchtally as tt

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
fv = pytest.importorskip("fvcore.nn")
mm = pytest.importorskip("mmengine.analysis")

pytestmark = pytest.mark.slow  # peer cross-check: fvcore and mmengine trace every model


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    # Both libraries log every unsupported op; the tests read unsupported_ops() instead.
    caplog.set_level(logging.ERROR)


# --- models ----------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)  # on 3-D tokens: view + addmm + view
        self.proj = nn.Linear(dim, dim, bias=False)  # without bias: mm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k).softmax(-1)
        out = torch.matmul(scores, v)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Mixed(nn.Module):
    """A transformer on top of convolutions of every kind and every normalisation fvcore knows."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gconv = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4)
        self.gn = nn.GroupNorm(2, 8)
        self.inorm = nn.InstanceNorm2d(8)
        self.inorm_affine = nn.InstanceNorm2d(8, affine=True)
        self.deconv = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.conv1d = nn.Conv1d(4, 6, 3)
        self.bn1d = nn.BatchNorm1d(6)
        self.conv3d = nn.Conv3d(1, 2, 3, padding=1)
        self.embed = nn.Linear(9, 16)
        self.blocks = nn.Sequential(Block(16, 2), Block(16, 2))
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.inorm_affine(self.inorm(self.gn(self.gconv(self.conv(x)))))
        pooled = F.adaptive_avg_pool2d(x, 1)  # ATen computes this one as aten::mean
        grid = F.adaptive_avg_pool2d(x, 3)  # and this one as aten::_adaptive_avg_pool2d
        y = self.deconv(x)
        seq = self.bn1d(self.conv1d(y.flatten(2)))
        vol = self.conv3d(y[:, :1].unsqueeze(1))
        tokens = self.blocks(self.embed(grid.flatten(2)))
        return self.head(tokens), pooled, seq, vol


def _vision(name: str) -> Callable[[], nn.Module]:
    return lambda: getattr(torchvision.models, name)(weights=None)


@dataclass(frozen=True)
class Case:
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    # fvcore's unsupported ops for flops, and torchtally's: they differ in two ways only.
    # - fvcore ignores aten::relu(_) as "0 flops"; torchtally counts it as an element-wise op
    #   (1 flop per element with elementwise=True), so by default it reports it as not counted.
    # - nn.MaxPool2d is aten::max_pool2d in the JIT graph, but that op is composite: the
    #   dispatcher runs aten::max_pool2d_with_indices. Neither library counts it.
    fv_flops_unsupported: dict[str, int]
    tt_flops_unsupported: dict[str, int]
    # fvcore counts activations of conv and matmul ops only and reports every other op
    # (norms, pooling, element-wise ops, apart from the ignored relu) as unsupported. torchtally
    # has handlers that give those ops 0 activations, so it reports none of them.
    fv_activations_unsupported: dict[str, int]


CASES = {
    "resnet18": Case(
        _vision("resnet18"),
        (1, 3, 112, 112),
        {"aten::max_pool2d": 1, "aten::add_": 8},
        {"aten::max_pool2d_with_indices": 1, "aten::add_": 8, "aten::relu_": 17},
        {
            "aten::batch_norm": 20,
            "aten::max_pool2d": 1,
            "aten::add_": 8,
            "aten::adaptive_avg_pool2d": 1,
        },
    ),
    "mobilenet_v2": Case(
        _vision("mobilenet_v2"),
        (1, 3, 112, 112),
        # ReLU6 is hardtanh_, which neither library ignores: here both agree.
        {"aten::hardtanh_": 35, "aten::add": 10},
        {"aten::hardtanh_": 35, "aten::add": 10},
        {
            "aten::batch_norm": 52,
            "aten::hardtanh_": 35,
            "aten::add": 10,
            "aten::adaptive_avg_pool2d": 1,
        },
    ),
    "alexnet": Case(
        _vision("alexnet"),
        (1, 3, 112, 112),
        {"aten::max_pool2d": 3},
        {"aten::max_pool2d_with_indices": 3, "aten::relu_": 7},
        {"aten::max_pool2d": 3, "aten::adaptive_avg_pool2d": 1},
    ),
    "vgg11_bn": Case(
        _vision("vgg11_bn"),
        (1, 3, 64, 64),
        {"aten::max_pool2d": 5},
        {"aten::max_pool2d_with_indices": 5, "aten::relu_": 10},
        {"aten::batch_norm": 8, "aten::max_pool2d": 5, "aten::adaptive_avg_pool2d": 1},
    ),
    "squeezenet1_0": Case(
        _vision("squeezenet1_0"),
        (1, 3, 112, 112),
        {"aten::max_pool2d": 3},
        {"aten::max_pool2d_with_indices": 3, "aten::relu_": 26},
        {"aten::max_pool2d": 3, "aten::adaptive_avg_pool2d": 1},
    ),
    "shufflenet_v2_x0_5": Case(
        _vision("shufflenet_v2_x0_5"),
        (1, 3, 112, 112),
        # x.mean([2, 3]) is a plain reduction: counted by neither.
        {"aten::max_pool2d": 1, "aten::mean": 1},
        {"aten::max_pool2d_with_indices": 1, "aten::mean": 1, "aten::relu_": 37},
        {"aten::batch_norm": 56, "aten::max_pool2d": 1, "aten::mean": 1},
    ),
    "mixed": Case(
        Mixed,
        (2, 3, 12, 12),
        # softmax is composite; the dispatcher runs aten::_softmax.
        {"aten::softmax": 2, "aten::add": 4, "aten::gelu": 2},
        {"aten::_softmax": 2, "aten::add": 4, "aten::gelu": 2},
        {
            "aten::group_norm": 1,
            "aten::instance_norm": 2,
            "aten::adaptive_avg_pool2d": 2,
            "aten::batch_norm": 1,
            "aten::layer_norm": 4,
            "aten::softmax": 2,
            "aten::add": 4,
            "aten::gelu": 2,
        },
    ),
}


@dataclass
class Analyses:
    model: nn.Module
    inputs: tuple[torch.Tensor, ...]
    tt_flops: tt.FlopAnalyzer
    fv_flops: fv.FlopCountAnalysis
    tt_acts: tt.ActivationAnalyzer
    fv_acts: fv.ActivationCountAnalysis


def _analyse(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Analyses:
    result = Analyses(
        model,
        inputs,
        tt.FlopAnalyzer(model, inputs),
        fv.FlopCountAnalysis(model, inputs),
        tt.ActivationAnalyzer(model, inputs),
        fv.ActivationCountAnalysis(model, inputs),
    )
    for analyzer in (result.tt_flops, result.fv_flops, result.tt_acts, result.fv_acts):
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analyzer.total()  # analyse now, once
    return result


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[Case, Analyses]:
    spec = CASES[request.param]
    torch.manual_seed(0)
    model = spec.build().eval()
    inputs = (torch.randn(spec.input_shape),)
    return spec, _analyse(model, inputs)


def _nonzero(counts: dict[str, Any]) -> dict[str, Any]:
    return {op: n for op, n in counts.items() if n != 0}


def assert_same_counts(ours: Any, theirs: Any) -> None:
    """Every query of fvcore's surface gives the same numbers, and the same keys."""
    assert ours.total() == theirs.total()
    assert list(ours.by_module()) == list(theirs.by_module())  # every module, same order
    assert dict(ours.by_module()) == dict(theirs.by_module())
    ours_mo, theirs_mo = ours.by_module_and_operator(), theirs.by_module_and_operator()
    assert list(ours_mo) == list(theirs_mo)
    # First the numbers, so that a wrong count reads as such ...
    assert {m: _nonzero(ops) for m, ops in ours_mo.items()} == {
        m: dict(ops) for m, ops in theirs_mo.items()
    }
    assert _nonzero(ours.by_operator()) == dict(theirs.by_operator())
    # ... then the keys: fvcore adds op counts with `Counter +=`, which never keeps an operator
    # whose count is 0, so an operator that counted nothing is not a key of its results.
    assert dict(ours.by_operator()) == dict(theirs.by_operator())
    assert {m: dict(ops) for m, ops in ours_mo.items()} == {
        m: dict(ops) for m, ops in theirs_mo.items()
    }
    for name in theirs_mo:
        assert dict(ours.by_operator(name)) == dict(theirs.by_operator(name)), name
        assert ours.total(name) == theirs.total(name), name


# --- eval mode: every model ------------------------------------------------------------------


def test_flops_match_fvcore(case: tuple[Case, Analyses]) -> None:
    _, found = case
    assert found.tt_flops.total() > 0
    assert_same_counts(found.tt_flops, found.fv_flops)


def test_activations_match_fvcore(case: tuple[Case, Analyses]) -> None:
    _, found = case
    assert found.tt_acts.total() > 0
    assert_same_counts(found.tt_acts, found.fv_acts)


def test_unsupported_ops_differ_only_as_documented(case: tuple[Case, Analyses]) -> None:
    spec, found = case
    assert dict(found.fv_flops.unsupported_ops()) == spec.fv_flops_unsupported
    assert dict(found.tt_flops.unsupported_ops()) == spec.tt_flops_unsupported
    assert dict(found.fv_acts.unsupported_ops()) == spec.fv_activations_unsupported
    assert dict(found.tt_acts.unsupported_ops()) == {}


def test_uncalled_modules_match_fvcore(case: tuple[Case, Analyses]) -> None:
    _, found = case
    assert found.tt_flops.uncalled_modules() == found.fv_flops.uncalled_modules()
    assert found.tt_acts.uncalled_modules() == found.fv_acts.uncalled_modules()


def test_shufflenet_empty_branches_are_uncalled() -> None:
    torch.manual_seed(0)
    model = torchvision.models.shufflenet_v2_x0_5(weights=None).eval()
    analyzer = tt.FlopAnalyzer(model, torch.randn(1, 3, 64, 64)).uncalled_modules_warnings(False)
    # Stride-1 blocks keep an empty nn.Sequential as branch1 and never call it.
    assert analyzer.uncalled_modules() == {
        f"stage{stage}.{block}.branch1"
        for stage, blocks in ((2, 4), (3, 8), (4, 4))
        for block in range(1, blocks)
    }


# --- what the mixed model must contain for the comparison to mean something ------------------


def test_mixed_model_exercises_every_fvcore_handler() -> None:
    torch.manual_seed(0)
    found = _analyse(Mixed().eval(), (torch.randn(2, 3, 12, 12),))
    flops = found.tt_flops.by_operator()
    assert set(flops) == {
        "conv",
        "linear",
        "einsum",
        "matmul",
        "layer_norm",
        "group_norm",
        "instance_norm",
        "batch_norm",
        "adaptive_avg_pool2d",
    }
    # Hand-computed anchors, so both libraries cannot be wrong together.
    assert found.tt_flops.total("conv") == 2 * (8 * 3 * 3 * 3) * 12 * 12
    assert found.tt_flops.total("gconv") == 2 * (8 * 2 * 3 * 3) * 12 * 12
    assert found.tt_flops.total("deconv") == 2 * (8 * 4 * 2 * 2) * 12 * 12  # input spatial
    assert found.tt_flops.total("conv1d") == 2 * (6 * 4 * 3) * (24 * 24 - 2)
    assert found.tt_flops.total("conv3d") == 2 * (2 * 1 * 27) * 1 * 24 * 24
    assert found.tt_flops.total("gn") == 5 * 2 * 8 * 12 * 12
    assert found.tt_flops.total("inorm") == 4 * 2 * 8 * 12 * 12  # no affine
    assert found.tt_flops.total("inorm_affine") == 5 * 2 * 8 * 12 * 12
    assert found.tt_flops.total("bn1d") == 2 * 2 * 6 * (24 * 24 - 2)  # eval: scale and shift
    assert found.tt_flops.total("blocks.0.norm1") == 5 * 2 * 8 * 16
    assert found.tt_flops.total("blocks.0.attn.qkv") == 2 * 8 * 16 * 48
    assert found.tt_flops.total("blocks.0.attn.proj") == 2 * 8 * 16 * 16
    assert found.tt_flops.by_operator("blocks.0.attn") == {
        "linear": 2 * 8 * 16 * 48 + 2 * 8 * 16 * 16,
        "einsum": 2 * 2 * 8 * 8 * 8,  # (b, h, q, d) x (b, h, k, d)
        "matmul": 2 * 2 * 8 * 8 * 8,
    }
    # adaptive average pooling: one flop per input element, to 1x1 and to 3x3 alike
    assert flops["adaptive_avg_pool2d"] == 2 * (2 * 8 * 12 * 12)
    assert found.tt_acts.by_operator("blocks.0.attn")["einsum"] == 2 * 2 * 8 * 8


# --- legitimate differences from fvcore -----------------------------------------------------


class BroadcastMatmul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class OuterEinsum(nn.Module):
    def forward(self, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return torch.einsum("i,j->ij", c, d)


class BatchedEinsum(nn.Module):
    def forward(self, b: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bji,bjk->bik", b, b)


class Corners(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bcast = BroadcastMatmul()
        self.outer = OuterEinsum()
        self.batched = BatchedEinsum()

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> Any:
        return self.bcast(a, b), self.outer(c, d), self.batched(b)


def test_matmul_and_einsum_corners_differ_as_documented() -> None:
    torch.manual_seed(0)
    inputs = (torch.randn(3, 4), torch.randn(5, 4, 6), torch.randn(7), torch.randn(8))
    found = _analyse(Corners(), inputs)
    fl_ours, fl_theirs = found.tt_flops, found.fv_flops
    ac_ours, ac_theirs = found.tt_acts, found.fv_acts

    # A batched contraction: the same in both.
    assert fl_ours.total("batched") == fl_theirs.total("batched") == 5 * 6 * 4 * 6
    assert ac_ours.total("batched") == ac_theirs.total("batched") == 5 * 6 * 6

    # (3, 4) @ (5, 4, 6) broadcasts the left operand over 5 batches. fvcore's matmul formula,
    # prod(a.shape) * b.shape[-1], ignores the batch dims of the right operand; torchtally counts
    # the (folded) matrix product the dispatcher really runs, 5 times as much.
    assert fl_theirs.by_operator("bcast") == {"matmul": 3 * 4 * 6}
    assert fl_ours.by_operator("bcast") == {"matmul": 5 * 3 * 4 * 6}
    assert ac_ours.total("bcast") == ac_theirs.total("bcast") == 5 * 3 * 6

    # An outer product contracts nothing. fvcore asks numpy's einsum_path for its flops, 56, and
    # halves it (it counts multiply-adds): 28; it counts the 56 outputs as activations. ATen runs
    # it as an element-wise aten::mul, which torchtally counts only with elementwise=True.
    assert fl_theirs.by_operator("outer") == {"einsum": 28}
    assert fl_ours.total("outer") == 0
    assert dict(fl_ours.unsupported_ops("outer")) == {"aten::mul": 1}
    assert dict(fl_theirs.unsupported_ops("outer")) == {}
    assert ac_theirs.total("outer") == 7 * 8
    assert ac_ours.total("outer") == 0

    assert fl_ours.total() == 5 * 6 * 4 * 6 + 5 * 3 * 4 * 6
    assert fl_theirs.total() == 5 * 6 * 4 * 6 + 3 * 4 * 6 + 28


class MatmulFamily(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.w = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            x @ self.w,
            torch.addmm(self.fc.bias, x, self.w),
            x.mm(self.w),
            torch.bmm(x.unsqueeze(0), self.w.unsqueeze(0)),
            self.fc(x),
            F.linear(x, self.w),
            torch.mv(self.w, x[0]),
        )


def test_matmul_family_functions() -> None:
    torch.manual_seed(0)
    found = _analyse(MatmulFamily(), (torch.randn(3, 4),))
    same_flops = {"matmul": 48, "addmm": 48, "mm": 48, "bmm": 48, "linear": 96}  # 3*4*4 each
    same_acts = {"matmul": 12, "addmm": 12, "bmm": 12, "linear": 24}  # 3*4 each
    assert dict(found.fv_flops.by_operator()) == same_flops
    assert dict(found.fv_acts.by_operator()) == same_acts
    # fvcore has no handler for aten::mv; torchtally counts it: (4, 4) @ (4,) is 16 flops and
    # 4 activations.
    assert dict(found.fv_flops.unsupported_ops()) == {"aten::mv": 1}
    assert dict(found.tt_flops.by_operator()) == {**same_flops, "mv": 16}
    assert dict(found.tt_flops.unsupported_ops()) == {}
    # fvcore's activation handlers leave out aten::mm (they have addmm, bmm, matmul, linear,
    # einsum); torchtally counts its 3*4 outputs like those of any other matrix product.
    assert dict(found.fv_acts.unsupported_ops()) == {"aten::mm": 1, "aten::mv": 1}
    assert dict(found.tt_acts.by_operator()) == {**same_acts, "mm": 12, "mv": 4}
    assert dict(found.tt_acts.unsupported_ops()) == {}


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x)[0]  # need_weights=True: the bmm path, no fused attention


@pytest.fixture(scope="module")
def attention() -> Analyses:
    torch.manual_seed(0)
    return _analyse(SelfAttention().eval(), (torch.randn(2, 5, 16),))


def test_multihead_attention_counts_match_fvcore(attention: Analyses) -> None:
    # in_proj: 2*5*16*48 = 7680; out_proj: 2*5*16*16 = 2560; q@k and attn@v: 2 * (4*5*8*5)
    for ours, theirs, total in (
        (attention.tt_flops, attention.fv_flops, 7680 + 2560 + 1600),
        (attention.tt_acts, attention.fv_acts, 480 + 160 + 4 * 5 * 5 + 4 * 5 * 8),
    ):
        assert ours.total() == theirs.total() == total
        assert dict(ours.by_module()) == dict(theirs.by_module())
        # out_proj is a Linear that multi_head_attention_forward uses through its weights
        assert ours.uncalled_modules() == theirs.uncalled_modules() == {"mha.out_proj"}


def test_multihead_attention_operator_names_match_fvcore(attention: Analyses) -> None:
    # nn.MultiheadAttention calls F.linear inside F.multi_head_attention_forward: fvcore's
    # trace records aten::linear there, and names the counts "linear".
    assert dict(attention.fv_flops.by_operator()) == {"linear": 10240, "bmm": 1600}
    assert dict(attention.tt_flops.by_operator()) == {"linear": 10240, "bmm": 1600}
    assert _nonzero(attention.tt_acts.by_operator()) == {"linear": 640, "bmm": 260}


# --- train mode ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_resnet18() -> Analyses:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).train()
    # fvcore runs first here, and its trace updates the running statistics.
    return _analyse(model, (torch.randn(2, 3, 64, 64),))


def test_resnet18_train_mode_flops_match_fvcore(train_resnet18: Analyses) -> None:
    found = train_resnet18
    assert_same_counts(found.tt_flops, found.fv_flops)
    # 28 in-place adds: 8 residual connections and 20 `num_batches_tracked += 1`.
    assert dict(found.fv_flops.unsupported_ops()) == {"aten::add_": 28, "aten::max_pool2d": 1}
    assert dict(found.tt_flops.unsupported_ops()) == {
        "aten::add_": 28,
        "aten::max_pool2d_with_indices": 1,
        "aten::relu_": 17,  # ignored by fvcore, see Case
    }


def test_resnet18_train_mode_activations_match_fvcore(train_resnet18: Analyses) -> None:
    assert_same_counts(train_resnet18.tt_acts, train_resnet18.fv_acts)


def test_resnet18_train_mode_batch_norm_formula() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).train()
    inputs = (torch.randn(2, 3, 64, 64),)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    train = tt.FlopAnalyzer(model, inputs).unsupported_ops_warnings(False).by_operator()
    assert model.training
    eval_ = tt.FlopAnalyzer(model.eval(), inputs).unsupported_ops_warnings(False).by_operator()
    # Training batch norm computes statistics: 5 flops per element instead of eval's 2
    # (every batch norm of resnet18 is affine); nothing else changes.
    assert 2 * train["batch_norm"] == 5 * eval_["batch_norm"]
    assert {k: v for k, v in train.items() if k != "batch_norm"} == {
        k: v for k, v in eval_.items() if k != "batch_norm"
    }
    # torchtally leaves the model as it was: running statistics and num_batches_tracked too.
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)


# --- mmengine --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "mixed"])
def test_mmengine_analyzers_agree(name: str) -> None:
    spec = CASES[name]
    torch.manual_seed(0)
    model = spec.build().eval()
    inputs = (torch.randn(spec.input_shape),)
    mm_flops = mm.FlopAnalyzer(model, inputs).unsupported_ops_warnings(False)
    mm_acts = mm.ActivationAnalyzer(model, inputs).unsupported_ops_warnings(False)
    tt_flops = tt.FlopAnalyzer(model, inputs).unsupported_ops_warnings(False)
    tt_acts = tt.ActivationAnalyzer(model, inputs).unsupported_ops_warnings(False)
    assert tt_flops.total() == mm_flops.total()
    assert dict(tt_flops.by_module()) == dict(mm_flops.by_module())
    assert tt_acts.total() == mm_acts.total()
    assert dict(tt_acts.by_module()) == dict(mm_acts.by_module())


def test_mmengine_get_model_complexity_info_agrees() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    inputs = (torch.randn(1, 3, 112, 112),)
    ours = tt.get_model_complexity_info(model, inputs=inputs, show_table=False, show_arch=False)
    theirs = mm.get_model_complexity_info(model, inputs=inputs, show_table=False, show_arch=False)
    assert ours == theirs
    assert ours["flops_str"] == "0.487G"
    assert ours["params_str"] == "11.69M"

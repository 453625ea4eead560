"""Core's op handlers against hand-computed counts, on tiny real computations.

Every expected number is written out as arithmetic from the shapes (one multiply-add = 1 flop,
fvcore's convention), so a wrong formula in a handler shows up as a wrong number here:

- matmul family: output elements x reduced length; bias is not counted (fvcore).
- convolution: batch x C_out x prod(output spatial) x (C_in / groups) x prod(kernel); transposed:
  batch x C_in x prod(input spatial) x (C_out / groups) x prod(kernel).
- norms: per input element, batch norm eval 1 (2 with affine); training batch norm, instance,
  layer and group norm 4 (5 with affine).
- adaptive average pooling: 1 per input element, always; window and adaptive max pooling only
  with element-wise counting on.
Activations are the output elements of convolutions and matmuls, and 0 for norms and pooling.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchtally_testing import Fn

import torchtally

Shapes = tuple[tuple[int, ...], ...]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def analyze(
    module: nn.Module,
    shapes: Shapes,
    *,
    elementwise: bool = False,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> torchtally.Analysis:
    module = module.to(device=device, dtype=dtype)
    inputs = tuple(torch.randn(shape, dtype=dtype, device=device) for shape in shapes)
    analysis = torchtally.analyze(module, inputs, elementwise=elementwise)
    assert not analysis.handler_failures, [str(f) for f in analysis.handler_failures]
    return analysis


def check_counted(
    analysis: torchtally.Analysis, operator: str, flops: int, activations: int
) -> None:
    """One operator, fully counted, nothing unsupported."""
    assert analysis.total() == flops
    assert analysis.by_operator() == {operator: flops}
    assert analysis.total("activations") == activations
    # An operator that produces no activations is not a key (as in fvcore).
    assert analysis.by_operator("activations") == ({operator: activations} if activations else {})
    assert analysis.unsupported_ops() == {}
    assert analysis.unsupported_ops("activations") == {}


# --- matmul family ------------------------------------------------------------------------------

MATMUL_CASES = [
    # (module, input shapes, operator, flops, activations)
    pytest.param(Fn(torch.mm), ((2, 3), (3, 4)), "mm", 2 * 3 * 4, 2 * 4, id="mm"),
    pytest.param(Fn(torch.addmm), ((4,), (2, 3), (3, 4)), "addmm", 2 * 3 * 4, 2 * 4, id="addmm"),
    pytest.param(Fn(torch.bmm), ((5, 2, 3), (5, 3, 4)), "bmm", 5 * 2 * 3 * 4, 5 * 2 * 4, id="bmm"),
    pytest.param(
        Fn(torch.baddbmm),
        ((5, 2, 4), (5, 2, 3), (5, 3, 4)),
        "baddbmm",
        5 * 2 * 3 * 4,
        5 * 2 * 4,
        id="baddbmm",
    ),
    # addbmm sums the 5 products into one (2, 4) matrix: each output element is a dot product of
    # length 5 * 3.
    pytest.param(
        Fn(torch.addbmm),
        ((2, 4), (5, 2, 3), (5, 3, 4)),
        "addbmm",
        2 * 4 * (5 * 3),
        2 * 4,
        id="addbmm",
    ),
    pytest.param(Fn(torch.mv), ((2, 3), (3,)), "mv", 2 * 3, 2, id="mv"),
    pytest.param(Fn(torch.addmv), ((2,), (2, 3), (3,)), "addmv", 2 * 3, 2, id="addmv"),
    pytest.param(Fn(torch.dot), ((3,), (3,)), "dot", 3, 1, id="dot"),
    # torch.matmul decomposes into dot, mv, mm or bmm; all are reported as "matmul".
    pytest.param(Fn(torch.matmul), ((3,), (3,)), "matmul", 3, 1, id="matmul-1d-1d"),
    pytest.param(Fn(torch.matmul), ((3,), (3, 4)), "matmul", 3 * 4, 4, id="matmul-1d-2d"),
    pytest.param(Fn(torch.matmul), ((2, 3), (3,)), "matmul", 2 * 3, 2, id="matmul-2d-1d"),
    pytest.param(Fn(torch.matmul), ((2, 3), (3, 4)), "matmul", 2 * 3 * 4, 2 * 4, id="matmul-2d"),
    pytest.param(
        Fn(torch.matmul), ((5, 2, 3), (3,)), "matmul", 5 * 2 * 3, 5 * 2, id="matmul-3d-1d"
    ),
    pytest.param(
        Fn(torch.matmul), ((3,), (5, 3, 4)), "matmul", 5 * 3 * 4, 5 * 4, id="matmul-1d-3d"
    ),
    pytest.param(
        Fn(torch.matmul),
        ((5, 2, 3), (5, 3, 4)),
        "matmul",
        5 * 2 * 3 * 4,
        5 * 2 * 4,
        id="matmul-3d",
    ),
    pytest.param(
        Fn(torch.matmul),
        ((5, 2, 3), (3, 4)),
        "matmul",
        5 * 2 * 3 * 4,
        5 * 2 * 4,
        id="matmul-3d-2d",
    ),
    pytest.param(
        Fn(torch.matmul),
        ((2, 3), (5, 3, 4)),
        "matmul",
        5 * 2 * 3 * 4,
        5 * 2 * 4,
        id="matmul-2d-3d-broadcast",
    ),
    pytest.param(
        Fn(torch.matmul),
        ((6, 5, 2, 3), (6, 5, 3, 4)),
        "matmul",
        6 * 5 * 2 * 3 * 4,
        6 * 5 * 2 * 4,
        id="matmul-4d",
    ),
    pytest.param(
        Fn(torch.matmul),
        ((6, 1, 2, 3), (5, 3, 4)),
        "matmul",
        6 * 5 * 2 * 3 * 4,
        6 * 5 * 2 * 4,
        id="matmul-4d-3d-broadcast",
    ),
    pytest.param(
        Fn(lambda a, b: a @ b), ((2, 3), (3, 4)), "matmul", 2 * 3 * 4, 2 * 4, id="matmul-operator"
    ),
    # nn.Linear(3, 4): input elements x out_features, with or without bias.
    pytest.param(nn.Linear(3, 4), ((3,),), "linear", 3 * 4, 4, id="linear-1d"),
    pytest.param(nn.Linear(3, 4), ((2, 3),), "linear", 2 * 3 * 4, 2 * 4, id="linear-2d"),
    pytest.param(nn.Linear(3, 4), ((5, 2, 3),), "linear", 5 * 2 * 3 * 4, 5 * 2 * 4, id="linear-3d"),
    pytest.param(
        nn.Linear(3, 4),
        ((6, 5, 2, 3),),
        "linear",
        6 * 5 * 2 * 3 * 4,
        6 * 5 * 2 * 4,
        id="linear-4d",
    ),
    pytest.param(
        nn.Linear(3, 4, bias=False), ((2, 3),), "linear", 2 * 3 * 4, 2 * 4, id="linear-2d-nobias"
    ),
    pytest.param(
        nn.Linear(3, 4, bias=False),
        ((5, 2, 3),),
        "linear",
        5 * 2 * 3 * 4,
        5 * 2 * 4,
        id="linear-3d-nobias",
    ),
    pytest.param(
        nn.Linear(3, 4, bias=False),
        ((6, 5, 2, 3),),
        "linear",
        6 * 5 * 2 * 3 * 4,
        6 * 5 * 2 * 4,
        id="linear-4d-nobias",
    ),
    # einsum contractions decompose into one aten::bmm each.
    pytest.param(
        Fn(lambda a, b: torch.einsum("bij,bjk->bik", a, b)),
        ((5, 2, 3), (5, 3, 4)),
        "einsum",
        5 * 2 * 3 * 4,
        5 * 2 * 4,
        id="einsum-bmm",
    ),
    pytest.param(  # attention scores: b=2, h=3, q=4, k=6, d=5
        Fn(lambda q, k: torch.einsum("bhqd,bhkd->bhqk", q, k)),
        ((2, 3, 4, 5), (2, 3, 6, 5)),
        "einsum",
        2 * 3 * 4 * 6 * 5,
        2 * 3 * 4 * 6,
        id="einsum-attention",
    ),
    # Three operands run as two bmm, left to right ((ij,jk)->ik, then (ik,kl)->il; also the
    # cheapest order, so opt_einsum would pick it too). The (2, 4) intermediate is an output of
    # a matmul, so it counts as activations as well.
    pytest.param(
        Fn(lambda a, b, c: torch.einsum("ij,jk,kl->il", a, b, c)),
        ((2, 3), (3, 4), (4, 5)),
        "einsum",
        2 * 3 * 4 + 2 * 4 * 5,
        2 * 4 + 2 * 5,
        id="einsum-chain",
    ),
]


@pytest.mark.parametrize("elementwise", [False, True], ids=["fvcore", "elementwise"])
@pytest.mark.parametrize(("module", "shapes", "operator", "flops", "activations"), MATMUL_CASES)
def test_matmul_family(
    module: nn.Module,
    shapes: Shapes,
    operator: str,
    flops: int,
    activations: int,
    elementwise: bool,
) -> None:
    check_counted(analyze(module, shapes, elementwise=elementwise), operator, flops, activations)


def test_einsum_outer_product_is_elementwise() -> None:
    # "i,j->ij" has nothing to contract: it decomposes into one broadcasting aten::mul, an
    # element-wise op, so it counts (3 * 4 multiplies) only with element-wise counting on.
    module = Fn(lambda a, b: torch.einsum("i,j->ij", a, b))
    off = analyze(module, ((3,), (4,)))
    assert off.total() == 0
    assert off.by_operator() == {}
    assert off.unsupported_ops() == {"aten::mul": 1}
    assert off.total("activations") == 0
    assert off.unsupported_ops("activations") == {}
    on = analyze(module, ((3,), (4,)), elementwise=True)
    assert on.by_operator() == {"einsum": 3 * 4}
    assert on.unsupported_ops() == {}


@pytest.mark.parametrize("elementwise", [False, True], ids=["fvcore", "elementwise"])
def test_linear_on_non_contiguous_input_counts_like_contiguous(elementwise: bool) -> None:
    # nn.Linear on a non-contiguous 3-D input does not fold into addmm: ATen runs matmul (mm)
    # and then adds the bias with a separate aten::add. The bias is free for a contiguous input
    # (addmm), so it must be free here too: the layer is fully supported and costs the same
    # whatever the memory layout of its input.
    linear = nn.Linear(3, 4)
    strided = Fn(lambda x: linear(x.transpose(0, 1)))  # (2, 5, 3) -> (5, 2, 3), not contiguous
    contiguous = Fn(lambda x: linear(x.transpose(0, 1).contiguous()))
    shapes = ((2, 5, 3),)
    check_counted(
        analyze(contiguous, shapes, elementwise=elementwise), "linear", 5 * 2 * 3 * 4, 5 * 2 * 4
    )
    check_counted(
        analyze(strided, shapes, elementwise=elementwise), "linear", 5 * 2 * 3 * 4, 5 * 2 * 4
    )


# --- convolution --------------------------------------------------------------------------------

CONV_CASES = [
    # (module, input shapes, flops, activations)
    pytest.param(  # L_out = 10 - 3 + 1 = 8
        nn.Conv1d(3, 4, 3), ((2, 3, 10),), 2 * 4 * 8 * 3 * 3, 2 * 4 * 8, id="conv1d"
    ),
    pytest.param(  # 6 x 6 output
        nn.Conv2d(3, 4, 3), ((2, 3, 8, 8),), 2 * 4 * 6 * 6 * 3 * 3 * 3, 2 * 4 * 6 * 6, id="conv2d"
    ),
    pytest.param(
        nn.Conv2d(3, 4, 3, bias=False),
        ((2, 3, 8, 8),),
        2 * 4 * 6 * 6 * 3 * 3 * 3,
        2 * 4 * 6 * 6,
        id="conv2d-nobias",
    ),
    pytest.param(  # 3 x 4 x 5 output
        nn.Conv3d(2, 4, 3),
        ((1, 2, 5, 6, 7),),
        1 * 4 * (3 * 4 * 5) * 2 * 3 * 3 * 3,
        1 * 4 * (3 * 4 * 5),
        id="conv3d",
    ),
    pytest.param(  # (9 - 3) // 2 + 1 = 4
        nn.Conv2d(3, 4, 3, stride=2),
        ((2, 3, 9, 9),),
        2 * 4 * 4 * 4 * 3 * 3 * 3,
        2 * 4 * 4 * 4,
        id="conv2d-strided",
    ),
    pytest.param(  # same size: 8 x 8
        nn.Conv2d(3, 4, 3, padding=1),
        ((2, 3, 8, 8),),
        2 * 4 * 8 * 8 * 3 * 3 * 3,
        2 * 4 * 8 * 8,
        id="conv2d-padded",
    ),
    pytest.param(  # H: 8 + 2*2 - 3 + 1 = 10, W: 8 + 2*1 - 5 + 1 = 6
        nn.Conv2d(3, 4, (3, 5), padding=(2, 1)),
        ((1, 3, 8, 8),),
        1 * 4 * 10 * 6 * 3 * 3 * 5,
        1 * 4 * 10 * 6,
        id="conv2d-rectangular-padded",
    ),
    pytest.param(  # effective kernel 5: 9 - 5 + 1 = 5
        nn.Conv2d(3, 4, 3, dilation=2),
        ((2, 3, 9, 9),),
        2 * 4 * 5 * 5 * 3 * 3 * 3,
        2 * 4 * 5 * 5,
        id="conv2d-dilated",
    ),
    pytest.param(  # groups=2: each output channel reads 4 / 2 input channels
        nn.Conv2d(4, 6, 3, groups=2),
        ((2, 4, 8, 8),),
        2 * 6 * 6 * 6 * (4 // 2) * 3 * 3,
        2 * 6 * 6 * 6,
        id="conv2d-grouped",
    ),
    pytest.param(  # depthwise: one input channel per output channel
        nn.Conv2d(4, 4, 3, padding=1, groups=4),
        ((2, 4, 8, 8),),
        2 * 4 * 8 * 8 * 1 * 3 * 3,
        2 * 4 * 8 * 8,
        id="conv2d-depthwise",
    ),
    pytest.param(  # depthwise with channel multiplier 2
        nn.Conv2d(4, 8, 3, groups=4),
        ((2, 4, 8, 8),),
        2 * 8 * 6 * 6 * 1 * 3 * 3,
        2 * 8 * 6 * 6,
        id="conv2d-depthwise-multiplier",
    ),
    pytest.param(
        nn.Conv2d(8, 16, 1), ((2, 8, 5, 5),), 2 * 16 * 5 * 5 * 8, 2 * 16 * 5 * 5, id="conv2d-1x1"
    ),
    pytest.param(  # stride 2, padding 1, dilation 2, groups 2: (9 + 2 - 5) // 2 + 1 = 4
        Fn(lambda x, w: F.conv2d(x, w, stride=2, padding=1, dilation=2, groups=2)),
        ((1, 4, 9, 9), (6, 2, 3, 3)),
        1 * 6 * 4 * 4 * 2 * 3 * 3,
        1 * 6 * 4 * 4,
        id="conv2d-functional-all-options",
    ),
    pytest.param(  # padding="same" with an even kernel pads (constant_pad_nd) first: 7 x 7 out
        nn.Conv2d(2, 4, 4, padding="same"),
        ((1, 2, 7, 7),),
        1 * 4 * 7 * 7 * 2 * 4 * 4,
        1 * 4 * 7 * 7,
        id="conv2d-same",
        marks=pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning"),
    ),
    pytest.param(  # reflection padding is a separate op with no arithmetic
        nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"),
        ((1, 2, 7, 7),),
        1 * 4 * 7 * 7 * 2 * 3 * 3,
        1 * 4 * 7 * 7,
        id="conv2d-reflect",
    ),
    pytest.param(  # unbatched: batch 1
        nn.Conv1d(3, 4, 3), ((3, 10),), 4 * 8 * 3 * 3, 4 * 8, id="conv1d-unbatched"
    ),
    pytest.param(
        nn.Conv2d(3, 4, 3), ((3, 8, 8),), 4 * 6 * 6 * 3 * 3 * 3, 4 * 6 * 6, id="conv2d-unbatched"
    ),
    # Transposed: every input element is scattered into C_out / groups x kernel outputs.
    pytest.param(  # L_out = (5 - 1) * 2 + 3 + 1 = 12
        nn.ConvTranspose1d(4, 6, 3, stride=2, output_padding=1, groups=2),
        ((2, 4, 5),),
        2 * 4 * 5 * (6 // 2) * 3,
        2 * 6 * 12,
        id="conv-transpose1d",
    ),
    pytest.param(  # H_out = (5 - 1) * 2 - 2 * 1 + 3 + 1 = 10
        nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        ((2, 4, 5, 5),),
        2 * 4 * 5 * 5 * (6 // 2) * 3 * 3,
        2 * 6 * 10 * 10,
        id="conv-transpose2d",
    ),
    pytest.param(  # out 6 x 8 x 10
        nn.ConvTranspose3d(4, 2, 2, stride=2),
        ((1, 4, 3, 4, 5),),
        1 * 4 * (3 * 4 * 5) * 2 * 2 * 2 * 2,
        1 * 2 * (6 * 8 * 10),
        id="conv-transpose3d",
    ),
    pytest.param(  # D = (2-1)*2 + 3 + 1 = 6, H = (3-1)*2 + 3 + 1 = 8, W = 6
        nn.ConvTranspose3d(4, 6, 3, stride=2, output_padding=1, groups=2),
        ((1, 4, 2, 3, 2),),
        1 * 4 * (2 * 3 * 2) * (6 // 2) * 3 * 3 * 3,
        1 * 6 * (6 * 8 * 6),
        id="conv-transpose3d-grouped-output-padding",
    ),
    pytest.param(  # dilation 2: (4 - 1) + 2 * (3 - 1) + 1 = 8
        nn.ConvTranspose2d(2, 3, 3, dilation=2),
        ((1, 2, 4, 4),),
        1 * 2 * 4 * 4 * 3 * 3 * 3,
        1 * 3 * 8 * 8,
        id="conv-transpose2d-dilated",
    ),
    pytest.param(  # unbatched, (5 - 1) + 3 = 7
        nn.ConvTranspose2d(4, 6, 3),
        ((4, 5, 5),),
        4 * 5 * 5 * 6 * 3 * 3,
        6 * 7 * 7,
        id="conv-transpose2d-unbatched",
    ),
]


@pytest.mark.parametrize("elementwise", [False, True], ids=["fvcore", "elementwise"])
@pytest.mark.parametrize(("module", "shapes", "flops", "activations"), CONV_CASES)
def test_convolution(
    module: nn.Module, shapes: Shapes, flops: int, activations: int, elementwise: bool
) -> None:
    check_counted(analyze(module, shapes, elementwise=elementwise), "conv", flops, activations)


DTYPES = [torch.float32, torch.float64, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_counts_do_not_depend_on_dtype(dtype: torch.dtype) -> None:
    conv = analyze(nn.Conv2d(2, 4, 3), ((1, 2, 7, 7),), dtype=dtype)
    check_counted(conv, "conv", 1 * 4 * 5 * 5 * 2 * 3 * 3, 1 * 4 * 5 * 5)
    linear = analyze(nn.Linear(3, 4), ((5, 2, 3),), dtype=dtype)
    check_counted(linear, "linear", 5 * 2 * 3 * 4, 5 * 2 * 4)
    norm = analyze(nn.BatchNorm2d(3).eval(), ((2, 3, 4, 4),), dtype=dtype)
    check_counted(norm, "batch_norm", (2 * 3 * 4 * 4) * 2, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_counts_on_cuda() -> None:
    # On CUDA batch norm runs as aten::cudnn_batch_norm; the counts must not change.
    device = "cuda"
    conv = analyze(nn.Conv2d(2, 4, 3), ((1, 2, 7, 7),), device=device)
    check_counted(conv, "conv", 1 * 4 * 5 * 5 * 2 * 3 * 3, 1 * 4 * 5 * 5)
    linear = analyze(nn.Linear(3, 4), ((5, 2, 3),), device=device)
    check_counted(linear, "linear", 5 * 2 * 3 * 4, 5 * 2 * 4)
    norm = analyze(nn.BatchNorm2d(3).eval(), ((2, 3, 4, 4),), device=device)
    check_counted(norm, "batch_norm", (2 * 3 * 4 * 4) * 2, 0)
    norm = analyze(nn.BatchNorm2d(3, track_running_stats=False), ((2, 3, 4, 4),), device=device)
    check_counted(norm, "batch_norm", (2 * 3 * 4 * 4) * 5, 0)


# --- normalisation ------------------------------------------------------------------------------

NUM_BATCHES_TRACKED = {"aten::add_": 1}  # nn.BatchNorm's `num_batches_tracked += 1` in training

NORM_CASES = [
    # (module, input shapes, operator, flops, unsupported ops with element-wise counting off)
    pytest.param(
        nn.BatchNorm1d(3).eval(), ((4, 3),), "batch_norm", (4 * 3) * 2, {}, id="bn1d-eval"
    ),
    pytest.param(
        nn.BatchNorm1d(3).eval(), ((2, 3, 5),), "batch_norm", (2 * 3 * 5) * 2, {}, id="bn1d-eval-3d"
    ),
    pytest.param(
        nn.BatchNorm1d(3, affine=False).eval(),
        ((4, 3),),
        "batch_norm",
        (4 * 3) * 1,
        {},
        id="bn1d-eval-noaffine",
    ),
    pytest.param(
        nn.BatchNorm1d(3).train(),
        ((4, 3),),
        "batch_norm",
        (4 * 3) * 5,
        NUM_BATCHES_TRACKED,
        id="bn1d-train",
    ),
    pytest.param(
        nn.BatchNorm2d(3).eval(),
        ((2, 3, 4, 4),),
        "batch_norm",
        (2 * 3 * 4 * 4) * 2,
        {},
        id="bn2d-eval",
    ),
    pytest.param(
        nn.BatchNorm2d(3, affine=False).eval(),
        ((2, 3, 4, 4),),
        "batch_norm",
        (2 * 3 * 4 * 4) * 1,
        {},
        id="bn2d-eval-noaffine",
    ),
    pytest.param(
        nn.BatchNorm2d(3).train(),
        ((2, 3, 4, 4),),
        "batch_norm",
        (2 * 3 * 4 * 4) * 5,
        NUM_BATCHES_TRACKED,
        id="bn2d-train",
    ),
    pytest.param(
        nn.BatchNorm2d(3, affine=False).train(),
        ((2, 3, 4, 4),),
        "batch_norm",
        (2 * 3 * 4 * 4) * 4,
        NUM_BATCHES_TRACKED,
        id="bn2d-train-noaffine",
    ),
    pytest.param(  # no running statistics: batch statistics even in eval mode
        nn.BatchNorm2d(3, track_running_stats=False).eval(),
        ((2, 3, 4, 4),),
        "batch_norm",
        (2 * 3 * 4 * 4) * 5,
        {},
        id="bn2d-no-running-stats",
    ),
    pytest.param(
        nn.BatchNorm3d(3).eval(),
        ((2, 3, 2, 3, 4),),
        "batch_norm",
        (2 * 3 * 2 * 3 * 4) * 2,
        {},
        id="bn3d-eval",
    ),
    pytest.param(
        nn.BatchNorm3d(3, affine=False).eval(),
        ((2, 3, 2, 3, 4),),
        "batch_norm",
        (2 * 3 * 2 * 3 * 4) * 1,
        {},
        id="bn3d-eval-noaffine",
    ),
    pytest.param(
        nn.BatchNorm3d(3).train(),
        ((2, 3, 2, 3, 4),),
        "batch_norm",
        (2 * 3 * 2 * 3 * 4) * 5,
        NUM_BATCHES_TRACKED,
        id="bn3d-train",
    ),
    pytest.param(
        nn.BatchNorm3d(3, affine=False).train(),
        ((2, 3, 2, 3, 4),),
        "batch_norm",
        (2 * 3 * 2 * 3 * 4) * 4,
        NUM_BATCHES_TRACKED,
        id="bn3d-train-noaffine",
    ),
    pytest.param(nn.LayerNorm(4), ((2, 3, 4),), "layer_norm", (2 * 3 * 4) * 5, {}, id="layer-norm"),
    pytest.param(
        nn.LayerNorm((3, 4)), ((2, 3, 4),), "layer_norm", (2 * 3 * 4) * 5, {}, id="layer-norm-2d"
    ),
    pytest.param(
        nn.LayerNorm(4, elementwise_affine=False),
        ((2, 3, 4),),
        "layer_norm",
        (2 * 3 * 4) * 4,
        {},
        id="layer-norm-noaffine",
    ),
    pytest.param(  # a weight without a bias is still affine
        nn.LayerNorm(4, bias=False),
        ((2, 3, 4),),
        "layer_norm",
        (2 * 3 * 4) * 5,
        {},
        id="layer-norm-nobias",
    ),
    pytest.param(
        nn.GroupNorm(2, 4), ((2, 4, 3, 3),), "group_norm", (2 * 4 * 3 * 3) * 5, {}, id="group-norm"
    ),
    pytest.param(
        nn.GroupNorm(2, 4, affine=False),
        ((2, 4, 3, 3),),
        "group_norm",
        (2 * 4 * 3 * 3) * 4,
        {},
        id="group-norm-noaffine",
    ),
    # Instance norm runs training-mode batch norm on a (1, N * C, ...) view of its input.
    pytest.param(
        nn.InstanceNorm1d(4),
        ((2, 4, 5),),
        "instance_norm",
        (2 * 4 * 5) * 4,
        {},
        id="instance-norm1d",
    ),
    pytest.param(
        nn.InstanceNorm2d(4),
        ((2, 4, 3, 3),),
        "instance_norm",
        (2 * 4 * 3 * 3) * 4,
        {},
        id="instance-norm2d",
    ),
    pytest.param(
        nn.InstanceNorm2d(4, affine=True),
        ((2, 4, 3, 3),),
        "instance_norm",
        (2 * 4 * 3 * 3) * 5,
        {},
        id="instance-norm2d-affine",
    ),
    pytest.param(
        nn.InstanceNorm3d(4, affine=True),
        ((2, 4, 2, 3, 3),),
        "instance_norm",
        (2 * 4 * 2 * 3 * 3) * 5,
        {},
        id="instance-norm3d-affine",
    ),
    pytest.param(  # with running statistics in eval mode it normalises like eval batch norm
        nn.InstanceNorm2d(4, affine=True, track_running_stats=True).eval(),
        ((2, 4, 3, 3),),
        "instance_norm",
        (2 * 4 * 3 * 3) * 2,
        {},
        id="instance-norm2d-running-stats-eval",
    ),
]


@pytest.mark.parametrize(("module", "shapes", "operator", "flops", "unsupported"), NORM_CASES)
def test_norm(
    module: nn.Module, shapes: Shapes, operator: str, flops: int, unsupported: dict[str, int]
) -> None:
    analysis = analyze(module, shapes)
    assert analysis.total() == flops
    assert analysis.by_operator() == {operator: flops}
    assert analysis.unsupported_ops() == unsupported
    assert analysis.total("activations") == 0
    assert analysis.unsupported_ops("activations") == {}
    # With element-wise counting on the norm costs the same; the counter update, an add_ on a
    # 0-d tensor, adds 1.
    counted = analyze(module, shapes, elementwise=True)
    assert counted.by_operator()[operator] == flops
    assert counted.total() == flops + (1 if unsupported else 0)
    assert counted.unsupported_ops() == {}
    assert counted.total("activations") == 0


# --- pooling ------------------------------------------------------------------------------------

ADAPTIVE_AVG_CASES = [
    # (module, input shapes, operator, flops = input elements)
    pytest.param(  # ATen: unsqueeze, then aten::mean
        nn.AdaptiveAvgPool1d(1), ((2, 3, 8),), "adaptive_avg_pool1d", 2 * 3 * 8, id="1d-to-1"
    ),
    pytest.param(
        nn.AdaptiveAvgPool2d(1), ((2, 3, 8, 8),), "adaptive_avg_pool2d", 2 * 3 * 8 * 8, id="2d-to-1"
    ),
    pytest.param(
        nn.AdaptiveAvgPool3d(1),
        ((2, 3, 4, 4, 4),),
        "adaptive_avg_pool3d",
        2 * 3 * 4 * 4 * 4,
        id="3d-to-1",
    ),
    pytest.param(
        nn.AdaptiveAvgPool2d(1), ((3, 8, 8),), "adaptive_avg_pool2d", 3 * 8 * 8, id="2d-unbatched"
    ),
    pytest.param(
        nn.AdaptiveAvgPool1d(4), ((2, 3, 8),), "adaptive_avg_pool1d", 2 * 3 * 8, id="1d-to-4"
    ),
    pytest.param(
        nn.AdaptiveAvgPool2d((3, 2)),
        ((2, 3, 8, 8),),
        "adaptive_avg_pool2d",
        2 * 3 * 8 * 8,
        id="2d-to-3x2",
    ),
    pytest.param(
        nn.AdaptiveAvgPool3d(2),
        ((2, 3, 4, 4, 4),),
        "adaptive_avg_pool3d",
        2 * 3 * 4 * 4 * 4,
        id="3d-to-2",
    ),
    pytest.param(
        Fn(lambda x: F.adaptive_avg_pool2d(x, 1)),
        ((2, 3, 8, 8),),
        "adaptive_avg_pool2d",
        2 * 3 * 8 * 8,
        id="functional-2d-to-1",
    ),
]


@pytest.mark.parametrize("elementwise", [False, True], ids=["fvcore", "elementwise"])
@pytest.mark.parametrize(("module", "shapes", "operator", "flops"), ADAPTIVE_AVG_CASES)
def test_adaptive_avg_pool(
    module: nn.Module, shapes: Shapes, operator: str, flops: int, elementwise: bool
) -> None:
    # Counted either way, and exactly once (not again as a reduction with element-wise on).
    analysis = analyze(module, shapes, elementwise=elementwise)
    assert analysis.total() == flops
    assert analysis.by_operator() == {operator: flops}
    assert analysis.unsupported_ops() == {}
    assert analysis.total("activations") == 0
    assert analysis.unsupported_ops("activations") == {}


WINDOW_POOL_CASES = [
    # (module, input shapes, ATen op, flops with element-wise counting on)
    # Window pools: output elements x window size.
    pytest.param(  # 1-d pools run as 2-d ones with a 1 x k window
        nn.MaxPool1d(2),
        ((2, 3, 8),),
        "aten::max_pool2d_with_indices",
        (2 * 3 * 4) * 2,
        id="max-pool1d",
    ),
    pytest.param(
        nn.MaxPool2d(2),
        ((2, 3, 8, 8),),
        "aten::max_pool2d_with_indices",
        (2 * 3 * 4 * 4) * (2 * 2),
        id="max-pool2d",
    ),
    pytest.param(  # overlapping windows: every output reads 3 x 3 inputs
        nn.MaxPool2d(3, stride=1, padding=1),
        ((2, 3, 8, 8),),
        "aten::max_pool2d_with_indices",
        (2 * 3 * 8 * 8) * (3 * 3),
        id="max-pool2d-overlapping",
    ),
    pytest.param(  # ceil_mode: 3 windows per dim, rows [0, 1], [2, 3] and [4] (the last clipped)
        nn.MaxPool2d(2, ceil_mode=True),
        ((1, 1, 5, 5),),
        "aten::max_pool2d_with_indices",
        (2 + 2 + 1) * (2 + 2 + 1),
        id="max-pool2d-ceil",
    ),
    pytest.param(
        nn.MaxPool2d(2, return_indices=True),
        ((2, 3, 8, 8),),
        "aten::max_pool2d_with_indices",
        (2 * 3 * 4 * 4) * (2 * 2),
        id="max-pool2d-indices",
    ),
    pytest.param(
        nn.MaxPool3d(2),
        ((2, 3, 4, 4, 4),),
        "aten::max_pool3d_with_indices",
        (2 * 3 * 2 * 2 * 2) * (2 * 2 * 2),
        id="max-pool3d",
    ),
    pytest.param(
        nn.AvgPool1d(2), ((2, 3, 8),), "aten::avg_pool2d", (2 * 3 * 4) * 2, id="avg-pool1d"
    ),
    pytest.param(
        nn.AvgPool2d((2, 4)),
        ((2, 3, 8, 8),),
        "aten::avg_pool2d",
        (2 * 3 * 4 * 2) * (2 * 4),
        id="avg-pool2d-rectangular",
    ),
    pytest.param(  # (7 + 2 - 3) // 2 + 1 = 4
        nn.AvgPool2d(3, stride=2, padding=1),
        ((1, 2, 7, 7),),
        "aten::avg_pool2d",
        (1 * 2 * 4 * 4) * (3 * 3),
        id="avg-pool2d-strided-padded",
    ),
    pytest.param(
        nn.AvgPool3d(2),
        ((2, 3, 4, 4, 4),),
        "aten::avg_pool3d",
        (2 * 3 * 2 * 2 * 2) * (2 * 2 * 2),
        id="avg-pool3d",
    ),
    pytest.param(  # unbatched
        nn.MaxPool2d(2),
        ((3, 8, 8),),
        "aten::max_pool2d_with_indices",
        (3 * 4 * 4) * (2 * 2),
        id="max-pool2d-unbatched",
    ),
    # ATen calls with one kernel size for every pooled dim.
    pytest.param(
        Fn(lambda x: torch.ops.aten.max_pool2d_with_indices(x, [2])),
        ((1, 2, 8, 8),),
        "aten::max_pool2d_with_indices",
        (1 * 2 * 4 * 4) * (2 * 2),
        id="aten-max-pool2d-one-size",
    ),
    pytest.param(
        Fn(lambda x: torch.ops.aten.avg_pool2d(x, [3])),
        ((1, 2, 9, 9),),
        "aten::avg_pool2d",
        (1 * 2 * 3 * 3) * (3 * 3),
        id="aten-avg-pool2d-one-size",
    ),
    pytest.param(
        Fn(lambda x: torch.ops.aten.avg_pool3d(x, [2])),
        ((1, 2, 4, 4, 4),),
        "aten::avg_pool3d",
        (1 * 2 * 2 * 2 * 2) * (2 * 2 * 2),
        id="aten-avg-pool3d-one-size",
    ),
    # Adaptive max pools: the windows tile the input, one compare per input element.
    pytest.param(
        nn.AdaptiveMaxPool1d(2),
        ((2, 3, 8),),
        "aten::adaptive_max_pool2d",
        2 * 3 * 8,
        id="adaptive-max-pool1d",
    ),
    pytest.param(
        nn.AdaptiveMaxPool2d(2),
        ((2, 3, 8, 8),),
        "aten::adaptive_max_pool2d",
        2 * 3 * 8 * 8,
        id="adaptive-max-pool2d",
    ),
    pytest.param(
        nn.AdaptiveMaxPool3d(2),
        ((2, 3, 4, 4, 4),),
        "aten::adaptive_max_pool3d",
        2 * 3 * 4 * 4 * 4,
        id="adaptive-max-pool3d",
    ),
]


@pytest.mark.parametrize(("module", "shapes", "op", "flops"), WINDOW_POOL_CASES)
def test_window_and_adaptive_max_pool(
    module: nn.Module, shapes: Shapes, op: str, flops: int
) -> None:
    off = analyze(module, shapes)
    assert off.total() == 0
    assert off.by_operator() == {}
    assert off.unsupported_ops() == {op: 1}
    assert off.total("activations") == 0
    assert off.unsupported_ops("activations") == {}

    on = analyze(module, shapes, elementwise=True)
    assert on.total() == flops
    assert list(on.by_operator().values()) == [flops]
    assert on.unsupported_ops() == {}
    assert on.total("activations") == 0
    assert on.unsupported_ops("activations") == {}
    # Recounting the same trace with element-wise counting on gives the same numbers.
    assert off.recount(elementwise=True).total() == flops


# --- whole small networks -----------------------------------------------------------------------


def test_small_cnn_adds_up() -> None:
    # conv -> bn -> relu -> maxpool -> conv -> global pool -> linear, every number by hand.
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # (2, 8, 8, 8)
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (2, 8, 4, 4)
        nn.Conv2d(8, 16, 3),  # (2, 16, 2, 2)
        nn.AdaptiveAvgPool2d(1),  # (2, 16, 1, 1)
        nn.Flatten(),
        nn.Linear(16, 10),  # (2, 10)
    ).eval()
    conv = 2 * 8 * 8 * 8 * 3 * 3 * 3 + 2 * 16 * 2 * 2 * 8 * 3 * 3
    bn = (2 * 8 * 8 * 8) * 2
    pool = 2 * 16 * 2 * 2
    linear = 2 * 16 * 10
    analysis = analyze(model, ((2, 3, 8, 8),))
    assert analysis.by_operator() == {
        "conv": conv,
        "batch_norm": bn,
        "adaptive_avg_pool2d": pool,
        "linear": linear,
    }
    assert analysis.total() == conv + bn + pool + linear
    assert analysis.unsupported_ops() == {"aten::relu": 1, "aten::max_pool2d_with_indices": 1}
    assert analysis.total("activations") == 2 * 8 * 8 * 8 + 2 * 16 * 2 * 2 + 2 * 10
    assert analysis.by_module()["0"] == 2 * 8 * 8 * 8 * 3 * 3 * 3
    assert analysis.by_module()["7"] == linear

    counted = analyze(model, ((2, 3, 8, 8),), elementwise=True)
    relu = 2 * 8 * 8 * 8  # 1 per element
    max_pool = (2 * 8 * 4 * 4) * (2 * 2)
    assert counted.total() == conv + bn + pool + linear + relu + max_pool
    assert counted.unsupported_ops() == {}

"""The CUDA (and MPS, and out-of-tree) attention backends, which this machine cannot run.

Their calls are built from torch's own schemas (`helpers.recorded` refuses an argument name the
schema does not have) and, where a meta kernel exists, recorded for real by running the op on fake
tensors. Every backend must count the same attention as the CPU kernel does, measured here.

The attention: B=2 sequences, H=4 query heads sharing HKV=2 key/value heads, LQ=8 queries,
LK=6 keys, E=Ev=16. SDPA-level ops take (B, H, L, E); the flash and memory-efficient kernels
take (B, L, H, E); packed variable-length batches (T, H, E).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import torchtally
from torchtally.records import OpCall

from .helpers import T, count_calls, recorded

ATTENTION = "scaled_dot_product_attention"
aten = torch.ops.aten
B, H, HKV, LQ, LK, E = 2, 4, 2, 8, 6, 16


def bhsd(lq: int = LQ, lk: int = LK) -> tuple[Any, Any, Any]:
    return T(B, H, lq, E), T(B, HKV, lk, E), T(B, HKV, lk, E)


def bshd(lq: int = LQ, lk: int = LK) -> tuple[Any, Any, Any]:
    return T(B, lq, H, E), T(B, lk, HKV, E), T(B, lk, HKV, E)


def forward_call(backend: str, lq: int = LQ, lk: int = LK, causal: bool = False) -> OpCall:
    """One backend's forward op for the attention above, with SDPA's top-left causal mask."""
    sdpa = {"is_causal": causal}
    calls: dict[str, Callable[[], OpCall]] = {
        "cpu flash": lambda: recorded(
            aten._scaled_dot_product_flash_attention_for_cpu.default, *bhsd(lq, lk), **sdpa
        ),
        "flash": lambda: recorded(
            aten._scaled_dot_product_flash_attention.default, *bhsd(lq, lk), **sdpa
        ),
        "efficient": lambda: recorded(
            aten._scaled_dot_product_efficient_attention.default, *bhsd(lq, lk), None, True, **sdpa
        ),
        "cudnn": lambda: recorded(
            aten._scaled_dot_product_cudnn_attention.default, *bhsd(lq, lk), None, True, **sdpa
        ),
        "overrideable": lambda: recorded(
            aten._scaled_dot_product_fused_attention_overrideable.default, *bhsd(lq, lk), **sdpa
        ),
        "mps math": lambda: recorded(
            aten._scaled_dot_product_attention_math_for_mps.default,
            *bhsd(lq, lk),
            enable_gqa=True,
            **sdpa,
        ),
        "flash kernel": lambda: recorded(
            aten._flash_attention_forward.default,
            *bshd(lq, lk),
            None,  # cum_seq_q
            None,  # cum_seq_k
            lq,  # max_q
            lk,  # max_k
            0.0,  # dropout_p
            causal,  # is_causal
            False,  # return_debug_mask
        ),
        "efficient kernel": lambda: recorded(
            aten._efficient_attention_forward.default,
            *bshd(lq, lk),
            None,  # bias
            None,  # cu_seqlens_q
            None,  # cu_seqlens_k
            lq,  # max_seqlen_q
            lk,  # max_seqlen_k
            0.0,  # dropout_p
            1 if causal else 0,  # custom_mask_type: causal from the top left, as SDPA sends
        ),
        "cudnn kernel": lambda: recorded(
            aten._cudnn_attention_forward.default,
            *bhsd(lq, lk),
            None,  # attn_bias
            None,  # cum_seq_q
            None,  # cum_seq_k
            lq,  # max_q
            lk,  # max_k
            True,  # compute_log_sumexp
            is_causal=causal,
        ),
    }
    return calls[backend]()


FORWARD_BACKENDS = [
    "cpu flash",
    "flash",
    "efficient",
    "cudnn",
    "overrideable",
    "mps math",
    "flash kernel",
    "efficient kernel",
    "cudnn kernel",
]
# Non-square causal masks: the flash kernel aligns them bottom right, so SDPA never sends it one.
TOP_LEFT_BACKENDS = [b for b in FORWARD_BACKENDS if b not in ("flash", "flash kernel")]


class Sdpa(torch.nn.Module):
    def __init__(self, **sdpa: Any) -> None:
        super().__init__()
        self.sdpa = sdpa

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **self.sdpa)


def measured(
    lq: int = LQ, lk: int = LK, elementwise: bool = False, **sdpa: Any
) -> torchtally.Analysis:
    """The attention as this machine's CPU kernel runs it (F.scaled_dot_product_attention)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, h, n, E, generator=g) for h, n in ((H, lq), (HKV, lk), (HKV, lk)))
    analysis = torchtally.analyze(
        Sdpa(**sdpa), (q, k, v), elementwise=elementwise, warn_unsupported=False
    )
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in {c.op for c in analysis.trace.ops}
    return analysis


def test_the_measured_attention_by_hand() -> None:
    cpu = measured()
    # 2*4*8*6*16 for Q K^T and again for P V; scores 2*4*8*6 and output 2*4*8*16
    assert cpu.by_operator() == {ATTENTION: 2 * 6144}
    assert cpu.by_operator("activations") == {ATTENTION: 384 + 1024}


@pytest.mark.parametrize("backend", FORWARD_BACKENDS)
@pytest.mark.parametrize("elementwise", [False, True])
def test_every_backend_counts_the_measured_attention(backend: str, elementwise: bool) -> None:
    cpu = measured().recount(elementwise=elementwise)
    counted = count_calls(forward_call(backend), elementwise=elementwise)
    assert counted.by_operator() == cpu.by_operator()
    assert counted.by_operator("activations") == cpu.by_operator("activations")


@pytest.mark.parametrize("backend", FORWARD_BACKENDS)
def test_every_backend_counts_a_square_causal_mask_alike(backend: str) -> None:
    cpu = measured(LQ, LQ, is_causal=True)
    full = count_calls(forward_call(backend, LQ, LQ, causal=True))
    assert full.total() == cpu.total() == 2 * (2 * 4 * 8 * 8 * 16)
    half = count_calls(forward_call(backend, LQ, LQ, causal=True), options={"causal": "half"})
    cpu_half = cpu.recount(options={"causal": "half"})
    assert half.total() == cpu_half.total() == 2 * (2 * 4 * 36 * 16)  # 8 * 9 / 2 = 36 scores


@pytest.mark.parametrize("backend", TOP_LEFT_BACKENDS)
def test_top_left_causal_masks_when_lengths_differ(backend: str) -> None:
    cpu = measured(LQ, LK, is_causal=True).recount(options={"causal": "half"})
    half = count_calls(forward_call(backend, LQ, LK, causal=True), options={"causal": "half"})
    # query i sees keys 0..i: 1 + 2 + 3 + 4 + 5 + 6 + 6 + 6 = 33 of 48 scores per head
    assert half.total() == cpu.total() == 2 * (2 * 4 * 33 * 16)


def test_the_flash_kernel_aligns_causal_masks_bottom_right() -> None:
    # LQ=6 queries, LK=8 keys: query i sees keys 0..i+2: 3 + 4 + 5 + 6 + 7 + 8 = 33 scores
    call = forward_call("flash kernel", 6, 8, causal=True)
    half = count_calls(call, options={"causal": "half"})
    assert half.total() == 2 * (2 * 4 * 33 * 16)


def efficient_kernel(mask_type: int, window: int | None, lq: int, lk: int) -> OpCall:
    return recorded(
        aten._efficient_attention_forward.default,
        *bshd(lq, lk),
        None,
        None,
        None,
        lq,
        lk,
        0.0,
        mask_type,
        window_size=window,
    )


def test_the_efficient_kernel_bottom_right_mask_and_local_window() -> None:
    half = {"causal": "half"}
    # mask type 2, 6 queries and 8 keys: query i sees keys 0..i+2 (as flash): 33 scores
    assert count_calls(efficient_kernel(2, None, 6, 8), options=half).total() == 2 * (8 * 33 * 16)
    # mask type 1 with a window of 3: query i sees keys i-2..i: 1 + 2 + 3 * 6 = 21 of 8 x 8
    assert count_calls(efficient_kernel(1, 3, 8, 8), options=half).total() == 2 * (8 * 21 * 16)
    # the full square by default
    assert count_calls(efficient_kernel(1, 3, 8, 8)).total() == 2 * (8 * 64 * 16)


def flash_kernel(left: int | None, right: int | None, causal: bool = False) -> OpCall:
    return recorded(
        aten._flash_attention_forward.default,
        *bshd(8, 8),
        None,
        None,
        8,
        8,
        0.0,
        causal,
        False,
        window_size_left=left,
        window_size_right=right,
    )


def test_flash_kernel_sliding_windows() -> None:
    half = {"causal": "half"}
    # Mistral-style: causal with 2 keys to the left: query i sees i-2..i: 1 + 2 + 3 * 6 = 21
    assert count_calls(flash_kernel(2, -1, causal=True), options=half).total() == 2 * (8 * 21 * 16)
    # two-sided window of 1: i-1..i+1: 2 + 3 * 6 + 2 = 22
    assert count_calls(flash_kernel(1, 1), options=half).total() == 2 * (8 * 22 * 16)
    # -1 on both sides means no window: every score
    assert count_calls(flash_kernel(-1, -1), options=half).total() == 2 * (8 * 64 * 16)


def test_packed_sequences_count_rows_times_the_longest_keys() -> None:
    # 3 sequences packed into 13 rows, the longest 6 long; the lengths are data the trace does
    # not keep, so each row is charged the longest sequence's keys.
    call = recorded(
        aten._flash_attention_forward.default,
        T(13, H, E),
        T(13, HKV, E),
        T(13, HKV, E),
        T(4, dtype=torch.int32),  # cum_seq_q
        T(4, dtype=torch.int32),  # cum_seq_k
        6,
        6,
        0.0,
        True,
        False,
    )
    assert count_calls(call).total() == 2 * (4 * 13 * 6 * 16)
    # causal: a 6-long sequence keeps 21 of 36 scores, 3.5 per row: 13 * 21 // 6 = 45 per head
    assert count_calls(call, options={"causal": "half"}).total() == 2 * (4 * 45 * 16)


def test_the_efficient_kernel_packs_sequences_in_a_batch_of_one() -> None:
    call = recorded(
        aten._efficient_attention_forward.default,
        T(1, 13, H, E),
        T(1, 13, HKV, E),
        T(1, 13, HKV, E),
        None,
        T(4, dtype=torch.int32),
        T(4, dtype=torch.int32),
        6,
        6,
        0.0,
        0,
    )
    assert count_calls(call).total() == 2 * (4 * 13 * 6 * 16)


def test_a_paged_kv_cache_takes_the_keys_from_max_k() -> None:
    # one decoding step: 1 query per sequence against 40 cached keys held in pages of 16
    call = recorded(
        aten._flash_attention_forward.default,
        T(B, 1, H, E),
        T(7, 16, HKV, E),  # 7 pages of 16 keys
        T(7, 16, HKV, E),
        None,
        None,
        1,
        40,
        0.0,
        False,
        False,
        block_table=T(B, 3, dtype=torch.int32),
    )
    assert count_calls(call).total() == 2 * (B * H * 1 * 40 * E)


def test_masks_and_biases_add_one_flop_per_score_with_elementwise_counting() -> None:
    mask = torch.zeros(LQ, LK)
    cpu = measured(attn_mask=mask, elementwise=True)
    efficient = recorded(
        aten._scaled_dot_product_efficient_attention.default, *bhsd(), T(LQ, LK), True
    )
    flash = recorded(
        aten._flash_attention_forward.default,
        *bshd(),
        None,
        None,
        LQ,
        LK,
        0.0,
        False,
        False,
        alibi_slopes=T(H),
    )
    plain = measured(elementwise=True).total()
    assert cpu.total() == plain + 2 * 4 * 8 * 6  # the mask added to every score
    for call in (efficient, flash):
        assert count_calls(call, elementwise=True).total() == cpu.total()


# --- recorded for real: the ops run on fake tensors (their meta kernels) ------------------------


def _run_on_fakes(fn: Callable[..., Any], *shapes: tuple[int, ...]) -> torchtally.Analysis:
    from torchtally_testing import Fn

    inputs = tuple(torch.zeros(shape) for shape in shapes)
    return torchtally.analyze(Fn(fn), inputs, mode="fake", warn_unsupported=False)


Q, K, V = (B, H, LQ, E), (B, HKV, LK, E), (B, HKV, LK, E)
QS, KS, VS = (B, LQ, H, E), (B, LK, HKV, E), (B, LK, HKV, E)

FAKE_RUNS: dict[str, tuple[Callable[..., Any], tuple[tuple[int, ...], ...]]] = {
    "flash": (aten._scaled_dot_product_flash_attention, (Q, K, V)),
    "efficient": (
        lambda q, k, v: aten._scaled_dot_product_efficient_attention(q, k, v, None, True),
        (Q, K, V),
    ),
    "cudnn": (
        lambda q, k, v: aten._scaled_dot_product_cudnn_attention(q, k, v, None, True),
        (Q, K, V),
    ),
    "overrideable": (aten._scaled_dot_product_fused_attention_overrideable, (Q, K, V)),
    "mps math": (
        lambda q, k, v: aten._scaled_dot_product_attention_math_for_mps(q, k, v, enable_gqa=True),
        (Q, K, V),
    ),
    "flash kernel": (
        lambda q, k, v: aten._flash_attention_forward(
            q, k, v, None, None, LQ, LK, 0.0, False, False
        ),
        (QS, KS, VS),
    ),
    "efficient kernel": (
        lambda q, k, v: aten._efficient_attention_forward(
            q, k, v, None, None, None, LQ, LK, 0.0, 0
        ),
        (QS, KS, VS),
    ),
}


@pytest.mark.parametrize("backend", list(FAKE_RUNS))
def test_backends_recorded_on_fake_tensors_count_the_measured_attention(backend: str) -> None:
    fn, shapes = FAKE_RUNS[backend]
    analysis = _run_on_fakes(fn, *shapes)
    assert analysis.mode == "fake"
    cpu = measured()
    assert analysis.by_operator() == cpu.by_operator()
    assert analysis.by_operator("activations") == cpu.by_operator("activations")
    assert analysis.unsupported_ops() == {}


BACKWARD_FAKE_RUNS: dict[str, tuple[Callable[..., Any], tuple[tuple[int, ...], ...]]] = {
    "flash": (
        lambda g, q, k, v, o, lse: aten._scaled_dot_product_flash_attention_backward(
            g, q, k, v, o, lse, None, None, LQ, LK, 0.0, False, torch.zeros(2), torch.zeros(())
        ),
        (Q, Q, K, V, Q, (B, H, LQ)),
    ),
    "efficient": (
        lambda g, q, k, v, o, lse: aten._scaled_dot_product_efficient_attention_backward(
            g, q, k, v, None, o, lse, torch.zeros(()), torch.zeros(()), 0.0, [True] * 3 + [False]
        ),
        (Q, Q, K, V, Q, (B, H, 32)),
    ),
    "flash kernel": (
        lambda g, q, k, v, o, lse: aten._flash_attention_backward(
            g, q, k, v, o, lse, None, None, LQ, LK, 0.0, False, torch.zeros(2), torch.zeros(())
        ),
        (QS, QS, KS, VS, QS, (B, H, LQ)),
    ),
}


@pytest.mark.parametrize("backend", list(BACKWARD_FAKE_RUNS))
def test_backward_ops_recorded_on_fake_tensors(backend: str) -> None:
    fn, shapes = BACKWARD_FAKE_RUNS[backend]
    analysis = _run_on_fakes(fn, *shapes)
    # dV, dP, dQ, dK: 4 * 2*4*8*6*16 (the call ran outside autograd, so its phase is forward)
    assert analysis.by_operator() == {ATTENTION: 4 * 6144}
    assert analysis.total("activations") == 0


def test_varlen_attention_recorded_on_fake_tensors() -> None:
    from torch.nn.attention.varlen import varlen_attn

    cum = torch.tensor([0, 5, 8, 13], dtype=torch.int32)

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return varlen_attn(q, k, v, cum, cum, 5, 5, window_size=(-1, 0))

    analysis = _run_on_fakes(attend, (13, H, E), (13, H, E), (13, H, E))
    assert "torch_attn::_varlen_attn" in {call.op for call in analysis.trace.ops}
    # 13 packed rows, each charged the longest sequence's 5 keys, E + Ev = 32
    assert analysis.by_operator() == {ATTENTION: 4 * 13 * 5 * 32}
    # causal (window (-1, 0)): a 5-long sequence keeps 15 of 25, 13 * 15 // 5 = 39 per head
    half = analysis.recount(options={"causal": "half"})
    assert half.by_operator() == {ATTENTION: 4 * 39 * 32}


@pytest.mark.parametrize("backward", [False, True])
def test_attention_kernels_move_bytes_under_the_flops_name(tally: Any, backward: bool) -> None:
    q = torch.randn(2, 4, 16, 8, requires_grad=backward)
    analysis = tally(lambda q: F.scaled_dot_product_attention(q, q, q), q, backward=backward)
    for phase in ("forward", "backward") if backward else ("forward",):
        flops = set(analysis.by_operator(phase=phase))
        assert "scaled_dot_product_attention" in flops
        assert flops <= set(analysis.by_operator("bytes", phase=phase)), phase

"""`torchtally.generation`: the prefill and every decode step against analytic counts, and the
derived decode (a few steps traced) against tracing every step, on one small model of each kind.

Notation: B batch, P prompt tokens, N new tokens, d width, h query heads, kv key/value heads,
hd head size, f MLP width, V vocabulary, L layers. Decode step i (1..N-1) feeds token i over a
cache of P + i - 1 tokens, so its attention sees P + i keys. One multiply-add is one flop;
attention per layer is ``2 * B * h * q * keys * hd`` (Q K^T, then P V).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import pytest
import torch
from torch import nn

import torchtally

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
transformers = pytest.importorskip("transformers")

ATTENTION = "scaled_dot_product_attention"
B, P, N = 2, 8, 12


def attention(queries: int, keys: int, heads: int, head_dim: int, batch: int = B) -> int:
    return 2 * batch * heads * queries * keys * head_dim


def on_meta(build: Callable[[], nn.Module], dtype: torch.dtype | None = None) -> nn.Module:
    with torch.device("meta"):
        model = build()
    return model.to(dtype) if dtype is not None else model


@dataclass(frozen=True)
class Kind:
    build: Callable[[], nn.Module]
    prefill: dict[str, int]  # flops per operator
    step: Callable[[int], dict[str, int]]  # decode step i's flops per operator


def llama(kv_heads: int) -> Kind:
    d, h, hd, f, vocab, layers = 64, 4, 16, 128, 100, 2
    config = transformers.LlamaConfig(
        hidden_size=d,
        intermediate_size=f,
        num_hidden_layers=layers,
        num_attention_heads=h,
        num_key_value_heads=kv_heads,
        vocab_size=vocab,
    )
    per_token = layers * (2 * d * d + 2 * d * kv_heads * hd + 3 * d * f)  # q, o; k, v; MLP
    return Kind(
        build=lambda: on_meta(lambda: transformers.LlamaForCausalLM(config)),
        # the LM head on the last position only (logits_to_keep=1)
        prefill={
            "linear": B * P * per_token + B * d * vocab,
            ATTENTION: layers * attention(P, P, h, hd),
        },
        step=lambda i: {
            "linear": B * per_token + B * d * vocab,
            ATTENTION: layers * attention(1, P + i, h, hd),
        },
    )


def mistral() -> Kind:
    # a sliding window of 12 > P: steps 1-4 attend to 9-12 keys, then always 12
    d, h, kv_heads, hd, f, vocab, layers, window = 64, 4, 2, 16, 128, 100, 2, 12
    config = transformers.MistralConfig(
        hidden_size=d,
        intermediate_size=f,
        num_hidden_layers=layers,
        num_attention_heads=h,
        num_key_value_heads=kv_heads,
        vocab_size=vocab,
        sliding_window=window,
    )
    per_token = layers * (2 * d * d + 2 * d * kv_heads * hd + 3 * d * f)
    return Kind(
        build=lambda: on_meta(lambda: transformers.MistralForCausalLM(config)),
        prefill={
            "linear": B * P * per_token + B * d * vocab,
            ATTENTION: layers * attention(P, P, h, hd),
        },
        step=lambda i: {
            "linear": B * per_token + B * d * vocab,
            ATTENTION: layers * attention(1, min(P + i, window), h, hd),
        },
    )


def mixtral() -> Kind:
    # 4 experts, 2 per token: each token runs 2 experts (gate and up d -> 2f, down f -> d) as
    # grouped matmuls, whichever 2 the router picks.
    d, h, kv_heads, hd, f, vocab, layers, experts, top_k = 64, 4, 2, 16, 128, 100, 2, 4, 2
    config = transformers.MixtralConfig(
        hidden_size=d,
        intermediate_size=f,
        num_hidden_layers=layers,
        num_attention_heads=h,
        num_key_value_heads=kv_heads,
        vocab_size=vocab,
        num_local_experts=experts,
        num_experts_per_tok=top_k,
    )
    dense = layers * (2 * d * d + 2 * d * kv_heads * hd + d * experts)  # + the router
    routed = layers * top_k * (d * 2 * f + f * d)
    return Kind(
        build=lambda: on_meta(lambda: transformers.MixtralForCausalLM(config)),
        prefill={
            "linear": B * P * dense + B * d * vocab,
            "_grouped_mm": B * P * routed,
            ATTENTION: layers * attention(P, P, h, hd),
        },
        step=lambda i: {
            "linear": B * dense + B * d * vocab,
            "_grouped_mm": B * routed,
            ATTENTION: layers * attention(1, P + i, h, hd),
        },
    )


def gpt2() -> Kind:
    # Conv1D layers run addmm; the LM head is tied to the embedding; layer norms cost 5 per
    # element (2 per layer and a final one)
    d, h, hd, vocab, layers = 64, 4, 16, 100, 2
    config = transformers.GPT2Config(n_embd=d, n_layer=layers, n_head=h, vocab_size=vocab)
    per_token = layers * (d * 3 * d + d * d + d * 4 * d + 4 * d * d)
    return Kind(
        build=lambda: on_meta(lambda: transformers.GPT2LMHeadModel(config)),
        prefill={
            "addmm": B * P * per_token,
            ATTENTION: layers * attention(P, P, h, hd),
            "layer_norm": 5 * B * P * d * (2 * layers + 1),
            "linear": B * d * vocab,
        },
        step=lambda i: {
            "addmm": B * per_token,
            ATTENTION: layers * attention(1, P + i, h, hd),
            "layer_norm": 5 * B * d * (2 * layers + 1),
            "linear": B * d * vocab,
        },
    )


def t5() -> Kind:
    # the prompt is the encoder's input; the decoder starts from its start token, so decode step
    # i feeds decoder token i + 1 over a self-attention cache of i tokens and attends to the P
    # encoder tokens. Cross-attention's keys and values are projected once, in the prefill.
    d, h, hd, f, vocab, layers = 64, 4, 16, 128, 100, 2
    inner = h * hd
    config = transformers.T5Config(
        d_model=d, d_ff=f, num_layers=layers, num_heads=h, d_kv=hd, vocab_size=vocab
    )
    encoder = layers * (4 * d * inner + 2 * d * f)  # per encoder token
    decoder = layers * (4 * d * inner + 2 * d * inner + 2 * d * f)  # self q,k,v,o; cross q,o; MLP
    cross_kv = layers * 2 * d * inner  # per encoder token, once
    return Kind(
        build=lambda: on_meta(lambda: transformers.T5ForConditionalGeneration(config)),
        prefill={
            "linear": B * P * (encoder + cross_kv) + B * (decoder + d * vocab),
            ATTENTION: layers * (attention(P, P, h, hd) + attention(1, 1, h, hd))
            + layers * attention(1, P, h, hd),
        },
        step=lambda i: {
            "linear": B * (decoder + d * vocab),
            ATTENTION: layers * (attention(1, i + 1, h, hd) + attention(1, P, h, hd)),
        },
    )


KINDS: dict[str, Callable[[], Kind]] = {
    "llama-mha": lambda: llama(kv_heads=4),
    "llama-gqa": lambda: llama(kv_heads=2),
    "mistral-sliding-window": mistral,
    "mixtral-moe": mixtral,
    "gpt2-tied-head": gpt2,
    "t5-encoder-decoder": t5,
}


@cache
def kind(name: str) -> Kind:
    return KINDS[name]()


@cache
def model(name: str) -> nn.Module:
    return kind(name).build()


@cache
def derived(name: str) -> torchtally.Generation:
    return torchtally.generation(model(name), P, N, batch=B, warn_unsupported=False)


@cache
def every(name: str) -> torchtally.Generation:
    return torchtally.generation(
        model(name), P, N, batch=B, warn_unsupported=False, trace_every_step=True
    )


@pytest.fixture(autouse=True, scope="module")
def _free_models() -> Iterator[None]:
    yield
    for cached in (kind, model, derived, every):
        cached.cache_clear()


@pytest.mark.parametrize("name", KINDS)
def test_prefill_and_derived_steps_match_the_formulas(name: str) -> None:
    result = derived(name)
    assert result.prefill.by_operator() == kind(name).prefill
    for i in range(1, N):
        assert result.step(i).by_operator() == kind(name).step(i), f"step {i}"
    assert result.decode.total() == sum(sum(kind(name).step(i).values()) for i in range(1, N))
    assert result.total() == result.prefill.total() + result.decode.total()


@pytest.mark.slow
@pytest.mark.parametrize("name", KINDS)
def test_derived_decode_equals_tracing_every_step(name: str) -> None:
    result = derived(name)
    traced = every(name)
    assert traced.traced_steps == tuple(range(1, N))
    assert len(result.traced_steps) < N - 1
    for i in range(1, N):  # each traced step against the formulas
        assert traced.decode_step(i).by_operator() == kind(name).step(i), f"step {i}"
    for metric in result.metrics:
        assert result.step_totals(metric) == traced.step_totals(metric)
        assert result.decode.by_module_and_operator(metric) == (
            traced.decode.by_module_and_operator(metric)
        )
        assert result.decode.unsupported_ops(metric) == traced.decode.unsupported_ops(metric)
    assert result.decode.values == traced.decode.values  # every count, module and operator


def test_a_linear_decode_traces_three_steps() -> None:
    result = derived("llama-gqa")
    assert result.traced_steps == (1, 6, 11)
    assert [(s.first, s.last) for s in result.segments] == [(1, 11)]


def test_the_sliding_window_splits_the_decode_where_the_window_fills() -> None:
    # steps 1-3 grow; step 4 is the first whose cache is trimmed to the window; 5-11 constant
    result = derived("mistral-sliding-window")
    assert [(s.first, s.last) for s in result.segments][-1] == (5, 11)
    assert (
        result.step_totals(module="model.layers.0.self_attn")[3:]
        == [attention(1, 12, 4, 16) + B * (2 * 64 * 64 + 2 * 64 * 32)] * 8
    )


def test_queries_sum_the_prefill_and_the_decode() -> None:
    result = derived("llama-gqa")
    for module in ("", "model.layers.1.self_attn", "lm_head"):
        assert result.total(module=module) == result.prefill.total(
            module=module
        ) + result.decode.total(module=module)
    assert (
        result.by_operator()[ATTENTION]
        == result.prefill.by_operator()[ATTENTION] + result.decode.by_operator()[ATTENTION]
    )
    by_module = result.by_module("activations")
    assert by_module["lm_head"] == B * 100 * N  # one row of logits per sequence and token
    assert set(result.unsupported_ops()) >= {"aten::mul", "aten::silu"}


def test_per_token_figures() -> None:
    result = derived("llama-gqa")
    per = result.per_token()
    assert per["prefill_per_prompt_token"] == result.prefill.total() / (B * P)
    assert per["decode_per_token"] == result.decode.total() / (B * (N - 1))
    assert per["per_generated_token"] == result.total() / (B * N)


def test_kv_cache_weights_and_parameters() -> None:
    result = derived("llama-gqa")
    # keys and values, per layer, at the P + N - 1 tokens the cache holds after the last step
    assert result.kv_cache_bytes == 2 * 2 * B * 2 * 16 * (P + N - 1) * 4
    net = model("llama-gqa")
    assert result.params == result.active_params == sum(p.numel() for p in net.parameters())
    assert result.weight_bytes == 4 * result.params


def test_moe_active_parameters_count_the_routed_experts_a_token_runs() -> None:
    result = derived("mixtral-moe")
    experts = 2 * 4 * (64 * 2 * 128 + 128 * 64)  # layers x experts x (gate_up + down)
    assert result.active_params == result.params - experts // 2  # 2 of 4 experts per token
    assert torchtally.active_parameters(model("mixtral-moe")) == result.active_params


def test_tied_head_is_one_parameter() -> None:
    result = derived("gpt2-tied-head")
    net = model("gpt2-tied-head")
    assert net.lm_head.weight is net.transformer.wte.weight
    assert result.params == sum(p.numel() for p in net.parameters())


def test_new_tokens_1_is_the_prefill_alone() -> None:
    result = torchtally.generation(model("llama-gqa"), P, 1, batch=B, warn_unsupported=False)
    assert result.segments == () and result.decode.total() == 0
    assert result.total() == result.prefill.total()
    assert result.kv_cache_bytes == 2 * 2 * B * 2 * 16 * P * 4


def test_untraced_step_is_traced_on_demand_and_agrees() -> None:
    result = derived("llama-gqa")
    assert 4 not in result.traced_steps
    step = result.decode_step(4)
    assert step.by_module_and_operator() == result.step(4).by_module_and_operator()
    assert result.decode_step(4) is step  # kept
    assert 4 not in result.traced_steps  # traced_steps are those the decode was counted from


def test_static_cache_attends_to_the_whole_cache_every_step() -> None:
    result = torchtally.generation(
        model("llama-gqa"), P, N, batch=B, cache="static", warn_unsupported=False
    )
    keys = P + N - 1  # max_cache_len, as generate sizes it
    # the prefill attends to the prompt's own keys (Llama does not read the empty cache)
    assert result.prefill.by_operator()[ATTENTION] == 2 * attention(P, P, 4, 16)
    assert set(result.step_totals(module="model.layers.0.self_attn.o_proj")) == {B * 64 * 64}
    assert result.decode_step(3).by_operator()[ATTENTION] == 2 * attention(1, keys, 4, 16)


def test_real_mode_counts_as_fake_and_leaves_the_model_alone() -> None:
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=50,
    )
    torch.manual_seed(0)
    net = transformers.LlamaForCausalLM(config).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    real = torchtally.generation(net, 5, 4, mode="real", warn_unsupported=False)
    fake = torchtally.generation(net, 5, 4, mode="fake", warn_unsupported=False)
    assert real.decode.values == fake.decode.values
    assert real.prefill.total() == fake.prefill.total()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_llama_2_7b_shape_two_layers() -> None:
    # Llama-2-7B's widths with 2 of its 32 layers: per layer and token 4 * 4096² + 3 * 4096 *
    # 11008 = 202,375,168; attention 2 * 32 * 128 = 8,192 per key and layer; head 131,072,000
    config = transformers.LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_attention_heads=32,
        num_hidden_layers=2,
        vocab_size=32000,
    )
    net = on_meta(lambda: transformers.LlamaForCausalLM(config))
    result = torchtally.generation(net, 2048, 128, warn_unsupported=False)
    assert result.prefill.total() == 2048 * 2 * 202_375_168 + 2 * 8_192 * 2048**2 + 131_072_000
    assert result.step_totals() == [
        2 * 202_375_168 + 131_072_000 + 2 * 8_192 * (2048 + i) for i in range(1, 128)
    ]


@pytest.mark.slow
def test_llama_2_7b_shape_as_in_the_issue() -> None:
    config = transformers.LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_attention_heads=32,
        num_hidden_layers=32,
        vocab_size=32000,
    )
    net = on_meta(lambda: transformers.LlamaForCausalLM(config))
    result = torchtally.generation(net, 2048, 128, warn_unsupported=False)
    assert result.prefill.total() == 14_362_501_709_824
    plain = torchtally.analyze(net, torch.zeros(1, 2048, dtype=torch.long), warn_unsupported=False)
    assert plain.total() == 14_630_806_093_824
    assert result.step_totals() == [6_607_077_376 + 262_144 * (2048 + i) for i in range(1, 128)]
    assert result.decode.total() == 909_412_139_008


def test_errors_say_what_to_pass() -> None:
    with pytest.raises(ValueError, match="new_tokens must be a whole number of at least 1"):
        torchtally.generation(model("llama-gqa"), 8, 0)
    with pytest.raises(ValueError, match="prompt_tokens must be"):
        torchtally.generation(model("llama-gqa"), 0, 4)
    with pytest.raises(TypeError, match="not a Hugging Face model that generates"):
        torchtally.generation(nn.Linear(2, 2), 8, 4)
    with pytest.raises(ValueError, match="cache must be 'dynamic'"):
        torchtally.generation(model("llama-gqa"), 8, 4, cache="paged")
    with pytest.raises(ValueError, match="decode steps run from 1 to 11"):
        derived("llama-gqa").decode_step(12)


def test_summary_and_json(caplog: pytest.LogCaptureFixture) -> None:
    result = derived("llama-gqa")
    text = result.summary()
    assert "prompt 8 tokens, 12 new tokens, batch 2" in text
    assert "over 11 steps" in text
    data = result.to_dict()
    assert data["metrics"]["flops"]["decode_steps"] == result.step_totals()
    assert data["metrics"]["flops"]["total"] == result.total()
    assert data["segments"] == [{"first": 1, "last": 11, "traced": [1, 6, 11]}]
    import json

    json.dumps(data)
    with caplog.at_level(logging.WARNING, logger="torchtally"):
        torchtally.generation(model("llama-gqa"), P, 2, batch=B)
    assert "aten::silu" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama-gqa", "mistral-sliding-window", "gpt2-tied-head"])
def test_filling_the_cache_directly_equals_the_models_prefill(name: str) -> None:
    # decode steps traced over a cache filled through its own update, and over one the model's
    # prefill filled: the same ops, so the same counts, step by step
    by_model = torchtally.generation(
        model(name), P, N, batch=B, warn_unsupported=False, cache_fill="model"
    )
    assert by_model.decode.values == derived(name).decode.values
    for step in (1, 4, 5, 11):
        assert by_model.decode_step(step).trace.ops == derived(name).decode_step(step).trace.ops


def test_static_cache_filled_directly_equals_the_models_prefill() -> None:
    kwargs = {"batch": B, "cache": "static", "warn_unsupported": False}
    direct = torchtally.generation(model("llama-gqa"), P, 5, **kwargs)
    by_model = torchtally.generation(model("llama-gqa"), P, 5, cache_fill="model", **kwargs)
    assert direct.decode.values == by_model.decode.values
    assert direct.kv_cache_bytes == by_model.kv_cache_bytes == 2 * 2 * B * 2 * 16 * (P + 4) * 4


# --- a training step against the 6N rule --------------------------------------------------------

T_TRAIN = 16


def test_training_step_of_llama_against_6n() -> None:
    # per token: the matmuls 3 x (2 layers x 36,864 + the head 64 x 100) (forward, gradient of
    # input, gradient of weight); attention 3 x 2 layers x 2 x 4 heads x 16 x 16 keys
    step = torchtally.training_step(model("llama-gqa"), T_TRAIN, batch=B, warn_unsupported=False)
    c = step.comparison()
    multiplied = 2 * 36_864 + 64 * 100
    assert c["params_multiplied_per_token"] == multiplied
    assert c["matmul_per_token"] == 3 * multiplied
    assert c["attention_per_token"] == 3 * 2 * 2 * 4 * 16 * T_TRAIN
    assert c["flops_per_token"] == 3 * multiplied + 3 * 2 * 2 * 4 * 16 * T_TRAIN
    assert c["rule_6n"] == 3 * step.params
    assert c["rule_attention"] == 6 * 2 * 4 * 16 * T_TRAIN == c["attention_per_token"]
    # what no token multiplies: the input embedding (100 x 64) and 5 RMSNorm scales of 64
    assert c["embedding_params"] == 6_400
    assert c["other_params_not_multiplied"] == 5 * 64
    assert step.params == multiplied + 6_400 + 5 * 64
    text = step.explain(units="raw")
    assert f"6N rule: {3 * step.params} per token" in text
    assert "6400 in embeddings (looked up) and 320 others" in text


def test_training_step_of_gpt2_ties_the_head_to_the_embedding() -> None:
    # the tied head multiplies the token embedding; only the 1024 x 64 position embedding is
    # looked up without a multiply-add
    step = torchtally.training_step(
        model("gpt2-tied-head"), T_TRAIN, batch=B, warn_unsupported=False
    )
    assert step.embedding_params == 1024 * 64
    c = step.comparison()
    assert c["params_multiplied_per_token"] == 2 * (12 * 64 * 64) + 64 * 100
    assert c["other_per_token"] > 0  # layer norms, forward and backward


def test_training_step_of_a_mixture_of_experts_uses_active_parameters() -> None:
    step = torchtally.training_step(model("mixtral-moe"), T_TRAIN, batch=B, warn_unsupported=False)
    c = step.comparison()
    assert step.active_params < step.params
    assert c["rule_6n"] == 3 * step.active_params
    # a token multiplies its 2 experts (of 4), the attention and router weights and the head
    assert (
        c["params_multiplied_per_token"]
        == 2 * (2 * 64 * 64 + 2 * 64 * 32 + 64 * 4 + 2 * (64 * 2 * 128 + 128 * 64)) + 64 * 100
    )
    assert "mixture of experts" in step.explain()


def test_training_comparison_needs_a_backward_pass() -> None:
    analysis = torchtally.analyze(
        model("llama-gqa"), torch.zeros(1, 4, dtype=torch.long), warn_unsupported=False
    )
    with pytest.raises(ValueError, match="analyse with backward=True"):
        torchtally.training_comparison(analysis, model("llama-gqa"), 4, 4)


# --- more families: derived decode against every step traced ------------------------------------

SMALL = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 100,
}
FAMILIES: dict[str, tuple[str, str, dict[str, object]]] = {
    # sliding window on the second layer only
    "qwen2-window-layers": (
        "Qwen2ForCausalLM",
        "Qwen2Config",
        {**SMALL, "use_sliding_window": True, "sliding_window": 12, "max_window_layers": 1},
    ),
    # sliding and full layers alternating
    "gemma3-hybrid": (
        "Gemma3ForCausalLM",
        "Gemma3TextConfig",
        {**SMALL, "head_dim": 16, "sliding_window": 12},
    ),
    # chunked attention and routed experts
    "llama4-chunked": (
        "Llama4ForCausalLM",
        "Llama4TextConfig",
        {
            **SMALL,
            "head_dim": 16,
            "attention_chunk_size": 12,
            "num_local_experts": 2,
            "num_experts_per_tok": 1,
            "intermediate_size_mlp": 128,
        },
    ),
    # multi-head latent attention, a dense first layer, then routed experts
    "deepseek-v3-mla-moe": (
        "DeepseekV3ForCausalLM",
        "DeepseekV3Config",
        {
            **SMALL,
            "n_routed_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "q_lora_rank": 32,
            "kv_lora_rank": 16,
            "qk_rope_head_dim": 8,
            "qk_nope_head_dim": 8,
            "v_head_dim": 16,
            "first_k_dense_replace": 1,
            "n_group": 1,
            "topk_group": 1,
        },
    ),
    "qwen2-moe-shared-expert": (
        "Qwen2MoeForCausalLM",
        "Qwen2MoeConfig",
        {
            **SMALL,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 64,
        },
    ),
    # a state-space model: its cache (cache_params) does not grow
    "mamba": (
        "MambaForCausalLM",
        "MambaConfig",
        {"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100, "state_size": 8},
    ),
    "bart-encoder-decoder": (
        "BartForConditionalGeneration",
        "BartConfig",
        {
            "d_model": 64,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "encoder_attention_heads": 4,
            "decoder_attention_heads": 4,
            "encoder_ffn_dim": 128,
            "decoder_ffn_dim": 128,
            "vocab_size": 100,
        },
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_more_families_derive_what_tracing_every_step_counts(family: str) -> None:
    class_name, config_name, values = FAMILIES[family]
    config = getattr(transformers, config_name)(**values)
    net = on_meta(lambda: getattr(transformers, class_name)(config))
    result = torchtally.generation(net, P, N, batch=B, warn_unsupported=False)
    every_step = torchtally.generation(
        net, P, N, batch=B, warn_unsupported=False, trace_every_step=True, cache_fill="model"
    )
    assert result.decode.values == every_step.decode.values
    assert result.prefill.by_module_and_operator() == every_step.prefill.by_module_and_operator()
    assert len(result.traced_steps) < N - 1


def test_a_speech_encoder_is_refused_with_what_to_do() -> None:
    config = transformers.WhisperConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
    )
    net = on_meta(lambda: transformers.WhisperForConditionalGeneration(config))
    with pytest.raises(TypeError, match="encodes input_features, not token ids"):
        torchtally.generation(net, 4, 4)


def test_max_batch_fits_weights_and_each_sequences_memory() -> None:
    result = derived("llama-gqa")
    kv = 2 * 2 * 2 * 16 * (P + N - 1) * 4  # keys and values, 2 layers, 2 KV heads, float32
    assert result.kv_cache_bytes_per_sequence == kv
    # the activation peak (of the prefill or the last step) holds the KV cache it builds
    peaks = [result.prefill.memory(), result.decode_step(N - 1).memory()]
    assert result.peak_activation_bytes == max(m["peak_activation_bytes"] for m in peaks)
    per_sequence = result.memory_per_sequence()
    assert per_sequence == max(result.peak_activation_bytes // B, kv) >= kv
    memory = result.weight_bytes + 10 * per_sequence + 5
    assert result.max_batch(memory) == 10
    assert result.max_batch(memory, reserved_bytes=per_sequence) == 9
    assert result.max_batch(result.weight_bytes) == 0


def test_moe_bytes_read_the_experts_uniform_routing_touches() -> None:
    # per layer the experts' weights: gate and up (4, 64, 256), down (4, 128, 64), float32.
    # A decode step at batch 2 routes 2 tokens to 2 of 4 experts each: 4 * (1 - (1 - 2/4)^2) =
    # 3 experts touched on average; read whole (no routing rule), all 4.
    result = derived("mixtral-moe")
    assert result.prefill.options.get("moe_top_k") == 2  # from the configuration
    weights = 2 * (4 * 64 * 256 + 4 * 128 * 64) * 4
    whole = torchtally.generation(
        model("mixtral-moe"), P, 2, batch=B, options={"moe_top_k": None}, warn_unsupported=False
    )
    routed = result.decode_step(1).by_operator("bytes")["_grouped_mm"]
    assert whole.decode_step(1).by_operator("bytes")["_grouped_mm"] - routed == weights // 4


def test_experts_touched() -> None:
    from torchtally_transformer.moe import experts_touched

    assert experts_touched(8, 2, 2) == 2  # one token: its two experts
    assert experts_touched(8, 4, 2) == 8 * (1 - 0.75**2)  # two tokens: 3.5 on average
    assert experts_touched(8, 4, None) == 4  # no rule: at most one expert per row
    assert experts_touched(8, 4096, None) == 8


# --- on a device ------------------------------------------------------------------------------


def test_times_of_derived_steps_equal_each_traced_steps_roofline() -> None:
    # A device whose FLOP/s is below its bytes/s: a decode step's attention (256 multiply-adds
    # and 512 bytes of keys and values per cached token and layer, plus 1,024 bytes of query and
    # output) is memory-bound over few keys and compute-bound from 18 keys on, inside this
    # decode, so its time is not one line: each op's two roofline terms are.
    device = torchtally.Hardware(
        "slow", peak_flops={"float32": 0.9e9}, memory_bandwidth=1e9, memory=1e6
    )
    timed = derived("llama-gqa").on(device)
    assert any(line.switching for line in timed._lines)
    traced = every("llama-gqa")
    for i in range(1, N):
        expected = traced.decode_step(i).roofline(device).total()
        assert timed.step_seconds(i) == pytest.approx(expected, rel=1e-12), f"step {i}"
    assert timed.time_to_first_token == derived("llama-gqa").prefill.roofline(device).total()
    assert timed.decode_seconds == pytest.approx(sum(timed.step_times()))
    assert timed.time_per_output_token == pytest.approx(timed.decode_seconds / (N - 1))
    assert timed.tokens_per_second == pytest.approx(B / timed.time_per_output_token)
    assert timed.end_to_end_tokens_per_second == pytest.approx(
        B * N / (timed.time_to_first_token + timed.decode_seconds)
    )


def test_on_a_named_device_with_its_memory() -> None:
    result = derived("llama-gqa")
    timed = result.on("h100-sxm")
    assert timed.hardware.memory is not None
    assert timed.max_batch == result.max_batch(int(timed.hardware.memory))
    assert timed.time_to_first_token > 0 and timed.time_per_output_token > 0
    text = timed.summary()
    assert "time to first token" in text and "Time per output token" in text
    assert "largest batch" in text
    data = timed.to_dict()
    assert data["decode_step_s"] == timed.step_times()
    assert data["max_batch"] == timed.max_batch


def test_training_mfu_from_a_measured_time() -> None:
    step = torchtally.training_step(model("llama-gqa"), T_TRAIN, batch=B, warn_unsupported=False)
    device = torchtally.Hardware("d", peak_flops={"float32": 1e12}, memory_bandwidth=1e12)
    seconds = 2 * step.analysis.total() / 1e12 * 4  # a quarter of the peak
    mfu = step.mfu(device, seconds)
    assert mfu["counted"] == pytest.approx(0.25)
    assert mfu["rule_6n"] == pytest.approx(
        0.25 * 3 * step.params * step.tokens / step.analysis.total()
    )
    assert step.mfu("h100-sxm", seconds)["counted"] < 1
    with pytest.raises(ValueError, match="seconds must be positive"):
        step.mfu(device, 0)
    with pytest.raises(ValueError, match="count with measure=True"):
        step.mfu(device)


def test_training_step_measured_for_real() -> None:
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=50,
    )
    torch.manual_seed(0)
    net = transformers.LlamaForCausalLM(config)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    step = torchtally.training_step(net, 8, measure=True, measure_repeats=2, warn_unsupported=False)
    assert step.measured_seconds is not None and step.measured_seconds > 0
    assert step.measured_on == "cpu"
    device = torchtally.Hardware("d", peak_flops={"float32": 1e12}, memory_bandwidth=1e12)
    assert step.mfu(device)["counted"] == pytest.approx(
        2 * step.analysis.total() / step.measured_seconds / 1e12
    )
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.slow
def test_elementwise_counts_derive_as_tracing_every_step() -> None:
    # softmax, rotary, norms and SiLU counted too: still linear in the cache length
    kwargs = {"batch": B, "elementwise": True, "warn_unsupported": False}
    result = torchtally.generation(model("llama-gqa"), P, N, **kwargs)
    traced = torchtally.generation(model("llama-gqa"), P, N, trace_every_step=True, **kwargs)
    assert result.traced_steps == (1, 6, 11)
    assert result.decode.values == traced.decode.values
    assert result.decode.unsupported_ops() == {}

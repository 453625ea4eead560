"""Real transformer models, built from configs with random weights, against analytic counts.

For each model: the flops per operator equal a count worked out from the architecture (per layer:
projections, attention scores and values, MLP, norms; then the head), nothing is unsupported with
element-wise counting on, the attention is counted under the attention modules that ran it, and
the difference to fvcore is exactly the operators fvcore misses (scaled_dot_product_attention, and
Mixtral's grouped matmuls), which fvcore lists as unsupported.

Notation in the formulas: B batch, L sequence length, T = B * L tokens, d model width, h heads,
hd head size, f MLP width, V vocabulary. One multiply-add is one flop. Attention per layer is
``2 * B * h * Lq * Lk * hd`` (Q K^T, then P V). Layer norms cost 5 per element (core's).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import torchtally

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
transformers = pytest.importorskip("transformers")

ATTENTION = "scaled_dot_product_attention"
B, L = 2, 16
T = B * L
IDS = torch.randint(0, 1000, (B, L), generator=torch.Generator().manual_seed(0))


def attention(batch: int, heads: int, q_len: int, kv_len: int, head_dim: int) -> int:
    """Q K^T and P V: one multiply-add per query, key and head dimension, twice."""
    return 2 * batch * heads * q_len * kv_len * head_dim


@dataclass(frozen=True)
class Case:
    build: Callable[[], nn.Module]
    inputs: tuple[Any, ...]
    expected: dict[str, int]  # flops per operator, from the formulas below
    attention_modules: dict[str, int]  # the modules that ran attention, with their count
    fvcore_misses: tuple[str, ...] = (ATTENTION,)
    fvcore_unsupported: dict[str, int] = field(default_factory=dict)  # fvcore's names for them
    mode: str = "auto"
    causal_half: dict[str, int] | None = None  # expected with options={"causal": "half"}


# --- the formulas, model by model --------------------------------------------------------------


def bert() -> Case:
    # BERT-base: d=768, h=12 (hd=64), f=3072; 2 of its 12 layers
    d, h, f, layers = 768, 12, 3072, 2
    per_layer_linear = 3 * T * d * d + T * d * d + T * d * f + T * f * d  # q,k,v; out; MLP
    per_layer_attention = attention(B, h, L, L, 64)
    return Case(
        build=lambda: transformers.BertModel(transformers.BertConfig(num_hidden_layers=layers)),
        inputs=(IDS,),
        expected={
            "linear": layers * per_layer_linear + B * d * d,  # + pooler on the first token
            ATTENTION: layers * per_layer_attention,
            "layer_norm": 5 * T * d * (1 + 2 * layers),  # embeddings, 2 per layer
        },
        attention_modules={
            f"encoder.layer.{i}.attention.self": per_layer_attention for i in range(layers)
        },
        fvcore_unsupported={"aten::scaled_dot_product_attention": layers},
    )


def gpt2() -> Case:
    # GPT-2 small: d=768, h=12, f=3072, V=50257; its Conv1D layers run addmm
    d, h, f, vocab, layers = 768, 12, 3072, 50257, 2
    per_layer_attention = attention(B, h, L, L, 64)
    config = transformers.GPT2Config(n_layer=layers, use_cache=False)
    return Case(
        build=lambda: transformers.GPT2LMHeadModel(config),
        inputs=(IDS,),
        expected={
            "addmm": layers * (T * d * 3 * d + T * d * d + T * d * f + T * f * d),
            ATTENTION: layers * per_layer_attention,
            "layer_norm": 5 * T * d * (2 * layers + 1),
            "linear": T * d * vocab,  # LM head
        },
        attention_modules={f"transformer.h.{i}.attn": per_layer_attention for i in range(layers)},
        fvcore_unsupported={"aten::scaled_dot_product_attention": layers},
        # causal: 16 * 17 / 2 = 136 of 256 scores per head
        causal_half={ATTENTION: layers * 2 * B * h * 136 * 64},
    )


def llama_7b() -> Case:
    # Llama-2-7B: d=4096, h=32 (hd=128), f=11008, V=32000; 2 of its 32 layers. Built on the meta
    # device: no memory, no initialisation; torchtally counts it from shapes (mode "meta").
    d, h, f, vocab, layers = 4096, 32, 11008, 32000, 2
    config = transformers.LlamaConfig(
        hidden_size=d,
        intermediate_size=f,
        num_attention_heads=h,
        num_key_value_heads=h,
        num_hidden_layers=layers,
        vocab_size=vocab,
        use_cache=False,
    )
    per_layer_attention = attention(B, h, L, L, 128)

    def build() -> nn.Module:
        with torch.device("meta"):
            return transformers.LlamaForCausalLM(config)

    return Case(
        build=build,
        inputs=(IDS,),
        expected={
            # q, k, v, o; gate, up, down; then the LM head
            "linear": layers * (4 * T * d * d + 3 * T * d * f) + T * d * vocab,
            ATTENTION: layers * per_layer_attention,
        },
        attention_modules={
            f"model.layers.{i}.self_attn": per_layer_attention for i in range(layers)
        },
        fvcore_unsupported={"aten::scaled_dot_product_attention": layers},
    )


def _gqa_linear(d: int, kv: int, f: int) -> int:
    """q and o at d x d, k and v at d x kv, and a gated MLP, for T tokens."""
    return 2 * T * d * d + 2 * T * d * kv + 3 * T * d * f


def llama_gqa() -> Case:
    # grouped-query attention: h=8 query heads share 2 key/value heads (hd=64)
    d, h, kv_heads, f, vocab, layers = 512, 8, 2, 1024, 1000, 2
    config = transformers.LlamaConfig(
        hidden_size=d,
        intermediate_size=f,
        num_attention_heads=h,
        num_key_value_heads=kv_heads,
        num_hidden_layers=layers,
        vocab_size=vocab,
        use_cache=False,
    )
    per_layer_attention = attention(B, h, L, L, 64)  # per query head: as many as without GQA
    return Case(
        build=lambda: transformers.LlamaForCausalLM(config),
        inputs=(IDS,),
        expected={
            "linear": layers * _gqa_linear(d, kv_heads * 64, f) + T * d * vocab,
            ATTENTION: layers * per_layer_attention,
        },
        attention_modules={
            f"model.layers.{i}.self_attn": per_layer_attention for i in range(layers)
        },
        fvcore_unsupported={"aten::scaled_dot_product_attention": layers},
        causal_half={ATTENTION: layers * 2 * B * h * 136 * 64},
    )


def mistral() -> Case:
    # GQA with a sliding window of 8 < L: Hugging Face passes it as a mask tensor, so every score
    # is counted (the window's sparsity is the mask's data)
    d, h, kv_heads, f, vocab, layers = 512, 8, 2, 1024, 1000, 2
    config = transformers.MistralConfig(
        hidden_size=d,
        intermediate_size=f,
        num_attention_heads=h,
        num_key_value_heads=kv_heads,
        num_hidden_layers=layers,
        vocab_size=vocab,
        sliding_window=8,
        use_cache=False,
    )
    per_layer_attention = attention(B, h, L, L, 64)
    return Case(
        build=lambda: transformers.MistralForCausalLM(config),
        inputs=(IDS,),
        expected={
            "linear": layers * _gqa_linear(d, kv_heads * 64, f) + T * d * vocab,
            ATTENTION: layers * per_layer_attention,
        },
        attention_modules={
            f"model.layers.{i}.self_attn": per_layer_attention for i in range(layers)
        },
        fvcore_unsupported={"aten::scaled_dot_product_attention": layers},
    )


def mixtral() -> Case:
    # 4 experts, each token routed to 2: the experts run as grouped matmuls
    d, h, kv_heads, f, vocab, layers, experts, top_k = 512, 8, 2, 1024, 1000, 2, 4, 2
    config = transformers.MixtralConfig(
        hidden_size=d,
        intermediate_size=f,
        num_attention_heads=h,
        num_key_value_heads=kv_heads,
        num_hidden_layers=layers,
        vocab_size=vocab,
        num_local_experts=experts,
        num_experts_per_tok=top_k,
        use_cache=False,
    )
    per_layer_attention = attention(B, h, L, L, 64)
    routed = T * top_k
    return Case(
        build=lambda: transformers.MixtralForCausalLM(config),
        inputs=(IDS,),
        expected={
            # q, k, v, o and the router (d -> 4 experts); then the LM head
            "linear": layers * (2 * T * d * d + 2 * T * d * 128 + T * d * experts) + T * d * vocab,
            ATTENTION: layers * per_layer_attention,
            # each routed token: gate and up (d -> 2f), down (f -> d)
            "_grouped_mm": layers * routed * (d * 2 * f + f * d),
        },
        attention_modules={
            f"model.layers.{i}.self_attn": per_layer_attention for i in range(layers)
        },
        fvcore_misses=(ATTENTION, "_grouped_mm"),
        fvcore_unsupported={
            "aten::scaled_dot_product_attention": layers,
            "aten::_grouped_mm": 2 * layers,
        },
        # PyTorch's meta kernel for _grouped_mm takes bf16 only: float32 runs for real
        mode="real",
        causal_half={ATTENTION: layers * 2 * B * h * 136 * 64},
    )


def t5() -> Case:
    # t5-small widths: d=512, h=8 (hd=64), f=2048, V=32128; 2 encoder and 2 decoder layers;
    # 16 encoder and 8 decoder tokens per sequence. No biases; the relative position bias is
    # passed to SDPA as its mask.
    d, h, f, vocab, layers, dec_len = 512, 8, 2048, 32128, 2, 8
    dec_tokens = B * dec_len
    encoder = 4 * T * d * d + 2 * T * d * f
    decoder = 4 * dec_tokens * d * d + (2 * dec_tokens + 2 * T) * d * d + 2 * dec_tokens * d * f
    config = transformers.T5Config(num_layers=layers, num_decoder_layers=layers, use_cache=False)
    modules = {}
    for i in range(layers):
        modules[f"encoder.block.{i}.layer.0.SelfAttention"] = attention(B, h, L, L, 64)
        modules[f"decoder.block.{i}.layer.0.SelfAttention"] = attention(B, h, dec_len, dec_len, 64)
        modules[f"decoder.block.{i}.layer.1.EncDecAttention"] = attention(B, h, dec_len, L, 64)
    return Case(
        build=lambda: transformers.T5ForConditionalGeneration(config),
        inputs=(IDS, None, IDS[:, :dec_len]),  # input_ids, attention_mask, decoder_input_ids
        expected={
            "linear": layers * (encoder + decoder) + dec_tokens * d * vocab,
            ATTENTION: sum(modules.values()),
        },
        attention_modules=modules,
        fvcore_unsupported={"aten::scaled_dot_product_attention": 3 * layers},
    )


def vit() -> Case:
    # ViT-base widths on a 64 x 64 image: 16 patches of 16 x 16 plus the class token; 2 layers
    d, h, f, layers, tokens_per_image = 768, 12, 3072, 2, 16 + 1
    tokens = B * tokens_per_image
    per_layer_attention = attention(B, h, tokens_per_image, tokens_per_image, 64)
    config = transformers.ViTConfig(num_hidden_layers=layers, image_size=64)
    return Case(
        build=lambda: transformers.ViTModel(config),
        inputs=(torch.randn(B, 3, 64, 64, generator=torch.Generator().manual_seed(0)),),
        expected={
            "conv": B * (d * 3 * 16 * 16) * 16,  # patch embedding: one 16 x 16 kernel per patch
            "linear": layers * (4 * tokens * d * d + 2 * tokens * d * f) + B * d * d,  # + pooler
            ATTENTION: layers * per_layer_attention,
            "layer_norm": 5 * tokens * d * (2 * layers + 1),
        },
        attention_modules={f"layers.{i}.attention": per_layer_attention for i in range(layers)},
        fvcore_unsupported={"aten::scaled_dot_product_attention": layers},
    )


def whisper_tiny() -> Case:
    # whisper-tiny: d=384, h=6 (hd=64), f=1536, V=51865, 4 + 4 layers; 64 input frames (two
    # convolutions of width 3, the second of stride 2, give 32 encoder tokens), 8 decoder tokens
    d, h, f, vocab, layers, frames, enc_len, dec_len = 384, 6, 1536, 51865, 4, 64, 32, 8
    enc_tokens, dec_tokens = B * enc_len, B * dec_len
    config = transformers.WhisperConfig(
        d_model=d,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=h,
        decoder_attention_heads=h,
        encoder_ffn_dim=f,
        decoder_ffn_dim=f,
        max_source_positions=enc_len,
        use_cache=False,
    )
    encoder = 4 * enc_tokens * d * d + 2 * enc_tokens * d * f
    # self-attention; cross-attention (q and o from the decoder, k and v from the encoder); MLP
    decoder = (
        4 * dec_tokens * d * d + 2 * (dec_tokens + enc_tokens) * d * d + 2 * dec_tokens * d * f
    )
    modules = {}
    for i in range(layers):
        modules[f"model.encoder.layers.{i}.self_attn"] = attention(B, h, enc_len, enc_len, 64)
        modules[f"model.decoder.layers.{i}.self_attn"] = attention(B, h, dec_len, dec_len, 64)
        modules[f"model.decoder.layers.{i}.encoder_attn"] = attention(B, h, dec_len, enc_len, 64)
    features = torch.randn(B, 80, frames, generator=torch.Generator().manual_seed(0))
    return Case(
        build=lambda: transformers.WhisperForConditionalGeneration(config),
        inputs=(features, None, IDS[:, :dec_len]),  # input_features, attention_mask, decoder ids
        expected={
            # 80 mel bins -> d at 64 frames, then d -> d at stride 2: 32 frames
            "conv": B * (d * 80 * 3) * frames + B * (d * d * 3) * enc_len,
            "linear": layers * (encoder + decoder) + dec_tokens * d * vocab,
            ATTENTION: sum(modules.values()),
            # 2 per encoder layer, 3 per decoder layer, one after each stack
            "layer_norm": 5 * d * (enc_tokens * (2 * layers + 1) + dec_tokens * (3 * layers + 1)),
        },
        attention_modules=modules,
        fvcore_unsupported={"aten::scaled_dot_product_attention": 3 * layers},
    )


def torchvision_vit_b_16() -> Case:
    # 224 x 224: 196 patches + the class token, d=768, h=12, f=3072, 12 layers, 1000 classes
    d, h, f, layers, tokens = 768, 12, 3072, 12, 197
    per_layer_attention = attention(1, h, tokens, tokens, 64)
    return Case(
        build=lambda: torchvision.models.vit_b_16(),
        inputs=(torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)),),
        expected={
            "conv": (d * 3 * 16 * 16) * 196,
            # packed in-projection (d -> 3d), out-projection, MLP; the classifier on one token
            "linear": layers * (tokens * d * 3 * d + tokens * d * d + 2 * tokens * d * f)
            + d * 1000,
            ATTENTION: layers * per_layer_attention,
            "layer_norm": 5 * tokens * d * (2 * layers + 1),
        },
        attention_modules={
            f"encoder.layers.encoder_layer_{i}.self_attention": per_layer_attention
            for i in range(layers)
        },
        fvcore_unsupported={"aten::scaled_dot_product_attention": layers},
    )


def torchvision_swin_t() -> Case:
    # Swin-T at 224: 4 x 4 patches (56 x 56 tokens), stages of (width, depth, heads)
    # (96, 2, 3), (192, 2, 6), (384, 6, 12), (768, 2, 24) on 56², 28², 14², 7² tokens, attention
    # within 7 x 7 windows (49 tokens). Its attention is torch.matmul, which fvcore counts too.
    stages = [(96, 2, 56 * 56), (192, 2, 28 * 28), (384, 6, 14 * 14), (768, 2, 7 * 7)]
    linear = matmul = layer_norm = 0
    for index, (c, depth, n) in enumerate(stages):
        linear += depth * (n * c * 3 * c + n * c * c + 2 * n * c * 4 * c)  # qkv, proj, MLP
        matmul += depth * 2 * n * 49 * c  # every token's 49 window keys, over all heads
        layer_norm += depth * 2 * 5 * n * c
        if index < 3:  # patch merging: layer norm on 4c, then 4c -> 2c for n / 4 tokens
            layer_norm += 5 * (n // 4) * 4 * c
            linear += (n // 4) * 4 * c * 2 * c
    return Case(
        build=lambda: torchvision.models.swin_t(),
        inputs=(torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)),),
        expected={
            "conv": (96 * 3 * 4 * 4) * 56 * 56,
            "layer_norm": layer_norm + 5 * 56 * 56 * 96 + 5 * 49 * 768,  # + after patches, final
            "linear": linear + 768 * 1000,
            "matmul": matmul,
            "adaptive_avg_pool2d": 49 * 768,
        },
        attention_modules={},
        fvcore_misses=(),
    )


CASES: dict[str, Callable[[], Case]] = {
    "bert-base": bert,
    "gpt2": gpt2,
    "llama-2-7b-shaped": llama_7b,
    "llama-gqa": llama_gqa,
    "mistral": mistral,
    "mixtral": mixtral,
    "t5": t5,
    "vit": vit,
    "whisper-tiny": whisper_tiny,
    "torchvision-vit_b_16": torchvision_vit_b_16,
    "torchvision-swin_t": torchvision_swin_t,
}


@cache
def case(name: str) -> Case:
    return CASES[name]()


@cache
def model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return case(name).build().eval()


@cache
def ours(name: str) -> torchtally.Analysis:
    return torchtally.analyze(
        model(name), case(name).inputs, mode=case(name).mode, warn_unsupported=False
    )


@pytest.fixture(autouse=True, scope="module")
def _free_models() -> Iterator[None]:
    """The models and analyses are shared by this module's tests; free them after it."""
    yield
    for cached in (case, model, ours):
        cached.cache_clear()


def fvcore_counts(name: str) -> tuple[dict[str, int], dict[str, int]]:
    """fvcore's flops per operator and unsupported ops (it runs the model, so it needs weights)."""
    fvcore = pytest.importorskip("fvcore.nn")
    net = model(name)
    if any(p.is_meta for p in net.parameters()):
        # a copy with real, uninitialised memory (fvcore counts shapes; the values do not matter)
        torch.manual_seed(0)
        net = case(name).build().to_empty(device="cpu").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit tracer warnings
        peer = fvcore.FlopCountAnalysis(net, case(name).inputs)
        peer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return dict(peer.by_operator()), dict(peer.unsupported_ops())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_flops_per_operator_match_the_formulas(name: str) -> None:
    analysis = ours(name)
    expected = case(name).expected
    assert analysis.by_operator() == expected
    total = sum(expected.values())
    assert abs(analysis.total() - total) <= 0.001 * total


@pytest.mark.parametrize("name", list(CASES))
def test_nothing_is_unsupported_with_elementwise_counting(name: str) -> None:
    assert ours(name).recount(elementwise=True).unsupported_ops() == {}


@pytest.mark.parametrize("name", [n for n in CASES if case(n).attention_modules])
def test_attention_is_counted_under_the_modules_that_ran_it(name: str) -> None:
    table = ours(name).by_module_and_operator()

    def inside(other: str, module: str) -> bool:
        return other != module and (not module or other.startswith(module + "."))

    innermost = {
        module
        for module, counts in table.items()
        if ATTENTION in counts
        and not any(inside(other, module) and ATTENTION in table[other] for other in table)
    }
    assert innermost == set(case(name).attention_modules)
    for module, count in case(name).attention_modules.items():
        assert table[module][ATTENTION] == count


@pytest.mark.parametrize("name", [n for n in CASES if case(n).causal_half is not None])
def test_causal_half_counts_the_kept_triangle(name: str) -> None:
    # On real tensors Hugging Face's causal models call SDPA with is_causal=True. (On fake
    # tensors they build the causal mask as a tensor instead: see the next test.)
    real = torchtally.analyze(model(name), case(name).inputs, mode="real", warn_unsupported=False)
    assert real.by_operator() == case(name).expected
    half = real.recount(options={"causal": "half"}).by_operator()
    assert {op: n for op, n in half.items() if op == ATTENTION} == case(name).causal_half
    assert {op: n for op, n in half.items() if op != ATTENTION} == {
        op: n for op, n in case(name).expected.items() if op != ATTENTION
    }


def test_causal_masks_built_as_tensors_are_counted_in_full() -> None:
    # On fake tensors (modes "fake", "meta" and "auto") Hugging Face cannot look at the padding
    # mask's values, so it passes the causal mask to SDPA as a tensor: which scores it keeps is
    # data the trace does not keep, and causal="half" has nothing to act on.
    for name in ("llama-gqa", "llama-2-7b-shaped"):
        analysis = ours(name)
        assert analysis.mode in ("fake", "meta")
        calls = [c for c in analysis.trace.ops if c.op.endswith("flash_attention_for_cpu")]
        assert calls and all(c.arg("attn_mask") is not None for c in calls)
        half = analysis.recount(options={"causal": "half"})
        assert half.by_operator() == analysis.by_operator() == case(name).expected


@pytest.mark.parametrize("name", list(CASES))
def test_the_difference_to_fvcore_is_what_fvcore_misses(name: str) -> None:
    theirs, unsupported = fvcore_counts(name)
    mine = ours(name).by_operator()
    missed = case(name).fvcore_misses
    # every operator fvcore counts, it counts as we do
    assert theirs == {op: count for op, count in mine.items() if op not in missed}
    # what it misses, it lists as unsupported
    for op, times in case(name).fvcore_unsupported.items():
        assert unsupported.get(op) == times, op
    assert set(missed) <= set(mine)


def test_llama_backward_is_twice_the_forward() -> None:
    # Every linear layer computes its input's and its weight's gradients (one forward's worth of
    # multiply-adds each), and attention's backward runs four matmuls for the forward's two.
    analysis = torchtally.analyze(model("llama-gqa"), (IDS,), backward=True, warn_unsupported=False)
    forward = analysis.by_operator(phase="forward")
    backward = analysis.by_operator(phase="backward")
    assert forward == case("llama-gqa").expected
    assert backward == {op: 2 * count for op, count in forward.items()}


def test_bert_activations() -> None:
    # Activations are the outputs of matmuls: per layer q, k, v (3d), out (d), MLP (f, d) for
    # every token; attention's score matrix (L x L) and output (L x hd) per head; the pooler's d
    d, h, f, layers = 768, 12, 3072, 2
    assert ours("bert-base").by_operator("activations") == {
        "linear": layers * T * (3 * d + d + f + d) + B * d,
        ATTENTION: layers * B * h * (L * L + L * 64),
    }

"""More models for the mode fuzz, beyond torchvision's zoo: timm families (sequencer, levit, volo
and others), Hugging Face architectures from small configurations (Qwen2-MoE, Qwen3-MoE, FNet,
wav2vec2, Mamba, Gemma, ...) and modules of our own with the ops that used to count 0 (recurrent
layers, FFTs, distances, sparse and scatter aggregations, bags, weight norm, CTC, quantized
linears, linear algebra, a custom autograd Function). Random weights, nothing downloaded.

`case.build()` builds the model (under ``torch.device("meta")`` too, when `meta`); `case.inputs()`
makes its inputs, the same every call. Imported as ``reliability.zoo_more``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SEED = 0


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], Any]
    meta: bool = True  # the model can be built on the meta device
    quick: bool = False  # in the default run (the whole set with TORCHTALLY_ZOO_MORE=1)
    handlers: Any = None  # handlers the model needs (a custom autograd Function's)

    def model(self) -> nn.Module:
        torch.manual_seed(SEED)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.build().eval()

    def arguments(self) -> Any:
        torch.manual_seed(SEED)
        return self.inputs()


# --- timm ------------------------------------------------------------------------------------


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False)

    return build


def _image(size: int) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(1, 3, size, size)


TIMM = {
    # the three: LSTMs over rows and columns, attention with biases, outlook attention
    "sequencer2d_s": 224,
    "levit_128s": 224,
    "volo_d1_224": 224,
    "mixer_s16_224": 224,
    "resmlp_12_224": 224,
    "poolformer_s12": 224,
    "crossvit_tiny_240": 240,
    "tnt_s_patch16_224": 224,
    "cait_xxs24_224": 224,
    "convit_tiny": 224,
    "mobilevit_xxs": 256,
    "edgenext_xx_small": 256,
    "ghostnet_100": 224,
    "hrnet_w18_small": 224,
    "nf_resnet26": 224,
    "botnet26t_256": 256,
    "halonet26t": 256,
    "lambda_resnet26t": 256,
    "eva02_tiny_patch14_224": 224,
    "xcit_nano_12_p16_224": 224,
    "gcvit_xxtiny": 224,
    "efficientvit_b0": 224,
    "mambaout_femto": 224,
    "hiera_tiny_224": 224,
}
TIMM_QUICK = {"levit_128s"}


# --- Hugging Face, from small configurations -------------------------------------------------


def _hf(model: str, config: str, **options: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers

        return getattr(transformers, model)(getattr(transformers, config)(**options))

    return build


SMALL = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "vocab_size": 100,
}
CONV_AUDIO = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "conv_dim": (32, 32, 32),
    "conv_stride": (5, 2, 2),
    "conv_kernel": (10, 3, 3),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}


def _ids() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 100, (1, 16))}


def _audio() -> dict[str, torch.Tensor]:
    return {"input_values": torch.randn(1, 4000)}


MOE = {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32}
HF: dict[str, tuple[Callable[[], nn.Module], Callable[[], Any]]] = {
    "qwen2_moe": (
        _hf("Qwen2MoeForCausalLM", "Qwen2MoeConfig", **SMALL, **MOE, num_key_value_heads=2,
            shared_expert_intermediate_size=64),
        _ids,
    ),
    "qwen3_moe": (
        _hf("Qwen3MoeForCausalLM", "Qwen3MoeConfig", **SMALL, **MOE, num_key_value_heads=2,
            head_dim=16, mlp_only_layers=[]),
        _ids,
    ),
    "fnet": (
        _hf("FNetModel", "FNetConfig", hidden_size=64, num_hidden_layers=2,
            intermediate_size=128, vocab_size=100),
        _ids,
    ),
    "wav2vec2": (_hf("Wav2Vec2Model", "Wav2Vec2Config", **CONV_AUDIO), _audio),
    "hubert": (_hf("HubertModel", "HubertConfig", **CONV_AUDIO), _audio),
    "wav2vec2_conformer": (
        _hf("Wav2Vec2ConformerModel", "Wav2Vec2ConformerConfig", **CONV_AUDIO,
            conv_depthwise_kernel_size=7),
        _audio,
    ),
    "mamba": (
        _hf("MambaForCausalLM", "MambaConfig", hidden_size=64, num_hidden_layers=2,
            vocab_size=100, state_size=8),
        _ids,
    ),
    "mamba2": (
        _hf("Mamba2ForCausalLM", "Mamba2Config", hidden_size=64, num_hidden_layers=2,
            vocab_size=100, state_size=8, num_heads=8, head_dim=16, n_groups=1, chunk_size=8),
        _ids,
    ),
    "jamba": (
        _hf("JambaForCausalLM", "JambaConfig", **SMALL, num_key_value_heads=2, num_experts=4,
            num_experts_per_tok=2, mamba_d_state=8, mamba_dt_rank=8, attn_layer_period=2,
            attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1),
        _ids,
    ),
    "gemma": (
        _hf("GemmaForCausalLM", "GemmaConfig", **SMALL, num_key_value_heads=1, head_dim=16),
        _ids,
    ),
    "gemma2": (
        _hf("Gemma2ForCausalLM", "Gemma2Config", **SMALL, num_key_value_heads=2, head_dim=16,
            sliding_window=8),
        _ids,
    ),
    "gemma3": (
        _hf("Gemma3ForCausalLM", "Gemma3TextConfig", **SMALL, num_key_value_heads=2,
            head_dim=16, sliding_window=8),
        _ids,
    ),
    "falcon": (
        _hf("FalconForCausalLM", "FalconConfig", hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, vocab_size=100),
        _ids,
    ),
    "bloom": (
        _hf("BloomForCausalLM", "BloomConfig", hidden_size=64, n_layer=2, n_head=4,
            vocab_size=100),
        _ids,
    ),
    "deberta_v2": (_hf("DebertaV2Model", "DebertaV2Config", **SMALL), _ids),
    "convbert": (_hf("ConvBertModel", "ConvBertConfig", **SMALL, embedding_size=64), _ids),
    "xlnet": (
        _hf("XLNetModel", "XLNetConfig", d_model=64, n_layer=2, n_head=4, d_inner=128,
            vocab_size=100),
        _ids,
    ),
    "rwkv": (
        _hf("RwkvForCausalLM", "RwkvConfig", hidden_size=64, num_hidden_layers=2,
            vocab_size=100, attention_hidden_size=64, intermediate_size=128, context_length=32),
        _ids,
    ),
    "funnel": (
        _hf("FunnelModel", "FunnelConfig", d_model=64, n_head=4, d_head=16, d_inner=128,
            block_sizes=[1, 1], vocab_size=100),
        _ids,
    ),
    "segformer": (
        _hf("SegformerModel", "SegformerConfig", num_encoder_blocks=2, depths=[1, 1],
            sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2],
            patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2]),
        lambda: {"pixel_values": torch.randn(1, 3, 64, 64)},
    ),
    "speech2text": (
        _hf("Speech2TextModel", "Speech2TextConfig", d_model=64, encoder_layers=2,
            decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=128, decoder_ffn_dim=128, input_feat_per_channel=16,
            conv_channels=32, vocab_size=100),
        lambda: {
            "input_features": torch.randn(1, 40, 16),
            "decoder_input_ids": torch.randint(0, 100, (1, 4)),
        },
    ),
    "perceiver": (
        _hf("PerceiverModel", "PerceiverConfig", num_latents=8, d_latents=32, d_model=16,
            num_blocks=1, num_self_attends_per_block=1, num_self_attention_heads=2,
            num_cross_attention_heads=2),
        lambda: {"inputs": torch.randn(1, 10, 16)},
    ),
}  # fmt: skip
HF_QUICK = {"qwen3_moe", "fnet", "mamba", "gemma", "wav2vec2"}


# --- our own: the ops that used to count 0 ---------------------------------------------------


class Recurrent(nn.Module):
    """A bidirectional LSTM, a GRU, an RNN and an LSTMCell (the issue's example)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 32, bidirectional=True)
        self.gru = nn.GRU(64, 32, num_layers=2)
        self.rnn = nn.RNN(32, 32, nonlinearity="relu")
        self.cell = nn.LSTMCell(8, 32)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, _ = self.lstm(x)
        y, _ = self.gru(y)
        y, _ = self.rnn(y)
        h, _ = self.cell(x[0])
        return y, h


class GlobalFilter(nn.Module):
    """GFNet: rfft2, a learned complex filter, irfft2, and a linear."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 5, 16, 2))
        self.mlp = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.fft.rfft2(x, dim=(1, 2), norm="ortho") * torch.view_as_complex(self.weight)
        return self.mlp(torch.fft.irfft2(y, s=(8, 8), dim=(1, 2), norm="ortho"))


class Prototypes(nn.Module):
    """A prototype classifier: distances to learned prototypes, then a bilinear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(12, 16)
        self.prototypes = nn.Parameter(torch.randn(10, 16))
        self.head = nn.Bilinear(10, 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(x)
        return self.head(torch.cdist(z, self.prototypes), z)


class GraphNetwork(nn.Module):
    """A GCN layer (sparse adjacency) and a message-passing layer (index_add_ aggregation)."""

    def __init__(self) -> None:
        super().__init__()
        self.gcn = nn.Linear(8, 16, bias=False)
        self.message = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor, edges: torch.Tensor) -> Any:
        h = torch.sparse.mm(adjacency, self.gcn(x)).relu()
        messages = self.message(h)[edges[0]]
        return torch.zeros_like(h).index_add_(0, edges[1], messages)


def _graph() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    index = torch.randint(0, 12, (2, 30))
    adjacency = torch.sparse_coo_tensor(
        index, torch.ones(30), (12, 12), check_invariants=True
    ).coalesce()
    return torch.randn(12, 8), adjacency, torch.randint(0, 12, (2, 40))


class Recommender(nn.Module):
    """DLRM-like: bags of sparse features, a dense MLP, their pairwise interactions."""

    def __init__(self) -> None:
        super().__init__()
        self.bags = nn.ModuleList(nn.EmbeddingBag(50, 16, mode="sum") for _ in range(3))
        self.dense = nn.Linear(13, 16)
        self.top = nn.Linear(16 + 6, 1)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        features = [self.dense(dense)] + [bag(sparse[:, i]) for i, bag in enumerate(self.bags)]
        stacked = torch.stack(features, dim=1)
        interactions = torch.bmm(stacked, stacked.transpose(1, 2))
        rows, cols = torch.triu_indices(4, 4, offset=1)
        return self.top(torch.cat([features[0], interactions[:, rows, cols]], dim=1))


class Vocoder(nn.Module):
    """HiFi-GAN-like: weight-normed 1-d convolutions, a transposed upsampler, patches folded."""

    def __init__(self) -> None:
        super().__init__()
        norm = nn.utils.parametrizations.weight_norm
        self.pre = norm(nn.Conv1d(16, 32, 7, padding=3))
        self.up = norm(nn.ConvTranspose1d(32, 16, 4, stride=2, padding=1))
        self.post = norm(nn.Conv1d(16, 1, 7, padding=3))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        y = self.post(F.leaky_relu(self.up(F.leaky_relu(self.pre(mel)))))
        patches = F.unfold(y.unsqueeze(-1).expand(-1, -1, -1, 4), (3, 3), padding=1)
        return F.fold(patches, (y.shape[-1], 4), (3, 3), padding=1)


class CtcHead(nn.Module):
    """An acoustic model's head with its CTC loss (tensor lengths)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(32, 20)

    def forward(self, x: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor) -> Any:
        log_probs = self.proj(x).log_softmax(-1).transpose(0, 1)
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        return F.ctc_loss(log_probs, targets, lengths, target_lengths)


class Flow(nn.Module):
    """A normalising-flow step and a Gaussian process layer: linear algebra."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 8) + 4 * torch.eye(8))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = x @ self.weight
        log_det = torch.linalg.slogdet(self.weight)[1]
        kernel = torch.cdist(z, z).neg().exp() + torch.eye(x.shape[0])
        solved = torch.cholesky_solve(z, torch.linalg.cholesky(kernel))
        return solved, log_det


class Opaque(torch.autograd.Function):
    """x @ w outside PyTorch (as a Triton kernel would be), counted by its handler."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x @ w

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None]:
        return None, None


class FusedKernel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(16, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Opaque.apply(x, self.w).relu()


def _opaque_handlers() -> Any:
    from torchtally.handlers import HandlerSet

    handlers = HandlerSet()
    handlers.function(Opaque)(lambda call: call.args[0].numel * call.args[1].shape[-1])
    return handlers


def _quantized_mlp() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch.ao.quantization as tq

        mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
        return tq.quantize_dynamic(mlp, {nn.Linear}, dtype=torch.qint8)


OWN: list[Case] = [
    Case("recurrent", Recurrent, lambda: torch.randn(5, 3, 8), quick=True),
    Case("global_filter", GlobalFilter, lambda: torch.randn(2, 8, 8, 16), quick=True),
    Case("prototypes", Prototypes, lambda: torch.randn(6, 12)),
    Case("graph_network", GraphNetwork, _graph, quick=True),
    Case(
        "recommender",
        Recommender,
        lambda: (torch.randn(4, 13), torch.randint(0, 50, (4, 3, 5))),
        quick=True,
    ),
    Case("vocoder", Vocoder, lambda: torch.randn(1, 16, 20)),
    Case(
        "ctc_head",
        CtcHead,
        lambda: (torch.randn(2, 12, 32), torch.randint(1, 20, (2, 4)), torch.tensor([4, 3])),
    ),
    Case("flow", Flow, lambda: torch.randn(6, 8)),
    Case("fused_kernel", FusedKernel, lambda: torch.randn(4, 16), handlers=_opaque_handlers()),
    Case("quantized_mlp", _quantized_mlp, lambda: torch.randn(3, 16), meta=False),
]

CASES: list[Case] = [
    *(
        Case(name, _timm(name), _image(size), quick=name in TIMM_QUICK)
        for name, size in TIMM.items()
    ),
    *(Case(name, build, inputs, quick=name in HF_QUICK) for name, (build, inputs) in HF.items()),
    *OWN,
]
BY_NAME = {case.name: case for case in CASES}

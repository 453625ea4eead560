"""Probe which ATen ops real models run, for torchtally's op catalog.

Runs a set of torchvision and transformers models (random weights, small inputs)
under a ``TorchDispatchMode`` that records every op's packet name
(``func._schema.name``, e.g. ``aten::add_``) and one example of its argument shapes.
Classification models and BERT also run in train mode with a backward pass.

Usage::

    python scripts/op_inventory.py [--json out.json] [--only resnet50,bert] [--quick]

Prints, per op, how many models ran it (and which ones when few did).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map


def _describe(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return f"{str(x.dtype).removeprefix('torch.')}{list(x.shape)}"
    if isinstance(x, (int, float, bool, str)) or x is None:
        return x
    if isinstance(x, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
        return str(x)
    return type(x).__name__


class OpRecorder(TorchDispatchMode):
    """Records op packet names, call counts and one example of arg shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = defaultdict(int)
        self.examples: dict[str, str] = {}
        self.overloads: dict[str, set[str]] = defaultdict(set)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        name = func._schema.name
        self.counts[name] += 1
        self.overloads[name].add(func._overloadname)
        if name not in self.examples:
            a = tree_map(_describe, args)
            k = tree_map(_describe, kwargs)
            ex = f"{func._overloadname}: args={a}"
            if k:
                ex += f" kwargs={k}"
            self.examples[name] = ex[:300]
        return func(*args, **kwargs)


def _float_sum(out: Any) -> torch.Tensor:
    leaves, _ = tree_flatten(out)
    if hasattr(out, "to_tuple"):  # transformers ModelOutput
        leaves, _ = tree_flatten(out.to_tuple())
    ts = [t for t in leaves if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return sum((t.float().sum() for t in ts), torch.zeros(()))


# --------------------------------------------------------------------------- models

Entry = tuple[str, Callable[[], torch.nn.Module], Callable[[], Any], bool]
# (name, build, make_inputs -> args tuple, also_train)


def _tv_entries(quick: bool) -> Iterator[Entry]:
    import torchvision.models as tvm
    import torchvision.models.detection as det
    import torchvision.models.optical_flow as flow
    import torchvision.models.segmentation as seg
    import torchvision.models.video as vid

    s = 64 if quick else 224

    def img(size: int = s) -> Callable[[], Any]:
        return lambda: (torch.randn(1, 3, size, size),)

    for name in [
        "resnet50",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "convnext_tiny",
        "regnet_y_400mf",
    ]:
        yield name, partial(getattr(tvm, name), weights=None), img(), True
    yield "swin_t", lambda: tvm.swin_t(weights=None), img(224 if not quick else 64), True
    yield "vit_b_16", lambda: tvm.vit_b_16(weights=None), img(224), True

    d = 320
    dkw: dict[str, Any] = {"weights": None, "weights_backbone": None, "min_size": d, "max_size": d}

    def dimg() -> Any:
        return ([torch.rand(3, d, d)],)

    for name in [
        "fasterrcnn_resnet50_fpn",
        "maskrcnn_resnet50_fpn",
        "retinanet_resnet50_fpn",
        "fcos_resnet50_fpn",
        "keypointrcnn_resnet50_fpn",
    ]:
        yield name, partial(getattr(det, name), **dkw), dimg, False
    yield "ssd300_vgg16", lambda: det.ssd300_vgg16(weights=None, weights_backbone=None), dimg, False

    for name in ["deeplabv3_resnet50", "fcn_resnet50", "lraspp_mobilenet_v3_large"]:
        yield (
            name,
            partial(getattr(seg, name), weights=None, weights_backbone=None),
            img(d if not quick else 64),
            False,
        )

    yield (
        "r3d_18",
        lambda: vid.r3d_18(weights=None),
        lambda: (torch.randn(1, 3, 8, 112, 112),),
        False,
    )
    yield (
        "mvit_v2_s",
        lambda: vid.mvit_v2_s(weights=None),
        lambda: (torch.randn(1, 3, 16, 224, 224),),
        False,
    )
    yield (
        "raft_small",
        lambda: flow.raft_small(weights=None),
        lambda: (torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128)),
        False,
    )


def _hf_entries() -> Iterator[Entry]:
    import transformers as tf

    def ids(n: int = 16) -> Callable[[], Any]:
        return lambda: (torch.randint(0, 100, (1, n)),)

    common: dict[str, Any] = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
    }
    yield (
        "bert",
        lambda: tf.BertModel(tf.BertConfig(vocab_size=100, max_position_embeddings=64, **common)),
        ids(),
        True,
    )
    yield (
        "gpt2",
        lambda: tf.GPT2Model(
            tf.GPT2Config(
                vocab_size=100,
                n_positions=64,
                n_embd=64,
                n_layer=2,
                n_head=4,
                bos_token_id=0,
                eos_token_id=0,
            )
        ),
        ids(),
        False,
    )
    yield (
        "llama",
        lambda: tf.LlamaModel(
            tf.LlamaConfig(
                vocab_size=100, max_position_embeddings=64, num_key_value_heads=2, **common
            )
        ),
        ids(),
        False,
    )
    yield (
        "t5",
        lambda: tf.T5Model(
            tf.T5Config(vocab_size=100, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)
        ),
        lambda: {
            "input_ids": torch.randint(0, 100, (1, 16)),
            "decoder_input_ids": torch.randint(0, 100, (1, 8)),
        },
        False,
    )
    yield (
        "whisper",
        lambda: tf.WhisperModel(
            tf.WhisperConfig(
                vocab_size=100,
                d_model=64,
                encoder_layers=2,
                decoder_layers=2,
                encoder_attention_heads=4,
                decoder_attention_heads=4,
                encoder_ffn_dim=128,
                decoder_ffn_dim=128,
                num_mel_bins=80,
                max_source_positions=100,
                max_target_positions=64,
                pad_token_id=1,
                bos_token_id=0,
                eos_token_id=0,
                decoder_start_token_id=0,
            )
        ),
        lambda: {
            "input_features": torch.randn(1, 80, 200),
            "decoder_input_ids": torch.randint(0, 100, (1, 8)),
        },
        False,
    )


def _call(model: torch.nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(*inputs)


def run_model(
    build: Callable[[], torch.nn.Module], make_inputs: Callable[[], Any], train: bool
) -> OpRecorder:
    """Run one model under an OpRecorder; in train mode also run backward."""
    torch.manual_seed(0)
    model = build()
    inputs = make_inputs()
    rec = OpRecorder()
    if train:
        model.train()
        with rec:
            out = _call(model, inputs)
            _float_sum(out).backward()
    else:
        model.eval()
        with torch.no_grad(), rec:
            _call(model, inputs)
    return rec


def inventory(
    only: set[str] | None = None, quick: bool = False, log: bool = True
) -> dict[str, OpRecorder]:
    """Return {"<model>/eval" or "<model>/train": recorder}."""
    entries = list(_tv_entries(quick)) + list(_hf_entries())
    results: dict[str, OpRecorder] = {}
    for name, build, make_inputs, also_train in entries:
        if only is not None and name not in only:
            continue
        for train in [False, True] if also_train else [False]:
            key = f"{name}/{'train' if train else 'eval'}"
            t0 = time.perf_counter()
            results[key] = run_model(build, make_inputs, train)
            if log:
                print(
                    f"# {key}: {len(results[key].counts)} ops, {time.perf_counter() - t0:.1f}s",
                    file=sys.stderr,
                )
    return results


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--json", help="write the full inventory (per model ops, counts, examples) here"
    )
    ap.add_argument("--only", help="comma separated model names")
    ap.add_argument("--quick", action="store_true", help="smaller inputs where the model allows it")
    ns = ap.parse_args()
    only = set(ns.only.split(",")) if ns.only else None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = inventory(only, ns.quick)

    models_per_op: dict[str, set[str]] = defaultdict(set)
    phase_per_op: dict[str, set[str]] = defaultdict(set)
    examples: dict[str, str] = {}
    for key, rec in results.items():
        model, phase = key.split("/")
        for op in rec.counts:
            models_per_op[op].add(model)
            phase_per_op[op].add(phase)
            examples.setdefault(op, rec.examples[op])
    n_models = len({k.split("/")[0] for k in results})
    print(f"{len(models_per_op)} distinct ops over {n_models} models ({len(results)} runs)")
    for op in sorted(models_per_op, key=lambda o: (-len(models_per_op[o]), o)):
        ms = sorted(models_per_op[op])
        who = ", ".join(ms) if len(ms) <= 6 else ""
        phases = "+".join(sorted(phase_per_op[op]))
        print(f"{len(ms):3d}  {op:45s} [{phases}] {who}")
    if ns.json:
        data = {
            key: {
                op: {
                    "count": rec.counts[op],
                    "overloads": sorted(rec.overloads[op]),
                    "example": rec.examples[op],
                }
                for op in sorted(rec.counts)
            }
            for key, rec in results.items()
        }
        with open(ns.json, "w") as f:
            json.dump(data, f, indent=1)


if __name__ == "__main__":
    main()

"""The roofline's estimate against measured time, per model and per module, on this machine.

    python benchmarks/roofline_vs_measured.py                  # on the GPU if there is one
    python benchmarks/roofline_vs_measured.py --hardware h100-sxm --batches 1 8 32
    python benchmarks/roofline_vs_measured.py --small          # tiny shapes, a quick CPU check

Each case (ResNet-50 and ViT-B/16 at each batch size, and one Llama-2-7B-shaped decoder layer at
512 tokens per sequence) runs on the device with ``analyze(..., measure=True)``: the forward
pass timed per op (CUDA events on a GPU, synchronised; perf_counter on a CPU) after warm-up, the
median of 5 passes. The same analysis' roofline (``analysis.roofline(hardware)``) estimates every
op from its flops and bytes. The device's figures are the table's unless `--hardware` names
others; on a CPU the generic ``cpu`` entry stands in, so compare the ratios, not the times.

Printed as Markdown: per case the estimated and measured time of the forward pass's ops (and a
plain forward pass), their ratio, the share of estimated time in compute-bound ops, and the
efficiency factors `Roofline.calibrate` fits; then, per case, the modules that took longest,
estimated against measured. ``--json FILE`` keeps everything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEVICE_NAMES = (  # torch.cuda.get_device_name() -> the hardware table's name
    ("H100 PCIe", "h100-pcie"),
    ("H100", "h100-sxm"),
    ("H200", "h200"),
    ("A100", "a100-80gb"),
    ("L4", "l4"),
    ("4090", "rtx-4090"),
    ("MI300X", "mi300x"),
)
LLAMA_7B_LAYER = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 1,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
}
SMALL_LLAMA_LAYER = {**LLAMA_7B_LAYER, "hidden_size": 256, "intermediate_size": 688,
                     "num_attention_heads": 4, "num_key_value_heads": 4}  # fmt: skip


def device_and_hardware(name: str | None) -> tuple[Any, str]:
    """Where to run (the GPU if there is one) and the device's name in the hardware table."""
    import torch

    if torch.cuda.is_available():
        device = torch.device("cuda")
        if name is None:
            gpu = torch.cuda.get_device_name(device)
            name = next((ours for part, ours in DEVICE_NAMES if part in gpu), None)
            if name is None:
                raise SystemExit(f"no hardware table entry for {gpu!r}: pass --hardware NAME")
        return device, name
    return torch.device("cpu"), name or "cpu"


def cases(small: bool, batches: list[int], device: Any) -> list[tuple[str, Any, Any]]:
    """(label, model, inputs) for every case, on `device`, in bfloat16 on a GPU."""
    import torch
    import torchvision
    import transformers

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    image = 64 if small else 224
    found = []
    for name in ("resnet50", "vit_b_16"):
        kwargs = {"image_size": image} if name == "vit_b_16" else {}
        model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
        model = model.to(device=device, dtype=dtype)
        for batch in batches:
            inputs = torch.randn(batch, 3, image, image, device=device, dtype=dtype)
            found.append((f"{name} batch {batch}", model, inputs))
    config = transformers.LlamaConfig(**(SMALL_LLAMA_LAYER if small else LLAMA_7B_LAYER))
    llama = transformers.LlamaModel(config).eval().to(device=device, dtype=dtype)
    tokens = 64 if small else 512
    for batch in batches:
        ids = torch.randint(0, config.vocab_size, (batch, tokens), device=device)
        found.append((f"llama layer batch {batch} x {tokens}", llama, {"input_ids": ids}))
    return found


def seconds(value: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e9:.3g} ns"


def compare(label: str, model: Any, inputs: Any, hardware: str, top: int) -> dict[str, Any]:
    """Estimate and measurement of one case, per model and per module."""
    import torchtally

    analysis = torchtally.analyze(model, inputs, measure=True, warn_unsupported=False)
    estimate = analysis.roofline(hardware)
    measured = analysis.measured()
    calibrated = estimate.calibrate(measured)
    estimated_modules = estimate.by_module()
    measured_modules = {name: measured.ops_total(name) for name in analysis.modules}
    bounds = estimate.bound_by_module()
    names = [name for name in analysis.modules if name and "." not in name]
    if len(names) < 3:  # a model of one block: the block's children
        names = [
            n for n in analysis.modules if n.count(".") == 1 and not n.endswith("embed_tokens")
        ]
    names.sort(key=lambda n: -measured_modules.get(n, 0.0))
    return {
        "case": label,
        "hardware": hardware,
        "device": measured.device,
        "estimated_s": estimate.total(),
        "measured_s": measured.ops_total(),
        "forward_s": measured.forward_seconds,
        "compute_share": estimate.bound_share()["compute"],
        "compute_efficiency": calibrated.compute_efficiency,
        "memory_efficiency": calibrated.memory_efficiency,
        "achieved_flops": measured.achieved_flops(),
        "modules": [
            {
                "module": name,
                "estimated_s": estimated_modules.get(name, 0.0),
                "measured_s": measured_modules.get(name, 0.0),
                "bound": bounds.get(name),
            }
            for name in names[:top]
        ],
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| case | device | estimated | measured (ops) | forward pass | measured / estimated "
        "| compute-bound share | fitted compute, memory efficiency |",
        "|------|--------|-----------|----------------|--------------|----------------------"
        "|---------------------|-----------------------------------|",
    ]
    for r in results:
        ratio = r["measured_s"] / r["estimated_s"] if r["estimated_s"] else float("nan")
        lines.append(
            f"| {r['case']} | {r['hardware']} | {seconds(r['estimated_s'])} | "
            f"{seconds(r['measured_s'])} | {seconds(r['forward_s'])} | {ratio:.2f}x | "
            f"{r['compute_share']:.0%} | {r['compute_efficiency']:.2f}, "
            f"{r['memory_efficiency']:.2f} |"
        )
    lines += ["", "| case | module | bound | estimated | measured | measured / estimated |"]
    lines.append("|------|--------|-------|-----------|----------|----------------------|")
    for r in results:
        for m in r["modules"]:
            ratio = m["measured_s"] / m["estimated_s"] if m["estimated_s"] else float("nan")
            lines.append(
                f"| {r['case']} | `{m['module']}` | {m['bound'] or ''} | "
                f"{seconds(m['estimated_s'])} | {seconds(m['measured_s'])} | {ratio:.2f}x |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hardware", help="the device's name in the table (default: detected)")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--small", action="store_true", help="tiny shapes: a quick check")
    parser.add_argument("--top", type=int, default=4, help="modules shown per case")
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    args = parser.parse_args(argv)
    device, hardware = device_and_hardware(args.hardware)
    results = []
    for label, model, inputs in cases(args.small, args.batches, device):
        results.append(compare(label, model, inputs, hardware, args.top))
        print(f"done: {label}", file=sys.stderr, flush=True)
    print(markdown(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

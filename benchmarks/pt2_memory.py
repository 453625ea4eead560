"""Peak memory of analysing a saved exported program, with and without loading its weights.

    python benchmarks/pt2_memory.py [--file llama.pt2] [--layers 22]

Builds a Llama of TinyLlama-1.1B's shape in bfloat16 (random weights, nothing downloaded), exports
it with ``torch.export`` and saves it (once: an existing file is reused), then analyses the file
in fresh processes: once after ``torch.export.load`` (every weight read into memory), once after
``torchtally.artefacts.load_exported`` (weights on the meta device, never read), and once doing
nothing but the imports. Each prints its peak resident set size, time and flops.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SEQ_LEN = 2048


def build(path: Path, layers: int) -> None:
    import torch
    import transformers

    config = transformers.LlamaConfig(  # TinyLlama-1.1B
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
        use_cache=False,
    )
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model = model.to_empty(device="cpu").eval()  # real memory, values irrelevant to counting
    ids = torch.zeros(1, SEQ_LEN, dtype=torch.long)
    # a tuple out (a ModelOutput would need transformers imported to load the file)
    program = torch.export.export(model, (), {"input_ids": ids, "return_dict": False})
    torch.export.save(program, path)


def measure(path: Path, how: str) -> dict[str, float]:
    start = time.perf_counter()
    import torch

    import torchtally
    from torchtally.artefacts import load_exported

    total = 0
    if how != "imports":
        program = torch.export.load(path) if how == "weights" else load_exported(path)
        total = torchtally.analyze(program, warn_unsupported=False).total()
    return {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": time.perf_counter() - start,
        "flops": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", type=Path, default=Path("/tmp/torchtally-llama-1.1b.pt2"))
    parser.add_argument("--layers", type=int, default=22)
    parser.add_argument("--measure", choices=("imports", "weights", "meta"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.file, args.measure)))
        return
    if not args.file.exists():
        build(args.file, args.layers)
    size = args.file.stat().st_size / 2**30
    print(f"{args.file}: {size:.2f} GiB, analysed at {SEQ_LEN} tokens")
    for how in ("imports", "weights", "meta"):
        command = [sys.executable, __file__, "--file", str(args.file), "--measure", how]
        result = json.loads(subprocess.run(command, capture_output=True, check=True).stdout)
        print(
            f"{how:8} peak RSS {result['peak_rss_mb']:7.0f} MB  {result['seconds']:5.1f} s  "
            f"flops {int(result['flops']):,}"
        )


if __name__ == "__main__":
    main()

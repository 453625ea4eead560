"""How long `torchtally.generation` takes, and how much memory, on full-size language models.

    python benchmarks/generation.py                     # Llama-2-7B and Llama-2-70B shapes
    python benchmarks/generation.py --cases llama2-7b --repeats 3
    python benchmarks/generation.py --every-step        # also trace all 127 steps, for comparison

Each case runs in a subprocess of its own, so that its peak RSS is its own: the interpreter,
torch and transformers imported, the model built on the meta device (no weights) and the
counts. ``import s`` is importing torchtally and transformers and building the model; ``first
s`` the first `generation` call in the process (it pays the one-off costs: caches filling);
``warm s`` the median of the later calls (``--repeats``); ``whole s`` the subprocess's wall time,
start to end. ``cpu s`` is the process's CPU time over the same call, which a busy machine
inflates less than wall time (``load`` is the 1-minute load average). A 2,048-token prompt
and 128 new tokens, batch 1, float32, element-wise ops off.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPT, NEW = 2048, 128
CASES: dict[str, dict[str, int]] = {
    "llama2-7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
    },
    "llama2-70b": {
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "vocab_size": 32000,
    },
}
TARGET_S = {"llama2-7b": 10.0, "llama2-70b": 20.0}
TARGET_RSS_MB = {"llama2-7b": 1500.0}


def worker(case: str, repeats: int, every_step: bool, out: Path) -> None:
    """Runs in the subprocess: build, count, time, and write the figures as JSON."""
    start = time.perf_counter()
    import logging

    import torch
    import transformers

    import torchtally

    logging.disable(logging.WARNING)
    config = transformers.LlamaConfig(**CASES[case])
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    built = time.perf_counter()

    def count() -> Any:
        return torchtally.generation(
            model, PROMPT, NEW, trace_every_step=every_step, warn_unsupported=False
        )

    t0, c0 = time.perf_counter(), time.process_time()
    result = count()
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    warm, warm_cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        count()
        warm.append(time.perf_counter() - t0)
        warm_cpu.append(time.process_time() - c0)
    figures = {
        "case": case,
        "every_step": every_step,
        "import_s": built - start,
        "first_s": first,
        "warm_s": statistics.median(warm) if warm else None,
        "first_cpu_s": first_cpu,
        "warm_cpu_s": statistics.median(warm_cpu) if warm_cpu else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "prefill": result.prefill.total(),
        "decode": result.decode.total(),
        "traced_steps": list(result.traced_steps),
        "load": os.getloadavg()[0],
    }
    out.write_text(json.dumps(figures))


def run_case(case: str, repeats: int, every_step: bool, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "figures.json"
        command = [sys.executable, __file__, "--worker", case, "--repeats", str(repeats)]
        if every_step:
            command.append("--every-step")
        t0 = time.perf_counter()
        load = os.getloadavg()[0]
        done = subprocess.run([*command, "--out", str(out)], timeout=timeout, check=False)
        whole = time.perf_counter() - t0
        if done.returncode != 0 or not out.exists():
            return {"case": case, "every_step": every_step, "error": done.returncode}
        figures: dict[str, Any] = json.loads(out.read_text())
    figures["whole_s"] = whole
    figures["load"] = max(load, figures["load"])
    return figures


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "case",
        "steps traced",
        "prefill flops",
        "decode flops",
        "import s",
        "first s",
        "first cpu s",
        "warm s",
        "warm cpu s",
        "whole s",
        "peak RSS MB",
        "load",
    )
    body = []
    for row in rows:
        if "error" in row:
            body.append((row["case"], f"failed ({row['error']})", *[""] * (len(header) - 2)))
            continue
        traced = len(row["traced_steps"])
        body.append(
            (
                row["case"],
                f"{traced} of {NEW - 1}",
                f"{row['prefill']:,}",
                f"{row['decode']:,}",
                f"{row['import_s']:.2f}",
                f"{row['first_s']:.2f}",
                f"{row['first_cpu_s']:.2f}",
                "" if row["warm_s"] is None else f"{row['warm_s']:.2f}",
                "" if row["warm_cpu_s"] is None else f"{row['warm_cpu_s']:.2f}",
                f"{row['whole_s']:.2f}",
                f"{row['peak_rss_mb']:.0f}",
                f"{row['load']:.1f}",
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *map(line, body)])


def environment() -> str:
    import platform

    import torch
    import transformers

    return (
        f"# torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.machine()}; "
        f"prompt {PROMPT}, {NEW} new tokens, batch 1, meta device"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--repeats", type=int, default=2, help="warm runs after the first")
    parser.add_argument("--every-step", action="store_true", help="also trace every step")
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.repeats, args.every_step, args.out)
        return 0
    rows = []
    for case in args.cases:
        rows.append(run_case(case, args.repeats, False, args.timeout))
        if args.every_step:
            rows.append(run_case(case, 0, True, args.timeout))
    print(environment())
    print(table(rows))
    for row in rows:
        if "error" in row or row["every_step"]:
            continue
        target = TARGET_S.get(row["case"])
        rss = TARGET_RSS_MB.get(row["case"])
        verdict = f"{row['case']}: first call {row['first_s']:.2f} s (target {target} s)"
        if rss is not None:
            verdict += f", peak RSS {row['peak_rss_mb']:.0f} MB (target {rss:.0f} MB)"
        print(verdict)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

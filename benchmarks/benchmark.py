"""torchtally against fvcore, mmengine, FlopCounterMode and one plain forward pass.

    python benchmarks/benchmark.py                      # everything (about 15 minutes on 2 cores)
    python benchmarks/benchmark.py --cases resnet50 --tools plain torchtally-real torchtally-fake
    python benchmarks/benchmark.py --skip-llama70b      # the four models only
    python benchmarks/benchmark.py --only-llama70b      # the Llama-2-70B rows only

Every (model, tool) pair runs in a subprocess of its own, so its peak RSS is its own: the
interpreter, the libraries it imports, the model and the analysis (read after one warm-up run).
Times are wall-clock seconds of the analysis alone, the median (or with ``--statistic min`` the
fastest, steadier on a busy machine) of ``--repeats`` runs; each run follows one plain forward
pass of the same model (``torch.no_grad()``, ``fwd s``), so that both are timed under the same
load, and ``x fwd`` is the one time over the other. ``first s`` is the warm-up run, which pays
the one-off costs (lazy imports; caches filling, such as torchtally's fake-mode recipes and
FakeTensorMode's). MACs: one fused multiply-add is one (FlopCounterMode's count, two per
multiply-add, is halved); attention is the part of them in attention ops.

The Llama-2-70B rows build the model on the meta device (torchtally) or under a FakeTensorMode
(FlopCounterMode): 80 layers, 8192 hidden, 64 heads, 8 KV heads, 28672 MLP, 32000 tokens of
vocabulary, 2048 tokens in; the same with 40 layers shows how time grows with depth.
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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CASES = ("resnet50", "vit_b_16", "bert_base", "llama")
TOOLS = (
    "plain",
    "torchtally-real",
    "torchtally-fake",
    "fvcore",
    "mmengine",
    "flopcounter-real",
    "flopcounter-fake",
)
LLAMA70B_TOOLS = ("torchtally-meta", "flopcounter-fake")
# The Llama-shaped model of the four: small enough to run for real on a laptop CPU.
LLAMA_SMALL: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
}
LLAMA_SMALL_SEQ = 256
LLAMA_70B: dict[str, Any] = {
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}
LLAMA_70B_SEQ = 2048
BERT_SEQ = 128
IMAGE = (1, 3, 224, 224)


@dataclass
class Result:
    case: str
    tool: str
    seconds: float | None = None
    first_seconds: float | None = None
    macs: int | None = None
    attention_macs: int | None = None
    peak_rss_mb: float | None = None
    forward_seconds: float | None = None
    ratio: float | None = None
    error: str | None = None


# --- the worker: one (case, tool) in its own process ---------------------------------------------


def build_case(case: str, device: str | None = None) -> tuple[Any, tuple[Any, ...]]:
    """The model of `case` (eval mode, random weights) and its positional inputs."""
    import torch

    torch.manual_seed(0)
    if case in ("resnet50", "vit_b_16"):
        import torchvision

        model = torchvision.models.get_model(case, weights=None).eval()
        return model, (torch.randn(IMAGE),)
    import transformers

    if case == "bert_base":
        model = transformers.BertModel(transformers.BertConfig()).eval()
        return model, (torch.randint(0, 30522, (1, BERT_SEQ)),)
    if case == "llama":
        config, seq = transformers.LlamaConfig(**LLAMA_SMALL, use_cache=False), LLAMA_SMALL_SEQ
    elif case.startswith("llama70b"):
        layers = int(case.partition("-")[2] or 80)
        config = transformers.LlamaConfig(
            **{**LLAMA_70B, "num_hidden_layers": layers}, use_cache=False
        )
        seq = LLAMA_70B_SEQ
    else:
        raise ValueError(f"unknown case {case!r}; cases: {', '.join(CASES)}, llama70b[-LAYERS]")
    if device == "meta":
        with torch.device("meta"):
            model = transformers.LlamaForCausalLM(config).eval()
    else:
        model = transformers.LlamaForCausalLM(config).eval()
    return model, (torch.randint(0, config.vocab_size, (1, seq)),)


def attention_macs(by_operator: dict[str, int]) -> int:
    return sum(count for name, count in by_operator.items() if "attention" in name)


def tool_runner(tool: str, model: Any, args: tuple[Any, ...]) -> Callable[[], tuple[int, int]]:
    """A function that analyses `model` once with `tool` and returns (MACs, attention MACs)."""
    import torch

    if tool == "plain":

        def plain() -> tuple[int, int]:
            with torch.no_grad():
                model(*args)
            return 0, 0

        return plain
    if tool.startswith("torchtally-"):
        import torchtally

        mode = tool.partition("-")[2]

        def tally() -> tuple[int, int]:
            analysis = torchtally.analyze(model, args, mode=mode, warn_unsupported=False)
            return analysis.total(), attention_macs(analysis.by_operator())

        return tally
    if tool == "fvcore":
        from fvcore.nn import FlopCountAnalysis

        def fvcore() -> tuple[int, int]:
            analysis = FlopCountAnalysis(model, args)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total()), attention_macs(dict(analysis.by_operator()))

        return fvcore
    if tool == "mmengine":
        import logging

        from mmengine.analysis import get_model_complexity_info

        logging.getLogger("mmengine").setLevel(logging.ERROR)

        def mmengine() -> tuple[int, int]:
            info = get_model_complexity_info(model, inputs=args, show_table=False, show_arch=False)
            return int(info["flops"]), 0

        return mmengine
    if tool.startswith("flopcounter-"):
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.utils.flop_counter import FlopCounterMode

        fake = tool.endswith("fake")

        def flopcounter() -> tuple[int, int]:
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                if fake:  # real weights and inputs become fakes as the ops meet them
                    with FakeTensorMode(allow_non_fake_inputs=True):
                        model(*args)
                else:
                    model(*args)
            per_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
            return counter.get_total_flops() // 2, attention_macs(per_op) // 2

        return flopcounter
    raise ValueError(f"unknown tool {tool!r}; tools: {', '.join(TOOLS)}")


def llama70b_runner(tool: str, layers: int) -> tuple[Callable[[], tuple[int, int]], float]:
    """The 70B-shaped analyses (the model never exists in memory) and the build time."""
    import torch

    started = time.perf_counter()
    case = f"llama70b-{layers}"
    if tool == "torchtally-meta":
        import torchtally

        model, args = build_case(case, device="meta")
        built = time.perf_counter() - started

        def tally() -> tuple[int, int]:
            analysis = torchtally.analyze(model, args, mode="meta", warn_unsupported=False)
            return analysis.total(), attention_macs(analysis.by_operator())

        return tally, built
    if tool == "flopcounter-fake":
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.utils.flop_counter import FlopCounterMode

        fake_mode = FakeTensorMode()
        with fake_mode:
            model, args = build_case(case)
        built = time.perf_counter() - started

        def flopcounter() -> tuple[int, int]:
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), fake_mode, counter:
                model(*args)
            per_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
            return counter.get_total_flops() // 2, attention_macs(per_op) // 2

        return flopcounter, built
    raise ValueError(f"the 70B rows run {', '.join(LLAMA70B_TOOLS)}, not {tool!r}")


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


STATISTICS: dict[str, Callable[[list[float]], float]] = {"median": statistics.median, "min": min}


def worker(case: str, tool: str, repeats: int, statistic: str, out: Path) -> None:
    """Build, run once (warm-up), read the peak RSS; then time the tool `repeats` times, each
    run after one plain forward pass of the same model, so that both are timed under the same
    load (a shared machine's load changes by the second). Writes a `Result` to `out`."""
    warnings.filterwarnings("ignore")
    result = Result(case, tool)
    summary = STATISTICS[statistic]
    try:
        if case.startswith("llama70b"):
            run, _ = llama70b_runner(tool, int(case.partition("-")[2] or 80))
            forward = None
        else:
            model, args = build_case(case)
            run = tool_runner(tool, model, args)
            forward = tool_runner("plain", model, args)
        started = time.perf_counter()
        result.macs, result.attention_macs = run()  # the warm-up run
        result.first_seconds = time.perf_counter() - started
        result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if forward is None:  # the 70B shapes cannot run forward for real
            result.seconds = summary([timed(run) for _ in range(repeats)])
        else:
            forward()  # warm
            pairs = [(timed(forward), timed(run)) for _ in range(repeats)]
            result.forward_seconds = summary([f for f, _ in pairs])
            result.seconds = summary([t for _, t in pairs])
            result.ratio = result.seconds / result.forward_seconds
    except Exception as error:  # a peer that cannot analyse a model is a result too
        result.error = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    if result.peak_rss_mb is None:
        result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(result.__dict__))


# --- the driver -----------------------------------------------------------------------------------


def run_pair(case: str, tool: str, repeats: int, statistic: str, timeout: float) -> Result:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, __file__, "--worker", case, tool, "--repeats", str(repeats)]
        command += ["--statistic", statistic]
        try:
            done = subprocess.run(
                [*command, "--out", str(out)],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env={**os.environ, "TORCHTALLY_BENCHMARK_WORKER": "1"},
            )
        except subprocess.TimeoutExpired:
            return Result(case, tool, error=f"timed out after {timeout:.0f} s")
        if not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return Result(case, tool, error=f"worker exited {done.returncode}: {tail[0][:120]}")
        return Result(**json.loads(out.read_text()))


def giga(value: int | None) -> str:
    return "" if value is None else f"{value / 1e9:.3f}"


def comparison_table(results: list[Result]) -> str:
    """Per model: every tool's MACs, time, time over the plain forward pass, peak RSS."""
    header = (
        "model",
        "tool",
        "GMACs",
        "attn GMACs",
        "first s",
        "time s",
        "fwd s",
        "x fwd",
        "peak RSS MB",
        "note",
    )
    rows: list[tuple[str, ...]] = []
    for r in results:
        rows.append(
            (
                r.case,
                r.tool,
                "" if r.tool == "plain" else giga(r.macs),
                "" if r.tool in ("plain", "mmengine") else giga(r.attention_macs),
                "" if r.first_seconds is None else f"{r.first_seconds:.3f}",
                "" if r.seconds is None else f"{r.seconds:.3f}",
                "" if r.forward_seconds is None else f"{r.forward_seconds:.3f}",
                "" if r.ratio is None else f"{r.ratio:.2f}",
                "" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}",
                r.error or "",
            )
        )
    return text_table(header, rows)


def llama70b_table(results: list[Result]) -> str:
    header = ("model", "tool", "GMACs", "attn GMACs", "first s", "warm s", "peak RSS MB", "note")
    rows: list[tuple[str, ...]] = [
        (
            r.case,
            r.tool,
            giga(r.macs),
            giga(r.attention_macs),
            "" if r.first_seconds is None else f"{r.first_seconds:.2f}",
            "" if r.seconds is None else f"{r.seconds:.2f}",
            "" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}",
            r.error or "",
        )
        for r in results
    ]
    text = text_table(header, rows)
    by_depth = {
        r.case: r.seconds for r in results if r.tool == "torchtally-meta" and r.seconds is not None
    }
    if "llama70b-40" in by_depth and "llama70b-80" in by_depth:
        ratio = by_depth["llama70b-80"] / by_depth["llama70b-40"]
        text += f"\ntorchtally meta, 80 layers over 40 layers: {ratio:.2f}x the time"
    return text


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    numeric = {i for i in range(2, len(header) - 1)}

    def line(row: tuple[str, ...]) -> str:
        cells = (
            str(cell).rjust(width) if i in numeric else str(cell).ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def environment() -> str:
    import platform

    import torch

    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.machine()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per pair")
    parser.add_argument(
        "--statistic",
        choices=list(STATISTICS),
        default="median",
        help="of the timed runs: median (default), or min on a busy machine",
    )
    parser.add_argument("--skip-llama70b", action="store_true", help="leave out the 70B rows")
    parser.add_argument("--only-llama70b", action="store_true", help="only the 70B rows")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pair")
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "TOOL"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        case, tool = args.worker
        worker(case, tool, args.repeats, args.statistic, args.out)
        return 0
    print(f"# {environment()}; warm, {args.statistic} of {args.repeats}\n", flush=True)
    results: list[Result] = []
    if not args.only_llama70b:
        tools = ["plain", *(t for t in args.tools if t != "plain")]  # the ratios need it
        for case in args.cases:
            for tool in tools:
                results.append(run_pair(case, tool, args.repeats, args.statistic, args.timeout))
                print(f"  {case} {tool}: done", file=sys.stderr, flush=True)
        print(comparison_table(results), flush=True)
    big: list[Result] = []
    if not args.skip_llama70b:
        pairs = [(f"llama70b-{n}", "torchtally-meta") for n in (80, 40)]
        pairs.append(("llama70b-80", "flopcounter-fake"))
        for case, tool in pairs:
            big.append(run_pair(case, tool, args.repeats, args.statistic, args.timeout))
            print(f"  {case} {tool}: done", file=sys.stderr, flush=True)
        print(f"\nLlama-2-70B shape, {LLAMA_70B_SEQ} tokens, never in memory:\n", flush=True)
        print(llama70b_table(big))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results + big], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

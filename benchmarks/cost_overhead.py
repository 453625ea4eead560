"""What counting bytes and tracking memory add to a fake-mode analysis.

    python benchmarks/cost_overhead.py                    # ResNet-50, BERT-base, Llama-2-70B
    python benchmarks/cost_overhead.py --cases resnet50 --repeats 21

Each case (ResNet-50 and BERT-base in fake mode, Llama-2-70B's shape on the meta device) is
analysed in one process, in pairs of runs back to back: "without" counts flops and activations
with the storage tracker switched off; "with" is the default analysis (flops, activations and
bytes, storage lifetimes recorded for `Analysis.memory()`; `memory()` itself runs only when
asked for, and the second table shows what it costs then). Times
are CPU seconds of the process (``time.process_time``); what is added is the median over
`--repeats` pairs of one run's time over the other's (pairs cancel a machine's changing load,
the median its spikes), with the middle half of the ratios.
A second table times each part alone, the fastest of its runs: tracing (without the storage
tracker), counting flops and activations, the time spent inside the storage tracker during a
trace (measured directly), counting bytes, and `memory()` (not part of an analysis: computed
when asked for); a busy machine disturbs these less.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CASES = ("resnet50", "bert_base", "llama70b-80")


def fastest(run: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def measure(case: str, repeats: int) -> tuple[list[tuple[float, float]], int]:
    """(seconds without, seconds with) of each pair of runs, and the ops, for `case`."""
    from benchmark import build_case

    import torchtally
    from torchtally import memory

    mode = "meta" if case.startswith("llama70b") else "fake"
    model, args = build_case(case, device="meta" if mode == "meta" else None)
    track = memory.StorageTracker.track

    def without() -> None:
        memory.StorageTracker.track = lambda self, value: None  # type: ignore[method-assign]
        try:
            torchtally.analyze(
                model, args, mode=mode, metrics=("flops", "activations"), warn_unsupported=False
            )
        finally:
            memory.StorageTracker.track = track  # type: ignore[method-assign]

    def with_cost() -> None:
        torchtally.analyze(model, args, mode=mode, warn_unsupported=False)

    without()
    with_cost()  # warm-up: caches (fake-mode recipes, schemas) fill here
    pairs = []
    for _ in range(repeats):  # each pair back to back, so that both see the same load
        first = fastest(without, 1)
        pairs.append((first, fastest(with_cost, 1)))
    ops = len(torchtally.trace(model, args, mode=mode).ops)
    return pairs, ops


def breakdown(case: str, repeats: int) -> str:
    """Each part alone, the fastest of `repeats`: tracing with and without the storage tracker,
    counting flops and activations, counting bytes, `memory()`; steadier than whole runs."""
    from benchmark import build_case

    import torchtally
    from torchtally import memory
    from torchtally.analysis import Analysis
    from torchtally.api import registry_with

    mode = "meta" if case.startswith("llama70b") else "fake"
    model, args = build_case(case, device="meta" if mode == "meta" else None)
    track = memory.StorageTracker.track
    registry = registry_with()

    def traced(on: bool) -> Any:
        memory.StorageTracker.track = track if on else (lambda self, value: None)  # type: ignore[method-assign]
        try:
            return torchtally.trace(model, args, mode=mode)
        finally:
            memory.StorageTracker.track = track  # type: ignore[method-assign]

    trace = traced(True)
    spent = [0.0]
    freed = memory.StorageTracker._freed

    def timed(run: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            started = time.process_time()
            try:
                return run(*args)
            finally:
                spent[0] += time.process_time() - started

        return call

    def tracking() -> float:
        """CPU seconds spent inside the storage tracker during one trace (noting storages and
        their frees), measured directly: steadier than the difference of two whole traces."""
        memory.StorageTracker.track = timed(track)  # type: ignore[method-assign]
        memory.StorageTracker._freed = timed(freed)  # type: ignore[method-assign]
        spent[0] = 0.0
        try:
            torchtally.trace(model, args, mode=mode)
        finally:
            memory.StorageTracker.track = track  # type: ignore[method-assign]
            memory.StorageTracker._freed = freed  # type: ignore[method-assign]
        return spent[0]

    def counted(metrics: tuple[str, ...]) -> Analysis:
        return Analysis(
            trace=trace,
            registry=registry,
            options=torchtally.CountOptions(),
            ancestor_mode="owner",
            metrics=metrics,
        )

    analysis = counted(("bytes",))
    parts = {
        "off": lambda: traced(False),
        "counts": lambda: counted(("flops", "activations")),
        "bytes": lambda: counted(("bytes",)),
        "memory": analysis.memory,
    }
    best = dict.fromkeys([*parts, "tracking"], float("inf"))
    for _ in range(repeats):
        for name, run in parts.items():
            best[name] = min(best[name], fastest(run, 1))
        best["tracking"] = min(best["tracking"], tracking())
    base = best["off"] + best["counts"]
    added = best["tracking"] + best["bytes"]
    return (
        f"| {case} | {best['off'] * 1e3:.1f} | {best['counts'] * 1e3:.2f} | "
        f"{best['tracking'] * 1e3:.2f} | {best['bytes'] * 1e3:.2f} | "
        f"{added / base * 100:+.1f}% | {best['memory'] * 1e3:.2f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--repeats", type=int, default=11, help="runs of each way per case")
    args = parser.parse_args(argv)
    print("| case | ops | without, CPU s | with, CPU s | added (median of pairs) | middle half |")
    print("|------|-----|----------------|-------------|-------------------------|-------------|")
    for case in args.cases:
        repeats = max(5, args.repeats // 3) if case.startswith("llama70b") else args.repeats
        pairs, ops = measure(case, repeats)
        ratios = sorted(with_cost / without - 1 for without, with_cost in pairs)
        low, high = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        without = statistics.median(p[0] for p in pairs)
        with_cost = statistics.median(p[1] for p in pairs)
        print(
            f"| {case} | {ops} | {without:.4f} | {with_cost:.4f} | "
            f"{statistics.median(ratios) * 100:+.1f}% | {low * 100:+.1f}% to {high * 100:+.1f}% |",
            flush=True,
        )
    print()
    print("Each part alone (CPU ms, fastest run):")
    print()
    print("| case | trace | count flops, activations | tracking | count bytes | added | memory() |")
    print(
        "|------|-------|--------------------------|------------------|-------------|----------|-------|"
    )
    for case in args.cases:
        repeats = max(3, args.repeats // 3) if case.startswith("llama70b") else args.repeats
        print(breakdown(case, repeats), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

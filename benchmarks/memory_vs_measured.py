"""torchtally's peak activation memory against what PyTorch's CPU allocator reports.

    python benchmarks/memory_vs_measured.py                 # every case, forward and training
    python benchmarks/memory_vs_measured.py --cases resnet50 --steps forward

The estimate is `analysis.memory()["peak_activation_bytes"]` from a fake-mode analysis (nothing
runs for real). The measurement runs the model for real under `torch.profiler` with
``profile_memory=True``: every allocation and free of the CPU allocator, in order; the peak of
their running sum is the most memory the step held beyond what existed before it (parameters,
buffers, inputs). It is given twice: every allocation, and without the memory a kernel allocated
and freed inside one op (oneDNN's scratchpads and reordered copies, which no tracer sees and
which differ with the CPU): the second is what torchtally estimates, tensors that outlive the op
that made them. "forward" is one forward pass under ``torch.no_grad()`` (eval mode);
"training" is one forward pass with autograd (train mode) and the backward pass of every
floating-point output with a gradient of ones, as ``analyze(..., backward=True)`` runs it; the
parameters' gradients are part of its peak.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CASES = ("resnet50", "vit_b_16", "bert_base", "llama")
STEPS = ("forward", "training")


def measured_peak(model: Any, args: tuple[Any, ...], backward: bool) -> tuple[int, int]:
    """The peak of the bytes the CPU allocator held during one step, beyond those at its start:
    (every allocation, without those allocated and freed inside one op)."""
    import torch
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    from torchtally.records import iter_tensors

    def step() -> None:
        with torch.set_grad_enabled(backward):
            outputs = model(*args)
            if backward:
                roots = [
                    t for t in iter_tensors(outputs) if t.is_floating_point() and t.requires_grad
                ]
                torch.autograd.backward(roots, [torch.ones_like(t) for t in roots])
        del outputs

    step()  # warm-up: one-off allocations (caches, lazy initialisation) happen here
    model.zero_grad(set_to_none=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
    model.zero_grad(set_to_none=True)
    events = []  # (time, bytes: negative for a free, address, the top-level op it ran in)
    for root in prof.profiler.kineto_results.experimental_event_tree():
        pending = [root]
        while pending:
            node = pending.pop()
            kind, fields = node.typed
            if kind == _EventType.Allocation and fields.device.type == "cpu":
                inside = id(root) if node is not root else None
                events.append((node.start_time_ns, fields.alloc_size, fields.ptr, inside))
            pending.extend(node.children)
    events.sort(key=lambda event: event[0])
    born: dict[int, tuple[int, int | None]] = {}
    scratch: set[int] = set()  # events of memory allocated and freed inside one op
    for index, (_, size, address, inside) in enumerate(events):
        if size > 0:
            born[address] = (index, inside)
        elif address in born:
            allocated, where = born.pop(address)
            if where is not None and where == inside:
                scratch.update((allocated, index))
    live = peak = tensors_live = tensors_peak = 0
    for index, (_, size, _, _) in enumerate(events):
        live += size
        peak = max(peak, live)
        if index not in scratch:
            tensors_live += size
            tensors_peak = max(tensors_peak, tensors_live)
    return peak, tensors_peak


def estimated_peak(model: Any, args: tuple[Any, ...], backward: bool) -> int:
    import torchtally

    analysis = torchtally.analyze(
        model, args, mode="fake", backward=backward, warn_unsupported=False
    )
    return int(analysis.memory()["peak_activation_bytes"])


def compare(case: str, step: str) -> tuple[int, int, int]:
    """Peak activation bytes of `case` for `step`: (torchtally's estimate, measured without
    memory allocated and freed inside one op, measured)."""
    from benchmark import build_case

    model, args = build_case(case)
    backward = step == "training"
    model.train(backward)
    measured, tensors = measured_peak(model, args, backward)
    return estimated_peak(model, args, backward), tensors, measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    args = parser.parse_args(argv)
    columns = ["model", "step", "torchtally MB", "measured MB, tensors", "error"]
    columns += ["measured MB, all", "error"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("-" * (len(column) + 2) for column in columns) + "|")
    for case in args.cases:
        for step in args.steps:
            estimate, tensors, measured = compare(case, step)
            cells = [case, step, f"{estimate / 1e6:.1f}"]
            for value in (tensors, measured):
                cells += [f"{value / 1e6:.1f}", f"{(estimate - value) / value * 100:+.1f}%"]
            print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

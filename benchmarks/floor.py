"""What tracing at the dispatcher costs before anything is recorded, on ResNet-50.

    python benchmarks/floor.py [--repeats 20]

Times, as medians over interleaved runs, one plain forward pass (``torch.no_grad()``), the same
under a do-nothing ``TorchDispatchMode``, then also a do-nothing ``TorchFunctionMode`` and global
module hooks (what torchtally's tracer needs: ops, the functions that issued them, module scope),
and torchtally's real and fake analyses. Each is printed as a multiple of the plain forward pass.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import torchtally


class PassThroughDispatch(TorchDispatchMode):
    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        return func(*args, **(kwargs or {}))


class PassThroughFunctions(TorchFunctionMode):
    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        return func(*args, **(kwargs or {}))


@contextmanager
def module_hooks() -> Iterator[None]:
    pre = nn.modules.module.register_module_forward_pre_hook(lambda *_: None)
    post = nn.modules.module.register_module_forward_hook(lambda *_: None, always_call=True)
    try:
        yield
    finally:
        pre.remove()
        post.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    repeats = parser.parse_args().repeats

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)

    def plain() -> None:
        with torch.no_grad():
            model(x)

    def dispatch_mode() -> None:
        with torch.no_grad(), PassThroughDispatch():
            model(x)

    def all_three() -> None:
        with torch.no_grad(), module_hooks(), PassThroughDispatch(), PassThroughFunctions():
            model(x)

    def real() -> None:
        torchtally.analyze(model, x, mode="real", warn_unsupported=False)

    def fake() -> None:
        torchtally.analyze(model, x, mode="fake", warn_unsupported=False)

    cases: dict[str, Callable[[], None]] = {
        "plain forward": plain,
        "+ do-nothing dispatch mode": dispatch_mode,
        "+ function mode and module hooks": all_three,
        "torchtally mode='real'": real,
        "torchtally mode='fake'": fake,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for run in cases.values():
        run()  # warm-up
    for _ in range(repeats):  # interleaved, so that every case sees the same load
        for name, run in cases.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["plain forward"])
    print(f"ResNet-50, 1x3x224x224, {torch.get_num_threads()} threads, median of {repeats}")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name:34s} {median * 1e3:7.1f} ms  {median / base:5.2f}x")


if __name__ == "__main__":
    main()

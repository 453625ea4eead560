"""The ``torchtally`` command: analyse a model by name and print a report."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from torchtally.analysis import Analysis
from torchtally.units import format_count

EXAMPLES = """\
examples:
  torchtally torchvision:resnet50 --shape 3 224 224
  torchtally torchvision:vit_b_16 --shape 224 --format markdown --max-depth 2
  torchtally mypackage.models:build_model --shape 3 64 64 --output report.json --format json
  torchtally plugins
"""

EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_ANALYSIS = 4


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchtally",
        description="Count the parameters, FLOPs and activations of a PyTorch model.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        help="torchvision:NAME (e.g. torchvision:resnet50), package.module:factory, "
        "or 'plugins' to list installed plugins",
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs="+",
        metavar="N",
        help="input shape without the batch: '3 224 224'; '224' means 3x224x224 and "
        "'224 256' 3x224x256 (mmpretrain's forms); default 3 224 224",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument(
        "--train", action="store_true", help="analyse in training mode (default: eval)"
    )
    parser.add_argument(
        "--elementwise",
        action="store_true",
        help="also count element-wise ops and reductions (totals then differ from fvcore)",
    )
    parser.add_argument("--format", default="table", help="output format (default: table)")
    parser.add_argument("--max-depth", type=int, default=3, help="module depth shown (default 3)")
    parser.add_argument("-o", "--output", type=Path, help="write the report to this file")
    return parser


def load_model(source: str) -> nn.Module:
    """Build a model from ``torchvision:NAME`` or ``package.module:factory`` (random weights)."""
    if ":" not in source:
        raise CliError(
            f"cannot read model source {source!r}: use torchvision:NAME or package.module:factory",
            EXIT_USAGE,
        )
    where, name = source.split(":", 1)
    factory: Callable[..., Any]
    if where == "torchvision":
        try:
            import torchvision
        except ImportError as error:
            raise CliError(
                "torchvision is not installed: pip install torchvision", EXIT_MODEL
            ) from error
        try:
            factory = torchvision.models.get_model_builder(name)
        except ValueError as error:
            raise CliError(f"torchvision has no model {name!r}", EXIT_MODEL) from error
        model = factory(weights=None)
    else:
        try:
            module = importlib.import_module(where)
            factory = getattr(module, name)
        except (ImportError, AttributeError) as error:
            raise CliError(f"cannot load {source!r}: {error}", EXIT_MODEL) from error
        model = factory()
    if not isinstance(model, nn.Module):
        raise CliError(f"{source} returned {type(model).__name__}, not an nn.Module", EXIT_MODEL)
    return model


def input_shape(shape: Sequence[int] | None) -> tuple[int, ...]:
    """mmpretrain's forms: none -> 3x224x224, one size -> 3xSxS, two -> 3xHxW, else as given."""
    if not shape:
        return (3, 224, 224)
    if len(shape) == 1:
        return (3, shape[0], shape[0])
    if len(shape) == 2:
        return (3, *shape)
    return tuple(shape)


def _list_plugins() -> str:
    from torchtally.plugins import list_plugins, plugin_failures

    lines = []
    for info in list_plugins():
        lines.append(f"{info.name} ({info.distribution} {info.version})")
        for kind, names in info.registers.items():
            lines.append(
                f"  {kind}: {len(names)}: {', '.join(names[:8])}{' ...' * (len(names) > 8)}"
            )
    for failure in plugin_failures():
        lines.append(f"FAILED {failure}")
    return "\n".join(lines)


def summary(analysis: Analysis, shape: tuple[int, ...]) -> str:
    """mmpretrain's get_flops block: input shape and the three totals."""
    rule = "=" * 30
    lines = [
        f"Input shape: {shape}",
        f"Flops: {format_count(analysis.total('flops'))}",
        f"Params: {format_count(analysis.params.get('', 0))}",
        f"Activation: {format_count(analysis.total('activations'))}",
    ]
    return "\n".join([rule, *lines, rule])


def run(argv: Sequence[str] | None = None) -> str:
    args = _parser().parse_args(argv)
    if args.model == "plugins":
        return _list_plugins()
    import torch

    from torchtally.api import analyze

    model = load_model(args.model)
    model.train(args.train)
    shape = (args.batch, *input_shape(args.shape))
    inputs = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    try:
        analysis = analyze(model, inputs, elementwise=args.elementwise)
    except Exception as error:
        raise CliError(f"analysis of {args.model} failed: {error}", EXIT_ANALYSIS) from error
    try:
        text = analysis.render(args.format, max_depth=args.max_depth)
    except ValueError as error:
        raise CliError(str(error), EXIT_USAGE) from error
    if args.format == "table":
        text = f"{summary(analysis, shape)}\n{text}"
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
        return f"wrote {args.format} report to {args.output}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    try:
        print(run(argv))
    except CliError as error:
        print(f"torchtally: error: {error}", file=sys.stderr)
        return error.code
    return 0


if __name__ == "__main__":
    sys.exit(main())

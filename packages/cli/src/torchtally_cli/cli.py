"""The ``torchtally`` command: analyse a model by name and print a report."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from torchtally import Analysis, UnknownFormatError, render
from torchtally.formats import find_reporter, format_for_path
from torchtally_cli.sources import (
    InputSpecError,
    LoadedModel,
    MissingPackageError,
    SourceError,
    example_inputs,
    load_model,
    parse_key_values,
)
from torchtally_reporters.summary import describe_inputs

EXIT_USAGE = 2  # bad arguments: malformed source, bad shape, unknown format or option
EXIT_MODEL = 3  # the model could not be built: unknown name or class, bad config, builder raised
EXIT_ANALYSIS = 4  # the model raised while it was analysed
EXIT_MISSING = 5  # a package the source needs is not installed (the message has the pip command)
EXIT_INTERRUPTED = 130

MODES = ("auto", "real", "fake", "meta")
DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
# The format `--output FILE` writes when --format is not given, by the file's suffix.
EXAMPLES = """\
examples:
  torchtally torchvision:resnet50 --shape 3 224 224
  torchtally torchvision:vit_b_16 --shape 224 --format markdown --max-depth 2
  torchtally torchvision:fasterrcnn_resnet50_fpn --shape 800 1216 --batch 2
  torchtally torchvision:r3d_18 --shape 3 16 112 112 --backward
  torchtally timm:convnext_tiny --mode fake
  torchtally transformers:BertModel --config bert.json --seq-len 128
  torchtally transformers:LlamaForCausalLM --config LlamaConfig --set num_hidden_layers=80 \\
      hidden_size=8192 intermediate_size=28672 num_attention_heads=64 num_key_value_heads=8 \\
      --seq-len 2048 --mode meta --max-depth 1
  torchtally transformers:T5ForConditionalGeneration --config t5.json --seq-len 512
  torchtally transformers:LlamaForCausalLM --config LlamaConfig --mode meta \\
      --seq-len 2048 --generate 128
  torchtally mypackage.models:build_model --shape 3,64,64 --output report.json
  torchtally ./model.py:make --set width=64 --shape 10,
  torchtally configs/resnet/resnet50_8xb32_in1k.py --shape 224
  torchtally plugins

model sources:
  torchvision:NAME         a torchvision model, random weights (detection models get a list
                           of --batch images, video models a clip, optical flow two frames)
  timm:NAME                a timm model, pretrained=False (needs: pip install timm)
  transformers:CLASS       a transformers model class, random weights, configured by --config
                           (config.json file or configuration class name) and --set
  package.module:factory   any callable returning an nn.Module or a (module, inputs) pair;
  path/to/file.py:factory  the current folder is importable
  CONFIG.py                an OpenMMLab config file (.py, .json, .yaml) read by mmengine, with
                           --cfg-options (needs the source plugin torchtally-openmmlab)
  'torchtally plugins' lists the sources installed plugins add

exit codes:
  0 success, 2 bad arguments, 3 the model could not be built, 4 the model raised while
  analysed, 5 a package the source needs is not installed
"""


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` returns the exit code."""

    def error(self, message: str) -> Any:
        raise CliError(f"{message} (see torchtally --help)", EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    from torchtally import __version__

    parser = _Parser(
        prog="torchtally",
        description="Count the parameters, FLOPs and activations of a PyTorch model, per module "
        "and per operator.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        help="torchvision:NAME, timm:NAME, transformers:CLASS, package.module:factory, "
        "path/to/file.py:factory, or what a source plugin reads (an OpenMMLab CONFIG.py); "
        "'torchtally plugins' lists the installed plugins",
    )
    parser.add_argument("--version", action="version", version=f"torchtally {__version__}")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--config",
        metavar="FILE_OR_CLASS",
        help="transformers only: a config.json file (or its folder) or a configuration class "
        "name such as LlamaConfig (default: the model class' own configuration)",
    )
    model.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME=VALUE",
        help="configuration values (transformers) or builder keyword arguments (others), "
        "values read as JSON: --set num_hidden_layers=2 hidden_act=gelu",
    )
    model.add_argument(
        "--cfg-options",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="config files only (OpenMMLab): override config values as mmengine's tools do, "
        "e.g. --cfg-options model.backbone.depth=101 'model.backbone.out_indices=(2,3)'",
    )
    model.add_argument(
        "--train", action="store_true", help="analyse in training mode (default: eval)"
    )
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument(
        "--shape",
        nargs="+",
        metavar="N",
        help="input shape without the batch: '3 224 224'; '224' means 3x224x224 and '224 256' "
        "3x224x256 (mmpretrain's forms); with commas, one input per word: '3,64,64 10,' "
        "(default: the model's, 3 224 224 for images)",
    )
    inputs.add_argument(
        "--seq-len",
        type=int,
        metavar="N",
        help="tokens per sequence for text models (decoder tokens too for encoder-decoder "
        "models; default 128)",
    )
    inputs.add_argument("--batch", type=int, default=1, metavar="N", help="batch size (default 1)")
    inputs.add_argument(
        "--dtype", choices=list(DTYPES), help="floating dtype of the model and inputs"
    )
    inputs.add_argument("--device", help="device to build and run on: cpu, cuda, cuda:1, ...")
    analysis = parser.add_argument_group("analysis")
    analysis.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="real: run the model as built; fake: run it on fake tensors (no data, no compute); "
        "meta: build it on the meta device (no memory at all, for models of any size); "
        "auto (default): fake where it can, else real (saying so on stderr)",
    )
    analysis.add_argument(
        "--backward",
        action="store_true",
        help="also run the backward pass (of the sum of the outputs) and count it separately",
    )
    analysis.add_argument(
        "--generate",
        type=int,
        metavar="N",
        help="language models: count generating N new tokens after a --seq-len prompt as "
        "Hugging Face generate runs it (the prefill, then N - 1 decode steps through the KV "
        "cache); prints the prefill, decode and per-token figures (formats table and json)",
    )
    analysis.add_argument(
        "--elementwise",
        action="store_true",
        help="also count element-wise ops and reductions (totals then differ from fvcore)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--format",
        help="output format: table (default), arch, json, markdown, parameters, operators, csv, "
        "or a plugin's",
    )
    output.add_argument(
        "--max-depth", type=int, metavar="N", help="module levels shown (table default 3)"
    )
    output.add_argument(
        "--metrics",
        nargs="+",
        metavar="NAME",
        help="columns shown, in order: params, flops, activations, or a plugin's metric",
    )
    output.add_argument("--units", choices=("human", "raw"), help="4.112G (human) or 4111512576")
    output.add_argument(
        "--flop-unit",
        choices=("mac", "flop"),
        help="mac: one multiply-add is one flop (default, as fvcore and mmengine); flop: two",
    )
    output.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write the report to FILE (format from its suffix when --format is not given: "
        ".json json, .md markdown, else table)",
    )
    output.add_argument(
        "-q", "--quiet", action="store_true", help="do not list unsupported ops on stderr"
    )
    return parser


def _plugins_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="torchtally plugins",
        description="List the installed torchtally plugins with the ops and formats they add.",
    )
    parser.add_argument("--all", action="store_true", help="list every op, not the first few")
    return parser


def list_plugins_text(show_all: bool = False) -> str:
    """Every loaded plugin with its distribution and what it registered; failed plugins last."""
    from torchtally.plugins import list_plugins, plugin_failures, reporters

    shown = None if show_all else 8
    descriptions = {name: reporter.description for name, (reporter, _) in reporters().items()}
    lines = []
    for info in list_plugins():
        lines.append(f"{info.name} ({info.distribution} {info.version})")
        for kind, names in info.registers.items():
            more = " ..." if shown is not None and len(names) > shown else ""
            lines.append(f"  {kind}: {len(names)}: {', '.join(names[:shown])}{more}")
            if kind == "formats" and show_all:
                lines.extend(f"    {name}: {descriptions.get(name, '')}" for name in names)
    for failure in plugin_failures():
        lines.append(f"FAILED {failure}")
    return "\n".join(lines)


def _dtype(name: str | None) -> torch.dtype | None:
    return DTYPES[name] if name else None


def _device(text: str | None) -> torch.device | None:
    if text is None:
        return None
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise CliError(f"--device {text}: {error}", EXIT_USAGE) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {text}: CUDA is not available on this machine", EXIT_USAGE)
    return device


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    if args.output is not None:
        return format_for_path(args.output)
    return "table"


def _check_format(name: str) -> None:
    """Fail before the model is built if no installed reporter has the format `name`."""
    try:
        find_reporter(name)
    except UnknownFormatError as error:
        raise CliError(str(error), EXIT_USAGE if error.installed else EXIT_MISSING) from None


def _load(args: argparse.Namespace, device: torch.device | None) -> LoadedModel:
    try:
        settings = parse_key_values(args.set, "--set")
        build_device = torch.device("meta") if args.mode == "meta" else device
        return load_model(
            args.model,
            config=args.config,
            settings=settings,
            cfg_options=args.cfg_options,
            device=build_device,
            dtype=_dtype(args.dtype),
        )
    except MissingPackageError as error:
        raise CliError(str(error), EXIT_MISSING) from error
    except InputSpecError as error:
        raise CliError(str(error), EXIT_USAGE) from error
    except SourceError as error:
        raise CliError(str(error), EXIT_MODEL) from error


def _inputs(args: argparse.Namespace, loaded: LoadedModel, device: torch.device | None) -> Any:
    if args.mode == "meta":  # the model is on the meta device; its inputs are ordinary tensors
        device = device or torch.device("cpu")
    try:
        return example_inputs(
            loaded,
            shape=args.shape,
            seq_len=args.seq_len,
            batch=args.batch,
            dtype=_dtype(args.dtype),
            device=device,
        )
    except InputSpecError as error:
        raise CliError(str(error), EXIT_USAGE) from error


def _analyze(args: argparse.Namespace, loaded: LoadedModel, inputs: Any) -> Analysis:
    from torchtally.api import analyze

    options: dict[str, Any] = {"elementwise": args.elementwise, "warn_unsupported": not args.quiet}
    # Only what differs from analyze's defaults, so the defaults stay analyze's own.
    if args.mode != "auto":
        options["mode"] = args.mode
    if args.backward:
        options["backward"] = True
    made = "" if loaded.inputs is not None and not (args.shape or args.seq_len) else " (inputs"
    hint = f"{made}: {describe_inputs(inputs)}; set them with --shape or --seq-len)" if made else ""
    try:
        return analyze(loaded.model, inputs, **options)
    except Exception as error:
        raise CliError(
            f"analysing {args.model} failed: {type(error).__name__}: {error}{hint}", EXIT_ANALYSIS
        ) from error


def _render_options(args: argparse.Namespace) -> dict[str, Any]:
    given = {
        "max_depth": args.max_depth,
        "metrics": args.metrics,
        "units": args.units,
        "flop_unit": args.flop_unit,
    }
    return {key: value for key, value in given.items() if value is not None}


def run(argv: Sequence[str] | None = None) -> str:
    """The text the command prints for `argv`; raises `CliError` with the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plugins"]:
        return list_plugins_text(_plugins_parser().parse_args(argv[1:]).all)
    args = _parser().parse_args(argv)
    if args.max_depth is not None and args.max_depth < 0:
        raise CliError(f"--max-depth must be 0 or more, got {args.max_depth}", EXIT_USAGE)
    output_format = _output_format(args)
    if args.generate is not None:
        return _write(args, output_format, _generation(args, output_format))
    _check_format(output_format)
    device = _device(args.device)
    loaded = _load(args, device)
    loaded.model.train(args.train)
    inputs = _inputs(args, loaded, device)
    analysis = _analyze(args, loaded, inputs)
    render_options = _render_options(args)
    try:
        text = analysis.render(output_format, **render_options)
    except (TypeError, ValueError) as error:
        raise CliError(str(error), EXIT_USAGE) from error
    if output_format == "table":
        units: dict[str, Any] = {
            key: render_options[key] for key in ("units", "flop_unit") if key in render_options
        }
        if loaded.describe_inputs is not None:  # the source's own words for its inputs
            units["input_shape"] = loaded.describe_inputs(inputs)
        text = f"{render(analysis, 'summary', **units)}\n{text}"
        if args.backward:
            text += _against_6n(loaded, inputs, analysis, render_options.get("units", "human"))
    return _write(args, output_format, text)


def _against_6n(loaded: LoadedModel, inputs: Any, analysis: Analysis, units: str) -> str:
    """A language model's training step: flops per token against the 6N rule, and why."""
    from torchtally.llm import training_comparison

    config = getattr(loaded.model, "config", None)
    ids = inputs.get("input_ids") if isinstance(inputs, dict) else None
    if (
        loaded.task != "transformers"
        or getattr(config, "is_encoder_decoder", False)
        or not isinstance(ids, torch.Tensor)
        or ids.dim() != 2
    ):
        return ""
    step = training_comparison(analysis, loaded.model, ids.numel(), ids.shape[1])
    return "\n" + step.explain(units=units)


def _write(args: argparse.Namespace, output_format: str, text: str) -> str:
    """`text`, or, with --output, the line saying where it was written."""
    if args.output is not None:
        try:
            args.output.write_text(text + "\n", encoding="utf-8")
        except OSError as error:
            raise CliError(f"cannot write {args.output}: {error}", EXIT_USAGE) from error
        return f"wrote {output_format} report to {args.output}"
    return text


GENERATION_FORMATS = ("table", "json")


def _generation(args: argparse.Namespace, output_format: str) -> str:
    """--generate: the prefill and decode of a language model, as a summary and table or JSON."""
    from torchtally.llm import generation

    if args.generate < 1:
        raise CliError(
            f"--generate must be 1 or more (new tokens), got {args.generate}", EXIT_USAGE
        )
    if output_format not in GENERATION_FORMATS:
        raise CliError(
            f"--generate prints the formats {' and '.join(GENERATION_FORMATS)}, not "
            f"{output_format!r}",
            EXIT_USAGE,
        )
    for flag, given in (("--backward", args.backward), ("--train", args.train)):
        if given:
            raise CliError(f"--generate counts inference; drop {flag}", EXIT_USAGE)
    if args.shape:
        raise CliError("--generate takes the prompt length from --seq-len, not --shape", EXIT_USAGE)
    loaded = _load(args, _device(args.device))
    prompt = args.seq_len or 128
    try:
        result = generation(
            loaded.model.eval(),
            prompt_tokens=prompt,
            new_tokens=args.generate,
            batch=args.batch,
            mode=args.mode,
            elementwise=args.elementwise,
            warn_unsupported=not args.quiet,
        )
    except (TypeError, ValueError) as error:
        raise CliError(f"--generate: {error}", EXIT_USAGE) from error
    except Exception as error:
        raise CliError(
            f"counting generation with {args.model} failed: {type(error).__name__}: {error}",
            EXIT_ANALYSIS,
        ) from error
    if output_format == "json":
        import json

        return json.dumps(result.to_dict(), indent=2)
    units = args.units or "human"
    try:
        table = result.table(
            max_depth=1 if args.max_depth is None else args.max_depth,
            metrics=tuple(m for m in args.metrics or () if m != "params") or None,
            units=units,
        )
    except (KeyError, ValueError) as error:
        raise CliError(str(error).strip("'\""), EXIT_USAGE) from error
    return f"{result.summary(units=units)}\n{table}"


def main(argv: Sequence[str] | None = None) -> int:
    if not logging.getLogger("torchtally").handlers and not logging.getLogger().handlers:
        logging.basicConfig(format="torchtally: %(message)s", level=logging.WARNING)
    try:
        print(run(argv))
    except CliError as error:
        print(f"torchtally: error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("torchtally: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else 0
    except BrokenPipeError:  # `torchtally ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())

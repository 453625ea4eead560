"""The ``torchtally`` command: analyse a model by name and print a report.

Nothing heavy is imported before the arguments are read (torch takes seconds to import), so
``--help``, ``--version`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from torchtally import Analysis, Diff, Sweep
    from torchtally_cli.sources import LoadedModel

EXIT_FAILURE = 1  # anything else went wrong: torchtally or a plugin failed (a bug to report)
EXIT_USAGE = 2  # bad arguments: malformed source, bad shape, unknown format or option
EXIT_MODEL = 3  # the model could not be built: unknown name or class, bad config, builder raised
EXIT_ANALYSIS = 4  # the model raised while it was analysed
EXIT_MISSING = 5  # a package the source needs is not installed (the message has the pip command)
EXIT_INTERRUPTED = 130

MODES = ("auto", "real", "fake", "meta")
DTYPES = ("float32", "float16", "bfloat16", "float64")
# What --shape, --seq-len and --batch sweep over, by their names in a sweep's rows.
SWEPT = {"shape": "--shape", "seq_len": "--seq-len", "batch": "--batch"}
# Python's words in messages from the library, and the command line's for the same thing.
CLI_WORDS = (
    (re.compile(r"\bpass (?=mode=|elementwise=|backward=)"), "use "),
    (re.compile(r"\bmode='(\w+)'"), r"--mode \1"),
    (re.compile(r"\(or 'auto'"), "(or --mode auto"),
    (re.compile(r"\belementwise=True\b"), "--elementwise"),
    (re.compile(r"\bbackward=True\b"), "--backward"),
    (re.compile(r"\banalyze\(\.\.\., --backward\)"), "--backward"),
)
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
  torchtally model.pt2                         (a torch.export file, at its example inputs)
  torchtally model.pt2 --shape 3 512 512 --batch 8
  torchtally scripted.pt --shape 3 224 224     (a TorchScript file)
  torchtally torchvision:resnet50 -o resnet50.html          (the HTML report; .csv, .json, .md)
  torchtally transformers:GPT2LMHeadModel --seq-len 128 512 2048 --mode meta   (a sweep)
  torchtally torchvision:resnet50 --shape 224 --shape 320 --shape 448          (a sweep)
  torchtally diff torchvision:resnet18 torchvision:resnet34
  torchtally diff before.json after.json --format markdown
  torchtally plugins
  torchtally hardware                          (the devices the roofline knows)
  torchtally torchvision:resnet50 --hardware a100   (estimated time and bound per module)

model sources:
  torchvision:NAME         a torchvision model, random weights (detection models get a list
                           of --batch images, video models a clip, optical flow two frames)
  timm:NAME                a timm model, pretrained=False (needs: pip install timm)
  transformers:CLASS       a transformers model class, random weights, configured by --config
                           (config.json file or configuration class name) and --set
  package.module:factory   any callable returning an nn.Module or a (module, inputs) pair;
  path/to/file.py:factory  the current folder is importable
  path/to/model.pt2        an exported program (torch.export.save), analysed at its example
                           inputs unless --shape is given (one shape per input, with commas);
                           its weights are not read (counting needs their shapes only) unless
                           --mode real
  path/to/model.pt         a TorchScript module (torch.jit.save); give --shape or --seq-len
  CONFIG.py                an OpenMMLab config file (.py, .json, .yaml) read by mmengine, with
                           --cfg-options (needs the source plugin torchtally-openmmlab)
  'torchtally plugins' lists the sources installed plugins add

exit codes:
  0 success, 2 bad arguments, 3 the model could not be built (its code raised or exited),
  4 the model raised or exited while analysed, 5 a package the source needs is not installed,
  1 anything else (a bug in torchtally or a plugin; TORCHTALLY_TRACEBACK=1 shows where),
  130 interrupted; every failure is one line on stderr
"""
TRACEBACK_ENV = "TORCHTALLY_TRACEBACK"


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Done(SystemExit):
    """--help or --version has printed what was asked: exit with this code."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` returns the exit code."""

    def error(self, message: str) -> Any:
        raise CliError(f"{message} (see torchtally --help)", EXIT_USAGE)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            self._print_message(message, sys.stderr)
        raise _Done(status)


def version() -> str:
    """torchtally-core's version, read from its ``version`` module without importing the package
    (which imports torch) or importlib.metadata (a tenth of a second)."""
    import importlib.util

    spec = importlib.util.find_spec("torchtally")  # locates the package, runs nothing
    if spec is None or spec.origin is None:
        from torchtally_cli import __version__

        return __version__
    namespace: dict[str, Any] = {}
    source = Path(spec.origin).with_name("version.py").read_text(encoding="utf-8")
    exec(compile(source, "torchtally/version.py", "exec"), namespace)
    return str(namespace["__version__"])


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="torchtally",
        description="Count the parameters, FLOPs and activations of a PyTorch model, per module "
        "and per operator. 'torchtally diff A B' compares two models or reports; "
        "'torchtally plugins' lists the installed plugins.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        help="torchvision:NAME, timm:NAME, transformers:CLASS, package.module:factory, "
        "path/to/file.py:factory, model.pt2 (torch.export), model.pt (TorchScript), or what a "
        "source plugin reads (an OpenMMLab CONFIG.py)",
    )
    parser.add_argument("--version", action="version", version=f"torchtally {version()}")
    _add_model_options(parser)
    _add_input_options(parser, sweep=True)
    _add_analysis_options(parser, generate=True)
    _add_output_options(parser)
    return parser


def _diff_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="torchtally diff",
        description="Compare two models (or JSON reports written with --format json) per module "
        "and per operator: both sides and the change in every metric. Modules are matched by "
        "name; one that exists on one side only is shown as such. Model options apply to both.",
        epilog="examples:\n  torchtally diff torchvision:resnet18 torchvision:resnet34\n"
        "  torchtally diff before.json after.json --format markdown --max-depth 2\n"
        "  torchtally diff transformers:LlamaForCausalLM llama.json --config LlamaConfig "
        "--set num_hidden_layers=2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("a", metavar="A", help="the baseline: a model source or a .json report")
    parser.add_argument("b", metavar="B", help="the other side: a model source or a .json report")
    _add_model_options(parser)
    _add_input_options(parser, sweep=False)
    _add_analysis_options(parser)
    _add_output_options(parser, diff=True)
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
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
        "--set-unknown",
        action="store_true",
        help="accept --set names the transformers configuration does not know (they are "
        "refused by default, with the close matches)",
    )
    model.add_argument(
        "--train", action="store_true", help="analyse in training mode (default: eval)"
    )


def _add_input_options(parser: argparse.ArgumentParser, sweep: bool) -> None:
    inputs = parser.add_argument_group("inputs")
    several = " Give several values (or --shape several times) for a sweep: one row per value."
    inputs.add_argument(
        "--shape",
        nargs="+",
        action="append" if sweep else "store",
        metavar="N",
        help="input shape without the batch: '3 224 224'; '224' means 3x224x224 and '224 256' "
        "3x224x256 (mmpretrain's forms); with commas, one input per word: '3,64,64 10,' "
        "(default: the model's, 3 224 224 for images)." + (several if sweep else ""),
    )
    inputs.add_argument(
        "--seq-len",
        type=int,
        nargs="+" if sweep else None,
        metavar="N",
        help="tokens per sequence for text models (decoder tokens too for encoder-decoder "
        "models; default 128)",
    )
    inputs.add_argument(
        "--batch",
        type=int,
        nargs="+" if sweep else None,
        metavar="N",
        help="batch size (default 1)",
    )
    inputs.add_argument("--dtype", choices=DTYPES, help="floating dtype of the model and inputs")
    inputs.add_argument("--device", help="device to build and run on: cpu, cuda, cuda:1, ...")


def _add_analysis_options(parser: argparse.ArgumentParser, generate: bool = False) -> None:
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
    if generate:
        analysis.add_argument(
            "--generate",
            type=int,
            metavar="N",
            help="language models: count generating N new tokens after a --seq-len prompt as "
            "Hugging Face generate runs it (the prefill, then N - 1 decode steps through the KV "
            "cache); prints the prefill, decode and per-token figures (formats table and json)",
        )
    analysis.add_argument(
        "--hardware",
        metavar="NAME",
        help="a device ('torchtally hardware' lists them): the estimated time and bound "
        "(compute or memory) per module by the roofline, as columns of the table, markdown or "
        "json report with a summary line; with --generate, the time to first token, per output "
        "token, tokens/s and the largest batch that fits",
    )
    analysis.add_argument(
        "--measure",
        action="store_true",
        help="run the model for real and time its forward pass per op on its device (after "
        "warm-up, the median of 5 passes): measured time and achieved FLOP/s columns",
    )
    analysis.add_argument(
        "--elementwise",
        action="store_true",
        help="also count element-wise ops and reductions (totals then differ from fvcore)",
    )


def _add_output_options(parser: argparse.ArgumentParser, diff: bool = False) -> None:
    output = parser.add_argument_group("output")
    formats = (
        "table (default), markdown, csv, json or html"
        if diff
        else "table (default), arch, json, markdown, parameters, operators, csv, html, or a "
        "plugin's"
    )
    output.add_argument("--format", help=f"output format: {formats}")
    output.add_argument(
        "--max-depth", type=int, metavar="N", help="module levels shown (table default 3)"
    )
    output.add_argument(
        "--metrics",
        nargs="+",
        metavar="NAME",
        help="columns shown, in order: params, flops, activations, bytes (memory traffic), "
        "or a plugin's metric",
    )
    output.add_argument(
        "--top",
        type=int,
        metavar="K",
        help="list the K most expensive modules (leaves, or modules --max-depth levels down) "
        "instead of the tree",
    )
    output.add_argument(
        "--top-by",
        metavar="NAME",
        help="what --top ranks by: a shown metric (flops, bytes, ...), time (with --hardware) "
        "or measured (with --measure); default the time, else the first metric",
    )
    output.add_argument(
        "--percent",
        action="store_true",
        help="each module's share of the model's total, per metric, as columns",
    )
    output.add_argument(
        "--shapes",
        action="store_true",
        help="each module's input and output shapes (its first call), as columns",
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
        help="write the report to FILE (format from its suffix, in any case, when --format is "
        "not given: .json, .md markdown, .csv, .html, else table)",
    )
    output.add_argument(
        "-q", "--quiet", action="store_true", help="do not list unsupported ops on stderr"
    )


def _plugins_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="torchtally plugins",
        description="List the installed torchtally plugins with the ops and formats they add.",
    )
    parser.add_argument("--all", action="store_true", help="list every op, not the first few")
    return parser


def _hardware_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="torchtally hardware",
        description="List the devices the roofline knows (core's table and plugins'): dense "
        "peak FLOP/s as vendors quote them (2 per multiply-add), memory bandwidth and size.",
    )
    parser.add_argument("name", nargs="?", help="one device: every figure with its source")
    parser.add_argument("--json", action="store_true", help="every figure as JSON")
    return parser


def list_hardware_text(name: str | None = None, as_json: bool = False) -> str:
    """The devices as a table (name, peak bf16 and fp32, bandwidth, memory), one device's
    figures with their sources, or JSON."""
    import json

    from torchtally.api import hardware, hardware_table
    from torchtally.devices import UnknownHardwareError

    try:
        devices = hardware_table() if name is None else [hardware(name)]
    except UnknownHardwareError as error:
        raise CliError(str(error), EXIT_USAGE) from error
    if as_json:
        return json.dumps([device.to_dict() for device in devices], indent=2)
    if name is not None:
        (device,) = devices
        lines = [f"{device.name}: {device.title}"]
        if device.aliases:
            lines.append(f"  also: {', '.join(device.aliases)}")
        for table in ("peak_flops", "vector_flops"):
            rates = getattr(device, table)
            if rates:
                shown = ", ".join(f"{k} {_tera(v)}" for k, v in rates.items())
                lines.append(f"  {table} (FLOP/s): {shown}")
        lines.append(f"  memory_bandwidth: {device.memory_bandwidth / 1e9:g} GB/s")
        if device.memory is not None:
            lines.append(f"  memory: {device.memory / 1e9:g} GB")
        lines.extend(f"  source ({what}): {text}" for what, text in device.sources.items())
        if device.notes:
            lines.append(f"  notes: {device.notes}")
        return "\n".join(lines)
    header = ("name", "device", "bf16 peak", "fp32 peak", "bandwidth", "memory")
    rows = [header]
    for device in devices:
        rows.append(
            (
                device.name,
                device.title,
                _tera(device.peak_flops.get("bfloat16")),
                _tera(device.peak_flops.get("float32")),
                f"{device.memory_bandwidth / 1e9:g} GB/s",
                "-" if device.memory is None else f"{device.memory / 1e9:g} GB",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        "dense peaks as vendors quote them (2 FLOP per multiply-add); "
        "'torchtally hardware NAME' shows every figure with its source"
    )
    return "\n".join(lines)


def _tera(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e12:g} TFLOP/s"


def list_plugins_text(show_all: bool = False) -> str:
    """Every loaded plugin with its distribution and what it registered; failed plugins last."""
    from torchtally.plugins import list_plugins, plugin_failures, reporters
    from torchtally_cli.sources import model_sources

    shown = None if show_all else 8
    model_sources()  # registers the built-in sources, so that they are listed too
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


def cli_words(text: str) -> str:
    """`text` with the Python API's words for options (``mode='real'``, ``elementwise=True``)
    replaced by the command line's (``--mode real``, ``--elementwise``)."""
    for pattern, replacement in CLI_WORDS:
        text = pattern.sub(replacement, text)
    return text


class _CliWords(logging.Filter):
    """Puts the library's warnings in the command line's words."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = cli_words(record.getMessage()), None
        return True


def _dtype(name: str | None) -> torch.dtype | None:
    import torch

    dtype: torch.dtype | None = getattr(torch, name) if name else None
    return dtype


def _device(text: str | None) -> torch.device | None:
    import torch

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
    from torchtally.formats import format_for_path

    if args.format:
        return str(args.format)
    if args.output is not None:
        return format_for_path(args.output)
    return "table"


def _check_format(name: str, kind: str | None = None) -> None:
    """Fail before any model is built if no installed reporter has the format `name` (or it
    cannot show a `kind` of comparison)."""
    from torchtally import UnknownFormatError
    from torchtally.formats import comparison_formats, find_reporter

    try:
        reporter, _ = find_reporter(name)
    except UnknownFormatError as error:
        raise CliError(str(error), EXIT_USAGE if error.installed else EXIT_MISSING) from None
    if kind is not None and getattr(reporter, f"render_{kind}") is None:
        able = ", ".join(comparison_formats(kind))
        what = "a comparison" if kind == "diff" else "a sweep"
        raise CliError(f"--format {name} cannot show {what}; formats that can: {able}", EXIT_USAGE)


def _check_metrics(names: Sequence[str] | None) -> None:
    """Fail before anything runs if --metrics names a metric no analysis here counts."""
    if not names:
        return
    from torchtally.handlers import METRICS

    known = ("params", *METRICS)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise CliError(
                f"--metrics {name}: no such metric; {hint}this command counts {', '.join(known)}",
                EXIT_USAGE,
            )


def _load(args: argparse.Namespace, source: str, device: torch.device | None) -> LoadedModel:
    import torch
    from torch import nn

    from torchtally_cli.sources import (
        InputSpecError,
        MissingPackageError,
        SourceError,
        load_model,
        parse_key_values,
    )

    try:
        settings = parse_key_values(args.set, "--set")
        build_device = torch.device("meta") if args.mode == "meta" else device
        loaded = load_model(
            source,
            config=args.config,
            settings=settings,
            cfg_options=args.cfg_options,
            device=build_device,
            dtype=_dtype(args.dtype),
            unknown_settings=args.set_unknown,
            weights=args.mode == "real",  # a saved file's: counting needs only their shapes
        )
    except MissingPackageError as error:
        raise CliError(str(error), EXIT_MISSING) from error
    except InputSpecError as error:
        raise CliError(str(error), EXIT_USAGE) from error
    except SourceError as error:
        raise CliError(str(error), EXIT_MODEL) from error
    except (Exception, SystemExit) as error:  # a source plugin's or the model's own code
        what = f"sys.exit({error.code!r})" if isinstance(error, SystemExit) else _one_line(error)
        raise CliError(f"building {source} failed: {what}", EXIT_MODEL) from error
    if isinstance(loaded.model, nn.Module):
        loaded.model.train(args.train)
    elif args.train:
        raise CliError(
            "--train does not apply to an exported program: it runs as it was exported "
            "(export the model in training mode to count training)",
            EXIT_USAGE,
        )
    if args.measure and loaded.kind in ("export", "torchscript"):
        raise CliError(
            "--measure times eager modules, not a saved exported program (.pt2) or "
            "TorchScript (.pt) file: analyse it without --measure, or time the model it was "
            "made from",
            EXIT_USAGE,
        )
    return loaded


def _inputs(
    args: argparse.Namespace,
    loaded: LoadedModel,
    device: torch.device | None,
    point: dict[str, Any],
) -> Any:
    import torch

    from torchtally_cli.sources import InputSpecError, example_inputs

    if args.mode in ("fake", "meta") and loaded.make_inputs is None:
        device = torch.device("meta")  # shape-only runs: the inputs take no memory either
    elif args.mode == "meta":  # the model is on the meta device; its inputs are ordinary tensors
        device = device or torch.device("cpu")
    try:
        return example_inputs(
            loaded,
            shape=point["shape"],
            seq_len=point["seq_len"],
            batch=1 if point["batch"] is None else point["batch"],
            dtype=_dtype(args.dtype),
            device=device,
        )
    except InputSpecError as error:
        raise CliError(str(error), EXIT_USAGE) from error
    except (MemoryError, RuntimeError) as error:  # the allocator refused
        if not isinstance(error, MemoryError) and "alloc" not in str(error):
            raise
        shape = " ".join(map(str, point["shape"] or ())) or "(the default)"
        raise CliError(
            f"the input for --shape {shape} is too large to build in memory: use --mode fake "
            "or --mode meta, which build inputs without memory, or a smaller --shape",
            EXIT_USAGE,
        ) from error
    except (Exception, SystemExit) as error:  # a source's input maker
        what = f"sys.exit({error.code!r})" if isinstance(error, SystemExit) else _one_line(error)
        raise CliError(f"making inputs for {loaded.source} failed: {what}", EXIT_USAGE) from error


def _flat(message: str) -> str:
    """A message on one line (a library error may add its advice on a line of its own)."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def _analyze(
    args: argparse.Namespace, loaded: LoadedModel, inputs: Any, point: dict[str, Any]
) -> Analysis:
    from torchtally import TraceError
    from torchtally.api import analyze
    from torchtally_reporters.summary import describe_inputs

    options: dict[str, Any] = {"elementwise": args.elementwise, "warn_unsupported": not args.quiet}
    # Only what differs from analyze's defaults, so the defaults stay analyze's own.
    if args.mode != "auto":
        options["mode"] = args.mode
    if args.backward:
        options["backward"] = True
    if getattr(args, "measure", False) and not args.backward:
        options["measure"] = True  # with --backward, a language model's step is timed whole
    given = point["shape"] or point["seq_len"]
    made = "" if loaded.inputs is not None and not given else " (inputs"
    hint = f"{made}: {describe_inputs(inputs)}; set them with --shape or --seq-len)" if made else ""
    try:
        try:
            return analyze(loaded.model, inputs, **options)
        except TraceError as error:
            if not (loaded.weightless and args.mode == "auto"):
                raise
            # as auto mode does for a model in memory: run it for real when shapes fail
            logging.getLogger("torchtally").warning(
                "counting %s from its weights' sizes failed (%s); loading its weights and "
                "running it for real instead (pass --mode real to skip the attempt)",
                loaded.source,
                _one_line(error),
            )
            real = argparse.Namespace(**{**vars(args), "mode": "real"})
            device = _device(args.device)
            weighted = _load(real, loaded.source, device)
            inputs = _inputs(real, weighted, device, point)  # the shape-only run's may be meta
            return analyze(weighted.model, inputs, **{**options, "mode": "real"})
    except CliError:
        raise
    except SystemExit as error:
        raise CliError(
            f"analysing {loaded.source} failed: the model called sys.exit({error.code!r})",
            EXIT_ANALYSIS,
        ) from error
    except Exception as error:
        raise CliError(
            cli_words(f"analysing {loaded.source} failed: {type(error).__name__}: {error}{hint}"),
            EXIT_ANALYSIS,
        ) from error


def _render_options(args: argparse.Namespace, hardware: bool = False) -> dict[str, Any]:
    given = {
        "max_depth": args.max_depth,
        "metrics": args.metrics,
        "units": args.units,
        "flop_unit": args.flop_unit,
    }
    if hardware:  # the table, markdown and json of one analysis
        given["hardware"] = args.hardware
        given["top"] = getattr(args, "top", None)
        given["top_by"] = getattr(args, "top_by", None)
        given["percent"] = getattr(args, "percent", False) or None
        given["shapes"] = getattr(args, "shapes", False) or None
    return {key: value for key, value in given.items() if value is not None}


TABLE_FORMATS = ("table", "markdown")


def _check_extras(args: argparse.Namespace, output_format: str, varying: bool) -> None:
    """--top, --percent, --shapes: a table of one analysis; --measure: a real forward pass."""
    given = [
        option
        for option, value in (
            ("--top", args.top is not None),
            ("--top-by", args.top_by is not None),
            ("--percent", args.percent),
            ("--shapes", args.shapes),
        )
        if value
    ]
    if given and (output_format not in TABLE_FORMATS or varying):
        raise CliError(
            f"{', '.join(given)} add to --format table or markdown of one analysis "
            f"(not {'a sweep' if varying else output_format})",
            EXIT_USAGE,
        )
    if args.measure and (args.mode in ("fake", "meta") or varying):
        raise CliError(
            "--measure times one forward pass running for real (with --backward, a language "
            "model's training step): not with --mode fake or meta, or a sweep",
            EXIT_USAGE,
        )


HARDWARE_FORMATS = ("table", "markdown", "json")


def _check_hardware(args: argparse.Namespace, output_format: str, varying: bool) -> None:
    """--hardware: a known device, with a format that shows time, on one analysis."""
    if args.hardware is None or args.generate is not None:
        return  # generation times its steps itself
    if output_format not in HARDWARE_FORMATS or varying:
        raise CliError(
            "--hardware adds time columns to --format table, markdown or json of one analysis "
            f"(not {'a sweep' if varying else output_format})",
            EXIT_USAGE,
        )
    from torchtally import UnknownHardwareError, hardware

    try:
        hardware(args.hardware)
    except UnknownHardwareError as error:
        raise CliError(f"--hardware: {error}", EXIT_USAGE) from error


def _points(args: argparse.Namespace) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """What varies (``seq_len``, ...) and every combination of the values given: one point, with
    nothing varying, when each option has one value or none."""
    values: dict[str, list[Any]] = {
        "shape": args.shape or [None],
        "seq_len": args.seq_len or [None],
        "batch": args.batch or [None],
    }
    varying = tuple(name for name, given in values.items() if len(given) > 1)
    points = [
        dict(zip(values, combination, strict=True))
        for combination in itertools.product(*values.values())
    ]
    return varying, points


def _write(args: argparse.Namespace, text: str, what: str) -> str:
    if args.output is None:
        return text
    from torchtally.formats import write_atomic

    try:
        write_atomic(args.output, text + "\n")  # a failed write leaves the old file as it was
    except OSError as error:
        why = error.strerror or str(error)
        raise CliError(f"cannot write {args.output}: {why}", EXIT_USAGE) from error
    return f"wrote {what} to {args.output}"


def _rendered(subject: Analysis | Diff | Sweep, output_format: str, options: dict[str, Any]) -> str:
    try:
        return subject.render(output_format, **options)
    except (TypeError, ValueError) as error:
        raise CliError(cli_words(str(error)), EXIT_USAGE) from error


def run(argv: Sequence[str] | None = None) -> str:
    """The text the command prints for `argv`; raises `CliError` with the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plugins"]:
        return list_plugins_text(_plugins_parser().parse_args(argv[1:]).all)
    if argv[:1] == ["hardware"]:
        args = _hardware_parser().parse_args(argv[1:])
        return list_hardware_text(args.name, args.json)
    if argv[:1] == ["diff"]:
        return run_diff(_diff_parser().parse_args(argv[1:]))
    args = _parser().parse_args(argv)
    _check_common(args)
    varying, points = _points(args)
    output_format = _output_format(args)
    _check_hardware(args, output_format, bool(varying))
    _check_extras(args, output_format, bool(varying))
    if args.generate is not None:
        return _write(args, _generation(args, output_format), f"{output_format} report")
    _check_format(output_format, "sweep" if varying else None)
    device = _device(args.device)
    loaded = _load(args, args.model, device)
    analyses = []
    for point in points:
        inputs = _inputs(args, loaded, device, point)
        analyses.append(_analyze(args, loaded, inputs, point))
    render_options = _render_options(args, hardware=not varying)
    if varying:
        from torchtally import Sweep

        sweep = Sweep(varying, tuple(tuple(p[n] for n in varying) for p in points), tuple(analyses))
        text = _rendered(sweep, output_format, render_options)
        return _write(args, text, f"{output_format} sweep of {len(points)} points")
    (analysis,) = analyses
    text = _rendered(analysis, output_format, render_options)
    if output_format == "table":
        from torchtally import render

        units: dict[str, Any] = {
            key: render_options[key] for key in ("units", "flop_unit") if key in render_options
        }
        if loaded.describe_inputs is not None:  # the source's own words for its inputs
            units["input_shape"] = loaded.describe_inputs(inputs)
        text = f"{render(analysis, 'summary', **units)}\n{text}"
        if args.backward:
            text += _against_6n(
                args, loaded, inputs, analysis, render_options.get("units", "human")
            )
    return _write(args, text, f"{output_format} report")


def _against_6n(
    args: argparse.Namespace, loaded: LoadedModel, inputs: Any, analysis: Analysis, units: str
) -> str:
    """A language model's training step: flops per token against the 6N rule, and why; with
    --measure, the step timed for real and its FLOP/s (with --hardware, its MFU)."""
    import torch
    from torch import nn

    from torchtally.llm import training_comparison

    config = getattr(loaded.model, "config", None)
    ids = inputs.get("input_ids") if isinstance(inputs, dict) else None
    if (
        loaded.task != "transformers"
        or not isinstance(loaded.model, nn.Module)
        or getattr(config, "is_encoder_decoder", False)
        or not isinstance(ids, torch.Tensor)
        or ids.dim() != 2
    ):
        if args.measure:
            raise CliError(
                "--measure with --backward times a language model's training step "
                "(transformers:CLASS with --seq-len); drop --backward to time a forward pass",
                EXIT_USAGE,
            )
        return ""
    step = training_comparison(analysis, loaded.model, ids.numel(), ids.shape[1])
    text = "\n" + step.explain(units=units)
    if args.measure:
        from torchtally.llm import sum_of_outputs, time_training_step

        seconds = time_training_step(loaded.model, inputs, sum_of_outputs)
        achieved = 2 * analysis.total() / seconds
        text += (
            f"\nMeasured step: {seconds * 1e3:.4g} ms on {ids.device} (median of 5 after 2 "
            f"warm-up), {achieved / 1e12:.4g} TFLOP/s achieved (2 per multiply-add)"
        )
        if args.hardware is not None:
            mfu = step.mfu(args.hardware, seconds)
            with_attention = mfu.get("rule_6n_with_attention", mfu["rule_6n"])
            text += (
                f"\nMFU on {args.hardware}: {mfu['counted']:.2%} of counted flops, "
                f"{with_attention:.2%} by 6N + attention (PaLM's)"
            )
    return text


def _check_common(args: argparse.Namespace) -> None:
    """What can be checked before anything is built or run."""
    if args.max_depth is not None and args.max_depth < 0:
        raise CliError(f"--max-depth must be 0 or more, got {args.max_depth}", EXIT_USAGE)
    _check_metrics(args.metrics)


def run_diff(args: argparse.Namespace) -> str:
    """``torchtally diff A B``: each side a JSON report file or a model the options build."""
    from torchtally import ReportError, diff

    _check_common(args)
    if args.hardware is not None:
        raise CliError("--hardware times one analysis; diff compares counts", EXIT_USAGE)
    output_format = _output_format(args)
    _check_format(output_format, "diff")
    point = {"shape": args.shape, "seq_len": args.seq_len, "batch": args.batch}
    sides: list[Any] = []
    for source in (args.a, args.b):
        if source.lower().endswith(".json") and ":" not in Path(source).name:
            sides.append(Path(source))
            continue
        device = _device(args.device)
        loaded = _load(args, source, device)
        sides.append(_analyze(args, loaded, _inputs(args, loaded, device, point), point))
    labels = [args.a, args.b]
    try:
        comparison = diff(sides[0], sides[1], labels=labels)
    except ReportError as error:
        raise CliError(str(error), EXIT_USAGE) from error
    text = _rendered(comparison, output_format, _render_options(args))
    return _write(args, text, f"{output_format} comparison")


GENERATION_FORMATS = ("table", "json")


def _generation(args: argparse.Namespace, output_format: str) -> str:
    """--generate: the prefill and decode of a language model, as a summary and table or JSON."""
    from torch import nn

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
    if len(args.seq_len or ()) > 1 or len(args.batch or ()) > 1:
        raise CliError("--generate takes one --seq-len and one --batch, not a sweep", EXIT_USAGE)
    loaded = _load(args, args.model, _device(args.device))
    if not isinstance(loaded.model, nn.Module):
        raise CliError("--generate needs a model built from a source, not a .pt2 file", EXIT_USAGE)
    prompt = args.seq_len[0] if args.seq_len else 128
    try:
        result = generation(
            loaded.model.eval(),
            prompt_tokens=prompt,
            new_tokens=args.generate,
            batch=args.batch[0] if args.batch else 1,
            mode=args.mode,
            elementwise=args.elementwise,
            warn_unsupported=not args.quiet,
        )
    except (TypeError, ValueError) as error:
        raise CliError(f"--generate: {error}", EXIT_USAGE) from error
    except (Exception, SystemExit) as error:
        raise CliError(
            f"counting generation with {args.model} failed: {type(error).__name__}: {error}",
            EXIT_ANALYSIS,
        ) from error
    timed = None
    if args.hardware is not None:
        from torchtally.devices import UnknownHardwareError

        try:
            timed = result.on(args.hardware)
        except UnknownHardwareError as error:
            raise CliError(str(error).strip("'\""), EXIT_USAGE) from error
    if output_format == "json":
        import json

        document = result.to_dict()
        if timed is not None:
            document["hardware"] = timed.to_dict()
        return json.dumps(document, indent=2)
    units = args.units or "human"
    metrics = tuple(m for m in args.metrics or () if m != "params") or None
    try:
        table = result.table(
            max_depth=1 if args.max_depth is None else args.max_depth,
            metrics=metrics,
            units=units,
        )
        summary = result.summary(metrics=metrics, units=units)
        operators = result.operator_table(metrics=metrics, units=units)
    except (KeyError, ValueError) as error:
        raise CliError(str(error).strip("'\""), EXIT_USAGE) from error
    if timed is not None:
        summary += "\n" + timed.summary()
    return f"{summary}\n{table}\n{operators}"


def main(argv: Sequence[str] | None = None) -> int:
    if not logging.getLogger("torchtally").handlers and not logging.getLogger().handlers:
        logging.basicConfig(format="torchtally: %(message)s", level=logging.WARNING)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_CliWords())
    try:
        print(run(argv))
    except CliError as error:
        print(f"torchtally: error: {_flat(str(error))}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("torchtally: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Done as done:  # --help and --version
        return done.code if isinstance(done.code, int) else 0
    except SystemExit as done:  # code of the model's or a plugin's that exits, caught nowhere else
        print(f"torchtally: error: sys.exit({done.code!r}) was called", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # `torchtally ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except Exception as error:  # a bug: one line, the traceback on request
        if os.environ.get(TRACEBACK_ENV):
            traceback.print_exc()
        first = (str(error).splitlines() or [""])[0]
        print(
            f"torchtally: error: {type(error).__name__}: {first} (unexpected: please report it; "
            f"{TRACEBACK_ENV}=1 shows where)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""torchtally: parameters, FLOPs and activations of PyTorch models, counted at the dispatcher."""

from torchtally.analysis import Analysis
from torchtally.api import (
    analyze,
    hardware,
    hardware_table,
    register_handler,
    trace,
    unregister_handler,
)
from torchtally.artefacts import load_exported
from torchtally.compare import Diff, ReportError, Sweep, diff
from torchtally.compat import (
    ActivationAnalyzer,
    ActivationCountAnalysis,
    FlopAnalyzer,
    FlopCountAnalysis,
    activation_count,
    flop_count,
    get_model_complexity_info,
    parameter_count_table,
)
from torchtally.counting import HandlerError, HandlerWarning, UnusedHandlerWarning
from torchtally.devices import Hardware, UnknownHardwareError
from torchtally.formats import render, save
from torchtally.handlers import (
    ON_REQUEST_METRICS,
    CompositeOpError,
    CountOptions,
    HandlerSet,
    UnknownOpError,
)
from torchtally.hookspecs import hookimpl
from torchtally.llm import (
    Generation,
    Tally,
    TrainingStep,
    active_parameters,
    generation,
    training_comparison,
    training_step,
)
from torchtally.params import parameter_count, parameter_shapes
from torchtally.plugins import (
    PluginError,
    PluginWarning,
    get_plugin_manager,
    list_plugins,
    plugin_failures,
)
from torchtally.process import AnalysisError, RestoreError
from torchtally.records import ModuleCall, OpCall, TensorMeta, Trace
from torchtally.reporting import Reporter, ReporterError, UnknownFormatError
from torchtally.roofline import Measured, OpTime, Roofline, Times
from torchtally.tracer import TraceError
from torchtally.units import format_count
from torchtally.version import __version__

__all__ = [
    "ON_REQUEST_METRICS",
    "ActivationAnalyzer",
    "ActivationCountAnalysis",
    "Analysis",
    "AnalysisError",
    "CompositeOpError",
    "CountOptions",
    "Diff",
    "FlopAnalyzer",
    "FlopCountAnalysis",
    "Generation",
    "HandlerError",
    "HandlerSet",
    "HandlerWarning",
    "Hardware",
    "Measured",
    "ModuleCall",
    "OpCall",
    "OpTime",
    "PluginError",
    "PluginWarning",
    "ReportError",
    "Reporter",
    "ReporterError",
    "RestoreError",
    "Roofline",
    "Sweep",
    "Tally",
    "TensorMeta",
    "Times",
    "Trace",
    "TraceError",
    "TrainingStep",
    "UnknownFormatError",
    "UnknownHardwareError",
    "UnknownOpError",
    "UnusedHandlerWarning",
    "__version__",
    "activation_count",
    "active_parameters",
    "analyze",
    "diff",
    "flop_count",
    "format_count",
    "generation",
    "get_model_complexity_info",
    "get_plugin_manager",
    "hardware",
    "hardware_table",
    "hookimpl",
    "list_plugins",
    "load_exported",
    "parameter_count",
    "parameter_count_table",
    "parameter_shapes",
    "plugin_failures",
    "register_handler",
    "render",
    "save",
    "trace",
    "training_comparison",
    "training_step",
    "unregister_handler",
]

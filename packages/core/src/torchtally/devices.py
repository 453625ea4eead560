"""Devices as data: `Hardware` (peak FLOP/s per dtype, memory bandwidth and size, with sources)
and the built-in table read from ``data/hardware.json``.

Figures follow the vendors: dense peaks counting 2 FLOP per multiply-add. torchtally counts one
multiply-add as one flop, so the roofline doubles its counts before dividing by these. This module
imports nothing of torchtally's: the plugin manager adds the devices plugins give, by name.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from types import MappingProxyType
from typing import Any, NamedTuple

# The dtype keys a device's table uses, and the names accepted for them.
DTYPES = ("float64", "float32", "tf32", "bfloat16", "float16", "float8", "int8")
_DTYPE_ALIASES = {
    "fp64": "float64",
    "double": "float64",
    "fp32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "fp8": "float8",
    "uint8": "int8",
    "qint8": "int8",
    "quint8": "int8",
}


class UnknownHardwareError(LookupError):
    """No device of that name: the message names the close matches and how to list them."""


def dtype_key(dtype: Any) -> str:
    """The table key for `dtype`: a ``torch.dtype`` or a name (``"bf16"``, ``"torch.float16"``);
    every float8 variant is ``"float8"``. Other dtypes (int64, bool) keep their own name."""
    name = str(dtype).removeprefix("torch.").lower()
    if name.startswith("float8"):
        return "float8"
    return _DTYPE_ALIASES.get(name, name)


def _rates(values: Mapping[Any, Any], what: str, device: str) -> Mapping[str, float]:
    rates = {}
    for dtype, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(
                f"{device}: {what}[{dtype!r}] must be a number of FLOP/s, got {value!r}"
            )
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{device}: {what}[{dtype!r}] must be positive, got {value!r}")
        rates[dtype_key(dtype)] = float(value)
    return MappingProxyType(rates)


class Rate(NamedTuple):
    """The FLOP/s an op gets on a device: the figure, the table and dtype it came from, and a
    note when it is not the op's own (a fallback)."""

    flops: float
    table: str  # "peak_flops" or "vector_flops"
    dtype: str
    note: str | None = None


@dataclass(frozen=True)
class Hardware:
    """One device: peak FLOP/s per dtype, memory bandwidth (bytes/s), memory (bytes).

    `peak_flops` holds the matrix units' (tensor or matrix cores') dense peak per dtype, or the
    only peak of a device without them; `vector_flops` the ordinary units' peak where known.
    Keys are dtype names (``"bfloat16"``, ``"float32"``, ``"tf32"``, ``"float8"``, ``"int8"``;
    ``torch.bfloat16`` and ``"bf16"`` are accepted). `sources` says where each figure comes
    from. `compute_efficiency` and `memory_efficiency` scale the peaks to effective figures (see
    `calibrated`); 1.0 is the datasheet.

    ``Hardware("my-gpu", peak_flops={"bfloat16": 400e12}, memory_bandwidth=1.5e12)``
    """

    name: str
    peak_flops: Mapping[str, float]
    memory_bandwidth: float
    memory: float | None = None
    vector_flops: Mapping[str, float] = field(default_factory=dict)
    title: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""
    aliases: tuple[str, ...] = ()
    compute_efficiency: float = 1.0
    memory_efficiency: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a Hardware's name is a non-empty string, got {self.name!r}")
        if not isinstance(self.peak_flops, Mapping) or not self.peak_flops:
            raise TypeError(
                f"{self.name}: peak_flops maps dtypes to FLOP/s, e.g. "
                f"{{'bfloat16': 989e12, 'float32': 67e12}}; got {self.peak_flops!r}"
            )
        object.__setattr__(self, "peak_flops", _rates(self.peak_flops, "peak_flops", self.name))
        object.__setattr__(
            self, "vector_flops", _rates(self.vector_flops, "vector_flops", self.name)
        )
        checks = {
            "memory_bandwidth": self.memory_bandwidth,
            "compute_efficiency": self.compute_efficiency,
            "memory_efficiency": self.memory_efficiency,
        }
        if self.memory is not None:
            checks["memory"] = self.memory
        for what, value in checks.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{self.name}: {what} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{self.name}: {what} must be positive, got {value!r}")
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))
        object.__setattr__(self, "aliases", tuple(self.aliases))

    def __repr__(self) -> str:
        peaks = ", ".join(f"{k} {v / 1e12:g} TFLOP/s" for k, v in self.peak_flops.items())
        efficiency = ""
        if self.compute_efficiency != 1.0 or self.memory_efficiency != 1.0:
            efficiency = (
                f", x{self.compute_efficiency:g} compute, x{self.memory_efficiency:g} memory"
            )
        return f"Hardware({self.name!r}: {peaks}; {self.memory_bandwidth / 1e9:g} GB/s{efficiency})"

    # --- effective figures ----------------------------------------------------------------------

    @property
    def bandwidth(self) -> float:
        """Effective memory bandwidth in bytes/s: the peak times `memory_efficiency`."""
        return self.memory_bandwidth * self.memory_efficiency

    def rate(self, dtype: Any, matrix: bool = True) -> Rate:
        """The effective FLOP/s for arithmetic in `dtype`: on the matrix units (`matrix`, for
        matmuls and convolutions) or the ordinary units (element-wise work).

        Matrix work uses ``peak_flops[dtype]``; other work ``vector_flops[dtype]``, else
        ``peak_flops[dtype]`` (noted). A dtype the device has no figure for (int64, a float8 on a
        card without FP8) uses float32's figure of the same kind, noted; a device without float32
        its slowest peak, noted.
        """
        key = dtype_key(dtype)
        tables = ("peak_flops",) if matrix else ("vector_flops", "peak_flops")
        for wanted in (key, "float32"):
            for table in tables:
                value = getattr(self, table).get(wanted)
                if value is None:
                    continue
                note = None
                if wanted != key:
                    note = f"{self.name} has no {key} figure: {table}[float32] used"
                elif table != tables[0]:
                    note = f"{self.name} has no vector {key} figure: the matrix peak used"
                return Rate(value * self.compute_efficiency, table, wanted, note)
        slowest = min(self.peak_flops, key=lambda k: self.peak_flops[k])
        missing = key if key == "float32" else f"{key} or float32"
        note = f"{self.name} has no {missing} figure: peak_flops[{slowest}] used"
        return Rate(self.peak_flops[slowest] * self.compute_efficiency, "peak_flops", slowest, note)

    def calibrated(self, compute: float = 1.0, memory: float = 1.0) -> Hardware:
        """A copy whose effective figures are `compute` times its FLOP/s and `memory` times its
        bandwidth (efficiency factors, e.g. 0.7 and 0.85 from a measured run; factors multiply
        with the ones it already has). `Roofline.calibrate` finds them from measured times."""
        for what, value in (("compute", compute), ("memory", memory)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"calibrated({what}=...) takes a positive factor, got {value!r}")
        return replace(
            self,
            compute_efficiency=self.compute_efficiency * compute,
            memory_efficiency=self.memory_efficiency * memory,
        )

    # --- data -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The device as JSON-ready data (the built-in file's form)."""
        data: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "aliases": list(self.aliases),
            "peak_flops": dict(self.peak_flops),
            "vector_flops": dict(self.vector_flops),
            "memory_bandwidth": self.memory_bandwidth,
            "memory": self.memory,
            "sources": dict(self.sources),
            "notes": self.notes,
        }
        if self.compute_efficiency != 1.0 or self.memory_efficiency != 1.0:
            data["compute_efficiency"] = self.compute_efficiency
            data["memory_efficiency"] = self.memory_efficiency
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hardware:
        """A device from `to_dict`'s form (unknown keys are refused, naming the known ones)."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown Hardware fields {unknown}; the fields are {', '.join(sorted(known))}"
            )
        values = dict(data)
        values["aliases"] = tuple(values.get("aliases", ()))
        return cls(**values)


_BUILTIN: tuple[Hardware, ...] | None = None


def builtin_hardware() -> tuple[Hardware, ...]:
    """The devices of the package's ``data/hardware.json``, in the file's order (read once)."""
    global _BUILTIN
    if _BUILTIN is None:
        text = resources.files("torchtally").joinpath("data", "hardware.json").read_text("utf-8")
        _BUILTIN = tuple(Hardware.from_dict(entry) for entry in json.loads(text)["devices"])
    return _BUILTIN


def normalize_name(name: str) -> str:
    """``"H100 SXM"`` and ``"h100_sxm"`` both name ``"h100-sxm"``."""
    return "-".join(name.strip().lower().replace("_", " ").split())


def find_hardware(name: str, devices: Iterable[Hardware]) -> Hardware:
    """The device called `name` (or one of its aliases) among `devices`; `UnknownHardwareError`
    naming the close matches otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"a device is named by a string such as 'h100-sxm', got {name!r}")
    wanted = normalize_name(name)
    names: dict[str, Hardware] = {}
    for device in devices:
        for key in (device.name, *device.aliases):
            names.setdefault(normalize_name(key), device)
    if wanted in names:
        return names[wanted]
    close = difflib.get_close_matches(wanted, list(names), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    primary = sorted({device.name for device in names.values()})
    raise UnknownHardwareError(
        f"no device named {name!r}{hint} (known: {', '.join(primary)}; "
        "torchtally.hardware_table() and `torchtally hardware` list them; pass a "
        "torchtally.Hardware for another)"
    )

"""Estimated time on a device (the ``hardware`` option): the roofline's columns and summary line."""

from __future__ import annotations

from typing import Any

from torchtally.plugin import Analysis, Hardware

TIME = "time"
BOUND = "bound"


def check_hardware(value: Any) -> str | Hardware | None:
    """The ``hardware`` option: None, a device name (``"h100-sxm"``) or a `Hardware`."""
    if value is None or isinstance(value, (str, Hardware)):
        return value
    raise TypeError(
        f"hardware must be a device name such as 'h100-sxm' or a torchtally.Hardware, got {value!r}"
    )


def roofline_of(analysis: Analysis, hardware: str | Hardware | None) -> Any:
    """`analysis.roofline(hardware)`, or None without a device; an unknown name is a ValueError
    naming the close matches."""
    if hardware is None:
        return None
    try:
        return analysis.roofline(hardware)
    except LookupError as error:
        raise ValueError(str(error).strip("'\"")) from error


def format_seconds(seconds: float, units: str = "human") -> str:
    """``1.11 ms``, ``10.1 us``; with raw units, seconds as they are."""
    if units == "raw":
        return repr(seconds)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns" if seconds else "0"


def time_cells(roofline: Any, names: Any, units: str) -> dict[str, dict[str, str]]:
    """Per module of `names`: its estimated time and the bound of most of it."""
    seconds = roofline.by_module()
    bounds = roofline.bound_by_module()
    cells = {}
    for name in names:
        if name in seconds:
            spent = seconds[name]
            cells[name] = {
                TIME: format_seconds(spent, units) if spent else "",
                BOUND: (bounds.get(name) or "") if spent else "",
            }
    return cells


def time_headers(roofline: Any) -> list[str]:
    return [f"time ({roofline.hardware.name})", BOUND]


def summary_line(roofline: Any, units: str = "human") -> str:
    """``estimated time on h100-sxm: 596 us, 93% compute-bound, 7% memory-bound``."""
    share = roofline.bound_share()
    return (
        f"estimated time on {roofline.hardware.name}: "
        f"{format_seconds(roofline.total(), units)}, {share['compute']:.0%} compute-bound, "
        f"{share['memory']:.0%} memory-bound (roofline: max(2 x flops / peak, bytes / "
        "bandwidth) per op)"
    )

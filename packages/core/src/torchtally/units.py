"""Human-readable counts as mmengine prints them: ``100``, ``0.44K``, ``4.109G``, ``25.557M``."""

from __future__ import annotations

# (threshold, divisor, suffix): a count above the threshold is shown in that unit.
_UNITS = ((1e14, 1e15, "P"), (1e11, 1e12, "T"), (1e8, 1e9, "G"), (1e5, 1e6, "M"), (1e2, 1e3, "K"))


def format_count(value: float, digits: int = 3, hide_zero: bool = False) -> str:
    """Scale `value` to K/M/G/T/P with up to `digits` decimals, trailing zeros dropped.

    A unit is used once the value passes a tenth of it (0.44K, not 440), as mmengine does.
    """
    if hide_zero and value == 0:
        return ""
    for threshold, divisor, suffix in _UNITS:
        if abs(value) > threshold:
            return _trim(f"{value / divisor:.{digits}f}") + suffix
    if isinstance(value, float) and not value.is_integer():
        return _trim(f"{value:.{digits}f}")
    return str(int(value))


def _trim(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number

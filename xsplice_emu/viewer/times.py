"""How virtual times and durations read on screen."""

from __future__ import annotations

import math

_UNITS = ((1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "µs"), (1, "ns"))


def duration(ns: int | None) -> str:
    """`806 ns`, `3.849 µs`, `2.000 ms`; `-` for None."""
    if ns is None:
        return "-"
    for scale, unit in _UNITS:
        if abs(ns) >= scale or scale == 1:
            return f"{ns} ns" if scale == 1 else f"{ns / scale:.3f} {unit}"
    raise AssertionError("unreachable")


def instant(ns: int) -> str:
    """An absolute virtual time, in ms to the ns: `2.003826 ms`."""
    return f"{ns / 1e6:.6f} ms"


def tick_label(ns: int, step_ns: int) -> str:
    """A ruler label in ms with just the decimals that `step_ns` needs: `2.0038ms`."""
    decimals = max(0, 6 - int(math.log10(step_ns)))
    return f"{ns / 1e6:.{decimals}f}ms"


def tick_step(span_ns: int, width: int, *, spacing: int) -> int:
    """The smallest 1-2-5 step in ns that puts ticks at least `spacing` columns apart."""
    raw = max(1, span_ns * spacing // max(width, 1))
    magnitude = 10 ** int(math.log10(raw))
    for mantissa in (1, 2, 5, 10):
        if mantissa * magnitude >= raw:
            return mantissa * magnitude
    raise AssertionError("unreachable")

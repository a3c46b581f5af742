"""Durations in virtual time: the units, their one range, and the one way a duration is read from text.

Every duration the tool takes (a command's `--ms`, `--boot-ms` or `--timeout-ms`,
a scenario's `run_ms`, `ms`, `delay_us`, `boot_ms`, a shell `run 5ms`) is a
finite number from 0 to `MAX_MS` ms of virtual time, checked by `to_ns` when
the command or file is read.
"""

from __future__ import annotations

import math
import re

from .errors import ConfigError

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
UNIT_NS = {"ns": 1, "us": NS_PER_US, "ms": NS_PER_MS, "s": 1_000_000_000}
MAX_MS = 60_000
"""Longest duration anything takes: 60 s of virtual time (about two minutes of host time per vCPU)."""
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s)?")


def to_ns(value: float, unit: str, *, what: str, above_zero: bool = False) -> int:
    """`value` `unit`s in ns; ConfigError naming `what` unless it is finite and 0 (or above) to MAX_MS ms."""
    limit = MAX_MS * NS_PER_MS // UNIT_NS[unit]
    low = f"{'above' if above_zero else 'from'} 0"
    if isinstance(value, bool) or not math.isfinite(value) or not (0 < value if above_zero else 0 <= value) \
            or value > limit:
        raise ConfigError(f"{what} must be a duration {low} to {limit:g} {unit}, got {value!r}")
    return int(value * UNIT_NS[unit])


def parse_duration(text: str, *, what: str = "duration") -> int:
    """Nanoseconds in `text`: 5ms, 20us, 1s, 300ns; a bare number is ms. ConfigError when it is not one."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ConfigError(f"{text!r} is not a duration (5ms, 20us, 1s; a bare number is ms)")
    return to_ns(float(match.group(1)), match.group(2) or "ms", what=what)

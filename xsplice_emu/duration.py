"""Durations in virtual time: the units, and the one way a duration is read from text."""

from __future__ import annotations

import re

from .errors import ConfigError

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
UNIT_NS = {"ns": 1, "us": NS_PER_US, "ms": NS_PER_MS, "s": 1_000_000_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s)?")


def parse_duration(text: str) -> int:
    """Nanoseconds in `text`: 5ms, 20us, 1s, 300ns; a bare number is ms. ConfigError when it is not one."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ConfigError(f"{text!r} is not a duration (5ms, 20us, 1s; a bare number is ms)")
    return int(float(match.group(1)) * UNIT_NS[match.group(2) or "ms"])

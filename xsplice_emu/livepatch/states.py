"""Payload states and actions, with Xen's sysctl numbers, and what an action did."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum


class PayloadState(IntEnum):
    CHECKED = 1
    APPLIED = 2


class Action(IntEnum):
    UNLOAD = 1
    REVERT = 2
    APPLY = 3
    REPLACE = 4


TARGET_STATE = {  # the state each action leaves its payload in (UNLOAD: none, it is gone)
    Action.APPLY: PayloadState.APPLIED,
    Action.REPLACE: PayloadState.APPLIED,
    Action.REVERT: PayloadState.CHECKED,
}


@dataclass(frozen=True)
class ActionResult:
    """What one action did and cost."""

    name: str
    action: str
    rc: int
    master: int | None
    parked_ns: int | None
    release_ns: int | None
    host_ms: float
    nmis_lost: int
    bytes_written: int
    violations: Counter[str] = field(default_factory=Counter)
    """The safety oracle's checks that fired for this action (stale ones may still come, after the release)."""

"""Payload states and actions, with Xen's sysctl numbers."""

from __future__ import annotations

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

"""Xen's livepatch as both engines see it: the payload format and ABI, names, states and action
results, and the safety oracle that judges either engine's patching."""

from .payload import FuncRecord, Host, LoadedPayload, load_payload
from .states import Action, ActionResult, PayloadState

__all__ = [
    "Action",
    "ActionResult",
    "FuncRecord",
    "Host",
    "LoadedPayload",
    "PayloadState",
    "load_payload",
]

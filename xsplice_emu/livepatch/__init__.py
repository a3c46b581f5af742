"""Xen's xSplice live patching on the emulated machine: payloads, rendezvous, actions."""

from .payload import FuncRecord, Host, LoadedPayload, load_payload
from .rendezvous import Rendezvous, Work
from .states import Action, PayloadState
from .sysctl import ActionResult, Livepatch, Payload

__all__ = [
    "Action",
    "ActionResult",
    "FuncRecord",
    "Host",
    "Livepatch",
    "LoadedPayload",
    "Payload",
    "PayloadState",
    "Rendezvous",
    "Work",
    "load_payload",
]

"""An uploaded payload as the controller keeps it: what was loaded, its state block in guest memory, and
Xen's state, rc and reverted flag."""

from __future__ import annotations

from dataclasses import dataclass

from ...livepatch.payload import LoadedPayload
from ...livepatch.states import PayloadState
from .guest_state import GuestState


@dataclass
class Payload:
    """An uploaded payload and what applying it saved."""

    name: str
    loaded: LoadedPayload
    guest: GuestState
    """Its descriptor and per-function state in guest memory: which records are applied, what they overwrote."""
    state: PayloadState = PayloadState.CHECKED
    rc: int = 0
    reverted: bool = False

    @property
    def metadata(self) -> bytes:
        """Its .modinfo, as LIST gives it."""
        return self.loaded.metadata

"""The rollback journal of one action: every write into code it made, and the payload states and applied
stack as its window opened, to put back when it fails on a host-side error (-EFAULT), a pre-action hook
fails, or its rendezvous times out.

The controller's own writes are journalled with what they replaced; so are the guest's stores into code
while the action's pre-action hooks run and inside its window (a hook patching by hand). Data a hook wrote
is not: Xen does not roll it back either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ...livepatch.states import PayloadState
from .uploaded import Payload

GUEST = "(guest)"
"""The function named for a guest's store into code."""


@dataclass(frozen=True)
class Before:
    """What an action may move, as it was when its window opened (to put back after a host-side error)."""

    applied: tuple[str, ...]
    payloads: tuple[tuple[Payload, PayloadState, int, bool, bytes], ...]

    @classmethod
    def of(cls, applied: list[str], payloads: Iterable[Payload]) -> Before:
        return cls(tuple(applied), tuple((p, p.state, p.rc, p.reverted, p.guest.snapshot()) for p in payloads))

    def restore(self, applied: list[str]) -> None:
        """Put the payloads' states back, and `applied` (the applied stack, in place)."""
        applied[:] = self.applied
        for payload, state, rc, reverted, guest in self.payloads:
            payload.state, payload.rc, payload.reverted = state, rc, reverted
            payload.guest.restore(guest)


@dataclass(frozen=True)
class Write:
    """One write into code during an action (the controller's, or a guest store: no `new`): where, which
    function, the bytes before and after."""

    function: str
    address: int
    old: bytes
    new: bytes


@dataclass
class Journal:
    """What one action (on payload `payload`) wrote into code, to put back if it fails; `recording` while guest
    stores into code are its own (its pre-action hooks, its window)."""

    payload: str
    writes: list[Write] = field(default_factory=list)
    before: Before | None = None
    """The states as its window opened (None: it did not open)."""
    recording: bool = True

    def open_window(self, applied: list[str], payloads: Iterable[Payload]) -> None:
        """The action's window opens: note the states it may move, record guest stores into code."""
        self.before = Before.of(applied, payloads)
        self.recording = True

    def guest_store(self, address: int, old: bytes) -> None:
        """A guest store into code over `old` at `address`: journalled while recording."""
        if self.recording:
            self.writes.append(Write(GUEST, address, old, b""))

    def wrote(self, function: str, address: int, old: bytes, new: bytes) -> None:
        """The controller wrote `new` over `old` at `address`, in `function`."""
        self.writes.append(Write(function, address, old, new))

    def undo(self, write: Callable[[str, int, bytes], object], applied: list[str]) -> int:
        """Put back every byte of code written, newest first, each through `write(function, address, old)`,
        and the states as the window opened (if it did) into `applied` and the payloads; the bytes put back."""
        written, self.writes = self.writes, []
        for entry in reversed(written):
            write(entry.function, entry.address, entry.old)
        if self.before is not None:
            self.before.restore(applied)
        return sum(len(entry.old) for entry in written)

    def sites(self) -> list[tuple[int, int]]:
        """`[begin, end)` of every site the controller wrote, once each, in order."""
        return sorted({(entry.address, entry.address + len(entry.new)) for entry in self.writes if entry.new})

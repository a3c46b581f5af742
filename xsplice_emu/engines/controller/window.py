"""The patching window of the controller's actions: how an action writes code, and what it puts back.

Every write into code is journalled (`journal.py`), dropped from every vCPU's translations (but those a
drop_flush fault keeps), traced, and shown to the safety oracle. The window is open while the rendezvous'
master performs the action; when the rendezvous releases every vCPU, an action whose window never opened
puts back what its pre-action hooks wrote, and the faults set for that one action (drop_flush,
patch_from_irq) end.
"""

from __future__ import annotations

from collections.abc import Generator

from ...livepatch.oracle import Oracle
from ...machine import PS_PER_NS, Machine, Vcpu
from ...machine.subscribers import CODE_WRITE
from ...tracing.kinds import EventKind
from .journal import Journal
from .rendezvous import Rendezvous
from .uploaded import Payload


class PatchWindow:
    """The code writes of one machine's actions, their journal, and the faults that change one action's window."""

    def __init__(self, machine: Machine, rendezvous: Rendezvous, oracle: Oracle | None, *, applied: list[str],
                 payloads: dict[str, Payload]):
        """`applied` and `payloads`: the applied stack and the uploaded payloads, which a failed action's
        window puts back in place."""
        self.machine = machine
        self.rendezvous = rendezvous
        self.oracle = oracle
        self._applied = applied
        self._payloads = payloads
        self.journal = Journal("")
        self.open = False
        """Whether the master is performing an action (its bytes count towards the rendezvous' work)."""
        self.drop_flush: set[int] = set()
        """vCPUs whose translated code the next action does not drop (a fault: a missing serialisation)."""
        self._irq_fault = False
        machine.subscribe(CODE_WRITE, self._guest_store)

    def begin(self, name: str) -> None:
        """An action on payload `name` begins: a journal of its own, recording its pre-action hooks' stores."""
        self.journal = Journal(name)

    def pre_hooks_done(self) -> None:
        """The action's pre-action hooks ran: guest stores into code are no longer its own until its window."""
        self.journal.recording = False

    def run(self, perform: Generator[int, None, int]) -> Generator[int, None, int]:
        """The master performs the action (`perform`) inside the window, the states it may move noted as the
        window opens."""
        self.journal.open_window(self._applied, self._payloads.values())
        self.open = True
        try:
            return (yield from perform)
        finally:
            self.journal.recording = self.open = False

    def write(self, vcpu: Vcpu | None, function: str, address: int, new: bytes, *,
              body: tuple[int, int] | None = None) -> bytes:
        """Write `new` at `address` (journalled, flushed from every vCPU but `drop_flush`, traced, shown to the
        oracle with `body`, the code it replaces) on `vcpu` (None: from the controller, outside the window);
        give the bytes it replaced. Nothing to write (a NOP record of no bytes) is no write at all."""
        if not new:
            return b""
        machine = self.machine
        if self.oracle is not None and vcpu is not None:
            self.oracle.writing(vcpu, address, len(new), body, function)
        old = machine.memory.read(address, len(new))
        machine.memory.write(address, new)
        self.journal.wrote(function, address, old, new)
        machine.invalidate_code(address, address + len(new), keep=frozenset(self.drop_flush))
        if self.open:
            self.rendezvous.active.bytes_written += len(new)
        now = (machine.now_ps if vcpu is None else machine.time_of(vcpu)) // PS_PER_NS
        index = None if vcpu is None else vcpu.index
        machine.trace.emit(now, index, EventKind.PATCH, payload=self.journal.payload, function=function,
                           address=address, old=old.hex(), new=new.hex())
        machine.trace.emit(now, index, EventKind.FLUSH, begin=address, end=address + len(new),
                           vcpus=len(machine.vcpus))
        return old

    def undo(self, vcpu: Vcpu | None) -> int:
        """After a failed pre-action hook, a timeout, or an error in the window: put back every byte of code the
        action wrote (on `vcpu`, or from the controller) and every state it moved; the bytes put back."""
        return self.journal.undo(lambda function, address, old: self.write(vcpu, function, address, old),
                                 self._applied)

    def released(self) -> None:
        """The rendezvous released every vCPU: an action whose window never opened (timed out) puts back what
        its pre-action hooks wrote; the oracle checks each written site at their next entry; the dropped
        flushes and the patch_from_irq fault were for this action only."""
        if self.journal.before is None:
            self.undo(None)
        if self.oracle is not None:
            self.oracle.released(self.journal.sites())
        self.drop_flush.clear()
        if self._irq_fault:
            self.from_irq(False)

    def from_irq(self, on: bool) -> None:
        """Set the firmware's xsplice_from_irq (the patch_from_irq fault) for one action."""
        self.machine.memory.write(self.machine.image.address("xsplice_from_irq"), bytes([on]))
        self._irq_fault = on

    def _guest_store(self, vcpu: Vcpu, address: int, old: bytes) -> None:
        """A guest store into code (a hook patching by hand): journalled while an action's pre-action hooks run
        and inside its window, to be put back."""
        self.journal.guest_store(address, old)

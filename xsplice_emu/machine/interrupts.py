"""Interrupts and CPU exceptions on the controller engine's machine (firmware/ABI.md).

An interrupt is taken between slices, through the guest's handler table; an exception (or `int n`) as the
instruction raises it. The end of a handler (its `iretq`) serialises and ends NMI blocking. A call-function
IPI taken by a vCPU running a contained call notes where it was, to put it back if the call fails
(`calls.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..arch.base import Architecture
from ..errors import GuestFault, MachineError
from ..platform import CALL_FUNCTION_VECTOR
from ..tracing.kinds import EventKind
from .calls import CallSlots
from .coherence import Emit
from .subscribers import NMI, Subscribers
from .vcpu import Vcpu


class Interrupts:
    """How one machine's vCPUs take interrupts and exceptions."""

    def __init__(self, *, arch: Architecture, calls: CallSlots, subscribers: Subscribers, emit: Emit,
                 fault: Callable[[Vcpu, str, int], GuestFault], serialise: Callable[[Vcpu], bool]):
        """`fault(vcpu, what, pc)`: the error that stops the run; `serialise(vcpu)`: whether serialising stopped
        `vcpu` (to drop stale translations first)."""
        self.arch = arch
        self.calls = calls
        self._subscribers = subscribers
        self.emit = emit
        self._fault = fault
        self._serialise = serialise

    def deliver(self, vcpu: Vcpu) -> None:
        """Between slices: `vcpu` takes the highest-priority interrupt it may take now, if any."""
        entry = vcpu.snapshot() if vcpu.index in self.calls.contained else None
        taken = vcpu.take_interrupt()
        if taken is None:
            return
        vector, sender = taken
        if entry is not None and vector == CALL_FUNCTION_VECTOR:
            self.calls.entered(vcpu.index, entry)
        if vector == self.arch.nmi_vector:
            self.emit(vcpu, EventKind.NMI, vector=vector, sender=sender)
            self._subscribers.notify(NMI, vcpu)
        else:
            self.emit(vcpu, EventKind.INTERRUPT, vector=vector, sender=sender)

    def exception(self, vcpu: Vcpu, intno: int) -> None:
        """A CPU exception or `int n`: deliver it through the guest's handler table."""
        pc = vcpu.current_pc()
        try:
            vcpu.inject(intno, return_pc=pc)
        except MachineError as exc:
            what = f"exception {self.arch.exception_names.get(intno, intno)} with no handler ({exc})"
            raise self._fault(vcpu, what, pc) from None
        self.emit(vcpu, EventKind.EXCEPTION, vector=intno, rip=pc)

    def interrupt_return(self, vcpu: Vcpu) -> None:
        """A handler returns (the hook runs before its iretq). It serialises; it ends NMI blocking, and a
        waiting NMI is taken as soon as the iretq has run (the slice ends after its block), not on top of it."""
        if self._serialise(vcpu):
            return  # stopped before the iretq: it runs, and this hook comes, again
        vector, ended_nmi_blocking = vcpu.interrupt_return()
        self.emit(vcpu, EventKind.IRET, vector=vector)
        if ended_nmi_blocking:
            self.emit(vcpu, EventKind.NMI_UNBLOCKED)
            if vcpu.nmi_pending:
                vcpu.end_slice_after_block()

"""Call slots: how the host asks a vCPU to run a guest function (firmware/ABI.md).

The host fills a free slot of `call_slots[vcpu][CALL_SLOTS]`, sets its state
to pending last and raises CALL_FUNCTION_VECTOR on that vCPU; the guest's
handler runs it, stores the result, marks it done and reports the slot on
PORT_CALL_DONE. A vCPU whose slot the host awaits stops there, so the host
sees the result at the virtual time it was produced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MachineError
from ..platform import CALL_FUNCTION_VECTOR, CALL_SLOT_DONE, CALL_SLOT_FREE, CALL_SLOT_PENDING, CALL_SLOTS
from .spec import CALL_SLOT

if TYPE_CHECKING:
    from .core import Machine

_STATE = CALL_SLOT.offset("state")
_RESULT = CALL_SLOT.offset("result")


class CallSlots:
    """The host side of one machine's call slots."""

    def __init__(self, machine: Machine):
        self.machine = machine
        self.memory = machine.memory
        self.base = machine.image.address("call_slots")
        self.awaited: set[tuple[int, int]] = set()  # (vCPU, slot) the host waits for

    def post(self, index: int, address: int, arg0: int, arg1: int, *, seq: int,
             at_ps: int | None = None, sender: int | None = None) -> tuple[int, int]:
        """Fill a free slot of vCPU `index` with `address(arg0, arg1)` and kick it; the (vCPU, slot)."""
        slot = self._free_slot(index)
        fields = (address, arg0, arg1, 0, CALL_SLOT_FREE, 0, seq)  # fn, arg0, arg1, result, state, pad, seq
        self.memory.write(self.address(index, slot), CALL_SLOT.struct.pack(*fields))
        self.memory.write_u32(self.address(index, slot) + _STATE, CALL_SLOT_PENDING)
        self.machine.send_interrupt(index, CALL_FUNCTION_VECTOR, at_ps=at_ps, sender=sender)
        return index, slot

    def wait(self, slots: list[tuple[int, int]], what: str, timeout_ns: int) -> list[int]:
        """Run the machine until every slot is done (at most `timeout_ns`); free them; their results."""
        states = [self.address(vcpu, slot) + _STATE for vcpu, slot in slots]
        self.awaited.update(slots)
        try:
            self.machine.run_for(timeout_ns,
                                 stop_when=lambda: all(self.memory.read_u32(s) == CALL_SLOT_DONE for s in states))
        finally:
            self.awaited.difference_update(slots)
        results = []
        for (vcpu, slot), state in zip(slots, states, strict=True):
            if self.memory.read_u32(state) != CALL_SLOT_DONE:
                raise MachineError(f"vCPU {vcpu} did not finish {what} within {timeout_ns / 1e6:g} ms of virtual time")
            self.memory.write_u32(state, CALL_SLOT_FREE)
            results.append(self.memory.read_u64(self.address(vcpu, slot) + _RESULT))
        return results

    def is_awaited(self, vcpu: int, slot: int) -> bool:
        """Whether the host waits for this slot (its vCPU must stop when it reports it done)."""
        return (vcpu, slot) in self.awaited

    def address(self, vcpu: int, slot: int) -> int:
        return self.base + (vcpu * CALL_SLOTS + slot) * CALL_SLOT.size

    def _free_slot(self, vcpu: int) -> int:
        for slot in range(CALL_SLOTS):
            if (vcpu, slot) in self.awaited:
                continue
            if self.memory.read_u32(self.address(vcpu, slot) + _STATE) in (CALL_SLOT_FREE, CALL_SLOT_DONE):
                return slot
        raise MachineError(f"vCPU {vcpu}: all {CALL_SLOTS} call slots are busy")

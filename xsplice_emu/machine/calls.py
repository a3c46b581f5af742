"""Call slots: how the host asks a vCPU to run a guest function (firmware/ABI.md).

The host fills a free slot of `call_slots[vcpu][CALL_SLOTS]`, sets its state
to pending last and raises CALL_FUNCTION_VECTOR on that vCPU; the guest's
handler runs it, stores the result, marks it done and reports the slot on
PORT_CALL_DONE. A vCPU whose slot the host awaits stops there, so the host
sees the result at the virtual time it was produced.

A contained call (a payload's hook, say) cannot take the machine down: if
the vCPU faults or the call does not return in time, the vCPU is put back
where the call-function IPI found it and the call raises instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..errors import MachineError
from ..platform import CALL_FUNCTION_VECTOR, CALL_SLOT_DONE, CALL_SLOT_FREE, CALL_SLOT_PENDING, CALL_SLOTS
from .memory import GuestMemory
from .spec import CALL_SLOT
from .vcpu import Snapshot, Vcpu

_STATE = CALL_SLOT.offset("state")
_RESULT = CALL_SLOT.offset("result")


class SlotMachine(Protocol):
    """What the call slots need of a machine: its RAM and vCPUs, interrupts, running, and putting a vCPU back."""

    memory: GuestMemory
    vcpus: list[Vcpu]

    def send_interrupt(self, index: int, vector: int, *, at_ps: int | None = None,
                       sender: int | None = None) -> None: ...

    def run_for(self, ns: int, *, stop_when: Callable[[], bool] | None = None) -> None: ...

    def restore(self, vcpu: Vcpu, snapshot: Snapshot) -> None: ...


class CallSlots:
    """The host side of one machine's call slots."""

    def __init__(self, machine: SlotMachine, *, base: int):
        """`base`: where the firmware's `call_slots` array is."""
        self.machine = machine
        self.memory = machine.memory
        self.base = base
        self.awaited: set[tuple[int, int]] = set()  # (vCPU, slot) the host waits for
        self.contained: dict[int, int] = {}  # vCPU -> the slot of its contained call
        self._entries: dict[int, Snapshot] = {}  # vCPU -> where the call-function IPI found it
        self._faults: dict[int, BaseException] = {}

    def post(self, index: int, address: int, arg0: int, arg1: int, *, seq: int,
             at_ps: int | None = None, sender: int | None = None) -> tuple[int, int]:
        """Fill a free slot of vCPU `index` with `address(arg0, arg1)` and kick it; the (vCPU, slot)."""
        slot = self._free_slot(index)
        fields = (address, arg0, arg1, 0, CALL_SLOT_FREE, 0, seq)  # fn, arg0, arg1, result, state, pad, seq
        where = self.address(index, slot)
        self.memory.write(where, CALL_SLOT.struct.pack(*fields))
        self.memory.write_u32(where + _STATE, CALL_SLOT_PENDING)
        self.machine.send_interrupt(index, CALL_FUNCTION_VECTOR, at_ps=at_ps, sender=sender)
        return index, slot

    def wait(self, slots: list[tuple[int, int]], what: str, timeout_ns: int) -> list[int]:
        """Run the machine until every slot is done (at most `timeout_ns`); free them; their results."""
        states = [self.address(vcpu, slot) + _STATE for vcpu, slot in slots]
        done = 0  # states[:done] are done (a slot stays done until freed below): checked after every slice

        def all_done() -> bool:
            nonlocal done
            while done < len(states) and self.memory.read_u32(states[done]) == CALL_SLOT_DONE:
                done += 1
            return done == len(states)
        self.awaited.update(slots)
        try:
            self.machine.run_for(timeout_ns, stop_when=all_done)
        finally:
            self.awaited.difference_update(slots)
        results = []
        for (vcpu, slot), state in zip(slots, states, strict=True):
            if self.memory.read_u32(state) != CALL_SLOT_DONE:
                raise MachineError(f"vCPU {vcpu} did not finish {what} within {timeout_ns / 1e6:g} ms of virtual time")
            self.memory.write_u32(state, CALL_SLOT_FREE)
            results.append(self.memory.read_u64(self.address(vcpu, slot) + _RESULT))
        return results

    def call_contained(self, index: int, address: int, arg0: int, arg1: int, *, seq: int, what: str,
                       timeout_ns: int) -> int:
        """Run `address(arg0, arg1)` on vCPU `index` and give its result. A fault in it raises that GuestFault,
        a call still running after `timeout_ns` raises MachineError; either way the vCPU is put back where the
        call-function IPI found it, and the machine runs on."""
        vcpu = self.machine.vcpus[index]
        _, slot = self.post(index, address, arg0, arg1, seq=seq)
        self.contained[index] = slot
        vcpu.on_fault = lambda fault: self._abandon(vcpu, slot, fault)
        try:
            result = self.wait([(index, slot)], what, timeout_ns)[0]
        except MachineError:
            self._abandon(vcpu, slot, None)
            self.memory.write_u32(self.address(index, slot) + _STATE, CALL_SLOT_FREE)
            raise
        finally:
            del self.contained[index]
            vcpu.on_fault = None
            self._entries.pop(index, None)
        fault = self._faults.pop(index, None)
        if fault is not None:
            raise fault
        return result

    def entered(self, index: int, snapshot: Snapshot) -> None:
        """vCPU `index`, running a contained call, takes a call-function IPI: `snapshot` is where it was."""
        self._entries[index] = snapshot

    def _abandon(self, vcpu: Vcpu, slot: int, fault: BaseException | None) -> bool:
        """Put `vcpu` back where its call-function IPI found it; the slot ends (its fault kept for the caller)."""
        entry = self._entries.pop(vcpu.index, None)
        if entry is None:
            return False
        self.machine.restore(vcpu, entry)
        self.memory.write_u32(self.address(vcpu.index, slot) + _STATE, CALL_SLOT_DONE)
        if fault is not None:
            self._faults[vcpu.index] = fault
        if any(self.memory.read_u32(self.address(vcpu.index, other) + _STATE) == CALL_SLOT_PENDING
               for other in range(CALL_SLOTS)):
            self.machine.send_interrupt(vcpu.index, CALL_FUNCTION_VECTOR)  # the IPI that would run them is undone
        return True

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

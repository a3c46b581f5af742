"""Page faults and general-protection faults on the xen engine go to Xen's own handlers through its IDT.

Unicorn reports the exception (its vector; CR2 for a #PF) but not the error code the CPU would push: the
error code is worked out here as the CPU forms it (present from a walk of the vCPU's page tables, write from the
faulting instruction, fetch when CR2 is inside it; #GP from a non-canonical address: 0). Xen then decides:
an exception-table fixup returns to Xen's recovery code, else `do_page_fault` or `do_general_protection` prints
Xen's own report and panics. The fault each vCPU is handling is kept, so the run can name where it happened (its
symbol and offset) beside the reason Xen's panic gave.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...arch.exception_state import forget_reported_exception
from ...arch.x86_64 import PLATFORM_REGISTERS as REGS
from ...machine import Vcpu
from ...tracing.kinds import EventKind

if TYPE_CHECKING:
    from .machine import XenMachine

GENERAL_PROTECTION, PAGE_FAULT = 13, 14
DELIVERED = frozenset({GENERAL_PROTECTION, PAGE_FAULT})
"""The exceptions Xen's IDT takes on this engine (#UD has its own path: `XenMachine._invalid_opcode`)."""
PFEC_PRESENT, PFEC_WRITE, PFEC_FETCH = 0x1, 0x2, 0x10
PTE_PRESENT, PTE_LARGE = 0x1, 0x80
PTE_ADDRESS = ((1 << 52) - 1) & ~0xFFF


@dataclass(frozen=True)
class Fault:
    """A fault delivered to Xen: its vector, where, and how the run names it."""

    vector: int
    pc: int
    what: str
    log_seen: int  # Xen's console lines before it: its report follows


class XenFaults:
    """Delivery of #PF and #GP to Xen's handlers on one xen-engine machine, and the fault each vCPU handles."""

    def __init__(self, machine: XenMachine):
        self.machine = machine
        self.handling: dict[int, Fault] = {}
        """The fault each vCPU's Xen handler is running for (until its iretq)."""

    def take(self, vcpu: Vcpu, vector: int) -> str | None:
        """Hand the exception `vector` Unicorn reports at the current instruction to Xen's handler (None), or
        say what it was when it must stop the run instead: not one Xen takes here, or raised inside Xen's handler
        of one."""
        address = vcpu.uc.reg_read(REGS.cr2) if vector == PAGE_FAULT else 0
        what = self.machine.arch.exception_names.get(vector, f"vector {vector}")
        if vector == PAGE_FAULT:
            what += f" (cr2 {address:#x})"
        return None if self._deliver(vcpu, vector, address, what) else what

    def _deliver(self, vcpu: Vcpu, vector: int, address: int, what: str) -> bool:
        if vector not in DELIVERED or vcpu.index in self.handling:
            return False
        pc = vcpu.current_pc()
        fault = Fault(vector, pc, what, len(self.machine.log))
        error_code = self._page_fault_code(vcpu, pc, address) if vector == PAGE_FAULT else 0
        vcpu.inject(vector, return_pc=pc, error_code=error_code)
        forget_reported_exception(vcpu.uc)
        self.handling[vcpu.index] = fault
        self.machine.emit(vcpu, EventKind.EXCEPTION, vector=vector, rip=pc)
        return True

    def returned(self, vcpu: Vcpu, vector: int | None) -> None:
        """Xen's handler of `vector` returned (a fixup, or a fault it found spurious)."""
        fault = self.handling.get(vcpu.index)
        if fault is not None and fault.vector == vector:
            del self.handling[vcpu.index]

    def _page_fault_code(self, vcpu: Vcpu, pc: int, address: int) -> int:
        """The #PF error code the CPU would push: present, write, instruction fetch (supervisor mode, no reserved
        bit: Xen's own code on Xen's page tables)."""
        code = PFEC_PRESENT if self._mapped(vcpu, address) else 0
        access = vcpu.arch.instruction_access(self.machine.memory.read(pc, 16), pc)
        if access is None or pc <= address < pc + access[0]:  # the fetch is what faulted
            return code | PFEC_FETCH
        return code | (PFEC_WRITE if access[1] else 0)

    def _mapped(self, vcpu: Vcpu, address: int) -> bool:
        """Whether the vCPU's page tables (CR3) map `address` (4 levels; 1 GiB and 2 MiB pages end the walk)."""
        memory = self.machine.memory
        table = vcpu.uc.reg_read(REGS.cr3) & PTE_ADDRESS
        for level, shift in enumerate((39, 30, 21, 12)):
            entry = memory.read_u64(table + 8 * ((address >> shift) & 511))
            if not entry & PTE_PRESENT:
                return False
            if level in (1, 2) and entry & PTE_LARGE:
                return True
            table = entry & PTE_ADDRESS
        return True

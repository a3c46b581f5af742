"""Page faults and general-protection faults on the xen engine go to Xen's own handlers through its IDT.

Unicorn reports the exception (its vector; CR2 for a #PF) but not the error code the CPU would push: the
error code is worked out here as the CPU forms it (present from a walk of the vCPU's page tables, write from the
faulting instruction, fetch when CR2 is inside it or there is no RAM to fetch from; #GP from a non-canonical
address: 0). Xen then decides: an exception-table fixup returns to Xen's recovery code, else `do_page_fault` or
`do_general_protection` prints Xen's own report and panics. The faults each vCPU is handling are kept, so the run
can name where the first happened (its symbol and offset) beside the reason Xen's panic gave. A fault inside a
handler goes to Xen too when the instruction has a fixup in Xen's exception table (its report reads the faulting
code through one: `show_code`), up to NESTED deep; any other stops the run.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...arch.exception_state import forget_reported_exception
from ...arch.x86_64 import PLATFORM_REGISTERS as REGS
from ...errors import MachineError
from ...image import Image
from ...machine import Vcpu
from ...provision.derived import derived
from ...tracing.kinds import EventKind

if TYPE_CHECKING:
    from .machine import XenMachine

GENERAL_PROTECTION, PAGE_FAULT = 13, 14
DELIVERED = frozenset({GENERAL_PROTECTION, PAGE_FAULT})
"""The exceptions Xen's IDT takes on this engine (#UD has its own path: `XenMachine._invalid_opcode`)."""
PFEC_PRESENT, PFEC_WRITE, PFEC_FETCH = 0x1, 0x2, 0x10
PTE_PRESENT, PTE_LARGE = 0x1, 0x80
PTE_ADDRESS = ((1 << 52) - 1) & ~0xFFF
NESTED = 4
"""Faults a vCPU's Xen handlers may be running for at once (each later one at an instruction with a fixup)."""
EXTABLE_ENTRY = struct.Struct("<ii")
"""Xen's x86 `struct exception_table_entry`: the faulting instruction and its fixup, each relative to the field."""


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
        self.handling: dict[int, list[Fault]] = {}
        """The faults each vCPU's Xen handlers are running for, the first first (each until its iretq)."""
        self._fixups = derived(machine.hypervisor, _fixed_up)

    def take(self, vcpu: Vcpu, vector: int) -> str | None:
        """Hand the exception `vector` Unicorn reports at the current instruction to Xen's handler (None), or
        say what it was when it must stop the run instead: not one Xen takes here, or raised inside Xen's handler
        of one."""
        address = vcpu.uc.reg_read(REGS.cr2) if vector == PAGE_FAULT else 0
        what = self.machine.arch.exception_names.get(vector, f"vector {vector}")
        if vector == PAGE_FAULT:
            what += f" (cr2 {address:#x})"
        return None if self._deliver(vcpu, vector, address, what) else what

    def first_handled(self, vcpu: Vcpu) -> Fault | None:
        """The outermost fault `vcpu`'s Xen handlers are running for, if any."""
        faults = self.handling.get(vcpu.index)
        return faults[0] if faults else None

    def _deliver(self, vcpu: Vcpu, vector: int, address: int, what: str) -> bool:
        faults = self.handling.setdefault(vcpu.index, [])
        pc = vcpu.current_pc()
        if vector not in DELIVERED or faults and (len(faults) >= NESTED or pc not in self._fixups):
            return False
        fault = Fault(vector, pc, what, len(self.machine.log))
        error_code = self._page_fault_code(vcpu, pc, address) if vector == PAGE_FAULT else 0
        vcpu.inject(vector, return_pc=pc, error_code=error_code)
        forget_reported_exception(vcpu.uc)
        faults.append(fault)
        self.machine.emit(vcpu, EventKind.EXCEPTION, vector=vector, rip=pc)
        return True

    def returned(self, vcpu: Vcpu, vector: int | None) -> None:
        """Xen's handler of `vector` returned (a fixup, or a fault it found spurious)."""
        faults = self.handling.get(vcpu.index)
        if faults and faults[-1].vector == vector:
            faults.pop()

    def _page_fault_code(self, vcpu: Vcpu, pc: int, address: int) -> int:
        """The #PF error code the CPU would push: present, write, instruction fetch (supervisor mode, no reserved
        bit: Xen's own code on Xen's page tables)."""
        code = PFEC_PRESENT if self._mapped(vcpu, address) else 0
        try:
            instruction = self.machine.memory.read(pc, 16)
        except MachineError:  # no RAM at the program counter (a jump into nowhere): the fetch is what faulted
            return code | PFEC_FETCH
        access = vcpu.arch.instruction_access(instruction, pc)
        if access is None or pc <= address < pc + access[0]:  # the fetch is what faulted
            return code | PFEC_FETCH
        return code | (PFEC_WRITE if access[1] else 0)

    def _mapped(self, vcpu: Vcpu, address: int) -> bool:
        """Whether the vCPU's page tables (CR3) map `address` (4 levels; 1 GiB and 2 MiB pages end the walk)."""
        memory = self.machine.memory
        table = vcpu.uc.reg_read(REGS.cr3) & PTE_ADDRESS
        for level, shift in enumerate((39, 30, 21, 12)):
            try:
                entry = memory.read_u64(table + 8 * ((address >> shift) & 511))
            except MachineError:  # a table outside RAM maps nothing
                return False
            if not entry & PTE_PRESENT:
                return False
            if level in (1, 2) and entry & PTE_LARGE:
                return True
            table = entry & PTE_ADDRESS
        return True


def _fixed_up(image: Image) -> frozenset[int]:
    """The instructions Xen's exception table gives a fixup (`__start___ex_table` .. `__stop___ex_table`; none in an
    image without one)."""
    start, stop = image.lookup("__start___ex_table"), image.lookup("__stop___ex_table")
    if start is None or stop is None:
        return frozenset()
    begin = start.address
    table = image.read(begin, stop.address - begin) or b""
    return frozenset(begin + EXTABLE_ENTRY.size * k + instruction
                     for k, (instruction, _) in enumerate(EXTABLE_ENTRY.iter_unpack(table)))

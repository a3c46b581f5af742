"""Interrupts through Xen's own IDT on the xen engine.

Xen's boot would have filled `idt_table` (`init_idt_traps`, run for real; the gates `trap_init` adds for its
generated stubs and the real page-fault handler), pointed each CPU's TSS at its IST stacks (`load_system_tables`),
cleared its vector-to-IRQ map (`init_irq_data`) and registered the direct IPI handlers (`set_direct_apic_vector`,
run for real). Delivery is the machine's x86 interrupt model (`arch.enter_handler`: 64-bit frame, IST, NMI
blocking until `iretq`), taken at slice boundaries; Xen's handlers then run: `do_nmi` with Xen's `nmi_callback`,
`do_IRQ` with `event_check_interrupt`, `call_function_interrupt` and `invalidate_interrupt`.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...arch.x86_64 import load_system_tables
from ...machine import Vcpu
from ...machine.subscribers import NMI
from ...machine.vcpu import StopReason
from ...tracing.kinds import EventKind
from .layout import STACK_SIZE
from .site_hooks import SiteHooks, running

if TYPE_CHECKING:
    from .machine import XenMachine

IDT_ENTRIES = 256
GATE_SIZE = 16
HYPERVISOR_CS = 0xE008
"""Xen's `__HYPERVISOR_CS`: the selector its gates name."""
INTERRUPT_GATE_ATTRIBUTES = 0x8E
"""Present, DPL 0, 64-bit interrupt gate (`set_intr_gate`)."""
DIRECT_IPIS = ((0xFC, "event_check_interrupt"), (0xFD, "invalidate_interrupt"),
               (0xFB, "call_function_interrupt"), (0xFF, "spurious_interrupt"), (0xFE, "error_interrupt"))
"""EVENT_CHECK_VECTOR, INVALIDATE_TLB_VECTOR, CALL_FUNCTION_VECTOR (`smp_intr_init`), SPURIOUS_APIC_VECTOR (which
Xen overloads for its state-dump IPI) and ERROR_APIC_VECTOR (`apic_intr_init`) and their handlers."""
NO_IRQ = 0x80000000
"""INT_MIN: a vector no IRQ is bound to (`init_irq_data`)."""
TSS_IST = 0x24
"""Offset of `ist[0]` in the 64-bit TSS."""
IST_STACKS = 4
"""#MC, NMI, #DB, #DF: IST n's stack tops the page `1 + n` of the CPU's stack (`load_system_tables`)."""
PAGE = 4096
HYPERVISOR_DS = 0xE010
FIRST_RESERVED_GDT_BYTE = 0xE000
"""Xen's `boot_gdt` holds the descriptors from this selector on (its GDT's reserved pages)."""


def gate(handler: int) -> bytes:
    """An interrupt gate to `handler`, as `_set_gate_lower` writes it (IST 0)."""
    return struct.pack("<HHBBHII", handler & 0xFFFF, HYPERVISOR_CS, 0, INTERRUPT_GATE_ATTRIBUTES,
                       (handler >> 16) & 0xFFFF, handler >> 32, 0)


class Interrupts:
    """Xen's IDT and TSSes on one xen-engine machine, and the delivery of latched interrupts."""

    def __init__(self, machine: XenMachine):
        self.machine = machine
        platform = machine.platform
        self.idt = platform.sym("idt_table")
        self.gdt = platform.sym("boot_gdt") - FIRST_RESERVED_GDT_BYTE
        self.mask_callback = platform.sym("arch/x86/livepatch.c#mask_nmi_callback")
        self.mask, self.unmask = platform.sym("arch_livepatch_mask"), platform.sym("arch_livepatch_unmask")
        self.nmis_lost = 0
        """NMIs Xen's `mask_nmi_callback` swallowed since boot."""
        self._lost_when_masked = 0

    def install(self, vcpu: Vcpu) -> None:
        """Point `vcpu`'s IDTR at Xen's `idt_table`, its TR at its CPU's TSS, its GDTR where Xen's `boot_gdt`
        gives its selectors (what `iretq` reloads them from), and run it in Xen's code and data segments."""
        tss = self.machine.platform.per_cpu("tss_page", vcpu.index)
        load_system_tables(vcpu.uc, idt=self.idt, gdt=self.gdt, tss=tss, code_selector=HYPERVISOR_CS,
                           data_selector=HYPERVISOR_DS)

    def hook_sites(self, site_hooks: SiteHooks) -> None:
        """Have Xen's `iretq`s and the entries of its NMI mask functions hooked once a vCPU is about to run
        one."""
        site_hooks.add(self.machine.devices.sites.iretq, running(self.interrupt_return))
        for address, observer in ((self.mask_callback, self.swallowed), (self.mask, self.masked),
                                  (self.unmask, self.unmasked)):
            site_hooks.add((address,), running(observer))

    def boot(self) -> None:
        """What Xen's trap and IRQ init leave, the parts that matter run for real on vCPU 0."""
        machine, platform, memory = self.machine, self.machine.platform, self.machine.memory
        machine.call(0, "init_idt_traps")
        memory.write(self.idt + 14 * GATE_SIZE, gate(platform.sym("page_fault")))
        stubs = platform.sym("autogen_entrypoints")
        for vector in range(IDT_ENTRIES):
            stub = memory.read_u64(stubs + 8 * vector)
            if stub:
                memory.write(self.idt + vector * GATE_SIZE, gate(stub))
        for cpu in range(len(machine.vcpus)):
            memory.write(platform.per_cpu("vector_irq", cpu), struct.pack("<I", NO_IRQ) * IDT_ENTRIES)
            tss = platform.per_cpu("tss_page", cpu)
            bottom = platform.stack_tops[cpu] - STACK_SIZE
            for ist in range(1, IST_STACKS + 1):
                memory.write_u64(tss + TSS_IST + 8 * (ist - 1), bottom + (1 + ist) * PAGE)
        for vector, handler in DIRECT_IPIS:
            machine.call(0, "set_direct_apic_vector", vector, platform.sym(handler))

    # -- delivery ------------------------------------------------------------------------------------------------
    def deliver(self, vcpu: Vcpu) -> bool:
        """Take the highest-priority latched interrupt `vcpu` may take now, through Xen's IDT; whether one was."""
        taken = vcpu.take_interrupt()
        if taken is None:
            return False
        vector, sender = taken
        if vector == vcpu.arch.nmi_vector:
            self.machine.emit(vcpu, EventKind.NMI, vector=vector, sender=sender)
            self.machine.subscribers.notify(NMI, vcpu)
        else:
            self.machine.emit(vcpu, EventKind.INTERRUPT, vector=vector, sender=sender)
        return True

    def interrupt_return(self, vcpu: Vcpu) -> None:
        """`iretq` (the hook runs before it): the innermost handler returns; NMI blocking ends."""
        if self.machine.serialise(vcpu):
            vcpu.stop(StopReason.HOOK)  # before the iretq: it runs, and this hook comes, again
            return
        vector, ended_nmi_blocking = vcpu.interrupt_return()
        self.machine.faults.returned(vcpu, vector)
        self.machine.emit(vcpu, EventKind.IRET, vector=vector)
        if ended_nmi_blocking:
            self.machine.emit(vcpu, EventKind.NMI_UNBLOCKED)
            if vcpu.nmi_pending:
                vcpu.end_slice_after_block()

    def masked(self, vcpu: Vcpu) -> None:
        """Xen's rendezvous master swaps its NMI callback for `mask_nmi_callback`."""
        self._lost_when_masked = self.nmis_lost
        self.machine.emit(vcpu, EventKind.NMI_MASKED)

    def unmasked(self, vcpu: Vcpu) -> None:
        """Xen's master puts its NMI callback back (on success and on abort)."""
        self.machine.emit(vcpu, EventKind.NMI_UNMASKED, lost=self.nmis_lost - self._lost_when_masked)

    def swallowed(self, vcpu: Vcpu) -> None:
        """Xen's `mask_nmi_callback` runs: the NMI being handled is lost to the patching window."""
        self.nmis_lost += 1
        self.machine.emit(vcpu, EventKind.NMI_LOST)


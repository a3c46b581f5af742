"""The xen engine's devices, answered at the instructions Xen runs them with (`sites.py`): the x2APIC ICR
(IPIs, with shorthands), `hlt` sleeping until an interrupt, `rdtsc` from virtual time, serialising instructions;
and the host's stand-ins for what Xen's boot never set up (its allocators, the scheduler's softirq).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from unicorn import UC_HOOK_CODE, UcError

from ...arch.x86_64 import PLATFORM_REGISTERS as REGS
from ...machine import Vcpu, native
from ...machine.hooks import guarded
from ...machine.vcpu import StopReason
from ...provision.derived import derived
from .layout import HOST_PAGE, LIVEPATCH_VA_RW, LIVEPATCH_VA_RX, X2APIC_ICR, X2APIC_ID, X2APIC_ISR
from .platform import PAGE, TASKLET_ENQUEUED, TASKLET_SCHEDULED
from .site_hooks import NativeHook, SiteHooks, running
from .sites import InstructionSites

if TYPE_CHECKING:
    from .machine import XenMachine

ICR_DELIVERY_NMI = 4
SHORTHANDS = ("destination", "self", "all", "all but self")
"""The ICR's destination shorthand (bits 18-19)."""
SURFACE_BUDGET = 64
"""Instructions the run that surfaces a lost fault may take (it stops at the next instruction unless that jumps)."""
HostFunction = Callable[[Vcpu], int | None]
"""A stand-in: given the calling vCPU (arguments in its registers), rax to return (None: leave it)."""


class Devices:
    """The devices of one xen-engine machine and the host's stand-ins, hooked on every vCPU."""

    def __init__(self, machine: XenMachine):
        self.machine = machine
        platform = machine.platform
        self.sites = derived(machine.hypervisor, InstructionSites.of)
        heap = platform.heap
        self.stand_ins: dict[str, HostFunction] = {
            "_xmalloc": lambda vcpu: heap.xmalloc(vcpu.argument(0), vcpu.argument(1)),
            "_xzalloc": lambda vcpu: heap.xmalloc(vcpu.argument(0), vcpu.argument(1)),
            "vmalloc": lambda vcpu: heap.vmalloc(vcpu.argument(0)),
            "vzalloc": lambda vcpu: heap.vmalloc(vcpu.argument(0)),
            "vmalloc_xen": lambda vcpu: platform.vmalloc_xen(vcpu.argument(0)),
            "xfree": lambda vcpu: None,
            "vfree": lambda vcpu: None,
            "modify_xen_mappings": lambda vcpu: 0,
        }
        self.slot_handlers: dict[int, HostFunction] = {platform.sentinel: machine.returned}
        self.schedule_softirq = platform.slot("softirq SCHEDULE (the tasklet check of an idle CPU)")
        self.slot_handlers[self.schedule_softirq] = self._schedule

    def hook_sites(self, site_hooks: SiteHooks) -> None:
        """Have the instructions the devices answer hooked once a vCPU is about to run them."""
        sites = self.sites
        site_hooks.add(sites.rdtsc, _native_rdtsc)
        for addresses, body in ((sites.rdtscp, self._rdtscp), (sites.rdmsr, self._rdmsr),
                                (sites.wrmsr, self._wrmsr), (sites.hlt, self._hlt),
                                (sites.serialising, self._serialise)):
            site_hooks.add(addresses, running(body))
        image = self.machine.hypervisor
        for name, function in self.stand_ins.items():
            site_hooks.add((image.address(name),), running(functools.partial(self._stand_in, function=function)))
        site_hooks.add((image.address("arch_livepatch_secure"),), running(self._secure))

    def install(self, vcpu: Vcpu) -> None:
        """Hook the host's slots on `vcpu`."""
        vcpu.uc.hook_add(UC_HOOK_CODE, guarded(vcpu, lambda address, size: self._slot(vcpu, address)), None,
                    HOST_PAGE, HOST_PAGE + PAGE - 1)

    # -- instructions -------------------------------------------------------------------------------------------
    def tsc(self, vcpu: Vcpu) -> int:
        """The TSC: virtual time in ticks of the machine's clock (Xen's per-CPU time scale turns it into ns)."""
        return vcpu.current_time_ps() // vcpu.ps_per_instruction

    def _rdtscp(self, vcpu: Vcpu) -> None:
        """`rdtscp`: the TSC (as `rdtsc` gets it, in C: `native.on_rdtsc`) and TSC_AUX, which Xen sets to the
        CPU number."""
        tsc = self.tsc(vcpu)
        vcpu.write(REGS.low, tsc & 0xFFFFFFFF)
        vcpu.write(REGS.high, tsc >> 32)
        vcpu.write(REGS.counter, vcpu.index)
        _skip(vcpu, 3)

    def _rdmsr(self, vcpu: Vcpu) -> None:
        """The x2APIC's ID and in-service registers (the maskable vectors whose handlers run: Xen's
        `apic_isr_read`); any other MSR is left to Unicorn."""
        msr = vcpu.read(REGS.counter) & 0xFFFFFFFF
        if msr == X2APIC_ID:
            value = vcpu.index
        elif X2APIC_ISR <= msr < X2APIC_ISR + 8:
            first = (msr - X2APIC_ISR) * 32
            value = sum(1 << (vector - first) for vector in set(vcpu.handlers) if first <= vector < first + 32)
        else:
            return
        vcpu.write(REGS.low, value)
        vcpu.write(REGS.high, 0)
        _skip(vcpu, 2)

    def _wrmsr(self, vcpu: Vcpu) -> None:
        msr = vcpu.read(REGS.counter) & 0xFFFFFFFF
        value = (vcpu.read(REGS.high) & 0xFFFFFFFF) << 32 | vcpu.read(REGS.low) & 0xFFFFFFFF
        _skip(vcpu, 2)
        if msr != X2APIC_ICR:
            return  # no other MSR is modelled: the write has no effect
        vector = vcpu.arch.nmi_vector if (value >> 8) & 7 == ICR_DELIVERY_NMI else value & 0xFF
        shorthand, destination, count = (value >> 18) & 3, value >> 32, len(self.machine.vcpus)
        if shorthand == 0:  # one destination (Xen's x2APIC physical mode sends a mask this way, CPU by CPU)
            targets: Iterable[int] = (destination,) if destination < count else ()
        elif shorthand == 1:
            targets = (vcpu.index,)
        else:
            targets = (i for i in range(count) if shorthand == 2 or i != vcpu.index)
        for target in targets:
            self.machine.send_ipi(vcpu, target, vector)

    def _hlt(self, vcpu: Vcpu) -> None:
        """`hlt`: with an interrupt latched or due by now that it may take, the slice ends past the `hlt` (the
        machine delivers it there); else the vCPU sleeps."""
        _skip(vcpu, 1)
        due = bool(vcpu.arrivals) and vcpu.arrivals[0][0] <= vcpu.current_time_ps()
        takes_interrupts = vcpu.read_interrupt_flag()
        if vcpu.nmi_pending and not vcpu.nmi_blocked or takes_interrupts and (due or vcpu.pending_vectors):
            vcpu.stop(StopReason.HOOK)
        else:
            vcpu.stop(StopReason.HALT)

    def _serialise(self, vcpu: Vcpu) -> None:
        if self.machine.serialise(vcpu):
            vcpu.stop(StopReason.HOOK)  # before the instruction: it runs on fresh translations

    # -- the host's stand-ins -------------------------------------------------------------------------------------
    def _stand_in(self, vcpu: Vcpu, *, function: HostFunction) -> None:
        """Answer a call of a Xen function at its entry and return to its caller."""
        result = function(vcpu)
        if result is not None:
            vcpu.write(REGS.low, result & (2**64 - 1))
        sp = vcpu.read(vcpu.arch.registers.sp)
        vcpu.write(vcpu.arch.registers.pc, self.machine.memory.read_u64(sp))
        vcpu.write(vcpu.arch.registers.sp, sp + 8)

    def _secure(self, vcpu: Vcpu) -> None:
        """At the entry of `arch_livepatch_secure(va, pages, type)`: map a payload's pages as Xen's
        `modify_xen_mappings` then would (a stand-in here): its text as code, its data and read-only data as
        no-execute data, only the data writable; and every vCPU's TLB flushed, as Xen's own flush after."""
        va, pages, kind = (vcpu.read(register) for register in REGS.arguments[:3])
        pages, kind = pages & 0xFFFFFFFF, kind & 0xFFFFFFFF
        self.machine.platform.map_payload(va, pages * PAGE, code=kind == LIVEPATCH_VA_RX,
                                          writable=kind == LIVEPATCH_VA_RW)
        for each in self.machine.instances.all():
            each.flush_tlb()

    def _slot(self, vcpu: Vcpu, address: int) -> None:
        handler = self.slot_handlers.get(address)
        if handler is not None:
            handler(vcpu)

    def _schedule(self, vcpu: Vcpu) -> None:
        """SCHEDULE_SOFTIRQ on an idle CPU: what `sched_tasklet_check_cpu` does with its tasklet work flags."""
        memory = self.machine.memory
        flags = self.machine.platform.per_cpu("tasklet_work_to_do", vcpu.index)
        work = memory.read_u64(flags)
        if work == TASKLET_ENQUEUED:
            memory.write_u64(flags, TASKLET_ENQUEUED | TASKLET_SCHEDULED)
        elif work == TASKLET_SCHEDULED:
            memory.write_u64(flags, 0)

    # -- Unicorn's lost page faults ------------------------------------------------------------------------------
    def surface_lost_fault(self, vcpu: Vcpu) -> None:
        """A slice that made no progress: Unicorn 2.1.4 may have lost a fault raised in the first block after a
        slice that `emu_stop` ended (docs/unicorn-lost-page-fault.md). Running on to the next instruction with
        an `until` bound raises it as it should (the exception hook then stops the machine); a spinning loop
        just runs a little further (at most SURFACE_BUDGET instructions: `count=` must not be used, Unicorn
        2.1.4 never returns from `count=1` started inside a `pause` loop)."""
        pc = vcpu.pc
        length = next(vcpu.arch.instructions(self.machine.memory.read(pc, 16), pc, limit=1))[1]
        budget = vcpu.budget
        budget.budget, budget.executed = SURFACE_BUDGET, 0
        try:
            vcpu.emulate(pc, pc + length)
        except UcError as exc:
            raise self.machine.fault(vcpu, vcpu.guard_fault or str(exc), pc) from None
        finally:
            executed, budget.executed = max(budget.executed, 1), 0
            vcpu.pc = vcpu.current_pc()
        vcpu.clock_ps += executed * vcpu.ps_per_instruction
        vcpu.instructions += executed
        error = vcpu.take_hook_error()
        if error is not None:
            raise error


def _native_rdtsc(vcpu: Vcpu) -> NativeHook:
    """`native.on_rdtsc` on `vcpu`: the TSC from its VcpuBudget, with no Python on the way (Xen's time loops
    read it every turn)."""
    budget = vcpu.budget
    budget.rax, budget.rdx, budget.rip = REGS.low, REGS.high, vcpu.arch.registers.pc
    return ctypes.c_void_p(native.on_rdtsc_address()), ctypes.c_void_p(ctypes.addressof(budget))


def _skip(vcpu: Vcpu, length: int) -> None:
    vcpu.write(vcpu.arch.registers.pc, vcpu.current_pc() + length)

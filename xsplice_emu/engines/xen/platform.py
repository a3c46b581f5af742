"""What Xen's boot would have left for its livepatch code: page tables, per-CPU areas, stacks with `cpu_info`,
idle and dom0 vCPU and domain objects, the online maps, and the init calls the engine needs run for real.

The page tables are Xen's own `idle_pg_table` -> `l3_xenmap` -> `l2_xenmap`; the image's first 2 MiB is mapped
with 4 KiB pages from an L1 table (text and rodata read-only, CR0.WP set) so that Xen's own
`modify_xen_mappings_lite` relaxes and tightens them while patching, reaching the L1 through the directmap.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...arch.x86_64 import PLATFORM_REGISTERS as REGS
from ...errors import MachineError
from ...image import Image
from ...machine import GuestMemory, Vcpu, VcpuState
from .heap import HostHeap
from .layout import (
    CR4,
    DIRECTMAP,
    HOST_PAGE,
    IDLE_DOMAIN_ID,
    PAGE_TABLES,
    PAGE_TABLES_END,
    PAYLOAD_DATA,
    RAM_SIZE,
    STACK_SIZE,
    SYS_STATE_ACTIVE,
    XEN_VIRT_START,
    StructOffsets,
)

if TYPE_CHECKING:
    from .machine import XenMachine

PRESENT, WRITABLE, ACCESSED, DIRTY, LARGE, GLOBAL, NO_EXECUTE = 0x1, 0x2, 0x20, 0x40, 0x80, 0x100, 1 << 63
TABLE = PRESENT | WRITABLE | ACCESSED
ADDRESS_BITS = 0x000FFFFFFFFFF000
"""Of a page-table entry: the physical address it points to."""
LARGE_PAGE = 2 << 20
PAGE = 4096
NR_CPUS_BYTES = 64
"""Room for a cpumask Xen allocates (cpumask_var_t of NR_CPUS bits, 256 in Debian's build)."""
CPU_UP_PREPARE = 0x0001
CPU_NOTIFIERS = ("common/timer.c", "common/tasklet.c", "common/rcupdate.c", "common/livepatch.c")
"""The units whose CPU notifier (CPU_UP_PREPARE) the engine runs for each CPU: per-CPU timers, tasklet lists,
RCU data and the livepatch tasklet."""
SOFTIRQS = ("TIMER", "RCU", "SCHED_SLAVE", "SCHEDULE", "NEW_TLBFLUSH_CLOCK_PERIOD", "TASKLET", "NMI",
            "TIME_CALIBRATE", "VCPU_KICK", "MACHINE_CHECK", "HVM_DPCI")
"""Xen 4.17 x86's softirqs in number order (xen/softirq.h, asm/softirq.h)."""
TASKLET_ENQUEUED, TASKLET_SCHEDULED = 1, 2
DOMAIN_SIZE = VCPU_SIZE = 0x2000
SCHED_UNIT_SIZE = 0x100
VCPU_INFO_SIZE = 64
"""struct vcpu_info: no event pending, no upcall masked."""
"""The SysV ABI's first integer arguments."""
SLOT = 16
RFLAGS_RESERVED, RFLAGS_IF = 0x2, 0x200
"""Bytes of each host stand-in's slot in the host page."""


XENLOG_THRESHOLDS = ("xenlog_lower_thresh", "xenlog_upper_thresh", "xenlog_guest_lower_thresh",
                     "xenlog_guest_upper_thresh")
"""drivers/char/console.c's printk thresholds (statics): what `loglvl=` and `guest_loglvl=` set."""
XENLOG_ALL = 4
"""`all`: every XENLOG_* level printed, none rate-limited (XENLOG_INFO's livepatch lines are under the default)."""


def _index(address: int, level: int) -> int:
    return (address >> (12 + 9 * level)) & 511


class Platform:
    """The platform objects of one xen-engine machine, and how a vCPU is started in them."""

    def __init__(self, memory: GuestMemory, image: Image, offsets: StructOffsets, *, vcpus: int, clock_hz: int):
        self.memory = memory
        self.image = image
        self.offsets = offsets
        self.vcpus = vcpus
        self.clock_hz = clock_hz
        window = memory.windows[0]
        self.xen_window = window
        payload_begin = -(-image.end // LARGE_PAGE) * LARGE_PAGE
        self.heap = HostHeap(memory, heap=(window.physical + window.size, RAM_SIZE),
                             payload_area=(payload_begin, window.end))
        self._tables = PAGE_TABLES
        self.page_table_root = self._page_tables()
        self.code_physical = [(memory.physical(image.address("_stext")), memory.physical(image.address("_etext"))),
                              (memory.physical(payload_begin), window.physical + window.size)]
        """Physical ranges of code (Xen's text, the payload area): stores there are code writes."""
        self.payload_area = (payload_begin, window.end)
        """Virtual range of the payload area (`map_payload`)."""
        memory.write(HOST_PAGE, b"\xc3" * PAGE)
        self.slots: dict[int, str] = {}
        self.sentinel = self.slot("the host's return sentinel")
        self.stack_tops: list[int] = []
        self.per_cpu_offsets: list[int] = []
        self.idle_vcpus: list[int] = []
        self.dom0_vcpus: list[int] = []
        self._objects()

    # -- symbols --------------------------------------------------------------------------------------------
    def sym(self, name: str) -> int:
        return self.image.address(name)

    def per_cpu(self, name: str, cpu: int) -> int:
        """Address of CPU `cpu`'s copy of Xen's per-CPU variable `name`."""
        return (self.per_cpu_offsets[cpu] + self.sym(f"per_cpu__{name}")) & (2**64 - 1)

    def slot(self, name: str) -> int:
        """A `ret` in the host page for a stand-in Xen calls through a pointer (the host hooks it)."""
        address = HOST_PAGE + SLOT * len(self.slots)
        if address >= HOST_PAGE + PAGE:
            raise MachineError("the host page has no slot left")
        self.slots[address] = name
        return address

    # -- page tables --------------------------------------------------------------------------------------------
    def _new_table(self) -> int:
        table = self._tables
        if table >= PAGE_TABLES_END:
            raise MachineError("no room left for page tables")
        self._tables += PAGE
        self.memory.write(table, bytes(PAGE))
        return table

    def _entry(self, table: int, index: int, value: int) -> None:
        self.memory.write_u64(table + 8 * index, value)

    def _page_tables(self) -> int:
        memory, window = self.memory, self.xen_window
        l4, l3, l2 = (memory.physical(self.sym(name)) for name in ("idle_pg_table", "l3_xenmap", "l2_xenmap"))
        for table in (l4, l3, l2):
            memory.write(table, bytes(PAGE))
        self._entry(l4, _index(XEN_VIRT_START, 3), l3 | TABLE)
        self._entry(l3, _index(XEN_VIRT_START, 2), l2 | TABLE)
        l1 = self._new_table()
        self._entry(l2, _index(window.virtual, 1), l1 | TABLE)
        read_only_end = -(-self.sym("_erodata") // PAGE) * PAGE
        init = (self.sym("_sinittext"), self.sym("_einittext"))
        code = [(self.sym("_stext"), self.sym("_etext")), init]

        def executable(virtual: int, size: int) -> bool:
            return any(virtual < end and begin < virtual + size for begin, end in code)
        for k in range(512):
            virtual = window.virtual + k * PAGE
            read_only = virtual < read_only_end or init[0] <= virtual < init[1]
            self._entry(l1, k, (window.physical + k * PAGE) | PRESENT | ACCESSED | DIRTY | GLOBAL
                        | (0 if read_only else WRITABLE) | (0 if executable(virtual, PAGE) else NO_EXECUTE))
        payload_area = self.heap.payload_area.next - window.virtual
        for offset in range(LARGE_PAGE, payload_area, LARGE_PAGE):  # the rest of the image
            self._entry(l2, _index(window.virtual + offset, 1),
                        (window.physical + offset) | PRESENT | WRITABLE | ACCESSED | DIRTY | LARGE | GLOBAL
                        | (0 if executable(window.virtual + offset, LARGE_PAGE) else NO_EXECUTE))
        for offset in range(payload_area, window.size, LARGE_PAGE):  # payloads: 4 KiB pages, as Xen's vmap
            table = self._new_table()
            self._entry(l2, _index(window.virtual + offset, 1), table | TABLE)
            for k in range(512):
                self._entry(table, k, (window.physical + offset + k * PAGE) | PRESENT | WRITABLE | ACCESSED | DIRTY)
        for virtual, no_execute in ((DIRECTMAP, NO_EXECUTE), (0, 0)):  # the directmap, dom0's low memory (identity)
            l3_table, l2_table = self._new_table(), self._new_table()
            self._entry(l4, _index(virtual, 3), l3_table | TABLE)
            self._entry(l3_table, _index(virtual, 2), l2_table | TABLE)
            for k in range(RAM_SIZE // LARGE_PAGE):
                self._entry(l2_table, k, (k * LARGE_PAGE) | PRESENT | WRITABLE | ACCESSED | DIRTY | LARGE | no_execute)
        return l4

    # -- the payload area ---------------------------------------------------------------------------------------
    def vmalloc_xen(self, size: int) -> int:
        """Xen's `vmalloc_xen`: payload memory (NULL when the area is full), mapped as Xen's vmap maps it:
        read-write, no-execute (`map_payload`)."""
        address = self.heap.vmalloc_xen(size)
        if address:
            self.map_payload(address, max(size, 1), code=False, writable=True)
        return address

    def map_payload(self, virtual: int, size: int, *, code: bool, writable: bool) -> None:
        """Map the payload area's pages in `[virtual, virtual + size)` (nothing outside the area): `code` at its own
        physical address, where a store is a code write every vCPU must see (machine.py's write-protection hook),
        else no-execute at PAYLOAD_DATA's copy, where stores are plain. The vCPUs' TLBs are the caller's to
        flush."""
        begin, end = self.payload_area
        window = self.xen_window
        l2 = self.memory.physical(self.sym("l2_xenmap"))
        for page in range(max(virtual & ~(PAGE - 1), begin), min(virtual + size, end), PAGE):
            physical = window.physical + page - window.virtual
            target = physical if code else PAYLOAD_DATA + physical - self.code_physical[1][0]
            l1 = self.memory.read_u64(l2 + 8 * _index(page, 1)) & ADDRESS_BITS
            self._entry(l1, _index(page, 0), target | PRESENT | ACCESSED | DIRTY | (WRITABLE if writable else 0)
                        | (0 if code else NO_EXECUTE))

    # -- objects ----------------------------------------------------------------------------------------------
    def _objects(self) -> None:
        memory, offsets, n = self.memory, self.offsets, self.vcpus
        memory.write_u32(self.sym("system_state"), SYS_STATE_ACTIVE)
        memory.write_u32(self.sym("nr_cpu_ids"), n)
        mask = ((1 << n) - 1).to_bytes(NR_CPUS_BYTES // 2, "little")
        for name in ("cpu_online_map", "cpu_present_map"):
            memory.write(self.sym(name), mask)
        memory.write_u8(self.sym("tasklets_initialised"), 1)
        memory.write_u8(self.sym("x2apic_enabled"), 1)
        memory.write_u32(self.sym("cpu_khz"), self.clock_hz // 1000)  # __udelay's TSC ticks per ms
        x2apic = self.image.symbol("apic_x2apic_phys")
        memory.write(self.sym("genapic"), memory.read(x2apic.address, x2apic.size))
        idle_domain, dom0 = self._domain(IDLE_DOMAIN_ID), self._domain(0)
        start, end = self.sym("__per_cpu_start"), self.sym("__per_cpu_data_end")
        template = memory.read(start, end - start)
        for cpu in range(n):
            memory.write_u32(self.sym("x86_cpu_to_apicid") + 4 * cpu, cpu)
            area = self.heap.heap.take(end - start, PAGE)
            memory.write(area, template)
            offset = (area - start) & (2**64 - 1)
            self.per_cpu_offsets.append(offset)
            memory.write_u64(self.sym("__per_cpu_offset") + 8 * cpu, offset)
            stack = self.heap.heap.take(STACK_SIZE, STACK_SIZE)
            top = stack + STACK_SIZE
            self.stack_tops.append(top)
            idle = self._vcpu(idle_domain, cpu)
            self.idle_vcpus.append(idle)
            self.dom0_vcpus.append(self._vcpu(dom0, cpu))
            memory.write_u64(self.sym("idle_vcpu") + 8 * cpu, idle)
            memory.write_u32(top + offsets.cpu_info_processor_id, cpu)
            memory.write_u64(top + offsets.cpu_info_current_vcpu, idle)
            memory.write_u64(top + offsets.cpu_info_per_cpu_offset, offset)
            memory.write_u64(top + offsets.cpu_info_cr4, CR4)
            for name in ("send_ipi_cpumask", "scratch_cpumask"):
                memory.write_u64(self.per_cpu(name, cpu), self.heap.heap.take(NR_CPUS_BYTES))
            memory.write_u64(self.per_cpu("curr_vcpu", cpu), idle)
            shift, mul_frac = time_scale(self.clock_hz)
            cpu_time = self.per_cpu("cpu_time", cpu)
            memory.write(cpu_time, bytes(0x18))
            memory.write(cpu_time + offsets.cpu_time_scale_shift, struct.pack("<i", shift))
            memory.write_u32(cpu_time + offsets.cpu_time_scale_mul_frac, mul_frac)

    def _domain(self, domain_id: int) -> int:
        domain = self.heap.heap.take(DOMAIN_SIZE, PAGE)
        self.memory.write(domain + self.offsets.domain_id, struct.pack("<H", domain_id))
        return domain

    def _vcpu(self, domain: int, cpu: int) -> int:
        memory, offsets = self.memory, self.offsets
        vcpu, unit = self.heap.heap.take(VCPU_SIZE, PAGE), self.heap.heap.take(SCHED_UNIT_SIZE)
        memory.write_u32(vcpu + offsets.vcpu_id, cpu)
        memory.write_u32(vcpu + offsets.vcpu_processor, cpu)
        memory.write_u64(vcpu + offsets.vcpu_info, self.heap.heap.take(VCPU_INFO_SIZE))
        memory.write_u64(vcpu + offsets.vcpu_domain, domain)
        memory.write_u64(vcpu + offsets.vcpu_sched_unit, unit)
        memory.write_u64(unit + offsets.sched_unit_domain, domain)
        return vcpu

    # -- boot ---------------------------------------------------------------------------------------------------
    def boot(self, machine: XenMachine) -> None:
        """Xen's init calls the engine needs, for real on vCPU 0 (build-id, virtual regions, each CPU's
        notifiers); then every vCPU enters `idle_loop` and the machine runs until each has halted there."""
        devices = machine.devices
        for number, name in enumerate(SOFTIRQS):
            handler = {"RCU": self.sym("common/rcupdate.c#rcu_process_callbacks"),
                       "SCHEDULE": devices.schedule_softirq}.get(name) or self.slot(f"softirq {name}")
            self.memory.write_u64(self.sym("softirq_handlers") + 8 * number, handler)
        machine.call(0, "xen_build_init")
        machine.call(0, "setup_virtual_regions", self.sym("__start___ex_table"), self.sym("__stop___ex_table"))
        machine.call(0, "unregister_init_virtual_region")
        for cpu in range(self.vcpus):
            for unit in CPU_NOTIFIERS:
                machine.call(0, f"{unit}#cpu_callback", self.sym(f"{unit}#cpu_nfb"), CPU_UP_PREPARE, cpu)
        machine.interrupts.boot()
        for threshold in XENLOG_THRESHOLDS:  # the reference's `loglvl=all guest_loglvl=all`, once the console's
            self.memory.write_u32(self.sym(threshold), XENLOG_ALL)  # tasklets exist
        for vcpu in machine.vcpus:
            self.to_idle(vcpu)
            vcpu.state = VcpuState.RUNNING
            machine.scheduler.queue(vcpu)
        machine.run_for(1_000_000, stop_when=lambda: all(v.state is VcpuState.HALTED for v in machine.vcpus))
        if not all(v.state is VcpuState.HALTED for v in machine.vcpus):
            busy = [machine.describe(v.pc) for v in machine.vcpus if v.state is not VcpuState.HALTED]
            raise MachineError(f"Xen's idle loops did not settle within 1 ms: {busy}")

    def enter(self, vcpu: Vcpu, entry: int, arguments: tuple[int, ...], *, as_dom0: bool,
              interrupts: bool = True) -> None:
        """Start `entry(arguments)` on `vcpu` from the bottom of its stack, returning into the sentinel, with
        interrupts on or off; `current` is its dom0 vCPU (a hypercall) or its idle vCPU."""
        top = self.stack_tops[vcpu.index]
        frame = top - self.offsets.cpu_info_size - 2 * 8
        self.memory.write_u64(frame, self.sentinel)
        arch = vcpu.arch
        for register, value in zip(REGS.arguments, arguments, strict=False):
            vcpu.write(register, value & (2**64 - 1))
        vcpu.write(arch.registers.sp, frame)
        vcpu.write(arch.registers.flags, RFLAGS_IF | RFLAGS_RESERVED if interrupts else RFLAGS_RESERVED)
        vcpu.pc = entry
        current = (self.dom0_vcpus if as_dom0 else self.idle_vcpus)[vcpu.index]
        self.memory.write_u64(top + self.offsets.cpu_info_current_vcpu, current)
        vcpu.state = VcpuState.RUNNING

    def to_idle(self, vcpu: Vcpu) -> None:
        """`reset_stack_and_jump(idle_loop)` with its idle vCPU current."""
        top = self.stack_tops[vcpu.index]
        vcpu.write(vcpu.arch.registers.sp, top - self.offsets.cpu_info_size)
        vcpu.write(vcpu.arch.registers.flags, RFLAGS_RESERVED)
        vcpu.pc = self.sym("idle_loop")
        self.memory.write_u64(top + self.offsets.cpu_info_current_vcpu, self.idle_vcpus[vcpu.index])

    # -- the console --------------------------------------------------------------------------------------------
    def console_bytes(self, seen: int) -> tuple[bytes, int]:
        """What printk put in Xen's console ring since byte `seen` (from the oldest it holds, if it wrapped over
        some), and how many bytes it has put there in all."""
        memory = self.memory
        ring, size, produced = (memory.read_u64(self.sym("conring")), memory.read_u32(self.sym("conring_size")),
                                memory.read_u32(self.sym("conringp")))
        first = max(seen, produced - size)
        start = first & (size - 1)
        end = start + max(0, produced - first)  # past the ring's end when the new bytes wrap to its start
        data = memory.read(ring + start, min(end, size) - start)
        return (data + memory.read(ring, end - size) if end > size else data), produced


def time_scale(clock_hz: int) -> tuple[int, int]:
    """Xen's `struct time_scale` (shift, mul_frac) turning TSC ticks at `clock_hz` into ns."""
    ratio, shift = 1_000_000_000 / clock_hz, 0
    while ratio >= 1:
        ratio, shift = ratio / 2, shift + 1
    while ratio < 0.5:
        ratio, shift = ratio * 2, shift - 1
    return shift, int(ratio * 2**32)


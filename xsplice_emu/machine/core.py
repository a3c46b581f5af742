"""The emulated machine: shared RAM, N vCPUs, devices, virtual time and a
seeded scheduler (`scheduler.py`). It knows nothing of livepatching; see
`firmware/ABI.md` for the platform it emulates. Interrupts are taken at
slice boundaries.

`Machine` builds the parts and runs the slices; each concept is a module of
its own, which `Machine` fronts for its callers: where the images go
(`loading.py`), their symbols (`symbols.py`), code writes and stale
translations (`coherence.py`), interrupts and exceptions (`interrupts.py`),
guest calls (`calls.py`), ports (`devices.py`), and who is told of events
(`subscribers.py`).
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from typing import Any

from unicorn import UC_MEM_READ_UNMAPPED, UC_MEM_WRITE_UNMAPPED, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE, UcError

from ..errors import ConfigError, GuestFault, MachineError
from ..image import Image
from ..platform import (
    CLOCK_PAGE,
    NR_CPUS,
    RAM_BASE,
    STACK_GUARD_SIZE,
    STACK_SIZE,
)
from ..tracing.kinds import EventKind
from ..tracing.trace import Trace
from . import native
from .calls import CallSlots
from .coherence import CodeCoherence
from .console import Console
from .devices import PortReader, Ports
from .dom0 import Dom0Placement
from .hooks import install
from .instances import Instances
from .interrupts import Interrupts
from .loading import hypervisor_window, load, page_permissions, read_only_code, round_up
from .memory import GuestMemory
from .paging import PagePermissions
from .runner import SliceRunner
from .scheduler import Scheduler
from .slice_loop import SliceLoop
from .spec import NEVER, PAGE_SIZE, PS_PER_NS, PS_PER_SECOND
from .subscribers import WATCH_HIT, Subscribers
from .symbols import Symbols
from .vcpu import BUDGET, RUNNING, Snapshot, StopReason, Vcpu, VcpuState


@dataclass(frozen=True)
class MachineConfig:
    """What a machine is built with; the same config and firmware give the same run."""

    vcpus: int = 1
    seed: int = 0
    clock_hz: int = 1_000_000_000
    timer_hz: int = 1000
    ram_mib: int = 64
    slice_min: int = 2_000
    slice_max: int = 10_000

    def validate(self) -> None:
        if not 1 <= self.vcpus <= NR_CPUS:
            raise ConfigError(f"vcpus must be 1..{NR_CPUS}, not {self.vcpus}")
        if not 1_000_000 <= self.clock_hz <= PS_PER_SECOND:
            raise ConfigError(f"clock_hz must be 1 MHz..1 THz, not {self.clock_hz}")
        if not 1 <= self.timer_hz <= 1_000_000:
            raise ConfigError(f"timer_hz must be 1..1000000, not {self.timer_hz}")
        if not 1 <= self.slice_min <= self.slice_max:
            raise ConfigError(f"need 1 <= slice_min <= slice_max, not {self.slice_min}..{self.slice_max}")
        if self.ram_mib < 8:
            raise ConfigError(f"ram_mib must be at least 8, not {self.ram_mib}")


class Machine(SliceRunner):
    """N vCPUs over one RAM running a firmware image, deterministic by seed.

    With a `hypervisor` image (a real Xen's xen-syms), that image is mapped at its link addresses through page
    tables (a window onto RAM past the firmware's), payloads go in the same window past its end, and it is
    what livepatching patches; the firmware still runs the platform from identity-mapped low RAM."""

    def __init__(self, image: Image, *, config: MachineConfig = MachineConfig(), hypervisor: Image | None = None):
        config.validate()
        self.image = image
        self.hypervisor = hypervisor or image
        self.arch = image.arch
        self.config = config
        if hypervisor is not None and hypervisor.arch is not image.arch:
            raise ConfigError(f"{hypervisor.path}: a {hypervisor.arch.title} image beside "
                              f"{image.arch.title} firmware")
        self.payload_space: tuple[int, int]
        """Where payloads go: `[begin, end)` of guest addresses."""
        self.symbols = Symbols(image, self.hypervisor)
        if hypervisor is None:
            self.memory = GuestMemory(config.ram_mib << 20)
            load(self.memory, image, ram_mib=config.ram_mib)
            self.payload_space = (round_up(image.end, PAGE_SIZE), self.memory.size)
        else:
            window = hypervisor_window(hypervisor, ram_mib=config.ram_mib)
            self.memory = GuestMemory(window.physical + window.size, (window,))
            load(self.memory, image, ram_mib=config.ram_mib)
            load(self.memory, hypervisor, ram_mib=config.ram_mib)
            self.payload_space = (round_up(hypervisor.end, self.arch.large_page_size), window.end)
        self.timer_period_ps = PS_PER_SECOND // config.timer_hz
        self.trace = Trace({"seed": config.seed, "options": asdict(config),
                            "firmware_build_id": image.build_id.hex(),
                            "hypervisor_build_id": self.hypervisor.build_id.hex(), "arch": self.arch.name,
                            "vcpus": config.vcpus, "clock_hz": config.clock_hz})
        self.table = native.BlockTable(self.memory.host_address + RAM_BASE, RAM_BASE, self.memory.size - RAM_BASE,
                                       disassembler=self.arch.disassembler)
        for window in self.memory.windows:
            self.table.add_range(self.memory.host_address + window.physical, window.virtual, window.size)
        ps_per_instruction = PS_PER_SECOND // config.clock_hz
        self.paging = PagePermissions(self.arch, self.memory, faults_outside=hypervisor is not None)
        for begin, end, permissions in page_permissions(self.memory, self.images):
            self.paging.protect(begin, end, permissions)
        self._stacks = image.address("cpu_stacks")
        self.vcpus = [Vcpu(i, self.arch, self.memory, self.table, paging_root=self.paging.root,
                           mappings=self.paging.mappings(leave_out=(self.stack_guard(i),
                                                                    self.stack_guard(i) + STACK_GUARD_SIZE)),
                           ps_per_instruction=ps_per_instruction) for i in range(config.vcpus)]
        self.scheduler = Scheduler(self.vcpus, seed=config.seed, slice_min=config.slice_min,
                                   slice_max=config.slice_max)
        self.dom0 = Dom0Placement()
        self.subscribers = Subscribers()
        self.instances = Instances(self.vcpus, lambda: Vcpu(  # the spare: never runs, so no guard page
            len(self.vcpus), self.arch, self.memory, self.table, mappings=self.paging.mappings(),
            paging_root=self.paging.root, ps_per_instruction=ps_per_instruction))
        self.coherence = CodeCoherence(memory=self.memory, paging=self.paging, table=self.table,
                                       instances=self.instances, trace=self.trace, emit=self.emit,
                                       subscribers=self.subscribers)
        self.calls = CallSlots(self, base=image.address("call_slots"))
        self.ports = Ports(self, vcpus=config.vcpus, describe=image.describe, awaited=self.calls.is_awaited)
        self.interrupts = Interrupts(arch=self.arch, calls=self.calls, subscribers=self.subscribers, emit=self.emit,
                                     fault=self.fault, serialise=self.coherence.serialise)
        returns = _instructions(image, self.arch.interrupt_return)
        serialising = _instructions(image, *self.arch.serialising)
        text = read_only_code(self.images)
        for vcpu in self.vcpus:
            install(vcpu, self, interrupt_returns=returns, serialising=serialising)
            vcpu.read_only_code(text)
        self._clock_page = self.memory.u64_array(CLOCK_PAGE, config.vcpus)
        """What each vCPU's clock read (ns) at the start of its slice (firmware/ABI.md)."""
        self.slice_loop = SliceLoop(self, self._clock_page)
        self.now_ps = 0
        self.vcpus[0].start(image.entry, at_ps=0, arguments=(0, config.vcpus))
        self.emit(self.vcpus[0], EventKind.CPU_START, by=None)
        self.scheduler.queue(self.vcpus[0])

    @property
    def images(self) -> tuple[Image, ...]:
        """The firmware, and the hypervisor image when it is another (a real Xen's)."""
        return self.symbols.images

    def describe(self, address: int) -> str:
        """`name+0xoff` for an address in the firmware's or the hypervisor's functions, else hex."""
        return self.symbols.describe(address)

    def address(self, name: str) -> int:
        """Where symbol `name` is: in the hypervisor (a real Xen's image, when the machine has one), else in the
        firmware; ImageError naming the firmware when neither has it."""
        return self.symbols.address(name)

    def describe_function(self, address: int) -> tuple[int, int] | None:
        """(start, offset) of the firmware's or the hypervisor's function holding `address`, or None."""
        return self.symbols.describe_function(address)

    @property
    def console(self) -> Console:
        return self.ports.console

    # -- time ------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        return self.now_ps // PS_PER_NS

    def time_of(self, vcpu: Vcpu) -> int:
        """Virtual time (ps) of `vcpu`, exact also from inside its hooks."""
        return vcpu.current_time_ps()

    # -- running ---------------------------------------------------------
    def _step(self, vcpu: Vcpu, ready_ps: int, until_ps: int) -> None:
        preempted_until_ps = vcpu.preempted_until_ps
        if preempted_until_ps > ready_ps and preempted_until_ps > vcpu.clock_ps:
            vcpu.sit_out(ready_ps)
            self.scheduler.queue(vcpu)
            return
        if vcpu.state is not RUNNING:
            vcpu.sleep_until(ready_ps)
        vcpu.latch_due(self.timer_period_ps)
        if vcpu.state is not RUNNING:
            if not vcpu.deliverable():
                self.scheduler.queue(vcpu)
                return
            if vcpu.state is VcpuState.HALTED:
                self.emit(vcpu, EventKind.WAKE)
            else:
                self.emit(vcpu, EventKind.UNPARK, cause="interrupt")
            vcpu.wake()
            self.scheduler.forget(vcpu)
        if vcpu.nmi_pending or vcpu.pending_vectors:
            self.interrupts.deliver(vcpu)
        self._run_slice(vcpu, until_ps)
        self.scheduler.queue(vcpu)

    def _run_slice(self, vcpu: Vcpu, until_ps: int) -> None:
        scheduler = self.scheduler
        open_code = bool(vcpu.open_code_pages)
        budget = 1 if open_code else scheduler.slice_budget(vcpu)  # one block writes code, then it is seen
        arrival = vcpu.next_arrival_ps()
        horizon = min(until_ps, NEVER if arrival is None else arrival, scheduler.next_wake_ps(),
                      scheduler.next_alarm_ps()) - vcpu.clock_ps
        if horizon < budget * vcpu.ps_per_instruction:
            budget = max(1, -(-horizon // vcpu.ps_per_instruction))
        self._clock_page[vcpu.index] = vcpu.clock_ps // PS_PER_NS
        if open_code:
            self.coherence.open_alias(vcpu, writable=True)
        self._slice_ran(vcpu, vcpu.start_slice(budget), budget)

    def _finish_step(self, vcpu: Vcpu, status: int, budget: int) -> None:
        self._slice_ran(vcpu, status, budget)
        self.scheduler.queue(vcpu)

    def _slice_ran(self, vcpu: Vcpu, status: int, budget: int) -> None:
        """What follows a slice of `budget` instructions `vcpu.start_slice` began with `status`."""
        try:
            reason = vcpu.finish_slice(status, budget)
        except UcError as exc:
            if vcpu.alias_fault is not None:  # a store into code through the alias: retried next slice
                address, size = vcpu.alias_fault
                vcpu.alias_fault = None
                self.coherence.after_slice(vcpu)
                self.coherence.open_code_pages(vcpu, address, size)
                return
            self.coherence.after_slice(vcpu)
            what, vcpu.guard_fault = vcpu.guard_fault or str(exc), None
            fault = self.fault(vcpu, what, vcpu.pc)
            if vcpu.on_fault is not None and vcpu.on_fault(fault):
                return
            raise fault from None
        if vcpu.open_code_pages or vcpu.to_flush:
            self.coherence.after_slice(vcpu)
        if vcpu.hook_error is not None:  # (take_hook_error is dearer than this check, and seldom needed)
            error = vcpu.take_hook_error()
            assert error is not None
            if isinstance(error, GuestFault) and vcpu.on_fault is not None and vcpu.on_fault(error):
                return
            raise error
        if reason is BUDGET:
            return
        if reason is StopReason.HALT:
            halt = self.arch.halt_instruction
            if self.memory.read(vcpu.pc - len(halt), len(halt)) != halt:
                raise self.fault(vcpu, "emulation stopped for no known reason", vcpu.pc)
            vcpu.settle(VcpuState.HALTED)
            self.emit(vcpu, EventKind.HALT, interrupts_enabled=vcpu.interrupts_enabled)
        elif reason is StopReason.PARK:
            vcpu.settle(VcpuState.PARKED)
        elif reason is StopReason.WATCH:
            self.subscribers.notify(WATCH_HIT, vcpu, *vcpu.hit)
            vcpu.pass_watch()

    # -- what the hooks and devices call ----------------------------------
    def fault(self, vcpu: Vcpu, what: str, pc: int) -> GuestFault:
        """The error that stops the run: vCPU, address with symbol, instruction, last console line."""
        try:
            insn = self.arch.first_instruction(self.memory.read(pc, 16), pc)
        except MachineError:
            insn = "(outside RAM)"
        self.emit(vcpu, EventKind.FAULT, what=what, rip=pc)
        message = (f"vCPU {vcpu.index} fault: {what} at {pc:#x} <{self.describe(pc)}>: {insn}; "
                   f"last console line: {self.ports.console_line(vcpu.index)!r}")
        return GuestFault(message, vcpu=vcpu.index, pc=pc)

    def exception(self, vcpu: Vcpu, intno: int) -> None:
        """A CPU exception or `int n`: deliver it through the guest's handler table (`interrupts.py`)."""
        self.interrupts.exception(vcpu, intno)

    def interrupt_return(self, vcpu: Vcpu) -> None:
        """A handler returns (the hook runs before its iretq): it serialises and ends NMI blocking
        (`interrupts.py`)."""
        self.interrupts.interrupt_return(vcpu)

    def serialise(self, vcpu: Vcpu) -> bool:
        """A serialising instruction: from the next one, `vcpu` runs what others wrote into code. Whether that
        stopped the vCPU before the instruction (to drop its stale translations first)."""
        return self.coherence.serialise(vcpu)

    def alias_write_fault(self, vcpu: Vcpu, alias_address: int, size: int) -> bool:
        """`vcpu` stores into code through the alias (TEXT_ALIAS_OFFSET): the store faults (False), and is
        retried once the code pages are opened for it (`coherence.py`)."""
        return self.coherence.alias_write_fault(vcpu, alias_address, size)

    def write_code_unsynchronised(self, address: int, data: bytes) -> None:
        """The host writes `data` into code at `address` as a naive text_poke would, with no rendezvous and no
        flush: every vCPU runs it once it serialises and may run what it translated before until then."""
        self.coherence.write_unsynchronised(address, data, now_ns=self.now_ns)

    def stack_guard(self, index: int) -> int:
        """Where vCPU `index`'s guard page is: the lowest page of its stack, left out of its mappings."""
        return self._stacks + index * STACK_SIZE

    def guard_page_fault(self, vcpu: Vcpu, access: int, address: int) -> bool:
        """`vcpu` touched its own guard page: its stack ran over. The access faults (False), named as the
        page fault it is."""
        kind = {UC_MEM_READ_UNMAPPED: "read", UC_MEM_WRITE_UNMAPPED: "write"}.get(access, "fetch")
        page_fault = self.arch.exception_names[self.arch.page_fault_vector]
        vcpu.guard_fault = (f"{page_fault}: {kind} of {address:#x}, in the guard page below "
                            f"vCPU {vcpu.index}'s stack (a stack overflow)")
        return False

    def start_cpu(self, index: int, *, by: Vcpu) -> None:
        """vCPU `by` starts vCPU `index` at the firmware's entry."""
        if not 0 <= index < len(self.vcpus) or self.vcpus[index].state is not VcpuState.WAITING_FOR_START:
            raise self.fault(by, f"start of vCPU {index}, which does not exist or already runs", by.current_pc())
        target = self.vcpus[index]
        target.start(self.image.entry, at_ps=by.current_time_ps(), arguments=(index, len(self.vcpus)))
        self.emit(target, EventKind.CPU_START, by=by.index)
        self.scheduler.queue(target)

    def emit(self, vcpu: Vcpu, kind: EventKind, **fields: Any) -> None:
        """A trace event on `vcpu` at its current virtual time."""
        self.trace.emit(vcpu.current_time_ps() // PS_PER_NS, vcpu.index, kind, **fields)

    # -- the surface for the livepatch controller and tests ---------------
    def answer_port(self, port: int, reader: PortReader) -> None:
        """Let `reader(vcpu)` give what the guest's IN from `port` reads."""
        self.ports.answer(port, reader)

    def protect(self, begin: int, end: int, *, read: bool, write: bool = False, execute: bool = False) -> None:
        """What guest code may do with the pages covering `[begin, end)`, on every vCPU; code translated from
        pages that stop being executable is dropped. The host and the writable alias (TEXT_ALIAS_OFFSET) are
        not bound by it; executable pages are what code writes watch. Costs the same whatever else is protected
        (paging.py)."""
        physical = self.memory.physical(begin, end - begin)
        first, last = physical & ~(PAGE_SIZE - 1), round_up(physical + end - begin, PAGE_SIZE)
        permissions = (UC_PROT_READ if read else 0) | (UC_PROT_WRITE if write else 0) | (UC_PROT_EXEC if execute else 0)
        if not execute:  # while they still run: the translations are found through the executable mapping
            for code_begin, code_end in self.paging.executable(first, last):
                self.invalidate_code(begin + code_begin - physical, begin + code_end - physical)
        if self.paging.protect(first, last, permissions):  # else no vCPU has translated these pages' addresses
            for vcpu in self.instances.all():
                vcpu.flush_tlb()

    def send_interrupt(self, index: int, vector: int, *, at_ps: int | None = None, sender: int | None = None) -> None:
        """Raise `vector` (the arch's NMI vector for an NMI) on vCPU `index` at `at_ps` (default: now)."""
        target = self._vcpu(index)
        sent_ps = self.now_ps if at_ps is None else at_ps
        target.post(max(sent_ps, target.clock_ps), self.scheduler.next_seq(), vector, sender)
        self.trace.emit(sent_ps // PS_PER_NS, sender, EventKind.IPI, to=index, vector=vector)
        self.scheduler.queue(target)

    def park(self, vcpu: Vcpu) -> None:
        """From inside `vcpu`'s own port hook: stop it until released or interrupted, once the block the port
        access is in has run (in check_for_xsplice_work: its dispatch jump, to the question it asks again). Not
        stopped in the middle of the block, it resumes at the start of one: no block of its tail alone to
        translate."""
        vcpu.end_slice_after_block(StopReason.PARK)
        self.emit(vcpu, EventKind.PARK)

    def release(self, index: int, *, at_ps: int) -> None:
        """Let a parked vCPU run again from `at_ps`."""
        vcpu = self._vcpu(index)
        if vcpu.state is VcpuState.PARKED:
            vcpu.release(at_ps)
            self.emit(vcpu, EventKind.UNPARK, cause="release")
            self.scheduler.queue(vcpu)

    def restore(self, vcpu: Vcpu, snapshot: Snapshot) -> None:
        """Put `vcpu` back to `snapshot` (between slices) and let it run from there."""
        vcpu.restore(snapshot)
        self.scheduler.queue(vcpu)

    def invalidate_code(self, begin: int, end: int, *, keep: frozenset[int] = frozenset()) -> None:
        """Drop translated code overlapping `[begin, end)` on every vCPU (but those in `keep`: a fault that
        models a missing serialisation)."""
        self.coherence.invalidate(begin, end, keep=keep)

    def watch(self, index: int, ranges: list[tuple[int, int]]) -> None:
        """Stop vCPU `index` before it runs a block overlapping one of `ranges` and tell the WATCH_HIT subscribers;
        the block then runs. An empty list watches nothing (and costs nothing)."""
        self._vcpu(index).watch(ranges)

    def call(self, index: int, function: str | int, arg0: int = 0, arg1: int = 0, *,
             timeout_ns: int = 100_000_000) -> int:
        """Run `function(arg0, arg1)` on vCPU `index` through the call-function
        IPI, run the machine until it returns, and give its result."""
        slot = self._fill_slot(index, function, arg0, arg1)
        return self.calls.wait([slot], _call_name(function), timeout_ns)[0]

    def call_contained(self, index: int, function: str | int, arg0: int = 0, arg1: int = 0, *,
                       timeout_ns: int = 100_000_000) -> int:
        """`call`, except that a fault (GuestFault) or no return within `timeout_ns` (MachineError) in it is
        raised with vCPU `index` put back where the call found it: the machine runs on."""
        vcpu = self._vcpu(index)
        address = self.symbols.entry(function)
        return self.calls.call_contained(vcpu.index, address, arg0, arg1, seq=self.scheduler.next_seq(),
                                         what=_call_name(function), timeout_ns=timeout_ns)

    def post_call(self, index: int, function: str | int, arg0: int = 0, arg1: int = 0, *,
                  at_ps: int | None = None, sender: int | None = None) -> None:
        """Ask vCPU `index` to run `function(arg0, arg1)` (IPI at `at_ps`, default now) without waiting.

        A call the host posts for later fills its slot only then: a pending slot
        runs at the vCPU's next call-function IPI, whoever sent that one."""
        if sender is None and at_ps is not None and at_ps > self.now_ps:
            self._vcpu(index)
            self.add_alarm(at_ps, lambda: self.post_call(index, function, arg0, arg1))
            return
        self._fill_slot(index, function, arg0, arg1, at_ps=at_ps, sender=sender)

    def call_all(self, function: str | int, arg0: int = 0, arg1: int = 0, *,
                 timeout_ns: int = 100_000_000) -> list[int]:
        """Run `function(arg0, arg1)` on every vCPU at once; their results in vCPU order."""
        slots = [self._fill_slot(index, function, arg0, arg1) for index in range(len(self.vcpus))]
        return self.calls.wait(slots, _call_name(function), timeout_ns)

    def _fill_slot(self, index: int, function: str | int, arg0: int, arg1: int, *,
                   at_ps: int | None = None, sender: int | None = None) -> tuple[int, int]:
        vcpu = self._vcpu(index)
        address = self.symbols.entry(function)
        return self.calls.post(vcpu.index, address, arg0, arg1, seq=self.scheduler.next_seq(),
                               at_ps=at_ps, sender=sender)

    def per_cpu(self, symbol: str) -> list[int]:
        """The firmware's per-CPU array `symbol` (NR_CPUS integers), element by element."""
        array = self.image.symbol(symbol)
        width = array.size // NR_CPUS
        data = self.memory.read(array.address, width * NR_CPUS)
        if width in _UNSIGNED:  # (one unpack: ~20x cheaper than a slice and int.from_bytes per element)
            return list(struct.unpack(f"<{NR_CPUS}{_UNSIGNED[width]}", data))
        return [int.from_bytes(data[i:i + width], "little") for i in range(0, width * NR_CPUS, width)]

    # -- figures ---------------------------------------------------------
    @property
    def instructions(self) -> int:
        return sum(v.instructions for v in self.vcpus)


_UNSIGNED = {1: "B", 2: "H", 4: "I", 8: "Q"}
"""struct's code of an unsigned integer of each width."""


def _call_name(function: str | int) -> str:
    return function if isinstance(function, str) else f"{function:#x}"


def _instructions(image: Image, *mnemonics: str) -> list[int]:
    """Where the firmware's functions hold an instruction of one of `mnemonics` (hooked by address: an
    instruction hook on all code would slow every action by ~10%)."""
    return sorted({address for address, text in image.decoded if text.split(" ", 1)[0] in mnemonics})

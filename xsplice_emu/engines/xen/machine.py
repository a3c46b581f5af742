"""The xen engine's machine: N vCPUs running Xen's own compiled code over one RAM.

It builds the platform Xen's boot would have left (`platform.py`), answers the instructions Unicorn cannot
(`devices.py`), and runs the vCPUs with the testbed's seeded, virtual-time scheduler and block-budget slices
(`machine/`). Every vCPU sits in Xen's `idle_loop`; the host runs a function on one (`call`) as a dom0 vCPU
scheduled there would: when that vCPU is idle, from the bottom of its stack, and back to `idle_loop` after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from unicorn import (
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_UNMAPPED,
    UC_HOOK_MEM_WRITE_PROT,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UcError,
)

from ...arch.x86_64 import PLATFORM_REGISTERS as REGS
from ...errors import GuestFault, MachineError
from ...image import Image
from ...machine import PS_PER_NS, Console, GuestMemory, MachineConfig, Vcpu, VcpuState, native
from ...machine.dom0 import Dom0Placement
from ...machine.hooks import guarded
from ...machine.instances import Instances
from ...machine.loading import round_up
from ...machine.memory import Window
from ...machine.paging import Mapping
from ...machine.runner import SliceRunner
from ...machine.scheduler import Alarm, Scheduler
from ...machine.spec import NEVER, PAGE_SIZE, PS_PER_SECOND
from ...machine.subscribers import WATCH_HIT, Subscribers
from ...machine.vcpu import BUDGET, StopReason
from ...platform import RAM_BASE
from ...provision.derived import derived
from ...tracing.kinds import EventKind
from ...tracing.trace import Trace
from .code_writes import CodeWrites
from .devices import Devices
from .faults import XenFaults
from .interrupts import Interrupts
from .layout import CR0, CR4, DIRECTMAP, PAYLOAD_AREA_SIZE, PAYLOAD_DATA, RAM_SIZE, XEN_PHYSICAL, struct_offsets
from .platform import Platform
from .rendezvous import RendezvousObserver
from .site_hooks import SiteHooks, running
from .sites import AssemblyLabels, code_spans
from .spins import Spins

CALL_TIMEOUT_NS = 500_000_000
"""How long a host call may run (virtual time) before it is an error: unload waits on RCU, which needs every
vCPU."""
XEN_PREFIX = "(XEN) "
"""What printk puts before each line."""
PANIC_ENDS = ("machine_restart", "machine_halt")
"""Where Xen's `panic` goes once it printed its report."""
PANIC_HEADER = "Panic on CPU"
IDLE_WAIT_NS = 100_000_000
"""How long a call waits for its vCPU to go idle first."""
HALTED, SPINNING = VcpuState.HALTED, VcpuState.SPINNING
HALT, SPIN, WATCH = StopReason.HALT, StopReason.SPIN, StopReason.WATCH
"""Module names for the slice loop (an Enum member looked up on its class costs ~0.1 us: see `vcpu.RUNNING`)."""


@dataclass
class HostCall:
    """A function the host runs on one vCPU; `result` is rax once it returned; then the vCPU goes back to
    `idle_loop`, or (`then_idle` False: a boot call) waits for the next."""

    function: int
    then_idle: bool
    result: int | None = None


@dataclass(frozen=True)
class PostedCall:
    """A call the host posted for a vCPU's next idle moment."""

    function: int
    arguments: tuple[int, ...]
    interrupts: bool


class XenMachine(SliceRunner):
    """Xen's image on N vCPUs, deterministic by seed; the surface `Session` and the xen engine use."""

    engine = "xen"
    STOPS_AT_SLICE_END = False
    """A condition a slice made true stops the run at the next slice's start, as this engine has always run."""

    def __init__(self, hypervisor: Image, *, config: MachineConfig):
        config.validate()
        self.image = self.hypervisor = hypervisor
        self.arch = hypervisor.arch
        self.config = config
        self.offsets = struct_offsets(hypervisor)
        self.code_spans = derived(hypervisor, code_spans)
        """Xen's functions and assembly code (`sites.code_spans`), found once per image."""
        self.assembly_labels = derived(hypervisor, AssemblyLabels.of)
        large = self.arch.large_page_size
        base = min(seg.address for seg in hypervisor.segments) & ~(large - 1)
        payload_begin = -(-hypervisor.end // large) * large
        window = Window(base, XEN_PHYSICAL, payload_begin + PAYLOAD_AREA_SIZE - base)
        self.memory = GuestMemory(RAM_SIZE, (window, Window(DIRECTMAP, 0, RAM_SIZE)))
        self.payload_space = (payload_begin, window.end)
        for seg in hypervisor.segments:
            self.memory.write(seg.address, seg.data + bytes(seg.memory_size - len(seg.data)))
        self.trace = Trace({"seed": config.seed, "options": asdict(config), "firmware_build_id": "",
                            "hypervisor_build_id": hypervisor.build_id.hex(), "arch": self.arch.name,
                            "vcpus": config.vcpus, "clock_hz": config.clock_hz})
        self.table = native.BlockTable(self.memory.host_address + RAM_BASE, RAM_BASE, RAM_SIZE - RAM_BASE,
                                       disassembler=self.arch.disassembler)
        self.table.add_range(self.memory.host_address + window.physical, window.virtual, window.size)
        self.platform = Platform(self.memory, hypervisor, self.offsets, vcpus=config.vcpus,
                                 clock_hz=config.clock_hz)
        ps_per_instruction = PS_PER_SECOND // config.clock_hz
        mappings = _ram_mappings(self.memory.host_address, self.platform.code_physical,
                                 payload=self.platform.code_physical[1])
        self.vcpus = [self._new_vcpu(i, mappings, ps_per_instruction) for i in range(config.vcpus)]
        self.instances = Instances(self.vcpus, lambda: self._new_vcpu(config.vcpus, mappings, ps_per_instruction))
        self.subscribers = Subscribers()
        self.scheduler = Scheduler(self.vcpus, seed=config.seed, slice_min=config.slice_min,
                                   slice_max=config.slice_max)
        self.dom0 = Dom0Placement()
        self.console = Console(config.vcpus)
        self.log: list[str] = []
        """Xen's console lines, without its "(XEN) " prefix."""
        self._console_seen = 0
        self.calls: dict[int, HostCall] = {}
        self.posted: list[list[PostedCall]] = [[] for _ in range(config.vcpus)]
        self.code_writes = CodeWrites(config.vcpus)
        self.interrupts = Interrupts(self)
        self.faults = XenFaults(self)
        self.devices = Devices(self)
        self.site_hooks = SiteHooks(self)
        self.devices.hook_sites(self.site_hooks)
        self.interrupts.hook_sites(self.site_hooks)
        self.spins = Spins(self)
        self.spins.hook_sites(self.site_hooks)
        self.site_hooks.add(tuple(self.address(function) for function in PANIC_ENDS), running(self._panicked))
        self.rendezvous = RendezvousObserver(self)
        self.rendezvous.hook_sites(self.site_hooks)
        for vcpu in self.vcpus:
            self._install(vcpu)
        self.site_hooks.arm()
        self.now_ps = 0
        self.platform.boot(self)

    def _new_vcpu(self, index: int, mappings: list[Mapping], ps_per_instruction: int) -> Vcpu:
        vcpu = Vcpu(index, self.arch, self.memory, self.table, mappings=mappings,
                    paging_root=self.platform.page_table_root, ps_per_instruction=ps_per_instruction)
        vcpu.uc.reg_write(REGS.cr4, CR4)
        vcpu.uc.reg_write(REGS.cr0, CR0)
        return vcpu

    def _install(self, vcpu: Vcpu) -> None:
        uc = vcpu.uc
        self.devices.install(vcpu)
        self.interrupts.install(vcpu)
        uc.hook_add(UC_HOOK_INTR, guarded(vcpu, lambda intno: self._exception(vcpu, intno)))
        uc.hook_add(UC_HOOK_INSN_INVALID, guarded(vcpu, lambda: self._invalid_opcode(vcpu), False))
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, guarded(vcpu, lambda access, address, size, value: self._unmapped(
            vcpu, address), False))
        for begin, end in self.platform.code_physical:
            uc.hook_add(UC_HOOK_MEM_WRITE_PROT, guarded(vcpu, lambda access, address, size, value: self._code_store(
                vcpu, address, size), False), None, begin, end - 1)

    # -- the surface Session and the engine use ----------------------------------------------------------------
    @property
    def images(self) -> tuple[Image, ...]:
        return (self.hypervisor,)

    @property
    def now_ns(self) -> int:
        return self.now_ps // PS_PER_NS

    def describe(self, address: int) -> str:
        """Xen's symbol for `address`: its function, or the assembly label it follows (entry.S)."""
        return self.assembly_labels.describe(address) or self.hypervisor.describe(address)

    def address(self, name: str) -> int:
        return self.hypervisor.address(name)

    def time_of(self, vcpu: Vcpu) -> int:
        return vcpu.current_time_ps()

    def emit(self, vcpu: Vcpu, kind: EventKind, **fields) -> None:
        self.trace.emit(vcpu.current_time_ps() // PS_PER_NS, vcpu.index, kind, **fields)

    def observe_entry(self, function: str, observer: Callable[[Vcpu], None]) -> None:
        """Call `observer(vcpu)` whenever a vCPU is about to run the first instruction of Xen's `function`."""
        self.site_hooks.add((self.address(function),), running(observer))

    def watch(self, index: int, ranges: list[tuple[int, int]]) -> None:
        """Stop vCPU `index` before it runs a block overlapping one of `ranges` and tell the WATCH_HIT subscribers;
        the block then runs. An empty list watches nothing (and costs nothing)."""
        self._vcpu(index).watch(ranges)

    def send_ipi(self, sender: Vcpu, index: int, vector: int) -> None:
        """An interrupt (the NMI vector: an NMI) to vCPU `index` from `sender`, arriving at the sender's time."""
        self.send_interrupt(index, vector, at_ps=sender.current_time_ps(), sender=sender.index)

    def send_interrupt(self, index: int, vector: int, *, at_ps: int | None = None, sender: int | None = None) -> None:
        """Raise `vector` (the arch's NMI vector for an NMI) on vCPU `index` at `at_ps` (default: now) from
        vCPU `sender` (None: the host); Xen's IDT handler takes it at the target's next slice boundary."""
        target = self._vcpu(index)
        sent_ps = self.now_ps if at_ps is None else at_ps
        target.post(max(sent_ps, target.clock_ps), self.scheduler.next_seq(), vector, sender)
        self.trace.emit(sent_ps // PS_PER_NS, sender, EventKind.IPI, to=index, vector=vector)
        if index != sender:
            self.scheduler.queue(target)

    # -- calls ---------------------------------------------------------------------------------------------------
    def call(self, index: int, function: str | int, *arguments: int, as_dom0: bool = False,
             timeout_ns: int = CALL_TIMEOUT_NS) -> int:
        """Run `function(arguments)` on vCPU `index` once it is idle (as dom0's vCPU with `as_dom0`: a
        hypercall), the other vCPUs running meanwhile; its rax. On a vCPU not started yet (boot) it runs
        alone, and the vCPU waits again after."""
        vcpu = self._vcpu(index)
        entry = self.address(function) if isinstance(function, str) else function
        name = self.describe(entry)
        booting = vcpu.state is VcpuState.WAITING_FOR_START
        if not booting:
            self.run(until_ps=self.now_ps + IDLE_WAIT_NS * PS_PER_NS,
                     stop_when=lambda: vcpu.state is VcpuState.HALTED)
            if vcpu.state is not VcpuState.HALTED:
                raise MachineError(f"vCPU {index} did not go idle within {IDLE_WAIT_NS // 1_000_000} ms to run "
                                   f"{name} (it is at {vcpu.pc:#x} <{self.describe(vcpu.pc)}>)")
        vcpu.sleep_until(self.now_ps)  # it idled until now: the call starts now
        call = self.calls[index] = HostCall(entry, then_idle=not booting)
        self.platform.enter(vcpu, entry, arguments, as_dom0=as_dom0)
        self.scheduler.queue(vcpu)
        self.run(until_ps=self.now_ps + timeout_ns * PS_PER_NS, stop_when=lambda: call.result is not None)
        self.drain_console()
        if call.result is None:
            raise MachineError(f"{name} on vCPU {index} did not return within {timeout_ns / 1e6:g} ms (it is at "
                               f"{vcpu.pc:#x} <{self.describe(vcpu.pc)}>)")
        return call.result

    def post_call(self, index: int, function: str | int, *arguments: int, at_ps: int,
                  interrupts: bool = True) -> None:
        """From `at_ps`, run `function(arguments)` on vCPU `index` as soon as it is idle (with interrupts on or
        off) without waiting for it: a stall, a delayed call. Its result is not kept."""
        vcpu = self._vcpu(index)
        entry = self.address(function) if isinstance(function, str) else function

        def post() -> None:
            self.posted[index].append(PostedCall(entry, arguments, interrupts))
            self._start_posted(vcpu)
        self.add_alarm(at_ps, post)

    def _start_posted(self, vcpu: Vcpu) -> None:
        """An idle vCPU starts the first call posted for it, if any."""
        posted = self.posted[vcpu.index]
        if not posted or vcpu.state is not VcpuState.HALTED or vcpu.index in self.calls:
            return
        call = posted.pop(0)
        vcpu.sleep_until(self.now_ps)
        self.calls[vcpu.index] = HostCall(call.function, then_idle=True)
        self.platform.enter(vcpu, call.function, call.arguments, as_dom0=False, interrupts=call.interrupts)
        self.scheduler.queue(vcpu)

    def call_all(self, function: str | int, *arguments: int) -> list[int]:
        """`function(arguments)` on each vCPU in turn; their results in vCPU order."""
        return [self.call(index, function, *arguments) for index in range(len(self.vcpus))]

    def returned(self, vcpu: Vcpu) -> None:
        """A host call returned into the sentinel: note rax and stop the slice (`_run_slice` moves the vCPU
        on)."""
        call = self.calls.get(vcpu.index)
        if call is None:
            raise self.fault(vcpu, "returned into the host's sentinel with no call running", vcpu.current_pc())
        if call.result is None:  # the hook may fire again before the slice ends (Unicorn stops after the block)
            call.result = vcpu.read(self.arch.registers.result)
        vcpu.stop(StopReason.HOOK)

    def _after_call(self, vcpu: Vcpu) -> None:
        call = self.calls.pop(vcpu.index)
        if call.then_idle:
            self.platform.to_idle(vcpu)
        else:
            vcpu.state = VcpuState.WAITING_FOR_START

    # -- running -------------------------------------------------------------------------------------------------
    def _ran(self) -> None:
        self.drain_console()

    def add_alarm(self, time_ps: int, callback: Callable[[], None]) -> Alarm:
        """Call `callback` when virtual time reaches `time_ps` (a vCPU spinning on what it wrote then wakes)."""
        def ring() -> None:
            callback()
            self.spins.wake_changed(self.now_ps)
        return super().add_alarm(time_ps, ring)

    def run(self, *, until_ps: int, stop_when: Callable[[], bool] | None = None) -> None:
        self.spins.wake_changed(self.now_ps)  # the host may have written what a vCPU spins on
        super().run(until_ps=until_ps, stop_when=stop_when)

    def _step(self, vcpu: Vcpu, ready_ps: int, until_ps: int) -> None:
        self._run_step(vcpu, ready_ps, until_ps)
        self.spins.wake_changed(vcpu.clock_ps)

    def _run_step(self, vcpu: Vcpu, ready_ps: int, until_ps: int) -> None:
        if vcpu.state is SPINNING:  # an interrupt it may take arrived
            self.spins.wake(vcpu, ready_ps)
        if vcpu.preempted_until_ps > max(ready_ps, vcpu.clock_ps):
            vcpu.sit_out(ready_ps)
            self.scheduler.queue(vcpu)
            return
        if vcpu.state is HALTED:
            vcpu.sleep_until(ready_ps)
            vcpu.latch_due(NEVER)
            if not vcpu.deliverable():
                self.scheduler.queue(vcpu)
                return
            vcpu.wake()
            self.emit(vcpu, EventKind.WAKE)
            self.scheduler.forget(vcpu)
        else:
            vcpu.latch_due(NEVER)
        if self.interrupts.deliver(vcpu):
            self.serialise(vcpu)  # taking an interrupt serialises
        self._run_slice(vcpu, until_ps)
        self.scheduler.queue(vcpu)

    def _run_slice(self, vcpu: Vcpu, until_ps: int) -> None:
        scheduler = self.scheduler
        budget = scheduler.slice_budget(vcpu)
        arrival = vcpu.next_arrival_ps()
        horizon = min(until_ps, NEVER if arrival is None else arrival, scheduler.next_wake_ps(),
                      scheduler.next_alarm_ps()) - vcpu.clock_ps
        if horizon < budget * vcpu.ps_per_instruction:
            budget = max(1, -(-horizon // vcpu.ps_per_instruction))
        if vcpu.to_flush:
            vcpu.flush_pending()
        start_pc = vcpu.pc
        self.spins.slice.value += 1
        reason = self._run_watched(vcpu, budget)
        call = self.calls.get(vcpu.index)
        if call is not None and call.result is not None:
            self._after_call(vcpu)
        elif reason is HALT and vcpu.stop_reason is HALT:
            vcpu.settle(HALTED)
            self.emit(vcpu, EventKind.HALT, interrupts_enabled=vcpu.interrupts_enabled)
            self._start_posted(vcpu)
        elif reason is SPIN:
            vcpu.settle(SPINNING)
        elif reason is BUDGET and vcpu.pc == start_pc:
            self.devices.surface_lost_fault(vcpu)

    def _run_watched(self, vcpu: Vcpu, budget: int) -> StopReason:
        """Run `vcpu`'s slice; a watched block tells the WATCH_HIT subscribers and the slice goes on as if none were
        watched (the same budget: the oracle does not change what runs when)."""
        ran = 0
        while True:
            before = vcpu.instructions
            try:
                reason = vcpu.run_slice(budget, already=ran)
            except UcError as exc:
                raise self.fault(vcpu, vcpu.guard_fault or str(exc), vcpu.pc) from None
            error = vcpu.take_hook_error()
            if error is not None:
                raise error
            if reason is not WATCH:
                return reason
            ran += vcpu.instructions - before
            self.subscribers.notify(WATCH_HIT, vcpu, *vcpu.hit)
            vcpu.pass_watch()

    def drain_console(self) -> None:
        """Xen's console ring's new bytes, as lines."""
        data, self._console_seen = self.platform.console_bytes(self._console_seen)
        for line in self.console.write(0, data, self.now_ns):
            self.log.append(line.text.removeprefix(XEN_PREFIX))
            self.trace.emit(self.now_ns, None, EventKind.CONSOLE, text=line.text)

    # -- faults ---------------------------------------------------------------------------------------------------
    def fault(self, vcpu: Vcpu, what: str, pc: int, *, panic: str | None = None,
              report: tuple[str, ...] = ()) -> GuestFault:
        """The error that stops the run: vCPU, address with Xen's symbol, instruction, then the reason Xen's
        `panic` gave for it, else Xen's last console line; `report`: the lines Xen printed about it."""
        try:
            insn = self.arch.first_instruction(self.memory.read(pc, 16), pc)
        except MachineError:
            insn = "(outside RAM)"
        self.drain_console()
        self.emit(vcpu, EventKind.FAULT, what=what, rip=pc)
        then = f"Xen panicked: {panic}" if panic is not None else \
            f"Xen's last console line: {self.console.last_line()!r}"
        return GuestFault(f"vCPU {vcpu.index} fault: {what} at {pc:#x} <{self.describe(pc)}>: {insn}; {then}",
                          vcpu=vcpu.index, pc=pc, xen_log=report)

    def _panicked(self, vcpu: Vcpu) -> None:
        """Xen's `panic` printed its report and would now restart or halt the machine: the run stops there,
        with the reason Xen gave, at the fault Xen was handling if any."""
        self.drain_console()
        header = next((k for k in range(len(self.log) - 1, -1, -1) if self.log[k].startswith(PANIC_HEADER)), None)
        reason = self.log[header + 1] if header is not None and header + 1 < len(self.log) else "no reason printed"
        fault = self.faults.first_handled(vcpu)
        if fault is None:
            raise self.fault(vcpu, f"Xen panicked: {reason}", vcpu.current_pc())
        raise self.fault(vcpu, fault.what, fault.pc, panic=reason, report=tuple(self.log[fault.log_seen:]))

    def _invalid_opcode(self, vcpu: Vcpu) -> bool:
        """#UD (Unicorn reports it apart from other exceptions): Xen's BUG and WARN frames and
        `run_in_exception_handler` raise it on purpose; it goes through Xen's IDT to its own handler."""
        pc = vcpu.current_pc()
        vcpu.inject(self.arch.invalid_opcode_vector, return_pc=pc)
        self.emit(vcpu, EventKind.EXCEPTION, vector=self.arch.invalid_opcode_vector, rip=pc)
        return True

    def _exception(self, vcpu: Vcpu, intno: int) -> None:
        """A CPU exception Unicorn reports: #PF and #GP go to Xen's handlers (`faults.py`); any other stops the
        run."""
        stops = self.faults.take(vcpu, intno)
        if stops is not None:
            raise self.fault(vcpu, stops, vcpu.current_pc())

    def _unmapped(self, vcpu: Vcpu, address: int) -> bool:
        vcpu.guard_fault = f"access to {address:#x}, outside RAM"
        return False

    def _code_store(self, vcpu: Vcpu, physical: int, size: int) -> bool:
        """A store into Xen's text or the payload area (a write-protection hook: physical addresses), let through
        (True): the other vCPUs must drop what they translated of it when they next serialise."""
        self.rendezvous.code_store(vcpu, physical, size)
        window = self.memory.windows[0]
        begin = physical - window.physical + window.virtual
        self.code_writes.stored(vcpu.index, begin, begin + size)
        return True

    def serialise(self, vcpu: Vcpu) -> bool:
        """`vcpu` serialises: the code others wrote since it last did, it drops from its translations before its
        next slice. Whether it had to (a hook then stops before the serialising instruction, which runs again). A
        vCPU kept by `keep_stale` drops nothing (the drop_flush fault: a missing serialisation)."""
        ranges = self.code_writes.serialise(vcpu.index)
        vcpu.to_flush += ranges
        return bool(ranges)

    def keep_stale(self, vcpus: frozenset[int]) -> None:
        """From now until `keep_stale` again, `vcpus` drop nothing when they serialise; those no longer kept never
        drop what was written meanwhile (the drop_flush fault: the flushes an action owed them are lost)."""
        self.code_writes.keep(vcpus)

    @property
    def instructions(self) -> int:
        return sum(v.instructions for v in self.vcpus)


def _ram_mappings(host: int, code: list[tuple[int, int]], *, payload: tuple[int, int]) -> list[Mapping]:
    """RAM as Unicorn regions: the pages of `code` (physical ranges) readable and executable only, so that a store
    there, and only there, comes to a write-protection hook (`_code_store`, which lets it through). A
    UC_HOOK_MEM_WRITE, even over code alone, would send every load and store anywhere through Unicorn's slow path
    (boot ~30% dearer, a cold apply ~7%). And the `payload` area (physical) again at PAYLOAD_DATA, with every
    permission: its data pages are mapped there (platform.py's `map_payload`)."""
    mappings: list[Mapping] = []
    cursor = RAM_BASE
    for begin, end in sorted(code):
        begin, end = begin & ~(PAGE_SIZE - 1), round_up(end, PAGE_SIZE)
        mappings += [(cursor, host + cursor, begin - cursor, UC_PROT_ALL),
                     (begin, host + begin, end - begin, UC_PROT_READ | UC_PROT_EXEC)]
        cursor = end
    return [*mappings, (cursor, host + cursor, RAM_SIZE - cursor, UC_PROT_ALL),
            (PAYLOAD_DATA, host + payload[0], payload[1] - payload[0], UC_PROT_ALL)]

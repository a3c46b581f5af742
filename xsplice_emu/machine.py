"""The emulated machine: shared RAM, N vCPUs, devices, virtual time and a
seeded scheduler. It knows nothing of livepatching; see `firmware/ABI.md`
for the platform it emulates.

Scheduling: the runnable vCPU with the least virtual time runs next (ties
broken by a generator seeded by the configuration), for a slice whose length
(in instructions) comes from the same generator. Halted and parked vCPUs cost nothing until an interrupt they
can take arrives. Interrupts are taken at slice boundaries.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import asdict, dataclass
from typing import Callable

from unicorn import UcError
from unicorn.x86_const import UC_X86_REG_RDI as _RDI
from unicorn.x86_const import UC_X86_REG_RIP as _RIP

from . import native
from .console import Console
from .disasm import first_instruction, instructions
from .errors import ConfigError, GuestFault, MachineError
from .hooks import install
from .image import Image
from .memory import GuestMemory
from .platform import (
    CALL_FUNCTION_VECTOR,
    CALL_SLOT_DONE,
    CALL_SLOT_FREE,
    CALL_SLOT_PENDING,
    CALL_SLOT_SIZE,
    CALL_SLOTS,
    CLOCK_PAGE,
    EXCEPTION_NAMES,
    FATAL_PANIC,
    NMI_VECTOR,
    NR_CPUS,
    PORT_CALL_DONE,
    PORT_CONSOLE,
    PORT_FATAL,
    PORT_START_CPU,
    PORT_TASK,
    PORT_TIMER,
    RAM_BASE,
)
from .tracing.trace import Trace
from .vcpu import StopReason, Vcpu, VcpuState

NEVER = 1 << 126
PS_PER_NS = 1000
PS_PER_SECOND = 10**12


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


@dataclass
class Alarm:
    """A host callback due at a virtual time; `cancel()` before it fires to drop it."""

    time_ps: int
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class Machine:
    """N vCPUs over one RAM running a firmware image, deterministic by seed."""

    def __init__(self, image: Image, *, config: MachineConfig = MachineConfig()):
        config.validate()
        self.image = image
        self.config = config
        self.memory = GuestMemory(config.ram_mib << 20)
        self._load(image)
        self.ps_per_instruction = PS_PER_SECOND // config.clock_hz
        self.timer_period_ps = PS_PER_SECOND // config.timer_hz
        self.rng = random.Random(config.seed)
        self.trace = Trace({"seed": config.seed, "options": asdict(config),
                            "firmware_build_id": image.build_id.hex(), "vcpus": config.vcpus,
                            "clock_hz": config.clock_hz})
        self.console = Console(config.vcpus)
        self.table = native.BlockTable(self.memory.host_address + RAM_BASE, RAM_BASE, self.memory.size - RAM_BASE)
        iretqs = _iretq_addresses(image, self.memory)
        self.vcpus = [Vcpu(i, self.memory, self.table) for i in range(config.vcpus)]
        for vcpu in self.vcpus:
            install(vcpu, self, iretqs)
        self.port_in_handlers: dict[int, Callable[[Vcpu], int]] = {}
        self.now_ps = 0
        self._ready: list[tuple[int, int, int, int]] = []  # (time, seeded tie-break, vCPU, generation)
        self._sleepers: list[tuple[int, int, int]] = []  # (wake time, vCPU, generation) of halted/parked vCPUs
        self._alarms: list[tuple[int, int, Alarm]] = []
        self._seq = itertools.count()
        self._awaited_slots: set[tuple[int, int]] = set()
        self._call_slots = image.address("call_slots")
        self._nmi_callback = image.address("nmi_callback")
        self._default_nmi_callback = image.address("default_nmi_callback")
        self._task_names: dict[int, str] = {}
        self.vcpus[0].start(image.entry, rdi=0, rsi=config.vcpus)
        self._emit(self.vcpus[0], "cpu_start", by=None)
        self._schedule(self.vcpus[0])

    def _load(self, image: Image) -> None:
        for seg in image.segments:
            if seg.address < RAM_BASE or seg.address + seg.memory_size > self.memory.size:
                raise ConfigError(f"{image.path}: segment at {seg.address:#x} does not fit in {self.config.ram_mib} MiB of RAM")
            self.memory.write(seg.address, seg.data + bytes(seg.memory_size - len(seg.data)))

    # -- time ------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        return self.now_ps // PS_PER_NS

    def time_of(self, vcpu: Vcpu) -> int:
        """Virtual time (ps) of `vcpu`, exact also from inside its hooks."""
        return vcpu.current_time_ps(self.ps_per_instruction)

    def add_alarm(self, time_ps: int, callback: Callable[[], None]) -> Alarm:
        """Call `callback` when virtual time reaches `time_ps`."""
        alarm = Alarm(time_ps, callback)
        heapq.heappush(self._alarms, (time_ps, next(self._seq), alarm))
        return alarm

    # -- running ---------------------------------------------------------
    def run_for(self, ns: int, *, stop_when: Callable[[], bool] | None = None) -> None:
        """Advance virtual time by `ns` (or until `stop_when()` holds)."""
        self.run(until_ps=self.now_ps + ns * PS_PER_NS, stop_when=stop_when)

    def run(self, *, until_ps: int, stop_when: Callable[[], bool] | None = None) -> None:
        """Run vCPUs, least virtual time first, until `until_ps` or `stop_when()`."""
        while not (stop_when and stop_when()):
            vcpu_time, vcpu = self._peek()
            alarm_time = self._alarms[0][0] if self._alarms else NEVER
            if min(vcpu_time, alarm_time) >= until_ps:
                self.now_ps = max(self.now_ps, until_ps)
                return
            if alarm_time <= vcpu_time:
                _, _, alarm = heapq.heappop(self._alarms)
                self.now_ps = max(self.now_ps, alarm_time)
                if not alarm.cancelled:
                    alarm.callback()
                continue
            heapq.heappop(self._ready)
            self.now_ps = max(self.now_ps, vcpu_time)
            self._step(vcpu, vcpu_time, until_ps)

    def _peek(self) -> tuple[int, Vcpu | None]:
        ready = self._ready
        while ready:
            time_ps, _, index, generation = ready[0]
            vcpu = self.vcpus[index]
            if generation == vcpu.heap_generation:
                return time_ps, vcpu
            heapq.heappop(ready)
        return NEVER, None

    def _schedule(self, vcpu: Vcpu) -> None:
        """(Re)compute when `vcpu` next needs the host and queue it."""
        vcpu.heap_generation += 1
        if vcpu.state is VcpuState.RUNNING:
            when = vcpu.clock_ps
        elif vcpu.state is VcpuState.WAITING_FOR_START:
            return
        elif vcpu.deliverable():
            when = vcpu.clock_ps
        else:
            when = vcpu.next_arrival_ps()
            if when is None:
                return
            heapq.heappush(self._sleepers, (when, vcpu.index, vcpu.heap_generation))
        heapq.heappush(self._ready, (when, self.rng.getrandbits(20), vcpu.index, vcpu.heap_generation))

    def _next_wake_ps(self) -> int:
        """When the next halted or parked vCPU wakes: a running vCPU's slice stops there, so
        what the sleeper does (an NMI handler, say) comes before what the runner does after it."""
        sleepers = self._sleepers
        while sleepers:
            time_ps, index, generation = sleepers[0]
            if generation == self.vcpus[index].heap_generation:
                return time_ps
            heapq.heappop(sleepers)
        return NEVER

    def _step(self, vcpu: Vcpu, ready_ps: int, until_ps: int) -> None:
        if vcpu.state is not VcpuState.RUNNING:
            slept = max(0, ready_ps - vcpu.clock_ps)
            if vcpu.state is VcpuState.HALTED:
                vcpu.halted_ps += slept
            else:
                vcpu.parked_ps += slept
            vcpu.clock_ps += slept
        vcpu.latch_due(self.timer_period_ps)
        if vcpu.state is not VcpuState.RUNNING:
            if not vcpu.deliverable():
                self._schedule(vcpu)
                return
            if vcpu.state is VcpuState.HALTED:
                self._emit(vcpu, "wake")
            else:
                self._emit(vcpu, "unpark", cause="interrupt")
            vcpu.state = VcpuState.RUNNING
            vcpu.heap_generation += 1  # its wake-up is now, not a sleeper's to bound its own slice
        if vcpu.nmi_pending or vcpu.pending_vectors:
            vector = vcpu.take_interrupt()
            if vector is not None:
                self._trace_delivery(vcpu, vector)
        self._run_slice(vcpu, until_ps)
        self._schedule(vcpu)

    def _run_slice(self, vcpu: Vcpu, until_ps: int) -> None:
        config = self.config
        budget = config.slice_min + int(self.rng.random() * (config.slice_max - config.slice_min + 1))
        arrival = vcpu.next_arrival_ps()
        horizon = min(until_ps, NEVER if arrival is None else arrival, self._next_wake_ps(),
                      self._alarms[0][0] if self._alarms else NEVER) - vcpu.clock_ps
        if horizon < budget * self.ps_per_instruction:
            budget = max(1, -(-horizon // self.ps_per_instruction))
        self.memory.write_u64(CLOCK_PAGE + 8 * vcpu.index, vcpu.clock_ps // PS_PER_NS)
        try:
            reason, executed = vcpu.run_slice(budget)
        except UcError as exc:
            vcpu.clock_ps = self.time_of(vcpu)
            raise self._fault(vcpu, str(exc), vcpu.read(_RIP)) from None
        vcpu.clock_ps += executed * self.ps_per_instruction
        vcpu.instructions += executed
        if vcpu.hook_error is not None:
            error, vcpu.hook_error = vcpu.hook_error, None
            raise error
        if reason is StopReason.HALT:
            if self.memory.read_u8(vcpu.rip - 1) != 0xF4:
                raise self._fault(vcpu, "emulation stopped for no known reason", vcpu.rip)
            vcpu.state = VcpuState.HALTED
            vcpu.read_interrupt_flag()
            self._emit(vcpu, "halt", interrupts_enabled=vcpu.interrupts_enabled)
        elif reason is StopReason.PARK:
            vcpu.state = VcpuState.PARKED
            vcpu.read_interrupt_flag()

    def _trace_delivery(self, vcpu: Vcpu, vector: int) -> None:
        vcpu.handlers.append(vector)
        sender = vcpu.senders.pop(vector, None)
        if vector == NMI_VECTOR:
            self._emit(vcpu, "nmi", vector=vector, sender=sender)
            if self.memory.read_u64(self._nmi_callback) != self._default_nmi_callback:
                self._emit(vcpu, "nmi_lost")
        else:
            self._emit(vcpu, "interrupt", vector=vector, sender=sender)

    # -- faults ----------------------------------------------------------
    def _fault(self, vcpu: Vcpu, what: str, rip: int) -> GuestFault:
        try:
            insn = first_instruction(self.memory.read(rip, 16), rip)
        except MachineError:
            insn = "(outside RAM)"
        self._emit(vcpu, "fault", what=what, rip=rip)
        message = (f"vCPU {vcpu.index} fault: {what} at {rip:#x} <{self.image.describe(rip)}>: {insn}; "
                   f"last console line: {self.console.last_line(vcpu.index)!r}")
        return GuestFault(message, vcpu=vcpu.index, rip=rip)

    # -- devices (called from hooks) -------------------------------------
    def port_out(self, vcpu: Vcpu, port: int, value: int) -> None:
        if port == PORT_CONSOLE:
            line = self.console.put(vcpu.index, value & 0xFF, self.time_of(vcpu) // PS_PER_NS)
            if line is not None:
                self._emit(vcpu, "console", text=line.text)
        elif port == PORT_TIMER:
            vcpu.timer_vector = value & 0xFF
            period = self.timer_period_ps
            vcpu.next_tick_ps = (self.time_of(vcpu) // period + 1) * period
            self._emit(vcpu, "timer", vector=vcpu.timer_vector)
        elif port == PORT_TASK:
            self._emit(vcpu, "task", task=self._task_name(value))
        elif port == PORT_START_CPU:
            self._start_cpu(vcpu, value)
        elif port == PORT_CALL_DONE:
            if (vcpu.index, value) in self._awaited_slots:
                vcpu.stop_reason = StopReason.HOOK
                vcpu.uc.emu_stop()
        elif port == PORT_FATAL:
            rip = vcpu.read(_RDI)
            what = "panic" if value == FATAL_PANIC else f"exception {EXCEPTION_NAMES.get(value, value)}"
            raise self._fault(vcpu, what, rip)
        else:
            raise self._fault(vcpu, f"write of {value:#x} to unknown port {port:#x}", vcpu.read(_RIP))

    def _task_name(self, address: int) -> str:
        name = self._task_names.get(address)
        if name is None:
            name = self._task_names[address] = self.image.describe(address)
        return name

    def port_in(self, vcpu: Vcpu, port: int) -> int:
        handler = self.port_in_handlers.get(port)
        return handler(vcpu) if handler else 0xFFFFFFFF

    def exception(self, vcpu: Vcpu, intno: int) -> None:
        """A CPU exception or `int n`: deliver it through the guest IDT."""
        rip = vcpu.read(_RIP)
        try:
            vcpu.inject(intno, frame_rip=rip)
        except MachineError as exc:
            raise self._fault(vcpu, f"exception {EXCEPTION_NAMES.get(intno, intno)} with no handler ({exc})", rip) from None
        vcpu.handlers.append(intno)
        self._emit(vcpu, "exception", vector=intno, rip=rip)

    def iretq(self, vcpu: Vcpu) -> None:
        """A handler returns. Any iretq ends NMI blocking; stop so a waiting NMI is taken at once."""
        self._emit(vcpu, "iret", vector=vcpu.handlers.pop() if vcpu.handlers else None)
        if vcpu.nmi_blocked:
            vcpu.nmi_blocked = False
            self._emit(vcpu, "nmi_unblocked")
            if vcpu.nmi_pending:
                vcpu.stop_reason = StopReason.HOOK
                vcpu.uc.emu_stop()

    def _start_cpu(self, sender: Vcpu, index: int) -> None:
        if not 0 <= index < len(self.vcpus) or self.vcpus[index].state is not VcpuState.WAITING_FOR_START:
            raise self._fault(sender, f"start of vCPU {index}, which does not exist or already runs",
                              sender.read(_RIP))
        target = self.vcpus[index]
        target.clock_ps = self.time_of(sender)
        target.start(self.image.entry, rdi=index, rsi=len(self.vcpus))
        self._emit(target, "cpu_start", by=sender.index)
        self._schedule(target)

    # -- the surface for the livepatch controller and tests ---------------
    def send_interrupt(self, index: int, vector: int, *, at_ps: int | None = None, sender: int | None = None) -> None:
        """Raise `vector` (NMI_VECTOR for an NMI) on vCPU `index` at `at_ps` (default: now)."""
        target = self._vcpu(index)
        sent_ps = self.now_ps if at_ps is None else at_ps
        target.post(max(sent_ps, target.clock_ps), next(self._seq), vector, sender)
        self.trace.emit(sent_ps // PS_PER_NS, sender, "ipi", to=index, vector=vector)
        self._schedule(target)

    def park(self, vcpu: Vcpu) -> None:
        """From inside `vcpu`'s own port hook: stop it until released or interrupted."""
        vcpu.stop_reason = StopReason.PARK
        vcpu.uc.emu_stop()
        self._emit(vcpu, "park")

    def release(self, index: int, *, at_ps: int) -> None:
        """Let a parked vCPU run again from `at_ps`."""
        vcpu = self._vcpu(index)
        if vcpu.state is VcpuState.PARKED:
            vcpu.parked_ps += max(0, at_ps - vcpu.clock_ps)
            vcpu.clock_ps = max(vcpu.clock_ps, at_ps)
            vcpu.state = VcpuState.RUNNING
            self._emit(vcpu, "unpark", cause="release")
            self._schedule(vcpu)

    def invalidate_code(self, begin: int, end: int) -> None:
        """Drop translated code overlapping `[begin, end)` on every vCPU."""
        for vcpu in self.vcpus:
            vcpu.uc.ctl_remove_cache(begin, end)
        self.table.forget(begin, end)

    def call(self, index: int, function: str | int, arg0: int = 0, arg1: int = 0, *,
             wait: bool = True, timeout_ns: int = 100_000_000,
             at_ps: int | None = None, sender: int | None = None) -> int | None:
        """Run `function(arg0, arg1)` on vCPU `index` through the call-function
        IPI; with `wait`, run the machine until it returns and give its result."""
        slot = self._post_call(index, function, arg0, arg1, at_ps=at_ps, sender=sender)
        return self._await_calls([slot], function, timeout_ns)[0] if wait else None

    def call_all(self, function: str | int, arg0: int = 0, arg1: int = 0, *,
                 timeout_ns: int = 100_000_000) -> list[int]:
        """Run `function(arg0, arg1)` on every vCPU at once; their results in vCPU order."""
        slots = [self._post_call(index, function, arg0, arg1) for index in range(len(self.vcpus))]
        return self._await_calls(slots, function, timeout_ns)

    def _post_call(self, index: int, function: str | int, arg0: int, arg1: int, *,
                   at_ps: int | None = None, sender: int | None = None) -> tuple[int, int]:
        vcpu = self._vcpu(index)
        address = self.image.address(function) if isinstance(function, str) else function
        slot = self._free_slot(vcpu.index)
        base = self._slot_address(vcpu.index, slot)
        self.memory.write_u64(base, address)
        self.memory.write_u64(base + 8, arg0)
        self.memory.write_u64(base + 16, arg1)
        self.memory.write_u64(base + 24, 0)
        self.memory.write_u64(base + 40, next(self._seq))
        self.memory.write_u32(base + 32, CALL_SLOT_PENDING)
        self.send_interrupt(vcpu.index, CALL_FUNCTION_VECTOR, at_ps=at_ps, sender=sender)
        return vcpu.index, slot

    def _await_calls(self, slots: list[tuple[int, int]], function: str | int, timeout_ns: int) -> list[int]:
        bases = [self._slot_address(vcpu, slot) for vcpu, slot in slots]
        self._awaited_slots.update(slots)
        try:
            self.run_for(timeout_ns, stop_when=lambda: all(self.memory.read_u32(b + 32) == CALL_SLOT_DONE for b in bases))
        finally:
            self._awaited_slots.difference_update(slots)
        name = function if isinstance(function, str) else f"{function:#x}"
        results = []
        for (vcpu, _), base in zip(slots, bases):
            if self.memory.read_u32(base + 32) != CALL_SLOT_DONE:
                raise MachineError(f"vCPU {vcpu} did not finish {name} within {timeout_ns / 1e6:g} ms of virtual time")
            self.memory.write_u32(base + 32, CALL_SLOT_FREE)
            results.append(self.memory.read_u64(base + 24))
        return results

    def per_cpu(self, symbol: str) -> list[int]:
        """The firmware's per-CPU array `symbol` (NR_CPUS integers), element by element."""
        array = self.image.symbol(symbol)
        width = array.size // NR_CPUS
        data = self.memory.read(array.address, array.size)
        return [int.from_bytes(data[i:i + width], "little") for i in range(0, width * NR_CPUS, width)]

    def _slot_address(self, vcpu: int, slot: int) -> int:
        return self._call_slots + (vcpu * CALL_SLOTS + slot) * CALL_SLOT_SIZE

    def _free_slot(self, vcpu: int) -> int:
        for slot in range(CALL_SLOTS):
            if (vcpu, slot) in self._awaited_slots:
                continue
            state = self.memory.read_u32(self._slot_address(vcpu, slot) + 32)
            if state in (CALL_SLOT_FREE, CALL_SLOT_DONE):
                return slot
        raise MachineError(f"vCPU {vcpu}: all {CALL_SLOTS} call slots are busy")

    def _vcpu(self, index: int) -> Vcpu:
        if not 0 <= index < len(self.vcpus):
            raise MachineError(f"no vCPU {index} (the machine has {len(self.vcpus)})")
        return self.vcpus[index]

    def _emit(self, vcpu: Vcpu, kind: str, **fields) -> None:
        self.trace.emit(self.time_of(vcpu) // PS_PER_NS, vcpu.index, kind, **fields)

    # -- figures ---------------------------------------------------------
    @property
    def instructions(self) -> int:
        return sum(v.instructions for v in self.vcpus)


def _iretq_addresses(image: Image, memory: GuestMemory) -> list[int]:
    """Every iretq in the firmware's functions (where NMI blocking ends)."""
    found = []
    for func in image.functions():
        if func.size:
            for address, _, text in instructions(memory.read(func.address, func.size), func.address):
                if text.startswith("iretq"):
                    found.append(address)
    return sorted(set(found))


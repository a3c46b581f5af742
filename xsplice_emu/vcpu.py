"""One virtual CPU: a Unicorn instance over the shared RAM, its clock and its
interrupt state (the local APIC that Unicorn lacks)."""

from __future__ import annotations

import ctypes
import heapq
import struct
from enum import Enum

from unicorn import UC_ARCH_X86, UC_HOOK_BLOCK, UC_MODE_64, UC_PROT_ALL, Uc
from unicorn.unicorn_py3.unicorn import uclib
from unicorn.x86_const import (
    UC_X86_REG_EFLAGS,
    UC_X86_REG_IDTR,
    UC_X86_REG_RDI,
    UC_X86_REG_RIP,
    UC_X86_REG_RSI,
    UC_X86_REG_RSP,
)

from . import native
from .errors import MachineError
from .memory import GuestMemory
from .platform import CODE_SELECTOR, DATA_SELECTOR, NMI_VECTOR, RAM_BASE

RFLAGS_TF = 1 << 8
RFLAGS_IF = 1 << 9
RFLAGS_NT = 1 << 14
RFLAGS_RF = 1 << 16
UNTIL_NEVER = 1  # `until` address for emu_start: page 0 is never mapped
TCG_BUFFER_SIZE = 32 << 20


class VcpuState(Enum):
    WAITING_FOR_START = "waiting"
    RUNNING = "running"
    HALTED = "halted"
    PARKED = "parked"


class StopReason(Enum):
    BUDGET = "budget"
    HALT = "halt"
    PARK = "park"
    HOOK = "hook"


class Vcpu:
    """A vCPU: registers in Unicorn, time and pending interrupts in Python."""

    def __init__(self, index: int, memory: GuestMemory, table: native.BlockTable):
        self.index = index
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self.uc.ctl_set_tcg_buffer_size(TCG_BUFFER_SIZE)
        self.uc.mem_map_ptr(RAM_BASE, memory.size - RAM_BASE, UC_PROT_ALL, memory.host_address + RAM_BASE)
        self.memory = memory
        self.table = table  # the C hook reads it: keep it alive as long as this vCPU
        self.budget = native.VcpuBudget(table.pointer, native.emu_stop_address(), 0, 0, 0)
        handle = ctypes.c_size_t()
        status = uclib.uc_hook_add(self.uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK,
                                   ctypes.c_void_p(native.on_block_address()),
                                   ctypes.cast(ctypes.byref(self.budget), ctypes.c_void_p), 1, 0)
        if status:
            raise MachineError(f"vCPU {index}: uc_hook_add for the block budget failed ({status})")
        self.state = VcpuState.WAITING_FOR_START
        self.rip = 0
        self.clock_ps = 0
        self.instructions = 0
        self.halted_ps = 0
        self.parked_ps = 0
        self.interrupts_enabled = False
        self.pending_vectors: set[int] = set()
        self.nmi_pending = False
        self.nmi_blocked = False
        self.arrivals: list[tuple[int, int, int, int | None]] = []  # (time_ps, seq, vector, sender) not yet due
        self.senders: dict[int, int | None] = {}  # latched vector -> the vCPU that sent it (for the trace)
        self.handlers: list[int] = []  # vectors whose handlers run, innermost last (for the trace)
        self.timer_vector = 0
        self.next_tick_ps = 0
        self.stop_reason: StopReason | None = None
        self.hook_error: BaseException | None = None
        self.heap_generation = 0
        self._register_buffer = ctypes.c_uint64()
        self._register_buffer_pointer = ctypes.cast(ctypes.byref(self._register_buffer), ctypes.c_void_p)

    # -- registers (the binding's reg_read costs ~8 us; this ~1 us) --------
    def read(self, register: int) -> int:
        """A 64-bit general register, RIP or RFLAGS."""
        status = uclib.uc_reg_read(self.uc._uch, register, self._register_buffer_pointer)
        if status:
            raise MachineError(f"vCPU {self.index}: reading register {register} failed ({status})")
        return self._register_buffer.value

    def write(self, register: int, value: int) -> None:
        """Set a 64-bit general register, RIP or RFLAGS."""
        self._register_buffer.value = value
        status = uclib.uc_reg_write(self.uc._uch, register, self._register_buffer_pointer)
        if status:
            raise MachineError(f"vCPU {self.index}: writing register {register} failed ({status})")

    # -- running -------------------------------------------------------
    def start(self, entry: int, *, rdi: int, rsi: int) -> None:
        """Begin executing at `entry` with the boot registers of firmware/ABI.md."""
        self.write(UC_X86_REG_RDI, rdi)
        self.write(UC_X86_REG_RSI, rsi)
        self.rip = entry
        self.state = VcpuState.RUNNING

    def run_slice(self, budget: int) -> tuple[StopReason, int]:
        """Run at most `budget` instructions; return why it stopped and how many ran."""
        b = self.budget
        b.budget = budget
        b.executed = 0
        b.stopped = 0
        self.stop_reason = None
        self.uc.emu_start(self.rip, UNTIL_NEVER)
        self.rip = self.read(UC_X86_REG_RIP)
        executed, b.executed = b.executed, 0
        if self.stop_reason is not None:
            reason = self.stop_reason
        elif b.stopped:
            reason = StopReason.BUDGET
        else:
            reason = StopReason.HALT
        return reason, executed

    def current_time_ps(self, ps_per_instruction: int) -> int:
        """Virtual time of this vCPU now, also from inside a hook mid-slice."""
        return self.clock_ps + self.budget.executed * ps_per_instruction

    def read_interrupt_flag(self) -> bool:
        self.interrupts_enabled = bool(self.read(UC_X86_REG_EFLAGS) & RFLAGS_IF)
        return self.interrupts_enabled

    # -- interrupts ----------------------------------------------------
    def post(self, time_ps: int, seq: int, vector: int, sender: int | None = None) -> None:
        """An interrupt (or NMI) from `sender` (None: the host) that reaches this vCPU at `time_ps`."""
        if time_ps <= self.clock_ps:
            self._latch(vector, sender)
        else:
            heapq.heappush(self.arrivals, (time_ps, seq, vector, sender))

    def _latch(self, vector: int, sender: int | None) -> None:
        if vector == NMI_VECTOR:
            self.nmi_pending = True
        else:
            self.pending_vectors.add(vector)
        self.senders.setdefault(vector, sender)

    def latch_due(self, period_ps: int) -> None:
        """Move interrupts due by this vCPU's clock into the pending latches."""
        while self.arrivals and self.arrivals[0][0] <= self.clock_ps:
            _, _, vector, sender = heapq.heappop(self.arrivals)
            self._latch(vector, sender)
        if self.timer_vector and self.next_tick_ps <= self.clock_ps:
            self.pending_vectors.add(self.timer_vector)
            missed = (self.clock_ps - self.next_tick_ps) // period_ps + 1
            self.next_tick_ps += missed * period_ps

    def next_arrival_ps(self) -> int | None:
        """When the next interrupt not yet latched arrives (timer included)."""
        times = []
        if self.arrivals:
            times.append(self.arrivals[0][0])
        if self.timer_vector:
            times.append(self.next_tick_ps)
        return min(times) if times else None

    def deliverable(self) -> bool:
        """Whether a latched interrupt could be taken now."""
        if self.nmi_pending and not self.nmi_blocked:
            return True
        return bool(self.pending_vectors) and self.interrupts_enabled

    def inject(self, vector: int, *, frame_rip: int | None = None) -> int:
        """Deliver `vector` through the guest IDT: push the 64-bit frame, clear
        IF/TF/NT/RF, jump to the handler. Returns the handler address."""
        uc = self.uc
        _, idt_base, idt_limit, _ = uc.reg_read(UC_X86_REG_IDTR)
        if vector * 16 + 15 > idt_limit:
            raise MachineError(f"vCPU {self.index}: vector {vector:#x} is beyond the IDT (limit {idt_limit:#x})")
        low, high = struct.unpack("<QQ", self.memory.read(idt_base + vector * 16, 16))
        if not (low >> 47) & 1:
            raise MachineError(f"vCPU {self.index}: IDT gate for vector {vector:#x} is not present")
        handler = (low & 0xFFFF) | ((low >> 32) & 0xFFFF0000) | ((high & 0xFFFFFFFF) << 32)
        gate_type = (low >> 40) & 0xF
        rsp = self.read(UC_X86_REG_RSP)
        rflags = self.read(UC_X86_REG_EFLAGS)
        rip = self.rip if frame_rip is None else frame_rip
        frame = (rsp & ~0xF) - 40
        self.memory.write(frame, struct.pack("<5Q", rip, CODE_SELECTOR, rflags, rsp, DATA_SELECTOR))
        self.write(UC_X86_REG_RSP, frame)
        cleared = RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | (RFLAGS_IF if gate_type == 0xE else 0)
        self.write(UC_X86_REG_EFLAGS, rflags & ~cleared)
        self.write(UC_X86_REG_RIP, handler)
        self.rip = handler
        self.interrupts_enabled = self.interrupts_enabled and gate_type != 0xE
        return handler

    def take_interrupt(self) -> int | None:
        """Deliver the highest-priority latched interrupt that may be taken now."""
        if self.nmi_pending and not self.nmi_blocked:
            self.nmi_pending = False
            self.nmi_blocked = True
            self.inject(NMI_VECTOR)
            return NMI_VECTOR
        if self.pending_vectors and self.read_interrupt_flag():
            vector = max(self.pending_vectors)
            self.pending_vectors.discard(vector)
            self.inject(vector)
            return vector
        return None


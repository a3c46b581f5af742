"""One virtual CPU: a Unicorn instance over the shared RAM, its clock and its
interrupt state (the local APIC that Unicorn lacks)."""

from __future__ import annotations

import ctypes
import heapq
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any

from unicorn import (
    UC_CTL_IO_WRITE,
    UC_CTL_TB_REMOVE_CACHE,
    UC_CTL_TLB_FLUSH,
    UC_HOOK_BLOCK,
    UC_HOOK_MEM_FETCH_PROT,
    Uc,
    UcError,
)
from unicorn.unicorn_py3.unicorn import uclib

from ..arch import Architecture
from ..errors import MachineError
from ..platform import STACK_SIZE
from . import native
from .memory import GuestMemory
from .paging import Mapping

TCG_BUFFER_SIZE = 32 << 20
PR_SET_THP_DISABLE = 41
"""prctl(2): this process gets no transparent huge pages, its forked children neither."""
UC_CTL_IO_SHIFT = 30
"""Where uc_ctl's request number holds its direction (UC_CTL_IO_*): the binding has no TLB flush of its own."""
UC_CTL_NARGS_SHIFT = 26
"""Where uc_ctl's request number holds how many arguments follow."""
REMOVE_CACHE = UC_CTL_TB_REMOVE_CACHE | 2 << UC_CTL_NARGS_SHIFT | UC_CTL_IO_WRITE << UC_CTL_IO_SHIFT
"""uc_ctl's request to drop translated code in [begin, end) (the binding's ctl_remove_cache costs ~4x more)."""


class VcpuState(Enum):
    WAITING_FOR_START = "waiting"
    RUNNING = "running"
    HALTED = "halted"
    PARKED = "parked"
    SPINNING = "spinning"


class StopReason(Enum):
    BUDGET = "budget"
    HALT = "halt"
    PARK = "park"
    HOOK = "hook"
    WATCH = "watch"
    SPIN = "spin"


RUNNING = VcpuState.RUNNING
"""VcpuState.RUNNING as a module name, for the slice loop: in Python 3.11 an Enum member looked up on its class
costs ~0.2 us (EnumType's __getattr__ slows every class attribute lookup), a module name ~0.01 us."""
BUDGET = StopReason.BUDGET
"""StopReason.BUDGET as a module name, for the slice loop (see RUNNING)."""


@dataclass(frozen=True)
class Snapshot:
    """A vCPU's registers and interrupt state at one point, and its live stack (from its stack pointer to the
    top of its STACK_SIZE-aligned stack), to go back to: code that abandoned its frames (a hook that ran the
    scheduler, which resets the stack) may have written over the ones the snapshot returns into."""

    context: Any
    pc: int
    handlers: int
    nmi_blocked: bool
    interrupts_enabled: bool
    stack_pointer: int
    stack: bytes


@cache
def no_huge_pages() -> None:
    """Have this process (and the children it forks) use no transparent huge pages, once. Unicorn asks for them
    for each instance's buffer of translated code (madvise): an instance's first translation then faults in and
    zeroes 2 MiB, and where memory is fragmented the kernel compacts it to find them. Making a 72-vCPU machine took
    0.7-1.1 s with them (mostly system time) and 0.15 s without, its resident memory 233 MB against 92; a 256-vCPU
    boot 2.2 s against 0.6; guest MIPS and translation the same. Only memory that asks for huge pages is concerned
    (all of it where the system gives them always). Linux only; elsewhere nothing changes."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)


class Vcpu:
    """A vCPU: registers in Unicorn, time and pending interrupts in Python."""

    def __init__(self, index: int, arch: Architecture, memory: GuestMemory, table: native.BlockTable, *,
                 mappings: list[Mapping], paging_root: int | None, ps_per_instruction: int):
        self.index = index
        self.arch = arch
        no_huge_pages()
        self.uc = Uc(*arch.unicorn_mode)
        self._uch = self.uc._uch
        self.uc.ctl_set_tcg_buffer_size(TCG_BUFFER_SIZE)
        # Unicorn's exit addresses on, and none set but while `emulate` runs: `run_slice` gives no `until` (its
        # slices end by the budget hook), and Unicorn drops no translation at one after every slice (a `until`
        # never reached cost a failed page walk of page 0: ~0.4 us a slice, more inside an apply).
        self.uc.ctl_exits_enabled(True)
        for guest, host, size, permissions in mappings:
            self.uc.mem_map_ptr(guest, size, permissions, host)
        if paging_root is not None:
            arch.enable_paging(self.uc, paging_root)
        self.memory = memory
        self.ps_per_instruction = ps_per_instruction
        self.table = table  # the C hook reads it: keep it alive as long as this vCPU
        self.budget = native.new_budget(table, self._uch, pc_register=arch.registers.pc,
                                        flags_register=arch.registers.flags)
        self.budget.ps_per_instruction = ps_per_instruction
        self._budget_pointer = ctypes.addressof(self.budget)
        self._run_slice = native.run_slice_function()
        self.add_hook(UC_HOOK_BLOCK, ctypes.c_void_p(native.on_block_address()),
                      ctypes.cast(ctypes.byref(self.budget), ctypes.c_void_p), 1, 0)  # (1 > 0: everywhere)
        self.state = VcpuState.WAITING_FOR_START
        self.pc = 0
        self.clock_ps = 0
        self.instructions = 0
        self.halted_ps = 0
        self.parked_ps = 0
        self.preempted_ps = 0
        self.preempted_until_ps = 0  # the host schedules it again from then (a preempt fault)
        self.interrupts_enabled = False
        self.pending_vectors: set[int] = set()
        self.nmi_pending = False
        self.nmi_blocked = False
        self.arrivals: list[tuple[int, int, int, int | None]] = []  # (time_ps, seq, vector, sender) not yet due
        self.senders: dict[int, int | None] = {}  # latched vector -> the vCPU that sent it (for the trace)
        self.handlers: list[int] = []  # vectors whose handlers run, innermost last (for the trace)
        self.timer_vector = 0
        self.next_tick_ps = 0
        self.unseen_code: list[tuple[int, int]] = []  # ranges other vCPUs wrote since this one serialised
        self.to_flush: list[tuple[int, int]] = []  # ranges to drop from its translated code after this slice
        self.open_code_pages: dict[int, bytes] = {}  # code pages whose alias it may write this slice -> their bytes
        self.alias_fault: tuple[int, int] | None = None  # (address, size) of a store into code that faulted
        self.guard_fault: str | None = None  # what touching its guard page was, for the fault it ends in
        self.hit: tuple[int, int] = (0, 0)  # (address, size) of the block that last hit a watch
        self.stop_reason: StopReason | None = None
        self.hook_error: BaseException | None = None
        self.on_fault: Callable[[BaseException], bool] | None = None
        """Asked first when this vCPU faults; True: it recovered the vCPU, the run goes on."""
        self.on_trap: Callable[[Vcpu, int, int], None] | None = None
        """Called with (this vCPU, address, size) when a block holding a trap address (`BlockTable.set_traps`) is
        about to run; the slice then goes on from that block, which must no longer hold one."""
        self.instruction_hooks: list[Any] = []  # ctypes callbacks Unicorn calls (hooks.py): kept alive here
        self.loop_take_back: Callable[[], None] | None = None
        """Brings what the machine's C slice loop holds into Python (`slice_loop.py`)."""
        self._fresh_blocks: dict[int, bytes] = {}  # address -> the bytes of the block `fresh_block_size` made there
        self._register_buffer = ctypes.c_uint64()
        self._register_buffer_pointer = ctypes.cast(ctypes.byref(self._register_buffer), ctypes.c_void_p)

    def close(self) -> None:
        """Free this vCPU's Unicorn instance now: the binding closes it in a finalizer of its own, which runs
        once, here, instead of when the collector gets to it. A later use of the instance is an AttributeError,
        never a call on a freed handle."""
        if hasattr(self, "_uch"):
            self.uc._Uc__finalizer()  # (private in the binding, pinned: unicorn==2.1.4)
            del self.uc, self._uch

    def read_only_code(self, ranges: list[tuple[int, int]]) -> None:
        """The code at `ranges` (`[begin, end)`, guest addresses) is never written through those addresses, nor
        their pages mapped writable at the physical addresses they name: Unicorn then translates a block there
        without arming its self-modifying-code check (a scan of the whole TLB per block, ~15% of translating).
        A no-op fetch-protection hook over them does it (Unicorn skips the scan where any memory hook is)."""
        for begin, end in ranges:
            self.add_hook(UC_HOOK_MEM_FETCH_PROT, ctypes.c_void_p(native.never_handled_address()), None,
                          begin, end - 1)

    def add_hook(self, kind: int, callback: Any, user_data: Any, first: int, last: int) -> None:
        """Have Unicorn call `callback` (a ctypes function, or a C function's address as a c_void_p) with
        `user_data` for the UC_HOOK_* `kind` at addresses `first` to `last` (inclusive; first > last: all of them).
        Straight with libunicorn: the binding's hook_add wraps every call in Python. The caller keeps `callback`
        alive as long as this vCPU."""
        handle = ctypes.c_size_t()
        status = uclib.uc_hook_add(self._uch, ctypes.byref(handle), kind, callback, user_data,
                                   ctypes.c_uint64(first), ctypes.c_uint64(last))
        if status:
            raise MachineError(f"vCPU {self.index}: uc_hook_add of a {kind:#x} hook at {first:#x}-{last:#x} failed "
                               f"({status})")

    # -- registers (the binding's reg_read costs ~8 us; this ~1 us) --------
    def read(self, register: int) -> int:
        """A 64-bit general register, the program counter or the flags."""
        status = uclib.uc_reg_read(self.uc._uch, register, self._register_buffer_pointer)
        if status:
            raise MachineError(f"vCPU {self.index}: reading register {register} failed ({status})")
        return self._register_buffer.value

    def write(self, register: int, value: int) -> None:
        """Set a 64-bit general register, the program counter or the flags."""
        self._register_buffer.value = value
        status = uclib.uc_reg_write(self.uc._uch, register, self._register_buffer_pointer)
        if status:
            raise MachineError(f"vCPU {self.index}: writing register {register} failed ({status})")

    def current_pc(self) -> int:
        """The program counter as Unicorn holds it now (inside a hook: the current instruction)."""
        return self.read(self.arch.registers.pc)

    def argument(self, number: int) -> int:
        """The guest's integer argument register `number` (calling convention of the arch)."""
        return self.read(self.arch.registers.arguments[number])

    # -- life cycle --------------------------------------------------------
    def start(self, entry: int, *, at_ps: int, arguments: tuple[int, ...]) -> None:
        """Begin executing at `entry` at virtual time `at_ps` with the boot arguments of firmware/ABI.md."""
        for register, value in zip(self.arch.registers.arguments[:len(arguments)], arguments, strict=True):
            self.write(register, value)
        self.pc = entry
        self.clock_ps = at_ps
        self.state = VcpuState.RUNNING

    def sleep_until(self, time_ps: int) -> None:
        """A halted or parked vCPU's clock jumps to `time_ps`, counted as halted or parked time."""
        slept = max(0, time_ps - self.clock_ps)
        if self.state is VcpuState.HALTED:
            self.halted_ps += slept
        else:
            self.parked_ps += slept
        self.clock_ps += slept

    def sit_out(self, ready_ps: int) -> None:
        """Preempted: its clock jumps to the end of the preemption (halted or parked time up to `ready_ps`)."""
        if self.state is not VcpuState.RUNNING:
            self.sleep_until(ready_ps)
        if self.preempted_until_ps > self.clock_ps:
            self.preempted_ps += self.preempted_until_ps - self.clock_ps
            self.clock_ps = self.preempted_until_ps

    def wake(self) -> None:
        """A halted or parked vCPU runs again to take an interrupt."""
        self.state = VcpuState.RUNNING

    def release(self, at_ps: int) -> None:
        """A parked vCPU runs again from `at_ps`."""
        self.sleep_until(at_ps)
        self.state = VcpuState.RUNNING

    def stop(self, reason: StopReason) -> None:
        """From inside this vCPU's own hook: end the slice at the current instruction's block."""
        self.stop_reason = reason
        self.budget.stop_pending = 1
        status = uclib.uc_emu_stop(self._uch)  # (the binding's emu_stop costs ~1 us more)
        if status:
            raise UcError(status)

    def end_slice_after_block(self, reason: StopReason | None = None) -> None:
        """From inside this vCPU's own hook: end the slice once the current block has run (it ends for `reason`;
        None: as if its budget ran out)."""
        self.budget.budget = self.budget.executed
        if reason is not None:
            self.stop_reason = reason

    def snapshot(self) -> Snapshot:
        """Where the vCPU is now (also from inside its own hook)."""
        stack_pointer = self.read(self.arch.registers.sp)
        top = (stack_pointer | (STACK_SIZE - 1)) + 1
        try:
            stack = self.memory.read(stack_pointer, top - stack_pointer)
        except MachineError:  # no stack in RAM (yet): nothing to keep
            stack = b""
        return Snapshot(self.uc.context_save(), self.current_pc(), len(self.handlers), self.nmi_blocked,
                        self.interrupts_enabled, stack_pointer, stack)

    def restore(self, snapshot: Snapshot) -> None:
        """Go back to `snapshot` (between slices): registers, live stack, the handlers it was in, NMI blocking;
        running."""
        self.uc.context_restore(snapshot.context)
        self.memory.write(snapshot.stack_pointer, snapshot.stack)
        self.pc = snapshot.pc
        del self.handlers[snapshot.handlers:]
        self.nmi_blocked = snapshot.nmi_blocked
        self.interrupts_enabled = snapshot.interrupts_enabled
        self.state = VcpuState.RUNNING

    def flush(self, begin: int, end: int) -> None:
        """Drop this vCPU's translated code overlapping `[begin, end)`."""
        status = uclib.uc_ctl(self._uch, REMOVE_CACHE, ctypes.c_uint64(begin), ctypes.c_uint64(end))
        if status:
            raise UcError(status)

    def fresh_block_size(self, address: int) -> int:
        """Bytes of the block this instance translates at `address` from what memory holds there now (its earlier
        translation there dropped first): on a spare instance that never runs, what a vCPU whose translated code
        was dropped would run. A block is made of the bytes it covers alone: while memory holds those of the last
        block translated here, that block is the answer (asked once a vCPU after a patch: 72 translations)."""
        known = self._fresh_blocks.get(address)
        if known is not None and self.memory.read(address, len(known)) == known:
            return len(known)
        self.flush(address, address + 1)
        size = self.uc.ctl_request_cache(address)[2]  # (pc, instructions, size)
        self._fresh_blocks[address] = self.memory.read(address, size)
        return size

    def flush_pending(self) -> None:
        """Drop what `to_flush` names (asked for from inside a hook, done between slices)."""
        for begin, end in self.to_flush:
            self.flush(begin, end)
        self.to_flush.clear()

    def flush_tlb(self) -> None:
        """Forget every address translation: the page tables changed."""
        status = uclib.uc_ctl(self.uc._uch, UC_CTL_TLB_FLUSH | UC_CTL_IO_WRITE << UC_CTL_IO_SHIFT)
        if status:
            raise MachineError(f"vCPU {self.index}: flushing its TLB failed ({status})")

    # -- watched code ----------------------------------------------------
    def watch(self, ranges: list[tuple[int, int]]) -> None:
        """Stop before any block overlapping one of `ranges` runs (StopReason.WATCH, `hit` says which block);
        more ranges than the hook holds are merged into wider ones."""
        merged = sorted(ranges)
        while len(merged) > native.MAX_WATCHES:
            gaps = [merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1)]
            i = gaps.index(min(gaps))
            merged[i:i + 2] = [(merged[i][0], max(merged[i][1], merged[i + 1][1]))]
        b = self.budget
        for i, (begin, end) in enumerate(merged):
            b.watch_begin[i], b.watch_end[i] = begin, end
        b.nr_watches = len(merged)

    def pass_watch(self) -> None:
        """Let the block that hit a watch run once when the vCPU resumes."""
        self.budget.skip_address = self.pc

    # -- running -------------------------------------------------------
    def run_slice(self, budget: int, *, already: int = 0) -> StopReason:
        """Run at most `budget` instructions, advancing the clock by what ran; say why it stopped. `already`: what
        this slice ran before a watch stopped it (counted towards `budget`, not again on the clock)."""
        return self.finish_slice(self.start_slice(budget, already=already), budget, already=already)

    def start_slice(self, budget: int, *, already: int = 0) -> int:
        """Run the first part of a slice (`run_slice`), up to a trap or its end: uc_emu_start's status, for
        `finish_slice`."""
        b = self.budget
        self.stop_reason = None
        self.uc._hook_exception = None  # what the binding's emu_start does, for a hook that escapes `guarded`
        b.executed = already  # 0 between slices
        b.clock_ps = self.clock_ps - already * self.ps_per_instruction
        b.trap_size = 0
        return self._run_slice(self._budget_pointer, self.pc, budget)

    def ready_for_loop(self) -> None:
        """Before the C slice loop runs this vCPU's slices (slice_loop.c): its clock and program counter where the
        loop keeps them, and nothing left from an earlier slice (the loop starts none of what `start_slice`
        resets, which only Python hooks set)."""
        self.budget.clock_ps = self.clock_ps
        self.budget.pc = self.pc
        self.stop_reason = None
        self.uc._hook_exception = None

    def host_entered(self) -> None:
        """A Python hook runs in this vCPU's slice for the first time: the C slice loop, if it runs the slice,
        hands it to the host when it ends, and brings what it holds into Python now."""
        self.budget.host_ran = 1
        if self.budget.in_loop and self.loop_take_back is not None:
            self.loop_take_back()

    def back_from_loop(self, executed: int) -> None:
        """The C slice loop ran `executed` instructions of this vCPU's slices: its clock and program counter."""
        self.clock_ps = self.budget.clock_ps
        self.pc = self.budget.pc
        self.instructions += executed

    def finish_slice(self, status: int, budget: int, *, already: int = 0) -> StopReason:
        """The rest of a slice `start_slice` began with `status` (traps dealt with, the clock advanced), and why it
        stopped."""
        b = self.budget
        uc = self.uc
        while not status and b.trap_size and self.stop_reason is None and uc._hook_exception is None:
            address, size = b.trap_address, b.trap_size
            b.trap_size = 0
            if self.on_trap is None:
                raise MachineError(f"vCPU {self.index}: a trap at {address:#x} and nobody to deal with it")
            self.on_trap(self, address, size)
            status = self._run_slice(self._budget_pointer, self.current_pc(), budget)
        self.pc = b.pc
        executed, b.executed = b.executed - already, 0
        self.clock_ps += executed * self.ps_per_instruction
        self.instructions += executed
        if status:
            raise UcError(status)
        if uc._hook_exception is not None:
            raise uc._hook_exception
        if self.stop_reason is not None:
            return self.stop_reason
        if b.hit_size:
            self.hit = (b.hit_address, b.hit_size)
            b.hit_size = 0
            return StopReason.WATCH
        return BUDGET if b.stopped else StopReason.HALT

    def emulate(self, begin: int, until: int) -> None:
        """Run from `begin` until `until` (Unicorn's one exit address meanwhile: it stops code translated while it
        is set), going on past each trap `on_trap` dealt with (the budget's count runs on)."""
        b = self.budget
        b.trap_size = 0
        b.stop_pending = 0
        b.clock_ps = self.clock_ps
        self.uc.ctl_set_exits([until])
        try:
            self.uc.emu_start(begin, until)
            while b.trap_size and self.stop_reason is None:
                address, size = b.trap_address, b.trap_size
                b.trap_size = 0
                if self.on_trap is None:
                    raise MachineError(f"vCPU {self.index}: a trap at {address:#x} and nobody to deal with it")
                self.on_trap(self, address, size)
                b.stop_pending = 0
                self.uc.emu_start(self.current_pc(), until)
        finally:
            self.uc.ctl_set_exits([])

    def take_hook_error(self) -> BaseException | None:
        """The exception a hook raised during the last slice, once."""
        error, self.hook_error = self.hook_error, None
        return error

    def settle(self, state: VcpuState) -> None:
        """The slice that just ended left the vCPU in `state` (HALTED or PARKED); note whether interrupts may wake
        it (from the flags the slice ended with: no call into Unicorn)."""
        self.state = state
        self.interrupts_enabled = self.arch.interrupts_enabled(self.budget.flags)

    def current_time_ps(self) -> int:
        """Virtual time of this vCPU now, also from inside a hook mid-slice."""
        return self.clock_ps + self.budget.executed * self.ps_per_instruction

    def read_interrupt_flag(self) -> bool:
        self.interrupts_enabled = self.arch.interrupts_enabled(self.read(self.arch.registers.flags))
        return self.interrupts_enabled

    # -- interrupts ----------------------------------------------------
    def post(self, time_ps: int, seq: int, vector: int, sender: int | None = None) -> None:
        """An interrupt (or NMI) from `sender` (None: the host) that reaches this vCPU at `time_ps`."""
        if time_ps <= self.clock_ps:
            self._latch(vector, sender)
        else:
            heapq.heappush(self.arrivals, (time_ps, seq, vector, sender))

    def _latch(self, vector: int, sender: int | None) -> None:
        if vector == self.arch.nmi_vector:
            self.nmi_pending = True
        else:
            self.pending_vectors.add(vector)
        self.senders.setdefault(vector, sender)

    def program_timer(self, vector: int, *, now_ps: int, period_ps: int) -> None:
        """The periodic timer raises `vector` (0: off) from the next period boundary after `now_ps`."""
        self.timer_vector = vector
        self.next_tick_ps = (now_ps // period_ps + 1) * period_ps

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
        if self.arrivals:
            first = self.arrivals[0][0]
            return min(first, self.next_tick_ps) if self.timer_vector else first
        return self.next_tick_ps if self.timer_vector else None

    def deliverable(self) -> bool:
        """Whether a latched interrupt could be taken now."""
        if self.nmi_pending and not self.nmi_blocked:
            return True
        return bool(self.pending_vectors) and self.interrupts_enabled

    def inject(self, vector: int, *, return_pc: int | None = None, error_code: int | None = None,
               maskable: bool = False) -> int | None:
        """Enter the guest's handler of `vector` (the arch's interrupt model; an exception's `error_code`);
        returns its address. A `maskable` interrupt is not taken (None) while the flags keep it out."""
        entry = self.arch.enter_handler(self, vector, self.pc if return_pc is None else return_pc,
                                        error_code=error_code, maskable=maskable)
        if entry is None:
            self.interrupts_enabled = False
            return None
        self.pc = entry.handler
        enabled = maskable or self.interrupts_enabled  # (the flags let a maskable one in: interrupts were on)
        self.interrupts_enabled = enabled and not entry.masks_interrupts
        self.handlers.append(vector)
        return entry.handler

    def take_interrupt(self) -> tuple[int, int | None] | None:
        """Deliver the highest-priority latched interrupt that may be taken now: (vector, sender)."""
        if self.nmi_pending and not self.nmi_blocked:
            self.nmi_pending = False
            self.nmi_blocked = True
            vector = self.arch.nmi_vector
            self.inject(vector)
        elif self.pending_vectors:
            vector = max(self.pending_vectors)
            if self.inject(vector, maskable=True) is None:
                return None
            self.pending_vectors.discard(vector)
        else:
            return None
        return vector, self.senders.pop(vector, None)

    def interrupt_return(self) -> tuple[int | None, bool]:
        """A handler returned: (its vector, whether this ended NMI blocking)."""
        vector = self.handlers.pop() if self.handlers else None
        ended_nmi_blocking, self.nmi_blocked = self.nmi_blocked, False
        return vector, ended_nmi_blocking

"""The C block-budget hook (block_budget.c), slice loop (slice_loop.c), console port (console_port.c), spin-wait
turns (pause_turn.c) and code hooks added in bulk (code_hooks.c), built on first use and loaded with ctypes.

The shared library is compiled with the host's C compiler into a cache
entry keyed by the sources' hash, so a changed source is rebuilt.
"""

from __future__ import annotations

import array
import ctypes
import os
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

import capstone
from unicorn import UC_HOOK_CODE
from unicorn.unicorn_py3.unicorn import uclib

from ...errors import MachineError, ToolchainError
from ...provision.cache import cached, digest

SOURCES = tuple(Path(__file__).with_name(name)
                for name in ("block_budget.h", "block_budget.c", "slice_loop.c", "console_port.c", "pause_turn.c",
                             "code_hooks.c"))
LIBRARY = "block_budget.so"
MAX_WATCHES = 8
"""Watched code ranges per vCPU (MAX_WATCHES in block_budget.c)."""


class VcpuBudget(ctypes.Structure):
    """Per-vCPU slice state shared with on_block() (same layout as the C struct)."""

    _fields_ = [
        ("table", ctypes.c_void_p),
        ("emu_stop", ctypes.c_void_p),
        ("budget", ctypes.c_uint64),
        ("executed", ctypes.c_uint64),
        ("stopped", ctypes.c_uint64),
        ("nr_watches", ctypes.c_uint64),
        ("watch_begin", ctypes.c_uint64 * MAX_WATCHES),
        ("watch_end", ctypes.c_uint64 * MAX_WATCHES),
        ("hit_address", ctypes.c_uint64),
        ("hit_size", ctypes.c_uint64),
        ("skip_address", ctypes.c_uint64),
        ("uc", ctypes.c_void_p),
        ("emu_start", ctypes.c_void_p),
        ("reg_read", ctypes.c_void_p),
        ("pc_register", ctypes.c_uint64),
        ("pc", ctypes.c_uint64),
        ("trap_address", ctypes.c_uint64),
        ("trap_size", ctypes.c_uint64),
        ("clock_ps", ctypes.c_uint64),
        ("ps_per_instruction", ctypes.c_uint64),
        ("reg_write", ctypes.c_void_p),
        ("rax", ctypes.c_int32),
        ("rdx", ctypes.c_int32),
        ("rip", ctypes.c_int32),
        ("stop_pending", ctypes.c_int32),
        ("flags_register", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("host_ran", ctypes.c_uint64),
        ("in_loop", ctypes.c_uint64),
    ]


class Draws(ctypes.Structure):
    """The scheduler's generator's outputs drawn and not yet taken, as slice_loop.c takes them: words[next_word:]
    of nr_words."""

    _fields_ = [("words", ctypes.c_void_p), ("nr_words", ctypes.c_int64), ("next_word", ctypes.c_int64)]


class ReadyQueue(ctypes.Structure):
    """The scheduler's ready queue as slice_loop.c reads it: per vCPU its time, tie-break and whether queued."""

    _fields_ = [("nr_vcpus", ctypes.c_uint64), ("time", ctypes.c_void_p), ("tie", ctypes.c_void_p),
                ("queued", ctypes.c_void_p)]


class SliceLoop(ctypes.Structure):
    """What run_quiet_slices() works on (struct slice_loop of slice_loop.c, same layout)."""

    _fields_ = [
        ("ready", ctypes.c_void_p),
        ("budgets", ctypes.c_void_p),
        ("quiet", ctypes.c_void_p),
        ("arrival", ctypes.c_void_p),
        ("executed", ctypes.c_void_p),
        ("requeued", ctypes.c_void_p),
        ("touched", ctypes.c_void_p),
        ("nr_touched", ctypes.c_int64),
        ("draws", ctypes.c_void_p),
        ("clock_page", ctypes.c_void_p),
        ("until_ps", ctypes.c_int64),
        ("next_alarm_ps", ctypes.c_int64),
        ("next_wake_ps", ctypes.c_int64),
        ("wake_owner", ctypes.c_int64),
        ("now_ps", ctypes.c_int64),
        ("slice_min", ctypes.c_int64),
        ("slice_span", ctypes.c_int64),
        ("ps_per_ns", ctypes.c_int64),
        ("index", ctypes.c_int64),
        ("budget", ctypes.c_int64),
        ("status", ctypes.c_int64),
    ]


CONSOLE_BYTES = 256
"""Bytes of a line a vCPU's console buffer holds (CONSOLE_BYTES in console_port.c)."""


class ConsolePort(ctypes.Structure):
    """A vCPU's console bytes not yet taken by the host (struct console_port of console_port.c, same layout)."""

    _fields_ = [("host_out", ctypes.c_void_p), ("port", ctypes.c_uint32), ("length", ctypes.c_uint32),
                ("bytes", ctypes.c_uint8 * CONSOLE_BYTES)]


PAUSE_REGISTERS = 16
"""Registers a pure loop's turn holds at most (PAUSE_REGISTERS in pause_turn.c: every general register)."""


class SpinLoop(ctypes.Structure):
    """A pure loop as pause_turn.c looks it up (struct spin_loop, same layout)."""

    _fields_ = [("pause", ctypes.c_uint64), ("nr_written", ctypes.c_uint64),
                ("written", ctypes.c_int32 * PAUSE_REGISTERS), ("begin", ctypes.c_uint64), ("end", ctypes.c_uint64)]


class PauseTurn(ctypes.Structure):
    """A vCPU's last turn of a pure loop and what on_pause() and probe_turn() need (struct pause_turn of
    pause_turn.c, same layout)."""

    _fields_ = [("host_paused", ctypes.c_void_p), ("budget", ctypes.c_void_p), ("slice", ctypes.c_void_p),
                ("loops", ctypes.c_void_p), ("nr_loops", ctypes.c_uint64), ("probing", ctypes.c_uint64),
                ("repeated", ctypes.c_uint64), ("pause", ctypes.c_uint64), ("last_slice", ctypes.c_uint64),
                ("values", ctypes.c_uint64 * PAUSE_REGISTERS)]


LOOP_FINISH = 1
"""run_quiet_slices(): a slice ran that the host finishes (LOOP_FINISH in slice_loop.c; 0: the host's step)."""


@cache
def library() -> ctypes.CDLL:
    """The loaded helper library, compiled if needed."""
    lib = ctypes.CDLL(str(cached("block_budget", digest(*SOURCES), _compile) / LIBRARY))
    lib.block_table_new.restype = ctypes.c_void_p
    lib.block_table_new.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64,
                                    ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
    lib.block_table_add_range.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
    lib.block_table_forget.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
    lib.block_table_set_traps.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.block_table_set_traps.restype = None
    lib.block_table_free.argtypes = [ctypes.c_void_p]
    lib.run_slice.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
    lib.run_quiet_slices.argtypes = [ctypes.c_void_p]
    lib.run_quiet_slices.restype = ctypes.c_int64
    lib.probe_turn.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
    lib.hook_sites.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p,
                               ctypes.c_void_p]
    lib.hook_sites.restype = ctypes.c_size_t
    return lib


def _compile(work: Path) -> None:
    compiler = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if compiler is None:
        raise ToolchainError("cannot build the block-budget hook: no C compiler (gcc or cc) is installed "
                             "(Debian: apt-get install gcc)")
    result = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(work / LIBRARY),
                             *(str(source) for source in SOURCES if source.suffix == ".c")],
                            capture_output=True, text=True)
    if result.returncode:
        raise ToolchainError(f"{compiler} failed on {SOURCES[0].parent}: "
                             f"{result.stderr.strip() or f'exit status {result.returncode}, nothing printed'}")


@cache
def on_block_address() -> int:
    """Address of the C UC_HOOK_BLOCK callback."""
    return address_of(library().on_block)


def new_budget(table: BlockTable, uc_handle: int, *, pc_register: int, flags_register: int) -> VcpuBudget:
    """The slice state of one vCPU (Unicorn instance `uc_handle`, exit addresses on) counting blocks in `table`;
    its slices leave the program counter (`pc_register`) in `pc` and the flags (`flags_register`) in `flags`."""
    return VcpuBudget(table=table.pointer, emu_stop=address_of(uclib.uc_emu_stop), uc=uc_handle,
                      emu_start=address_of(uclib.uc_emu_start), reg_read=address_of(uclib.uc_reg_read),
                      reg_write=address_of(uclib.uc_reg_write),
                      pc_register=pc_register, flags_register=flags_register)


def run_slice_function() -> Callable[[int, int, int], int]:
    """run_slice(budget pointer, begin, budget) of block_budget.c: uc_emu_start's status."""
    return library().run_slice


def run_quiet_slices_function() -> Callable[[int], int]:
    """run_quiet_slices(slice loop pointer) of slice_loop.c: LOOP_FINISH or 0."""
    return library().run_quiet_slices


@cache
def on_out_address() -> int:
    """Address of the C UC_HOOK_INSN callback for OUT that buffers console bytes (console_port.c)."""
    return address_of(library().on_out)


@cache
def on_rdtsc_address() -> int:
    """Address of the C UC_HOOK_CODE callback answering a `rdtsc` from the vCPU's VcpuBudget."""
    return address_of(library().on_rdtsc)


@cache
def on_pause_address() -> int:
    """Address of the C UC_HOOK_CODE callback at a pure loop's `pause` (pause_turn.c)."""
    return address_of(library().on_pause)


def probe_turn_function() -> Callable[[int, int], int]:
    """probe_turn(pause turn pointer, pause) of pause_turn.c: 1 when the vCPU would spin on, 0 not, -1 a host hook
    ran."""
    return library().probe_turn


def hook_sites(sites: array.array, nr_sites: int, nr_vcpus: int) -> None:
    """Add, on each of the first `nr_vcpus` vCPUs in order and on it each site in order, a UC_HOOK_CODE hook at that
    site's one address (code_hooks.c). `sites`: per site its address and where its hooks lie (per vCPU its
    instance, callback and user data: three words)."""
    status = ctypes.c_int()
    refused = library().hook_sites(sites.buffer_info()[0], nr_sites, nr_vcpus, UC_HOOK_CODE,
                                   address_of(uclib.uc_hook_add), ctypes.byref(status))
    if refused:
        raise MachineError(f"vCPU {refused - 1}: uc_hook_add of a code hook failed ({status.value})")


@cache
def never_handled_address() -> int:
    """Address of the C memory-hook callback that handles nothing (see `Vcpu.read_only_code`)."""
    return address_of(library().never_handled)


def address_of(function) -> int:
    """Where a C function, a ctypes callback or the address a c_void_p holds is (a cast costs ~1.6 us)."""
    address = function.value if isinstance(function, ctypes.c_void_p) else ctypes.cast(function, ctypes.c_void_p).value
    if address is None:
        raise ToolchainError(f"{function} has no address")
    return address


class BlockTable:
    """Instruction counts of translated blocks, shared by one machine's vCPUs."""

    def __init__(self, host_base: int, guest_base: int, guest_size: int, *, disassembler: capstone.Cs):
        self._lib = library()
        self._disassembler = disassembler  # the C hook counts instructions with it: keep it alive
        cs = capstone._cs
        self.pointer = self._lib.block_table_new(
            host_base, guest_base, guest_size, self._disassembler.csh,
            ctypes.cast(cs.cs_disasm, ctypes.c_void_p), ctypes.cast(cs.cs_free, ctypes.c_void_p))
        if not self.pointer:
            raise MemoryError("block table allocation failed")

    def add_range(self, host_base: int, guest_base: int, guest_size: int) -> None:
        """Count blocks at `[guest_base, guest_base + guest_size)` from the host bytes at `host_base` too."""
        if self._lib.block_table_add_range(self.pointer, host_base, guest_base, guest_size):
            raise MemoryError("block table has no room for another code range")

    def forget(self, begin: int, end: int) -> None:
        """Drop the counts of blocks overlapping `[begin, end)` (their code changed)."""
        if self._lib.block_table_forget(self.pointer, begin, end):
            raise MemoryError("block table rehash failed")

    def set_traps(self, addresses: array.array[int]) -> None:
        """From now on a block holding one of `addresses` (sorted) stops a slice before it runs
        (`VcpuBudget.trap_*`); the first call names them all, later ones fewer (blocks already counted are only
        cleared)."""
        self._traps = addresses[:]  # the C table reads it: a copy of its own, kept (a memcpy)
        self._lib.block_table_set_traps(self.pointer, self._traps.buffer_info()[0], len(self._traps))

    def __del__(self):
        if getattr(self, "pointer", None):
            self._lib.block_table_free(self.pointer)
            self.pointer = None

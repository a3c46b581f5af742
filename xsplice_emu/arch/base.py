"""What the machine and the livepatch code ask of a guest architecture.

An `Architecture` is one object per ISA: the engines' modes, the registers
the machine and the hook calling convention use, how an interrupt enters
and leaves a handler, how a port access reaches the host, how page tables map
a high-half image, how a patch is encoded, which relocations a payload may carry, how a stack is walked, what
its exceptions are called, how a function's result reads, and where the firmware's sources are. Nothing outside
`xsplice_emu/arch/` names an ISA (tests/test_architecture.py checks it); porting the testbed is a subclass of this
plus a firmware tree (docs/architecture.md). This package imports nothing of the machine: a vCPU is the small
`CpuState` protocol below.
"""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import capstone

from ..errors import LivepatchError
from .relocations import Relocation

if TYPE_CHECKING:
    from unicorn import Uc


class GuestRam(Protocol):
    """The guest memory an architecture reads and writes (interrupt frames, descriptor tables)."""

    def read(self, address: int, length: int) -> bytes: ...

    def write(self, address: int, data: bytes) -> None: ...

    def read_u64(self, address: int) -> int: ...

    def write_u64(self, address: int, value: int) -> None: ...


class CpuState(Protocol):
    """What an architecture is handed of a vCPU: its number, its Unicorn instance, registers, and guest memory."""

    @property
    def index(self) -> int: ...

    @property
    def uc(self) -> Uc: ...

    @property
    def memory(self) -> GuestRam: ...

    def read(self, register: int) -> int: ...

    def write(self, register: int, value: int) -> None: ...


@dataclass(frozen=True)
class Registers:
    """Unicorn register ids the machine uses, by role."""

    pc: int
    sp: int
    flags: int
    arguments: tuple[int, ...]
    """A guest function's first integer arguments (boot: cpu id, vCPU count)."""
    result: int
    """A guest function's integer result."""
    hook_target: int
    """Where the controller puts the address of a payload hook for the firmware to call."""
    frame: int
    """The frame pointer: it points at a frame record (the caller's frame pointer, then the return address)."""


@dataclass(frozen=True)
class FrameWalk:
    """What a stack walk by frame records needs of the ISA and of the firmware's conventions (the safety oracle's
    unwinder)."""

    prologue: bytes
    """The first instruction of a function that keeps a frame record: it pushes the caller's frame pointer."""
    saved_pc: int
    """Offset of the interrupted program counter in the register block the firmware's interrupt entry saves
    (the frame pointer in a handler points at that block)."""
    saved_sp: int
    """Offset of the interrupted stack pointer in that block."""
    saved_frame: int
    """Offset of the interrupted frame pointer in that block."""


@dataclass(frozen=True)
class PageTables:
    """Page tables built by `Architecture.page_tables`: their bytes, and where in them the last-level entries of
    each space start (`entries[i]` for `spaces[i]`: one entry per page, in address order, contiguous)."""

    data: bytes
    spaces: tuple[tuple[int, int], ...]
    entries: tuple[int, ...]


@dataclass(frozen=True)
class HandlerEntry:
    """Where an interrupt took a vCPU: its handler, and whether entry masked interrupts."""

    handler: int
    masks_interrupts: bool


class Architecture(ABC):
    """One guest ISA. Subclasses fill in the class attributes and the methods below."""

    name: str
    title: str
    """How messages name it (x86-64)."""
    elf_machine: str
    """`e_machine` of its ELF files, as pyelftools names it (EM_X86_64)."""
    elf_class: int
    unicorn_mode: tuple[int, int]
    capstone_mode: tuple[int, int]
    keystone_mode: tuple[int, int]
    registers: Registers
    nmi_vector: int
    """The vector an NMI is delivered on (the machine's NMI model: masked from delivery until the handler's
    `interrupt_return`)."""
    exception_names: dict[int, str]
    """How messages and the viewer name the CPU exceptions, by vector (#UD invalid opcode)."""
    page_fault_vector: int
    """The exception a touch of an unmapped page raises (how a stack guard hit is named)."""
    invalid_opcode_vector: int
    """The exception an undefined instruction raises (Xen's BUG and WARN frames raise it on purpose)."""
    frame_walk: FrameWalk
    halt_instruction: bytes
    interrupt_return: str
    """Mnemonic of the instruction that returns from an interrupt handler (ends NMI blocking; it serialises)."""
    serialising: tuple[str, ...]
    """Mnemonics of the other serialising instructions the firmware uses after boot."""
    jump_size: int
    """Bytes a jump patch writes over the old function."""
    relocations: dict[int, Relocation]
    firmware_tree: str
    """The firmware's source tree (a directory under the project's sources)."""
    gnu_triplet: str
    """The GNU target triplet of its cross toolchain (x86_64-linux-gnu)."""
    host_machines: tuple[str, ...]
    """What `platform.machine()` says on a host that builds for it natively."""
    payload_cflags: tuple[str, ...]
    """gcc flags for a payload: freestanding, position-independent, no red zone, no FPU state."""

    # -- disassembly -------------------------------------------------------
    @cached_property
    def disassembler(self) -> capstone.Cs:
        """A capstone instance without details, shared by every user of this architecture."""
        return capstone.Cs(*self.capstone_mode)

    @cached_property
    def detailed_disassembler(self) -> capstone.Cs:
        """A capstone instance with operand details (for call graphs)."""
        cs = capstone.Cs(*self.capstone_mode)
        cs.detail = True
        return cs

    @abstractmethod
    def instruction_access(self, code: bytes, address: int) -> tuple[int, bool] | None:
        """(length, whether it writes memory: an operand it writes, or the stack it pushes on) of the instruction
        `code` starts with at `address`; None when it is not one."""

    def instructions(self, code: bytes, address: int, *, limit: int = 0) -> Iterator[tuple[int, int, str]]:
        """(address, size, text) of each instruction decoded from `code` (capstone's lite decoder: no instruction
        objects, a tenth of the time)."""
        for at, size, mnemonic, operands in self.disassembler.disasm_lite(code, address, limit):
            yield at, size, f"{mnemonic} {operands}".strip()

    def first_instruction(self, code: bytes, address: int) -> str:
        """The text of the instruction at the start of `code`, or a note that it does not decode."""
        for _, _, text in self.instructions(code, address, limit=1):
            return text
        return f"(undecodable bytes {code[:8].hex(' ')})"

    @abstractmethod
    def direct_branch_targets(self, code: bytes, address: int) -> Iterator[int]:
        """Targets of the direct calls and jumps in `code` (for the unsafe-function call graph)."""

    # -- interrupts and devices --------------------------------------------
    @abstractmethod
    def interrupts_enabled(self, flags: int) -> bool:
        """Whether the flags register value lets maskable interrupts in."""

    @abstractmethod
    def enter_handler(self, vcpu: CpuState, vector: int, return_pc: int, *, error_code: int | None = None,
                      maskable: bool = False) -> HandlerEntry | None:
        """Take `vector` on `vcpu` as the CPU would: find its handler in the guest's
        table, save the interrupted state for the return instruction (and the
        exception's `error_code`, for the vectors that have one), and point the
        registers at the handler. A `maskable` interrupt is not taken (None) while
        the flags keep such interrupts out. MachineError when the table has no such
        handler."""

    @abstractmethod
    def add_port_hooks(self, uc: Uc, on_out: Callable, on_in: Callable, *,
                       out_first: tuple[int, Any] | None = None) -> None:
        """Route the guest's port writes to `on_out(port, size, value)` and reads to `on_in(port, size)`.
        `out_first`: (a C function's address, a ctypes structure whose first field is a function pointer) that
        Unicorn calls for each write instead, with the structure, and which calls `on_out`'s hook through that
        field when it does not answer the write itself."""


    # -- calling convention --------------------------------------------------
    @abstractmethod
    def int_result(self, value: int) -> int:
        """A guest function's C `int` result from the value its result register holds once it returned."""

    # -- patching ------------------------------------------------------------
    @abstractmethod
    def jump(self, old_addr: int, new_addr: int) -> bytes:
        """The jump patch written at `old_addr` to reach `new_addr`."""

    @abstractmethod
    def jump_reaches(self, old_addr: int, new_addr: int) -> bool:
        """Whether a jump patch at `old_addr` can reach `new_addr`."""

    @abstractmethod
    def nops(self, size: int) -> bytes:
        """`size` bytes of NOPs, as few instructions as possible."""

    def patch_offset(self, code: bytes) -> int:
        """How far into a function whose code starts with `code` its patch goes: bytes that must stay its first
        instruction (none by default)."""
        return 0

    def constant_result(self, code: bytes) -> int | None:
        """The constant a function starting with `code` returns, when it begins by loading one into the result
        register (how a hypervisor's xen_major_version reads), else None."""
        return None

    def patch(self, old_addr: int, new_addr: int, new_size: int) -> bytes:
        """What applying a function record writes at `old_addr`: NOPs for a NOP record (`new_addr == 0`), else
        the jump to `new_addr`."""
        return self.nops(new_size) if new_addr == 0 else self.jump(old_addr, new_addr)

    # -- paging ----------------------------------------------------------------
    large_page_size: int
    """Bytes of a large page: a hypervisor image's window onto RAM and its payload space are aligned to it."""

    @abstractmethod
    def page_tables(self, base: int, spaces: Sequence[tuple[int, int]], *, hole: int | None) -> PageTables:
        """Page tables to place at physical `base` (the root first) in which every page of each space `[begin,
        end)` (page aligned; no two sharing a last-level table) has an entry of its own, and every virtual
        address maps onto the physical page `hole` (None: is not present) until those entries are written
        (`page_entries`)."""

    @abstractmethod
    def page_entries(self, physical: int, count: int, *, accessed: bool = False, executable: bool = True) -> bytes:
        """`count` last-level entries, in order, mapping consecutive pages onto consecutive physical pages from
        `physical`: present and writable (the physical page's Unicorn region says what is allowed), executable or
        not (a fetch from a page that is not is the CPU's page fault); not yet `accessed` by a page walk
        (`entries_accessed`) unless said."""

    @abstractmethod
    def entries_accessed(self, entries: bytes) -> bool:
        """Whether a page walk went through any of these last-level entries since they were written (`page_entries`
        writes them unaccessed): only then can a vCPU's TLB hold a translation made from one of them."""

    @abstractmethod
    def enable_paging(self, uc: Uc, root: int) -> None:
        """Turn on paging on `uc` with the page tables at `root` (their entries' no-execute bits honoured)."""

    # -- relocations -----------------------------------------------------------
    @abstractmethod
    def relocation_name(self, reloc_type: int) -> str:
        """The ELF name of a relocation type number."""

    def relocation(self, reloc_type: int, *, where: str) -> Relocation:
        """The kind for `reloc_type`; EOPNOTSUPP naming the type if it is not supported."""
        kind = self.relocations.get(reloc_type)
        if kind is None:
            raise LivepatchError(errno.EOPNOTSUPP,
                                 f"{where}: unsupported relocation type {self.relocation_name(reloc_type)}")
        return kind

"""x86-64: long mode at CPL 0, the IDT interrupt model, port I/O, `jmp rel32` patches."""

from __future__ import annotations

import ctypes
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from capstone import CS_ARCH_X86, CS_MODE_64
from capstone.x86 import X86_OP_MEM
from elftools.elf.enums import ENUM_RELOC_TYPE_x64
from keystone import KS_ARCH_X86, KS_MODE_64
from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_64, UcError
from unicorn.unicorn_py3.arch.intel import HOOK_INSN_IN_CFUNC, HOOK_INSN_OUT_CFUNC, UcRegMMR
from unicorn.unicorn_py3.unicorn import uclib
from unicorn.x86_const import (
    UC_X86_INS_IN,
    UC_X86_INS_OUT,
    UC_X86_REG_CR0,
    UC_X86_REG_CR2,
    UC_X86_REG_CR3,
    UC_X86_REG_CR4,
    UC_X86_REG_CS,
    UC_X86_REG_EFLAGS,
    UC_X86_REG_GDTR,
    UC_X86_REG_IDTR,
    UC_X86_REG_R8,
    UC_X86_REG_RAX,
    UC_X86_REG_RBP,
    UC_X86_REG_RCX,
    UC_X86_REG_RDI,
    UC_X86_REG_RDX,
    UC_X86_REG_RIP,
    UC_X86_REG_RSI,
    UC_X86_REG_RSP,
    UC_X86_REG_SS,
    UC_X86_REG_TR,
)

from ..errors import MachineError
from ..layout import Layout
from .base import Architecture, CpuState, FrameWalk, HandlerEntry, PageTables, Registers
from .register_batch import RegisterBatch
from .relocations import Absolute, Ignored, Overflow, PCRelative

if TYPE_CHECKING:
    from unicorn import Uc

NMI_VECTOR = 2
PAGE_FAULT_VECTOR = 14
INVALID_OPCODE_VECTOR = 6
EXCEPTION_NAMES = {
    0: "#DE divide error",
    1: "#DB debug",
    3: "#BP breakpoint",
    4: "#OF overflow",
    5: "#BR bound range",
    INVALID_OPCODE_VECTOR: "#UD invalid opcode",
    7: "#NM device not available",
    8: "#DF double fault",
    10: "#TS invalid TSS",
    11: "#NP segment not present",
    12: "#SS stack fault",
    13: "#GP general protection",
    PAGE_FAULT_VECTOR: "#PF page fault",
    16: "#MF x87 error",
    17: "#AC alignment check",
    18: "#MC machine check",
    19: "#XM SIMD error",
}

CODE_SELECTOR = 0x08
DATA_SELECTOR = 0x10
"""The firmware's GDT selectors (firmware/include/platform.h)."""

UREGS_rbp = 32
UREGS_rip = 128
UREGS_rsp = 152
"""Offsets in `struct cpu_user_regs` (firmware/include/asm/regs.h), the block the firmware's interrupt entry saves."""
PUSH_RBP = b"\x55"
"""The firmware's functions start with it (frame pointers, no CET)."""

IDT_GATE = Layout("idt_entry", (("offset_low", "H"), ("selector", "H"), ("ist", "B"), ("type_attr", "B"),
                                ("offset_mid", "H"), ("offset_high", "I"), ("reserved", "I")))
"""A 64-bit IDT gate (`struct idt_entry` of firmware/arch/x86/traps.c)."""
GATE_PRESENT = 0x80
GATE_IST_MASK = 0x07
TSS_IST = 0x24
"""Offset of the 64-bit TSS's `ist[0]`: a gate with IST n switches to the stack `ist[n - 1]`."""
TSS_LIMIT = 0x67
TSS_BUSY_64 = 0x8B
"""Present, busy 64-bit TSS: what `ltr` leaves in TR's attributes."""
IDT_ENTRIES = 256
GDT_LIMIT = 0xFFFF
GATE_TYPE_MASK = 0x0F
INTERRUPT_GATE = 0x0E
"""Type of a gate that clears IF on entry (a trap gate, 0xF, leaves it)."""

INTERRUPT_FRAME = Layout("iret frame", (("rip", "Q"), ("cs", "Q"), ("rflags", "Q"), ("rsp", "Q"), ("ss", "Q")))
"""What the CPU pushes on interrupt entry without an error code: the tail of `struct cpu_user_regs`."""
FRAME_ALIGN = 16
ACCESS_WRITE = 2
"""capstone's CS_AC_WRITE: an operand the instruction writes."""
IMPLICIT_STACK_WRITES = ("push", "call")
"""Instructions that write the stack without naming it."""
ADDRESS_MASK = (1 << 64) - 1
"""Virtual addresses are 64-bit unsigned."""
DIRECT_BRANCHES = re.compile(r"^(?:(?:bnd|notrack) )*(?:call|jmp|j[a-z]{1,4}|loop[a-z]*|xbegin)$")
"""Mnemonics of the instructions that may branch to an address they hold: calls, jumps (conditional too), xbegin
(capstone's jump and call groups) and loops (which capstone's groups leave out)."""

RFLAGS_TF = 1 << 8
RFLAGS_IF = 1 << 9
RFLAGS_NT = 1 << 14
RFLAGS_RF = 1 << 16

# 4-level paging, 4 KiB pages
PAGE = 4096
PAGE_TABLE_SIZE = 4096
ENTRIES_PER_TABLE = 512
LEVELS = 4
LARGE_PAGE = 2 << 20
"""What one last-level table maps."""
ENTRY_TABLE = 0x23
"""Present, writable, accessed: an entry pointing at the next level's table."""
ENTRY_PAGE = 0x43
"""Present, writable, dirty, not yet accessed: the CPU sets the accessed bit (ENTRY_ACCESSED) the first time it walks
to the entry, and never writes it again."""
ENTRY_ACCESSED = 0x20
ENTRY_NO_EXECUTE = 1 << 63
"""NX: a fetch from the page is a page fault (honoured with EFER_NXE)."""
CR0_PE = 1 << 0
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
MSR_EFER = 0xC0000080
EFER_LME_LMA = 0x500
EFER_NXE = 0x800

# Intel's recommended multi-byte NOPs, 1 to 9 bytes.
_NOPS = (
    b"",
    bytes.fromhex("90"),
    bytes.fromhex("6690"),
    bytes.fromhex("0f1f00"),
    bytes.fromhex("0f1f4000"),
    bytes.fromhex("0f1f440000"),
    bytes.fromhex("660f1f440000"),
    bytes.fromhex("0f1f8000000000"),
    bytes.fromhex("0f1f840000000000"),
    bytes.fromhex("660f1f840000000000"),
)
JMP_REL32 = 0xE9
ENDBR64 = bytes.fromhex("f30f1efa")
ENDBR64_POISON = bytes.fromhex("660f1f01")
"""`nopw (%rcx)`: what Xen writes over an ENDBR64 it seals, and still treats as one when patching."""
MOV_IMM32_EAX = 0xB8

_RELOCATION_NAMES = {value: name for name, value in ENUM_RELOC_TYPE_x64.items() if isinstance(value, int)}
_RELOCATION_NAMES.setdefault(41, "R_X86_64_GOTPCRELX")  # missing from pyelftools' table


def load_system_tables(uc: Uc, *, idt: int, gdt: int, tss: int, code_selector: int, data_selector: int) -> None:
    """Point `uc`'s IDTR at the 256 gates at `idt`, its GDTR at `gdt` (as far as a selector reaches), its TR at the
    64-bit TSS at `tss` (where a gate's IST stacks are), and run it in `code_selector` and `data_selector`, whose
    descriptors are at `gdt` (what `iretq` reloads the frame's selectors from)."""
    uc.reg_write(UC_X86_REG_IDTR, (0, idt, IDT_ENTRIES * IDT_GATE.size - 1, 0))
    uc.reg_write(UC_X86_REG_GDTR, (0, gdt, GDT_LIMIT, 0))
    uc.reg_write(UC_X86_REG_TR, (0, tss, TSS_LIMIT, TSS_BUSY_64))
    uc.reg_write(UC_X86_REG_CS, code_selector)
    uc.reg_write(UC_X86_REG_SS, data_selector)


class X86_64(Architecture):
    """The x86-64 guest."""

    name = "x86_64"
    title = "x86-64"
    elf_machine = "EM_X86_64"
    elf_class = 64
    unicorn_mode = (UC_ARCH_X86, UC_MODE_64)
    capstone_mode = (CS_ARCH_X86, CS_MODE_64)
    keystone_mode = (KS_ARCH_X86, KS_MODE_64)
    registers = Registers(pc=UC_X86_REG_RIP, sp=UC_X86_REG_RSP, flags=UC_X86_REG_EFLAGS,
                          arguments=(UC_X86_REG_RDI, UC_X86_REG_RSI), result=UC_X86_REG_RAX,
                          hook_target=UC_X86_REG_RDX, frame=UC_X86_REG_RBP)
    nmi_vector = NMI_VECTOR
    exception_names = EXCEPTION_NAMES
    page_fault_vector = PAGE_FAULT_VECTOR
    invalid_opcode_vector = INVALID_OPCODE_VECTOR
    frame_walk = FrameWalk(prologue=PUSH_RBP, saved_pc=UREGS_rip, saved_sp=UREGS_rsp, saved_frame=UREGS_rbp)
    halt_instruction = b"\xf4"
    interrupt_return = "iretq"
    serialising = ("cpuid",)  # the firmware's others (lgdt, lidt) run once, at _start
    jump_size = 5
    relocations = {
        ENUM_RELOC_TYPE_x64[kind.name]: kind
        for kind in (
            Ignored("R_X86_64_NONE", 0, Overflow.WRAP),
            Absolute("R_X86_64_64", 8, Overflow.WRAP),
            PCRelative("R_X86_64_PC32", 4, Overflow.SIGNED),
            PCRelative("R_X86_64_PLT32", 4, Overflow.SIGNED),  # no PLT: a direct PC32
        )
    }
    firmware_tree = "firmware"
    gnu_triplet = "x86_64-linux-gnu"
    host_machines = ("x86_64", "amd64", "AMD64")
    payload_cflags = (
        "-O2", "-g0", "-ffreestanding", "-fno-builtin", "-nostdlib", "-fpic",
        "-mcmodel=small", "-mno-red-zone", "-fno-stack-protector", "-fno-common",
        "-fno-asynchronous-unwind-tables", "-fcf-protection=none",
        "-mgeneral-regs-only", "-fno-jump-tables", "-Wall",
    )

    def direct_branch_targets(self, code: bytes, address: int) -> Iterator[int]:
        # Without capstone's details (7x dearer): a direct target is the operand, printed as an absolute address.
        for _, _, mnemonic, operands in self.disassembler.disasm_lite(code, address):
            if operands.startswith("0x") and DIRECT_BRANCHES.match(mnemonic):
                yield int(operands, 16) & ADDRESS_MASK

    def instruction_access(self, code: bytes, address: int) -> tuple[int, bool] | None:
        for insn in self.detailed_disassembler.disasm(code, address, 1):
            writes = insn.mnemonic.startswith(IMPLICIT_STACK_WRITES) or any(
                op.type == X86_OP_MEM and op.access & ACCESS_WRITE for op in insn.operands)
            return insn.size, writes
        return None

    def interrupts_enabled(self, flags: int) -> bool:
        return bool(flags & RFLAGS_IF)

    def enter_handler(self, vcpu: CpuState, vector: int, return_pc: int, *, error_code: int | None = None,
                      maskable: bool = False) -> HandlerEntry | None:
        idt_base, idt_limit, rsp, rflags, cs, ss = _ENTRY_REGISTERS.read(vcpu)
        if maskable and not rflags & RFLAGS_IF:
            return None
        if (vector + 1) * IDT_GATE.size - 1 > idt_limit:
            raise MachineError(f"vCPU {vcpu.index}: vector {vector:#x} is beyond the IDT (limit {idt_limit:#x})")
        low, _, ist, attributes, mid, high, _ = IDT_GATE.struct.unpack(
            vcpu.memory.read(idt_base + vector * IDT_GATE.size, IDT_GATE.size))
        if not attributes & GATE_PRESENT:
            raise MachineError(f"vCPU {vcpu.index}: IDT gate for vector {vector:#x} is not present")
        handler = low | mid << 16 | high << 32
        masks = attributes & GATE_TYPE_MASK == INTERRUPT_GATE
        stack = rsp
        if ist & GATE_IST_MASK:
            tss = _read_register(vcpu, UC_X86_REG_TR, UcRegMMR()).base
            stack = vcpu.memory.read_u64(tss + TSS_IST + 8 * ((ist & GATE_IST_MASK) - 1))
        frame = (stack & ~(FRAME_ALIGN - 1)) - INTERRUPT_FRAME.size
        vcpu.memory.write(frame, INTERRUPT_FRAME.struct.pack(return_pc, cs, rflags, rsp, ss))
        if error_code is not None:
            frame -= 8
            vcpu.memory.write_u64(frame, error_code)
        cleared = RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | (RFLAGS_IF if masks else 0)
        _ENTRY_REGISTERS.write(vcpu, frame, rflags & ~cleared, handler)
        return HandlerEntry(handler, masks)

    def add_port_hooks(self, uc: Uc, on_out: Callable, on_in: Callable, *,
                       out_first: tuple[int, Any] | None = None) -> None:
        # Registered straight with Unicorn: the binding's hook wrappers cost ~1 us on every port access.
        hooks = (HOOK_INSN_OUT_CFUNC(lambda _uc, port, size, value, _data: on_out(port, size, value)),
                 HOOK_INSN_IN_CFUNC(lambda _uc, port, size, _data: on_in(port, size)))
        out: tuple[Any, Any] = (hooks[0], None)
        if out_first is not None:
            function, user = out_first
            ctypes.c_void_p.from_address(ctypes.addressof(user)).value = ctypes.cast(hooks[0], ctypes.c_void_p).value
            out = (ctypes.c_void_p(function), ctypes.byref(user))
        for (hook, user_data), instruction in zip((out, (hooks[1], None)), (UC_X86_INS_OUT, UC_X86_INS_IN),
                                                  strict=True):
            handle = ctypes.c_size_t()
            status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_INSN, hook, user_data,
                                       ctypes.c_uint64(1), ctypes.c_uint64(0), ctypes.c_int(instruction))
            if status:
                raise UcError(status)
        uc.port_hooks = (hooks, out_first)  # alive as long as the instance

    def int_result(self, value: int) -> int:
        """The low 32 bits of rax, signed."""
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value

    def jump(self, old_addr: int, new_addr: int) -> bytes:
        return bytes([JMP_REL32]) + struct.pack("<i", new_addr - (old_addr + self.jump_size))

    def patch_offset(self, code: bytes) -> int:
        """Xen 4.17's rule (arch_livepatch_apply): the patch goes past an ENDBR64 (or its poison), which must
        stay the function's first instruction under CET-IBT."""
        return len(ENDBR64) if code[:len(ENDBR64)] in (ENDBR64, ENDBR64_POISON) else 0

    def constant_result(self, code: bytes) -> int | None:
        code = code[self.patch_offset(code):]
        return int.from_bytes(code[1:5], "little") if len(code) >= 5 and code[0] == MOV_IMM32_EAX else None

    def jump_reaches(self, old_addr: int, new_addr: int) -> bool:
        return -(1 << 31) <= new_addr - (old_addr + self.jump_size) < 1 << 31

    def nops(self, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            chunk = min(size, len(_NOPS) - 1)
            out += _NOPS[chunk]
            size -= chunk
        return bytes(out)

    large_page_size = LARGE_PAGE

    def page_tables(self, base: int, spaces: Sequence[tuple[int, int]], *, hole: int | None) -> PageTables:
        # The root, then one shared table per level below it mapping everything onto `hole`: a table on a
        # space's path starts as a copy of the shared one at its level. The spaces' last-level tables come after
        # every other table, in address order, so that each space's entries are contiguous.
        tables = [bytearray(struct.pack("<Q", base + (depth + 1) * PAGE_TABLE_SIZE | ENTRY_TABLE) * ENTRIES_PER_TABLE)
                  for depth in range(LEVELS - 1)]
        tables.append(bytearray(struct.pack("<Q", 0 if hole is None else hole | ENTRY_PAGE) * ENTRIES_PER_TABLE))
        root = tables[0]
        made: dict[tuple[int, ...], int] = {}

        def table(path: tuple[int, ...]) -> bytearray:
            """The table reached from the root through the entries `path`, made (a copy of the shared one at
            its level) on first use."""
            if path not in made:
                parent = table(path[:-1]) if path[:-1] else root
                made[path] = len(tables)
                tables.append(bytearray(tables[len(path)]))
                struct.pack_into("<Q", parent, path[-1] * 8, base + made[path] * PAGE_TABLE_SIZE | ENTRY_TABLE)
            return tables[made[path]]

        chunks = [[(address >> shift) & (ENTRIES_PER_TABLE - 1) for shift in (39, 30, 21)]
                  for begin, end in spaces for address in range(begin & ~(LARGE_PAGE - 1), end, LARGE_PAGE)]
        for path in chunks:
            table(tuple(path[:-1]))
        first_last_level = len(tables)
        for path in chunks:
            if tuple(path) in made:
                raise MachineError(f"page tables: two spaces share the {LARGE_PAGE >> 20} MiB at PML4/PDPT/PD "
                                   f"entries {path}")
            table(tuple(path))
        entries = []
        chunk = first_last_level
        for begin, end in spaces:
            entries.append(chunk * PAGE_TABLE_SIZE + (begin % LARGE_PAGE) // PAGE * 8)
            chunk += len(range(begin & ~(LARGE_PAGE - 1), end, LARGE_PAGE))
        return PageTables(b"".join(tables), tuple(spaces), tuple(entries))

    def page_entries(self, physical: int, count: int, *, accessed: bool = False, executable: bool = True) -> bytes:
        flags = ENTRY_PAGE | (ENTRY_ACCESSED if accessed else 0) | (0 if executable else ENTRY_NO_EXECUTE)
        return struct.pack(f"<{count}Q", *range(physical | flags, (physical + count * PAGE) | flags, PAGE))

    def entries_accessed(self, entries: bytes) -> bool:
        return any(entry & ENTRY_ACCESSED for entry in struct.unpack(f"<{len(entries) // 8}Q", entries))

    def enable_paging(self, uc: Uc, root: int) -> None:
        uc.reg_write(UC_X86_REG_CR3, root)
        uc.reg_write(UC_X86_REG_CR4, uc.reg_read(UC_X86_REG_CR4) | CR4_PAE)
        uc.msr_write(MSR_EFER, uc.msr_read(MSR_EFER) | EFER_LME_LMA | EFER_NXE)
        uc.reg_write(UC_X86_REG_CR0, uc.reg_read(UC_X86_REG_CR0) | CR0_PE | CR0_PG)

    def relocation_name(self, reloc_type: int) -> str:
        return _RELOCATION_NAMES.get(reloc_type, f"R_X86_64 type {reloc_type}")


@dataclass(frozen=True)
class PlatformRegisters:
    """The x86-64 registers a platform for a real hypervisor (the xen engine) uses beyond the roles every
    architecture has: a C function's first integer arguments, what rdtsc/rdmsr/wrmsr pass in EDX:EAX and ECX, and
    the control registers it sets up and reads."""

    arguments: tuple[int, ...]
    low: int
    high: int
    counter: int
    cr0: int
    cr2: int
    cr3: int
    cr4: int


PLATFORM_REGISTERS = PlatformRegisters(
    arguments=(UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX, UC_X86_REG_RCX, UC_X86_REG_R8),
    low=UC_X86_REG_RAX, high=UC_X86_REG_RDX, counter=UC_X86_REG_RCX,
    cr0=UC_X86_REG_CR0, cr2=UC_X86_REG_CR2, cr3=UC_X86_REG_CR3, cr4=UC_X86_REG_CR4)


_Register = TypeVar("_Register", UcRegMMR, ctypes.c_uint64)


class _EntryRegisters:
    """What entering an interrupt handler reads (IDTR, RSP, RFLAGS, CS, SS) and writes (RSP, RFLAGS, RIP), one call
    into Unicorn each."""

    def __init__(self, registers: Registers):
        self.idtr = UcRegMMR()
        self.pushed = RegisterBatch((registers.sp, registers.flags, UC_X86_REG_CS, UC_X86_REG_SS),
                                    structures=((UC_X86_REG_IDTR, self.idtr),))
        self.entered = RegisterBatch((registers.sp, registers.flags, registers.pc))

    def read(self, vcpu: CpuState) -> tuple[int, int, int, int, int, int]:
        """IDT base and limit, RSP, RFLAGS, CS and SS of `vcpu`."""
        rsp, rflags, cs, ss = self.pushed.read(vcpu)
        return self.idtr.base, self.idtr.limit, rsp, rflags, cs, ss

    def write(self, vcpu: CpuState, rsp: int, rflags: int, rip: int) -> None:
        """Set RSP, RFLAGS and RIP of `vcpu`."""
        self.entered.write(vcpu, rsp, rflags, rip)


_ENTRY_REGISTERS = _EntryRegisters(X86_64.registers)


def _read_register(vcpu: CpuState, register: int, into: _Register) -> _Register:
    """Read `register` of `vcpu` into a fresh `into` (the binding's reg_read costs ~8 us; this ~1 us)."""
    status = uclib.uc_reg_read(vcpu.uc._uch, register, ctypes.byref(into))
    if status:
        raise MachineError(f"vCPU {vcpu.index}: reading register {register} failed ({status})")
    return into

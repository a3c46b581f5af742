"""x86-64 `pause` loops that only wait on memory (`while (cond) cpu_relax();`), found by static analysis.

A loop through a `pause` is *pure* when every instruction of it is a load, a compare, register arithmetic or a
direct jump (no store, call, string, port, MSR, time or serialising instruction) and no address it loads from is
computed from a register the loop writes: each turn is then a function of the registers the loop writes and of
the bytes it loads, and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import capstone
from capstone import x86
from unicorn import x86_const

LOOP_REACH = 32
"""Instructions followed from a `pause` looking for the way back to it."""
PURE = frozenset({"pause", "nop", "mov", "movzx", "movsx", "movsxd", "cmp", "test", "and", "or", "xor", "add", "sub",
                  "lea", "shr", "shl", "sar", "not", "neg", "bt", "jmp"})
"""Mnemonics a pure loop may hold besides conditional jumps: they read registers and memory, write registers."""
FLAGS_AND_PC = frozenset({"rflags", "rip"})


@dataclass(frozen=True)
class Load:
    """A memory operand `[base + index * scale + displacement]` of `size` bytes (Unicorn register ids; None:
    no such register)."""

    base: int | None
    index: int | None
    scale: int
    displacement: int
    size: int

    def address(self, read_register: Callable[[int], int]) -> int:
        """The address loaded from, given how to read a register of the vCPU."""
        base = read_register(self.base) if self.base is not None else 0
        index = read_register(self.index) if self.index is not None else 0
        return (base + index * self.scale + self.displacement) & (2**64 - 1)


@dataclass(frozen=True)
class SpinLoop:
    """A pure `pause` loop: the registers it writes, what it loads, and `[begin, end)` of its code when that holds
    nothing but the loop (None: the loop is spread out)."""

    written: tuple[int, ...]
    loads: tuple[Load, ...]
    span: tuple[int, int] | None = None


def pure_pause_loops(functions: Iterable[tuple[int, bytes]]) -> dict[int, SpinLoop]:
    """The pure loops in the code of `functions` ((address, bytes) each), by the address of their `pause`."""
    disassembler = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    disassembler.detail = True
    loops: dict[int, SpinLoop] = {}
    for begin, code in functions:
        if b"\xf3\x90" not in code:
            continue
        instructions = {insn.address: insn for insn in disassembler.disasm(code, begin)}
        for address, insn in instructions.items():
            if insn.mnemonic == "pause":
                loop = _pure_loop(instructions, address)
                if loop is not None:
                    loops[address] = loop
    return loops


def _successors(insn: capstone.CsInsn) -> Iterator[int]:
    """Where control goes after `insn` (a direct jump's target; nothing after a return, call or indirect jump:
    those make a loop impure anyway)."""
    mnemonic = insn.mnemonic
    if mnemonic.startswith("j"):
        target = insn.operands[0]
        if target.type == x86.X86_OP_IMM:
            yield target.imm & (2**64 - 1)
        if mnemonic != "jmp":
            yield insn.address + insn.size
    elif mnemonic not in ("ret", "call", "ud2", "hlt"):
        yield insn.address + insn.size


def _pure_loop(instructions: dict[int, capstone.CsInsn], pause: int) -> SpinLoop | None:
    """The loop through `pause`, if it is pure (see the module's docstring)."""
    reached, frontier = {pause}, [pause]
    edges: list[tuple[int, int]] = []
    while frontier and len(reached) < LOOP_REACH:
        address = frontier.pop()
        for successor in _successors(instructions[address]):
            if successor in instructions:
                edges.append((address, successor))
                if successor not in reached:
                    reached.add(successor)
                    frontier.append(successor)
    loop, grew = {pause}, True  # the instructions from which the pause is reached again
    while grew:
        grew = False
        for source, target in edges:
            if target in loop and source not in loop:
                loop.add(source)
                grew = True
    if len(loop) < 2:
        return None
    written: set[str] = set()
    memory: list[tuple[capstone.CsInsn, x86.X86Op]] = []
    for address in loop:
        insn = instructions[address]
        if not (insn.mnemonic in PURE or insn.mnemonic.startswith(("j", "set", "cmov"))):
            return None
        if insn.mnemonic.startswith("j") and insn.operands[0].type != x86.X86_OP_IMM:
            return None
        if insn.mnemonic != "lea":
            for operand in insn.operands:
                if operand.type == x86.X86_OP_MEM:
                    if operand.access & capstone.CS_AC_WRITE or operand.mem.segment:
                        return None
                    memory.append((insn, operand))
        written.update(insn.reg_name(register) for register in insn.regs_access()[1])
    written -= FLAGS_AND_PC
    loads = []
    for insn, operand in memory:
        mem = operand.mem
        base = insn.reg_name(mem.base) if mem.base else None
        index = insn.reg_name(mem.index) if mem.index else None
        if {_full(base), _full(index)} & {_full(name) for name in written}:
            return None  # an address the loop computes: not watched
        if base == "rip":
            loads.append(Load(None, None, 1, insn.address + insn.size + mem.disp, operand.size))
        else:
            loads.append(Load(_register(base), _register(index), mem.scale, mem.disp, operand.size))
    begin, end = min(loop), max(address + instructions[address].size for address in loop)
    whole = sum(instructions[address].size for address in loop) == end - begin
    return SpinLoop(tuple(sorted({_unicorn(_full(name)) for name in written})), tuple(loads),
                    (begin, end) if whole else None)


def _full(name: str | None) -> str | None:
    """The 64-bit register `name` is part of (`eax` -> `rax`, `r12w` -> `r12`)."""
    if name is None or name == "rip":
        return name
    if name[1:].rstrip("dwb").isdigit():
        return name.rstrip("dwb")
    core = name.removeprefix("r").removeprefix("e").removesuffix("x").removesuffix("l").removesuffix("h")
    return {"a": "rax", "b": "rbx", "c": "rcx", "d": "rdx", "si": "rsi", "di": "rdi", "bp": "rbp",
            "sp": "rsp"}.get(core, name)


def _register(name: str | None) -> int | None:
    return None if name is None else _unicorn(_full(name))


def _unicorn(name: str | None) -> int:
    return getattr(x86_const, f"UC_X86_REG_{str(name).upper()}")

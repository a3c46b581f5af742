"""Xen's spin-waits (`while (cond) cpu_relax();`), slept through instead of emulated pause by pause.

A vCPU waiting on a lock or a counter changes nothing until another vCPU writes what it reads: only one vCPU runs
at a time, so within its slice the memory it polls stays as it was. The image's `pause` loops are analysed once:
a loop that only loads (no store, call, time or device access) from addresses its own instructions do not
compute is *pure*: once one full turn of it ran inside one slice and came back to its `pause` with the registers
it writes unchanged, every further turn is the same. The vCPU then stops there and sleeps (SPINNING) until a
byte it loads changes (checked after every other vCPU's slice, alarm and host call; it wakes at that slice's
end, when the write is sure to have happened) or an interrupt it can take arrives; its clock advances over the
time it spun, counted as instructions, so virtual time runs as if it had spun.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import capstone
from capstone import x86
from unicorn import x86_const

from ...errors import MachineError
from ...image import Image
from ...machine import Vcpu, VcpuState
from ...machine.hooks import guarded
from ...machine.vcpu import StopReason
from .site_hooks import SiteHooks, python_hook
from .sites import code_spans

if TYPE_CHECKING:
    from .machine import XenMachine

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

    def address(self, vcpu: Vcpu) -> int:
        base = vcpu.read(self.base) if self.base is not None else 0
        index = vcpu.read(self.index) if self.index is not None else 0
        return (base + index * self.scale + self.displacement) & (2**64 - 1)


@dataclass(frozen=True)
class SpinLoop:
    """A pure `pause` loop: the registers it writes and what it loads."""

    written: tuple[int, ...]
    loads: tuple[Load, ...]


def spin_loops(image: Image) -> dict[int, SpinLoop]:
    """The pure loops of `image`'s code, by the address of their `pause`."""
    disassembler = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    disassembler.detail = True
    loops: dict[int, SpinLoop] = {}
    for begin, end, _ in code_spans(image):
        code = image.read(begin, end - begin)
        if code is None or b"\xf3\x90" not in code:
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
    return SpinLoop(tuple(sorted({_unicorn(_full(name)) for name in written})), tuple(loads))


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


class Spins:
    """The spin-waits of one machine: which vCPU sleeps in one, on what."""

    def __init__(self, machine: XenMachine):
        self.machine = machine
        self.loops = spin_loops(machine.hypervisor)
        self.slices = 0
        """Slices run so far (numbers the current one)."""
        self._turn: dict[int, tuple[int, int, tuple[int, ...]]] = {}  # vCPU -> (pause, slice, written registers)
        self._sleepers: dict[tuple[int, bytes], set[int]] = {}  # (address, bytes there) -> vCPUs waiting on it
        self._waits: dict[int, list[tuple[int, bytes]]] = {}  # sleeping vCPU -> what it waits on

    def hook_sites(self, site_hooks: SiteHooks) -> None:
        """Have each pure loop's `pause` hooked once a vCPU is about to run it."""
        site_hooks.add(tuple(self.loops), lambda vcpu: python_hook(guarded(
            vcpu, lambda address, size: self.paused(vcpu, address))))

    def paused(self, vcpu: Vcpu, pause: int) -> None:
        """`vcpu` is at the `pause` of a pure loop: the second time within one slice with the same registers,
        it stops there to sleep."""
        loop = self.loops[pause]
        turn = (pause, self.slices, tuple(vcpu.read(register) for register in loop.written))
        if self._turn.get(vcpu.index) != turn:
            self._turn[vcpu.index] = turn
            return
        memory = self.machine.memory
        try:
            waits = [(address, memory.read(address, load.size))
                     for load in loop.loads for address in (load.address(vcpu),)]
        except MachineError:
            return  # it loads outside RAM: left to run
        self._waits[vcpu.index] = waits
        for wait in waits:
            self._sleepers.setdefault(wait, set()).add(vcpu.index)
        vcpu.stop(StopReason.SPIN)

    def wake_changed(self, at_ps: int) -> None:
        """Wake the sleepers whose loads changed, at `at_ps` at the earliest, in vCPU order."""
        memory = self.machine.memory
        changed: set[int] = set()
        for (address, value), sleepers in self._sleepers.items():
            if memory.read(address, len(value)) != value:
                changed |= sleepers
        for index in sorted(changed):
            vcpu = self.machine.vcpus[index]
            self.wake(vcpu, at_ps)
            self.machine.scheduler.queue(vcpu)

    def wake(self, vcpu: Vcpu, at_ps: int) -> None:
        """`vcpu` runs again from `at_ps` at the earliest; it spun until then."""
        spun = max(0, at_ps - vcpu.clock_ps)
        vcpu.clock_ps += spun
        vcpu.instructions += spun // vcpu.ps_per_instruction
        vcpu.state = VcpuState.RUNNING
        for wait in self._waits.pop(vcpu.index, ()):
            sleepers = self._sleepers[wait]
            sleepers.discard(vcpu.index)
            if not sleepers:
                del self._sleepers[wait]
        self._turn.pop(vcpu.index, None)

"""The safety oracle on the xen engine: what Xen's own livepatch code does, told to `livepatch.oracle.Oracle`.

Xen's master opens the window when it masks NMIs (`arch_livepatch_mask`), writes each record's bytes in
`arch_livepatch_apply` / `arch_livepatch_revert` (the oracle looks at every vCPU as it enters them: the bytes
about to be rewritten are read from the record, as Xen computes them), and releases with `arch_livepatch_unmask`
(the written sites are watched for stale code; the sites a revert put back are checked for residue). Stacks are
read by their return addresses: Debian's xen-syms keeps no frame pointers.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ...errors import MachineError
from ...livepatch.oracle import Oracle
from ...machine import Vcpu
from .func_record import read_func_record
from .interrupts import HYPERVISOR_CS, IST_STACKS, PAGE
from .layout import STACK_SIZE
from .machine import XenMachine

WORD = 8
CALL_REL32 = 0xE8
CALL_INDIRECT = 0xFF  # with ModRM reg 2 (`call *...`), 2, 3, 6 or 7 bytes before the return address
MODRM_REG, MODRM_REG_CALL = 0x38, 0x10
INDIRECT_CALL_LENGTHS = (2, 3, 6, 7)
LONGEST_CALL = 7
WALK = "return addresses"


@dataclass(frozen=True)
class ActionUnderWay:
    """The action Xen's rendezvous runs: its oracle label and where its violations count."""

    label: str
    payload: str
    violations: Counter[str]


@dataclass(frozen=True)
class _Applied:
    """A record Xen applied: its payload, function, site, and what the site held before."""

    payload: str
    function: str
    site: int
    before: bytes


class XenStacks:
    """The xen engine's `StackReader`: the RIP, then every word from RSP up that a call left there (a code
    address right after a call instruction) or an exception frame holds (followed by Xen's code selector);
    from an IST stack (NMI, #MC, #DB, #DF) on to the interrupted context's, up to `cpu_info`."""

    def __init__(self, machine: XenMachine):
        self.machine = machine
        self._functions = machine.hypervisor.function_span

    def __call__(self, vcpu: Vcpu) -> tuple[str, list[int]]:
        registers = self.machine.arch.registers
        found = [vcpu.read(registers.pc)]
        top = self.machine.platform.stack_tops[vcpu.index]
        bottom, primary_top = top - STACK_SIZE, top - self.machine.offsets.cpu_info_size
        ist_end = bottom + (1 + IST_STACKS) * PAGE
        sp = vcpu.read(registers.sp)
        for _ in range(IST_STACKS + 1):  # an IST stack leads to the context it interrupted, at most each once
            if bottom + PAGE <= sp < ist_end:
                segment_top = sp - (sp - bottom) % PAGE + PAGE
            elif ist_end <= sp < primary_top:
                segment_top = primary_top
            else:
                break
            found += self._returns(sp, segment_top)
            if segment_top == primary_top:
                break
            sp = self.machine.memory.read_u64(segment_top - 2 * WORD)  # the RSP the CPU saved at the IST's top
        return WALK, found

    def _returns(self, begin: int, end: int) -> Iterator[int]:
        """The words in `[begin, end)` that are code addresses (in a function of Xen's, or in the payload space)
        a call left there or an exception frame holds. Most words fail on the span of Xen's functions, with no
        lookup."""
        machine = self.machine
        data = machine.memory.read(begin, end - begin)
        words = struct.unpack(f"<{len(data) // WORD}Q", data[:len(data) // WORD * WORD])
        (functions_begin, functions_end), (payloads_begin, payloads_end) = self._functions, machine.payload_space
        function_at = machine.hypervisor.function_at
        for k, word in enumerate(words):
            code = (functions_begin <= word < functions_end and function_at(word) is not None
                    or payloads_begin <= word < payloads_end)
            if code and (k + 1 < len(words) and words[k + 1] == HYPERVISOR_CS or self._after_call(word)):
                yield word

    def _after_call(self, address: int) -> bool:
        """Whether the bytes before `address` end with a call instruction."""
        code = self.machine.memory.read(address - LONGEST_CALL, LONGEST_CALL)
        if code[-5] == CALL_REL32:
            return True
        return any(code[-n] == CALL_INDIRECT and code[1 - n] & MODRM_REG == MODRM_REG_CALL
                   for n in INDIRECT_CALL_LENGTHS)


class PatchingFeed:
    """Tells `oracle` what Xen's patching code does on `machine`; `action()` is the action under way."""

    def __init__(self, machine: XenMachine, oracle: Oracle, action: Callable[[], ActionUnderWay | None]):
        self.machine = machine
        self.oracle = oracle
        self._action = action
        self._written: set[tuple[int, int]] = set()  # this window's sites, [begin, end)
        self._applied: dict[int, _Applied] = {}  # Xen's struct livepatch_func address -> what applying it replaced
        self._reverted: list[_Applied] = []  # the records of the payload being reverted, in Xen's order
        machine.observe_entry("arch_livepatch_mask", self._opened)
        machine.observe_entry("arch_livepatch_apply", lambda vcpu: self._writing(vcpu, apply=True))
        machine.observe_entry("arch_livepatch_revert", lambda vcpu: self._writing(vcpu, apply=False))
        machine.observe_entry("arch_livepatch_unmask", self._released)

    def _opened(self, vcpu: Vcpu) -> None:
        action = self._action()
        if action is not None:
            self.oracle.open(action.label, action.violations, [])

    def _writing(self, vcpu: Vcpu, *, apply: bool) -> None:
        """Xen's `arch_livepatch_apply(func, state)` or `arch_livepatch_revert(func, state)` is entered: the bytes
        it is about to write are `livepatch_insn_len` at the patch offset (past an ENDBR64)."""
        machine, memory = self.machine, self.machine.memory
        record = vcpu.read(machine.arch.registers.arguments[0])
        func = read_func_record(memory, record)
        if func is None:
            return
        try:
            offset = machine.arch.patch_offset(memory.read(func.old_addr, 4))
            length = machine.arch.jump_size if func.new_addr else func.new_size - offset
            if length <= 0:
                return
            before = memory.read(func.old_addr + offset, length)
        except MachineError:  # its target lies outside RAM: Xen's own store faults there, nothing is written
            return
        site = func.old_addr + offset
        applied = None if apply else self._applied.pop(record, None)
        if self._reverted and (applied is None or applied.payload != self._reverted[0].payload):
            self._check_reverted(vcpu)  # Xen reverts payload by payload, then applies
        if apply:
            body: tuple[int, int] | None = (func.old_addr, func.old_addr + func.old_size)
            action = self._action()
            self._applied[record] = _Applied(action.payload if action else "-", func.name, site, before)
        else:
            body = (func.new_addr, func.new_addr + func.new_size) if func.new_addr else None
            if applied is not None:
                self._reverted.append(applied)
        self.oracle.also_patches([(func.name, func.old_addr)])
        self.oracle.writing(vcpu, site, length, body, func.name)
        self._written.add((site, site + length))

    def _check_reverted(self, vcpu: Vcpu) -> None:
        """Xen is done reverting a payload: each site must hold what it held before the payload's first record
        there was applied (Xen reverts first to last)."""
        sites: dict[int, tuple[str, int, bytes]] = {}
        for record in self._reverted:
            sites.setdefault(record.site, (record.function, record.site, record.before))
        self.oracle.reverted(vcpu, self._reverted[0].payload, list(sites.values()))
        self._reverted.clear()

    def _released(self, vcpu: Vcpu) -> None:
        """The master puts the NMI callback back: the last payload reverted is checked, every written site
        watched."""
        if self._reverted:
            self._check_reverted(vcpu)
        self.oracle.released(sorted(self._written))
        self._written.clear()

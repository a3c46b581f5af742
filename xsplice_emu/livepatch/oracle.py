"""The safety oracle: did patching itself go wrong on some vCPU? (docs/oracle.md)

Five checks, each a `violation` trace event on the offending vCPU, counted
per action in its `ActionResult`:

- `torn`: when patch bytes are written, a vCPU's RIP, or a code address on
  its live stack (an interrupted context's return RIP), lies in the bytes
  being rewritten; or a vCPU is about to run a block overlapping code
  written since it last serialised (the machine's watch on its unseen code).
- `active`: when a function is patched, a vCPU's live stack holds an
  address inside that function's old body (a frame that will return into
  code being replaced: Linux klp's consistency check).
- `stale`: after the release, a vCPU enters a patched site and runs a block
  translated from other bytes than memory holds there now (its translated
  code was not dropped).
- `nmi_path`: an NMI is delivered while an action that patches a function
  the firmware's do_nmi reaches is under way (from the master's election,
  when NMIs are masked, to the release; an unsafe patch: its first byte to
  its last).
- `residue`: a revert leaves a patched site holding other bytes than it
  held before the payload was applied (Xen reverts a payload's records
  first to last: with two records on one function the first one's jump
  stays, while the payload reads CHECKED).

The judge is the same for both engines: each feeds it what its patching
writes (`open`, `writing`, `released`, `reverted`) and reads stacks its own
way (a `StackReader`). The controller engine's firmware keeps frame
pointers (`FirmwareStacks`: its frame records when the chain runs from the
RIP to the outermost frame, the walk crossing its interrupt entry through
the saved registers; conservatively, every word from RSP to the top of the
stack that is a code address, elsewhere); the xen engine reads Xen's
(engines/xen/patching.py). The event says which in `walk`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from ..arch.base import Architecture
from ..arch.register_batch import RegisterBatch
from ..image import Image
from ..machine import PS_PER_NS, GuestMemory, Machine, Vcpu, VcpuState
from ..machine.subscribers import NMI, WATCH_HIT, P, Topic
from ..platform import STACK_SIZE
from ..tracing.kinds import EventKind
from ..tracing.trace import Trace
from .unsafe import on_nmi_path

CHECKS = ("torn", "active", "stale", "nmi_path", "residue")
BACKTRACE_DEPTH = 6
WORD = 8
LEAF_SCAN_WORDS = 64  # words between a frameless function's RSP and its caller's frame record, at most


@dataclass(frozen=True)
class _Site:
    """A patched site a vCPU has not entered since the release: `[address, end)`, and its action."""

    address: int
    end: int
    action: str


@dataclass(frozen=True)
class _Window:
    """An action from the master's election (or its first unsafe write) to its release."""

    label: str
    nmi_reachable: tuple[str, ...]  # the functions it patches that do_nmi reaches


StackReader = Callable[[Vcpu], tuple[str, list[int]]]
"""How a vCPU's stack was read (the event's `walk`) and the code addresses on it, innermost first."""


class WatchedMachine(Protocol):
    """What the oracle needs of a machine, either engine's."""

    vcpus: list[Vcpu]
    trace: Trace
    memory: GuestMemory
    arch: Architecture

    def time_of(self, vcpu: Vcpu) -> int: ...

    def describe(self, address: int) -> str: ...

    def watch(self, index: int, ranges: list[tuple[int, int]]) -> None: ...

    def fresh_block_size(self, address: int) -> int: ...

    def subscribe(self, topic: Topic[P], callback: Callable[P, None]) -> None: ...


class Oracle:
    """Watches one machine's patching; the engine tells it what is written, when, and when it is released."""

    def __init__(self, machine: WatchedMachine, *, nmi_path: list[tuple[int, int]], stack: StackReader):
        """`nmi_path`: `[begin, end)` of the functions this machine's NMIs run (`nmi_reach`); `stack` reads a
        vCPU's stack. A machine that tracks the code each vCPU has not serialised on tells `sync` when it
        changes."""
        self.machine = machine
        self.counts: Counter[str] = Counter()  # over the whole run
        self._window: _Window | None = None
        self._stale: dict[int, list[_Site]] = {}  # vCPU -> sites to check at its next entry
        self._reported_unseen: dict[int, set[tuple[int, int]]] = {}
        self._labels: dict[int, str] = {}  # vCPU -> action label of its unseen code
        self._last_label = "-"
        self._counts_of: dict[str, Counter[str]] = {}  # action label -> its counts (the latest of that label)
        self._nmi_path = nmi_path
        self._stack = stack
        machine.subscribe(WATCH_HIT, self._on_watch_hit)
        machine.subscribe(NMI, self._on_nmi)

    # -- what Livepatch tells it --------------------------------------------------------------------------------
    def open(self, label: str, counts: Counter[str], targets: list[tuple[str, int]]) -> None:
        """An action's patching begins (master elected, NMIs masked; or its first unsafe write) on `targets`
        (function, address): its violations, now and later (stale ones), count towards `counts`."""
        self._window = _Window(label, tuple(sorted({name for name, address in targets if self._reaches_nmi(address)})))
        self._last_label = label
        self._counts_of[label] = counts

    def also_patches(self, targets: list[tuple[str, int]]) -> None:
        """The action under way patches `targets` (function, address) too: an engine that learns them as they
        are written (the xen engine) says so before each write."""
        window = self._window
        if window is not None:
            reachable = {name for name, address in targets if self._reaches_nmi(address)}
            if not reachable <= set(window.nmi_reachable):
                self._window = replace(window, nmi_reachable=tuple(sorted({*window.nmi_reachable, *reachable})))

    def writing(self, writer: Vcpu | None, address: int, length: int, body: tuple[int, int] | None,
                function: str) -> None:
        """`length` bytes at `address` are about to be rewritten (by vCPU `writer`, or the host); `body` is the
        old function's `[begin, end)` when this patches a function's start."""
        label, end = self._label(), address + length
        for vcpu in self._started():
            pc = vcpu.current_pc() if vcpu is writer else vcpu.pc
            if address <= pc < end:
                self._report(vcpu, "torn", pc, label, f"its RIP is inside {function}'s bytes being rewritten")
                continue
            walk, words = self._stack(vcpu)
            torn = _first_in(words, address, end)
            if torn is not None:
                self._report(vcpu, "torn", torn, label, f"a return RIP on its stack is inside {function}'s bytes "
                                                        "being rewritten", (walk, words))
            elif body is not None:
                active = _first_in(words, body[0] + 1, body[1] + 1)
                if active is not None:
                    self._report(vcpu, "active", active, label, f"its stack returns into {function}, which is "
                                                                "being replaced", (walk, words))

    def released(self, sites: list[tuple[int, int]]) -> None:
        """The window closed: every vCPU must run the code now at each of `sites` (`[address, end)`) when it next
        enters one."""
        label = self._label()
        self._window = None
        addresses = {address for address, _ in sites}
        fresh = [_Site(address, end, label) for address, end in sites]
        for vcpu in self._started():
            pending = self._stale.setdefault(vcpu.index, [])
            pending[:] = [site for site in pending if site.address not in addresses]
            pending += fresh
            self.sync(vcpu)

    def reverted(self, vcpu: Vcpu, payload: str, sites: list[tuple[str, int, bytes]]) -> None:
        """`payload` was reverted on `vcpu`: each site (function, address, the bytes there before the payload was
        applied) must hold those bytes again."""
        for function, address, before in sites:
            now = self.machine.memory.read(address, len(before))
            if now != before:
                self._report(vcpu, "residue", address, self._label(),
                             f"reverting {payload} left {now.hex(' ')} at {function}, which held {before.hex(' ')} "
                             "before it was applied")

    # -- what the machine tells it ----------------------------------------------------------------------------------
    def sync(self, vcpu: Vcpu) -> None:
        """Watch the sites this vCPU must enter afresh and the code written that it has not serialised on."""
        reported = self._reported_unseen.setdefault(vcpu.index, set())
        if vcpu.unseen_code:
            reported &= set(vcpu.unseen_code)
            self._labels.setdefault(vcpu.index, self._label())
            ranges = [r for r in vcpu.unseen_code if r not in reported]
        else:
            reported.clear()
            self._labels.pop(vcpu.index, None)
            ranges = []
        ranges += [(site.address, site.end) for site in self._stale.get(vcpu.index, ())]
        self.machine.watch(vcpu.index, ranges)

    def _on_watch_hit(self, vcpu: Vcpu, address: int, size: int) -> None:
        unseen = [r for r in vcpu.unseen_code if r[0] < address + size and address < r[1]
                  and r not in self._reported_unseen.get(vcpu.index, set())]
        if unseen:
            self._reported_unseen.setdefault(vcpu.index, set()).update(unseen)
            label = self._labels.get(vcpu.index, self._last_label)
            self._report(vcpu, "torn", address, label, f"it runs a block of {size} bytes overlapping code written "
                                                       "since it last serialised")
        pending = self._stale.get(vcpu.index, [])
        site = next((site for site in pending if site.address == address), None)
        if site is not None:
            pending.remove(site)
            fresh = self.machine.fresh_block_size(address)
            if size != fresh and size not in self._instruction_ends(address, fresh):
                self._report(vcpu, "stale", address, site.action, f"it runs a block of {size} bytes translated "
                                                                  f"before the patch; memory there now makes {fresh}")
        self.sync(vcpu)

    def _instruction_ends(self, address: int, size: int) -> set[int]:
        """Where the instructions memory holds in `[address, address + size)` end, from `address`: a block cut
        short at one of them (Unicorn may translate one instruction alone) was translated from these bytes."""
        code = self.machine.memory.read(address, size)
        return {at + length - address for at, length, _ in self.machine.arch.instructions(code, address)}

    def _on_nmi(self, vcpu: Vcpu) -> None:
        window = self._window
        if window is not None and window.nmi_reachable:
            self._report(vcpu, "nmi_path", vcpu.pc, window.label,
                         f"an NMI while {', '.join(window.nmi_reachable)} (reached from do_nmi) "
                         "is being patched")

    # -- helpers ------------------------------------------------------------------------------------------------
    def _label(self) -> str:
        """The action violations count towards now: the one under way, else the last one."""
        return self._window.label if self._window else self._last_label

    def _report(self, vcpu: Vcpu, check: str, address: int, action: str, detail: str,
                stack: tuple[str, list[int]] | None = None) -> None:
        machine = self.machine
        walk, backtrace = stack if stack is not None else self._stack(vcpu)
        machine.trace.emit(machine.time_of(vcpu) // PS_PER_NS, vcpu.index, EventKind.VIOLATION, check=check,
                           address=address, symbol=machine.describe(address), action=action, walk=walk,
                           backtrace=" < ".join(machine.describe(word) for word in backtrace[:BACKTRACE_DEPTH]),
                           detail=detail)
        self.counts[check] += 1
        counts = self._counts_of.get(action)
        if counts is not None:
            counts[check] += 1

    def _started(self) -> list[Vcpu]:
        return [vcpu for vcpu in self.machine.vcpus if vcpu.state is not VcpuState.WAITING_FOR_START]

    def _reaches_nmi(self, address: int) -> bool:
        return any(begin <= address < end for begin, end in self._nmi_path)


class FirmwareStacks:
    """The controller engine's `StackReader`: the firmware's stacks (`cpu_stacks`, one per vCPU)."""

    def __init__(self, machine: Machine):
        self.machine = machine
        self._stacks = machine.image.resolve("cpu_stacks")
        entry = machine.image.lookup("common_interrupt") or machine.image.lookup("entry.o#common_interrupt")
        self._interrupt_entry = None if entry is None else (entry.address, entry.address + max(entry.size, 1))
        registers = machine.arch.registers
        self._registers = RegisterBatch((registers.pc, registers.sp, registers.frame))
        self._code_spans = [image.function_span for image in machine.symbols.images]
        self._functions: dict[int, tuple[int, int] | None] = {}  # address in a code span -> describe_function's

    def __call__(self, vcpu: Vcpu) -> tuple[str, list[int]]:
        """How `vcpu`'s stack was read and the code addresses on it, innermost first: its frame records
        ("frame pointers"), when they chain from its RIP to the outermost frame; else every word from RSP to the
        top that is an address in some function ("conservative")."""
        if self._stacks is None:
            return "conservative", []
        top = self._stacks + (vcpu.index + 1) * STACK_SIZE
        frames = self._frames(vcpu, top - STACK_SIZE, top)
        if frames is not None:
            return "frame pointers", frames
        return "conservative", list(self._words(vcpu, top))

    def _frames(self, vcpu: Vcpu, bottom: int, top: int) -> list[int] | None:
        """The RIP and every return address of the frame-record chain, through the firmware's interrupt entry
        (its RBP points at the saved registers: the interrupted RIP, RSP and RBP are there); None if the chain
        leaves the stack before its end (a zero frame pointer or return address, as reset_stack_and_jump leaves).
        The innermost function of each context may have no frame record yet (`_innermost`)."""
        memory, walk = self.machine.memory, self.machine.arch.frame_walk
        pc, sp, frame = self._registers.read(vcpu)
        found = [pc, *self._innermost(pc, sp, frame, top)]
        while frame:
            if not bottom <= frame <= top - 2 * WORD:
                return None
            saved, returns = memory.read_u64(frame), memory.read_u64(frame + WORD)
            if not returns:
                break
            found.append(returns)
            if self._interrupt_entry is not None and self._interrupt_entry[0] <= returns < self._interrupt_entry[1]:
                if not bottom <= saved <= top - walk.saved_sp - WORD:
                    return None
                regs = saved
                interrupted, saved = memory.read_u64(regs + walk.saved_pc), memory.read_u64(regs + walk.saved_frame)
                found += [interrupted, *self._innermost(interrupted, memory.read_u64(regs + walk.saved_sp), saved, top)]
            elif saved and saved <= frame:
                return None
            frame = saved
        return found

    def _innermost(self, pc: int, sp: int, frame: int, top: int) -> list[int]:
        """Return addresses of the function at `pc` that its frame record does not hold yet: at its first
        instruction, or after its `push rbp`, the one on the stack; in a function with no frame record (gcc
        leaves them out of leaf functions, assembly has none), the code addresses between its RSP and its
        caller's frame record."""
        memory, prologue = self.machine.memory, self.machine.arch.frame_walk.prologue
        found = self._function(pc)
        if found is not None and memory.read(found[0], len(prologue)) == prologue:
            if found[1] == 0:
                return [memory.read_u64(sp)]
            return [memory.read_u64(sp + WORD)] if found[1] == len(prologue) else []
        end = frame if sp < frame <= top else min(top, sp + LEAF_SCAN_WORDS * WORD)
        words = [memory.read_u64(address) for address in range(sp, min(end, sp + LEAF_SCAN_WORDS * WORD), WORD)]
        return [word for word in words if self._is_code(word)]

    def _words(self, vcpu: Vcpu, top: int) -> Iterator[int]:
        """The words from `vcpu`'s RSP to `top` that are addresses in some function."""
        machine = self.machine
        sp = vcpu.read(machine.arch.registers.sp)
        if not top - STACK_SIZE <= sp < top:
            return
        data = machine.memory.read(sp, top - sp)
        for offset in range(0, len(data) - WORD + 1, WORD):
            word = int.from_bytes(data[offset:offset + WORD], "little")
            if self._is_code(word):
                yield word

    def _is_code(self, word: int) -> bool:
        """Whether `word` is an address inside a function of the firmware or the hypervisor."""
        return bool(word) and self._function(word) is not None

    def _function(self, address: int) -> tuple[int, int] | None:
        """The machine's `describe_function(address)`: None outside the images' function spans, remembered inside
        them (a walk meets the same few code addresses again and again; the images' symbols never change)."""
        if address in self._functions:
            return self._functions[address]
        for begin, end in self._code_spans:
            if begin <= address < end:
                found = self._functions[address] = self.machine.describe_function(address)
                return found
        return None


def _first_in(words: list[int], begin: int, end: int) -> int | None:
    """The first of `words` in `[begin, end)`."""
    for word in words:
        if begin <= word < end:
            return word
    return None


def nmi_reach(image: Image, unsafe: dict[int, str]) -> list[tuple[int, int]]:
    """`[begin, end)` of every function of `image` its do_nmi reaches (`unsafe`: its `unsafe_functions`)."""
    ranges = []
    for address, why in unsafe.items():
        if on_nmi_path(why):
            found = image.function_at(address)
            if found is not None:
                ranges.append((address, address + max(found[0].size, 1)))
    return ranges

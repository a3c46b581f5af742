"""A seeded payload mutator and the checks one mutant must pass (tests/test_fuzz.py, `make fuzz`)."""

from __future__ import annotations

import errno
import random
import struct
import time
from dataclasses import dataclass, field

from helpers import PAYLOADS

from xsplice_emu import GuestFault, LivepatchError, Machine, MachineConfig
from xsplice_emu.engines.controller import Livepatch
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.platform import RAM_BASE

BASES = ("xen_hello_world", "xen_bye_world", "xen_nop", "xen_prepost_hooks", "xen_action_hooks",
         "xen_replace_world", "xen_expectations")
SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")  # name type flags addr offset size link info addralign entsize
INTERESTING = (0, 1, 0xD, 0x7F, 0x80, 0xFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 63, (1 << 64) - 1)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three mutations of an ELF payload: flipped bytes, a section's contents, a section header field."""
    out = bytearray(data)
    shoff, = struct.unpack_from("<Q", out, 0x28)
    shnum, = struct.unpack_from("<H", out, 0x3C)
    for _ in range(rng.randint(1, 3)):
        how = rng.randrange(4)
        if how == 0:
            at = rng.randrange(len(out))
            out[at] ^= 1 << rng.randrange(8)
        elif how in (1, 2) and shnum and shoff + shnum * SECTION_HEADER.size <= len(out):
            at = shoff + rng.randrange(1, shnum) * SECTION_HEADER.size
            fields = list(SECTION_HEADER.unpack_from(out, at))
            if how == 1:  # a section header field
                index = rng.choice((1, 2, 3, 4, 5, 6, 7, 8, 9))
                value = rng.choice(INTERESTING) if rng.random() < 0.6 else fields[index] + rng.randint(-64, 64)
                fields[index] = value % (1 << (32 if index in (1, 6, 7) else 64))
                SECTION_HEADER.pack_into(out, at, *fields)
            elif fields[5] and fields[4] + fields[5] <= len(out):  # 8 bytes of its contents
                width = min(8, fields[5])
                offset = fields[4] + rng.randrange(fields[5] - width + 1)
                value = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.getrandbits(64)
                out[offset:offset + width] = (value % (1 << 64)).to_bytes(8, "little")[:width]
        else:
            del out[rng.randrange(len(out) // 2, len(out)):]
    return bytes(out)


@dataclass
class Figures:
    """What a fuzz run saw."""

    cases: int = 0
    refused: int = 0
    accepted: int = 0
    applied: int = 0
    hook_faults: int = 0  # actions failed by a hook that faulted or never returned (contained)
    crashes: int = 0  # the hypervisor crashed running code an accepted payload broke
    machines: int = 1
    findings: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Fuzzer:
    """Mutants of Xen's test payloads against one machine: a hook that faults fails its action and the same
    machine goes on; a payload left applied as Xen would leave it (its revert vetoed), or whose broken new code
    crashed the hypervisor as it would crash Xen, gets a new machine. Once the payload is gone, hello_world
    must apply: anything else is a finding."""

    def __init__(self, image, *, seed: int):
        self.image = image
        self.rng = random.Random(seed)
        self.bases = [(PAYLOADS / f"{name}.livepatch").read_bytes() for name in BASES]
        self.hello = (PAYLOADS / "xen_hello_world.livepatch").read_bytes()
        self.figures = Figures()
        self._boot()

    def _boot(self) -> None:
        self.machine, self.livepatch = booted(self.image)

    def run(self, cases: int) -> Figures:
        started = time.perf_counter()
        for case in range(cases):
            data = mutate(self.rng.choice(self.bases), self.rng)
            try:
                self._case(f"m{case}", data)
            except Exception as exc:  # anything else is a finding: note it and go on with a new machine
                self.figures.findings.append(f"case {case}: {type(exc).__name__}: {exc}")
                self.figures.machines += 1
                self._boot()
            self.figures.cases += 1
        self.figures.seconds = time.perf_counter() - started
        return self.figures

    def _case(self, name: str, data: bytes) -> None:
        livepatch, figures = self.livepatch, self.figures
        before = observable(livepatch)
        try:
            livepatch.upload(name, data)
        except LivepatchError:
            figures.refused += 1
            if observable(livepatch) != before:
                figures.findings.append(f"{name}: a refused upload changed guest memory, the payload list or the "
                                        "free payload memory")
            return
        figures.accepted += 1
        try:
            for action in (Action.APPLY, Action.REVERT):
                result = livepatch.run_action(name, action, nodeps=True)
                figures.applied += action is Action.APPLY and result is not None and result.rc == 0
            if livepatch.get(name).state is PayloadState.APPLIED:
                livepatch.run_action(name, Action.REVERT)
            if livepatch.get(name).state is PayloadState.CHECKED:
                livepatch.action(name, Action.UNLOAD)
        except LivepatchError as exc:
            figures.hook_faults += exc.errno in (errno.EFAULT, errno.ETIMEDOUT)
        except GuestFault:  # the hypervisor ran code the payload broke (garbage new code, a split instruction)
            figures.crashes += 1  # and crashed, as Xen would: its loader accepts such a payload too
            figures.machines += 1
            self._boot()
            return
        if livepatch.rendezvous.busy:
            figures.findings.append(f"{name}: the rendezvous is still busy after the action")
        if livepatch.list() or livepatch.rendezvous.busy:  # kept as Xen would keep it (its revert vetoed)
            figures.machines += 1
            self._boot()
            return
        check_hello(livepatch, self.hello)


def observable(livepatch: Livepatch) -> tuple[str, list[str], tuple[tuple[int, int], ...]]:
    """What a refused request must leave as it was: the guest memory in use (hashed), the payload list and the
    free payload memory."""
    memory, used, at = livepatch.machine.memory, [], RAM_BASE
    for start, end in livepatch.memory.free:
        used.append(memory.digest(at, start))
        at = end
    used.append(memory.digest(at, memory.size))
    return "".join(used), [payload.name for payload in livepatch.list()], livepatch.memory.free


def booted(image) -> tuple[Machine, Livepatch]:
    """A 2-vCPU machine booted for 1 virtual ms, with its livepatch controller."""
    machine = Machine(image, config=MachineConfig(vcpus=2, seed=1))
    machine.run_for(1_000_000)
    return machine, Livepatch(machine)


def check_hello(livepatch: Livepatch, hello: bytes) -> None:
    """Upload `hello` (xen_hello_world's bytes) as "hello", apply, revert and unload it: AssertionError unless
    every step succeeds and every vCPU returns "Hello World" while it is applied."""
    machine = livepatch.machine
    livepatch.upload("hello", hello)
    results = [livepatch.run_action("hello", Action.APPLY)]
    extras = {machine.memory.read_cstring(a) for a in machine.call_all("xen_extra_version")}
    results.append(livepatch.run_action("hello", Action.REVERT))
    livepatch.action("hello", Action.UNLOAD)
    if any(result is None or result.rc for result in results) or extras != {"Hello World"}:
        raise AssertionError(f"hello_world no longer applies: {results}, {extras}")

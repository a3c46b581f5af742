"""What Xen's own rendezvous does, observed and traced with the controller engine's event kinds.

On the xen engine `check_for_livepatch_work` decides everything; the host only watches it at a few instructions
found in the image (`RendezvousSites`), so that `trace summary`, the export and the viewer show the same steps on
both engines: each `lock inc` of `livepatch_work.semaphore` (the first makes the master: `master_elected`; the
others are arrivals, in the CPU phase until the master sets `ready`, then in the IRQ phase), the master's store
of `ready` (the CPU phase complete), each `cli` and `popfq` of `local_irq_save`/`restore` (the master's `cli`
opens the patch window: the IRQ phase complete, `quiesced`), and each store of `do_work = 0` there (the release,
with the payload's rc; an abort first if the window never opened). `arch_livepatch_apply` and
`arch_livepatch_revert` open a patch record: the stores into code at that function's start until the release
are its `patch` event. `RendezvousPresence` tells which vCPUs are inside `check_for_livepatch_work`: an action
is over only when Xen cleared `do_work` and every vCPU is out (the master still prints its "finished" line and
drops the CPU maps lock after clearing it, and a slave whose slice ran ahead has not seen it cleared yet: a
request before then meets a busy lock, EBUSY, or a slave still waiting in the last action's loop).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import MachineError
from ...image import Image
from ...machine import PS_PER_NS, Vcpu
from ...tracing.kinds import EventKind
from .func_record import read_func_record
from .site_hooks import SiteHooks, running

if TYPE_CHECKING:
    from .machine import XenMachine

WORK = "common/livepatch.c#livepatch_work"
SEMAPHORE, TIMEOUT, DATA, DO_WORK, READY = 0, 4, 8, 16, 17
"""Offsets of the fields of Xen 4.17's `struct livepatch_work` (common/livepatch.c)."""
PAYLOAD_RC = 4
"""Offset of `rc` in Xen's `struct payload` (xen/livepatch_payload.h: state, then rc)."""
PATCH_REACH = 32
"""Bytes from a function's start that its patch may cover (an ENDBR64 offset and the longest NOP record)."""
RIP_OPERAND = re.compile(r"^(byte|dword) ptr \[rip ([+-]) (0x[0-9a-f]+)\](?:, (\w+))?$")


@dataclass(frozen=True)
class RendezvousSites:
    """The instructions of `check_for_livepatch_work` the observer hooks."""

    arrivals: tuple[int, ...]  # lock inc of the semaphore
    ready: tuple[int, ...]  # the master's ready = 1
    releases: tuple[int, ...]  # do_work = 0
    irq_off: tuple[int, ...]  # cli
    irq_on: tuple[int, ...]  # popfq

    @classmethod
    def of(cls, image: Image) -> RendezvousSites:
        work = image.address(WORK)
        function = image.address("check_for_livepatch_work")
        size = next(sym.size for sym in image.symbols if sym.address == function and sym.size)
        code = image.read(function, size)
        found: dict[str, list[int]] = {"arrivals": [], "ready": [], "releases": [], "irq_off": [], "irq_on": []}
        for address, length, mnemonic, operands in image.arch.disassembler.disasm_lite(code or b"", function):
            if mnemonic == "cli":
                found["irq_off"].append(address)
            elif mnemonic == "popfq":
                found["irq_on"].append(address)
            match = RIP_OPERAND.match(operands)
            if match is None:
                continue
            width, sign, displacement, source = match.groups()
            target = address + length + (int(displacement, 16) if sign == "+" else -int(displacement, 16))
            if mnemonic == "lock inc" and width == "dword" and target == work + SEMAPHORE:
                found["arrivals"].append(address)
            elif mnemonic == "mov" and width == "byte" and (target, source) == (work + READY, "1"):
                found["ready"].append(address)
            elif mnemonic == "mov" and width == "byte" and (target, source) == (work + DO_WORK, "0"):
                found["releases"].append(address)
        return cls(**{kind: tuple(addresses) for kind, addresses in found.items()})


@dataclass
class _Patch:
    """A function being patched: its record's name, the physical bytes of its start, what they held."""

    function: str
    address: int
    begin: int
    old: dict[int, int] = field(default_factory=dict)
    time_ns: int = 0


@dataclass
class _Action:
    """What was seen of the action under way."""

    payload: str
    master: int | None = None
    cpus: int = 0
    arrived: dict[str, list[int]] = field(default_factory=lambda: {"CPU": [], "IRQ": []})
    quiesced: bool = False
    patches: list[_Patch] = field(default_factory=list)


class RendezvousObserver:
    """Traces Xen's rendezvous on one xen-engine machine; decides nothing."""

    def __init__(self, machine: XenMachine):
        self.machine = machine
        image = machine.hypervisor
        self.sites = RendezvousSites.of(image)
        self.work = image.address(WORK)
        self.online_map = image.address("cpu_online_map")
        self.patchers = (image.address("arch_livepatch_apply"), image.address("arch_livepatch_revert"))
        self.action: _Action | None = None

    def hook_sites(self, sites: SiteHooks) -> None:
        """Observe the rendezvous's instructions on every vCPU (hooked once one is about to run them)."""
        for addresses, observer in ((self.sites.arrivals, self._arrival), (self.sites.ready, self._ready),
                                    (self.sites.releases, self._release), (self.sites.irq_off, self._irq_off),
                                    (self.sites.irq_on, self._irq_on), (self.patchers, self._patching)):
            sites.add(addresses, running(observer))

    def requested(self, payload: str, action: str, *, from_vcpu: int, at_ns: int) -> None:
        """Xen accepted `action` on `payload` from dom0 on `from_vcpu` at `at_ns`: trace the request, with the
        timeout Xen took."""
        machine = self.machine
        self.action = _Action(payload)
        machine.trace.emit(at_ns, None, EventKind.ACTION_REQUESTED, payload=payload, action=action,
                           from_vcpu=from_vcpu, timeout_ns=machine.memory.read_u32(self.work + TIMEOUT))

    # -- the steps ------------------------------------------------------------------------------------------------
    def _arrival(self, vcpu: Vcpu) -> None:
        """Before a `lock inc` of the semaphore: from -1 it makes the master; else an arrival."""
        action = self.action
        if action is None:
            return
        count = struct.unpack("<i", self.machine.memory.read(self.work + SEMAPHORE, 4))[0] + 1
        if count == 0:
            action.master = vcpu.index
            action.cpus = self._online() - 1
            self.machine.emit(vcpu, EventKind.MASTER_ELECTED, cpus=action.cpus)
            return
        phase = "IRQ" if self.machine.memory.read(self.work + READY, 1)[0] else "CPU"
        action.arrived[phase].append(vcpu.index)
        self.machine.emit(vcpu, EventKind.ARRIVED, phase=phase, count=count, of=action.cpus)

    def _online(self) -> int:
        """How many CPUs Xen's `cpu_online_map` holds (the words that can hold the machine's vCPUs)."""
        words = -(-len(self.machine.vcpus) // 64)
        return int.from_bytes(self.machine.memory.read(self.online_map, 8 * words), "little").bit_count()

    def _ready(self, vcpu: Vcpu) -> None:
        if self.action is not None:
            self.machine.emit(vcpu, EventKind.PHASE_COMPLETE, phase="CPU")

    def _irq_off(self, vcpu: Vcpu) -> None:
        action = self.action
        if action is None:
            return
        opens_window = vcpu.index == action.master
        if opens_window:
            self.machine.emit(vcpu, EventKind.PHASE_COMPLETE, phase="IRQ")
        self.machine.emit(vcpu, EventKind.IRQ_MASKED)
        if opens_window:
            action.quiesced = True
            self.machine.emit(vcpu, EventKind.QUIESCED)

    def _irq_on(self, vcpu: Vcpu) -> None:
        if self.action is not None:
            self.machine.emit(vcpu, EventKind.IRQ_UNMASKED)

    def _patching(self, vcpu: Vcpu) -> None:
        """`arch_livepatch_apply` or `_revert(func, state)`: the next code stores at `func->old_addr` are its."""
        action, memory = self.action, self.machine.memory
        if action is None:
            return
        record = read_func_record(memory, vcpu.argument(0))
        if record is None:
            return
        try:
            begin = memory.physical(record.old_addr, PATCH_REACH)
        except MachineError:  # its target lies outside RAM: Xen's own store faults there
            return
        action.patches.append(_Patch(record.name, record.old_addr, begin))

    def code_store(self, vcpu: Vcpu, address: int, size: int) -> None:
        """A store into code at physical `address`, before it lands: the bytes it replaces, if it patches."""
        action = self.action
        if action is None or not action.patches or vcpu.index != action.master:
            return
        patch = action.patches[-1]
        if not patch.begin <= address < patch.begin + PATCH_REACH:
            return
        if not patch.old:
            patch.time_ns = vcpu.current_time_ps() // PS_PER_NS
        for offset, byte in enumerate(self.machine.memory.read(address, size)):
            patch.old.setdefault(address + offset, byte)

    def _release(self, vcpu: Vcpu) -> None:
        """The master's `do_work = 0`: every vCPU is let go (after an abort, when the window never opened)."""
        action, machine = self.action, self.machine
        if action is None:
            return
        self.action = None
        for patch in action.patches:
            self._patched(vcpu, action, patch)
        if not action.quiesced:
            phase = "IRQ" if machine.memory.read(self.work + READY, 1)[0] else "CPU"
            online = [cpu for cpu in range(len(machine.vcpus)) if cpu != action.master]
            missing = " ".join(f"cpu{cpu}" for cpu in online if cpu not in action.arrived[phase])
            machine.emit(vcpu, EventKind.ABORT, reason=f"timeout in {phase} phase",
                         arrived=len(action.arrived[phase]), of=action.cpus, missing=missing)
        data = machine.memory.read_u64(self.work + DATA)
        machine.emit(vcpu, EventKind.RELEASED, rc=struct.unpack("<i", machine.memory.read(data + PAYLOAD_RC, 4))[0])

    def _patched(self, vcpu: Vcpu, action: _Action, patch: _Patch) -> None:
        if not patch.old:
            return  # a NOP record of no bytes
        memory = self.machine.memory
        begin, end = min(patch.old), max(patch.old) + 1
        old = bytes(patch.old.get(address, memory.read(address, 1)[0]) for address in range(begin, end))
        self.machine.trace.emit(patch.time_ns, vcpu.index, EventKind.PATCH, payload=action.payload,
                                function=patch.function, address=patch.address + begin - patch.begin, old=old.hex(),
                                new=memory.read(begin, end - begin).hex())


class RendezvousPresence:
    """The vCPUs inside `check_for_livepatch_work` on one xen-engine machine: from entering it until `idle_loop`
    calls `do_softirq` right after it returns."""

    def __init__(self, machine: XenMachine):
        self.inside: set[int] = set()
        machine.observe_entry("check_for_livepatch_work", self._entered)
        machine.observe_entry("do_softirq", self._left)

    def _entered(self, vcpu: Vcpu) -> None:
        self.inside.add(vcpu.index)

    def _left(self, vcpu: Vcpu) -> None:
        self.inside.discard(vcpu.index)

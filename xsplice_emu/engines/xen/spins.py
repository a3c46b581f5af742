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

import ctypes
from typing import TYPE_CHECKING

from ...arch.x86_64_pause_loops import SpinLoop, pure_pause_loops
from ...errors import MachineError
from ...image import Image
from ...machine import Vcpu, VcpuState
from ...machine.hooks import guarded
from ...machine.vcpu import StopReason
from .site_hooks import SiteHooks, python_hook
from .sites import code_spans

if TYPE_CHECKING:
    from .machine import XenMachine


class Spins:
    """The spin-waits of one machine: which vCPU sleeps in one, on what."""

    def __init__(self, machine: XenMachine):
        self.machine = machine
        self.loops = machine.hypervisor.derived(_pure_loops)
        self.slices = 0
        """Slices run so far (numbers the current one)."""
        self._turn: dict[int, tuple[int, int, tuple[int, ...]]] = {}  # vCPU -> (pause, slice, written registers)
        self._sleepers: dict[tuple[int, bytes], set[int]] = {}  # (host address, bytes there) -> vCPUs waiting
        self._waits: dict[int, list[tuple[int, bytes]]] = {}  # sleeping vCPU -> what it waits on

    def hook_sites(self, site_hooks: SiteHooks) -> None:
        """Have each pure loop's `pause` hooked once a vCPU is about to run it."""
        site_hooks.add(tuple(self.loops), lambda vcpu: python_hook(guarded(
            vcpu, lambda address, size: self.paused(vcpu, address))))

    def paused(self, vcpu: Vcpu, pause: int) -> None:
        """`vcpu` is at the `pause` of a pure loop: the second time within one slice with the same registers,
        it stops there to sleep."""
        loop = self.loops[pause]
        turn = (pause, self.slices, tuple(map(vcpu.read, loop.written)))
        if self._turn.get(vcpu.index) != turn:
            self._turn[vcpu.index] = turn
            return
        memory = self.machine.memory
        try:
            waits = [(memory.host_address + memory.physical(address, load.size), memory.read(address, load.size))
                     for load in loop.loads for address in (load.address(vcpu.read),)]
        except MachineError:
            return  # it loads outside RAM: left to run
        self._waits[vcpu.index] = waits
        for wait in waits:
            self._sleepers.setdefault(wait, set()).add(vcpu.index)
        vcpu.stop(StopReason.SPIN)

    def wake_changed(self, at_ps: int) -> None:
        """Wake the sleepers whose loads changed, at `at_ps` at the earliest, in vCPU order."""
        changed: set[int] = set()
        for (host_address, value), sleepers in self._sleepers.items():
            if ctypes.string_at(host_address, len(value)) != value:  # (after every slice: GuestMemory.read is dearer)
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


def _pure_loops(image: Image) -> dict[int, SpinLoop]:
    """The pure `pause` loops of `image`'s code as built, by the address of their `pause`."""
    return pure_pause_loops((begin, code) for begin, end, _ in image.derived(code_spans)
                            for code in (image.read(begin, end - begin),) if code is not None)

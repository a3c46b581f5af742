"""Xen's spin-waits (`while (cond) cpu_relax();`), slept through instead of emulated pause by pause.

A vCPU waiting on a lock or a counter changes nothing until another vCPU writes what it reads: only one vCPU runs
at a time, so within its slice the memory it polls stays as it was. The image's `pause` loops are analysed once:
a loop that only loads (no store, call, time or device access) from addresses its own instructions do not
compute is *pure*: once one full turn of it ran inside one slice and came back to its `pause` with the registers
it writes unchanged, every further turn is the same (turns are noted in C, `native.on_pause`: one that does not
repeat the last runs no Python). The vCPU then stops there and sleeps (SPINNING) until a byte it loads changes
(checked after every other vCPU's slice, alarm and host call) and its loop, tried once on memory as it is then
(`native.probe_turn`, which leaves the vCPU as it was), would leave: it wakes at that slice's end, when the write
is sure to have happened. A release of a ticket lock so wakes the one waiter whose turn it is; the others sleep
on (woken, each would run a slice to find the lock still taken, and could take it at its own earlier time once
the holder released it later in the same slice). An interrupt it can take also wakes it; its clock advances over
the time it spun, counted as instructions, so virtual time runs as if it had spun.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

from ...arch.x86_64_pause_loops import SpinLoop, pure_pause_loops
from ...errors import MachineError
from ...image import Image
from ...machine import Vcpu, VcpuState, native
from ...machine.hooks import guarded
from ...machine.vcpu import StopReason
from ...provision.derived import derived
from .site_hooks import NativeHook, SiteHooks, python_hook
from .sites import code_spans

if TYPE_CHECKING:
    from .machine import XenMachine


class Spins:
    """The spin-waits of one machine: which vCPU sleeps in one, on what."""

    def __init__(self, machine: XenMachine):
        self.machine = machine
        self.loops = derived(machine.hypervisor, _pure_loops)
        self.slice = ctypes.c_uint64(0)
        """Numbers the slice under way (the machine counts its slices here, on_pause reads it)."""
        self._table = (native.SpinLoop * len(self.loops))(*(
            native.SpinLoop(pause, len(loop.written), (ctypes.c_int32 * native.PAUSE_REGISTERS)(*loop.written),
                            *(loop.span or (0, 0)))
            for pause, loop in sorted(self.loops.items())))
        memory = machine.memory
        self._code: dict[int, tuple[int, bytes]] = {}
        """Where each loop in one span lies in the host's RAM, and its bytes as analysed."""
        for pause, loop in self.loops.items():
            if loop.span is None:
                continue
            begin, end = loop.span
            code = machine.hypervisor.read(begin, end - begin)
            if code is not None:
                self._code[pause] = (memory.host_address + memory.physical(begin, len(code)), code)
        self._turns: dict[int, tuple[native.PauseTurn, object]] = {}  # vCPU -> its turn and host hook: kept alive
        self._sleepers: dict[tuple[int, bytes], set[int]] = {}  # (host address, bytes there) -> vCPUs waiting
        self._waits: dict[int, tuple[int, list[tuple[int, bytes]]]] = {}  # sleeping vCPU -> its pause, what it waits on
        self._probe_turn = native.probe_turn_function()

    def hook_sites(self, site_hooks: SiteHooks) -> None:
        """Have each pure loop's `pause` hooked once a vCPU is about to run it."""
        site_hooks.add(tuple(self.loops), self._pause_hook)

    def _pause_hook(self, vcpu: Vcpu) -> NativeHook:
        """`native.on_pause` on `vcpu`: it notes each turn and calls `paused` when one repeats."""
        host, _ = python_hook(guarded(vcpu, lambda address, size: self.paused(vcpu, address)))
        turn = native.PauseTurn(host_paused=ctypes.cast(host, ctypes.c_void_p), budget=ctypes.addressof(vcpu.budget),
                                slice=ctypes.addressof(self.slice), loops=ctypes.addressof(self._table),
                                nr_loops=len(self._table))
        self._turns[vcpu.index] = turn, host
        return ctypes.c_void_p(native.on_pause_address()), ctypes.c_void_p(ctypes.addressof(turn))

    def paused(self, vcpu: Vcpu, pause: int) -> None:
        """`vcpu` came round the pure loop at `pause` within one slice with the same registers: it stops there to
        sleep."""
        waits = self._waits_at(vcpu, pause)
        if waits is None:
            return  # it loads outside RAM: left to run
        self._sleep(vcpu.index, pause, waits)
        vcpu.stop(StopReason.SPIN)

    def _waits_at(self, vcpu: Vcpu, pause: int) -> list[tuple[int, bytes]] | None:
        """Where the loop at `pause` loads from on `vcpu` (host addresses) and the bytes there; None outside RAM."""
        memory = self.machine.memory
        try:
            return [(memory.host_address + memory.physical(address, load.size), memory.read(address, load.size))
                    for load in self.loops[pause].loads for address in (load.address(vcpu.read),)]
        except MachineError:
            return None

    def _sleep(self, index: int, pause: int, waits: list[tuple[int, bytes]]) -> None:
        self._waits[index] = pause, waits
        for wait in waits:
            self._sleepers.setdefault(wait, set()).add(index)

    def _forget(self, index: int) -> None:
        """vCPU `index` no longer waits on anything."""
        for wait in self._waits.pop(index, (0, ()))[1]:
            sleepers = self._sleepers[wait]
            sleepers.discard(index)
            if not sleepers:
                del self._sleepers[wait]

    def wake_changed(self, at_ps: int) -> None:
        """Wake the sleepers whose loads changed, at `at_ps` at the earliest, in vCPU order; but one whose loop, run
        once on memory as it is now, comes round again (`_spins_on`) sleeps on, on the new bytes."""
        changed: set[int] = set()
        for (host_address, value), sleepers in self._sleepers.items():
            if ctypes.string_at(host_address, len(value)) != value:  # (after every slice: GuestMemory.read is dearer)
                changed |= sleepers
        for index in sorted(changed):
            vcpu = self.machine.vcpus[index]
            if self._spins_on(vcpu):
                continue
            self.wake(vcpu, at_ps)
            self.machine.scheduler.queue(vcpu)

    def _spins_on(self, vcpu: Vcpu) -> bool:
        """Whether sleeping `vcpu` would come round its loop again on memory as it is now (`native.probe_turn`);
        if so it sleeps on the bytes there now. It loads from where it did when it went to sleep: the addresses
        come from registers the loop does not write, and a sleeping vCPU runs nothing. Not probed: a vCPU with
        code to drop first (it would run other code), or a loop whose code is no longer what was analysed (stored
        into)."""
        pause, waits = self._waits[vcpu.index]
        code = self._code.get(pause)
        if vcpu.to_flush or vcpu.pc != pause or code is None or ctypes.string_at(code[0], len(code[1])) != code[1]:
            return False
        spins = self._probe_turn(ctypes.addressof(self._turns[vcpu.index][0]), pause)
        if spins < 0:
            raise MachineError(f"vCPU {vcpu.index}: a host hook ran in a turn of the spin loop at "
                               f"{self.machine.describe(pause)} (a pure loop calls none)")
        if not spins:
            return False
        self._forget(vcpu.index)
        self._sleep(vcpu.index, pause, [(host, ctypes.string_at(host, len(value))) for host, value in waits])
        return True

    def wake(self, vcpu: Vcpu, at_ps: int) -> None:
        """`vcpu` runs again from `at_ps` at the earliest; it spun until then."""
        spun = max(0, at_ps - vcpu.clock_ps)
        vcpu.clock_ps += spun
        vcpu.instructions += spun // vcpu.ps_per_instruction
        vcpu.state = VcpuState.RUNNING
        self._forget(vcpu.index)
        turn = self._turns.get(vcpu.index)
        if turn is not None:
            turn[0].pause = 0


def _pure_loops(image: Image) -> dict[int, SpinLoop]:
    """The pure `pause` loops of `image`'s code as built, by the address of their `pause` (but one that writes more
    registers than a turn holds: left to run)."""
    loops = pure_pause_loops((begin, code) for begin, end, _ in derived(image, code_spans)
                             for code in (image.read(begin, end - begin),) if code is not None)
    return {pause: loop for pause, loop in loops.items() if len(loop.written) <= native.PAUSE_REGISTERS}

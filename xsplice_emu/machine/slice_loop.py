"""Quiet vCPUs' slices run by the C slice loop (native/slice_loop.c): the host's side.

Most slices of a busy machine are quiet: a running vCPU with no interrupt
pending and none falling due runs its slice, which ends when its budget is
used up, and is queued again. The C loop makes those slices as the Python
loop would (the same vCPU next, the same budget from the same draws, the
same queueing), and gives back every other step: `run` returns when the
host must take the next step itself, having finished a slice the loop
started if one did more than use up its budget (a Python hook ran in it:
`hooks.py` marks that on the vCPU's budget).

What the loop knows of a vCPU is true only while no Python ran: the host
finds each vCPU quiet (`takes`) the first time it comes next after
anything else happened (`forget`).
"""

from __future__ import annotations

import array
import ctypes
from typing import TYPE_CHECKING

from . import native
from .spec import PS_PER_NS
from .vcpu import RUNNING, Vcpu

if TYPE_CHECKING:
    from .core import Machine

FOREVER = (1 << 63) - 1
"""Virtual time (ps) the C loop takes as never."""


def _capped(time_ps: int) -> int:
    return time_ps if time_ps < FOREVER else FOREVER


class SliceLoop:
    """The C slice loop of one machine's vCPUs, over its scheduler's ready queue and generator."""

    def __init__(self, machine: Machine, clock_page: memoryview):
        self.machine = machine
        self.vcpus = machine.vcpus
        self.scheduler = scheduler = machine.scheduler
        count = len(self.vcpus)
        self._quiet, self._arrival, self._executed, self._requeued, self._touched = (
            array.array("q", bytes(8 * count)) for _ in range(5))
        self._budgets = array.array("Q", [ctypes.addressof(vcpu.budget) for vcpu in self.vcpus])
        self._clock_page = clock_page  # (a view of guest RAM: its address stays)
        self.state = native.SliceLoop(
            ready=scheduler.ready_pointer, draws=ctypes.addressof(scheduler.draws),
            budgets=self._budgets.buffer_info()[0],
            quiet=self._quiet.buffer_info()[0], arrival=self._arrival.buffer_info()[0],
            executed=self._executed.buffer_info()[0], requeued=self._requeued.buffer_info()[0],
            touched=self._touched.buffer_info()[0],
            clock_page=ctypes.addressof(ctypes.c_char.from_buffer(clock_page)),
            slice_min=scheduler.slice_min, slice_span=scheduler.slice_span, ps_per_ns=PS_PER_NS)
        self._pointer = ctypes.addressof(self.state)
        self._run = native.run_quiet_slices_function()
        self._stale = True  # `_quiet` may hold what is no longer so
        self._lent = False  # the scheduler's draws are the loop's to take
        for vcpu in self.vcpus:
            vcpu.loop_take_back = self._take_back

    def forget(self) -> None:
        """Something other than the loop ran: what it knew of every vCPU may be stale."""
        self._stale = True

    def takes(self, vcpu: Vcpu) -> bool:
        """Whether the loop runs `vcpu`'s next slice (it is quiet); if so, `run` next."""
        if self._stale:
            ctypes.memset(self._quiet.buffer_info()[0], 0, 8 * len(self._quiet))
            self._stale = False
        return bool(self._quiet[vcpu.index]) or self._ready(vcpu)

    def run(self, until_ps: int) -> tuple[Vcpu, int, int] | None:
        """Run quiet slices up to `until_ps` (with the machine's `now_ps`, alarms and sleepers) until the host must
        take the next step; (vCPU, run_slice's status, budget) of a slice it started that the host finishes."""
        scheduler, state = self.scheduler, self.state
        scheduler.lend_draws(3)  # (a slice's; the loop hands back when it has no more)
        self._lent = True
        wake_ps, state.wake_owner = scheduler.next_wake()
        state.next_wake_ps = _capped(wake_ps)
        state.next_alarm_ps = _capped(scheduler.next_alarm_ps())
        state.until_ps = _capped(until_ps)
        state.now_ps = self.machine.now_ps
        while True:
            outcome = self._run(self._pointer)
            index = state.index
            if outcome == native.LOOP_FINISH or index < 0 or not self._ready(self.vcpus[index]):
                break
        self._take_back()
        if outcome == native.LOOP_FINISH:
            return self.vcpus[index], state.status, state.budget
        return None

    def _ready(self, vcpu: Vcpu) -> bool:
        """Whether `vcpu` is quiet (running, not held, no interrupt pending or due, no code to see, no error to
        report, and slices drawn from the seed: PCT's are the host's); if so, the loop may run its slices from
        now."""
        if (vcpu.state is not RUNNING or vcpu.preempted_until_ps > vcpu.clock_ps or vcpu.nmi_pending
                or vcpu.pending_vectors or vcpu.open_code_pages or vcpu.to_flush or vcpu.hook_error is not None
                or self.scheduler.priorities is not None):
            return False
        arrival = vcpu.next_arrival_ps()
        if arrival is not None and arrival <= vcpu.clock_ps:  # an interrupt to latch first
            return False
        self._arrival[vcpu.index] = FOREVER if arrival is None else _capped(arrival)
        vcpu.ready_for_loop()
        self._quiet[vcpu.index] = 1
        return True

    def _take_back(self) -> None:
        """What the loop did, into the machine: the time and each vCPU it ran (also from a Python hook in a slice
        the loop runs: the host then sees what it would had it run the slices before)."""
        state = self.state
        self.machine.now_ps = state.now_ps
        if self._lent:  # (once: a hook may take draws after it)
            self.scheduler.took_draws()
            self._lent = False
        executed, requeued = self._executed, self._requeued
        for k in range(state.nr_touched):
            index = self._touched[k]
            self.vcpus[index].back_from_loop(executed[index])
            self.scheduler.requeued(index, requeued[index])
            executed[index] = requeued[index] = 0
        state.nr_touched = 0

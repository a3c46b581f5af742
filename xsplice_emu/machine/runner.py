"""Running a machine's vCPUs in virtual time: the loop both engines' machines share.

The vCPU or alarm with the least virtual time goes next; `run` stops at a time or when a condition holds.
A machine says how to run one vCPU's slice (`_step`) and may add to the loop: what to do once the loop
stops (`_ran`), and whether a condition that a slice made true stops the run at that slice's end
(`STOPS_AT_SLICE_END`) or at the next slice's start. Both machines tell their events to subscribers
(`subscribers.py`) alike: a slice that ends in a guest fault is a CRASH.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import GuestFault, MachineError
from ..tracing.kinds import EventKind
from ..tracing.trace import Trace
from .dom0 import Dom0Placement
from .instances import Instances
from .scheduler import Alarm, Scheduler
from .slice_loop import SliceLoop
from .spec import PS_PER_NS
from .subscribers import CRASH, P, Subscribers, Topic
from .vcpu import Vcpu, VcpuState


class SliceRunner:
    """`run_for` and `run` over `self.scheduler`, alarms and preemption, and where dom0 runs (`dom0`: the stalls
    and preemptions that hold a vCPU), for a machine that defines `_step`."""

    STOPS_AT_SLICE_END = True
    closed = False
    """Whether `close` freed its Unicorn instances: it runs no more."""
    slice_loop: SliceLoop | None = None
    """The C loop of quiet slices, for a machine whose `_step` it does as the machine would."""
    scheduler: Scheduler
    dom0: Dom0Placement
    now_ps: int
    vcpus: list[Vcpu]
    instances: Instances
    trace: Trace
    subscribers: Subscribers

    def close(self) -> None:
        """Free every Unicorn instance of this machine now (its translated code and state: megabytes a vCPU),
        which the machine's reference cycles would otherwise keep until a garbage collection gets to them
        (hundreds of ms at 72 vCPUs, and the process's memory grown meanwhile). What it recorded (trace, guest
        memory) stays readable; running it again is a MachineError."""
        self.closed = True
        for vcpu in self.instances.all():
            vcpu.close()

    def fresh_block_size(self, address: int) -> int:
        """Bytes of the block Unicorn translates at `address` from what memory holds there now (on a spare
        instance that never ran: what a vCPU whose translated code was dropped runs)."""
        return self.instances.fresh_block_size(address)

    def subscribe(self, topic: Topic[P], callback: Callable[P, None]) -> None:
        """Call `callback` whenever `topic` happens on this machine (`subscribers.py`)."""
        self.subscribers.subscribe(topic, callback)

    def add_alarm(self, time_ps: int, callback: Callable[[], None]) -> Alarm:
        """Call `callback` when virtual time reaches `time_ps`."""
        return self.scheduler.add_alarm(time_ps, callback)

    def preempt(self, index: int, ns: int, *, at_ps: int) -> None:
        """From `at_ps`, the host does not schedule vCPU `index` for `ns` (its IRQ state is untouched:
        interrupts that arrive meanwhile are taken after); dom0 makes its requests elsewhere meanwhile."""
        vcpu = self._vcpu(index)
        self.dom0.hold(index, begin_ps=at_ps, end_ps=at_ps + ns * PS_PER_NS)

        def start() -> None:
            vcpu.preempted_until_ps = max(vcpu.preempted_until_ps, at_ps + ns * PS_PER_NS)
            self.trace.emit(at_ps // PS_PER_NS, index, EventKind.PREEMPT, ns=ns)
            self.scheduler.queue(vcpu)
        self.add_alarm(at_ps, start)

    def dom0_vcpu(self, pinned: int | None = None) -> int:
        """The vCPU dom0 makes a request on now (`Dom0Placement`: `pinned`, else the lowest-numbered online one
        neither stalled nor preempted); when it cannot run dom0 now, the machine first runs until it can."""
        online = [vcpu.index for vcpu in self.vcpus if vcpu.state is not VcpuState.WAITING_FOR_START]
        index, free_ps = self.dom0.place(online, self.now_ps, pinned=pinned)
        if free_ps > self.now_ps:
            self.run(until_ps=free_ps)
        return index

    def _vcpu(self, index: int) -> Vcpu:
        if not 0 <= index < len(self.vcpus):
            raise MachineError(f"no vCPU {index} (the machine has {len(self.vcpus)})")
        return self.vcpus[index]

    def run_for(self, ns: int, *, stop_when: Callable[[], bool] | None = None) -> None:
        """Advance virtual time by `ns` (or until `stop_when()` holds)."""
        self.run(until_ps=self.now_ps + ns * PS_PER_NS, stop_when=stop_when)

    def run(self, *, until_ps: int, stop_when: Callable[[], bool] | None = None) -> None:
        """Run vCPUs, least virtual time first, until `until_ps` or `stop_when()` (checked after each slice
        and alarm; with STOPS_AT_SLICE_END, when a slice makes it hold, the time is that slice's end). With no
        `stop_when`, the machine's C slice loop (`slice_loop`) runs the quiet slices."""
        if self.closed:
            raise MachineError("this machine was closed: it runs no more")
        scheduler, step = self.scheduler, self._step  # (the loop runs once a slice: comparisons, not min/max)
        loop = self.slice_loop if stop_when is None else None
        if loop is not None:
            loop.forget()
        while not (stop_when and stop_when()):
            vcpu_time, vcpu = scheduler.peek()
            alarm_time = scheduler.next_alarm_ps()
            if vcpu_time >= until_ps and alarm_time >= until_ps:
                self.now_ps = max(self.now_ps, until_ps)
                break
            if alarm_time <= vcpu_time:
                alarm = scheduler.take_alarm()
                self.now_ps = max(self.now_ps, alarm_time)
                if not alarm.cancelled:
                    alarm.callback()
                if loop is not None:
                    loop.forget()
                continue
            assert vcpu is not None
            finishing = None
            if loop is not None and loop.takes(vcpu):
                finishing = loop.run(until_ps)
                if finishing is None:
                    continue
                vcpu = finishing[0]
            else:
                scheduler.take()
                if vcpu_time > self.now_ps:
                    self.now_ps = vcpu_time
            try:
                if finishing is None:
                    step(vcpu, vcpu_time, until_ps)
                else:
                    self._finish_step(*finishing)
            except GuestFault as fault:
                self.subscribers.notify(CRASH, fault)
                raise
            if loop is not None:
                loop.forget()
            if self.STOPS_AT_SLICE_END and stop_when and stop_when():
                self.now_ps = max(self.now_ps, min(vcpu.clock_ps, until_ps))
                break
        self._ran()

    def _step(self, vcpu: Vcpu, ready_ps: int, until_ps: int) -> None:
        """Run `vcpu`, ready at `ready_ps`, for one slice that ends by `until_ps`."""
        raise NotImplementedError

    def _finish_step(self, vcpu: Vcpu, status: int, budget: int) -> None:
        """Finish the step of `vcpu` whose slice of `budget` instructions the C slice loop started (with
        run_slice's `status`)."""
        raise NotImplementedError

    def _ran(self) -> None:
        """The loop stopped (not by a fault)."""

"""Xen's xSplice rendezvous (the seed's algorithm), driven by the firmware.

Every vCPU enters `check_for_xsplice_work`, which asks the controller what
to do through PORT_XSPLICE. Each vCPU's side of Xen's algorithm is a Python
generator here that yields the answers (WAIT parks the vCPU until the state
it spins on changes): the first vCPU through becomes master, kicks the
others with the call-function IPI, waits for them in the CPU phase, then in
the IRQ phase (IRQs off everywhere), performs the action, serialises,
re-enables IRQs and releases everyone; only then, and only if the action
ran, the post-action hooks run on the master. One deadline covers both
phases; on expiry the action fails with -EBUSY and nothing is patched. NMIs
are masked by swapping the firmware's `nmi_callback` and unmasked on every
path. A failure inside the window never wedges the machine: a host-side
error (a patch site outside RAM, a bug: -EFAULT), a guest fault in a hook
(-EFAULT) or a hook that leaves its functions half applied (-EINVAL, where
Xen panics). The action's `undo` puts back what it changed, and everyone is
released as usual.

`log` holds the lines Xen prints, as Xen prints them (a payload's hooks'
printk lines among them, in order); `notes` the testbed's own remarks, which
Xen never prints.
"""

from __future__ import annotations

import errno
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from ...errors import GuestFault, LivepatchError
from ...livepatch.abi import DEFAULT_TIMEOUT_NS
from ...machine import PS_PER_NS, Alarm, Machine, Vcpu, VcpuState
from ...machine.subscribers import NMI
from ...platform import (
    PORT_XSPLICE,
    XSPLICE_CALL,
    XSPLICE_IRQ_OFF,
    XSPLICE_IRQ_ON,
    XSPLICE_RETURN,
    XSPLICE_SERIALISE,
    XSPLICE_WAIT,
)
from ...text import printable
from ...tracing.kinds import EventKind
from .printk import PrintkTap

TRACED_ANSWERS = {XSPLICE_IRQ_OFF: EventKind.IRQ_MASKED, XSPLICE_IRQ_ON: EventKind.IRQ_UNMASKED}

Program = Generator[int, None, None]
Perform = Callable[[Vcpu], Generator[int, None, int]]
"""The action inside the window, on the master: yields port answers, returns the action's rc."""
Finish = Callable[[Vcpu], Generator[int, None, None]]
"""What the master runs after releasing the others, when the action ran (post hooks)."""
Undo = Callable[[Vcpu], int]
"""Put back what `perform` changed after a host-side error; gives the bytes it put back."""


@dataclass
class Work:
    """Xen's `struct xsplice_work` plus what this action measured."""

    name: str
    action: str
    perform: Perform
    finish: Finish | None = None
    undo: Undo | None = None
    on_elected: Callable[[], None] | None = None
    """Called when the master is elected (NMIs are masked next)."""
    on_release: Callable[[], None] | None = None
    """Called when the master releases the others (the action ran or not)."""
    settle: Callable[[int], None] | None = None
    """Called with the action's rc where Xen writes it into the payload: in the window, or on the timeout."""
    timeout_ns: int = DEFAULT_TIMEOUT_NS
    from_irq: bool = False
    """The patch_from_irq fault: the IPI function joins the rendezvous inside the interrupt handler."""
    do_work: bool = False
    finished: bool = False
    semaphore: int = -1
    ready: bool = False
    cpus: int = 0
    rc: int = -errno.EAGAIN
    master: int | None = None
    requested_ps: int = 0
    all_parked_ps: int | None = None
    released_ps: int | None = None
    nmis_lost: int = 0
    awaited: tuple[int, ...] = ()   # the vCPUs the master waits for
    arrivals: set[int] = field(default_factory=set)  # those arrived in the current phase
    bytes_written: int = 0
    violations: Counter[str] = field(default_factory=Counter)  # the safety oracle's checks that fired
    host_seconds: float = 0.0
    _host_started: float = field(default=0.0, repr=False)


@dataclass
class _HookCall:
    """A payload hook a vCPU's program is running: which, the stack pointer it returns to, how to give it up."""

    what: str
    stack_pointer: int
    abandon: Callable[[LivepatchError], None]
    failed: list[LivepatchError]


class Rendezvous:
    """The controller's side of check_for_xsplice_work for one machine."""

    def __init__(self, machine: Machine):
        self.machine = machine
        image = machine.image
        self._work_to_do = image.address("xsplice_work_to_do")
        self._nmi_callback = image.address("nmi_callback")
        self._default_nmi_callback = image.address("default_nmi_callback")
        self._mask_callback = image.address("xsplice_mask_nmi_callback")
        self._reschedule = image.address("xsplice_reschedule_fn")
        self._hook_returned = image.address("xsplice_hook_returned")
        self._programs: dict[int, Program] = {}
        self._hook_calls: dict[int, _HookCall] = {}
        self._waiters: dict[str, set[int]] = {"arrived": set(), "ready": set(), "done": set()}
        self._saved_nmi_callback: int | None = None
        self._nmi_count_masked = 0
        self.work: Work | None = None
        self.log: list[str] = []
        self.notes: list[str] = []
        self.printk = PrintkTap(machine)
        machine.answer_port(PORT_XSPLICE, self._ask)
        machine.subscribe(NMI, self._on_nmi)

    @property
    def busy(self) -> bool:
        """Whether an action is under way (until its master has run the post hooks and logged the end)."""
        return self.work is not None and not self.work.finished

    @property
    def active(self) -> Work:
        """The work in progress (only asked for inside the patching window)."""
        if self.work is None:
            raise LivepatchError(errno.EINVAL, "no livepatch action is in progress")
        return self.work

    # -- scheduling (Xen's schedule_work) ----------------------------------
    def schedule(self, work: Work, *, from_vcpu: int = 0) -> None:
        """Start `work`: flag `from_vcpu` and kick it; the rest happens in the guest."""
        if self.work is not None and not self.work.finished:
            raise LivepatchError(errno.EBUSY, f"{self.work.name}: an action is already in progress")
        machine = self.machine
        if not 0 <= from_vcpu < len(machine.vcpus) or machine.vcpus[from_vcpu].state is VcpuState.WAITING_FOR_START:
            raise LivepatchError(errno.EINVAL, f"vCPU {from_vcpu} is not online")
        work.timeout_ns = work.timeout_ns or DEFAULT_TIMEOUT_NS
        work.semaphore, work.ready, work.do_work = -1, False, True
        work.requested_ps = machine.now_ps
        work._host_started = time.perf_counter()
        self.work = work
        machine.trace.emit(machine.now_ns, None, EventKind.ACTION_REQUESTED, payload=work.name, action=work.action,
                           from_vcpu=from_vcpu, timeout_ns=work.timeout_ns)
        machine.memory.write_u8(self._work_to_do + from_vcpu, 1)
        machine.post_call(from_vcpu, self._ipi_function(work))

    def _ipi_function(self, work: Work) -> int:
        """The firmware function the master's IPI runs: Xen's reschedule_fn, or under the patch_from_irq fault the
        one that joins the rendezvous inside the handler."""
        return self.machine.image.address("xsplice_reschedule_from_irq_fn") if work.from_irq else self._reschedule

    def guest_call(self, vcpu: Vcpu, address: int, argument: int = 0) -> Generator[int, None, int]:
        """From a vCPU's program: run the guest function at `address` (a payload hook) with `argument`; give its
        result. A hook must come back: if it faults, runs past the action's timeout (not counting time the
        host kept the vCPU descheduled), or asks for xsplice work again before returning (see `_reentered`),
        the vCPU is put back where it asked, its stack as it was, and the call raises LivepatchError (EFAULT,
        ETIMEDOUT, EDEADLK) in the program instead."""
        machine = self.machine
        vcpu.write(vcpu.arch.registers.hook_target, address)
        vcpu.write(vcpu.arch.registers.arguments[0], argument)
        snapshot = vcpu.snapshot()
        failed: list[LivepatchError] = []

        def abandon(error: LivepatchError) -> None:
            if not failed:
                failed.append(error)
                machine.restore(vcpu, snapshot)

        def on_fault(fault: BaseException) -> bool:
            abandon(LivepatchError(errno.EFAULT, f"{what} faulted: {fault}"))
            return True

        what = f"hook {machine.describe(address)}"
        vcpu.on_fault = on_fault
        timeout_ns = self.active.timeout_ns
        deadline_ps = self._now(vcpu) + timeout_ns * PS_PER_NS
        preempted_ps = vcpu.preempted_ps
        alarm: list[Alarm] = []

        def expire() -> None:
            """At the deadline, moved on by the time the host kept the vCPU descheduled (a preempt fault)."""
            owed = vcpu.preempted_ps - preempted_ps + max(0, vcpu.preempted_until_ps - vcpu.clock_ps)
            if deadline_ps + owed > machine.now_ps:
                alarm[:] = [machine.add_alarm(deadline_ps + owed, expire)]
            else:
                abandon(LivepatchError(errno.ETIMEDOUT, f"{what} did not return within {timeout_ns / 1e6:g} ms"))
        alarm.append(machine.add_alarm(deadline_ps, expire))
        self._hook_calls[vcpu.index] = _HookCall(what, snapshot.stack_pointer, abandon, failed)
        printed = self.printk.mark()
        try:
            yield XSPLICE_CALL
            result = vcpu.read(vcpu.arch.registers.result)  # asked again from xsplice_hook_returned: rax holds it
        finally:
            vcpu.on_fault = None
            alarm[0].cancel()
            del self._hook_calls[vcpu.index]
            for line in self.printk.since(printed, vcpu.index):
                self.log_line(line, vcpu)
        if failed:
            raise failed[0]
        return result

    def crashed(self, fault: GuestFault) -> None:
        """The machine stopped on `fault` outside any hook while an action was under way: the action ends with
        -EFAULT, NMIs unmasked and the waiting vCPUs let go, so that the controller is not left busy (the vCPU
        that faulted stays where it faulted)."""
        work = self.work
        if work is None or work.finished:
            return
        vcpu = self.machine.vcpus[fault.vcpu]
        if work.master is not None and work.released_ps is None:
            self._unmask_nmis(vcpu, work)
        work.rc, work.do_work, work.finished = -errno.EFAULT, False, True
        self._settle(work)
        work.released_ps = self.machine.now_ps
        for condition in self._waiters:
            self._notify(condition, self.machine.now_ps)
        self.note(f"{work.name}: {work.action} ended with rc={work.rc}: the hypervisor faulted on cpu{fault.vcpu}",
                  vcpu)
        if work.on_release is not None:
            work.on_release()

    # -- the port ------------------------------------------------------------
    def _ask(self, vcpu: Vcpu) -> int:
        if self._reentered(vcpu):
            return XSPLICE_WAIT
        program = self._programs.get(vcpu.index)
        if program is None:
            program = self._programs[vcpu.index] = self._check_for_work(vcpu)
            answer = next(program)
        else:
            answer = program.send(None)
        if answer == XSPLICE_RETURN:
            del self._programs[vcpu.index]
        elif answer == XSPLICE_WAIT:
            self.machine.park(vcpu)
        elif answer in TRACED_ANSWERS:
            self._emit(vcpu, TRACED_ANSWERS[answer])
        return answer

    def _reentered(self, vcpu: Vcpu) -> bool:
        """Whether `vcpu` asks while its hook call is outstanding, but not from `xsplice_hook_returned` on the
        stack the hook was called from: the hook re-entered check_for_xsplice_work (by itself, or through the
        scheduler from softirqs it ran). That is never the hook's return: the request is refused, the vCPU waits
        until the end of this slice, then the hook is given up (EDEADLK: Xen would spin on its own rendezvous)."""
        call = self._hook_calls.get(vcpu.index)
        if call is None or call.failed:
            return False
        if vcpu.current_pc() == self._hook_returned and vcpu.read(vcpu.arch.registers.sp) == call.stack_pointer:
            return False
        error = LivepatchError(errno.EDEADLK, f"{call.what} re-entered check_for_xsplice_work (refused)")
        self.machine.add_alarm(self._now(vcpu), lambda: call.abandon(error))
        self.machine.park(vcpu)
        return True

    def _now(self, vcpu: Vcpu) -> int:
        return vcpu.current_time_ps()

    def _emit(self, vcpu: Vcpu | None, kind: EventKind, **fields) -> None:
        time_ps = self.machine.now_ps if vcpu is None else self._now(vcpu)
        self.machine.trace.emit(time_ps // PS_PER_NS, None if vcpu is None else vcpu.index, kind, **fields)

    def _wait(self, vcpu: Vcpu, condition: str) -> Program:
        self._waiters[condition].add(vcpu.index)
        yield XSPLICE_WAIT

    def _notify(self, condition: str, at_ps: int) -> None:
        for index in sorted(self._waiters[condition]):
            self.machine.release(index, at_ps=at_ps)
        self._waiters[condition].clear()

    def _arrived(self, vcpu: Vcpu, work: Work, phase: str) -> None:
        work.arrivals.add(vcpu.index)
        self._emit(vcpu, EventKind.ARRIVED, phase=phase, count=work.semaphore, of=work.cpus)
        if work.semaphore == work.cpus:
            self._notify("arrived", self._now(vcpu))

    # -- Xen's check_for_xsplice_work ------------------------------------------
    def _check_for_work(self, vcpu: Vcpu) -> Program:
        work = self.work
        if work is None or not work.do_work:
            self._clear_work_to_do(vcpu)
            yield XSPLICE_RETURN
            return
        work.semaphore += 1
        if work.semaphore == 0:
            yield from self._master(vcpu, work)
        else:
            self._arrived(vcpu, work, "CPU")
            yield from self._follower(vcpu, work)

    def _master(self, vcpu: Vcpu, work: Work) -> Program:
        machine = self.machine
        work.master = vcpu.index
        online = [v.index for v in machine.vcpus if v.state is not VcpuState.WAITING_FOR_START]
        work.cpus = len(online) - 1
        work.awaited = tuple(index for index in online if index != vcpu.index)
        self._emit(vcpu, EventKind.MASTER_ELECTED, cpus=work.cpus)
        if work.on_elected is not None:
            work.on_elected()
        self._mask_nmis(vcpu)
        kicked_ps = self._now(vcpu)
        function = self._ipi_function(work)
        for index in work.awaited:
            machine.post_call(index, function, at_ps=kicked_ps, sender=vcpu.index)
        deadline = kicked_ps + work.timeout_ns * PS_PER_NS
        alarm = machine.add_alarm(deadline, lambda: self._notify("arrived", deadline))
        rc = 0
        for phase in ("CPU", "IRQ"):
            while work.semaphore != work.cpus and self._now(vcpu) < deadline:
                yield from self._wait(vcpu, "arrived")
            if work.semaphore != work.cpus:
                rc = self._abort(vcpu, work, phase)
                break
            self._emit(vcpu, EventKind.PHASE_COMPLETE, phase=phase)
            if phase == "CPU":
                work.semaphore, work.ready = 0, True
                work.arrivals.clear()
                self._notify("ready", self._now(vcpu))
        alarm.cancel()
        ran = rc == 0
        if ran:
            yield XSPLICE_IRQ_OFF
            work.all_parked_ps = self._now(vcpu)
            self._emit(vcpu, EventKind.QUIESCED)
            try:
                rc = yield from work.perform(vcpu)
            except Exception as exc:  # a host-side error must never leave the machine stuck
                rc, ran = self._failed(vcpu, work, exc), False
            work.rc = rc
            self._settle(work)
            yield XSPLICE_SERIALISE
            yield XSPLICE_IRQ_ON
        self._unmask_nmis(vcpu, work)
        self._clear_work_to_do(vcpu)
        work.rc = rc
        work.released_ps = self._now(vcpu)
        work.do_work = False
        self._notify("ready", work.released_ps)
        self._notify("done", work.released_ps)
        self._emit(vcpu, EventKind.RELEASED, rc=rc)
        if work.on_release is not None:
            work.on_release()
        if ran and work.finish is not None:
            try:
                yield from work.finish(vcpu)
            except LivepatchError as exc:  # the action is done: a failed post hook is only reported
                self.note(f"{work.name}: post-{work.action} hook failed: {exc.reason}", vcpu)
        work.host_seconds = time.perf_counter() - work._host_started
        self.log_line(f"livepatch: {work.name} finished {work.action.upper()} with rc={rc}", vcpu)
        work.finished = True
        self._emit(vcpu, EventKind.LEFT)
        yield XSPLICE_RETURN

    def _follower(self, vcpu: Vcpu, work: Work) -> Program:
        while work.do_work and not work.ready:
            yield from self._wait(vcpu, "ready")
        yield XSPLICE_IRQ_OFF
        if work.do_work:
            work.semaphore += 1
            self._arrived(vcpu, work, "IRQ")
            while work.do_work:
                yield from self._wait(vcpu, "done")
        yield XSPLICE_SERIALISE
        yield XSPLICE_IRQ_ON
        self._clear_work_to_do(vcpu)
        self._emit(vcpu, EventKind.LEFT)
        yield XSPLICE_RETURN

    def _abort(self, vcpu: Vcpu, work: Work, phase: str) -> int:
        """The deadline passed in `phase`: Xen logs it and writes -EBUSY into the payload's rc."""
        self.log_line(f"livepatch: {work.name}: Timed out on semaphore in {phase} quiesce phase "
                      f"{work.semaphore}/{work.cpus}", vcpu)
        missing = " ".join(f"cpu{index}" for index in work.awaited if index not in work.arrivals)
        self._emit(vcpu, EventKind.ABORT, reason=f"timeout in {phase} phase", arrived=work.semaphore, of=work.cpus,
                   missing=missing)
        work.rc = -errno.EBUSY
        self._settle(work)
        return work.rc

    @staticmethod
    def _settle(work: Work) -> None:
        if work.settle is not None:
            work.settle(work.rc)

    def _failed(self, vcpu: Vcpu, work: Work, exc: Exception) -> int:
        """The action failed inside the window: undo it; its rc is the error's errno, else -EFAULT. An undo
        that fails in turn is reported, never raised: the window closes all the same."""
        error = f"{type(exc).__name__}: {exc}"
        try:
            restored = work.undo(vcpu) if work.undo is not None else 0
        except Exception as undo_error:  # a host-side error must never leave the machine stuck
            restored = 0
            error += f"; putting back failed too: {type(undo_error).__name__}: {undo_error}"
        self._emit(vcpu, EventKind.ACTION_FAILED, error=error, restored=restored)
        self.note(f"{work.name}: {work.action} failed inside the patching window ({error}); {restored} bytes "
                  "put back", vcpu)
        return -exc.errno if isinstance(exc, LivepatchError) else -errno.EFAULT

    # -- guest state -------------------------------------------------------------
    def _clear_work_to_do(self, vcpu: Vcpu) -> None:
        self.machine.memory.write_u8(self._work_to_do + vcpu.index, 0)

    def _nmis_counted(self) -> int:
        return sum(self.machine.per_cpu("nmi_count"))

    def _on_nmi(self, vcpu: Vcpu) -> None:
        """An NMI was delivered: it is lost when the firmware's callback is not the default one."""
        if self.machine.memory.read_u64(self._nmi_callback) != self._default_nmi_callback:
            self._emit(vcpu, EventKind.NMI_LOST)

    def _mask_nmis(self, vcpu: Vcpu) -> None:
        memory = self.machine.memory
        self._saved_nmi_callback = memory.read_u64(self._nmi_callback)
        self._nmi_count_masked = self._nmis_counted()
        memory.write_u64(self._nmi_callback, self._mask_callback)
        self._emit(vcpu, EventKind.NMI_MASKED)

    def _unmask_nmis(self, vcpu: Vcpu, work: Work) -> None:
        work.nmis_lost = self._nmis_counted() - self._nmi_count_masked
        if self._saved_nmi_callback is not None:
            self.machine.memory.write_u64(self._nmi_callback, self._saved_nmi_callback)
        self._emit(vcpu, EventKind.NMI_UNMASKED, lost=work.nmis_lost)

    def log_line(self, text: str, vcpu: Vcpu | None = None) -> None:
        """A line Xen prints in its log (on `vcpu`, or from the controller), its payload names made printable."""
        text = printable(text)
        self.log.append(text)
        self._emit(vcpu, EventKind.LOG, text=text)

    def note(self, text: str, vcpu: Vcpu | None = None) -> None:
        """A remark of the testbed's own (Xen prints nothing of the kind), its payload names made printable."""
        text = printable(text)
        self.notes.append(text)
        self._emit(vcpu, EventKind.NOTE, text=text)

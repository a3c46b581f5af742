"""The hypervisor side of XEN_SYSCTL_LIVEPATCH_op: UPLOAD, GET, LIST, ACTION.

`Livepatch` keeps the payloads and the applied stack of one machine, checks
every request with Xen's rules and errno, and hands APPLY, REVERT and
REPLACE to the rendezvous, whose master runs the action inside the
quiesced window. A refused request changes nothing: no guest byte, state or
list moves. Neither does an action that fails on a host-side error inside
the window: the code it wrote (the controller's patches and its hooks' stores
into code, its pre-action hooks' included) and the states it moved are put
back (-EFAULT: `window.py`, `journal.py`). Data a hook wrote is not: Xen does not
roll it back either.

As in Xen, the sysctl answers 0 to an APPLY or REPLACE of a payload that is
not CHECKED and to a REVERT of one that is not APPLIED (nothing is done),
and the action's rc is written into the payload where Xen writes it: inside
the window, or -EBUSY when the rendezvous times out. The lines Xen prints go
to the hypervisor's log (`Rendezvous.log`) in Xen's words; the testbed's
own remarks to `Rendezvous.notes`.

Dom0 makes each request on the vCPU it runs on then (`dom0_vcpu`: the
lowest-numbered one neither stalled nor preempted; when none is, the
machine runs until one is). For ACTION that vCPU matters: it runs the
pre-action hooks and the work is queued on it, as Xen queues its tasklet on
the calling CPU.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable, Generator

from ...errors import GuestFault, LivepatchError, MachineError
from ...livepatch.abi import DEFAULT_TIMEOUT_NS, PAGE_SIZE, PAYLOAD_MAX_SIZE, TAIL_APPLIED, TAIL_REVERTED
from ...livepatch.names import checked_name
from ...livepatch.oracle import FirmwareStacks, Oracle, nmi_reach
from ...livepatch.payload import FuncRecord, Host, LoadedPayload, RegionKind, load_payload, metadata_strings
from ...livepatch.states import Action, ActionResult, PayloadState
from ...livepatch.unsafe import unsafe_functions
from ...machine import PS_PER_NS, Machine, Vcpu
from ...machine.subscribers import CRASH, UNSEEN_CODE
from ...tracing.kinds import EventKind
from .arena import Arena
from .guest_state import GuestState, block_size
from .rendezvous import Rendezvous, Work
from .uploaded import Payload
from .window import PatchWindow

_Targets = list[tuple[str, int]]
UNSAFE_BYTE_GAP_NS = 2_000
"""The longest an unsafe (`--unsafe`) patch's writer waits before each byte: its scheduling points."""
HOOK_WORDS = {"preapply": "pre-apply", "prerevert": "pre-revert", "postapply": "post-apply",
              "postrevert": "post-revert"}
"""How Xen's log names each kind of pre- and post-action hook."""


class Livepatch:
    """Payloads, the applied stack and the actions of one machine."""

    def __init__(self, machine: Machine, *, oracle: bool = True):
        self.machine = machine
        self.rendezvous = Rendezvous(machine)
        self._unsafe = unsafe_functions(machine.hypervisor, machine.memory.read)
        self.oracle = None
        if oracle:  # its NMI path is the firmware's: the same graph unless a real Xen image is what is patched
            firmware_unsafe = unsafe_functions(machine.image, machine.memory.read) if self.real_xen else self._unsafe
            self.oracle = Oracle(machine, nmi_path=nmi_reach(machine.image, firmware_unsafe),
                                 stack=FirmwareStacks(machine))
            machine.subscribe(UNSEEN_CODE, self.oracle.sync)
        self.payloads: dict[str, Payload] = {}
        self.applied: list[str] = []
        self.patching = PatchWindow(machine, self.rendezvous, self.oracle, applied=self.applied,
                                    payloads=self.payloads)
        self.drop_flush = self.patching.drop_flush
        """vCPUs whose translated code the next action does not drop (a fault: a missing serialisation)."""
        self.results: list[ActionResult] = []
        self.memory = Arena(*machine.payload_space)
        self._pending: tuple[Payload, Action, Work] | None = None
        machine.subscribe(CRASH, self._crashed)

    # -- UPLOAD / GET / LIST -------------------------------------------------
    def upload(self, name: str, data: bytes, *, allow_unsafe: bool = False) -> Payload:
        """Check, load and relocate a payload into guest memory (state CHECKED).

        The name is any 1..127 bytes but NUL (`names`), checked before anything
        else; once payload memory is taken, a failure gives all of it back.
        A payload patching an unsafe target (the NMI path, the patching code) is
        refused with -EPERM, unless `allow_unsafe`: then it is accepted with a
        warning in the hypervisor log, so that the hazard can be shown. On a
        real Xen image it is accepted with that warning, as Xen 4.17 does.
        """
        self.machine.dom0_vcpu()
        name = checked_name(name)
        if not 0 < len(data) <= PAYLOAD_MAX_SIZE:
            raise LivepatchError(errno.EINVAL, f"{name}: payload size {len(data)} is not 1..{PAYLOAD_MAX_SIZE} bytes")
        if name in self.payloads:
            raise LivepatchError(errno.EEXIST, f"{name}: a payload of that name is already loaded")
        host = Host.of(self.machine.hypervisor, [p.loaded for p in self.payloads.values()])
        try:
            loaded = self.memory.place(lambda base, limit: load_payload(
                name, data, arch=self.machine.arch, host=host, base=base, limit=limit))
        except LivepatchError as exc:
            self._xen_lines(exc.xen_log)
            raise
        for func in loaded.funcs:
            self._check_target(name, func, allow_unsafe=allow_unsafe)
        taken = [_span(loaded)]
        self.memory.take(*taken[0])
        try:
            size = block_size(loaded)
            block = self.memory.allocate(size, align=PAGE_SIZE)
            taken.append((block, _page_align(block + size)))
            return self._install(name, loaded, block)
        except BaseException:
            for start, end in taken:
                self.machine.protect(start, end, read=True, write=True)
                self.memory.give(start, end)
            raise

    def _install(self, name: str, loaded: LoadedPayload, block: int) -> Payload:
        """Write `loaded`'s regions, and its state block at `block`; list it."""
        for region in loaded.regions:
            self.machine.memory.write(region.address, region.data)
            self.machine.protect(region.address, region.end, read=True, write=region.kind is RegionKind.DATA,
                                 execute=region.kind is RegionKind.TEXT)
        payload = Payload(name, loaded, GuestState.create(self.machine.memory, block, loaded))
        self.machine.trace.emit(self.machine.now_ns, None, EventKind.UPLOAD, payload=name,
                                build_id=loaded.build_id.hex(), functions=len(loaded.funcs))
        self.payloads[name] = payload
        return payload

    def _xen_lines(self, lines: tuple[str, ...] | None) -> None:
        """Xen's printk line(s) for a refusal (`LivepatchError.xen_log`) into the hypervisor's log."""
        for line in lines or ():
            self.rendezvous.log_line(line)

    def get(self, name: str) -> Payload:
        """The payload called `name` (-ENOENT when there is none)."""
        self.machine.dom0_vcpu()
        try:
            return self.payloads[name]
        except KeyError:
            raise LivepatchError(errno.ENOENT, f"{name}: no such payload") from None

    def list(self) -> list[Payload]:
        self.machine.dom0_vcpu()
        return list(self.payloads.values())

    def _check_target(self, name: str, func: FuncRecord, *, allow_unsafe: bool) -> None:
        why = self.unsafe_reason(func.old_addr)
        if why is None:
            return
        target = self.machine.describe(func.old_addr)
        if self.real_xen:
            self.rendezvous.note(f"{name}: WARNING: patching {target} although {why} (Xen 4.17 does not refuse it)")
            return
        if not allow_unsafe:
            raise LivepatchError(errno.EPERM, f"{name}: refusing to patch {target}: {why}")
        self.rendezvous.note(f"{name}: WARNING: patching {target} although {why} (allow-unsafe)")

    @property
    def real_xen(self) -> bool:
        """Whether the patched hypervisor is a real Xen image (--xen-syms), whose verdicts are Xen 4.17's: a
        target on its NMI path is accepted with a warning. (The firmware's NMIs never run its code.)"""
        return self.machine.hypervisor is not self.machine.image

    # -- ACTION --------------------------------------------------------------
    def action(self, name: str, action: Action, *, timeout_ns: int = 0, from_vcpu: int | None = None,
               nodeps: bool = False, unsafe: bool = False, from_irq: bool = False,
               preempt_requester_ns: int = 0) -> int:
        """Xen's XEN_SYSCTL_LIVEPATCH_ACTION on `name` from dom0 on `from_vcpu` (default: the vCPU dom0 runs on,
        `dom0_vcpu`), which runs the pre-action hooks and is where the work is queued: a refusal raises
        LivepatchError (Xen's errno), else what the sysctl returns: 0, or a pre-action hook's positive veto as
        the hook returned it. APPLY, REVERT and REPLACE finish asynchronously (rc -EAGAIN meanwhile); one asked
        of a payload in the wrong state does nothing and returns 0, as in Xen. Faults for the safety oracle:
        `unsafe`, APPLY or REVERT without the rendezvous (see `_poke`), done when this returns; `from_irq`, the
        rendezvous runs from interrupt handlers (firmware/ABI.md); `preempt_requester_ns`, once the work is
        scheduled the host does not schedule the vCPU it was queued on for that long."""
        requester = self.machine.dom0_vcpu(from_vcpu)
        payload = self.get(name)
        self.collect()  # a finished action is settled first: its result is never lost
        if self._pending is not None and self._pending[0] is payload:
            raise LivepatchError(errno.EBUSY, f"{name}: an action on it is already in progress")
        if action is Action.UNLOAD:
            self._unload(payload)
            return 0
        needed = PayloadState.APPLIED if action is Action.REVERT else PayloadState.CHECKED
        if payload.state is not needed:
            self.rendezvous.note(f"{name} is {payload.state.name}: {action.name} of it does nothing (Xen returns 0)")
            return 0
        if not self._checked(payload, action, nodeps=nodeps):
            return 0
        if unsafe:
            self._poke(payload, action)
            return 0
        if self._pending is not None:  # Xen runs the pre-action hooks first; the testbed refuses before them
            payload.rc = -errno.EAGAIN
            raise LivepatchError(errno.EBUSY, f"{name}: an action on {self._pending[0].name} is already in "
                                              f"progress (Xen leaves {name}'s rc at -EAGAIN)")
        self.patching.begin(name)
        if action in (Action.APPLY, Action.REVERT):
            kind = "preapply" if action is Action.APPLY else "prerevert"
            try:
                for hook in payload.loaded.hooks.get(kind, ()):
                    veto = self._veto(payload, kind, self._pre_hook(payload, kind, hook, requester,
                                                                    timeout_ns=timeout_ns or DEFAULT_TIMEOUT_NS))
                    if veto:
                        self.patching.undo(None)
                        return veto
            except LivepatchError:
                self.patching.undo(None)
                raise
        self.patching.pre_hooks_done()
        perform = {Action.APPLY: self._perform_apply, Action.REVERT: self._perform_revert,
                   Action.REPLACE: self._perform_replace}[action]
        work = Work(name, action.name.lower(), lambda vcpu: self._window(vcpu, perform, payload),
                    finish=lambda vcpu: self._post_hooks(vcpu, payload, action), undo=self.patching.undo,
                    on_elected=lambda: self._elected(payload, action), on_release=self.patching.released,
                    settle=lambda rc: setattr(payload, "rc", rc), timeout_ns=timeout_ns, from_irq=from_irq)
        if from_irq:
            self.patching.from_irq(True)
        previous, payload.rc = payload.rc, -errno.EAGAIN
        try:
            self.rendezvous.schedule(work, from_vcpu=requester)
        except LivepatchError:  # a vCPU not online: the testbed's own refusal
            payload.rc = previous
            raise
        self._pending = (payload, action, work)
        if preempt_requester_ns:
            self.machine.preempt(requester, preempt_requester_ns, at_ps=self.machine.now_ps)
        return 0

    def _checked(self, payload: Payload, action: Action, *, nodeps: bool) -> bool:
        """Xen's checks of an action on a payload in the right state: refused with LivepatchError (its line in the
        log), or False when Xen refuses it into the payload's rc and returns 0 (a reverted payload with .data)."""
        name = payload.name
        if action is Action.APPLY:
            if payload.reverted and payload.loaded.has_writable_data:
                self.rendezvous.log_line(f"livepatch: {name}: can't revert as payload has .data. Please unload")
                payload.rc = -errno.EINVAL
                return False
            if not nodeps:
                self._check_depends(payload, on_top=bool(self.applied))
            mismatch = self._check_expectations(payload, None)
            if mismatch:
                raise LivepatchError(errno.EINVAL, mismatch)
        elif action is Action.REPLACE:
            self._check_depends(payload, on_top=False)  # whatever the flags say
            if any(_vetoing(p) for p in [payload, *(self.payloads[n] for n in self.applied)]):
                line = f"livepatch: {name}: REPLACE action is not supported on livepatches with vetoing hooks!"
                self.rendezvous.log_line(line)
                raise LivepatchError(errno.EOPNOTSUPP, f"{name}: REPLACE action is not supported on livepatches "
                                                       "with vetoing hooks", xen_log=line)
        elif self.applied[-1] != name:
            line = f"livepatch: {name}: can't unload. Top is {self.applied[-1]}"
            self.rendezvous.log_line(line)
            raise LivepatchError(errno.EBUSY, f"{name} is not on top of the applied stack ({self.applied[-1]} is)",
                                 xen_log=line)
        return True

    def _check_depends(self, payload: Payload, *, on_top: bool) -> None:
        """Xen's build_id_dep: the payload depends on the top applied payload (`on_top`) or the hypervisor."""
        if on_top:
            top = self.payloads[self.applied[-1]]
            wanted, what, against = top.loaded.build_id, f"the top applied payload {top.name}", top.name
        else:
            wanted, what, against = self.machine.hypervisor.build_id, "the hypervisor", "hypervisor"
        depends = payload.loaded.depends
        if depends != wanted:
            got = depends.hex() if depends else "nothing"
            line = f"livepatch: {payload.name}: check against {against} build-id failed"
            self.rendezvous.log_line(line)
            raise LivepatchError(errno.EINVAL, f"{payload.name} depends on {got}, not on {what} ({wanted.hex()})",
                                 xen_log=line)

    def _check_expectations(self, payload: Payload, vcpu: Vcpu | None) -> str | None:
        """Xen's livepatch_check_expectations, its lines logged (on `vcpu`, or from the controller): None, or
        what differs when a record's expected bytes are not what its function starts with (Xen: -EINVAL)."""
        log = self.rendezvous.log_line
        log(f"livepatch: {payload.name}: Verifying enabled expectations for all functions", vcpu)
        for func in payload.loaded.funcs:
            if func.expect is None:
                continue
            found = self.read_code(func.old_addr, len(func.expect))
            if found != func.expect:
                actual = "" if found is None else found.hex()
                log(f"livepatch: {func.name}: expectation failed: expected:{func.expect.hex()}, actual:{actual}", vcpu)
                log(f"livepatch: {payload.name}: expectations of {func.name} failed (rc={-errno.EINVAL}), "
                    "aborting!", vcpu)
                return f"{payload.name}: {func.expectation_mismatch(self.read_code)}"
        return None

    def read_code(self, address: int, length: int) -> bytes | None:
        """Guest memory at `[address, address + length)` now (None: outside it)."""
        try:
            return self.machine.memory.read(address, length)
        except MachineError:
            return None

    def unsafe_reason(self, address: int) -> str | None:
        """Why patching `address` is refused (on the NMI path, patching code), or None."""
        return self._unsafe.get(address)

    def _pre_hook(self, payload: Payload, kind: str, hook: int, vcpu: int, *, timeout_ns: int) -> int:
        """Run a pre-action hook on `vcpu`; one that faults or does not return within the action's timeout is
        refused (its rc set), the machine runs on."""
        self.rendezvous.log_line(f"livepatch: {payload.name}: Calling {HOOK_WORDS[kind]} hook function")
        printed = self.rendezvous.printk.mark()
        try:
            return self.machine.call_contained(vcpu, hook, payload.guest.address, timeout_ns=timeout_ns)
        except GuestFault as fault:
            payload.rc = -errno.EFAULT
            raise LivepatchError(errno.EFAULT, f"{payload.name}: {kind} hook faulted: {fault}") from None
        except MachineError as error:
            payload.rc = -errno.ETIMEDOUT
            raise LivepatchError(errno.ETIMEDOUT, f"{payload.name}: {kind} hook: {error}") from None
        finally:
            for line in self.rendezvous.printk.since(printed, vcpu):
                self.rendezvous.log_line(line)

    def _veto(self, payload: Payload, kind: str, result: int) -> int:
        """A pre-action hook's result as Xen takes it: 0 goes on; a negative rc is refused with its errno; a
        positive one is given back as is (the sysctl returns it). Either is the payload's rc."""
        rc = self.machine.arch.int_result(result)
        if not rc:
            return 0
        line = f"livepatch: {payload.name}: {HOOK_WORDS[kind]} hook failed (rc={rc}), aborting!"
        self.rendezvous.log_line(line)
        payload.rc = rc
        if rc > 0:
            return rc
        raise LivepatchError(-rc, f"{payload.name}: {kind} hook refused with {rc}", xen_log=line)

    def _unload(self, payload: Payload) -> None:
        if payload.state is not PayloadState.CHECKED:
            raise LivepatchError(errno.EINVAL, f"{payload.name} is {payload.state.name}; UNLOAD needs CHECKED")
        del self.payloads[payload.name]
        start, end = _span(payload.loaded)
        self.machine.protect(start, end, read=True, write=True)  # drops its translated code too
        self.memory.give(start, end)
        self.memory.give(payload.guest.address, _page_align(payload.guest.address + block_size(payload.loaded)))
        self.machine.trace.emit(self.machine.now_ns, None, EventKind.UNLOAD, payload=payload.name)

    # -- running an action to the end ---------------------------------------
    def run_action(self, name: str, action: Action, **options) -> ActionResult | None:
        """Request `action` and run the machine until it completes (or twice its timeout); None when nothing
        ran (Xen's no-op, a positive veto) or it did not complete."""
        results = len(self.results)
        self.action(name, action, **options)
        if options.get("unsafe"):
            return self.results[-1] if len(self.results) > results else None
        return self.poll()

    def poll(self, ns: int | None = None) -> ActionResult | None:
        """Run the machine until the pending action completes, or for `ns` (default twice its timeout); settle
        it if it did (None: nothing pending, or not finished yet)."""
        if self._pending is None:
            return None
        work = self._pending[2]
        self.machine.run_for(2 * work.timeout_ns if ns is None else ns, stop_when=lambda: work.finished)
        return self.collect()

    def collect(self) -> ActionResult | None:
        """Settle a finished action: its figures (its rc is in its payload since its window)."""
        if self._pending is None or not self._pending[2].finished:
            return None
        payload, action, work = self._pending
        self._pending = None
        result = ActionResult(
            name=work.name, action=work.action, rc=work.rc, master=work.master,
            parked_ns=None if work.all_parked_ps is None else (work.all_parked_ps - work.requested_ps) // PS_PER_NS,
            release_ns=None if work.released_ps is None else (work.released_ps - work.requested_ps) // PS_PER_NS,
            host_ms=work.host_seconds * 1000, nmis_lost=work.nmis_lost, bytes_written=work.bytes_written,
            violations=work.violations)
        self.results.append(result)
        return result

    def _crashed(self, fault: GuestFault) -> None:
        """A guest fault stopped the machine (the hypervisor crashed, outside any hook): the pending action
        ends with -EFAULT, settled at once, whatever was running the machine."""
        self.rendezvous.crashed(fault)
        self.collect()

    # -- inside the quiesced window (master vCPU) -----------------------------
    def _window(self, vcpu: Vcpu, perform: Callable[[Vcpu, Payload], Generator[int, None, int]],
                payload: Payload) -> Generator[int, None, int]:
        """The master's part of the action: `perform` on `payload`, inside the patching window."""
        return self.patching.run(perform(vcpu, payload))

    def _elected(self, payload: Payload, action: Action) -> None:
        """The rendezvous has a master: the action is under way for the oracle."""
        if self.oracle is not None:
            work = self.rendezvous.active
            self.oracle.open(f"{work.action} {work.name}", work.violations, self._targets(payload, action))

    def _targets(self, payload: Payload, action: Action) -> _Targets:
        """(function, address) of every record the action may rewrite (REPLACE: the applied ones' too)."""
        payloads = [payload] + ([self.payloads[name] for name in self.applied] if action is Action.REPLACE else [])
        return [(func.name, func.old_addr) for p in payloads for func in p.loaded.funcs]

    def _poke(self, payload: Payload, action: Action) -> None:
        """APPLY or REVERT as a naive text_poke: no rendezvous, no hooks, no flush. The host writes each byte
        while the vCPUs run, each after a scheduling point (the writer descheduled for a time drawn from the
        scheduler's seed, under UNSAFE_BYTE_GAP_NS); a vCPU runs the new bytes once it serialises. The safety
        oracle sees what that does."""
        if action not in (Action.APPLY, Action.REVERT):
            raise LivepatchError(errno.EOPNOTSUPP, f"{payload.name}: only APPLY and REVERT can be done unsafely")
        machine, arch = self.machine, self.machine.arch
        counts: Counter[str] = Counter()
        label = f"{action.name.lower()} {payload.name} (unsafe)"
        if self.oracle is not None:
            self.oracle.open(label, counts, self._targets(payload, action))
        requested = machine.now_ps
        written = []
        for index, func in enumerate(payload.loaded.funcs):
            length = func.patch_size
            if action is Action.APPLY:
                new = arch.patch(func.patch_addr, func.new_addr, func.patch_size)
                payload.guest.mark_applied(index, machine.memory.read(func.patch_addr, length))
            else:
                new = payload.guest.overwritten(index, length)
                payload.guest.mark_reverted(index)
            for offset, byte in enumerate(new):
                machine.run_for(machine.scheduler.draw(UNSAFE_BYTE_GAP_NS))
                address = func.patch_addr + offset
                if self.oracle is not None:
                    self.oracle.writing(None, address, 1, _replaced_code(func, action), func.name)
                old = machine.memory.read(address, 1)
                machine.write_code_unsynchronised(address, bytes([byte]))
                machine.trace.emit(machine.now_ns, None, EventKind.PATCH, payload=payload.name, function=func.name,
                                   address=address, old=old.hex(), new=f"{byte:02x}")
            written.append((func.patch_addr, func.patch_addr + length))
        if action is Action.APPLY:
            payload.state = PayloadState.APPLIED
            self.applied.append(payload.name)
        else:
            payload.state, payload.reverted = PayloadState.CHECKED, True
            self.applied.remove(payload.name)
        if self.oracle is not None:
            self.oracle.released(written)
        self.rendezvous.note(f"{payload.name}: {action.name.lower()} done UNSAFELY: no rendezvous, byte by byte")
        self.results.append(ActionResult(
            name=payload.name, action=action.name.lower(), rc=0, master=None, parked_ns=None,
            release_ns=(machine.now_ps - requested) // PS_PER_NS, host_ms=0.0, nmis_lost=0,
            bytes_written=sum(end - begin for begin, end in written), violations=counts))

    def _perform_apply(self, vcpu: Vcpu, payload: Payload) -> Generator[int, None, int]:
        rc = yield from self._act(vcpu, payload, "apply", self._apply_built_in)
        self._check_consistent(payload, "applied", applied=rc == 0)
        if rc:
            return rc
        payload.state = PayloadState.APPLIED
        self.applied.append(payload.name)
        return 0

    def _perform_revert(self, vcpu: Vcpu, payload: Payload) -> Generator[int, None, int]:
        rc = yield from self._act(vcpu, payload, "revert", self._revert_built_in)
        self._check_consistent(payload, "reverted", applied=rc != 0)
        if rc:
            return rc
        payload.state = PayloadState.CHECKED
        payload.reverted = True
        self.applied.remove(payload.name)
        return 0

    def _perform_replace(self, vcpu: Vcpu, payload: Payload) -> Generator[int, None, int]:
        """Xen's REPLACE: revert the applied stack newest first, check the expectations on what is left, apply."""
        for name in reversed(list(self.applied)):
            other = self.payloads[name]
            other.rc = yield from self._perform_revert(vcpu, other)
            if other.rc:
                return -errno.EINVAL
        if self._check_expectations(payload, vcpu):
            self.rendezvous.log_line(f"livepatch: {payload.name}: SYSTEM MIGHT BE INSECURE: Replace action has "
                                     "been aborted after reverting ALL payloads!", vcpu)
            return -errno.EINVAL
        return (yield from self._perform_apply(vcpu, payload))

    def _act(self, vcpu: Vcpu, payload: Payload, kind: str, built_in) -> Generator[int, None, int]:
        """The payload's `kind` action hooks in order (first non-zero rc stops them), else `built_in`."""
        hooks = payload.loaded.hooks.get(kind, ())
        if not hooks:
            return (yield from built_in(vcpu, payload))
        self.rendezvous.log_line(f"livepatch: {payload.name}: Calling {kind} action hook function", vcpu)
        for hook in hooks:
            result = yield from self.rendezvous.guest_call(vcpu, hook, payload.guest.address)
            rc = self.machine.arch.int_result(result)
            if rc:
                return rc
        return 0

    def _check_consistent(self, payload: Payload, done: str, *, applied: bool) -> None:
        """As Xen after an action: every function in the state the action promised. Xen panics here; the
        testbed fails the action, and the window puts back whatever was written."""
        for func, state in zip(payload.loaded.funcs, payload.guest.applied_all(), strict=True):
            if state != applied:
                self.rendezvous.log_line(f"livepatch: {payload.name}: Payload has a function: '{func.name}' with "
                                         "inconsistent applied state.")
                raise LivepatchError(errno.EINVAL, f"{payload.name}: Payload has a function: '{func.name}' with "
                                                   f"inconsistent applied state: partially {done} payload "
                                                   "(Xen panics here)")

    def _apply_built_in(self, vcpu: Vcpu, payload: Payload) -> Generator[int, None, int]:
        """Xen's apply_payload: the load hooks, then every record not yet applied."""
        self.rendezvous.log_line(f"livepatch: {payload.name}: Applying {len(payload.loaded.funcs)} functions", vcpu)
        for hook in payload.loaded.hooks.get("load", ()):
            yield from self.rendezvous.guest_call(vcpu, hook, payload.guest.address)
        arch = self.machine.arch
        for index, func in enumerate(payload.loaded.funcs):
            if payload.guest.applied(index):
                self.rendezvous.log_line(f"livepatch: apply_payload: {func.name} has been already applied before",
                                         vcpu)
                continue
            new = arch.patch(func.patch_addr, func.new_addr, func.patch_size)
            payload.guest.mark_applied(index, self.patching.write(vcpu, func.name, func.patch_addr, new,
                                                                  body=_replaced_code(func, Action.APPLY)))
        metadata = metadata_strings(payload.metadata)
        if metadata:  # Xen's livepatch_display_metadata, once the records are in
            for line in ("livepatch: module metadata:", *(f"livepatch:   {text}" for text in metadata)):
                self.rendezvous.log_line(line, vcpu)
        return 0

    def _revert_built_in(self, vcpu: Vcpu, payload: Payload) -> Generator[int, None, int]:
        """Xen's revert_payload: every applied record put back, first to last (two records on one function leave
        the first one's jump there: the oracle's `residue`), then the unload hooks."""
        self.rendezvous.log_line(f"livepatch: {payload.name}: Reverting", vcpu)
        sites: dict[int, tuple[str, int, bytes]] = {}  # what each site held before the first record there
        for index, func in enumerate(payload.loaded.funcs):
            if not func.old_addr or not payload.guest.applied(index):
                self.rendezvous.log_line(f"livepatch: revert_payload: {func.name} has not been applied before",
                                         vcpu)
                continue
            original = payload.guest.overwritten(index, func.patch_size)
            sites.setdefault(func.patch_addr, (func.name, func.patch_addr, original))
            self.patching.write(vcpu, func.name, func.patch_addr, original, body=_replaced_code(func, Action.REVERT))
            payload.guest.mark_reverted(index)
        for hook in payload.loaded.hooks.get("unload", ()):
            yield from self.rendezvous.guest_call(vcpu, hook, payload.guest.address)
        if self.oracle is not None:
            self.oracle.reverted(vcpu, payload.name, list(sites.values()))
        return 0

    def _post_hooks(self, vcpu: Vcpu, payload: Payload, action: Action) -> Generator[int, None, None]:
        kind = "postrevert" if action is Action.REVERT else "postapply"
        for hook in payload.loaded.hooks.get(kind, ()):
            self.rendezvous.log_line(f"livepatch: {payload.name}: Calling {HOOK_WORDS[kind]} hook function with "
                                     f"rc={payload.rc}", vcpu)
            yield from self.rendezvous.guest_call(vcpu, hook, payload.guest.address)
            self._tail(payload, payload.guest.take_tail())

    def _tail(self, payload: Payload, tail: int) -> None:
        """What a hook's apply_payload_tail / revert_payload_tail asked for: the payload's state and the stack."""
        if tail == TAIL_REVERTED and payload.state is PayloadState.APPLIED:
            payload.state, payload.reverted = PayloadState.CHECKED, True
            self.applied.remove(payload.name)
        elif tail == TAIL_APPLIED and payload.state is PayloadState.CHECKED:
            payload.state = PayloadState.APPLIED
            self.applied.append(payload.name)


def _replaced_code(func: FuncRecord, action: Action) -> tuple[int, int] | None:
    """`[begin, end)` of the code that applying (the old function) or reverting (the new one, for a jump
    record) a record replaces: a frame returning into it is what the oracle's `active` check looks for."""
    if action is Action.APPLY:
        return func.old_addr, func.old_addr + func.old_size
    return (func.new_addr, func.new_addr + func.new_size) if func.new_addr else None


def _vetoing(payload: Payload) -> bool:
    """Whether it has a pre- or post-action hook (Xen refuses REPLACE around those)."""
    return any(payload.loaded.hooks.get(kind) for kind in ("preapply", "postapply", "prerevert", "postrevert"))


def _span(loaded: LoadedPayload) -> tuple[int, int]:
    """The pages a loaded payload occupies."""
    return loaded.regions[0].address & ~(PAGE_SIZE - 1), _page_align(loaded.end)


def _page_align(address: int) -> int:
    return (address + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)



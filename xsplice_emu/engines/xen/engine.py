"""The xen engine's livepatch surface: what `Session`, the operator tool and `serve` use of `Livepatch`, with
every decision Xen's own: each request is a sysctl through the hypercall bridge to Xen's `livepatch_op`, the
rendezvous is Xen's `check_for_livepatch_work` on every vCPU, and what the host keeps (payload states, the
applied stack, figures) is what it observed of Xen: GET and LIST replies, Xen's console, `livepatch_work`.
"""

from __future__ import annotations

import ctypes
import errno
import time
from collections import Counter
from dataclasses import dataclass, field

from ...errors import LivepatchError
from ...image import Image
from ...livepatch.abi import DEFAULT_TIMEOUT_NS, PAYLOAD_MAX_SIZE
from ...livepatch.names import name_bytes
from ...livepatch.oracle import Oracle, nmi_reach
from ...livepatch.states import Action, ActionResult, PayloadState
from ...livepatch.unsafe import unsafe_functions
from ...machine import PS_PER_NS
from ...provision.derived import derived
from ...text import printable
from ...tracing.kinds import EventKind
from .hypercall import Bridge
from .machine import XenMachine
from .patching import ActionUnderWay, PatchingFeed, XenStacks
from .rendezvous import DO_WORK, WORK, RendezvousPresence


@dataclass
class XenPayload:
    """A payload as Xen last reported it (GET or LIST)."""

    name: str
    state: PayloadState
    rc: int = 0
    metadata: bytes = b""


@dataclass
class XenConsoleLog:
    """Xen's console lines since boot, where the operator tool looks for the hypervisor's log; the testbed adds
    no remarks of its own on this engine (`notes` stays empty)."""

    log: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Pending:
    name: str
    action: Action
    requested_ps: int
    timeout_ns: int
    host_started: float
    nmis_lost_before: int
    violations: Counter[str] = field(default_factory=Counter)  # the safety oracle's checks that fired


class XenLivepatch:
    """Livepatching by Xen's own code on a `XenMachine`."""

    real_xen = True

    def __init__(self, machine: XenMachine, *, oracle: bool = True):
        """With `oracle`, the safety oracle judges what Xen's own patching code does (`patching.py`)."""
        self.machine = machine
        self.bridge = Bridge(machine)
        self.rendezvous = XenConsoleLog(machine.log)
        self.payloads: dict[str, XenPayload] = {}
        self.applied: list[str] = []
        self.results: list[ActionResult] = []
        self.drop_flush: set[int] = set()
        """vCPUs that do not drop their translated code during the next action (a missing serialisation)."""
        self._pending: _Pending | None = None
        do_work = machine.address(WORK) + DO_WORK
        self._work = ctypes.c_uint8.from_address(machine.memory.host_address + machine.memory.physical(do_work, 1))
        """Xen's `livepatch_work.do_work`, set while an action is scheduled or under way: the byte itself (read
        after every slice)."""
        self._rendezvous = RendezvousPresence(machine)
        self.oracle: Oracle | None = None
        if oracle:
            self.oracle = Oracle(machine, nmi_path=derived(machine.hypervisor, _nmi_path), stack=XenStacks(machine))
            PatchingFeed(machine, self.oracle, self._under_way)

    # -- UPLOAD / GET / LIST ------------------------------------------------------------------------------------
    def upload(self, name: str, data: bytes, *, allow_unsafe: bool = False) -> XenPayload:
        """XEN_SYSCTL_LIVEPATCH_UPLOAD; Xen checks everything (`allow_unsafe` has no meaning here: Xen 4.17
        refuses no target)."""
        seen = len(self.machine.log)
        rc = self.bridge.upload(name_bytes(name), data[:PAYLOAD_MAX_SIZE] if len(data) > PAYLOAD_MAX_SIZE
                                else data, size=len(data))
        if rc:
            raise self._refused(-rc, name, "upload", seen)
        self.machine.trace.emit(self.machine.now_ns, None, EventKind.UPLOAD, payload=name, build_id="",
                                functions=0)
        self.list()  # the new payload's metadata, as LIST gives it
        return self.get(name)

    def get(self, name: str) -> XenPayload:
        """XEN_SYSCTL_LIVEPATCH_GET (-ENOENT when Xen has no such payload)."""
        seen = len(self.machine.log)
        rc, state, payload_rc = self.bridge.get(name_bytes(name))
        if rc:
            if rc == -errno.ENOENT:
                self._forget(name)
            raise self._refused(-rc, name, "get", seen)
        return self._note(name, state, payload_rc)

    def list(self) -> list[XenPayload]:
        """XEN_SYSCTL_LIVEPATCH_LIST, in Xen's order."""
        seen = len(self.machine.log)
        rc, statuses = self.bridge.list()
        if rc:
            raise self._refused(-rc, "", "list", seen)
        names = [status.name.decode("utf-8", "surrogateescape") for status in statuses]
        for gone in set(self.payloads) - set(names):
            self._forget(gone)
        return [self._note(name, status.state, status.rc, status.metadata)
                for name, status in zip(names, statuses, strict=True)]

    def _note(self, name: str, state: int, rc: int, metadata: bytes | None = None) -> XenPayload:
        """Record what Xen reported of `name` (the same object for the same payload), and the applied stack."""
        payload = self.payloads.setdefault(name, XenPayload(name, PayloadState(state), rc))
        payload.state, payload.rc = PayloadState(state), rc
        if metadata is not None:
            payload.metadata = metadata
        if payload.state is PayloadState.APPLIED and name not in self.applied:
            self.applied.append(name)
        elif payload.state is not PayloadState.APPLIED and name in self.applied:
            self.applied.remove(name)
        return payload

    def _forget(self, name: str) -> None:
        self.payloads.pop(name, None)
        if name in self.applied:
            self.applied.remove(name)

    # -- ACTION -----------------------------------------------------------------------------------------------
    def action(self, name: str, action: Action, *, timeout_ns: int = 0, from_vcpu: int | None = None,
               nodeps: bool = False, unsafe: bool = False, from_irq: bool = False,
               preempt_requester_ns: int = 0) -> int:
        """XEN_SYSCTL_LIVEPATCH_ACTION from dom0 on `from_vcpu` (default: the vCPU dom0 runs on, `dom0_vcpu`),
        where Xen queues the work: what the sysctl returns (0, or a pre-action hook's positive veto); APPLY,
        REVERT and REPLACE then run in Xen's rendezvous (`poll`). Fault: once Xen scheduled the work, the host
        does not schedule that vCPU for `preempt_requester_ns`."""
        if unsafe or from_irq:
            raise LivepatchError(errno.EOPNOTSUPP, f"{name}: the {'unsafe' if unsafe else 'from_irq'} fault is "
                                                   "not available on the xen engine")
        self.collect()
        seen = len(self.machine.log)
        requester = self.machine.dom0_vcpu(from_vcpu)
        requested = self.machine.now_ps
        rc = self.bridge.action(name_bytes(name), int(action), timeout_ns=timeout_ns, nodeps=nodeps, vcpu=requester)
        if rc < 0:
            raise self._refused(-rc, name, action.name.lower(), seen)
        if action is Action.UNLOAD:
            self._forget(name)
            self.machine.trace.emit(self.machine.now_ns, None, EventKind.UNLOAD, payload=name)
            return rc
        if rc == 0:
            if not self._done():  # Xen scheduled the work (it may refuse with rc 0, setting only the payload's)
                self.machine.rendezvous.requested(name, action.name.lower(), from_vcpu=requester,
                                                  at_ns=requested // PS_PER_NS)
                if preempt_requester_ns:
                    self.machine.preempt(requester, preempt_requester_ns, at_ps=self.machine.now_ps)
            self.machine.keep_stale(frozenset(self.drop_flush))
            self._pending = _Pending(name, action, requested, timeout_ns or DEFAULT_TIMEOUT_NS, time.perf_counter(),
                                     self.machine.interrupts.nmis_lost)
        return rc

    def run_action(self, name: str, action: Action, **options) -> ActionResult | None:
        """Request `action` and run the machine until Xen completes it (or twice its timeout)."""
        self.action(name, action, **options)
        return self.poll()

    def poll(self, ns: int | None = None) -> ActionResult | None:
        """Run the machine until Xen's pending action is done, or for `ns` (default twice its timeout)."""
        pending = self._pending
        if pending is None:
            return None
        self.machine.run_for(2 * pending.timeout_ns if ns is None else ns, stop_when=self._done)
        return self.collect()

    def _under_way(self) -> ActionUnderWay | None:
        """The action Xen's rendezvous is running, for the oracle."""
        pending = self._pending
        if pending is None:
            return None
        return ActionUnderWay(f"{pending.action.name.lower()} {pending.name}", pending.name, pending.violations)

    def _done(self) -> bool:
        """Xen has no action scheduled or under way and every vCPU is out of its rendezvous."""
        return not self._work.value and not self._rendezvous.inside

    def collect(self) -> ActionResult | None:
        """Settle a finished action: Xen's GET gives its rc and the payload's state."""
        pending = self._pending
        if pending is None or not self._done():
            return None
        self._pending = None
        self.machine.keep_stale(frozenset())
        self.drop_flush.clear()
        done_ps = self.machine.now_ps
        payload = self.get(pending.name)
        self.list()  # REPLACE moves other payloads too
        result = ActionResult(
            name=pending.name, action=pending.action.name.lower(), rc=payload.rc, master=None, parked_ns=None,
            release_ns=(done_ps - pending.requested_ps) // PS_PER_NS,
            host_ms=(time.perf_counter() - pending.host_started) * 1000,
            nmis_lost=self.machine.interrupts.nmis_lost - pending.nmis_lost_before, bytes_written=0,
            violations=pending.violations)
        self.results.append(result)
        return result

    def _refused(self, code: int, name: str, what: str, seen: int) -> LivepatchError:
        """Xen's refusal: its errno, and what it printed meanwhile."""
        lines = tuple(self.machine.log[seen:])
        message = lines[-1] if lines else f"{printable(name)}: Xen refused the {what}"
        return LivepatchError(code, message, xen_log=lines)


def _nmi_path(image: Image) -> list[tuple[int, int]]:
    """`[begin, end)` of every function of Xen's image as built that its do_nmi reaches."""
    return nmi_reach(image, unsafe_functions(image, image.read))

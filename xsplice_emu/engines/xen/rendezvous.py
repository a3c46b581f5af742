"""Which vCPUs are inside Xen's livepatch rendezvous, as the host observes it.

Xen's `idle_loop` calls `check_for_livepatch_work` after running its tasklets and `do_softirq` right after it
returns; a vCPU is inside from entering the first until it enters the second. An action is over only when Xen
cleared `livepatch_work.do_work` and every vCPU is out: the master still prints its "finished" line and drops
the CPU maps lock after clearing it, and a slave whose slice ran ahead has not seen it cleared yet. A request
made before then meets a busy lock (EBUSY), or a slave that goes on waiting in the last action's loop once the
next one sets `do_work` again, so the next rendezvous times out without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...machine import Vcpu
    from .machine import XenMachine


class RendezvousPresence:
    """The vCPUs inside `check_for_livepatch_work` on one xen-engine machine."""

    def __init__(self, machine: XenMachine):
        self.inside: set[int] = set()
        machine.observe_entry("check_for_livepatch_work", self._entered)
        machine.observe_entry("do_softirq", self._left)

    def _entered(self, vcpu: Vcpu) -> None:
        self.inside.add(vcpu.index)

    def _left(self, vcpu: Vcpu) -> None:
        self.inside.discard(vcpu.index)

"""Where dom0 runs when it makes a request: the lowest-numbered vCPU that can run it then.

In Xen a sysctl runs on the CPU that dom0's vCPU is on when it makes the hypercall, and the livepatch work it
schedules is queued on that same CPU (`schedule_work`'s `tasklet_schedule_on_cpu`). A vCPU the testbed holds,
spinning with IRQs off (a stall) or not scheduled by the host (a preemption), runs no dom0 vCPU meanwhile: dom0
makes each request on the lowest-numbered online vCPU that no hold covers at that moment (vCPU 0 when it can),
or on the vCPU it is pinned to once that one can.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hold:
    """vCPU `vcpu` cannot run dom0 from `begin_ps` until `end_ps`."""

    vcpu: int
    begin_ps: int
    end_ps: int


class Dom0Placement:
    """The holds of one machine's vCPUs, and which vCPU dom0 makes a request on."""

    def __init__(self) -> None:
        self.holds: list[Hold] = []

    def hold(self, vcpu: int, *, begin_ps: int, end_ps: int) -> None:
        """vCPU `vcpu` cannot run dom0 from `begin_ps` until `end_ps`."""
        self.holds.append(Hold(vcpu, begin_ps, end_ps))

    def place(self, online: list[int], now_ps: int, *, pinned: int | None = None) -> tuple[int, int]:
        """(the vCPU dom0 makes a request on at `now_ps`, when it can make it there): `pinned`, else of the
        `online` vCPUs the one free first, the lowest-numbered of those free as early. Holds over by `now_ps`
        are forgotten."""
        self.holds = [hold for hold in self.holds if hold.end_ps > now_ps]
        candidates = online if pinned is None else [pinned]
        when_ps, vcpu = min((self._free_from(vcpu, now_ps), vcpu) for vcpu in candidates)
        return vcpu, when_ps

    def _free_from(self, vcpu: int, time_ps: int) -> int:
        """When `vcpu` can run dom0, from `time_ps` on: then, or once the holds covering it (one after another)
        end."""
        covering = True
        while covering:
            covering = False
            for hold in self.holds:
                if hold.vcpu == vcpu and hold.begin_ps <= time_ps < hold.end_ps:
                    time_ps, covering = hold.end_ps, True
        return time_ps

"""What each live patching action did, from its trace events.

`summarize(events)` gives one `ActionSummary` per `action_requested`, from
the events that carry its number (`in_action`: docs/trace-format.md): its
payload, action, rc, master, the virtual times of every step (request,
master elected, deadline, each phase, all parked, patch window, release),
the vCPUs' arrival order, NMIs lost, bytes patched and the safety oracle's
violations (also those seen after the release). Latencies count from
the request, in virtual ns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..text import printable
from .kinds import EventKind
from .trace import Event


@dataclass(frozen=True)
class Arrival:
    """vCPU `vcpu` answered the master's kick (arrived in the CPU phase) at `time_ns`."""

    vcpu: int
    time_ns: int


@dataclass(frozen=True)
class ActionSummary:
    """One action, from request to release. Times are virtual ns; None: did not happen (yet)."""

    payload: str
    action: str
    requested_ns: int
    timeout_ns: int
    rc: int | None = None
    master: int | None = None
    elected_ns: int | None = None
    cpu_phase_ns: int | None = None
    irq_phase_ns: int | None = None
    all_parked_ns: int | None = None
    window_closed_ns: int | None = None
    released_ns: int | None = None
    aborted_ns: int | None = None
    abort_reason: str | None = None
    arrivals: tuple[Arrival, ...] = ()
    nmis_lost: int = 0
    bytes_patched: int = 0
    functions_patched: tuple[str, ...] = ()
    violations: tuple[tuple[str, int], ...] = ()  # (check, count) of the safety oracle, by check

    @property
    def label(self) -> str:
        """How `violation` events name it: `apply hello`."""
        return f"{self.action} {self.payload}"

    @property
    def caption(self) -> str:
        """`apply hello` as a reader sees it: one printable line, whatever bytes the payload's name holds."""
        return printable(self.label)

    @property
    def deadline_ns(self) -> int | None:
        """When the master gives up waiting: its kick plus the timeout."""
        return None if self.elected_ns is None else self.elected_ns + self.timeout_ns

    @property
    def parked_latency_ns(self) -> int | None:
        """Request -> every vCPU parked with IRQs off."""
        return None if self.all_parked_ns is None else self.all_parked_ns - self.requested_ns

    @property
    def release_latency_ns(self) -> int | None:
        """Request -> the master released everyone."""
        return None if self.released_ns is None else self.released_ns - self.requested_ns

    @property
    def slowest(self) -> Arrival | None:
        """The last vCPU to answer the master's kick."""
        return max(reversed(self.arrivals), key=lambda a: a.time_ns, default=None)  # ties: the last to arrive

    def to_json(self) -> dict[str, Any]:
        """A plain dict for `--json`: every field, the latencies and the slowest vCPU."""
        record = asdict(self)
        slowest = self.slowest
        record.update(deadline_ns=self.deadline_ns, parked_latency_ns=self.parked_latency_ns,
                      release_latency_ns=self.release_latency_ns,
                      slowest_vcpu=None if slowest is None else slowest.vcpu,
                      slowest_arrival_ns=None if slowest is None else slowest.time_ns - self.requested_ns)
        return record


def summarize(events: Iterable[Event]) -> list[ActionSummary]:
    """One summary per action requested in `events`, in request order. Each event counts towards the action
    whose number it carries (`in_action`), never towards one next to it in time; the events of an action
    requested before the first one given are left out."""
    actions: dict[int, ActionSummary] = {}
    for event in events:
        number, kind, fields = event.in_action, event.kind, event.fields
        if number is None:
            continue
        if kind == EventKind.ACTION_REQUESTED:
            actions[number] = ActionSummary(fields["payload"], fields["action"], event.time_ns, fields["timeout_ns"])
            continue
        summary = actions.get(number)
        if summary is None:
            continue
        if kind == EventKind.VIOLATION:  # counts towards the action it names, also after that one's release
            counted = dict(summary.violations)
            counted[fields["check"]] = counted.get(fields["check"], 0) + 1
            actions[number] = replace(summary, violations=tuple(sorted(counted.items())))
        elif kind in _STEPS:
            actions[number] = _STEPS[kind](summary, event)
    return [actions[number] for number in sorted(actions)]


def _phase(summary: ActionSummary, event: Event) -> ActionSummary:
    if event.fields["phase"] == "CPU":
        return replace(summary, cpu_phase_ns=event.time_ns)
    return replace(summary, irq_phase_ns=event.time_ns)


def _arrived(summary: ActionSummary, event: Event) -> ActionSummary:
    if event.fields["phase"] != "CPU" or event.vcpu is None:
        return summary
    return replace(summary, arrivals=summary.arrivals + (Arrival(event.vcpu, event.time_ns),))


def _irq_unmasked(summary: ActionSummary, event: Event) -> ActionSummary:
    if event.vcpu != summary.master or summary.all_parked_ns is None or summary.window_closed_ns is not None:
        return summary
    return replace(summary, window_closed_ns=event.time_ns)


def _patch(summary: ActionSummary, event: Event) -> ActionSummary:
    return replace(summary, bytes_patched=summary.bytes_patched + len(event.fields["new"]) // 2,
                   functions_patched=summary.functions_patched + (event.fields["function"],))


_STEPS = {
    EventKind.MASTER_ELECTED: lambda s, e: replace(s, master=e.vcpu, elected_ns=e.time_ns),
    EventKind.PHASE_COMPLETE: _phase,
    EventKind.ARRIVED: _arrived,
    EventKind.QUIESCED: lambda s, e: replace(s, all_parked_ns=e.time_ns),
    EventKind.IRQ_UNMASKED: _irq_unmasked,
    EventKind.PATCH: _patch,
    EventKind.ABORT: lambda s, e: replace(s, aborted_ns=e.time_ns,
                                          abort_reason=f"{e.fields['reason']} (missing: {e.fields['missing']})"),
    EventKind.NMI_UNMASKED: lambda s, e: replace(s, nmis_lost=e.fields["lost"]),
    EventKind.RELEASED: lambda s, e: replace(s, rc=e.fields["rc"], released_ns=e.time_ns),
}
SUMMARY_KINDS = frozenset({EventKind.ACTION_REQUESTED, EventKind.VIOLATION, *_STEPS})  # the kinds summarize() reads

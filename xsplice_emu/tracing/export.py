"""A trace as Chrome Trace Event JSON, for ui.perfetto.dev and chrome://tracing.

One process (the machine); one track (thread) per vCPU plus a controller
track, named and ordered by metadata events. On a vCPU's track: complete
slices ("X") for its states (`spans.state_spans`); on the controller's: one
slice per action with its CPU phase, IRQ phase and patch window inside.
Slices on a track always nest (a child is clipped to its parent), as
Perfetto requires. Instants ("i") mark IPIs, NMIs (lost ones named so),
patch writes, aborts and console lines; flow arrows ("s"/"f") run from the
master's kick to each vCPU's arrival; a counter ("C") counts parked vCPUs.
Timestamps are virtual: microseconds with the nanoseconds as fraction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from ..arch import Architecture
from ..files import check_destination, file_errors
from ..platform import CALL_FUNCTION_VECTOR
from .kinds import EventKind
from .reader import TraceFile
from .spans import VECTOR_NAMES, StateTracker
from .summary import SUMMARY_KINDS, ActionSummary, summarize
from .trace import Event

PID = 1
CONTROLLER_TID = 0
_CHUNK = 10_000  # records encoded by one json.dumps call


def export_chrome(trace: TraceFile, path: str | Path) -> int:
    """Write `trace` to `path` as Chrome Trace Event JSON; return how many Chrome events it wrote.
    Every event is read and checked first: a bad trace leaves no file behind."""
    check_destination(path, inputs=[trace.path])
    builder = _Builder(trace.arch)
    for event in trace.checked():
        builder.feed(event)
    with file_errors(path, "write"), Path(path).open("w") as out:
        return _write(builder.records(trace.header), trace.header, out)


def _write(records: Iterable[dict[str, Any]], header: dict[str, Any], out: TextIO) -> int:
    """The Chrome JSON object: `header` as otherData, then `records` as traceEvents; how many records."""
    out.write('{"displayTimeUnit":"ns","otherData":')
    out.write(json.dumps(header, separators=(",", ":")))
    out.write(',"traceEvents":[')
    records = iter(records)
    separator = ""
    written = 0
    while chunk := list(islice(records, _CHUNK)):
        out.write(separator + json.dumps(chunk, separators=(",", ":"))[1:-1])
        separator = ",\n"
        written += len(chunk)
    out.write("]}\n")
    return written


def _us(ns: int) -> float | int:
    """Chrome's microseconds, keeping the nanoseconds as fraction."""
    return ns // 1000 if ns % 1000 == 0 else ns / 1000


def _tid(vcpu: int | None) -> int:
    return CONTROLLER_TID if vcpu is None else vcpu + 1


_Slice = tuple[int, int, str, str, dict]  # start ns, end ns, name, category, args


@dataclass
class _Builder:
    """Reads events once, keeping what the records need (`arch`: the trace's)."""

    arch: Architecture
    count: int = 0
    last_ns: int = 0
    states: StateTracker = field(init=False)
    action_events: list[Event] = field(default_factory=list)
    marks: list[dict[str, Any]] = field(default_factory=list)  # instants, flows, counters
    _kicks: dict[int, tuple[int, int]] = field(default_factory=dict)  # vCPU -> (master, kick time)
    _master: int | None = None
    _parked: int = 0
    _last_nmi: dict[str, Any] | None = None  # the last NMI's instant, renamed if `nmi_lost` follows

    def __post_init__(self) -> None:
        self.states = StateTracker(arch=self.arch, lanes=False)

    def feed(self, event: Event) -> None:
        self.count += 1
        self.last_ns = event.time_ns
        self.states.feed(event)
        kind = event.kind
        if kind in SUMMARY_KINDS:
            self.action_events.append(event)
        mark = _MARKS.get(kind)
        if mark is not None:
            mark(self, event)

    def records(self, header: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Metadata, then each track's slices (parents first), then the marks."""
        self.states.finish(self.last_ns)
        yield {"ph": "M", "name": "process_name", "pid": PID,
               "args": {"name": f"xsplice-emu: {header['vcpus']} vCPUs, seed {header['seed']}"}}
        yield from _thread_meta(CONTROLLER_TID, "controller")
        for vcpu in range(header["vcpus"]):
            yield from _thread_meta(_tid(vcpu), f"vCPU {vcpu}")
        tracks = {CONTROLLER_TID: _action_slices(summarize(self.action_events), self.last_ns)}
        for span in self.states.nested:
            tracks.setdefault(_tid(span.vcpu), []).append(
                (span.start_ns, span.end_ns, span.label, span.state.value, {}))
        for tid in sorted(tracks):
            for start, end, name, category, args in _nested(tracks[tid]):
                record = {"ph": "X", "name": name, "cat": category, "pid": PID, "tid": tid,
                          "ts": _us(start), "dur": _us(end - start)}
                if args:
                    record["args"] = args
                yield record
        yield from self.marks

    # -- marks, by event kind ------------------------------------------------
    def _instant(self, event: Event, name: str, category: str, args: dict[str, Any]) -> None:
        self.marks.append({"ph": "i", "s": "t", "name": name, "cat": category, "pid": PID,
                           "tid": _tid(event.vcpu), "ts": _us(event.time_ns), "args": args})

    def _ipi(self, event: Event) -> None:
        to, vector = event.fields["to"], event.fields["vector"]
        what = "NMI" if vector == self.arch.nmi_vector else f"IPI {VECTOR_NAMES.get(vector, hex(vector))}"
        self._instant(event, f"{what} -> vCPU {to}", "ipi", event.fields)
        if self._master is not None and event.vcpu == self._master and vector == CALL_FUNCTION_VECTOR:
            self._kicks[to] = (self._master, event.time_ns)

    def _nmi(self, event: Event) -> None:
        self._instant(event, "NMI", "nmi", {**event.fields, "lost": False})
        self._last_nmi = self.marks[-1]

    def _nmi_lost(self, event: Event) -> None:
        nmi = self._last_nmi
        if nmi is not None and (nmi["tid"], nmi["ts"]) == (_tid(event.vcpu), _us(event.time_ns)):
            nmi["name"] = "NMI lost"
            nmi["args"]["lost"] = True

    def _patch(self, event: Event) -> None:
        fields = event.fields
        self._instant(event, f"patch {fields['function']}", "patch",
                      {**fields, "address": hex(fields["address"])})

    def _console(self, event: Event) -> None:
        self._instant(event, event.fields["text"], "console", {})

    def _abort(self, event: Event) -> None:
        self._instant(event, f"abort: {event.fields['reason']}", "rendezvous", event.fields)
        self._master, self._kicks = None, {}

    def _violation(self, event: Event) -> None:
        self._instant(event, f"violation: {event.fields['check']} at {event.fields['symbol']}", "oracle",
                      event.fields)

    def _master_elected(self, event: Event) -> None:
        self._master, self._kicks = event.vcpu, {}

    def _phase_complete(self, event: Event) -> None:
        if event.fields["phase"] == "CPU":
            self._master = None

    def _arrived(self, event: Event) -> None:
        if event.fields["phase"] != "CPU" or event.vcpu is None:
            return
        kick = self._kicks.pop(event.vcpu, None)
        if kick is not None:
            master, kicked_ns = kick
            flow = {"name": "kick", "cat": "rendezvous", "pid": PID, "id": len(self.marks)}
            self.marks.append({**flow, "ph": "s", "tid": _tid(master), "ts": _us(kicked_ns)})
            self.marks.append({**flow, "ph": "f", "bp": "e", "tid": _tid(event.vcpu), "ts": _us(event.time_ns)})

    def _park(self, event: Event, change: int = 1) -> None:
        self._parked = max(0, self._parked + change)
        self.marks.append({"ph": "C", "name": "vCPUs parked", "pid": PID, "ts": _us(event.time_ns),
                           "args": {"parked": self._parked}})

    def _unpark(self, event: Event) -> None:
        self._park(event, -1)


_MARKS = {kind: getattr(_Builder, f"_{kind}") for kind in (
    EventKind.IPI, EventKind.NMI, EventKind.NMI_LOST, EventKind.PATCH, EventKind.CONSOLE, EventKind.ABORT,
    EventKind.MASTER_ELECTED, EventKind.PHASE_COMPLETE, EventKind.ARRIVED, EventKind.PARK, EventKind.UNPARK,
    EventKind.VIOLATION)}


def _thread_meta(tid: int, name: str) -> list[dict[str, Any]]:
    return [{"ph": "M", "name": "thread_name", "pid": PID, "tid": tid, "args": {"name": name}},
            {"ph": "M", "name": "thread_sort_index", "pid": PID, "tid": tid, "args": {"sort_index": tid}}]


def _action_slices(actions: list[ActionSummary], end_ns: int) -> list[_Slice]:
    """Per action: its whole span (cut at the next request), then its CPU phase,
    IRQ phase and patch window."""
    slices = []
    for action, following in zip(actions, [*actions[1:], None], strict=False):  # none when no action
        limit = end_ns if following is None else following.requested_ns
        end = max(action.requested_ns, min(limit, limit if action.released_ns is None else action.released_ns))
        slices.append((action.requested_ns, end, f"{action.action} {action.payload}", "action",
                       {"rc": action.rc, "master": action.master, "nmis_lost": action.nmis_lost,
                        "bytes_patched": action.bytes_patched, "violations": dict(action.violations)}))
        steps = (("CPU phase", action.elected_ns, _either(action.cpu_phase_ns, action.aborted_ns)),
                 ("IRQ phase", action.cpu_phase_ns, _either(action.irq_phase_ns, action.aborted_ns)),
                 ("patch window", action.all_parked_ns, action.window_closed_ns))
        for name, start, stop in steps:
            if start is not None and stop is not None:
                slices.append((start, stop, name, "rendezvous", {}))
    return slices


def _either(value: int | None, other: int | None) -> int | None:
    return other if value is None else value


def _nested(slices: list[_Slice]) -> Iterator[_Slice]:
    """The slices of one track, parents first, each clipped to its parent so that they nest."""
    ends: list[int] = []  # the open parents' ends, innermost last
    for start, end, name, category, args in sorted(slices, key=lambda s: (s[0], -s[1])):
        while ends and ends[-1] <= start:
            ends.pop()
        if ends and end > ends[-1]:
            end = ends[-1]
        ends.append(end)
        yield start, end, name, category, args
